//! The "simple signing" layout both image signature formats share (containers-signature(5)): exactly
//! `{"critical": {"type", "image": {"docker-manifest-digest"}, "identity": {"docker-reference"}}, "optional"}`.
//! The atomic container signature claim (`claim`) and cosign's payload (`cosign::payload`) differ
//! only in the type string and in what they accept in `optional`; [`parse`] reads the shared part strictly (no
//! duplicate members, no unknown members, no trailing data) and leaves `optional` to them.
//!
//! A leaf over `strict_json`: no I/O, and nothing here is trusted until the signature over the same bytes is.

use crate::strict_json;
use serde_json::{Map, Value};

/// Why bytes are not a simple-signing document of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, JSON with duplicate members, or trailing data.
    Json(String),
    /// A member is missing, has the wrong type, or is not allowed (the message names it).
    Shape(String),
    /// `critical.type` is another type (the value found).
    WrongType(String),
}

/// The shared part of a parsed document; the digest and reference are as written (callers validate them).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `critical.image.docker-manifest-digest`.
    pub digest: String,
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
    /// `optional`, whatever JSON it is (callers decide what they accept).
    pub optional: Value,
}

/// Parses `bytes` as a simple-signing document whose `critical.type` must be `expected_type`.
pub fn parse(bytes: &[u8], expected_type: &str) -> Result<Document, Error> {
    let v = strict_json::parse(bytes).map_err(|e| Error::Json(e.to_string()))?;
    let top = exact_object(&v, "top level", &["critical", "optional"])?;
    let critical = exact_object(&top["critical"], "critical", &["type", "image", "identity"])?;
    let ty = string(&critical["type"], "critical.type")?;
    if ty != expected_type {
        return Err(Error::WrongType(ty.to_owned()));
    }
    let image = exact_object(
        &critical["image"],
        "critical.image",
        &["docker-manifest-digest"],
    )?;
    let digest = string(
        &image["docker-manifest-digest"],
        "critical.image.docker-manifest-digest",
    )?;
    let identity = exact_object(
        &critical["identity"],
        "critical.identity",
        &["docker-reference"],
    )?;
    let docker_reference = string(
        &identity["docker-reference"],
        "critical.identity.docker-reference",
    )?;
    Ok(Document {
        digest: digest.to_owned(),
        docker_reference: docker_reference.to_owned(),
        optional: top["optional"].clone(),
    })
}

/// `v` as an object holding exactly the members `names`.
fn exact_object<'a>(
    v: &'a Value,
    what: &str,
    names: &[&str],
) -> Result<&'a Map<String, Value>, Error> {
    let o = v
        .as_object()
        .ok_or_else(|| Error::Shape(format!("{what} must be an object")))?;
    if let Some(extra) = o.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(Error::Shape(format!("{what} has unknown member {extra:?}")));
    }
    if let Some(missing) = names.iter().find(|n| !o.contains_key(**n)) {
        return Err(Error::Shape(format!("{what} lacks member {missing:?}")));
    }
    Ok(o)
}

/// `v` as a string, or an error naming `what`.
pub fn string<'a>(v: &'a Value, what: &str) -> Result<&'a str, Error> {
    v.as_str()
        .ok_or_else(|| Error::Shape(format!("{what} must be a string")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_part_is_read_strictly_and_optional_is_left_to_the_caller() {
        let doc = br#"{"critical":{"type":"t","image":{"docker-manifest-digest":"d"},"identity":{"docker-reference":"r"}},"optional":null}"#;
        let parsed = parse(doc, "t").unwrap();
        assert_eq!(
            (parsed.digest.as_str(), parsed.docker_reference.as_str()),
            ("d", "r")
        );
        assert_eq!(parsed.optional, Value::Null);
        assert_eq!(parse(doc, "u").unwrap_err(), Error::WrongType("t".into()));
        let extra = br#"{"critical":{"type":"t","image":{"docker-manifest-digest":"d","x":1},"identity":{"docker-reference":"r"}},"optional":{}}"#;
        assert_eq!(
            parse(extra, "t").unwrap_err(),
            Error::Shape("critical.image has unknown member \"x\"".into())
        );
        let missing = br#"{"critical":{"type":"t","image":{},"identity":{"docker-reference":"r"}},"optional":{}}"#;
        assert!(matches!(parse(missing, "t"), Err(Error::Shape(m)) if m.contains("lacks member")));
        assert!(matches!(parse(b"{} x", "t"), Err(Error::Json(_))));
    }
}
