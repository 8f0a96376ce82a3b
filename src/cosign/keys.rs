//! cosign key files: encrypted private keys and public keys, read and written as cosign 2.x does.
//!
//! Private key: PEM `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign 2.x) or `ENCRYPTED COSIGN PRIVATE KEY` (older cosign,
//! skopeo) around a [`sealed`](super::sealed) box whose plaintext is the PKCS#8 DER of an ECDSA P-256 key.
//! Public key: PEM `PUBLIC KEY` around a PKIX SubjectPublicKeyInfo. This module works on bytes the caller read
//! and returns bytes for the caller to write: it never opens files, never reads the environment (the password
//! is a [`Passphrase`] the binary's edge made) and never prints key material (`Debug` is redacted).

use super::sealed::{self, SealError};
use crate::signing::secret::Passphrase;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::der::asn1::ObjectIdentifier as Oid;
use p256::pkcs8::{
    spki::SubjectPublicKeyInfoRef, DecodePrivateKey, DecodePublicKey, EncodePrivateKey,
    EncodePublicKey, LineEnding, PrivateKeyInfo,
};
use rand_core::OsRng;
use std::fmt;

/// The PEM label cosign 2.x writes for private keys.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label older cosign and skopeo write; still read.
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The PEM label of a public key.
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

const ID_EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");

/// Why a key file cannot be used. Each is about the file or the password, so retrying never helps; the message
/// says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No PEM block, or a PEM block whose base64 is damaged.
    #[error("not a PEM key file: {0}")]
    NotPem(String),
    /// A PEM block of another kind (for example an unencrypted `PRIVATE KEY`).
    #[error("PEM block {found:?} is not a {expected}")]
    UnexpectedLabel {
        found: String,
        expected: &'static str,
    },
    /// The password does not open the private key.
    #[error("wrong password for the cosign private key (or the key file was altered)")]
    WrongPassword,
    /// The file is damaged: the envelope, or the key inside it, does not decode.
    #[error("corrupt cosign key: {0}")]
    Corrupt(String),
    /// Encryption parameters cosign would refuse.
    #[error("unsupported cosign key encryption: {0}")]
    UnsupportedEncryption(String),
    /// A well-formed key of a type signbus does not sign or verify with (RSA, Ed25519, another curve).
    #[error("the key is {0}; signbus's cosign keys are ECDSA P-256")]
    WrongKeyType(String),
}

impl From<SealError> for KeyError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::WrongPassword => KeyError::WrongPassword,
            SealError::Corrupt(m) => KeyError::Corrupt(m),
            other => KeyError::UnsupportedEncryption(other.to_string()),
        }
    }
}

/// A decrypted cosign signing key (ECDSA P-256). Zeroed on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct PrivateKey {
    pub(super) key: SigningKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey(<redacted>, public {})",
            self.public_key().fingerprint()
        )
    }
}

impl PrivateKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        PrivateKey {
            key: SigningKey::random(&mut OsRng),
        }
    }

    /// Reads and decrypts a cosign private key file's content. Costs one scrypt run (~64 MiB, a fraction of a
    /// second at N=65536): do it once at start, never per signature.
    pub fn from_encrypted_pem(pem: &[u8], password: &Passphrase) -> Result<Self, KeyError> {
        let (label, sealed_box) = decode_pem(pem)?;
        if label != SIGSTORE_PRIVATE_KEY_LABEL && label != COSIGN_PRIVATE_KEY_LABEL {
            return Err(KeyError::UnexpectedLabel {
                found: label,
                expected: "cosign encrypted private key (ENCRYPTED SIGSTORE PRIVATE KEY)",
            });
        }
        let der = sealed::open(&sealed_box, password.expose())?;
        let info = PrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| KeyError::Corrupt(format!("decrypted key is not PKCS#8: {e}")))?;
        check_p256(info.algorithm.oid, info.algorithm.parameters_oid().ok())?;
        let key = SigningKey::from_pkcs8_der(&der)
            .map_err(|e| KeyError::Corrupt(format!("decrypted P-256 key does not decode: {e}")))?;
        Ok(PrivateKey { key })
    }

    /// This key's PKCS#8 DER sealed under `password` in a PEM block labelled
    /// `ENCRYPTED SIGSTORE PRIVATE KEY`, as `cosign generate-key-pair` writes it. `scrypt_n` is cosign's 65536
    /// ([`sealed::DEFAULT_SCRYPT_N`]) unless a test wants a cheaper accepted value.
    pub fn to_encrypted_pem(
        &self,
        password: &Passphrase,
        scrypt_n: u64,
    ) -> Result<String, KeyError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Corrupt(format!("PKCS#8 encoding: {e}")))?;
        let sealed_box = sealed::seal(der.as_bytes(), password.expose(), scrypt_n)?;
        pem_rfc7468::encode_string(SIGSTORE_PRIVATE_KEY_LABEL, LineEnding::LF, &sealed_box)
            .map_err(|e| KeyError::Corrupt(format!("PEM encoding: {e}")))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }
}

/// A cosign verification key (ECDSA P-256).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub(super) key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM (PKIX SubjectPublicKeyInfo), as `cosign.pub` holds.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        if label != PUBLIC_KEY_LABEL {
            return Err(KeyError::UnexpectedLabel {
                found: label,
                expected: "public key (PUBLIC KEY)",
            });
        }
        Self::from_spki_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = SubjectPublicKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::Corrupt(format!("not a PKIX public key: {e}")))?;
        check_p256(info.algorithm.oid, info.algorithm.parameters_oid().ok())?;
        let key = VerifyingKey::from_public_key_der(der)
            .map_err(|e| KeyError::Corrupt(format!("P-256 public key does not decode: {e}")))?;
        Ok(PublicKey { key })
    }

    /// The PEM `cosign generate-key-pair` writes to `cosign.pub` (64-column base64, LF, final newline).
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key always encodes")
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .expect("a P-256 public key always encodes")
            .into_vec()
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo: a stable name for the key in logs and reports.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        format!("sha256:{:x}", sha2::Sha256::digest(self.spki_der()))
    }
}

/// The two files of a key pair, as `cosign generate-key-pair` writes them: `cosign.key` (mode 0600) and
/// `cosign.pub`.
#[derive(Debug)]
pub struct KeyPairFiles {
    pub private_pem: String,
    pub public_pem: String,
}

/// A new P-256 key pair sealed under `password` with cosign's default scrypt cost.
pub fn generate_key_pair(password: &Passphrase) -> Result<KeyPairFiles, KeyError> {
    let key = PrivateKey::generate();
    Ok(KeyPairFiles {
        private_pem: key.to_encrypted_pem(password, sealed::DEFAULT_SCRYPT_N)?,
        public_pem: key.public_key().to_pem(),
    })
}

/// The first PEM block in `pem` (text before it is skipped, as Go's `pem.Decode` does): label and content.
fn decode_pem(pem: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    let start = find(pem, b"-----BEGIN ")
        .ok_or_else(|| KeyError::NotPem("no \"-----BEGIN\" line".into()))?;
    let rest = &pem[start..];
    let end = find(rest, b"-----END ")
        .and_then(|e| find(&rest[e + 9..], b"-----").map(|d| e + 9 + d + 5))
        .ok_or_else(|| KeyError::NotPem("no \"-----END\" line".into()))?;
    let (label, bytes) =
        pem_rfc7468::decode_vec(&rest[..end]).map_err(|e| KeyError::NotPem(e.to_string()))?;
    Ok((label.to_owned(), bytes))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Refuses every key algorithm but ECDSA on P-256, naming what was found.
fn check_p256(algorithm: Oid, curve: Option<Oid>) -> Result<(), KeyError> {
    let name = |oid: Oid| -> String {
        match oid.to_string().as_str() {
            "1.2.840.113549.1.1.1" => "an RSA key".into(),
            "1.2.840.113549.1.1.10" => "an RSA-PSS key".into(),
            "1.3.101.112" => "an Ed25519 key".into(),
            "1.3.101.113" => "an Ed448 key".into(),
            "1.3.132.0.34" => "an ECDSA P-384 key".into(),
            "1.3.132.0.35" => "an ECDSA P-521 key".into(),
            "1.3.132.0.10" => "an ECDSA secp256k1 key".into(),
            other => format!("a key of algorithm {other}"),
        }
    };
    if algorithm != ID_EC_PUBLIC_KEY {
        return Err(KeyError::WrongKeyType(name(algorithm)));
    }
    match curve {
        Some(c) if c == PRIME256V1 => Ok(()),
        Some(c) => Err(KeyError::WrongKeyType(name(c))),
        None => Err(KeyError::WrongKeyType(
            "an EC key without a named curve".into(),
        )),
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
