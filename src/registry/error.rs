//! The registry client's errors, and which of them a retry may fix.

use std::path::PathBuf;

/// Why a registry operation failed. [`RegistryError::is_retryable`] says whether trying again later may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// 401 after answering the registry's challenge, or 403: the credentials are missing, wrong, or lack the
    /// permission. Not retryable.
    #[error("{url}: the registry refused access ({status}){detail}")]
    Unauthorized {
        url: String,
        status: u16,
        detail: String,
    },
    /// 404: no such manifest, tag or blob (for a `.sig` tag: no signature yet). Not an outage; not retryable.
    #[error("{url}: not found{detail}")]
    NotFound { url: String, detail: String },
    /// 5xx or 429: the registry failed or is overloaded. Retryable.
    #[error("{url}: the registry answered {status}{detail}")]
    Server {
        url: String,
        status: u16,
        detail: String,
    },
    /// Another 4xx: the request was refused as invalid. Not retryable.
    #[error("{url}: the registry refused the request ({status}){detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    /// The connection failed (refused, reset, timed out, TLS handshake). Retryable.
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    /// A manifest of a media type the caller did not ask for. Not retryable.
    #[error("{url}: manifest media type {found:?} is not one of {expected:?}")]
    WrongMediaType {
        url: String,
        found: String,
        expected: Vec<String>,
    },
    /// A manifest or blob larger than the cap. Not retryable.
    #[error("{url}: larger than the {limit}-byte limit")]
    TooLarge { url: String, limit: u64 },
    /// Content whose digest is not the one asked for. Not retryable.
    #[error("{url}: content digest is {got}, expected {expected}")]
    DigestMismatch {
        url: String,
        expected: String,
        got: String,
    },
    /// The registry broke the protocol (e.g. an upload answer without `Location`). Not retryable.
    #[error("{url}: unexpected registry answer: {reason}")]
    Protocol { url: String, reason: String },
    /// The token server did not issue a token. Retryable when it failed with 5xx or a connection error.
    #[error("token server {url}: {reason}")]
    Token {
        url: String,
        reason: String,
        retryable: bool,
    },
    /// A token realm on plain http while plain http is not allowed: credentials would travel in clear.
    #[error("token realm {realm} is plain http, which is not allowed")]
    HttpNotAllowed { realm: String },
    /// An auth file could not be read or parsed. Not retryable.
    #[error("auth file {}: {reason}", path.display())]
    AuthFile { path: PathBuf, reason: String },
    /// The TLS settings could not be built. Not retryable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl RegistryError {
    /// True when the same request may succeed later (outage, overload, network); false when the request,
    /// credentials, or content must change first.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Server { .. } | RegistryError::Transport { .. } => true,
            RegistryError::Token { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// ` (CODE: message; …)` from a distribution error body `{"errors":[{"code","message"}]}`, or the start of any
/// other body; empty when there is none.
pub(super) fn detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|x| format!("{}: {}", x.code, x.message))
            .collect();
        if !parts.is_empty() {
            return format!(" ({})", parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(200).collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}
