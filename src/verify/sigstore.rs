//! The `sigstoreSigned` requirement: each signature layer read from the image's `.sig` tag ([`super::attachments`])
//! is checked against the requirement's public keys (ECDSA P-256 over the payload bytes), and only a signature
//! that verifies has its payload parsed strictly ([`ParsedPayload`]), its digest compared with the image's and
//! its reference checked with the requirement's identity rule. Trust roots signbus cannot check (Fulcio, Rekor,
//! PKI) fail this requirement alone, saying so.

use super::attachments::{Attachments, FetchedAttachment};
use super::policy::{SigstoreSigned, TrustRoot};
use super::report::{RequirementReport, SignatureVerdict};
use super::verdict::{evaluate_signatures, judge_payload, pending, NO_SIGNATURE};
use super::ImageDigest;
use crate::cosign::{ParsedPayload, PublicKey, VerifyError, SIGNATURE_ANNOTATION};
use crate::reference::Reference;

/// The requirement's public keys, each a PEM `PUBLIC KEY` of an ECDSA P-256 key. `Err` says why there are
/// none to use: a trust root signbus does not support, or a key that is unreadable or of another type.
fn trusted_keys(req: &SigstoreSigned) -> Result<Vec<PublicKey>, String> {
    let source = match (&req.trust, req.unsupported()) {
        (TrustRoot::Keys(source), None) => source,
        (_, why) => return Err(why.unwrap_or_else(|| "this trust root is not supported".into())),
    };
    source
        .load()?
        .into_iter()
        .map(|(name, pem)| {
            PublicKey::from_pem(&pem).map_err(|e| format!("public key {name} is unusable: {e}"))
        })
        .collect()
}

/// Evaluates `req` for `image` at `digest`. `fetched` is `None` when registries.d does not enable sigstore
/// attachments for the image (then nothing was read).
pub(super) fn sigstore_signed(
    req: &SigstoreSigned,
    image: &Reference,
    digest: &ImageDigest,
    fetched: Option<&Attachments>,
) -> RequirementReport {
    let keys = trusted_keys(req).map(|keys| {
        let names = keys.iter().map(PublicKey::fingerprint).collect();
        (keys, names)
    });
    let found = match fetched {
        None => Err(format!(
            "registries.d does not set use-sigstore-attachments: true for this image, so no sigstore \
             signature is read: {NO_SIGNATURE}"
        )),
        Some(f) => {
            let none = match (f.found, f.other_layers) {
                (false, _) => format!("{NO_SIGNATURE} ({} does not exist)", f.at),
                (true, 0) => NO_SIGNATURE.to_owned(),
                (true, n) => format!("{NO_SIGNATURE} ({n} attachment layers of other types)"),
            };
            Ok((f.signatures.as_slice(), none))
        }
    };
    evaluate_signatures("sigstoreSigned", &req.identity, keys, found, |keys, f| {
        check_one(keys, req, image, digest, f)
    })
}

fn check_one(
    keys: &[PublicKey],
    req: &SigstoreSigned,
    image: &Reference,
    digest: &ImageDigest,
    f: &FetchedAttachment,
) -> SignatureVerdict {
    let mut v = pending(f.index, f.location.clone());
    // 1. Cryptography first, over the payload bytes exactly as stored.
    let Some(signature) = f.signature.as_deref() else {
        v.reason = format!("the layer has no {SIGNATURE_ANNOTATION} annotation");
        return v;
    };
    let mut malformed = None;
    for key in keys {
        match key.verify(&f.payload, signature) {
            Ok(()) => {
                v.key = Some(key.fingerprint());
                break;
            }
            Err(VerifyError::Mismatch) => {}
            Err(e) => malformed = Some(e),
        }
    }
    if v.key.is_none() {
        v.reason = match malformed {
            Some(e) => format!("invalid signature: {e}"),
            None => {
                "the signature does not verify with any of the trusted keys (another key made it, \
                     or the payload was changed after signing)"
                    .to_owned()
            }
        };
        return v;
    }
    // 2. Only now parse the payload, strictly; 3. the digest, 4. the identity.
    let parsed = ParsedPayload::parse(&f.payload).map(|p| {
        (
            p.docker_reference().to_owned(),
            p.manifest_digest().to_owned(),
        )
    });
    judge_payload(v, &req.identity, image, digest, parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosign::{Payload, PrivateKey};
    use crate::verify::identity::SignedIdentity;
    use crate::verify::policy::KeySource;

    const D: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

    fn layer(index: usize, payload: &[u8], signature: Option<String>) -> FetchedAttachment {
        FetchedAttachment {
            index,
            location: format!("layer {index}"),
            payload: payload.to_vec(),
            signature,
        }
    }

    #[test]
    fn each_layer_is_judged_crypto_first_and_one_good_one_is_enough() {
        let key = PrivateKey::generate();
        let other = PrivateKey::generate();
        let pem = key.public_key().to_pem().into_bytes();
        let req = SigstoreSigned {
            trust: TrustRoot::Keys(KeySource::Data(pem)),
            rekor: None,
            identity: SignedIdentity::MatchRepository,
        };
        let image = Reference::parse_normalized("quay.io/a/b:v1").unwrap();
        let digest = ImageDigest::new(None, Some(D), None).unwrap();
        let good = Payload::new("quay.io/a/b", D, Default::default())
            .unwrap()
            .to_json();
        let elsewhere = Payload::new("quay.io/a/c", D, Default::default())
            .unwrap()
            .to_json();
        let mut changed = good.clone();
        changed.insert(1, b' ');
        let fetched = Attachments {
            at: "quay.io/a/b:sha256-x.sig".into(),
            found: true,
            signatures: vec![
                layer(1, &good, Some(other.sign(&good))),
                layer(2, &changed, Some(key.sign(&good))),
                layer(3, &good, None),
                layer(4, &good, Some("AAAA".into())),
                layer(5, &elsewhere, Some(key.sign(&elsewhere))),
                layer(6, &good, Some(key.sign(&good))),
            ],
            other_layers: 0,
        };
        let r = sigstore_signed(&req, &image, &digest, Some(&fetched));
        let verdicts: Vec<_> = r
            .signatures
            .iter()
            .map(|s| (s.accepted, s.key.is_some(), s.identity.clone()))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                (false, false, None),
                (false, false, None),
                (false, false, None),
                (false, false, None),
                (false, true, Some("quay.io/a/c".into())),
                (true, true, Some("quay.io/a/b".into())),
            ],
            "{r:#?}"
        );
        assert!(r.satisfied, "{}", r.reason);
        assert!(r.signatures[3].reason.contains("invalid signature"));
        assert!(r.signatures[2].reason.contains(SIGNATURE_ANNOTATION));

        let none = Attachments {
            signatures: vec![],
            found: false,
            ..fetched
        };
        let r = sigstore_signed(&req, &image, &digest, Some(&none));
        assert!(!r.satisfied);
        assert!(r.reason.contains("no signature exists"), "{}", r.reason);
        let off = sigstore_signed(&req, &image, &digest, None);
        assert!(
            off.reason.contains("use-sigstore-attachments"),
            "{}",
            off.reason
        );
    }

    #[test]
    fn keys_of_other_types_are_refused_by_name() {
        // An Ed25519 SubjectPublicKeyInfo.
        let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        let req = SigstoreSigned {
            trust: TrustRoot::Keys(KeySource::Datas(vec![ed.as_bytes().to_vec()])),
            rekor: None,
            identity: SignedIdentity::default(),
        };
        let image = Reference::parse_normalized("quay.io/a/b:v1").unwrap();
        let digest = ImageDigest::new(None, Some(D), None).unwrap();
        let r = sigstore_signed(&req, &image, &digest, None);
        assert!(!r.satisfied);
        assert!(
            r.reason.contains("keyDatas[0]") && r.reason.contains("Ed25519"),
            "{}",
            r.reason
        );
    }
}
