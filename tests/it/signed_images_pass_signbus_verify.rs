//! What the bus signs, `msg-container-sign --publish` stores in the lookaside registries.d names, and
//! `signbus verify` then accepts under a policy trusting the signing key — and refuses under one that does not.
//! Single and batch requests, both test keys.

use crate::support::*;
use std::path::Path;

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

fn write_policy(dir: &Path, name: &str, key_file: &Path) -> std::path::PathBuf {
    let path = dir.join(name);
    let policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {"registry.example.com": [
            {"type": "signedBy", "keyType": "GPGKeys", "keyPath": key_file}
        ]}}
    });
    std::fs::write(&path, policy.to_string()).unwrap();
    path
}

#[test]
fn published_signatures_verify_under_the_signing_keys_policy_only() {
    let bed = Bed::start("publish", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = bed.requester_config_file(dir.path(), 20);
    let store = dir.path().join("lookaside");
    let regd = dir.path().join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("signbus.yaml"),
        format!(
            "docker:\n  registry.example.com:\n    lookaside: file://{}\n",
            store.display()
        ),
    )
    .unwrap();
    let keys = Path::new(env.get("SIGNBUS_TESTENV_DIR")).join("keys");
    let trust_ed = write_policy(dir.path(), "ed.json", &keys.join("ed25519.pub.gpg"));
    let trust_rsa = write_policy(dir.path(), "rsa.json", &keys.join("rsa.pub.gpg"));

    for (signer_type, key, tag) in [
        ("single", env.key_ed25519(), "s"),
        ("batch", env.key_ed25519(), "b"),
    ] {
        let refs: Vec<String> = (0..3)
            .map(|i| format!("registry.example.com/ns/app:{tag}{i}"))
            .collect();
        let mut args = Args::new("msg-container-sign")
            .opt("--signing-key", key)
            .opt("--task-id", "pub-1")
            .opt("--config-file", &cfg)
            .opt("--signer-type", signer_type)
            .flag("--raw")
            .flag("--publish")
            .opt("--registries-d", &regd);
        for r in &refs {
            args = args.image(DIGEST, r);
        }
        let (code, _, stderr) = args.run();
        assert_eq!(code, 0, "{signer_type}: {stderr}");
        assert_eq!(
            stderr
                .matches("published registry.example.com/ns/app:")
                .count(),
            3,
            "{stderr}"
        );
        for r in &refs {
            let verify = |policy: &Path| verify_args(r, policy, &regd).run();
            let (code, out, err) = verify(&trust_ed);
            assert_eq!(code, 0, "{r} under the ed25519 policy: {out}{err}");
            let (code, out, err) = verify(&trust_rsa);
            assert_eq!(
                code, 1,
                "{r} must be refused when only the RSA key is trusted: {out}{err}"
            );
        }
    }
    // An RSA signature for one image makes that image pass the RSA policy.
    let r = "registry.example.com/ns/app:s0";
    let (code, _, stderr) = Args::new("msg-container-sign")
        .opt("--signing-key", env.key_rsa())
        .opt("--task-id", "pub-2")
        .opt("--config-file", &cfg)
        .image(DIGEST, r)
        .flag("--raw")
        .flag("--publish")
        .opt("--registries-d", &regd)
        .run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("/signature-7"),
        "the store is keyed by repository and digest, not tag: the six ed25519 signatures are 1..6, the RSA one is 7: {stderr}"
    );
    let (code, out, err) = verify_args(r, &trust_rsa, &regd).run();
    assert_eq!(code, 0, "{out}{err}");
}

/// `signbus verify` of `reference` at [`DIGEST`] under `policy`, with the lookaside stores of `registries_d`.
fn verify_args(reference: &str, policy: &Path, registries_d: &Path) -> Args {
    Args::new("verify")
        .flag(reference)
        .opt("--digest", DIGEST)
        .opt("--policy", policy)
        .opt("--registries-d", registries_d)
}
