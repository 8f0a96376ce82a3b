//! The `sigstoreSigned` requirement of policy.json: its members, parsed and checked as strictly as the rest of
//! the policy (a child of [`super`], sharing its helpers).
//!
//! The shape rules are containers/image's: exactly one trust root (`keyPath`, `keyPaths`, `keyData`, `keyDatas`,
//! `fulcio` or `pki`), at most one Rekor key source, `fulcio` only with one and `pki` never with one, and
//! `signedIdentity` defaulting to `matchRepoDigestOrExact`. A document that breaks them is an invalid policy.
//! What parses but signbus cannot check (Fulcio, Rekor, PKI) is kept as a fact for the evaluation to refuse;
//! this module never reads key files or judges signatures.

use super::{
    base64_data, invalid, obj, only, signed_identity, string, string_list, KeySource, PolicyError,
};
use crate::verify::identity::SignedIdentity;
use serde_json::{Map, Value};
use std::path::PathBuf;

const MEMBERS: &[&str] = &[
    "type",
    "keyPath",
    "keyPaths",
    "keyData",
    "keyDatas",
    "fulcio",
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "rekorPublicKeyDatas",
    "pki",
    "signedIdentity",
];

const TRUST_ROOTS: &[&str] = &[
    "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki",
];

const REKOR_KEYS: &[&str] = &[
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "rekorPublicKeyDatas",
];

/// What a `sigstoreSigned` requirement trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustRoot {
    /// Public keys (`keyPath`, `keyPaths`, `keyData`, `keyDatas`).
    Keys(KeySource),
    /// `fulcio`: certificates from a Fulcio CA (not supported by signbus).
    Fulcio,
    /// `pki`: certificates from a private CA (not supported by signbus).
    Pki,
}

/// A `sigstoreSigned` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreSigned {
    /// The trust root.
    pub trust: TrustRoot,
    /// The Rekor public key member given, if any (not supported by signbus).
    pub rekor: Option<&'static str>,
    /// Which references a signature may name.
    pub identity: SignedIdentity,
}

impl SigstoreSigned {
    /// Why signbus cannot evaluate this requirement, or `None` when it can (public keys, no Rekor).
    pub fn unsupported(&self) -> Option<String> {
        let mut what = Vec::new();
        match self.trust {
            TrustRoot::Keys(_) => {}
            TrustRoot::Fulcio => what.push("fulcio (keyless certificates)"),
            TrustRoot::Pki => what.push("pki (certificates from a private CA)"),
        }
        if let Some(r) = self.rekor {
            what.push(r);
        }
        (!what.is_empty()).then(|| {
            format!(
                "{} {} not supported by signbus: it checks sigstore signatures against public keys only \
                 (keyPath, keyPaths, keyData, keyDatas), without a transparency log",
                what.join(" and "),
                if what.len() == 1 { "is" } else { "are" }
            )
        })
    }
}

/// Parses the members of a `sigstoreSigned` object.
pub(super) fn sigstore_signed(
    m: &Map<String, Value>,
    what: &str,
) -> Result<SigstoreSigned, PolicyError> {
    only(m, what, MEMBERS)?;
    let present = |keys: &[&'static str]| -> Vec<&'static str> {
        keys.iter()
            .copied()
            .filter(|k| m.contains_key(*k))
            .collect()
    };
    let roots = present(TRUST_ROOTS);
    let trust = match roots.as_slice() {
        ["keyPath"] => {
            let p = string(m, "keyPath", what)?;
            if p.is_empty() {
                return Err(invalid(format!("{what}: \"keyPath\" must not be empty")));
            }
            TrustRoot::Keys(KeySource::Path(PathBuf::from(p)))
        }
        ["keyPaths"] => TrustRoot::Keys(KeySource::Paths(
            string_list(m, "keyPaths", what)?
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        )),
        ["keyData"] => TrustRoot::Keys(KeySource::Data(base64_data(
            string(m, "keyData", what)?,
            "keyData",
            what,
        )?)),
        ["keyDatas"] => TrustRoot::Keys(KeySource::Datas(
            string_list(m, "keyDatas", what)?
                .into_iter()
                .map(|d| base64_data(d, "keyDatas", what))
                .collect::<Result<_, _>>()?,
        )),
        ["fulcio"] => {
            obj(&m["fulcio"], &format!("{what}.fulcio"))?;
            TrustRoot::Fulcio
        }
        ["pki"] => {
            obj(&m["pki"], &format!("{what}.pki"))?;
            TrustRoot::Pki
        }
        found => {
            return Err(invalid(format!(
            "{what}: exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki must be \
                 specified, found {}",
            if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            }
        )))
        }
    };
    let rekor = match present(REKOR_KEYS).as_slice() {
        [] => None,
        [one] => {
            match *one {
                "rekorPublicKeyPath" => drop(string(m, one, what)?),
                "rekorPublicKeyData" => drop(base64_data(string(m, one, what)?, one, what)?),
                _ => drop(string_list(m, one, what)?),
            }
            Some(*one)
        }
        many => {
            return Err(invalid(format!(
                "{what}: at most one of {} may be specified, found {}",
                REKOR_KEYS.join(", "),
                many.join(", ")
            )))
        }
    };
    match (&trust, rekor) {
        (TrustRoot::Fulcio, None) => {
            return Err(invalid(format!(
                "{what}: fulcio needs one of {}",
                REKOR_KEYS.join(", ")
            )))
        }
        (TrustRoot::Pki, Some(r)) => {
            return Err(invalid(format!("{what}: {r} cannot be used with pki")))
        }
        _ => {}
    }
    let identity = match m.get("signedIdentity") {
        None => SignedIdentity::default(),
        Some(v) => signed_identity(v, &format!("{what}.signedIdentity"))?,
    };
    Ok(SigstoreSigned {
        trust,
        rekor,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Policy, Requirement};
    use super::*;

    fn parse(req: &str) -> Result<SigstoreSigned, PolicyError> {
        let doc = format!(r#"{{"default":[{{"type":"sigstoreSigned",{req}}}]}}"#);
        let p = Policy::parse(doc.as_bytes())?;
        match &p.default[0] {
            Requirement::SigstoreSigned(s) => Ok(s.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shapes_containers_image_refuses_are_invalid_policies() {
        for bad in [
            r#""signedIdentity":{"type":"matchExact"}"#,
            r#""keyPath":"a","keyData":"YQ==""#,
            r#""keyPath":"""#,
            r#""keyPaths":[]"#,
            r#""keyDatas":[]"#,
            r#""keyDatas":["%%"]"#,
            r#""keyData":"not base64!""#,
            r#""keyPath":"a","fulcio":{}"#,
            r#""fulcio":{"caPath":"x"}"#,
            r#""fulcio":"x","rekorPublicKeyPath":"r""#,
            r#""pki":{},"rekorPublicKeyPath":"r""#,
            r#""keyPath":"a","rekorPublicKeyPath":"r","rekorPublicKeyData":"YQ==""#,
            r#""keyPath":"a","other":1"#,
            r#""keyPath":"a","signedIdentity":{"type":"nope"}"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn keys_parse_and_unsupported_trust_roots_are_named() {
        let k = parse(r#""keyDatas":["YQ==","Yg=="]"#).unwrap();
        assert_eq!(
            k.trust,
            TrustRoot::Keys(KeySource::Datas(vec![b"a".to_vec(), b"b".to_vec()]))
        );
        assert_eq!(k.identity, SignedIdentity::MatchRepoDigestOrExact);
        assert_eq!(k.unsupported(), None);
        let f = parse(r#""fulcio":{"caPath":"x"},"rekorPublicKeyPath":"r""#).unwrap();
        let why = f.unsupported().unwrap();
        assert!(
            why.contains("fulcio") && why.contains("rekorPublicKeyPath"),
            "{why}"
        );
        assert!(why.contains("not supported by signbus"), "{why}");
        let r = parse(r#""keyPath":"k","rekorPublicKeyDatas":["YQ=="]"#).unwrap();
        assert!(r
            .unsupported()
            .unwrap()
            .starts_with("rekorPublicKeyDatas is not"));
        assert!(parse(r#""pki":{}"#)
            .unwrap()
            .unsupported()
            .unwrap()
            .contains("pki"));
    }
}
