//! SASL EXTERNAL for AMQP 1.0, which fe2o3-amqp 0.14 has no profile for: the short SASL exchange done here on the
//! (TLS) stream before fe2o3 takes it over and opens the AMQP connection without a SASL layer of its own.
//!
//! The exchange (AMQP 1.0 part 5.3): both sides send the SASL protocol header; the broker lists its mechanisms
//! (`sasl-mechanisms`); we answer `sasl-init` with `EXTERNAL` and an empty response (the identity is the TLS
//! client certificate the broker already checked); the broker answers `sasl-outcome`. Only code 0 (ok) lets the
//! connection go on. This module only encodes and decodes those three frames; it opens no connection itself.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const SASL_HEADER: &[u8; 8] = b"AMQP\x03\x01\x00\x00";
const MECHANISMS: u8 = 0x40;
const INIT: u8 = 0x41;
const OUTCOME: u8 = 0x44;
/// Largest SASL frame accepted from the broker (the spec's minimum max-frame-size).
const MAX_FRAME: usize = 512;

/// Authenticates with SASL EXTERNAL on `stream` to `host`. The error says what the broker answered (a TLS
/// alert on the first read is the broker refusing the certificate, with TLS 1.3).
pub(super) async fn external<S>(stream: &mut S, host: &str) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| match crate::tls::refusal(host, &e) {
        Some(refused) => refused.to_string(),
        None => format!("SASL EXTERNAL: {e}"),
    };
    stream.write_all(SASL_HEADER).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.map_err(io)?;
    if &header != SASL_HEADER {
        return Err(format!(
            "SASL EXTERNAL: the broker answered the SASL header with {header:02x?}, not SASL"
        ));
    }
    let (code, body) = read_frame(stream).await.map_err(|e| e.describe(host))?;
    if code != MECHANISMS {
        return Err(format!(
            "SASL EXTERNAL: expected sasl-mechanisms, got performative {code:#x}"
        ));
    }
    if !body.windows(8).any(|w| w == b"EXTERNAL") {
        return Err(format!(
            "SASL EXTERNAL: the broker does not offer EXTERNAL (it offers {}); enable it \
             (RabbitMQ: rabbitmq_auth_mechanism_ssl and auth_mechanisms.N = EXTERNAL)",
            symbols(&body).join(", ")
        ));
    }
    stream.write_all(&init_frame()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let (code, body) = read_frame(stream).await.map_err(|e| e.describe(host))?;
    if code != OUTCOME {
        return Err(format!(
            "SASL EXTERNAL: expected sasl-outcome, got performative {code:#x}"
        ));
    }
    match outcome_code(&body) {
        Some(0) => Ok(()),
        Some(c) => Err(format!(
            "SASL EXTERNAL: the broker refused the client certificate's identity (sasl-outcome code {c}: {}); \
             is there a broker user named after the certificate?",
            match c {
                1 => "auth",
                2 => "sys",
                3 => "sys-perm",
                4 => "sys-temp",
                _ => "unknown",
            }
        )),
        None => Err("SASL EXTERNAL: malformed sasl-outcome".into()),
    }
}

/// `sasl-init` with mechanism `EXTERNAL` and an empty initial response, framed.
fn init_frame() -> Vec<u8> {
    let mut fields = vec![0xa3, 8];
    fields.extend_from_slice(b"EXTERNAL");
    fields.extend_from_slice(&[0xa0, 0]); // initial-response: empty binary
    let mut body = vec![0x00, 0x53, INIT, 0xc0, (fields.len() + 1) as u8, 2];
    body.extend_from_slice(&fields);
    let size = (8 + body.len()) as u32;
    let mut frame = size.to_be_bytes().to_vec();
    frame.extend_from_slice(&[2, 1, 0, 0]); // doff 2, type SASL
    frame.extend_from_slice(&body);
    frame
}

/// Why a frame could not be read.
enum FrameError {
    Io(std::io::Error),
    Malformed(String),
}

impl FrameError {
    fn describe(self, host: &str) -> String {
        match self {
            FrameError::Io(e) => match crate::tls::refusal(host, &e) {
                Some(refused) => refused.to_string(),
                None => format!("SASL EXTERNAL: reading a frame: {e}"),
            },
            FrameError::Malformed(m) => m,
        }
    }
}

/// Reads one SASL frame; returns its performative code and the body after the descriptor.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(u8, Vec<u8>), FrameError> {
    let io = FrameError::Io;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.map_err(io)?;
    let size = u32::from_be_bytes(size) as usize;
    if !(8..=MAX_FRAME).contains(&size) {
        return Err(FrameError::Malformed(format!(
            "SASL EXTERNAL: frame of {size} bytes"
        )));
    }
    let mut rest = vec![0u8; size - 4];
    stream.read_exact(&mut rest).await.map_err(io)?;
    let doff = usize::from(rest[0]) * 4;
    let body = rest.get(doff.saturating_sub(4)..).unwrap_or_default();
    match body {
        [0x00, 0x53, code, tail @ ..] => Ok((*code, tail.to_vec())),
        _ => Err(FrameError::Malformed(
            "SASL EXTERNAL: frame without a small-ulong descriptor".into(),
        )),
    }
}

/// The outcome code: the first field of the described list.
fn outcome_code(body: &[u8]) -> Option<u8> {
    let fields = match body.first()? {
        0xc0 => body.get(3..)?,
        0xd0 => body.get(9..)?,
        _ => return None,
    };
    match fields {
        [0x50, code, ..] => Some(*code),
        _ => None,
    }
}

/// The symbols (sym8) in a frame body, for messages.
fn symbols(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < body.len() {
        if body[i] == 0xa3 {
            let len = usize::from(body[i + 1]);
            if let Some(s) = body.get(i + 2..i + 2 + len) {
                out.push(String::from_utf8_lossy(s).into_owned());
                i += 2 + len;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_frame_is_a_sasl_init_for_external() {
        let f = init_frame();
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
            f.len()
        );
        assert_eq!(&f[4..8], &[2, 1, 0, 0]);
        assert_eq!(&f[8..11], &[0x00, 0x53, INIT]);
        assert!(f.windows(8).any(|w| w == b"EXTERNAL"));
    }

    #[tokio::test]
    async fn an_ok_outcome_passes_and_a_refusal_is_explained() {
        // The broker's side: header, mechanisms [PLAIN, EXTERNAL] (array of sym8), outcome.
        let mechanisms = {
            let mut arr = vec![0xe0, 0, 2, 0xa3, 5];
            arr.extend_from_slice(b"PLAIN");
            arr.extend_from_slice(&[8]);
            arr.extend_from_slice(b"EXTERNAL");
            arr[1] = (arr.len() - 2) as u8;
            let mut body = vec![0x00, 0x53, MECHANISMS, 0xc0, (arr.len() + 1) as u8, 1];
            body.extend_from_slice(&arr);
            frame(&body)
        };
        for (code, ok) in [(0u8, true), (1, false)] {
            let outcome = frame(&[0x00, 0x53, OUTCOME, 0xc0, 3, 1, 0x50, code]);
            let mut script = SASL_HEADER.to_vec();
            script.extend_from_slice(&mechanisms);
            script.extend_from_slice(&outcome);
            let (mut ours, mut theirs) = tokio::io::duplex(4096);
            theirs.write_all(&script).await.unwrap();
            let r = external(&mut ours, "localhost").await;
            assert_eq!(r.is_ok(), ok, "{r:?}");
            if !ok {
                assert!(r.unwrap_err().contains("code 1: auth"));
            }
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[2, 1, 0, 0]);
        f.extend_from_slice(body);
        f
    }
}
