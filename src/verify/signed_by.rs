//! The `signedBy` requirement: each signature from the lookaside store is checked with gpg against the
//! requirement's keys, and only a signature that checks out has its payload parsed as a claim, its digest
//! compared with the image's and its reference checked with the requirement's identity rule.

use super::lookaside::FetchedSignature;
use super::policy::{KeySource, SignedBy};
use super::report::{RequirementReport, SignatureVerdict};
use super::{gpg, ImageDigest};
use crate::claim::Claim;
use crate::reference::Reference;

fn load_keyrings(keys: &KeySource) -> Result<Vec<Vec<u8>>, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("reading key file {}: {e}", p.display()))
    };
    match keys {
        KeySource::Path(p) => Ok(vec![read(p)?]),
        KeySource::Paths(ps) => ps.iter().map(|p| read(p)).collect(),
        KeySource::Data(d) => Ok(vec![d.clone()]),
    }
}

pub(super) fn signed_by(
    sb: &SignedBy,
    image: &Reference,
    digest: &ImageDigest,
    fetched: Option<&[FetchedSignature]>,
) -> RequirementReport {
    let mut report = RequirementReport {
        kind: "signedBy".to_owned(),
        detail: Some(format!("identity {}", sb.identity)),
        satisfied: false,
        reason: String::new(),
        signatures: Vec::new(),
    };
    if sb.key_type != "GPGKeys" {
        report.reason = format!("keyType {:?} is not implemented", sb.key_type);
        return report;
    }
    let keys = load_keyrings(&sb.keys).and_then(|rings| {
        gpg::TrustedKeys::import(rings.iter().map(Vec::as_slice)).map_err(|e| e.to_string())
    });
    let mut keys = match keys {
        Ok(k) => k,
        Err(e) => {
            report.reason = e;
            return report;
        }
    };
    report.detail = Some(format!(
        "keys {}; identity {}",
        keys.fingerprints().collect::<Vec<_>>().join(", "),
        sb.identity
    ));
    let Some(fetched) = fetched else {
        report.reason =
            "no lookaside store is configured for this image, so no signature can be read"
                .to_owned();
        return report;
    };
    for f in fetched {
        let v = check_one(&mut keys, sb, image, digest, f);
        report.signatures.push(v);
    }
    let accepted = report.signatures.iter().find(|s| s.accepted);
    (report.satisfied, report.reason) = match (accepted, report.signatures.len()) {
        (Some(s), _) => (true, format!("signature-{} is accepted", s.index)),
        (None, 0) => (
            false,
            "a signature was required, but no signature exists".to_owned(),
        ),
        (None, n) => (false, format!("none of the {n} signatures is accepted")),
    };
    report
}

fn check_one(
    keys: &mut gpg::TrustedKeys,
    sb: &SignedBy,
    image: &Reference,
    digest: &ImageDigest,
    f: &FetchedSignature,
) -> SignatureVerdict {
    let mut v = SignatureVerdict {
        index: f.index,
        url: f.url.clone(),
        key: None,
        identity: None,
        signed_digest: None,
        accepted: false,
        reason: String::new(),
    };
    // 1. Cryptography first.
    let verified = match keys.verify(&f.bytes) {
        Ok(ok) => ok,
        Err(rejection) => {
            if let gpg::SignatureRejection::UnknownKey(k)
            | gpg::SignatureRejection::Invalid { fingerprint: k, .. } = &rejection
            {
                v.key = Some(k.clone());
            }
            v.reason = rejection.to_string();
            return v;
        }
    };
    v.key = Some(verified.fingerprint.clone());
    // 2. Only now parse the payload, strictly.
    let claim = match Claim::parse(&verified.payload) {
        Ok(c) => c,
        Err(e) => {
            v.reason = format!("signed payload rejected: {e}");
            return v;
        }
    };
    v.identity = Some(claim.docker_reference().to_owned());
    v.signed_digest = Some(claim.manifest_digest().to_string());
    // 3. The digest.
    if !digest.matches(claim.manifest_digest().as_str()) {
        v.reason = format!(
            "signed digest {} does not match the image digest {}",
            claim.manifest_digest(),
            digest.as_str()
        );
        return v;
    }
    // 4. The identity.
    match sb.identity.check(image, claim.docker_reference()) {
        Ok(()) => {
            v.accepted = true;
            v.reason = "accepted".to_owned();
        }
        Err(why) => v.reason = why,
    }
    v
}
