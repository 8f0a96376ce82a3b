//! Signing: the [`Signer`] trait, key resolution ([`keys`]), passphrases ([`secret`]) and the two backends on
//! one thread pool ([`workers`]): gpgme ([`gpgme_pool`], the default) and in-process OpenPGP ([`in_process`]),
//! chosen by `signing.backend`; either makes a [`SigningPool`].
//!
//! The server asks "sign these bytes with the key whose fingerprint is F, in mode M" and gets bytes back. This
//! module owns keys and signatures; it never sees AMQP, request ids or claims.

#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod gpgme_pool;
pub mod in_process;
pub mod keys;
pub mod secret;
pub mod workers;

pub use keys::{load_passphrases, KeyConfig, KeyRing, Passphrases, ResolvedKey};
pub use secret::Passphrase;

use serde::{Deserialize, Serialize};
use std::future::Future;

/// Which signer a server runs (`signing.backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// gpgme: keys in a gpg home, one gpg process per signature, gpg-agent holds the secrets.
    #[default]
    Gpgme,
    /// Keys from armored files (`secret_key_file`), unlocked once and held in this process.
    InProcess,
}

impl BackendKind {
    /// The name `signing.backend` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Gpgme => "gpgme",
            BackendKind::InProcess => "in-process",
        }
    }
}

/// A running signer, whichever backend built it ([`SigningPool::gpgme`], [`SigningPool::in_process`]): the keys
/// it holds and the threads that sign with them.
pub struct SigningPool {
    workers: workers::Workers,
    keys: KeyRing,
}

impl SigningPool {
    /// The keys it signs with.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Number of signing threads.
    pub fn size(&self) -> usize {
        self.workers.size()
    }

    /// Number of threads signing right now.
    pub fn busy(&self) -> usize {
        self.workers.busy()
    }

    /// Stops taking jobs and waits for the threads to finish the ones they have.
    pub fn shutdown(self) {
        self.workers.shutdown();
    }

    /// Observes each signature's wait for a thread and its signing time into `timings` from now on.
    pub fn observe(&mut self, timings: workers::Timings) {
        self.workers.observe(timings);
    }
}

impl Signer for SigningPool {
    async fn sign(
        &self,
        fingerprint: &str,
        mode: SignMode,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, SignError> {
        self.workers.sign(fingerprint, mode, data).await
    }
}

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
