//! The steps every signature requirement shares once a signature's cryptography has checked out and its payload
//! parsed: the signed digest against the image's, then the signed reference against the requirement's
//! `signedIdentity`; and the requirement's conclusion from its per-signature verdicts. It never sees untrusted
//! bytes: callers hand it values from verified, parsed payloads only.

use super::identity::SignedIdentity;
use super::report::{RequirementReport, SignatureVerdict};
use super::ImageDigest;
use crate::reference::Reference;

/// A verdict for the signature `index` read from `url`, not yet judged.
pub(super) fn pending(index: usize, url: String) -> SignatureVerdict {
    SignatureVerdict {
        index,
        url,
        key: None,
        identity: None,
        signed_digest: None,
        accepted: false,
        reason: String::new(),
    }
}

/// Records the verified claim (`signed_ref` at `signed_digest`) in `v` and accepts it when the digest names the
/// image and `rule` accepts the reference; otherwise says why not.
pub(super) fn judge_claim(
    v: &mut SignatureVerdict,
    rule: &SignedIdentity,
    image: &Reference,
    digest: &ImageDigest,
    signed_ref: &str,
    signed_digest: &str,
) {
    v.identity = Some(signed_ref.to_owned());
    v.signed_digest = Some(signed_digest.to_owned());
    if !digest.matches(signed_digest) {
        v.reason = format!(
            "signed digest {signed_digest} does not match the image digest {}",
            digest.as_str()
        );
        return;
    }
    match rule.check(image, signed_ref) {
        Ok(()) => {
            v.accepted = true;
            v.reason = "accepted".to_owned();
        }
        Err(why) => v.reason = why,
    }
}

/// Sets `satisfied` and `reason` from the verdicts: one accepted signature is enough. `no_signature` is the
/// reason when there is none at all.
pub(super) fn conclude(report: &mut RequirementReport, no_signature: String) {
    let accepted = report.signatures.iter().find(|s| s.accepted);
    (report.satisfied, report.reason) = match (accepted, report.signatures.len()) {
        (Some(s), _) => (true, format!("signature-{} is accepted", s.index)),
        (None, 0) => (false, no_signature),
        (None, n) => (false, format!("none of the {n} signatures is accepted")),
    };
}
