//! The `container_signature` request: one claim, one key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Body of a `container_signature` request, in pubtools-sign's member order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRequest {
    /// Key to sign with: last 8 hex digits of the fingerprint (pubtools-sign), a longer id, or a key alias.
    pub sig_key_id: String,
    /// Base64 of the claim JSON bytes.
    pub claim_file: String,
    /// Correlation id.
    pub request_id: String,
    /// ISO-8601 UTC creation time.
    pub created: String,
    /// Requester identity.
    pub requested_by: String,
    /// Repository path (`ns/repo`).
    pub repo: String,
    /// Optional key name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_keyname: Option<String>,
    /// Task id (under the requester's `task_id_attribute`) and any other extra members, kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContainerRequest {
    /// `manifest_digest`, which pubtools-sign sends after the task id.
    pub fn manifest_digest(&self) -> Option<&str> {
        self.extra.get("manifest_digest").and_then(Value::as_str)
    }
}
