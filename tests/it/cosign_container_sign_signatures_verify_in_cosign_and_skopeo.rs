//! Signatures `signbus cosign-container-sign` makes natively are accepted by the independent verifiers: Debian 13's
//! `cosign verify --key` (which shows the signed identity) and skopeo 1.18 `copy` under a `sigstoreSigned` policy
//! (run in testenv's trixie chroot, inside a private mount namespace so the cached rootfs is never changed).
//! Another key is refused by both. Keys come from `signbus cosign-generate-key-pair`.

use crate::support::cosign_cli::{document, Bench};
use crate::support::run::run;
use std::path::Path;
use std::process::Command;

/// `cosign verify --key <pub>` of `<repo>@<digest>`: the verified payloads, or cosign's error.
fn cosign_verify(b: &Bench, public: &Path, image: &str) -> Result<Vec<serde_json::Value>, String> {
    let (code, out, err) = b.cosign_verify(public.to_str().unwrap(), image);
    if code != 0 {
        return Err(err);
    }
    Ok(serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}")))
}

#[test]
fn cosign_verify_accepts_native_signatures_with_the_signed_identity_and_refuses_another_key() {
    let b = Bench::start();
    let digest = b.push("test/app", "v1");
    let key = b.signbus_key("signer");
    let other = b.signbus_key("other");
    let config = b.native_config();
    let reference = format!("{}:v1", b.repo("test/app"));
    let identity = "registry.example.com/prod/app:v1";
    let (code, out, err) = b.sign_image(
        &config,
        &key,
        &digest,
        &reference,
        &["--identity", identity],
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc = document(&out);
    assert_eq!(doc["signer_result"]["status"], "ok", "{doc}");
    assert_eq!(doc["signed_with"], serde_json::json!(["signbus"]));
    assert_eq!(
        doc["operation_results"],
        serde_json::json!([format!("Pushing signature to: {}\n", b.repo("test/app"))])
    );

    let image = format!("{}@{digest}", b.repo("test/app"));
    let payloads = cosign_verify(&b, &key.with_extension("pub"), &image).unwrap();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let p = &payloads[0];
    assert_eq!(p["critical"]["identity"]["docker-reference"], identity);
    assert_eq!(
        p["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(p["optional"]["tag"], "v1");
    let refused = cosign_verify(&b, &other.with_extension("pub"), &image).unwrap_err();
    assert!(refused.contains("no matching signatures"), "{refused}");
}

/// Runs Debian 13's skopeo 1.18 from testenv's trixie chroot with `dir` bind-mounted on the chroot's /tmp in a
/// private mount namespace: `skopeo --policy /tmp/policy.json --registries.d /tmp/registries.d copy …`.
fn skopeo_copy(dir: &Path, source: &str) -> Result<String, String> {
    let rootfs = std::env::var("SIGNBUS_TEST_COSIGN_ROOTFS").unwrap_or_else(|_| {
        panic!("SIGNBUS_TEST_COSIGN_ROOTFS is not set: export what testenv/cosign-tools.sh prints")
    });
    assert!(
        Path::new(&rootfs).join("usr/bin/skopeo").exists(),
        "no skopeo in {rootfs}"
    );
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let script = r#"mount --bind "$1" "$2/tmp" && exec chroot "$2" skopeo --policy /tmp/policy.json \
        --registries.d /tmp/registries.d copy --src-tls-verify=false "$3" dir:/tmp/out"#;
    let (code, out, err) = run(Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(dir)
        .arg(&rootfs)
        .arg(source));
    if code == 0 {
        Ok(out)
    } else {
        Err(format!("{out}{err}"))
    }
}

#[test]
fn skopeo_and_signbus_verify_accept_native_signatures_under_a_sigstore_signed_policy() {
    let b = Bench::start();
    let digest = b.push("test/app", "v1");
    let unsigned = b.push("test/app", "unsigned");
    let key = b.signbus_key("signer");
    let other = b.signbus_key("other");
    let reference = format!("{}:v1", b.repo("test/app"));
    let (code, out, err) = b.sign_image(&b.native_config(), &key, &digest, &reference, &[]);
    assert_eq!(code, 0, "{out}{err}");

    let shared = tempfile::tempdir().unwrap();
    let d = shared.path();
    std::fs::create_dir_all(d.join("registries.d")).unwrap();
    std::fs::write(
        d.join("registries.d/default.yaml"),
        format!(
            "docker:\n  {}:\n    use-sigstore-attachments: true\n",
            b.registry.host
        ),
    )
    .unwrap();
    let policy = |pub_name: &str| {
        serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {b.registry.host.clone(): [{
                "type": "sigstoreSigned",
                "keyPath": format!("/tmp/{pub_name}"),
                // cosign's default identity is the repository without tag.
                "signedIdentity": {"type": "matchRepository"},
            }]}},
        })
        .to_string()
    };
    std::fs::copy(key.with_extension("pub"), d.join("signer.pub")).unwrap();
    std::fs::copy(other.with_extension("pub"), d.join("other.pub")).unwrap();

    std::fs::write(d.join("policy.json"), policy("signer.pub")).unwrap();
    let by_digest = format!("docker://{}@{digest}", b.repo("test/app"));
    skopeo_copy(d, &by_digest).unwrap();
    // signbus verify reads the same registries.d and the same policy, with the key at its host path.
    let signbus_verify = |pub_name: &str| {
        let host_policy = policy(pub_name).replace("/tmp/", &format!("{}/", d.display()));
        std::fs::write(d.join("policy-host.json"), host_policy).unwrap();
        crate::support::run::run(
            crate::support::run::signbus()
                .arg("verify")
                .arg(&reference)
                .args(["--digest", &digest, "--json", "--allow-http-registry"])
                .arg("--policy")
                .arg(d.join("policy-host.json"))
                .arg("--registries-d")
                .arg(d.join("registries.d"))
                .arg("--authfile")
                .arg(d.join("no-auth.json")),
        )
    };
    let (code, out, err) = signbus_verify("signer.pub");
    assert_eq!(
        code, 0,
        "signbus verify refused a cosign-container-sign signature: {out}{err}"
    );
    let (code, out, _) = signbus_verify("other.pub");
    assert_ne!(code, 0, "signbus verify accepted another key: {out}");
    skopeo_copy(d, &format!("docker://{reference}")).unwrap();
    let e = skopeo_copy(d, &format!("docker://{}@{unsigned}", b.repo("test/app"))).unwrap_err();
    assert!(e.contains("signature"), "{e}");

    std::fs::write(d.join("policy.json"), policy("other.pub")).unwrap();
    let e = skopeo_copy(d, &by_digest).unwrap_err();
    assert!(e.contains("signature"), "{e}");
}
