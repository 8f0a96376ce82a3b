//! The atomic container signature claim: the JSON document an image signature signs.
//!
//! [`Claim::to_json`] writes the canonical form signbus emits; [`Claim::parse`] reads one strictly, as a verifier
//! must (exact top level, no unknown critical members, no duplicate members, exact type string). This module
//! owns the payload's format only: it never verifies cryptography and never trusts input it has not parsed.

use crate::digest::Digest;
use crate::reference::{Reference, ReferenceError};
use crate::simple_signing;
use serde_json::{json, Map};

/// The value of `critical.type` in every atomic container signature.
pub const CLAIM_TYPE: &str = "atomic container signature";

/// Why bytes are not a valid claim. The message names the offending member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// Not JSON, or JSON with duplicate members.
    #[error("claim is not valid JSON: {0}")]
    Json(String),
    /// A member is missing, has the wrong type, or is not allowed.
    #[error("claim {0}")]
    Shape(String),
    /// `critical.type` is not `atomic container signature`.
    #[error("claim type is {0:?}, expected \"atomic container signature\"")]
    WrongType(String),
    /// `critical.identity.docker-reference` does not parse.
    #[error("claim docker-reference {reference:?} is invalid: {source}")]
    Reference {
        reference: String,
        source: ReferenceError,
    },
    /// `critical.image.docker-manifest-digest` is not a digest.
    #[error("claim docker-manifest-digest is invalid: {0}")]
    Digest(ReferenceError),
}

/// A valid claim. Its fields are private so that every `Claim` is one [`Claim::new`] or [`Claim::parse`] made:
/// the digest is valid and the reference parses (and is kept parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    manifest_digest: Digest,
    docker_reference: String,
    reference: Reference,
    creator: Option<String>,
    timestamp: Option<i64>,
}

impl Claim {
    /// A claim for `reference` (normalised, tagged) at `digest`, stamped with signbus as creator.
    pub fn new(
        reference: &Reference,
        digest: &str,
        timestamp: Option<i64>,
    ) -> Result<Self, ClaimError> {
        let digest = parse_digest(digest)?;
        let reference = reference.clone().with_default_tag();
        Ok(Claim {
            manifest_digest: digest,
            docker_reference: reference.to_string(),
            reference,
            creator: Some(concat!("signbus ", env!("CARGO_PKG_VERSION")).to_owned()),
            timestamp,
        })
    }

    /// The compact JSON bytes signbus signs for this claim.
    pub fn to_json(&self) -> Vec<u8> {
        let mut optional = Map::new();
        if let Some(c) = &self.creator {
            optional.insert("creator".into(), json!(c));
        }
        if let Some(t) = self.timestamp {
            optional.insert("timestamp".into(), json!(t));
        }
        let v = json!({
            "critical": {
                "type": CLAIM_TYPE,
                "image": {"docker-manifest-digest": self.manifest_digest},
                "identity": {"docker-reference": self.docker_reference},
            },
            "optional": optional,
        });
        serde_json::to_vec(&v).expect("a JSON value always serialises")
    }

    /// Parses claim bytes strictly, per containers-signature(5): the shared layout ([`simple_signing::parse`]),
    /// a valid digest and reference, and an `optional` object with a string `creator` and an integer `timestamp`
    /// when present.
    pub fn parse(bytes: &[u8]) -> Result<Self, ClaimError> {
        let doc = simple_signing::parse(bytes, CLAIM_TYPE)?;
        let digest = parse_digest(&doc.digest)?;
        let reference = Reference::parse_normalized(&doc.docker_reference).map_err(|source| {
            ClaimError::Reference {
                reference: doc.docker_reference.clone(),
                source,
            }
        })?;
        let optional = doc
            .optional
            .as_object()
            .ok_or_else(|| shape("optional must be an object"))?;
        let creator = match optional.get("creator") {
            None => None,
            Some(c) => Some(simple_signing::string(c, "optional.creator")?.to_owned()),
        };
        let timestamp = match optional.get("timestamp") {
            None => None,
            Some(t) => Some(
                t.as_i64()
                    .ok_or_else(|| shape("optional.timestamp must be an integer"))?,
            ),
        };
        Ok(Claim {
            manifest_digest: digest,
            docker_reference: doc.docker_reference,
            reference,
            creator,
            timestamp,
        })
    }

    /// `critical.image.docker-manifest-digest`.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// `critical.identity.docker-reference`, as written in the claim.
    pub fn docker_reference(&self) -> &str {
        &self.docker_reference
    }

    /// The claim's reference, normalised.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// `optional.creator`, when present.
    pub fn creator(&self) -> Option<&str> {
        self.creator.as_deref()
    }

    /// `optional.timestamp` (unix seconds), when present.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
}

fn parse_digest(d: &str) -> Result<Digest, ClaimError> {
    Digest::parse(d).map_err(|e| ClaimError::Digest(ReferenceError::BadDigest(e.0)))
}

/// Whether a verifier could take `data` as an atomic container signature claim: after any UTF-8 byte order marks
/// and whitespace it is a JSON object with a top-level member named `critical` (compared without ASCII case;
/// escapes such as `\u0063` decoded). Deliberately wider than [`Claim::parse`] and than containers/image's
/// parser: it needs no valid claim, no valid JSON after that member, and no depth limit (the rest of the object
/// is skipped by counting brackets, so deep nesting cannot hide a member), so no claim a verifier accepts is
/// missed. Clearsign and blob signatures over such data could pass for image signatures (a cleartext signature's
/// text, or a detached signature's data wrapped in a literal packet, is what a verifier parses), so the server
/// never makes them.
pub fn looks_like_claim(data: &[u8]) -> bool {
    let mut s = Scanner { data, at: 0 };
    s.skip_space();
    if s.next() != Some(b'{') {
        return false;
    }
    loop {
        s.skip_space();
        if s.next() != Some(b'"') {
            return false;
        }
        // The member name as a JSON decoder sees it (escapes decoded). One serde_json will not decode (invalid
        // UTF-8, a lone surrogate) holds U+FFFD for Go's decoder, so it cannot be `critical` either.
        let name = serde_json::from_slice::<String>(s.string()).unwrap_or_default();
        if name.eq_ignore_ascii_case("critical") {
            return true;
        }
        s.skip_space();
        if s.next() != Some(b':') {
            return false;
        }
        s.skip_space();
        if !s.skip_value() {
            return false;
        }
        s.skip_space();
        if s.next() != Some(b',') {
            return false;
        }
    }
}

/// A forgiving, non-recursive reader of JSON text for [`looks_like_claim`]: it only finds where strings and
/// values end.
struct Scanner<'a> {
    data: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.at).copied();
        self.at += 1;
        b
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }

    /// Skips JSON whitespace, the other ASCII white space and UTF-8 byte order marks.
    fn skip_space(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) => self.at += 1,
                Some(0xEF) if self.data[self.at..].starts_with(b"\xEF\xBB\xBF") => self.at += 3,
                _ => return,
            }
        }
    }

    /// Skips the rest of a string (after its opening quote); returns its raw JSON text, quotes included.
    fn string(&mut self) -> &[u8] {
        let start = self.at - 1;
        while let Some(b) = self.next() {
            match b {
                b'"' => break,
                b'\\' => self.at += 1,
                _ => {}
            }
        }
        &self.data[start..self.at.min(self.data.len())]
    }

    /// Skips one value: a string, an object or array (by counting brackets outside strings), or a scalar.
    /// False at the end of the input.
    fn skip_value(&mut self) -> bool {
        match self.peek() {
            None => false,
            Some(b'"') => {
                self.at += 1;
                self.string();
                true
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(b) = self.next() {
                    match b {
                        b'"' => {
                            self.string();
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return true;
                            }
                        }
                        _ => {}
                    }
                }
                false
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.at += 1;
                }
                true
            }
        }
    }
}

fn shape(msg: impl Into<String>) -> ClaimError {
    ClaimError::Shape(msg.into())
}

impl From<simple_signing::Error> for ClaimError {
    fn from(e: simple_signing::Error) -> Self {
        match e {
            simple_signing::Error::Json(m) => ClaimError::Json(m),
            simple_signing::Error::Shape(m) => ClaimError::Shape(m),
            simple_signing::Error::WrongType(t) => ClaimError::WrongType(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

    #[test]
    fn round_trips_its_own_form() {
        let r = Reference::parse_normalized("registry.example.com/ns/repo:1").unwrap();
        let c = Claim::new(&r, D, Some(1700000000)).unwrap();
        let bytes = c.to_json();
        let s = String::from_utf8(bytes.clone()).unwrap();
        assert!(s.starts_with(r#"{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:5fec"#), "{s}");
        assert_eq!(Claim::parse(&bytes).unwrap(), c);
    }

    #[test]
    fn accepts_pubtools_sign_claims() {
        let s = format!(
            r#"{{"critical": {{"type": "atomic container signature", "image": {{"docker-manifest-digest": "{D}"}}, "identity": {{"docker-reference": "registry.example.com/ns/repo0:tag-0"}}}}, "optional": {{"creator": "pubtools-sign"}}}}"#
        );
        let c = Claim::parse(s.as_bytes()).unwrap();
        assert_eq!(c.creator(), Some("pubtools-sign"));
        assert_eq!(c.timestamp(), None);
        assert_eq!(c.reference().path(), "ns/repo0");
    }

    #[test]
    fn refuses_what_a_verifier_refuses() {
        let ok = format!(
            r#""critical":{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{D}"}},"identity":{{"docker-reference":"a.io/b:c"}}}}"#
        );
        let cases = [
            format!(r#"{{{ok}}}"#),
            format!(r#"{{{ok},"optional":{{}},"extra":1}}"#),
            format!(r#"{{{ok},"optional":{{}},"optional":{{}}}}"#),
            format!(r#"{{{ok},"optional":{{"timestamp":"1"}}}}"#),
            format!(r#"{{{ok},"optional":{{"creator":1}}}}"#),
            ok.replace("atomic container signature", "other")
                .replacen('"', "{\"", 1)
                + r#","optional":{}}"#,
            format!(
                r#"{{{},"optional":{{}}}}"#,
                ok.replace(r#""a.io/b:c""#, r#""A B""#)
            ),
            format!(r#"{{{},"optional":{{}}}}"#, ok.replace(D, "sha256:00")),
            format!(
                r#"{{{},"optional":{{}}}}"#,
                ok.replace(r#""image":{"#, r#""image":{"x":1,"#)
            ),
            "not json".to_owned(),
        ];
        for c in cases {
            assert!(Claim::parse(c.as_bytes()).is_err(), "accepted {c}");
        }
        let good = format!(r#"{{{ok},"optional":{{"future":[1]}}}}"#);
        assert!(Claim::parse(good.as_bytes()).is_ok());
    }

    #[test]
    fn claim_lookalikes_are_recognised_in_every_disguise() {
        let r = Reference::parse_normalized("registry.example.com/evil/app:1").unwrap();
        let compact = String::from_utf8(Claim::new(&r, D, None).unwrap().to_json()).unwrap();
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&compact).unwrap(),
        )
        .unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let lookalikes = [
            compact.clone(),
            pretty.clone(),
            pretty.replace('\n', "\r\n"),
            format!(" \t\r\n{compact}\n\n"),
            format!("\u{feff}{compact}"),
            format!("\u{feff}\u{feff} {pretty}"),
            compact.replacen("critical", "\\u0063ritical", 1),
            compact.replacen("critical", "CRITICAL", 1),
            // Members before `critical`, nested deeper than any recursive parser goes, with brackets in strings.
            format!(
                r#"{{"optional": {{"x": {deep}, "y": "]}}\"{{"}}, {}"#,
                &compact[1..]
            ),
            format!(
                r#"{{"a":1,"b":-2.5e3,"c":true,"d":null,"e":"\u00e9\ud83d\ude00",{}"#,
                &compact[1..]
            ),
            // Not a valid claim, still refused: what follows the member does not matter.
            r#"{"critical": "#.to_owned(),
        ];
        for text in &lookalikes {
            assert!(looks_like_claim(text.as_bytes()), "missed {:.80}", text);
        }
        let others = [
            "",
            "hello",
            "[{\"critical\": {}}]",
            "{\"optional\": {\"critical\": 1}}",
            "{\"x\": \"\\\"critical\"}",
            "{\"criticality\": 1}",
            "x{\"critical\": {}}",
            "{\"a\": [1, {\"critical\": 2}]}",
            "{\"a\" 1, \"critical\": 2}",
        ];
        for text in others {
            assert!(!looks_like_claim(text.as_bytes()), "refused {text}");
        }
    }
}
