//! The `signedBy` requirement: each signature from the lookaside store is checked with gpg against the
//! requirement's keys, and only a signature that checks out has its payload parsed as a claim, its digest
//! compared with the image's and its reference checked with the requirement's identity rule.

use super::lookaside::FetchedSignature;
use super::policy::SignedBy;
use super::report::{RequirementReport, SignatureVerdict};
use super::verdict::{conclude, judge_claim, pending};
use super::{gpg, ImageDigest};
use crate::claim::Claim;
use crate::reference::Reference;

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
    let keys = sb.keys.load().and_then(|rings| {
        gpg::TrustedKeys::import(rings.iter().map(|(_, r)| r.as_slice())).map_err(|e| e.to_string())
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
    conclude(
        &mut report,
        "a signature was required, but no signature exists".to_owned(),
    );
    report
}

fn check_one(
    keys: &mut gpg::TrustedKeys,
    sb: &SignedBy,
    image: &Reference,
    digest: &ImageDigest,
    f: &FetchedSignature,
) -> SignatureVerdict {
    let mut v = pending(f.index, f.url.clone());
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
    // 3. The digest, 4. the identity.
    judge_claim(
        &mut v,
        &sb.identity,
        image,
        digest,
        claim.docker_reference(),
        claim.manifest_digest().as_str(),
    );
    v
}
