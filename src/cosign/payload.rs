//! The cosign "simple signing" payload: the JSON document a cosign signature signs.
//!
//! [`Payload::to_json`] writes it byte for byte as cosign 2.5 does; [`ParsedPayload::parse`] reads one as strictly
//! as containers/image does before it trusts a sigstore signature. This module owns the payload's format only: it
//! never verifies cryptography, never touches a registry, and never trusts bytes it has not parsed.
//!
//! Where the bytes come from: cosign marshals sigstore's `payload.SimpleContainerImage` with Go's
//! `encoding/json`. That fixes the member order to the Go struct order (`critical` { `identity`, `image`, `type` },
//! then `optional`), writes `optional` as `null` when there are no annotations and as an object with its keys
//! sorted when there are, escapes strings the Go way (`<`, `>`, `&`, U+2028 and U+2029 as `\u…`; `\b`, `\f`,
//! `\n`, `\r`, `\t` short; other control characters `\u00xx`, lowercase hex) and adds no whitespace and no
//! trailing newline.

use crate::reference::{self, Reference, ReferenceError};
use crate::simple_signing;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The value of `critical.type` in every cosign container image signature.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// Why a payload cannot be built or parsed. Fix the input; retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not JSON, JSON with duplicate members, or trailing data.
    #[error("cosign payload is not valid JSON: {0}")]
    Json(String),
    /// A member is missing, has the wrong type, or is not allowed.
    #[error("cosign payload {0}")]
    Shape(String),
    /// `critical.type` is not `cosign container image signature`.
    #[error("cosign payload type is {0:?}, expected {PAYLOAD_TYPE:?}")]
    WrongType(String),
    /// `critical.image.docker-manifest-digest` is not a digest.
    #[error("cosign payload docker-manifest-digest is invalid: {0}")]
    Digest(ReferenceError),
    /// The identity to sign is not a docker reference.
    #[error("cosign identity {identity:?} is not a valid image reference: {source}")]
    Identity {
        identity: String,
        source: ReferenceError,
    },
}

/// The identity cosign signs by default for `reference`: the repository without tag or digest, named as
/// go-containerregistry's `Repository.Name()` does (`docker.io` is spelled `index.docker.io`).
pub fn default_identity(reference: &Reference) -> String {
    match reference.domain() {
        reference::DEFAULT_DOMAIN => format!("index.docker.io/{}", reference.path()),
        domain => format!("{domain}/{}", reference.path()),
    }
}

/// A payload to sign: identity, manifest digest and string annotations (cosign's `-a key=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    docker_reference: String,
    manifest_digest: String,
    annotations: BTreeMap<String, String>,
}

impl Payload {
    /// A payload for the image `digest` signed as `identity` (kept as given: cosign does not normalise a
    /// `--sign-container-identity`), with `annotations` in `optional`. The identity must parse as a docker
    /// reference and the digest must be `sha256:<64 hex>` or `sha512:<128 hex>`.
    pub fn new(
        identity: &str,
        digest: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<Self, PayloadError> {
        Reference::parse_normalized(identity).map_err(|source| PayloadError::Identity {
            identity: identity.to_owned(),
            source,
        })?;
        reference::validate_digest(digest).map_err(PayloadError::Digest)?;
        Ok(Payload {
            docker_reference: identity.to_owned(),
            manifest_digest: digest.to_owned(),
            annotations,
        })
    }

    /// `critical.identity.docker-reference`.
    pub fn docker_reference(&self) -> &str {
        &self.docker_reference
    }

    /// `critical.image.docker-manifest-digest`.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }

    /// The annotations written into `optional`.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The bytes cosign 2.5 would sign for the same identity, digest and annotations.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str(r#"{"critical":{"identity":{"docker-reference":"#);
        go_json_string(&mut out, &self.docker_reference);
        out.push_str(r#"},"image":{"docker-manifest-digest":"#);
        go_json_string(&mut out, &self.manifest_digest);
        out.push_str(r#"},"type":"#);
        go_json_string(&mut out, PAYLOAD_TYPE);
        out.push_str(r#"},"optional":"#);
        if self.annotations.is_empty() {
            out.push_str("null");
        } else {
            out.push('{');
            for (i, (k, v)) in self.annotations.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(&mut out, k);
                out.push(':');
                go_json_string(&mut out, v);
            }
            out.push('}');
        }
        out.push('}');
        out.into_bytes()
    }
}

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it (HTML-safe escaping, Go 1.22+ short
/// escapes for backspace and form feed). BTreeMap's byte-wise key order is also Go's map key order.
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A payload read back from a registry, parsed as containers/image parses it. Nothing here is trusted until the
/// signature over the same bytes verified.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPayload {
    docker_reference: String,
    manifest_digest: String,
    creator: Option<String>,
    timestamp: Option<i64>,
    optional: Option<Map<String, Value>>,
}

impl ParsedPayload {
    /// Parses payload bytes strictly: exactly `critical` and `optional` at the top (`optional` may be `null`),
    /// exactly `type`, `image` and `identity` in `critical`, one member in each of `image` and `identity`, the
    /// exact type string, a valid digest, a string `optional.creator` and an integer `optional.timestamp` when
    /// present; no duplicate members and no trailing data. Other `optional` members are kept, unread.
    ///
    /// Differences from containers/image, all stricter: invalid UTF-8 is refused (Go replaces it) and a
    /// `sha384:` digest is refused (go-digest accepts it; no registry writes one).
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let doc = simple_signing::parse(bytes, PAYLOAD_TYPE)?;
        let (optional, creator, timestamp) = match &doc.optional {
            Value::Null => (None, None, None),
            Value::Object(o) => {
                // A JSON null leaves Go's target at its zero value, and still counts as present.
                let creator = match o.get("creator") {
                    None => None,
                    Some(Value::Null) => Some(String::new()),
                    Some(c) => Some(simple_signing::string(c, "optional.creator")?.to_owned()),
                };
                let timestamp = match o.get("timestamp") {
                    None => None,
                    Some(Value::Null) => Some(0),
                    Some(t) => Some(integer(t)?),
                };
                (Some(o.clone()), creator, timestamp)
            }
            _ => return Err(shape("optional must be an object or null")),
        };
        reference::validate_digest(&doc.digest).map_err(PayloadError::Digest)?;
        let (docker_reference, digest) = (doc.docker_reference.as_str(), doc.digest.as_str());
        Ok(ParsedPayload {
            docker_reference: docker_reference.to_owned(),
            manifest_digest: digest.to_owned(),
            creator,
            timestamp,
            optional,
        })
    }

    /// `critical.identity.docker-reference`, as written (not validated: the policy's identity rules judge it).
    pub fn docker_reference(&self) -> &str {
        &self.docker_reference
    }

    /// `critical.image.docker-manifest-digest`.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }

    /// `optional.creator`, when present.
    pub fn creator(&self) -> Option<&str> {
        self.creator.as_deref()
    }

    /// `optional.timestamp` (unix seconds), when present.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The `optional` object (`None` when it was `null`).
    pub fn optional(&self) -> Option<&Map<String, Value>> {
        self.optional.as_ref()
    }
}

fn shape(msg: impl Into<String>) -> PayloadError {
    PayloadError::Shape(msg.into())
}

impl From<simple_signing::Error> for PayloadError {
    fn from(e: simple_signing::Error) -> Self {
        match e {
            simple_signing::Error::Json(m) => PayloadError::Json(m),
            simple_signing::Error::Shape(m) => PayloadError::Shape(m),
            simple_signing::Error::WrongType(t) => PayloadError::WrongType(t),
        }
    }
}

/// A JSON number with no fractional part (Go reads it as a float64, then insists it is whole).
fn integer(v: &Value) -> Result<i64, PayloadError> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(f as i64),
        _ => Err(shape("optional.timestamp must be an integer")),
    }
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
