//! Sigstore signatures made by each real writer pass each real verifier: signatures made by Debian 13's cosign
//! 2.5 (`cosign sign --key`, no Rekor) and by skopeo 1.18 (`copy --sign-by-sigstore-private-key`) are accepted by
//! `signbus verify`, and signatures attached with signbus's library are accepted by `cosign verify --key` and by
//! skopeo 1.18 `copy` under a `sigstoreSigned` policy — on a real docker-registry, with every key form
//! (`keyPath`, `keyPaths`, `keyData`, `keyDatas`). cosign signs the repository without a tag by default: that
//! passes `matchRepository` and fails the default `matchRepoDigestOrExact`, in skopeo as in signbus.

use crate::support::sigstore::{payload, requirements, verdicts, SigBed};
use base64::Engine as _;

fn b64_file(bed: &SigBed, name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(bed.path(name)).unwrap())
}

#[test]
fn cosign_and_skopeo_signatures_pass_signbus_verify() {
    let bed = SigBed::start();
    bed.cosign_key_pair("c");
    bed.cosign_key_pair("k");
    bed.registry_policy(
        "c-repo",
        r#"[{"type":"sigstoreSigned","keyPath":"@DIR@/c.pub","signedIdentity":{"type":"matchRepository"}}]"#,
    );
    bed.registry_policy(
        "c-default",
        r#"[{"type":"sigstoreSigned","keyPath":"@DIR@/c.pub"}]"#,
    );

    // cosign's default identity: the repository, no tag.
    let d = bed.push_image("test/cosign", "cosign");
    bed.cosign_sign("c", "test/cosign", &d, &[]);
    let (code, report) = bed.signbus_verify("c-repo", "test/cosign", &d);
    assert_eq!(code, 0, "{report:#}");
    let sig = &report["requirements"][0]["signatures"][0];
    assert_eq!(sig["accepted"], true, "{report:#}");
    assert_eq!(sig["identity"], bed.repo("test/cosign").name());
    assert_eq!(sig["signed_digest"], d.as_str());
    assert!(sig["key"].as_str().unwrap().starts_with("sha256:"), "{sig}");
    assert!(
        sig["url"].as_str().unwrap().contains(".sig layer 1"),
        "{sig}"
    );
    bed.skopeo_verify("c-repo", "test/cosign").unwrap();

    let (code, report) = bed.signbus_verify("c-default", "test/cosign", &d);
    assert_eq!(code, 1, "{report:#}");
    let (accepted, reason) = &verdicts(&report)[0];
    assert!(
        !accepted && reason.contains("is not accepted for"),
        "{reason}"
    );
    let refused = bed.skopeo_verify("c-default", "test/cosign").unwrap_err();
    assert!(refused.contains("is not accepted"), "{refused}");

    // With the tagged identity the default rule accepts it.
    let d = bed.push_image("test/cosign-id", "cosign-id");
    let identity = format!("{}:v1", bed.repo("test/cosign-id").name());
    bed.cosign_sign(
        "c",
        "test/cosign-id",
        &d,
        &["--sign-container-identity", &identity],
    );
    let (code, report) = bed.signbus_verify("c-default", "test/cosign-id", &d);
    assert_eq!(code, 0, "{report:#}");
    bed.skopeo_verify("c-default", "test/cosign-id").unwrap();

    // skopeo signs the destination reference, tag included; its key file is cosign's.
    let d = bed.push_image("test/skopeo", "skopeo");
    bed.skopeo_sign("k", "test/skopeo", &d);
    bed.registry_policy(
        "k-default",
        r#"[{"type":"sigstoreSigned","keyPath":"@DIR@/k.pub"}]"#,
    );
    let (code, report) = bed.signbus_verify("k-default", "test/skopeo", &d);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["requirements"][0]["signatures"][0]["identity"],
        format!("{}:v1", bed.repo("test/skopeo").name())
    );
    bed.cosign_verify("k", "test/skopeo", &d).unwrap();
    bed.skopeo_verify("k-default", "test/skopeo").unwrap();
}

#[test]
fn signbus_signatures_pass_cosign_verify_and_skopeo_copy() {
    let bed = SigBed::start();
    let ours = bed.signbus_key("s");
    bed.signbus_key("unused");
    let d = bed.push_image("test/signbus", "signbus");
    let identity = format!("{}:v1", bed.repo("test/signbus").name());
    bed.attach("test/signbus", &d, &payload(&identity, &d), &ours);

    bed.cosign_verify("s", "test/signbus", &d).unwrap();
    let forms = [
        r#"[{"type":"sigstoreSigned","keyPath":"@DIR@/s.pub"}]"#.to_owned(),
        r#"[{"type":"sigstoreSigned","keyPaths":["@DIR@/unused.pub","@DIR@/s.pub"]}]"#.to_owned(),
        format!(
            r#"[{{"type":"sigstoreSigned","keyData":"{}"}}]"#,
            b64_file(&bed, "s.pub")
        ),
        format!(
            r#"[{{"type":"sigstoreSigned","keyDatas":["{}","{}"]}}]"#,
            b64_file(&bed, "unused.pub"),
            b64_file(&bed, "s.pub")
        ),
    ];
    for (i, form) in forms.iter().enumerate() {
        let name = format!("form-{i}");
        bed.registry_policy(&name, form);
        let (code, report) = bed.signbus_verify(&name, "test/signbus", &d);
        assert_eq!(code, 0, "{form}: {report:#}");
        assert_eq!(
            requirements(&report),
            vec![(
                "sigstoreSigned".to_owned(),
                true,
                "signature-1 is accepted".to_owned()
            )]
        );
        bed.skopeo_verify(&name, "test/signbus")
            .unwrap_or_else(|e| panic!("skopeo refused {form}: {e}"));
    }
}
