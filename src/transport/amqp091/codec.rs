//! The AMQP 1.0 encoding of bodies on AMQP 0-9-1: what lets a 0-9-1 publisher reach AMQP 1.0 receivers
//! (pubtools-sign's python-qpid-proton) with a string body, and a 0-9-1 consumer read what AMQP 1.0 senders sent.
//!
//! Owns the bytes of an `amqp-value` string section and the decoding of `amqp-value` / `data` sections. Pure
//! byte work: it never touches lapin, and never guesses: a payload that is not AMQP-encoded is left as it is.

/// The 0-9-1 `type` RabbitMQ uses for payloads that are AMQP 1.0 encoded sections.
pub(super) const AMQP10_TYPE: &str = "amqp-1.0";

/// `text` as an AMQP 1.0 `amqp-value` section holding a string.
pub fn encode_amqp1_string(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 8);
    out.extend_from_slice(&[0x00, 0x53, 0x77]);
    match u8::try_from(b.len()) {
        Ok(n) => out.extend_from_slice(&[0xa1, n]),
        Err(_) => {
            out.push(0xb1);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(b);
    out
}

/// A message that was published over AMQP 1.0 reaches a 0-9-1 consumer with its body sections AMQP-encoded.
/// Returns the text or bytes of an `amqp-value` string/binary section or of `data` sections; `None` when the
/// payload is not AMQP-encoded (a JSON document never starts with a zero byte).
pub fn decode_amqp1_body(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut rest = bytes;
    let mut out = Vec::new();
    let mut any = false;
    while !rest.is_empty() {
        // Described section: 0x00 0x53 <descriptor code>.
        let [0x00, 0x53, code, ctor, tail @ ..] = rest else {
            return None;
        };
        let (len, body) = match ctor {
            0xa0 | 0xa1 => (*tail.first()? as usize, tail.get(1..)?),
            0xb0 | 0xb1 => (
                u32::from_be_bytes(tail.get(..4)?.try_into().ok()?) as usize,
                tail.get(4..)?,
            ),
            _ => return None,
        };
        match code {
            0x75 | 0x77 => out.extend_from_slice(body.get(..len)?),
            _ => return None,
        }
        any = true;
        rest = &body[len..];
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_amqp1_string_and_data_bodies() {
        let mut v = vec![0x00, 0x53, 0x77, 0xa1, 4];
        v.extend_from_slice(b"{\"a\"");
        assert_eq!(decode_amqp1_body(&v).unwrap(), b"{\"a\"");
        let mut d = vec![0x00, 0x53, 0x75, 0xb0, 0, 0, 0, 2];
        d.extend_from_slice(b"{}");
        assert_eq!(decode_amqp1_body(&d).unwrap(), b"{}");
        assert!(decode_amqp1_body(b"{\"plain\": true}").is_none());
        assert!(
            decode_amqp1_body(&[0x00, 0x53, 0x77, 0xa1, 9, b'x']).is_none(),
            "truncated"
        );
    }

    #[test]
    fn encodes_what_it_decodes() {
        for len in [0, 5, 255, 256, 70_000] {
            let text = "x".repeat(len);
            assert_eq!(
                decode_amqp1_body(&encode_amqp1_string(&text)).unwrap(),
                text.as_bytes()
            );
        }
    }
}
