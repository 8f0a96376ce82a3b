//! The image signatures a run received: what `--publish` stores. Replies to `container_signature` requests carry
//! the claim they answer (its reference and digest are read from it, strictly parsed); `batch` replies carry one
//! entry per claim × key with its reference and digest.
//!
//! This module reads replies only; it never talks to the broker and never writes a store.

use super::Exchange;
use crate::claim::Claim;
use crate::digest::Digest;
use crate::reference::Reference;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// One signature received for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSignature {
    /// The image the claim names.
    pub reference: Reference,
    /// The manifest digest the claim names.
    pub digest: Digest,
    /// The signature bytes (an OpenPGP signed message).
    pub signature: Vec<u8>,
}

/// A signature in a reply that cannot be used: it names no valid image, or is not base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature for {reference}@{digest}: {reason}")]
pub struct Unusable {
    /// The reference as the reply gave it.
    pub reference: String,
    /// The digest as the reply gave it.
    pub digest: String,
    /// What is wrong.
    pub reason: String,
}

/// Every image signature in `ex`'s replies, in no particular order; signatures that cannot be used are errors.
pub fn image_signatures(ex: &Exchange) -> Vec<Result<ImageSignature, Unusable>> {
    let mut found = Vec::new();
    for (doc, _) in ex.replies.values() {
        let msg = &doc["msg"];
        if let Some(entries) = msg["signatures"].as_array() {
            for s in entries {
                if let (Some(r), Some(d), Some(b)) = (
                    s["docker_reference"].as_str(),
                    s["manifest_digest"].as_str(),
                    s["signed_claim"].as_str(),
                ) {
                    found.push(usable(r, d, b));
                }
            }
        } else if let (Some(c), Some(b)) =
            (msg["claim_file"].as_str(), msg["signed_claim"].as_str())
        {
            let claim = STANDARD.decode(c).ok();
            if let Some(claim) = claim.and_then(|c| Claim::parse(&c).ok()) {
                let digest = claim.manifest_digest().as_str();
                found.push(usable(claim.docker_reference(), digest, b));
            }
        }
    }
    found
}

fn usable(reference: &str, digest: &str, b64: &str) -> Result<ImageSignature, Unusable> {
    let unusable = |reason: String| Unusable {
        reference: reference.to_owned(),
        digest: digest.to_owned(),
        reason,
    };
    Ok(ImageSignature {
        reference: Reference::parse_normalized(reference).map_err(|e| unusable(e.to_string()))?,
        digest: Digest::parse(digest).map_err(|e| unusable(e.to_string()))?,
        signature: STANDARD.decode(b64).map_err(|e| unusable(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn single_and_batch_replies_give_their_image_signatures() {
        let digest = format!("sha256:{}", "c".repeat(64));
        let image = Reference::parse_normalized("quay.io/ns/app:1").unwrap();
        let claim = Claim::new(&image, &digest, None).unwrap().to_json();
        let single =
            json!({"msg": {"claim_file": STANDARD.encode(&claim), "signed_claim": "AQI="}});
        let batch = json!({"msg": {"signatures": [
            {"docker_reference": "quay.io/ns/b:2", "manifest_digest": digest, "signed_claim": "AwQ="},
            {"docker_reference": "quay.io/ns/b:2", "manifest_digest": "sha256:bad", "signed_claim": "AwQ="},
            {"docker_reference": "quay.io/ns/b:2", "manifest_digest": digest, "signed_claim": null}]}});
        let ex = Exchange {
            replies: HashMap::from([
                ("a".into(), (single, Default::default())),
                ("b".into(), (batch, Default::default())),
            ]),
            error: None,
        };
        let mut got = image_signatures(&ex);
        got.sort_by_key(|r| r.as_ref().map(|s| s.signature.clone()).unwrap_or_default());
        assert_eq!(got.len(), 3, "no entry for a null signature");
        let bad = got.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(bad.to_string().contains("sha256:bad"), "{bad}");
        let ok: Vec<_> = got.into_iter().filter_map(Result::ok).collect();
        assert_eq!(ok[0].reference.to_string(), "quay.io/ns/app:1");
        assert_eq!(ok[0].signature, [1, 2]);
        assert_eq!(
            (ok[1].digest.as_str(), ok[1].signature.as_slice()),
            (digest.as_str(), &[3u8, 4][..])
        );
    }
}
