//! The real pubtools-sign 1.0.6 client (from PyPI, in testenv's venv, through testenv's SASL relay) is served
//! by the signbus server unchanged: container (single and batch, 1 and 200 references), clearsign and blob
//! commands succeed and their outputs verify. And signbus's own CLI prints the same shape for the same inputs.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A pubtools-sign config for `bed`'s queue, reaching the broker through the SASL relay.
fn pubtools_config(bed: &Bed, dir: &Path) -> PathBuf {
    let path = dir.join("pubtools.yaml");
    let text = client_config(&bed.env, &bed.queue, 20)
        .replace(bed.env.amqp_url(), bed.env.get("SIGNBUS_RELAY_URL"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a pubtools-sign command under `timeout` (it waits forever when a message cannot be routed).
fn pubtools(env: &Env, command: &str, args: &[&str]) -> (i32, String, String) {
    let bin = Path::new(env.get("SIGNBUS_PUBTOOLS_BIN")).join(command);
    let mut full = vec!["180", bin.to_str().unwrap()];
    full.extend(args);
    run_cmd(Path::new("timeout"), &full)
}

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"; // sha256("0")

fn container_args(cfg: &Path, task: &str, key: &str, n: usize) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--signing-key".into(),
        key.into(),
        "--task-id".into(),
        task.into(),
        "--config-file".into(),
        cfg.display().to_string(),
    ];
    for i in 0..n {
        a.extend([
            "--digest".into(),
            DIGEST.into(),
            "--reference".into(),
            format!("registry.example.com/ns/repo{}:v{i}", i % 3),
        ]);
    }
    a
}

fn verify_raw_lines(env: &Env, stdout: &str, n: usize, key: &str) {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), n, "{stdout}");
    for (i, line) in lines.iter().enumerate() {
        if i % 40 == 0 || i == n - 1 {
            let sig = STANDARD.decode(line).unwrap();
            // Which reference this line is for is in the claim; skopeo needs it.
            let payload = gpg_payload(env, &sig);
            let claim: Value = serde_json::from_slice(&payload).unwrap();
            let reference = claim["critical"]["identity"]["docker-reference"]
                .as_str()
                .unwrap();
            skopeo_verify(env, b"0", reference, key, &sig)
                .unwrap_or_else(|e| panic!("line {i}: {e}"));
        }
    }
}

#[test]
fn pubtools_container_sign_single_one_and_two_hundred() {
    let bed = Bed::start("pt-single", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = pubtools_config(&bed, dir.path());
    for n in [1, 200] {
        let args = container_args(&cfg, &unique("t"), env.key_ed25519(), n);
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.push("--raw");
        let (code, stdout, stderr) = pubtools(env, "pubtools-sign-msg-container-sign", &argv);
        assert_eq!(code, 0, "n={n}: {stderr}\n{}", bed.logs());
        verify_raw_lines(env, &stdout, n, env.key_ed25519());
    }
}

#[test]
fn pubtools_container_sign_batch_one_and_two_hundred() {
    let bed = Bed::start("pt-batch", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = pubtools_config(&bed, dir.path());
    for n in [1, 200] {
        let args = container_args(&cfg, &unique("t"), env.key_rsa(), n);
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.extend(["--signer-type", "batch"]);
        let (code, stdout, stderr) = pubtools(env, "pubtools-sign-msg-container-sign", &argv);
        assert_eq!(code, 0, "n={n}: {stderr}\n{}", bed.logs());
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["signer_result"]["status"], "ok", "{stdout}");
        // 3 repositories; chunks of 50.
        let messages = v["operation_results"].as_array().unwrap();
        assert!(messages
            .iter()
            .all(|m| m[0]["msg"]["errors"] == Value::Array(vec![])));
        let signatures: usize = messages
            .iter()
            .map(|m| m[0]["msg"]["signatures"].as_array().unwrap().len())
            .sum();
        assert_eq!(signatures, n);
        argv.push("--raw");
        let (code, stdout, stderr) = pubtools(env, "pubtools-sign-msg-container-sign", &argv);
        assert_eq!(code, 0, "{stderr}");
        verify_raw_lines(env, &stdout, n, env.key_rsa());
    }
}

#[test]
fn pubtools_clear_sign_and_blob_sign_outputs_verify_with_gpg() {
    let bed = Bed::start("pt-clear", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = pubtools_config(&bed, dir.path());
    let cfg_s = cfg.to_str().unwrap();
    let (code, stdout, stderr) = pubtools(
        env,
        "pubtools-sign-msg-clear-sign",
        &[
            "--signing-key",
            env.key_ed25519(),
            "--task-id",
            &unique("t"),
            "--config-file",
            cfg_s,
            "--repo",
            "ns/repo",
            "hello from pubtools",
            "--raw",
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{}", bed.logs());
    let armored = STANDARD.decode(stdout.trim()).unwrap();
    let f = dir.path().join("clear.asc");
    std::fs::write(&f, &armored).unwrap();
    let report = gpg_verify(env, &[&f]).unwrap();
    assert!(
        report.contains(&format!("VALIDSIG {}", env.key_ed25519())),
        "{report}"
    );

    let blob = dir.path().join("blob.bin");
    std::fs::write(&blob, b"\x00\x01binary blob\xff").unwrap();
    let (code, stdout, stderr) = pubtools(
        env,
        "pubtools-sign-msg-blob-sign",
        &[
            "--signing-key",
            env.key_rsa(),
            "--task-id",
            &unique("t"),
            "--config-file",
            cfg_s,
            "--blob-file",
            blob.to_str().unwrap(),
            "--raw",
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{}", bed.logs());
    let sig = dir.path().join("blob.sig");
    std::fs::write(&sig, STANDARD.decode(stdout.trim()).unwrap()).unwrap();
    let report = gpg_verify(env, &[&sig, &blob]).unwrap();
    assert!(
        report.contains(&format!("VALIDSIG {}", env.key_rsa())),
        "{report}"
    );
}

/// The document with every string, number and boolean blanked: what is left is the shape.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Null => Value::Null,
        _ => Value::String(String::new()),
    }
}

#[test]
fn signbus_and_pubtools_print_the_same_shape_for_the_same_inputs() {
    let bed = Bed::start("pt-parity", "");
    let env = &bed.env;
    let dir = tempfile::tempdir().unwrap();
    let pt_cfg = pubtools_config(&bed, dir.path());
    let sb_dir = tempfile::tempdir().unwrap();
    let sb_cfg = bed.requester_config_file(sb_dir.path(), 20);
    let task = unique("t");
    let run_both = |command: &str, sub: &str, extra: &[&str]| {
        let mut pt_args = vec![
            "--signing-key",
            env.key_ed25519(),
            "--task-id",
            &task,
            "--config-file",
            pt_cfg.to_str().unwrap(),
        ];
        pt_args.extend(extra);
        let (code, pt_out, err) = pubtools(env, command, &pt_args);
        assert_eq!(code, 0, "{err}");
        let mut sb_args = vec![
            sub,
            "--signing-key",
            env.key_ed25519(),
            "--task-id",
            &task,
            "--config-file",
            sb_cfg.to_str().unwrap(),
        ];
        sb_args.extend(extra);
        let (code, sb_out, err) = run_cmd(&signbus_bin(), &sb_args);
        assert_eq!(code, 0, "{err}");
        let pt: Value = serde_json::from_str(&pt_out).unwrap();
        let sb: Value = serde_json::from_str(&sb_out).unwrap();
        assert_eq!(
            shape(&sb),
            shape(&pt),
            "{command}:\nsignbus:     {sb_out}\npubtools-sign: {pt_out}"
        );
        // Same top-level member order, same inputs echoed.
        assert_eq!(sb["operation"], pt["operation"]);
        assert_eq!(sb["signing_keys"], pt["signing_keys"]);
        assert_eq!(sb["signer_result"], pt["signer_result"]);
        // The properties the server copied are the ones each client sent: identical for both clients.
        (sb, pt)
    };
    let (sb, pt) = run_both(
        "pubtools-sign-msg-container-sign",
        "msg-container-sign",
        &[
            "--digest",
            DIGEST,
            "--reference",
            "registry.example.com/ns/repo:1",
        ],
    );
    // Each reply carries its own trace (`traceparent`, a new trace per request without one); the rest of the
    // reply properties are the ones each client sent: identical for both clients.
    let without_trace = |v: &serde_json::Value| {
        let mut props = v.as_object().expect("reply properties").clone();
        let tp = props.remove("traceparent");
        let tp = tp
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        assert_eq!(tp.split('-').count(), 4, "traceparent {tp:?}");
        props
    };
    assert_eq!(
        without_trace(&sb["operation_results"][0][1]),
        without_trace(&pt["operation_results"][0][1]),
        "reply properties"
    );
    let (sb_msg, pt_msg) = (
        &sb["operation_results"][0][0]["msg"],
        &pt["operation_results"][0][0]["msg"],
    );
    for k in [
        "sig_key_id",
        "requested_by",
        "repo",
        "pub_task_id",
        "manifest_digest",
        "errors",
    ] {
        assert_eq!(sb_msg[k], pt_msg[k], "{k}");
    }
    let sb_keys: Vec<&String> = sb_msg.as_object().unwrap().keys().collect();
    let pt_keys: Vec<&String> = pt_msg.as_object().unwrap().keys().collect();
    assert_eq!(sb_keys, pt_keys, "reply members in the same order");
    run_both(
        "pubtools-sign-msg-clear-sign",
        "msg-clear-sign",
        &["some text"],
    );
    let blob = dir.path().join("b");
    std::fs::write(&blob, b"blob").unwrap();
    run_both(
        "pubtools-sign-msg-blob-sign",
        "msg-blob-sign",
        &["--blob-file", blob.to_str().unwrap()],
    );
}
