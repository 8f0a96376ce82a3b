//! `signbus msg-container-sign` (and the binary invoked as `pubtools-sign-msg-container-sign`) takes
//! pubtools-sign's flags and config file, prints its JSON shape or `--raw` lines, and exits 1 with a reason
//! when anything failed or timed out.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

#[test]
fn json_raw_and_symlinked_invocations_sign_and_exit_zero() {
    let bed = Bed::start("cli", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = bed.requester_config_file(dir.path(), 15);
    let task = unique("t");
    // Two images signed with `key`, after what `args` holds.
    let two_images = |args: Args, key: &str| {
        args.opt("--signing-key", key)
            .opt("--task-id", &task)
            .opt("--config-file", &cfg)
            .image(DIGEST, "registry.example.com/ns/repo:1")
            .image(DIGEST, "registry.example.com/ns/repo:2")
    };

    // JSON output, requester taken from the certificate's CN.
    let (code, stdout, stderr) =
        two_images(Args::new("msg-container-sign"), env.key_ed25519()).run();
    assert_eq!(code, 0, "{stderr}\n{}", bed.logs());
    // The requester spoke the protocol this run of the suite asked for (SIGNBUS_PROTOCOL, set by `command`).
    let spoken = if requester_protocol() == "amqp091" {
        "connected (AMQP 0-9-1)"
    } else {
        "connected (AMQP 1.0)"
    };
    assert!(stderr.contains(spoken), "{stderr}");
    assert!(stdout.starts_with(r#"{"signer_result": {"status": "ok", "error_message": ""}, "operation_results": [[{"msg": {"sig_key_id": ""#), "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let results = v["operation_results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r[0]["msg"]["errors"], Value::Array(vec![]));
        assert_eq!(
            r[0]["msg"]["requested_by"], "signbus-test",
            "CN of testenv's client certificate"
        );
        assert_eq!(r[1]["mtype"], "container_signature");
        let claim = STANDARD
            .decode(r[0]["msg"]["claim_file"].as_str().unwrap())
            .unwrap();
        let claim: Value = serde_json::from_slice(&claim).unwrap();
        assert_eq!(
            claim["critical"]["identity"]["docker-reference"],
            format!("registry.example.com/ns/repo:{}", i + 1)
        );
    }
    assert_eq!(
        v["operation"]["references"][1],
        "registry.example.com/ns/repo:2"
    );
    assert_eq!(v["signing_keys"][0], env.key_ed25519());

    // --raw through the pubtools-sign command name (a symlink), with the alias from key_aliases.
    let link = dir.path().join("pubtools-sign-msg-container-sign");
    std::os::unix::fs::symlink(signbus_bin(), &link).unwrap();
    let args = two_images(Args::default(), "test-alias").flag("--raw");
    let (code, stdout, stderr) = run(&mut args.command_for(&link));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (i, l) in lines.iter().enumerate() {
        let sig = STANDARD.decode(l).unwrap();
        let reference = format!("registry.example.com/ns/repo:{}", i + 1);
        let manifest_for_digest = b"0"; // sha256("0") = DIGEST
        skopeo_verify(
            env,
            manifest_for_digest,
            &reference,
            env.key_ed25519(),
            &sig,
        )
        .unwrap();
    }
}

#[test]
fn refused_and_unanswered_requests_exit_one_and_say_why() {
    let mut bed = Bed::start("cli-err", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = bed.requester_config_file(dir.path(), 15);
    let task = unique("t");
    let base = Args::new("msg-container-sign")
        .opt("--task-id", &task)
        .opt("--config-file", &cfg)
        .image(DIGEST, "registry.example.com/ns/repo:1");

    // An unknown key: the server refuses, the client says so and exits 1 (pubtools-sign would exit 0).
    let args = base.clone().opt("--signing-key", "0123456789ABCDEF");
    let (code, stdout, stderr) = args.run();
    assert_eq!(code, 1, "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["signer_result"]["status"], "error");
    assert!(stderr.contains("refused by the server"), "{stderr}");
    let err = v["operation_results"][0][0]["msg"]["errors"][0]
        .as_str()
        .unwrap();
    assert!(err.contains("unknown signing key \"89ABCDEF\""), "{err}");
    let (code, stdout, stderr) = args.flag("--raw").run();
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.contains("unknown signing key"), "{stderr}");

    // Nobody consumes this queue: the client gives up after timeout × retries × send_retries, says how many.
    drop(bed.server.take());
    let cfg2 = dir.path().join("slow.yaml");
    std::fs::write(
        &cfg2,
        client_config(env, &bed.queue, 1).replace("retries: 2", "retries: 1"),
    )
    .unwrap();
    let args = base
        .set("--config-file", &cfg2)
        .opt("--signing-key", env.key_ed25519())
        .flag("--raw");
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = args.run();
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("MessagingTimeout") && stderr.contains("1 of 1 requests got no reply"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    // Bad input is refused before anything is sent.
    let (code, _, stderr) = Args::new("msg-container-sign")
        .opt("--signing-key", "x")
        .opt("--task-id", "t")
        .opt("--config-file", &cfg)
        .image("sha256:12", "r/x:1")
        .run();
    assert_eq!(code, 1);
    assert!(stderr.contains("--digest \"sha256:12\""), "{stderr}");
}
