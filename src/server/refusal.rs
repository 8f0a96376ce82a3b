//! [`Refusal`]: every reason the server answers a request without a signature, with the exact message the
//! requester reads and the [`Outcome`] class it is counted under.
//!
//! Each message names the problem and, where one exists, the setting that caused it. This module owns the
//! wording; it never decides anything and never touches the broker or the signer.

use super::outcome::Outcome;
use crate::claim::ClaimError;
use crate::signing::{KeyError, SignError};
use crate::wire::{RequestType, SchemaError, ShapeError};

/// Why a request was answered with errors instead of a signature.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Delivered `limit` times or more without being settled (a poison message). Not retried.
    #[error("request was delivered {deliveries} times without being settled (limit {limit}); not processing it again")]
    Redelivered { deliveries: u32, limit: u32 },
    /// Over `server.max_message_bytes`.
    #[error("request body is {size} bytes; this server accepts at most {limit} (server.max_message_bytes)")]
    TooLarge { size: usize, limit: usize },
    /// Properties or body break their JSON Schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The body passed its schema but not its type (schema and type disagree).
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// `created` is not a time.
    #[error("created {0:?} is not an ISO-8601 UTC time")]
    BadCreated(String),
    /// Past the deadline its sender set (AMQP absolute-expiry-time or TTL).
    #[error("request expired {late_secs:.1}s ago (the deadline its sender set); not signed")]
    PastDeadline { late_secs: f64 },
    /// Older than `server.max_request_age_secs`.
    #[error(
        "request expired: created {age_secs}s ago, over this server's limit of {max_secs}s \
         (server.max_request_age_secs); not signed"
    )]
    TooOld { age_secs: u64, max_secs: u64 },
    /// The request id was used before for another request.
    #[error("request_id {0:?} was already used for a different request; refusing to answer it with another signature")]
    Conflict(String),
    /// A base64 member does not decode.
    #[error("{member} is not valid base64: {reason}")]
    Encoding {
        member: &'static str,
        reason: String,
    },
    /// The `manifest_digest` property and body member differ.
    #[error("manifest_digest property {property} differs from the body's {body}")]
    DigestProperty { property: String, body: String },
    /// The claim does not parse.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// The claim names another digest than the request.
    #[error("claim names manifest digest {claim} but the request's manifest_digest is {request}")]
    ClaimDigest { claim: String, request: String },
    /// The claim names a reference outside the request's repository.
    #[error("claim names {reference} which is not in the request's repo {repo:?}")]
    ClaimRepository { reference: String, repo: String },
    /// Clearsign or blob data that image verifiers would take for a container signature claim.
    #[error(
        "data is a JSON object with a \"critical\" member, which image verifiers (containers/image: skopeo, \
         podman) would accept as an atomic container signature claim; not signed (image signatures are made \
         by container_signature requests, whose claims the server checks)"
    )]
    CrossType,
    /// The request names a cosign key this server does not hold.
    #[error("unknown cosign key {0:?}: not one of the cosign keys this server is configured to use (signing.cosign_keys)")]
    UnknownCosignKey(String),
    /// The identity or digest of a cosign request does not make a payload.
    #[error(transparent)]
    CosignPayload(#[from] crate::cosign::PayloadError),
    /// The key named is unknown, ambiguous or inconsistent.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Authorization requires an authenticated requester.
    #[error(
        "requester {who} is not authenticated; this server only signs for requesters the broker authenticated \
         (AMQP user-id)"
    )]
    NotAuthenticated { who: String },
    /// No grant of the requester names the key.
    #[error("requester {who} is not authorised to sign with key {key}")]
    KeyNotGranted { who: String, key: String },
    /// The requester's grants for the key do not list the request type.
    #[error("requester {who} is not authorised to send {} requests with key {key}{}", kind.name(),
        if kind.has_verified_repository() { "" } else {
            " (its requests name no repository the server can verify, so a grant restricted to repositories \
             must list the type)"
        })]
    TypeNotGranted {
        who: String,
        kind: RequestType,
        key: String,
    },
    /// The requester's grants for the key do not cover the repository.
    #[error("requester {who} is not authorised to sign for repository {repo:?} with key {key}")]
    RepositoryNotGranted {
        who: String,
        repo: String,
        key: String,
    },
    /// The request names no repository but every grant for the key is restricted to repositories.
    #[error(
        "requester {who} is not authorised to sign with key {key} for a request that names no repository \
         (its grants are restricted to repositories)"
    )]
    NoRepository { who: String, key: String },
    /// The signer failed on every attempt (or has shut down).
    #[error(transparent)]
    Signer(SignError),
}

impl Refusal {
    /// The metric class of this refusal.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::Redelivered { .. } => Outcome::Redelivered,
            Refusal::TooLarge { .. } => Outcome::TooLarge,
            Refusal::Schema(_) | Refusal::Shape(_) | Refusal::BadCreated(_) => Outcome::Schema,
            Refusal::PastDeadline { .. } | Refusal::TooOld { .. } => Outcome::Expired,
            Refusal::Conflict(_) => Outcome::Conflict,
            Refusal::Encoding { .. } => Outcome::Encoding,
            Refusal::DigestProperty { .. }
            | Refusal::Claim(_)
            | Refusal::ClaimDigest { .. }
            | Refusal::ClaimRepository { .. } => Outcome::Claim,
            Refusal::CrossType => Outcome::CrossType,
            Refusal::Key(_) | Refusal::UnknownCosignKey(_) => Outcome::Key,
            Refusal::CosignPayload(_) => Outcome::Claim,
            Refusal::NotAuthenticated { .. }
            | Refusal::KeyNotGranted { .. }
            | Refusal::TypeNotGranted { .. }
            | Refusal::RepositoryNotGranted { .. }
            | Refusal::NoRepository { .. } => Outcome::Forbidden,
            Refusal::Signer(SignError::Key(_)) => Outcome::Key,
            Refusal::Signer(_) => Outcome::Signer,
        }
    }
}

impl From<SignError> for Refusal {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Key(k) => Refusal::Key(k),
            other => Refusal::Signer(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_its_setting_and_counts_under_its_class() {
        let r = Refusal::TooLarge { size: 10, limit: 5 };
        assert_eq!(r.outcome(), Outcome::TooLarge);
        assert!(r.to_string().contains("server.max_message_bytes"));
        let r = Refusal::TypeNotGranted {
            who: "\"ci\"".into(),
            kind: RequestType::Blob,
            key: "k".into(),
        };
        assert_eq!(r.outcome(), Outcome::Forbidden);
        assert!(r
            .to_string()
            .contains("send blob requests with key k (its requests name no repository"));
        let r = Refusal::TypeNotGranted {
            who: "\"ci\"".into(),
            kind: RequestType::Container,
            key: "k".into(),
        };
        assert!(
            r.to_string()
                .ends_with("send container requests with key k"),
            "{r}"
        );
        let gpg = SignError::Gpg {
            fingerprint: "F".into(),
            reason: "agent gone".into(),
        };
        assert_eq!(Refusal::from(gpg).outcome(), Outcome::Signer);
        let key = SignError::Key(KeyError::Unknown("x".into()));
        assert_eq!(Refusal::from(key).outcome(), Outcome::Key);
    }
}
