//! The `authorization` section of the server configuration: which requester may use which keys, for which
//! request types and repositories. Shapes only; `server::authorize` resolves and enforces them.

use crate::wire::RequestType;
use serde::{Deserialize, Serialize};

/// The `authorization` section of the server configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Take the AMQP `user-id` of a request as its authenticated identity. Only for brokers that validate it
    /// against the publishing connection's user (RabbitMQ does, on AMQP 1.0 and 0-9-1).
    #[serde(default)]
    pub trust_user_id: bool,
    /// Refuse requests whose identity is not authenticated (no trusted `user-id`).
    #[serde(default)]
    pub require_authenticated: bool,
    /// The grants; an identity not listed may sign with nothing.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// What one requester identity may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The identity: a broker user name, or a `requested_by` value.
    pub requester: String,
    /// Keys it may sign with: names, aliases, key ids or fingerprints of configured gpg keys, or names and
    /// aliases of configured cosign keys.
    pub keys: Vec<String>,
    /// Repository prefixes it may sign for (`ns/` matches `ns/app`; `ns/app` matches only `ns/app`). Empty: all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Request types it may send (`container`, `batch`, `clearsign`, `blob`, `cosign`). Absent: every type when
    /// `repositories` is empty, else only `container`, `batch` and `cosign` — clearsign and blob requests carry no
    /// repository the server can verify, so a repository-restricted grant allows them only when it lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<RequestType>>,
}
