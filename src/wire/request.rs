//! Typed requests: what a schema-valid body of each request type holds.
//!
//! [`Request::parse`] turns a body that passed its type's JSON Schema into one [`Request`] value, so code past
//! validation reads fields, not string keys. Extra members (a custom `task_id_attribute`) stay in `extra`, in
//! order. This module does no I/O and checks nothing the schemas do not: it only gives their result a type.

use super::{ContainerRequest, RequestType};
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Body of a `clearsign_signature` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClearSignRequest {
    /// Key to sign with (see [`ContainerRequest::sig_key_id`]).
    pub sig_key_id: String,
    /// Base64 of the text to clearsign.
    pub data: String,
    /// Correlation id.
    pub request_id: String,
    /// ISO-8601 UTC creation time.
    pub created: String,
    /// Requester identity.
    pub requested_by: String,
    /// The repository the requester says this is for; `None` (or empty) names none.
    pub repo: Option<String>,
    /// Optional key name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_keyname: Option<String>,
    /// Task id and any other extra members, kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of a `gpg_signature` (blob) request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// Key to sign with (see [`ContainerRequest::sig_key_id`]).
    pub sig_key_id: String,
    /// Base64 of the blob.
    pub artifact: String,
    /// Correlation id.
    pub request_id: String,
    /// ISO-8601 UTC creation time.
    pub created: String,
    /// Requester identity.
    pub requested_by: String,
    /// The repository the requester says this is for; `None` or `""` (pubtools-sign's value) names none.
    pub repo: Option<String>,
    /// Optional key name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_keyname: Option<String>,
    /// Task id and any other extra members, kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One claim of a `batch` request, to be signed with every key it lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchClaim {
    /// Base64 of the claim bytes.
    pub claim_file: String,
    /// Key names paired with `sig_key_ids` by position; empty strings mean none.
    #[serde(default)]
    pub sig_keynames: Vec<String>,
    /// Keys to sign with, one signature each.
    pub sig_key_ids: Vec<String>,
    /// The manifest digest the claim must name.
    pub manifest_digest: Digest,
    /// The repository path the claim's reference must be in.
    pub repo: String,
}

impl BatchClaim {
    /// Each key of this claim with its name (an empty or missing name is none), in order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.sig_key_ids.iter().enumerate().map(|(i, id)| {
            let name = self.sig_keynames.get(i).filter(|n| !n.is_empty());
            (id.as_str(), name.map(String::as_str))
        })
    }
}

/// Body of a `batch` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The claims.
    pub claims: Vec<BatchClaim>,
    /// Correlation id.
    pub request_id: String,
    /// ISO-8601 UTC creation time.
    pub created: String,
    /// Requester identity.
    pub requested_by: String,
    /// `pipeline_run_id` and any other extra members, kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of a `cosign_signature` request: what to sign, never the bytes to sign (the server builds the payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CosignRequest {
    /// The cosign key to sign with: a name or alias configured on the server.
    pub sig_key_id: String,
    /// The image manifest digest.
    pub manifest_digest: Digest,
    /// The docker reference the signature names.
    pub identity: String,
    /// Annotations for the payload's `optional` object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Correlation id.
    pub request_id: String,
    /// ISO-8601 UTC creation time.
    pub created: String,
    /// Requester identity.
    pub requested_by: String,
    /// Task id and any other extra members, kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A schema-valid request of any type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// `container_signature`.
    Container(ContainerRequest),
    /// `clearsign_signature`.
    ClearSign(ClearSignRequest),
    /// `gpg_signature`.
    Blob(BlobRequest),
    /// `batch`.
    Batch(BatchRequest),
    /// `cosign_signature`.
    Cosign(CosignRequest),
}

/// A body that passed its schema but does not fit its type: a schema and its type disagree (a bug here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} request does not fit its type: {reason}")]
pub struct ShapeError {
    /// The request type.
    pub kind: &'static str,
    /// serde's message.
    pub reason: String,
}

impl Request {
    /// Gives a body that passed `kind`'s schema its type.
    pub fn parse(kind: RequestType, body: &Value) -> Result<Self, ShapeError> {
        fn typed<T: serde::de::DeserializeOwned>(
            kind: RequestType,
            body: &Value,
        ) -> Result<T, ShapeError> {
            T::deserialize(body).map_err(|e| ShapeError {
                kind: kind.as_str(),
                reason: e.to_string(),
            })
        }
        Ok(match kind {
            RequestType::Container => Request::Container(typed(kind, body)?),
            RequestType::ClearSign => Request::ClearSign(typed(kind, body)?),
            RequestType::Blob => Request::Blob(typed(kind, body)?),
            RequestType::Batch => Request::Batch(typed(kind, body)?),
            RequestType::Cosign => Request::Cosign(typed(kind, body)?),
        })
    }

    /// The request's type.
    pub fn kind(&self) -> RequestType {
        match self {
            Request::Container(_) => RequestType::Container,
            Request::ClearSign(_) => RequestType::ClearSign,
            Request::Blob(_) => RequestType::Blob,
            Request::Batch(_) => RequestType::Batch,
            Request::Cosign(_) => RequestType::Cosign,
        }
    }

    /// The ISO-8601 creation time the requester stamped.
    pub fn created(&self) -> &str {
        match self {
            Request::Container(r) => &r.created,
            Request::ClearSign(r) => &r.created,
            Request::Blob(r) => &r.created,
            Request::Batch(r) => &r.created,
            Request::Cosign(r) => &r.created,
        }
    }

    /// Every (key id, key name) the request names, in order: one for single requests, each claim × key of a
    /// batch.
    pub fn keys(&self) -> Vec<(&str, Option<&str>)> {
        match self {
            Request::Container(r) => vec![(&r.sig_key_id, r.sig_keyname.as_deref())],
            Request::ClearSign(r) => vec![(&r.sig_key_id, r.sig_keyname.as_deref())],
            Request::Blob(r) => vec![(&r.sig_key_id, r.sig_keyname.as_deref())],
            Request::Batch(r) => r.claims.iter().flat_map(BatchClaim::keys).collect(),
            Request::Cosign(r) => vec![(&r.sig_key_id, None)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Schema;
    use serde_json::json;

    fn digest() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn each_schema_valid_body_gets_its_type_and_keeps_its_extra_members() {
        let common =
            json!({"request_id": "r", "created": "2024-01-01T00:00:00Z", "requested_by": "me"});
        let with = |extra: Value| {
            let mut b = common.as_object().unwrap().clone();
            b.extend(extra.as_object().unwrap().clone());
            Value::Object(b)
        };
        let bodies = [
            (
                RequestType::Container,
                with(
                    json!({"sig_key_id": "k", "claim_file": "e30=", "repo": "ns/r",
                "manifest_digest": digest(), "task": 7}),
                ),
            ),
            (
                RequestType::ClearSign,
                with(json!({"sig_key_id": "k", "data": "aGk=", "repo": null, "task": 7})),
            ),
            (
                RequestType::Blob,
                with(json!({"sig_key_id": "k", "artifact": "aGk=", "repo": "", "task": 7})),
            ),
            (
                RequestType::Batch,
                with(
                    json!({"claims": [{"claim_file": "e30=", "sig_key_ids": ["k", "l"],
                "sig_keynames": ["", "n"], "manifest_digest": digest(), "repo": "ns/r"}], "task": 7}),
                ),
            ),
        ];
        for (kind, body) in bodies {
            Schema::for_request(kind).validate(&body).unwrap();
            let req = Request::parse(kind, &body).unwrap();
            assert_eq!(req.kind(), kind);
            assert_eq!(req.created(), "2024-01-01T00:00:00Z");
            let expected_keys = if kind == RequestType::Batch {
                vec![("k", None), ("l", Some("n"))]
            } else {
                vec![("k", None)]
            };
            assert_eq!(req.keys(), expected_keys, "{kind:?}");
            let extra = match &req {
                Request::Container(r) => &r.extra,
                Request::ClearSign(r) => &r.extra,
                Request::Blob(r) => &r.extra,
                Request::Batch(r) => &r.extra,
                Request::Cosign(r) => &r.extra,
            };
            assert_eq!(extra.get("task"), Some(&json!(7)), "{kind:?}");
        }
    }

    #[test]
    fn a_body_that_does_not_fit_its_type_is_an_error_not_a_panic() {
        let e = Request::parse(RequestType::Batch, &json!({"claims": 1})).unwrap_err();
        assert!(
            e.to_string().starts_with("batch request does not fit"),
            "{e}"
        );
    }
}
