//! The three verifiers — `signbus verify`, Debian 13's `cosign verify --key` (2.5, Rekor not consulted) and
//! skopeo 1.18 `copy` under a `sigstoreSigned` policy — refuse the same images, each for the case's reason:
//! a signature by another key, a payload changed after signing, a valid signature for another digest attached to
//! this image, and no signature at all. A signature naming another identity is refused by signbus and skopeo;
//! `cosign verify --key` does not compare the signed identity with anything (it accepts and prints the payload,
//! whose identity its user must check), which the test records.

use crate::support::sigstore::{payload, verdicts, SigBed};

/// signbus's verdict: refused, with `reason` in the one signature's verdict (or the requirement's reason when
/// there is no signature).
fn signbus_refuses(bed: &SigBed, repo: &str, digest: &str, reason: &str) {
    let (code, report) = bed.signbus_verify("trust-s", repo, digest);
    assert_eq!(code, 1, "{repo}: {report:#}");
    assert_eq!(report["accepted"], false);
    let why = match verdicts(&report).as_slice() {
        [] => report["requirements"][0]["reason"]
            .as_str()
            .unwrap()
            .to_owned(),
        [(false, why)] => why.clone(),
        other => panic!("{repo}: {other:?}"),
    };
    assert!(
        why.contains(reason),
        "{repo}: signbus said {why:?}, expected {reason:?}"
    );
}

fn refused(verifier: &str, repo: &str, outcome: Result<String, String>, reason: &str) {
    let why = outcome.expect_err(&format!("{verifier} accepted {repo}"));
    assert!(
        why.contains(reason),
        "{repo}: {verifier} said {why:?}, expected {reason:?}"
    );
}

/// All three refuse `<repo>:v1` at `digest`, each saying its part of `reasons` (signbus, cosign, skopeo).
fn three_refuse(bed: &SigBed, repo: &str, digest: &str, reasons: [&str; 3]) {
    signbus_refuses(bed, repo, digest, reasons[0]);
    refused(
        "cosign",
        repo,
        bed.cosign_verify("s", repo, digest),
        reasons[1],
    );
    refused(
        "skopeo",
        repo,
        bed.skopeo_verify("trust-s", repo),
        reasons[2],
    );
}

const WRONG_KEY: [&str; 3] = [
    "does not verify with any of the trusted keys",
    "no matching signatures",
    "signature verification failed",
];

#[test]
fn signbus_cosign_and_skopeo_refuse_the_same_signatures() {
    let bed = SigBed::start();
    bed.cosign_key_pair("s");
    bed.cosign_key_pair("other");
    let s = signbus::cosign::PrivateKey::from_encrypted_pem(
        &std::fs::read(bed.path("s.key")).unwrap(),
        &signbus::signing::secret::Passphrase::from_bytes(
            crate::support::sigstore::PASSWORD.as_bytes().to_vec(),
        ),
    )
    .unwrap();
    bed.registry_policy(
        "trust-s",
        r#"[{"type":"sigstoreSigned","keyPath":"@DIR@/s.pub"}]"#,
    );
    let tagged = |repo: &str| format!("{}:v1", bed.repo(repo).name());

    // Another key: cosign signs with a key the policy does not trust.
    let repo = "refuse/other-key";
    let d = bed.push_image(repo, "other-key");
    let id = tagged(repo);
    bed.cosign_sign("other", repo, &d, &["--sign-container-identity", &id]);
    three_refuse(&bed, repo, &d, WRONG_KEY);

    // A payload changed after signing (an annotation added), stored with the original signature.
    let repo = "refuse/changed";
    let d = bed.push_image(repo, "changed");
    let good = payload(&tagged(repo), &d);
    let sig = s.sign(&good);
    let changed = String::from_utf8(good)
        .unwrap()
        .replace(r#""optional":null"#, r#""optional":{"note":"added"}"#)
        .into_bytes();
    bed.put_raw_signatures(repo, &d, &[(changed, sig)]);
    three_refuse(&bed, repo, &d, WRONG_KEY);

    // A valid signature for another image's digest, attached to this one.
    let repo = "refuse/other-digest";
    let d = bed.push_image(repo, "other-digest");
    let elsewhere = bed.push_image("refuse/elsewhere", "elsewhere");
    bed.attach(repo, &d, &payload(&tagged(repo), &elsewhere), &s);
    three_refuse(
        &bed,
        repo,
        &d,
        [
            &format!("signed digest {elsewhere} does not match"),
            "no matching signatures",
            "does not match",
        ],
    );

    // No signature at all.
    let repo = "refuse/unsigned";
    let d = bed.push_image(repo, "unsigned");
    three_refuse(
        &bed,
        repo,
        &d,
        [
            "no signature exists",
            "no signatures found",
            "no signature exists",
        ],
    );

    // Another identity: signbus and skopeo refuse; cosign checks the key and the digest only.
    let repo = "refuse/identity";
    let d = bed.push_image(repo, "identity");
    let other_identity = tagged("refuse/somewhere-else");
    bed.attach(repo, &d, &payload(&other_identity, &d), &s);
    signbus_refuses(&bed, repo, &d, "is not accepted for");
    refused(
        "skopeo",
        repo,
        bed.skopeo_verify("trust-s", repo),
        "is not accepted",
    );
    let cosign = bed.cosign_verify("s", repo, &d).unwrap();
    assert!(cosign.contains(&other_identity), "{cosign}");
}

/// A `.sig` tag holding something else than an OCI image manifest refuses the image outright, in signbus as in
/// skopeo (containers/image), whatever else is there.
#[test]
fn a_sig_tag_that_is_not_an_oci_manifest_refuses_the_image() {
    use signbus::registry::DOCKER_MANIFEST;
    let bed = SigBed::start();
    bed.signbus_key("s");
    bed.registry_policy(
        "trust-s",
        r#"[{"type":"sigstoreSigned","keyPath":"@DIR@/s.pub"}]"#,
    );
    let repo = "refuse/docker-sig";
    let d = bed.push_image(repo, "docker-sig");
    let r = bed.repo(repo);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = bed.client.put_blob(&r, config).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let tag = signbus::cosign::signature_tag(&d).unwrap();
    bed.client
        .put_manifest(&r, &tag, DOCKER_MANIFEST, manifest.as_bytes())
        .unwrap();
    let (code, report) = bed.signbus_verify("trust-s", repo, &d);
    assert_eq!(code, 1, "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains(&tag) && error.contains("media type"),
        "{error}"
    );
    refused(
        "skopeo",
        repo,
        bed.skopeo_verify("trust-s", repo),
        "unexpected MIME type",
    );
}
