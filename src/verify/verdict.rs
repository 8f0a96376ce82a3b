//! The steps every signature requirement shares once a signature's cryptography has checked out and its payload
//! parsed: the signed digest against the image's, then the signed reference against the requirement's
//! `signedIdentity`; and the shape of a signature requirement's evaluation around them (keys, signatures,
//! conclusion). It never sees untrusted
//! bytes: callers hand it values from verified, parsed payloads only.

use super::identity::SignedIdentity;
use super::report::{RequirementReport, SignatureVerdict};
use super::ImageDigest;
use crate::reference::Reference;

/// A signature requirement's reason when there is no signature (containers/image's words).
pub(super) const NO_SIGNATURE: &str = "a signature was required, but no signature exists";

/// What a signature requirement found to judge: the signatures read, with the reason to give when there are
/// none; or why none could be read at all.
pub(super) type Found<'a, F> = Result<(&'a [F], String), String>;

/// Evaluates one signature requirement of type `kind`: its trusted `keys` with their names (or why there are
/// none to use), then each signature `found` through `check`, then the conclusion (one accepted signature is
/// enough).
pub(super) fn evaluate_signatures<K, F>(
    kind: &str,
    rule: &SignedIdentity,
    keys: Result<(K, Vec<String>), String>,
    found: Found<'_, F>,
    mut check: impl FnMut(&mut K, &F) -> SignatureVerdict,
) -> RequirementReport {
    let mut report = RequirementReport {
        kind: kind.to_owned(),
        detail: Some(format!("identity {rule}")),
        satisfied: false,
        reason: String::new(),
        signatures: Vec::new(),
    };
    let (mut keys, names) = match keys {
        Ok(k) => k,
        Err(why) => {
            report.reason = why;
            return report;
        }
    };
    report.detail = Some(format!("keys {}; identity {rule}", names.join(", ")));
    let (signatures, no_signature) = match found {
        Ok(f) => f,
        Err(why) => {
            report.reason = why;
            return report;
        }
    };
    for f in signatures {
        let v = check(&mut keys, f);
        report.signatures.push(v);
    }
    let accepted = report.signatures.iter().find(|s| s.accepted);
    (report.satisfied, report.reason) = match (accepted, report.signatures.len()) {
        (Some(s), _) => (true, format!("signature-{} is accepted", s.index)),
        (None, 0) => (false, no_signature),
        (None, n) => (false, format!("none of the {n} signatures is accepted")),
    };
    report
}

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

/// Judges a verified signature's payload as parsed (`Ok((signed reference, signed digest))`, or why it did not
/// parse): the verdict records the claim and accepts it when the digest names the image and `rule` accepts the
/// reference; otherwise it says why not.
pub(super) fn judge_payload<E: std::fmt::Display>(
    mut v: SignatureVerdict,
    rule: &SignedIdentity,
    image: &Reference,
    digest: &ImageDigest,
    parsed: Result<(String, String), E>,
) -> SignatureVerdict {
    let (signed_ref, signed_digest) = match parsed {
        Ok(claim) => claim,
        Err(e) => {
            v.reason = format!("signed payload rejected: {e}");
            return v;
        }
    };
    if !digest.matches(&signed_digest) {
        v.reason = format!(
            "signed digest {signed_digest} does not match the image digest {}",
            digest.as_str()
        );
    } else {
        match rule.check(image, &signed_ref) {
            Ok(()) => {
                v.accepted = true;
                v.reason = "accepted".to_owned();
            }
            Err(why) => v.reason = why,
        }
    }
    v.identity = Some(signed_ref);
    v.signed_digest = Some(signed_digest);
    v
}
