//! Each signedIdentity kind accepts what containers-policy.json(5) says and rejects the rest, on real
//! signatures.

use crate::support::verify_fixtures::*;

/// Signs a claim naming `signed_ref` for the image's digest, stores it for `image`, and verifies `image`
/// under the ed25519 signedBy policy with `identity`.
fn accepted(identity: Option<&str>, image: &str, signed_ref: &str) -> bool {
    let f = Fixture::new();
    let (_, digest) = manifest(&format!("{identity:?}{image}{signed_ref}"));
    let image = image.replace("@D", &format!("@{digest}"));
    let signed_ref = signed_ref.replace("@D", &format!("@{digest}"));
    f.put(
        &image,
        &digest,
        1,
        &f.sign(f.env.key_ed25519(), &signed_ref, &digest),
    );
    let report = f
        .verify(&f.policy(&ed_policy(identity)), &image, &digest)
        .unwrap();
    let v = verdicts(&report);
    assert_eq!(v.len(), 1);
    if !report.accepted {
        assert!(v[0].2.contains("is not accepted"), "{v:?}");
    }
    report.accepted
}

const R: &str = "registry.example.com/ns/repo";

#[test]
fn match_repo_digest_or_exact_is_the_default() {
    assert!(accepted(None, &format!("{R}:1"), &format!("{R}:1")));
    assert!(!accepted(None, &format!("{R}:1"), &format!("{R}:2")));
    // By digest: any tag of the same repository.
    assert!(accepted(None, &format!("{R}@D"), &format!("{R}:2")));
    assert!(!accepted(
        None,
        &format!("{R}@D"),
        "registry.example.com/ns/other:2"
    ));
    let explicit = Some(r#"{"type":"matchRepoDigestOrExact"}"#);
    assert!(accepted(explicit, &format!("{R}@D"), &format!("{R}:2")));
}

#[test]
fn match_exact_needs_the_same_tag_and_never_matches_digest_to_tag() {
    let id = Some(r#"{"type":"matchExact"}"#);
    assert!(accepted(id, &format!("{R}:1"), &format!("{R}:1")));
    assert!(!accepted(id, &format!("{R}:1"), &format!("{R}:2")));
    assert!(!accepted(id, &format!("{R}@D"), &format!("{R}:1")));
}

#[test]
fn match_repository_ignores_the_tag() {
    let id = Some(r#"{"type":"matchRepository"}"#);
    assert!(accepted(id, &format!("{R}:1"), &format!("{R}:other")));
    assert!(!accepted(
        id,
        &format!("{R}:1"),
        "registry.example.com/ns/other:1"
    ));
}

#[test]
fn exact_reference_fixes_the_signed_reference() {
    let id = Some(r#"{"type":"exactReference","dockerReference":"quay.io/fixed/name:v1"}"#);
    assert!(accepted(id, &format!("{R}:1"), "quay.io/fixed/name:v1"));
    assert!(!accepted(id, &format!("{R}:1"), &format!("{R}:1")));
    assert!(!accepted(id, &format!("{R}:1"), "quay.io/fixed/name:v2"));
}

#[test]
fn exact_repository_fixes_the_signed_repository() {
    let id = Some(r#"{"type":"exactRepository","dockerRepository":"quay.io/fixed/name"}"#);
    assert!(accepted(
        id,
        &format!("{R}:1"),
        "quay.io/fixed/name:anything"
    ));
    assert!(!accepted(
        id,
        &format!("{R}:1"),
        "quay.io/fixed/other:anything"
    ));
}

#[test]
fn remap_identity_rewrites_the_prefix_first() {
    let id = Some(
        r#"{"type":"remapIdentity","prefix":"mirror.local/rh","signedPrefix":"registry.example.com/ns"}"#,
    );
    assert!(accepted(id, "mirror.local/rh/repo:1", &format!("{R}:1")));
    assert!(!accepted(
        id,
        "mirror.local/rh/repo:1",
        "mirror.local/rh/repo:1"
    ));
    assert!(!accepted(id, "mirror.local/rh/repo:1", &format!("{R}:2")));
    // Images outside the prefix are matched as matchRepoDigestOrExact.
    assert!(accepted(id, "other.local/x:1", "other.local/x:1"));
}
