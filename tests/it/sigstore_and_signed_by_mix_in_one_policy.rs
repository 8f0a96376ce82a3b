//! `signedBy` and `sigstoreSigned` in one policy entry: each requirement is judged on its own source (gpg
//! signatures from the lookaside store, cosign signatures from the registry's `.sig` tag) and the image passes
//! only when both hold — the same verdicts as skopeo 1.18 `copy` under the same policy and registries.d. Each
//! source is read only when a requirement needs it: a signedBy-only policy never contacts the registry, and a
//! sigstoreSigned-only policy never reads the lookaside store.

use crate::support::gpg::{gpg_sign, Mode};
use crate::support::sigstore::{payload, requirements, SigBed};
use crate::support::verify_fixtures::claim;
use crate::support::Env;

/// Stores a gpg (ed25519 testenv key) signature of `<repo>:v1` at `digest` as signature-1 in the bed's store.
fn gpg_signature(bed: &SigBed, env: &Env, repo: &str, digest: &str) {
    let reference = format!("{}:v1", bed.repo(repo).name());
    let sig = gpg_sign(
        env,
        env.key_ed25519(),
        &claim(&reference, digest),
        Mode::Normal,
    );
    let dir = bed.path("store").join(format!(
        "{}@{}",
        bed.repo(repo).path(),
        digest.replacen(':', "=", 1)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("signature-1"), sig).unwrap();
}

fn satisfied(report: &serde_json::Value) -> Vec<(String, bool)> {
    requirements(report)
        .into_iter()
        .map(|(kind, ok, _)| (kind, ok))
        .collect()
}

#[test]
fn both_requirements_must_hold_each_on_its_own_source() {
    let env = Env::load();
    let bed = SigBed::start();
    std::fs::copy(env.ed25519_pub(), bed.path("ed.gpg")).unwrap();
    bed.registries(&format!(
        "docker:\n  \"{}\":\n    use-sigstore-attachments: true\n    lookaside: file://@DIR@/store\n",
        bed.registry.host
    ));
    let key = bed.signbus_key("s");
    bed.registry_policy(
        "mixed",
        r#"[{"type":"signedBy","keyType":"GPGKeys","keyPath":"@DIR@/ed.gpg"},
            {"type":"sigstoreSigned","keyPath":"@DIR@/s.pub"}]"#,
    );
    let sign_sigstore = |repo: &str, d: &str| {
        let identity = format!("{}:v1", bed.repo(repo).name());
        bed.attach(repo, d, &payload(&identity, d), &key);
    };

    let d = bed.push_image("mixed/both", "both");
    gpg_signature(&bed, &env, "mixed/both", &d);
    sign_sigstore("mixed/both", &d);
    let (code, report) = bed.signbus_verify("mixed", "mixed/both", &d);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        satisfied(&report),
        [("signedBy".into(), true), ("sigstoreSigned".into(), true)]
    );
    assert!(
        report["lookaside"].as_str().unwrap().contains("store"),
        "{report:#}"
    );
    assert!(
        report["sigstore_attachments"]
            .as_str()
            .unwrap()
            .contains(".sig"),
        "{report:#}"
    );
    bed.skopeo_verify("mixed", "mixed/both").unwrap();

    let d = bed.push_image("mixed/sigstore-only", "sigstore-only");
    sign_sigstore("mixed/sigstore-only", &d);
    let (code, report) = bed.signbus_verify("mixed", "mixed/sigstore-only", &d);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        satisfied(&report),
        [("signedBy".into(), false), ("sigstoreSigned".into(), true)]
    );
    bed.skopeo_verify("mixed", "mixed/sigstore-only")
        .unwrap_err();

    let d = bed.push_image("mixed/gpg-only", "gpg-only");
    gpg_signature(&bed, &env, "mixed/gpg-only", &d);
    let (code, report) = bed.signbus_verify("mixed", "mixed/gpg-only", &d);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        satisfied(&report),
        [("signedBy".into(), true), ("sigstoreSigned".into(), false)]
    );
    bed.skopeo_verify("mixed", "mixed/gpg-only").unwrap_err();
}

#[test]
fn each_source_is_read_only_when_a_requirement_needs_it() {
    let env = Env::load();
    let bed = SigBed::start();
    std::fs::copy(env.ed25519_pub(), bed.path("ed.gpg")).unwrap();
    let key = bed.signbus_key("s");
    // The lookaside store answers nothing (a closed port): reading it would fail the verification.
    bed.registries(&format!(
        "docker:\n  \"{}\":\n    use-sigstore-attachments: true\n    lookaside: http://127.0.0.1:9/nothing\n",
        bed.registry.host
    ));
    bed.registry_policy(
        "sigstore-only",
        r#"[{"type":"sigstoreSigned","keyPath":"@DIR@/s.pub"}]"#,
    );
    let repo = "only/sigstore";
    let d = bed.push_image(repo, "only-sigstore");
    bed.attach(
        repo,
        &d,
        &payload(&format!("{}:v1", bed.repo(repo).name()), &d),
        &key,
    );
    let (code, report) = bed.signbus_verify("sigstore-only", repo, &d);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["lookaside"], serde_json::Value::Null);

    // An image on a registry that answers nothing (a closed port): a signedBy-only policy with a file store
    // still verifies, the registry never contacted although registries.d enables attachments for it.
    let dead = "127.0.0.1:9";
    let image = format!("{dead}/only/gpg:v1");
    let d = crate::support::verify_fixtures::manifest("only-gpg").1;
    let sig = gpg_sign(&env, env.key_ed25519(), &claim(&image, &d), Mode::Normal);
    let dir = bed
        .path("store")
        .join(format!("only/gpg@{}", d.replacen(':', "=", 1)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("signature-1"), sig).unwrap();
    bed.registries(&format!(
        "docker:\n  \"{dead}\":\n    use-sigstore-attachments: true\n    lookaside: file://@DIR@/store\n"
    ));
    bed.policy(
        "gpg-only",
        &format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{dead}":[
                {{"type":"signedBy","keyType":"GPGKeys","keyPath":"@DIR@/ed.gpg"}}]}}}}}}"#
        ),
    );
    let (code, out, err) = crate::support::run(
        crate::support::signbus()
            .args(["verify", &image, "--digest", &d, "--json"])
            .args(["--allow-http-registry", "--http-timeout", "5"])
            .arg("--policy")
            .arg(bed.path("gpg-only.json"))
            .arg("--registries-d")
            .arg(bed.path("registries.d")),
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["sigstore_attachments"], serde_json::Value::Null);
    assert_eq!(report["requirements"][0]["satisfied"], true);
}
