//! The password-sealed box inside a cosign private key file: go-securesystemslib's `encrypted` format.
//!
//! JSON `{"kdf":{"name":"scrypt","params":{"N":…,"r":8,"p":1},"salt":b64},"cipher":{"name":"nacl/secretbox",
//! "nonce":b64},"ciphertext":b64}` (standard base64, Go's `[]byte` encoding): scrypt(password, salt) gives a
//! 32-byte XSalsa20-Poly1305 key that opens the ciphertext. This module seals and opens such boxes; it never
//! reads files or the environment, never logs, and keeps derived keys and plaintext in zeroizing buffers.

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// scrypt cost parameters go-securesystemslib reads (`N`, `r`, `p`); anything else is refused, as it does.
pub const ACCEPTED_SCRYPT: [(u64, u32, u32); 3] = [(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)];
/// What cosign writes (`encrypted.Encrypt`, "standard" strength).
pub const DEFAULT_SCRYPT_N: u64 = 65536;

const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Why a sealed box cannot be opened or made. Only [`SealError::WrongPassword`] is about the password; the others
/// are a damaged or foreign file. Retrying never helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Not the JSON envelope, or a field is not base64 or has the wrong length.
    #[error("the encrypted key is corrupt: {0}")]
    Corrupt(String),
    /// A KDF other than scrypt, or a cipher other than nacl/secretbox.
    #[error("the encrypted key uses {what} {name:?}, which cosign does not use (scrypt and nacl/secretbox only)")]
    UnsupportedAlgorithm { what: &'static str, name: String },
    /// scrypt parameters cosign would refuse.
    #[error("the encrypted key uses scrypt N={n} r={r} p={p}; cosign reads only N=32768, 65536 or 131072 with r=8, p=1")]
    UnsupportedScrypt { n: u64, r: u64, p: u64 },
    /// The box does not open: the password is wrong (or the ciphertext was altered).
    #[error("wrong password for the cosign private key (or the key file was altered)")]
    WrongPassword,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

// Go writes the members in this order: N, r, p.
#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn b64(field: &str, s: &str, len: Option<usize>) -> Result<Vec<u8>, SealError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|e| SealError::Corrupt(format!("{field} is not base64: {e}")))?;
    match len {
        Some(n) if bytes.len() != n => Err(SealError::Corrupt(format!(
            "{field} is {} bytes, expected {n}",
            bytes.len()
        ))),
        _ => Ok(bytes),
    }
}

/// The 32-byte secretbox key scrypt derives from `password` and `salt`.
fn derive(password: &[u8], salt: &[u8], n: u64) -> Zeroizing<[u8; 32]> {
    let log_n = n.trailing_zeros() as u8;
    let params =
        scrypt::Params::new(log_n, 8, 1, 32).expect("accepted scrypt parameters are valid");
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut()).expect("32 bytes is a valid length");
    key
}

/// Opens a sealed box (the bytes inside the PEM block) with `password`; returns the plaintext.
pub fn open(envelope: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let env: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| SealError::Corrupt(format!("not the JSON envelope cosign writes: {e}")))?;
    if env.kdf.name != "scrypt" {
        return Err(SealError::UnsupportedAlgorithm {
            what: "key derivation",
            name: env.kdf.name,
        });
    }
    if env.cipher.name != "nacl/secretbox" {
        return Err(SealError::UnsupportedAlgorithm {
            what: "cipher",
            name: env.cipher.name,
        });
    }
    let p = &env.kdf.params;
    if !ACCEPTED_SCRYPT
        .iter()
        .any(|&(n, r, pp)| p.n == n && p.r == u64::from(r) && p.p == u64::from(pp))
    {
        return Err(SealError::UnsupportedScrypt {
            n: p.n,
            r: p.r,
            p: p.p,
        });
    }
    let salt = b64("kdf.salt", &env.kdf.salt, None)?;
    let nonce = b64("cipher.nonce", &env.cipher.nonce, Some(NONCE_LEN))?;
    let ciphertext = b64("ciphertext", &env.ciphertext, None)?;
    let key = derive(password, &salt, p.n);
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| SealError::WrongPassword)
}

/// Seals `plaintext` under `password` with scrypt cost `n` (one of [`ACCEPTED_SCRYPT`]), fresh random salt and
/// nonce; returns the JSON envelope as Go's `json.Marshal` writes it.
pub fn seal(plaintext: &[u8], password: &[u8], n: u64) -> Result<Vec<u8>, SealError> {
    if !ACCEPTED_SCRYPT.iter().any(|&(an, _, _)| an == n) {
        return Err(SealError::UnsupportedScrypt { n, r: 8, p: 1 });
    }
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let key = derive(password, &salt, n);
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(nonce.as_slice().into(), plaintext)
        .expect("secretbox sealing does not fail");
    let e = base64::engine::general_purpose::STANDARD;
    let env = Envelope {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams { n, r: 8, p: 1 },
            salt: e.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: e.encode(nonce),
        },
        ciphertext: e.encode(ciphertext),
    };
    Ok(serde_json::to_vec(&env).expect("the envelope always serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_box_opens_with_its_password_only() {
        let boxed = seal(b"secret key bytes", b"pw", 32768).unwrap();
        let text = String::from_utf8(boxed.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""#
            ),
            "{text}"
        );
        assert_eq!(&open(&boxed, b"pw").unwrap()[..], b"secret key bytes");
        assert_eq!(open(&boxed, b"pW").unwrap_err(), SealError::WrongPassword);
    }

    #[test]
    fn foreign_parameters_and_damaged_envelopes_are_named() {
        let boxed = String::from_utf8(seal(b"x", b"", 32768).unwrap()).unwrap();
        let e = open(boxed.replace("32768", "16384").as_bytes(), b"").unwrap_err();
        assert_eq!(
            e,
            SealError::UnsupportedScrypt {
                n: 16384,
                r: 8,
                p: 1
            }
        );
        let e = open(boxed.replace("\"r\":8", "\"r\":16").as_bytes(), b"").unwrap_err();
        assert!(matches!(e, SealError::UnsupportedScrypt { r: 16, .. }));
        let e = open(boxed.replace("nacl/secretbox", "aes-gcm").as_bytes(), b"").unwrap_err();
        assert!(matches!(
            e,
            SealError::UnsupportedAlgorithm { what: "cipher", .. }
        ));
        let e = open(boxed.replace("\"scrypt\"", "\"pbkdf2\"").as_bytes(), b"").unwrap_err();
        assert!(matches!(
            e,
            SealError::UnsupportedAlgorithm {
                what: "key derivation",
                ..
            }
        ));
        let e = open(&boxed.as_bytes()[..20], b"").unwrap_err();
        assert!(matches!(e, SealError::Corrupt(_)), "{e}");
        let nonce_at = boxed.find("\"nonce\":\"").unwrap() + 9;
        let mut damaged = boxed.clone();
        damaged.replace_range(nonce_at..nonce_at + 1, "*");
        assert!(matches!(
            open(damaged.as_bytes(), b"").unwrap_err(),
            SealError::Corrupt(_)
        ));
        assert!(seal(b"x", b"", 1024).is_err());
    }
}
