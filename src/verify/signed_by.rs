//! The `signedBy` requirement: each signature from the lookaside store is checked with gpg against the
//! requirement's keys, and only a signature that checks out has its payload parsed as a claim, its digest
//! compared with the image's and its reference checked with the requirement's identity rule.

use super::lookaside::FetchedSignature;
use super::policy::SignedBy;
use super::report::{RequirementReport, SignatureVerdict};
use super::verdict::{evaluate_signatures, judge_payload, pending, NO_SIGNATURE};
use super::{gpg, ImageDigest};
use crate::claim::Claim;
use crate::reference::Reference;

pub(super) fn signed_by(
    sb: &SignedBy,
    image: &Reference,
    digest: &ImageDigest,
    fetched: Option<&[FetchedSignature]>,
) -> RequirementReport {
    let keys = if sb.key_type == "GPGKeys" {
        sb.keys.load().and_then(|rings| {
            let keys = gpg::TrustedKeys::import(rings.iter().map(|(_, r)| r.as_slice()))
                .map_err(|e| e.to_string())?;
            let names = keys.fingerprints().map(str::to_owned).collect();
            Ok((keys, names))
        })
    } else {
        Err(format!("keyType {:?} is not implemented", sb.key_type))
    };
    let found = fetched
        .map(|f| (f, NO_SIGNATURE.to_owned()))
        .ok_or_else(|| {
            "no lookaside store is configured for this image, so no signature can be read"
                .to_owned()
        });
    evaluate_signatures("signedBy", &sb.identity, keys, found, |keys, f| {
        check_one(keys, sb, image, digest, f)
    })
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
    // 2. Only now parse the payload, strictly; 3. the digest, 4. the identity.
    let parsed = Claim::parse(&verified.payload).map(|c| {
        (
            c.docker_reference().to_owned(),
            c.manifest_digest().to_string(),
        )
    });
    judge_payload(v, &sb.identity, image, digest, parsed)
}
