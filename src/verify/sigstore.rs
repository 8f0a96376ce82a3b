//! The `sigstoreSigned` requirement: each signature layer read from the image's `.sig` tag ([`super::attachments`])
//! is checked against the requirement's public keys (ECDSA P-256 over the payload bytes), and only a signature
//! that verifies has its payload parsed strictly ([`ParsedPayload`]), its digest compared with the image's and
//! its reference checked with the requirement's identity rule. Trust roots signbus cannot check (Fulcio, Rekor,
//! PKI) fail this requirement alone, saying so.

use super::attachments::{Attachments, FetchedAttachment};
use super::policy::{KeySource, SigstoreSigned, TrustRoot};
use super::report::{RequirementReport, SignatureVerdict};
use super::verdict::{conclude, judge_claim, pending};
use super::ImageDigest;
use crate::cosign::{ParsedPayload, PublicKey, VerifyError, SIGNATURE_ANNOTATION};
use crate::reference::Reference;

/// The requirement's public keys, each a PEM `PUBLIC KEY` of an ECDSA P-256 key. `Err` names the key that is
/// unreadable or of another type.
fn load_keys(source: &KeySource) -> Result<Vec<PublicKey>, String> {
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
    let mut report = RequirementReport {
        kind: "sigstoreSigned".to_owned(),
        detail: Some(format!("identity {}", req.identity)),
        satisfied: false,
        reason: String::new(),
        signatures: Vec::new(),
    };
    let source = match (&req.trust, req.unsupported()) {
        (TrustRoot::Keys(source), None) => source,
        (_, why) => {
            report.reason = why.unwrap_or_else(|| "this trust root is not supported".to_owned());
            return report;
        }
    };
    let keys = match load_keys(source) {
        Ok(k) => k,
        Err(e) => {
            report.reason = e;
            return report;
        }
    };
    report.detail = Some(format!(
        "keys {}; identity {}",
        keys.iter()
            .map(PublicKey::fingerprint)
            .collect::<Vec<_>>()
            .join(", "),
        req.identity
    ));
    let Some(fetched) = fetched else {
        report.reason = "registries.d does not set use-sigstore-attachments: true for this image, so no \
                         sigstore signature is read: a signature was required, but no signature exists"
            .to_owned();
        return report;
    };
    for f in &fetched.signatures {
        report
            .signatures
            .push(check_one(&keys, req, image, digest, f));
    }
    let none = match (fetched.found, fetched.other_layers) {
        (false, _) => format!(
            "a signature was required, but no signature exists ({} does not exist)",
            fetched.at
        ),
        (true, 0) => "a signature was required, but no signature exists".to_owned(),
        (true, n) => format!(
            "a signature was required, but no signature exists ({n} attachment layers of other types)"
        ),
    };
    conclude(&mut report, none);
    report
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
    // 2. Only now parse the payload, strictly.
    let payload = match ParsedPayload::parse(&f.payload) {
        Ok(p) => p,
        Err(e) => {
            v.reason = format!("signed payload rejected: {e}");
            return v;
        }
    };
    // 3. The digest, 4. the identity.
    judge_claim(
        &mut v,
        &req.identity,
        image,
        digest,
        payload.docker_reference(),
        payload.manifest_digest(),
    );
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosign::{Payload, PrivateKey};
    use crate::verify::identity::SignedIdentity;

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
