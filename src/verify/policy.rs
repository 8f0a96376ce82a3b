//! policy.json: the strict parser and the scope lookup for the `docker` transport.
//!
//! Owns the document's shape (containers-policy.json(5)): unknown members, duplicate members, empty requirement
//! lists and malformed requirements are errors, as in containers/image. It decides which requirement list
//! applies to an image; it never reads key files, fetches signatures or evaluates a requirement.

#[path = "policy_sigstore.rs"]
mod sigstore;
pub use sigstore::{SigstoreSigned, TrustRoot};

use super::identity::{IdentityError, SignedIdentity};
use crate::reference::Reference;
use crate::strict_json;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why a policy document is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not JSON, or JSON with duplicate members.
    #[error("policy is not valid JSON: {0}")]
    Json(String),
    /// The document breaks containers-policy.json(5); the message names the member.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// A `signedIdentity` is malformed.
    #[error("invalid policy: {0}")]
    Identity(#[from] IdentityError),
}

/// Where a requirement's public keys come from (keyrings for `signedBy`, PEM public keys for `sigstoreSigned`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// `keyPath`: one file.
    Path(PathBuf),
    /// `keyPaths`: several files.
    Paths(Vec<PathBuf>),
    /// `keyData`: one key (or keyring), base64-decoded.
    Data(Vec<u8>),
    /// `keyDatas` (`sigstoreSigned` only): several keys, each base64-decoded.
    Datas(Vec<Vec<u8>>),
}

impl KeySource {
    /// The key material with a name for each piece (the file, or `keyData` / `keyDatas[i]`), reading the files
    /// now. `Err` names the file that cannot be read.
    pub fn load(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map(|b| (p.display().to_string(), b))
                .map_err(|e| format!("reading key file {}: {e}", p.display()))
        };
        match self {
            KeySource::Path(p) => Ok(vec![read(p)?]),
            KeySource::Paths(ps) => ps.iter().map(|p| read(p)).collect(),
            KeySource::Data(d) => Ok(vec![("keyData".to_owned(), d.clone())]),
            KeySource::Datas(ds) => Ok(ds
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("keyDatas[{i}]"), d.clone()))
                .collect()),
        }
    }
}

/// A `signedBy` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    /// `keyType` as written; only `GPGKeys` is implemented (as in containers/image).
    pub key_type: String,
    /// The trusted keys.
    pub keys: KeySource,
    /// Which references a signature may name.
    pub identity: SignedIdentity,
}

/// One policy requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// `insecureAcceptAnything`.
    InsecureAcceptAnything,
    /// `reject`.
    Reject,
    /// `signedBy`.
    SignedBy(SignedBy),
    /// `sigstoreSigned`.
    SigstoreSigned(SigstoreSigned),
    /// `signedBaseLayer`: parsed, never satisfied (containers/image does not implement it either).
    SignedBaseLayer,
}

impl Requirement {
    /// The `type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy(_) => "signedBy",
            Requirement::SigstoreSigned(_) => "sigstoreSigned",
            Requirement::SignedBaseLayer => "signedBaseLayer",
        }
    }
}

/// Which entry of the policy applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyScope {
    /// `transports.docker["<scope>"]` (`""` for the transport-wide entry).
    Docker(String),
    /// The top-level `default`.
    Default,
}

impl std::fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyScope::Docker(s) => write!(f, "transports.docker[{s:?}]"),
            PolicyScope::Default => f.write_str("default"),
        }
    }
}

/// A parsed policy.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: Vec<Requirement>,
    docker: BTreeMap<String, Vec<Requirement>>,
}

impl Policy {
    /// Parses a policy document strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        let v = strict_json::parse(bytes).map_err(|e| PolicyError::Json(e.to_string()))?;
        let top = obj(&v, "the policy")?;
        only(top, "the policy", &["default", "transports"])?;
        let default = match top.get("default") {
            Some(d) => requirements(d, "default")?,
            None => return Err(invalid("the default policy is missing")),
        };
        let mut docker = BTreeMap::new();
        if let Some(t) = top.get("transports") {
            for (transport, scopes) in obj(t, "transports")? {
                let what = format!("transports.{transport}");
                for (scope, reqs) in obj(scopes, &what)? {
                    let list = requirements(reqs, &format!("{what}[{scope:?}]"))?;
                    if transport == "docker" {
                        docker.insert(scope.clone(), list);
                    }
                }
            }
        }
        Ok(Policy { default, docker })
    }

    /// The requirements for a docker image and the entry they came from: the exact reference, the
    /// repository, each namespace upward, the host, `*.domain` wildcards, the transport's `""`, then `default`.
    pub fn requirements_for(&self, image: &Reference) -> (&[Requirement], PolicyScope) {
        let candidates = image
            .policy_identity()
            .into_iter()
            .chain(image.policy_namespaces())
            .chain(std::iter::once(String::new()));
        for scope in candidates {
            if let Some(reqs) = self.docker.get(&scope) {
                return (reqs, PolicyScope::Docker(scope));
            }
        }
        (&self.default, PolicyScope::Default)
    }
}

fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(msg.into())
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PolicyError> {
    v.as_object()
        .ok_or_else(|| invalid(format!("{what} must be a JSON object")))
}

fn string<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str, PolicyError> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(format!("{what}: {key:?} must be a string"))),
        None => Err(invalid(format!("{what}: {key:?} is missing"))),
    }
}

/// A non-empty list of strings.
fn string_list<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Vec<&'a str>, PolicyError> {
    let list = m[key]
        .as_array()
        .ok_or_else(|| invalid(format!("{what}: {key:?} must be a list")))?;
    if list.is_empty() {
        return Err(invalid(format!("{what}: {key:?} must not be empty")));
    }
    list.iter()
        .map(|p| {
            p.as_str()
                .ok_or_else(|| invalid(format!("{what}: {key:?} members must be strings")))
        })
        .collect()
}

/// Standard base64, decoded.
fn base64_data(b64: &str, key: &str, what: &str) -> Result<Vec<u8>, PolicyError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| invalid(format!("{what}: {key:?} is not base64: {e}")))
}

fn only(m: &Map<String, Value>, what: &str, allowed: &[&str]) -> Result<(), PolicyError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!("{what} has unknown member {k:?}"))),
        None => Ok(()),
    }
}

fn requirements(v: &Value, what: &str) -> Result<Vec<Requirement>, PolicyError> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid(format!("{what} must be a list of requirements")))?;
    if list.is_empty() {
        return Err(invalid(format!(
            "{what}: a list of requirements must not be empty"
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| requirement(r, &format!("{what}[{i}]")))
        .collect()
}

const KEY_TYPES: &[&str] = &[
    "GPGKeys",
    "signedByGPGKeys",
    "X509Certificates",
    "signedByX509CAs",
];

fn requirement(v: &Value, what: &str) -> Result<Requirement, PolicyError> {
    let m = obj(v, what)?;
    let ty = string(m, "type", what)?;
    let what = format!("{what} ({ty})");
    match ty {
        "insecureAcceptAnything" => {
            only(m, &what, &["type"])?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            only(m, &what, &["type"])?;
            Ok(Requirement::Reject)
        }
        "signedBy" => signed_by(m, &what).map(Requirement::SignedBy),
        "sigstoreSigned" => sigstore::sigstore_signed(m, &what).map(Requirement::SigstoreSigned),
        "signedBaseLayer" => {
            only(m, &what, &["type", "baseLayerIdentity"])?;
            // As containers/image: the identity must be there and be a valid identity rule, though the
            // requirement is never satisfied.
            let identity = m.get("baseLayerIdentity").ok_or_else(|| {
                invalid(format!("{what}: \"baseLayerIdentity\" must be specified"))
            })?;
            signed_identity(identity, &format!("{what}.baseLayerIdentity"))?;
            Ok(Requirement::SignedBaseLayer)
        }
        other => Err(invalid(format!(
            "{what}: unknown policy requirement type {other:?}"
        ))),
    }
}

fn signed_by(m: &Map<String, Value>, what: &str) -> Result<SignedBy, PolicyError> {
    only(
        m,
        what,
        &[
            "type",
            "keyType",
            "keyPath",
            "keyPaths",
            "keyData",
            "signedIdentity",
        ],
    )?;
    let key_type = string(m, "keyType", what)?;
    if !KEY_TYPES.contains(&key_type) {
        return Err(invalid(format!("{what}: unknown keyType {key_type:?}")));
    }
    let sources: Vec<&str> = ["keyPath", "keyPaths", "keyData"]
        .into_iter()
        .filter(|k| m.contains_key(*k))
        .collect();
    let keys = match sources.as_slice() {
        ["keyPath"] => KeySource::Path(string(m, "keyPath", what)?.into()),
        ["keyPaths"] => KeySource::Paths(
            string_list(m, "keyPaths", what)?
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        ),
        ["keyData"] => KeySource::Data(base64_data(string(m, "keyData", what)?, "keyData", what)?),
        [] => {
            return Err(invalid(format!(
                "{what}: exactly one of keyPath, keyPaths and keyData must be specified, none is"
            )))
        }
        _ => {
            return Err(invalid(format!(
                "{what}: exactly one of keyPath, keyPaths and keyData must be specified, found {}",
                sources.join(", ")
            )))
        }
    };
    let identity = match m.get("signedIdentity") {
        None => SignedIdentity::default(),
        Some(v) => signed_identity(v, &format!("{what}.signedIdentity"))?,
    };
    Ok(SignedBy {
        key_type: key_type.to_owned(),
        keys,
        identity,
    })
}

fn signed_identity(v: &Value, what: &str) -> Result<SignedIdentity, PolicyError> {
    let m = obj(v, what)?;
    let ty = string(m, "type", what)?;
    let exact_fields = |fields: &[&str]| -> Result<(), PolicyError> {
        only(m, what, fields)?;
        for f in fields {
            string(m, f, what)?;
        }
        Ok(())
    };
    Ok(match ty {
        "matchExact" => {
            exact_fields(&["type"])?;
            SignedIdentity::MatchExact
        }
        "matchRepoDigestOrExact" => {
            exact_fields(&["type"])?;
            SignedIdentity::MatchRepoDigestOrExact
        }
        "matchRepository" => {
            exact_fields(&["type"])?;
            SignedIdentity::MatchRepository
        }
        "exactReference" => {
            exact_fields(&["type", "dockerReference"])?;
            SignedIdentity::exact_reference(string(m, "dockerReference", what)?)?
        }
        "exactRepository" => {
            exact_fields(&["type", "dockerRepository"])?;
            SignedIdentity::exact_repository(string(m, "dockerRepository", what)?)?
        }
        "remapIdentity" => {
            exact_fields(&["type", "prefix", "signedPrefix"])?;
            SignedIdentity::remap(string(m, "prefix", what)?, string(m, "signedPrefix", what)?)?
        }
        other => {
            return Err(invalid(format!(
                "{what}: unknown signedIdentity type {other:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_containers_image_refuses() {
        for bad in [
            r#"{}"#,
            r#"{"default":[]}"#,
            r#"{"default":[{"type":"reject"}],"extra":1}"#,
            r#"{"default":[{"type":"reject","x":1}]}"#,
            r#"{"default":[{"type":"reject"}],"default":[{"type":"reject"}]}"#,
            r#"{"default":[{"type":"nope"}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"a","keyData":""}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"Other","keyPath":"a"}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"a","signedIdentity":{"type":"matchExact","x":1}}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"a","signedIdentity":{"type":"exactReference"}}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"a","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/a"}}]}"#,
            r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"x":[]}}}"#,
            r#"{"default":[{"type":"signedBaseLayer"}]}"#,
            r#"{"default":[{"type":"signedBaseLayer","baseLayerIdentity":"matchExact"}]}"#,
            r#"{"default":[{"type":"signedBaseLayer","baseLayerIdentity":null}]}"#,
            r#"{"default":[{"type":"signedBaseLayer","baseLayerIdentity":{"type":"nope"}}]}"#,
        ] {
            assert!(Policy::parse(bad.as_bytes()).is_err(), "accepted {bad}");
        }
        let base =
            r#"{"default":[{"type":"signedBaseLayer","baseLayerIdentity":{"type":"matchExact"}}]}"#;
        assert!(Policy::parse(base.as_bytes()).is_ok());
    }

    #[test]
    fn picks_the_most_specific_docker_scope() {
        let p = Policy::parse(
            br#"{"default":[{"type":"reject"}],"transports":{"docker":{
                "":[{"type":"insecureAcceptAnything"}],
                "*.example.com":[{"type":"reject"}],
                "reg.example.com":[{"type":"reject"}],
                "reg.example.com/ns":[{"type":"reject"}],
                "reg.example.com/ns/repo:1":[{"type":"reject"}]},
              "atomic":{"whatever":[{"type":"reject"}]}}}"#,
        )
        .unwrap();
        let scope = |s: &str| {
            let r = Reference::parse_normalized(s).unwrap();
            p.requirements_for(&r).1.to_string()
        };
        assert_eq!(
            scope("reg.example.com/ns/repo:1"),
            r#"transports.docker["reg.example.com/ns/repo:1"]"#
        );
        assert_eq!(
            scope("reg.example.com/ns/repo:2"),
            r#"transports.docker["reg.example.com/ns"]"#
        );
        assert_eq!(
            scope("reg.example.com/other:2"),
            r#"transports.docker["reg.example.com"]"#
        );
        assert_eq!(
            scope("b.example.com/x:1"),
            r#"transports.docker["*.example.com"]"#
        );
        assert_eq!(scope("quay.io/x:1"), r#"transports.docker[""]"#);
    }
}
