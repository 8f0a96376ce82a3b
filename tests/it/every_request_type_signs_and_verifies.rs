//! Clearsign, blob and batch requests, through the signbus CLI (pubtools-sign's flags) and the real broker:
//! each output verifies with gpg or skopeo, and a bad claim in a batch fails only itself.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn clearsign_outputs_verify_with_gpg_and_at_file_inputs_are_read() {
    let bed = Bed::start("clear", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = bed.requester_config_file(dir.path(), 15);
    let text_file = dir.path().join("text.txt");
    std::fs::write(&text_file, "from a file\nline two\n").unwrap();
    let at = format!("@{}", text_file.display());
    let task = unique("t");
    let (code, stdout, stderr) = Args::new("msg-clear-sign")
        .opts("--signing-key", [env.key_ed25519(), env.key_rsa()])
        .opt("--task-id", &task)
        .opt("--config-file", &cfg)
        .opt("--repo", "ns/repo")
        .flag("hello world")
        .flag(&at)
        .flag("--raw")
        .run();
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "2 inputs × 2 keys: {stdout}");
    let expected = [
        "hello world",
        "hello world",
        "from a file\nline two\n",
        "from a file\nline two\n",
    ];
    let keys = [
        env.key_ed25519(),
        env.key_rsa(),
        env.key_ed25519(),
        env.key_rsa(),
    ];
    for (i, line) in lines.iter().enumerate() {
        let armored = String::from_utf8(STANDARD.decode(line).unwrap()).unwrap();
        assert!(
            armored.starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
            "{armored}"
        );
        assert!(armored.contains(expected[i].lines().next().unwrap()));
        let f = dir.path().join(format!("signed-{i}.asc"));
        std::fs::write(&f, &armored).unwrap();
        let report =
            gpg_verify(env, &[&f]).unwrap_or_else(|e| panic!("gpg rejected output {i}: {e}"));
        assert!(
            report.contains(&format!("VALIDSIG {}", keys[i])),
            "{report}"
        );
    }
    // The JSON form echoes the inputs (file contents, not the @path) like pubtools-sign.
    let (code, stdout, _) = Args::new("msg-clear-sign")
        .opt("--signing-key", env.key_ed25519())
        .opt("--task-id", &task)
        .opt("--config-file", &cfg)
        .flag(&at)
        .run();
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["operation"]["inputs"][0], "from a file\nline two\n");
    assert_eq!(v["operation"]["repo"], Value::Null);
    assert_eq!(v["operation_results"][0][1]["mtype"], "clearsign_signature");
}

#[test]
fn blob_signatures_are_detached_and_verify_against_the_file() {
    let bed = Bed::start("blob", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = bed.requester_config_file(dir.path(), 15);
    let blob = dir.path().join("artifact.bin");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    std::fs::write(&blob, &bytes).unwrap();
    let link = dir.path().join("pubtools-sign-msg-blob-sign");
    std::os::unix::fs::symlink(signbus_bin(), &link).unwrap();
    let args = Args::default()
        .opt("--signing-key", env.key_rsa())
        .opt("--signing-key-name", "rsa")
        .opt("--task-id", unique("t"))
        .opt("--config-file", &cfg)
        .opt("--blob-file", &blob)
        .flag("--raw");
    let (code, stdout, stderr) = run(&mut args.command_for(&link));
    assert_eq!(code, 0, "{stderr}");
    let sig = dir.path().join("artifact.sig");
    std::fs::write(&sig, STANDARD.decode(stdout.trim()).unwrap()).unwrap();
    let report = gpg_verify(env, &[&sig, &blob]).unwrap();
    assert!(
        report.contains(&format!("VALIDSIG {}", env.key_rsa())),
        "{report}"
    );
    // A detached signature: it does not verify another file.
    std::fs::write(&blob, b"tampered").unwrap();
    assert!(gpg_verify(env, &[&sig, &blob]).is_err());
}

#[test]
fn batch_signs_every_claim_with_every_key_in_chunks() {
    let bed = Bed::start("batch", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = bed.requester_config_file(dir.path(), 15);
    let n = 7;
    let mut args = Args::new("msg-container-sign")
        .opt("--signer-type", "batch")
        .opt("--task-id", unique("t"))
        .opt("--config-file", &cfg)
        .opts("--signing-key", [env.key_ed25519(), env.key_rsa()]);
    let digest = format!(
        "sha256:{}",
        "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"
    );
    let mut refs = Vec::new();
    for i in 0..n {
        // Two repositories, so two groups; chunk_size 50 keeps each group in one message.
        let r = format!(
            "registry.example.com/ns/{}:v{i}",
            if i % 2 == 0 { "even" } else { "odd" }
        );
        args = args.image(&digest, &r);
        refs.push(r);
    }
    let (code, stdout, stderr) = args.run();
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let results = v["operation_results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one message per repository");
    let mut verified = 0;
    for r in results {
        assert_eq!(r[1]["mtype"], "batch");
        let sigs = r[0]["msg"]["signatures"].as_array().unwrap();
        let claims = r[0]["msg"]["claims"].as_array().unwrap();
        assert_eq!(sigs.len(), claims.len() * 2);
        let raw_lines: Vec<&str> = r[0]["msg"]["signed_claim"]
            .as_str()
            .unwrap()
            .lines()
            .collect();
        assert_eq!(raw_lines.len(), sigs.len());
        for (s, line) in sigs.iter().zip(raw_lines) {
            assert_eq!(
                s["signed_claim"].as_str().unwrap(),
                line,
                "signed_claim lines follow signatures order"
            );
            let key = if s["sig_key_id"].as_str().unwrap() == &env.key_ed25519()[32..] {
                env.key_ed25519()
            } else {
                env.key_rsa()
            };
            let reference = s["docker_reference"].as_str().unwrap();
            skopeo_verify(env, b"0", reference, key, &STANDARD.decode(line).unwrap()).unwrap();
            verified += 1;
        }
    }
    assert_eq!(verified, n * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_claim_fails_only_itself_in_a_batch() {
    let bed = Bed::start("batch-bad", "");
    let env = &bed.env;
    let digest = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";
    let claim = |r: &str| {
        STANDARD.encode(format!(
            r#"{{"critical": {{"type": "atomic container signature", "image": {{"docker-manifest-digest": "{digest}"}}, "identity": {{"docker-reference": "{r}"}}}}, "optional": {{}}}}"#
        ))
    };
    let short = &env.key_ed25519()[32..];
    let task = unique("t");
    let body = json!({
        "claims": [
            {"claim_file": claim("registry.example.com/ns/a:1"), "sig_keynames": [""], "sig_key_ids": [short], "manifest_digest": digest, "repo": "ns/a"},
            {"claim_file": claim("registry.example.com/ns/evil:1"), "sig_keynames": [""], "sig_key_ids": [short], "manifest_digest": digest, "repo": "ns/a"},
            {"claim_file": claim("registry.example.com/ns/a:3"), "sig_keynames": ["", ""], "sig_key_ids": [short, "DEADBEEF"], "manifest_digest": digest, "repo": "ns/a"},
        ],
        "request_id": "batch-1", "created": signbus::requester::isodate_now(), "requested_by": "tester", "pipeline_run_id": task,
    });
    let props = json!({"service": "pubtools-sign", "environment": "test", "owner_id": "tester", "mtype": "batch", "source": "metadata", "pipeline_run_id": task});
    let mut client = RawClient::open(env, &task).await;
    client
        .send(&format!("/queues/{}", bed.queue), body.to_string(), &props)
        .await;
    let v = client
        .next_reply(Duration::from_secs(20), || bed.logs())
        .await;
    let sigs = v["msg"]["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 4);
    assert!(sigs[0]["signed_claim"].is_string() && sigs[0]["errors"] == json!([]));
    assert!(
        sigs[1]["signed_claim"].is_null()
            && sigs[1]["errors"][0]
                .as_str()
                .unwrap()
                .contains("not in the request's repo")
    );
    assert!(sigs[2]["signed_claim"].is_string());
    assert!(
        sigs[3]["signed_claim"].is_null()
            && sigs[3]["errors"][0]
                .as_str()
                .unwrap()
                .contains("unknown signing key")
    );
    let errors = v["msg"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].as_str().unwrap().starts_with("claim 1 key"),
        "{errors:?}"
    );
    assert_eq!(v["msg"]["signed_claim"], Value::Null);
    skopeo_verify(
        env,
        b"0",
        "registry.example.com/ns/a:1",
        env.key_ed25519(),
        &STANDARD
            .decode(sigs[0]["signed_claim"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_of_every_type_get_errors_naming_the_field() {
    let bed = Bed::start("neg", "");
    let env = &bed.env;
    let short = &env.key_ed25519()[32..];
    let task = unique("t");
    let base = |mtype: &str, id: &str, extra: Value| {
        let mut body = json!({"sig_key_id": short, "request_id": id, "created": signbus::requester::isodate_now(),
                              "requested_by": "tester", "repo": "", "pub_task_id": task});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let props = json!({"mtype": mtype, "pub_task_id": task, "owner_id": "tester"});
        (body, props)
    };
    let claim_ok = STANDARD.encode("{}");
    // (request, result field, text the error must contain)
    let cases = vec![
        (
            base("clearsign_signature", "c-missing", json!({})),
            "signed_data",
            "data",
        ),
        (
            base("clearsign_signature", "c-b64", json!({"data": "abc"})),
            "signed_data",
            "data is not valid base64",
        ),
        (
            base("gpg_signature", "g-chars", json!({"artifact": "!!"})),
            "signed_payload",
            "/artifact",
        ),
        (
            base(
                "gpg_signature",
                "g-key",
                json!({"artifact": "YQ==", "sig_key_id": "0000FFFF"}),
            ),
            "signed_payload",
            "unknown signing key",
        ),
        (
            base("batch", "b-empty", json!({"claims": []})),
            "signed_claim",
            "/claims",
        ),
        (
            base(
                "batch",
                "b-field",
                json!({"claims": [{"claim_file": claim_ok, "sig_key_ids": [short], "repo": "ns/a"}]}),
            ),
            "signed_claim",
            "manifest_digest",
        ),
    ];
    let mut client = RawClient::open(env, &task).await;
    for ((body, props), _, _) in &cases {
        client
            .send(&format!("/queues/{}", bed.queue), body.to_string(), props)
            .await;
    }
    let got = client.replies(cases.len(), || bed.logs()).await;
    for ((body, _), field, needle) in &cases {
        let id = body["request_id"].as_str().unwrap();
        let msg = &got[id]["msg"];
        let errors: Vec<&str> = msg["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{id}: {errors:?} does not name {needle:?}"
        );
        assert_eq!(
            msg[*field],
            Value::Null,
            "{id}: a failed request carries no signature"
        );
    }
    client.close().await;
}
