//! `signbus verify`: exit 0 only when the policy accepts, 1 when it rejects or cannot decide, 2 for usage
//! errors; `--json` carries the same verdicts.

use crate::support::verify_fixtures::*;
use crate::support::*;

const IMAGE: &str = "registry.example.com/ns/repo:1";

fn verify_cmd(f: &Fixture, policy: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    run(signbus()
        .env("HOME", f.dir.path())
        .arg("verify")
        .args(args)
        .args([
            "--policy",
            path_str(policy),
            "--registries-d",
            path_str(&f.registries_d()),
        ]))
}

#[test]
fn accepted_rejected_and_usage_errors_have_distinct_exit_codes() {
    let f = Fixture::new();
    let (m, d) = manifest("cli");
    // Looks like an OpenPGP signature packet, is none: refused on its own.
    f.put(IMAGE, &d, 1, &[0x88, 0x01, 0x02]);
    f.put(IMAGE, &d, 2, &f.sign(f.env.key_ed25519(), IMAGE, &d));
    let policy = f.policy_file(&ed_policy(None));

    let (code, out, err) = verify_cmd(&f, &policy, &[IMAGE, "--digest", &d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("signature-1: rejected"), "{out}");
    assert!(out.contains("signature-2: ACCEPTED"), "{out}");
    assert!(out.contains(&format!("identity: {IMAGE}")), "{out}");
    assert!(out.contains(f.env.key_ed25519()), "{out}");

    let (code, out, _) = verify_cmd(&f, &policy, &[IMAGE, "--digest", &d, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["accepted"], true);
    let sigs = v["requirements"][0]["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["accepted"], false);
    assert_eq!(sigs[0]["identity"], serde_json::Value::Null);
    assert_eq!(sigs[1]["key"], f.env.key_ed25519());

    // Another tag: the signature names :1, so matchRepoDigestOrExact rejects.
    let (code, out, _) = verify_cmd(
        &f,
        &policy,
        &["registry.example.com/ns/repo:2", "--digest", &d],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REJECTED by policy"), "{out}");

    // --manifest that disagrees with --digest.
    let mfile = f.dir.path().join("m.json");
    std::fs::write(&mfile, b"{}").unwrap();
    let (code, _, err) = verify_cmd(
        &f,
        &policy,
        &[IMAGE, "--digest", &d, "--manifest", path_str(&mfile)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("digests disagree"), "{err}");
    std::fs::write(&mfile, &m).unwrap();
    let (code, _, err) = verify_cmd(&f, &policy, &[IMAGE, "--manifest", path_str(&mfile)]);
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = verify_cmd(&f, &policy, &["Not A Reference", "--digest", &d]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = verify_cmd(&f, &policy, &[IMAGE]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("digest is unknown"), "{err}");
}

#[test]
fn an_invalid_policy_file_is_an_error() {
    let f = Fixture::new();
    let (_, d) = manifest("bad-policy");
    let policy = f.policy_file(r#"{"default":[{"type":"insecureAcceptAnything"}],"unknown":1}"#);
    let (code, out, err) = verify_cmd(&f, &policy, &[IMAGE, "--digest", &d, "--json"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown member \"unknown\""), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["accepted"], false);
}
