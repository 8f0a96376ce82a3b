//! Signing: the [`Signer`] trait, key resolution ([`keys`]), passphrases ([`secret`]) and the gpgme backend
//! ([`gpgme_pool`]).
//!
//! The server asks "sign these bytes with the key whose fingerprint is F, in mode M" and gets bytes back. This
//! module owns keys and signatures; it never sees AMQP, request ids or claims.

#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod gpgme_pool;
pub mod keys;
pub mod secret;

pub use gpgme_pool::GpgmePool;
pub use keys::{load_passphrases, KeyConfig, KeyRing, Passphrases, ResolvedKey};
pub use secret::Passphrase;

use std::future::Future;

/// The OpenPGP output shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    /// A binary signed message (RFC 4880 §11.3) wrapping the data: what an image signature is.
    Normal,
    /// An armored cleartext signature (`-----BEGIN PGP SIGNED MESSAGE-----`).
    Clear,
    /// A detached signature, armored or binary.
    Detached { armor: bool },
}

/// Why a key named in a request or in the configuration cannot be used. Retrying never helps: the request or
/// the configuration must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No configured key matches: the request names a key this server does not hold.
    #[error("unknown signing key {0:?}: not one of the keys this server is configured to use")]
    Unknown(String),
    /// More than one configured key matches: use a longer id or a key name.
    #[error("signing key {query:?} is ambiguous: it matches {candidates}")]
    Ambiguous { query: String, candidates: String },
    /// Key id and key name resolve to different keys.
    #[error("sig_key_id {key_id:?} and sig_keyname {key_name:?} name different keys")]
    Mismatch { key_id: String, key_name: String },
    /// A key in the configuration cannot be used (missing, not a signing key, expired, revoked). Fix the config.
    #[error("configured key {id:?} is unusable: {reason}")]
    BadConfigured { id: String, reason: String },
}

/// Why a signature was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key cannot be used. Retrying will not help.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// gpg failed to sign. Retrying may help (agent restarted, transient resource shortage).
    #[error("gpg failed to sign with {fingerprint}: {reason}")]
    Gpg { fingerprint: String, reason: String },
    /// The signing pool has shut down. Retry on another server.
    #[error("signing pool is shut down")]
    Closed,
}

impl SignError {
    /// Whether trying the same signature again on this server may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SignError::Gpg { .. })
    }
}

/// Something that can make OpenPGP signatures with keys named by full fingerprint.
pub trait Signer: Send + Sync + 'static {
    /// Signs `data` with the key `fingerprint` (one that [`KeyRing`] resolved) in `mode`.
    fn sign(
        &self,
        fingerprint: &str,
        mode: SignMode,
        data: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, SignError>> + Send;
}
