//! The image signatures a run received: what `--publish` stores. Replies to `container_signature` requests carry
//! the claim they answer (its reference and digest are read from it, strictly parsed); `batch` replies carry one
//! entry per claim × key with its reference and digest.
//!
//! [`cosign_signatures`] reads `cosign_signature` replies, checking each payload names what was asked for.
//!
//! This module reads replies only; it never talks to the broker and never writes a store or a registry.

use super::prepare_cosign::CosignImage;
use super::{Exchange, PreparedRequest};
use crate::claim::Claim;
use crate::cosign::{ParsedPayload, PublicKey};
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

/// One cosign signature received over the bus, for the image it was asked for.
#[derive(Debug, Clone)]
pub struct CosignSignature {
    /// The image (where the signature is attached) and the identity it names.
    pub image: CosignImage,
    /// The payload the server built and signed.
    pub payload: Vec<u8>,
    /// The base64 signature, as cosign stores it.
    pub signature: String,
    /// The signing key's public half.
    pub public_key: PublicKey,
}

/// The cosign signatures `ex` received for `requests` (each with the image it asked for), in request order;
/// requests answered with errors, or not answered, are skipped (the output reports them). A reply whose payload
/// is not the one asked for (another digest or identity), or whose key or encoding is unusable, is an error.
pub fn cosign_signatures(
    ex: &Exchange,
    requests: &[(CosignImage, PreparedRequest)],
) -> Vec<Result<CosignSignature, Unusable>> {
    let mut found = Vec::new();
    for (image, request) in requests {
        let Some((doc, _)) = ex.replies.get(&request.id) else {
            continue;
        };
        let msg = &doc["msg"];
        let text = |k: &str| msg[k].as_str();
        let (Some(payload), Some(signature), Some(key)) = (
            text("cosign_payload"),
            text("cosign_signature"),
            text("cosign_public_key"),
        ) else {
            continue;
        };
        let unusable = |reason: String| Unusable {
            reference: image.reference.to_string(),
            digest: image.digest.to_string(),
            reason,
        };
        let checked = (|| {
            let payload = STANDARD.decode(payload).map_err(|e| e.to_string())?;
            let parsed = ParsedPayload::parse(&payload).map_err(|e| e.to_string())?;
            if parsed.manifest_digest() != image.digest.as_str()
                || parsed.docker_reference() != image.identity
            {
                return Err(format!(
                    "the server signed {}@{}, not the identity and digest asked for",
                    parsed.docker_reference(),
                    parsed.manifest_digest()
                ));
            }
            let public_key = PublicKey::from_pem(key.as_bytes()).map_err(|e| e.to_string())?;
            Ok(CosignSignature {
                image: image.clone(),
                payload,
                signature: signature.to_owned(),
                public_key,
            })
        })();
        found.push(checked.map_err(unusable));
    }
    found
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

    #[test]
    fn cosign_replies_are_taken_only_for_the_payload_asked_for() {
        use crate::cosign::{Payload, PrivateKey};
        use crate::requester::prepare_cosign::CosignImage;
        let digest = Digest::parse(&format!("sha256:{}", "d".repeat(64))).unwrap();
        let image = |identity: &str| CosignImage {
            reference: Reference::parse_normalized("quay.io/ns/app:1").unwrap(),
            digest: digest.clone(),
            identity: identity.into(),
        };
        let request = |id: &str| PreparedRequest {
            id: id.into(),
            body: Default::default(),
            properties: Default::default(),
            address: String::new(),
        };
        let key = PrivateKey::generate();
        let payload = Payload::new("quay.io/ns/app", digest.as_str(), Default::default())
            .unwrap()
            .to_json();
        let reply = json!({"msg": {"cosign_payload": STANDARD.encode(&payload),
            "cosign_signature": key.sign(&payload), "cosign_public_key": key.public_key().to_pem()}});
        let ex = Exchange {
            replies: HashMap::from([
                ("good".into(), (reply.clone(), Default::default())),
                ("other".into(), (reply, Default::default())),
            ]),
            error: None,
        };
        let requests = [
            (image("quay.io/ns/app"), request("good")),
            (image("quay.io/ns/elsewhere"), request("other")),
            (image("quay.io/ns/app"), request("unanswered")),
        ];
        let got = cosign_signatures(&ex, &requests);
        assert_eq!(got.len(), 2, "the unanswered request is left to the output");
        let good = got[0].as_ref().unwrap();
        good.public_key
            .verify(&good.payload, &good.signature)
            .unwrap();
        let e = got[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("not the identity and digest asked for"), "{e}");
    }
}
