//! Lookaside signature stores: the URL layout and reading `signature-1`, `signature-2`, … from one.
//!
//! Owns the layout `<base>/<repository path>@<algo>=<hex>/signature-<N>` and fetching over `file://`,
//! `http://` and `https://` with caps on count and size. It hands back untrusted bytes: it never parses,
//! verifies or trusts a signature, and it never writes to a store.

use crate::reference::{self, Reference};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Caps and timeouts for reading a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most signatures read for one image; more is an error.
    pub max_signatures: usize,
    /// Largest accepted signature, in bytes; larger is an error.
    pub max_signature_bytes: u64,
    /// Overall timeout of one HTTP request.
    pub http_timeout: Duration,
    /// PEM bundle of the CAs trusted for https stores (default: the system bundle, as containers/image).
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_signatures: 128,
            max_signature_bytes: 4 * 1024 * 1024,
            http_timeout: Duration::from_secs(30),
            ca_cert: None,
        }
    }
}

/// Why signatures could not be read. Every variant names the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookasideError {
    /// The digest is not `algo:hex`.
    #[error("cannot build a lookaside URL: {0}")]
    BadDigest(#[from] reference::ReferenceError),
    /// The base URL's scheme is not `file`, `http` or `https`.
    #[error(
        "unsupported lookaside URL scheme {scheme:?} in {url} (use file://, http:// or https://)"
    )]
    UnsupportedScheme {
        /// The scheme.
        scheme: String,
        /// The URL.
        url: String,
    },
    /// A `file://` URL has no usable local path.
    #[error("{url} does not name a local file")]
    NotAFilePath {
        /// The URL.
        url: String,
    },
    /// HTTP 403.
    #[error("reading {url}: HTTP 403 Forbidden. Some stores (e.g. S3 buckets without list permission) answer 403 instead of 404 for missing objects; make the store return 404 for a missing signature-N, or fix the access rights")]
    Forbidden {
        /// The URL.
        url: String,
    },
    /// Any other HTTP status than 200 and 404.
    #[error("reading {url}: unexpected HTTP status {status} {reason}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The status text.
        reason: String,
    },
    /// Connection, TLS, timeout or other transport failure.
    #[error("reading {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A signature blob is not a signature in a format containers/image recognises (an empty file, text, an
    /// encrypted message …). containers/image refuses the whole image then, whatever the other signatures; so
    /// does signbus. Fix the store.
    #[error("parsing signature {url}: {reason} (containers/image refuses an image whose store holds it)")]
    UnrecognizedFormat {
        /// The URL.
        url: String,
        /// What was found.
        reason: String,
    },
    /// A local read failed for another reason than "no such file".
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A signature is larger than the cap.
    #[error("{url} is larger than the {limit}-byte cap on one signature")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// The store has more signatures than the cap.
    #[error("the store has more than {limit} signatures for this image (found {url}); refusing to read more")]
    TooMany {
        /// The first URL beyond the cap.
        url: String,
        /// The cap.
        limit: usize,
    },
}

/// One fetched, still untrusted signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSignature {
    /// N in `signature-N`.
    pub index: usize,
    /// Where it came from (password redacted).
    pub url: String,
    /// The bytes as stored.
    pub bytes: Vec<u8>,
}

/// The directory URL holding the signatures of `image` at `digest`: `<base>/<path>@<algo>=<hex>`.
pub fn signature_dir_url(
    base: &Url,
    image: &Reference,
    digest: &str,
) -> Result<Url, LookasideError> {
    reference::validate_digest(digest)?;
    let (algo, hex) = digest.split_once(':').expect("validated digest");
    let mut url = base.clone();
    let base_path = base.path().trim_end_matches('/');
    url.set_path(&format!("{base_path}/{}@{algo}={hex}", image.path()));
    Ok(url)
}

/// The URL of `signature-<n>` (n starts at 1).
pub fn signature_url(
    base: &Url,
    image: &Reference,
    digest: &str,
    n: usize,
) -> Result<Url, LookasideError> {
    let mut url = signature_dir_url(base, image, digest)?;
    let path = format!("{}/signature-{n}", url.path());
    url.set_path(&path);
    Ok(url)
}

/// The URL with any password replaced by `xxxxx`, for messages.
pub fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("xxxxx"));
    }
    u.to_string()
}

/// Reads `signature-1`, `signature-2`, … for `image` at `digest` from `base`, stopping at the first that does
/// not exist. Any other failure stops with an error naming the URL.
pub fn fetch_signatures(
    base: &Url,
    image: &Reference,
    digest: &str,
    limits: &FetchLimits,
) -> Result<Vec<FetchedSignature>, LookasideError> {
    let agent = match base.scheme() {
        "file" => None,
        "http" | "https" => {
            // The system CA store (or the given bundle), never a bundle compiled into the binary.
            let tls = crate::tls::TlsConfig {
                ca_cert: limits.ca_cert.clone(),
                cert_key: None,
            };
            let tls = crate::tls::client_config(&tls).map_err(|e| LookasideError::Transport {
                url: redacted(base),
                reason: e.to_string(),
            })?;
            Some(
                ureq::AgentBuilder::new()
                    .tls_config(tls)
                    .timeout_connect(limits.http_timeout.min(Duration::from_secs(10)))
                    .timeout(limits.http_timeout)
                    .build(),
            )
        }
        other => {
            return Err(LookasideError::UnsupportedScheme {
                scheme: other.to_owned(),
                url: redacted(base),
            })
        }
    };
    let mut out = Vec::new();
    for n in 1.. {
        let url = signature_url(base, image, digest, n)?;
        let got = match &agent {
            None => read_file(&url, limits.max_signature_bytes)?,
            Some(agent) => read_http(agent, &url, limits.max_signature_bytes)?,
        };
        let Some(bytes) = got else { break };
        if n > limits.max_signatures {
            return Err(LookasideError::TooMany {
                url: redacted(&url),
                limit: limits.max_signatures,
            });
        }
        tracing::debug!(url = %redacted(&url), bytes = bytes.len(), "fetched signature");
        let bytes =
            simple_signing_blob(bytes).map_err(|reason| LookasideError::UnrecognizedFormat {
                url: redacted(&url),
                reason,
            })?;
        out.push(FetchedSignature {
            index: n,
            url: redacted(&url),
            bytes,
        });
    }
    Ok(out)
}

/// The OpenPGP message inside a stored signature blob, told apart as containers/image does: a blob that starts
/// like an OpenPGP message (a compressed data, one-pass signature or signature packet, in either packet format)
/// is one; a blob that starts with a zero byte names its format on the first line (`simple-signing` is an
/// OpenPGP message, `sigstore-json` is kept as it is and fails verification as a simple signature); anything
/// else — an empty file, text, an encrypted message — is not a signature at all.
pub fn simple_signing_blob(mut blob: Vec<u8>) -> Result<Vec<u8>, String> {
    const OPENPGP_STARTS: [u8; 14] = [
        0xA0, 0xA1, 0xA2, 0xA3, 0xC8, // compressed data
        0x90, 0x91, 0x92, 0x3D,
        0xC4, // one-pass signature (0x3D: as containers/image lists it)
        0x88, 0x89, 0x8A, 0x8B, // signature, old format
    ];
    match blob.first() {
        None => Err("empty signature blob".to_owned()),
        Some(b) if OPENPGP_STARTS.contains(b) || *b == 0xC2 => Ok(blob),
        Some(0) => {
            let Some(nl) = blob.iter().position(|b| *b == b'\n') else {
                return Err("invalid signature format, missing newline".to_owned());
            };
            let format = &blob[1..nl];
            if let Some(b) = format.iter().find(|b| !(32..0x7F).contains(*b)) {
                return Err(format!("invalid signature format, non-ASCII byte {b:#x}"));
            }
            match format {
                b"simple-signing" => Ok(blob.split_off(nl + 1)),
                b"sigstore-json" => Ok(blob),
                other => Err(format!(
                    "unrecognized signature format {:?}",
                    String::from_utf8_lossy(other)
                )),
            }
        }
        Some(b) => Err(format!(
            "unrecognized signature format, starting with binary {b:#x}"
        )),
    }
}

/// Reads at most `limit` bytes; `Ok(None)` when there is more.
fn read_capped(r: impl Read, limit: u64) -> Result<Option<Vec<u8>>, std::io::Error> {
    let mut buf = Vec::new();
    r.take(limit + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

fn read_file(url: &Url, limit: u64) -> Result<Option<Vec<u8>>, LookasideError> {
    let path = url
        .to_file_path()
        .map_err(|()| LookasideError::NotAFilePath { url: redacted(url) })?;
    let io = |source| LookasideError::Io {
        path: path.clone(),
        source,
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    if meta.len() > limit {
        return Err(LookasideError::TooLarge {
            url: redacted(url),
            limit,
        });
    }
    match read_capped(file, limit).map_err(io)? {
        Some(bytes) => Ok(Some(bytes)),
        None => Err(LookasideError::TooLarge {
            url: redacted(url),
            limit,
        }),
    }
}

fn read_http(
    agent: &ureq::Agent,
    url: &Url,
    limit: u64,
) -> Result<Option<Vec<u8>>, LookasideError> {
    let shown = redacted(url);
    match agent.get(url.as_str()).call() {
        Ok(resp) if resp.status() == 200 => {
            if resp.content_type() == "text/html" {
                tracing::warn!(url = %shown, "signature served as text/html; it will probably not verify");
            }
            if let Some(len) = resp
                .header("content-length")
                .and_then(|l| l.parse::<u64>().ok())
            {
                if len > limit {
                    return Err(LookasideError::TooLarge { url: shown, limit });
                }
            }
            match read_capped(resp.into_reader(), limit) {
                Ok(Some(bytes)) => Ok(Some(bytes)),
                Ok(None) => Err(LookasideError::TooLarge { url: shown, limit }),
                Err(e) => Err(LookasideError::Transport {
                    url: shown,
                    reason: format!("reading the body: {e}"),
                }),
            }
        }
        Ok(resp) => Err(LookasideError::HttpStatus {
            url: shown,
            status: resp.status(),
            reason: resp.status_text().to_owned(),
        }),
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(ureq::Error::Status(403, _)) => Err(LookasideError::Forbidden { url: shown }),
        Err(ureq::Error::Status(status, resp)) => Err(LookasideError::HttpStatus {
            url: shown,
            status,
            reason: resp.status_text().to_owned(),
        }),
        Err(ureq::Error::Transport(t)) => Err(LookasideError::Transport {
            url: shown,
            reason: t.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_told_apart_as_containers_image_does() {
        let sig = vec![0x88, 0x75, 0x04];
        assert_eq!(simple_signing_blob(sig.clone()), Ok(sig.clone()));
        let mut framed = b"\0simple-signing\n".to_vec();
        framed.extend_from_slice(&sig);
        assert_eq!(simple_signing_blob(framed), Ok(sig));
        for (blob, why) in [
            (&b""[..], "empty signature blob"),
            (b"{\"critical\":{}}", "starting with binary 0x7b"),
            (b"-----BEGIN PGP MESSAGE-----", "starting with binary 0x2d"),
            (&[0x85, 0x01, 0x0c][..], "starting with binary 0x85"), // public-key encrypted session key
            (&[0x93, 0x0d][..], "starting with binary 0x93"),
            (b"\0other\nxx", "unrecognized signature format \"other\""),
            (b"\0simple-signing", "missing newline"),
        ] {
            let e = simple_signing_blob(blob.to_vec()).unwrap_err();
            assert!(e.contains(why), "{blob:?}: {e}");
        }
    }

    #[test]
    fn layout_matches_containers_signature_5() {
        let base = Url::parse("https://registry.example.com/containers/sigstore/").unwrap();
        let image = Reference::parse_normalized("registry.example.com/ubi9/ubi:latest").unwrap();
        let d = format!("sha256:{}", "1d15".repeat(16));
        assert_eq!(
            signature_url(&base, &image, &d, 1).unwrap().as_str(),
            format!(
                "https://registry.example.com/containers/sigstore/ubi9/ubi@sha256={}/signature-1",
                "1d15".repeat(16)
            )
        );
        let bare = Url::parse("http://u:secret@h").unwrap();
        let u = signature_url(&bare, &image, &d, 2).unwrap();
        assert!(u.path().starts_with("/ubi9/ubi@sha256="), "{u}");
        assert!(!redacted(&u).contains("secret"));
        assert!(signature_url(&base, &image, "sha256:../x", 1).is_err());
    }
}
