//! The JSON Schemas of `schemas/`, compiled into the binary and validated against.
//!
//! Both ends validate what they receive (and the requester what it sends) with [`Schema::validate`], which
//! reports every violation with its JSON pointer so an error reply can name the problem.

use serde_json::Value;
use std::sync::OnceLock;

/// One schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `schemas/container_signature.request.json`.
    ContainerRequest,
    /// `schemas/clearsign_signature.request.json`.
    ClearSignRequest,
    /// `schemas/gpg_signature.request.json`.
    BlobRequest,
    /// `schemas/batch.request.json`.
    BatchRequest,
    /// `schemas/cosign_signature.request.json`.
    CosignRequest,
    /// `schemas/request.properties.json`.
    RequestProperties,
    /// `schemas/reply.json`.
    Reply,
}

/// A document that breaks its schema; the message lists each violation as `pointer: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} does not match schema {file}: {details}")]
pub struct SchemaError {
    /// What was validated.
    pub what: &'static str,
    /// The schema file name.
    pub file: &'static str,
    /// The violations, `; `-separated.
    pub details: String,
}

impl Schema {
    /// Every schema, for tests and documentation.
    pub const ALL: [Schema; 7] = [
        Schema::ContainerRequest,
        Schema::ClearSignRequest,
        Schema::BlobRequest,
        Schema::BatchRequest,
        Schema::CosignRequest,
        Schema::RequestProperties,
        Schema::Reply,
    ];

    /// The body schema of a request type.
    pub fn for_request(kind: super::RequestType) -> Schema {
        match kind {
            super::RequestType::Container => Schema::ContainerRequest,
            super::RequestType::ClearSign => Schema::ClearSignRequest,
            super::RequestType::Blob => Schema::BlobRequest,
            super::RequestType::Batch => Schema::BatchRequest,
            super::RequestType::Cosign => Schema::CosignRequest,
        }
    }

    /// The schema's file name under `schemas/`.
    pub fn file(self) -> &'static str {
        match self {
            Schema::ContainerRequest => "container_signature.request.json",
            Schema::ClearSignRequest => "clearsign_signature.request.json",
            Schema::BlobRequest => "gpg_signature.request.json",
            Schema::BatchRequest => "batch.request.json",
            Schema::CosignRequest => "cosign_signature.request.json",
            Schema::RequestProperties => "request.properties.json",
            Schema::Reply => "reply.json",
        }
    }

    /// The schema text, as compiled in.
    pub fn text(self) -> &'static str {
        match self {
            Schema::ContainerRequest => {
                include_str!("../../schemas/container_signature.request.json")
            }
            Schema::ClearSignRequest => {
                include_str!("../../schemas/clearsign_signature.request.json")
            }
            Schema::BlobRequest => include_str!("../../schemas/gpg_signature.request.json"),
            Schema::BatchRequest => include_str!("../../schemas/batch.request.json"),
            Schema::CosignRequest => {
                include_str!("../../schemas/cosign_signature.request.json")
            }
            Schema::RequestProperties => include_str!("../../schemas/request.properties.json"),
            Schema::Reply => include_str!("../../schemas/reply.json"),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Schema::ContainerRequest => "container_signature request body",
            Schema::ClearSignRequest => "clearsign_signature request body",
            Schema::BlobRequest => "gpg_signature request body",
            Schema::BatchRequest => "batch request body",
            Schema::CosignRequest => "cosign_signature request body",
            Schema::RequestProperties => "request properties",
            Schema::Reply => "reply",
        }
    }

    fn validator(self) -> &'static jsonschema::Validator {
        static CELLS: [OnceLock<jsonschema::Validator>; Schema::ALL.len()] =
            [const { OnceLock::new() }; Schema::ALL.len()];
        let i = Schema::ALL
            .iter()
            .position(|s| *s == self)
            .expect("listed in ALL");
        CELLS[i].get_or_init(|| {
            let doc: Value = serde_json::from_str(self.text()).expect("compiled-in schema is JSON");
            jsonschema::draft202012::new(&doc).expect("compiled-in schema compiles")
        })
    }

    /// Validates `doc`, listing every violation.
    pub fn validate(self, doc: &Value) -> Result<(), SchemaError> {
        let errors: Vec<String> = self
            .validator()
            .iter_errors(doc)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{}: {}", if at.is_empty() { "/" } else { &at }, e)
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SchemaError {
                what: self.what(),
                file: self.file(),
                details: errors.join("; "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles() {
        for s in Schema::ALL {
            let _ = s.validator();
        }
    }

    #[test]
    fn violations_name_the_member() {
        let err = Schema::RequestProperties
            .validate(&serde_json::json!({"mtype": "nope"}))
            .unwrap_err();
        assert!(err.details.contains("/mtype"), "{err}");
    }
}
