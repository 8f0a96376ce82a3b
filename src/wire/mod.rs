//! The wire format both ends share: typed request and reply messages and their JSON Schemas.
//!
//! Every message on the bus is JSON text with AMQP application properties beside it. [`schema`] holds the
//! compiled-in schemas of `schemas/`; [`request`] the typed requests ([`container`] the container one); [`reply`] the reply envelope. This
//! module does no I/O and knows nothing of AMQP or gpg.

pub mod container;
pub mod reply;
pub mod request;
pub mod schema;
pub mod template;

pub use container::ContainerRequest;
pub use reply::Reply;
pub use request::{
    BatchClaim, BatchRequest, BlobRequest, ClearSignRequest, CosignRequest, Request, ShapeError,
};
pub use schema::{Schema, SchemaError};

use serde_json::{Map, Value};

/// Request types (`mtype` property). In configuration (authorization grants) they are named `container`,
/// `clearsign`, `blob`, `batch` and `cosign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestType {
    /// Atomic container signature over a claim.
    Container,
    /// Cleartext signature over text.
    #[serde(rename = "clearsign")]
    ClearSign,
    /// Detached signature over a blob.
    Blob,
    /// Several container claims in one message.
    Batch,
    /// A cosign (sigstore) signature of an image digest under an identity; the server builds the payload.
    Cosign,
}

impl RequestType {
    /// Every request type.
    pub const ALL: [RequestType; 5] = [
        RequestType::Container,
        RequestType::ClearSign,
        RequestType::Blob,
        RequestType::Batch,
        RequestType::Cosign,
    ];

    /// The `mtype` string.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Container => "container_signature",
            RequestType::ClearSign => "clearsign_signature",
            RequestType::Blob => "gpg_signature",
            RequestType::Batch => "batch",
            RequestType::Cosign => "cosign_signature",
        }
    }

    /// Parses an `mtype` string.
    pub fn from_mtype(s: &str) -> Option<Self> {
        RequestType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The type a message's application properties name: an absent `mtype` means a container request (as
    /// pubtools-sign's first messages had none); an unrecognised one is `None`.
    pub fn from_properties(properties: &Map<String, Value>) -> Option<Self> {
        match properties.get("mtype") {
            None => Some(RequestType::Container),
            Some(v) => v.as_str().and_then(RequestType::from_mtype),
        }
    }

    /// The name configuration uses for it (`container`, `clearsign`, `blob`, `batch`, `cosign`).
    pub fn name(self) -> &'static str {
        match self {
            RequestType::Container => "container",
            RequestType::ClearSign => "clearsign",
            RequestType::Blob => "blob",
            RequestType::Batch => "batch",
            RequestType::Cosign => "cosign",
        }
    }

    /// Whether requests of this type name a repository the server verifies (their claims must name a reference
    /// inside it; a cosign payload names exactly the identity the request gives), so a repository prefix can
    /// restrict them.
    pub fn has_verified_repository(self) -> bool {
        matches!(
            self,
            RequestType::Container | RequestType::Batch | RequestType::Cosign
        )
    }

    /// The reply member that carries this type's result.
    pub fn result_field(self) -> &'static str {
        match self {
            RequestType::Container | RequestType::Batch => "signed_claim",
            RequestType::ClearSign => "signed_data",
            RequestType::Blob => "signed_payload",
            RequestType::Cosign => "cosign_signature",
        }
    }
}

/// Why a message body is not a usable JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not UTF-8 JSON, or has duplicate members.
    #[error("message body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("message body is not a JSON object")]
    NotObject,
}

/// Decodes a message body to a JSON object, refusing duplicate members.
pub fn decode_object(body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match crate::strict_json::parse(body).map_err(|e| DecodeError::Json(e.to_string()))? {
        Value::Object(m) => Ok(m),
        _ => Err(DecodeError::NotObject),
    }
}
