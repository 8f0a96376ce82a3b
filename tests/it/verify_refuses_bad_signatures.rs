//! Cryptography comes first and is strict: detached signatures, unknown keys and wrong digests are refused, each
//! with its reason; a cleartext signature is not a stored signature format at all and refuses the image.

use crate::support::verify_fixtures::*;
use crate::support::*;

const IMAGE: &str = "registry.example.com/ns/repo:1";

fn single_verdict(f: &Fixture, digest: &str, blob: &[u8]) -> (bool, String, Option<String>) {
    f.put(IMAGE, digest, 1, blob);
    let r = f
        .verify(&f.policy(&ed_policy(None)), IMAGE, digest)
        .unwrap();
    let s = &r.requirements[0].signatures[0];
    assert_eq!(r.accepted, s.accepted);
    (s.accepted, s.reason.clone(), s.identity.clone())
}

#[test]
fn a_detached_signature_is_refused() {
    let f = Fixture::new();
    let (_, d) = manifest("detached");
    let blob = gpg_sign(
        &f.env,
        f.env.key_ed25519(),
        &claim(IMAGE, &d),
        Mode::Detached,
    );
    let (ok, reason, identity) = single_verdict(&f, &d, &blob);
    assert!(!ok);
    assert!(reason.contains("detached signature"), "{reason}");
    assert_eq!(identity, None);
}

#[test]
fn a_cleartext_signature_is_refused() {
    let f = Fixture::new();
    let (_, d) = manifest("clear");
    let blob = gpg_sign(&f.env, f.env.key_ed25519(), &claim(IMAGE, &d), Mode::Clear);
    assert!(blob.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));
    // Not a signature format containers/image stores: it refuses the image outright, and so does signbus.
    f.put(IMAGE, &d, 1, &blob);
    let e = f
        .verify(&f.policy(&ed_policy(None)), IMAGE, &d)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unrecognized signature format, starting with binary 0x2d"),
        "{e}"
    );
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let f = Fixture::new();
    let (_, d) = manifest("wrong-key");
    let blob = f.sign(f.env.key_rsa(), IMAGE, &d);
    let (ok, reason, identity) = single_verdict(&f, &d, &blob);
    assert!(!ok);
    assert!(reason.contains("not one of the trusted keys"), "{reason}");
    // gpg reports the key id (a suffix of the RSA fingerprint).
    let rsa = f.env.key_rsa();
    assert!(reason.contains(&rsa[rsa.len() - 16..]), "{reason}");
    assert_eq!(identity, None);
}

#[test]
fn the_rsa_key_is_accepted_when_the_policy_trusts_it() {
    let f = Fixture::new();
    let (_, d) = manifest("rsa-ok");
    f.put(IMAGE, &d, 1, &f.sign(f.env.key_rsa(), IMAGE, &d));
    let p = f.policy(
        r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPaths":["@ED@","@RSA@"]}]}"#,
    );
    let r = f.verify(&p, IMAGE, &d).unwrap();
    assert!(r.accepted, "{}", r.to_text());
    assert_eq!(
        r.requirements[0].signatures[0].key.as_deref(),
        Some(f.env.key_rsa())
    );
}

#[test]
fn a_signature_for_another_digest_is_refused() {
    let f = Fixture::new();
    let (_, d) = manifest("digest");
    let (_, other) = manifest("other digest");
    let blob = f.sign(f.env.key_ed25519(), IMAGE, &other);
    let (ok, reason, _) = single_verdict(&f, &d, &blob);
    assert!(!ok);
    assert!(
        reason.contains(&format!("signed digest {other} does not match")),
        "{reason}"
    );
}

#[test]
fn a_signed_payload_that_is_not_a_claim_is_refused_after_the_crypto_check() {
    let f = Fixture::new();
    let (_, d) = manifest("payload");
    let blob = gpg_sign(
        &f.env,
        f.env.key_ed25519(),
        br#"{"critical":{},"optional":{}}"#,
        Mode::Normal,
    );
    let (ok, reason, _) = single_verdict(&f, &d, &blob);
    assert!(!ok);
    assert!(reason.contains("signed payload rejected"), "{reason}");
}

#[test]
fn reject_sigstore_and_insecure_requirements() {
    let f = Fixture::new();
    let (_, d) = manifest("kinds");
    let r = f
        .verify(
            &f.policy(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#),
            IMAGE,
            &d,
        )
        .unwrap();
    assert!(r.accepted);
    let r = f
        .verify(
            &f.policy(r#"{"default":[{"type":"insecureAcceptAnything"},{"type":"reject"}]}"#),
            IMAGE,
            &d,
        )
        .unwrap();
    assert!(!r.accepted, "every requirement must hold");
    let r = f
        .verify(
            &f.policy(r#"{"default":[{"type":"sigstoreSigned","keyPath":"/x"}]}"#),
            IMAGE,
            &d,
        )
        .unwrap();
    assert!(!r.accepted);
    assert!(
        r.requirements[0].reason.contains("reading key file /x"),
        "{:?}",
        r.requirements[0]
    );
    let r = f
        .verify(
            &f.policy(r#"{"default":[{"type":"sigstoreSigned","pki":{}}]}"#),
            IMAGE,
            &d,
        )
        .unwrap();
    assert!(!r.accepted);
    assert!(
        r.requirements[0]
            .reason
            .contains("not supported by signbus"),
        "{:?}",
        r.requirements[0]
    );
}
