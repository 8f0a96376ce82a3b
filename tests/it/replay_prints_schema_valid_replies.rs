//! `signbus serve --replay FILE` handles one request message from a file exactly as if it came from the broker,
//! without any broker: it prints `{"address", "properties", "body"}` with a reply that matches the reply schema,
//! exits 1 when the reply carries errors and 0 when it is signed, and the signature verifies with skopeo.
//!
//! The request files are pubtools-sign 1.0.6 wire examples (tests/data/wire-examples, copied from the shared
//! docs; when ../shared/docs/wire-examples exists beside the checkout, those files are replayed too).

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use signbus::wire::Schema;
use std::path::{Path, PathBuf};

/// A server config for the testenv keys whose broker does not exist: replay must never connect.
fn config(env: &Env, dir: &Path) -> PathBuf {
    let text = server_config(env, "never-used", "")
        .replace(env.amqp_url(), "amqp://127.0.0.1:1")
        .replace("listen: \"127.0.0.1:0\"", "listen: \"127.0.0.1:1\"");
    let path = dir.join("server.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn examples() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("tests/data/wire-examples"),
        root.join("../shared/docs/wire-examples"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 4, "wire examples missing: {files:?}");
    files
}

fn replay(config: &Path, file: &Path) -> (i32, Value, String) {
    let (code, out, err) = Args::new("serve")
        .opt("--config", config)
        .opt("--replay", file)
        .opt("--log-format", "json")
        .run();
    let doc = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {out}\n{err}", file.display()));
    (code, doc, err)
}

#[test]
fn every_wire_example_replays_to_a_schema_valid_reply_without_a_broker() {
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env, dir.path());
    for file in examples() {
        let (code, doc, err) = replay(&config, &file);
        let name = file.display();
        // The examples name key 23456789 / mykey, which the testenv does not hold: an error reply, exit 1.
        assert_eq!(code, 1, "{name}: {doc}\n{err}");
        let body = &doc["body"];
        Schema::Reply
            .validate(body)
            .unwrap_or_else(|e| panic!("{name}: reply breaks the reply schema: {e}\n{body}"));
        let errors = body["msg"]["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{name}: {body}");
        assert!(
            errors
                .iter()
                .any(|e| e.as_str().unwrap().contains("unknown signing key")),
            "{name}: {body}"
        );
        let request: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            body["msg"]["request_id"], request["body"]["request_id"],
            "{name}"
        );
        // The examples have no reply-to; the template is filled from requested_by and the task id.
        let task = request["properties"]["pub_task_id"]
            .as_str()
            .or(request["properties"]["pipeline_run_id"].as_str())
            .unwrap();
        assert_eq!(
            doc["address"],
            format!("/exchanges/amq.topic/signbus.reply.pubtools-test.{task}"),
            "{name}"
        );
        assert_eq!(
            doc["properties"]["mtype"], request["properties"]["mtype"],
            "{name}"
        );
        assert!(doc["properties"]["traceparent"].is_string(), "{name}");
        assert!(!err.contains("consuming"), "replay must not consume: {err}");
    }
}

#[test]
fn a_bare_body_replays_as_a_container_request_and_an_unfillable_address_prints_null() {
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env, dir.path());
    let example: Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/wire-examples/container-single.request.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut body = example["body"].clone();
    body.as_object_mut().unwrap().remove("pub_task_id");
    let file = dir.path().join("bare.json");
    std::fs::write(&file, body.to_string()).unwrap();
    let (code, doc, err) = replay(&config, &file);
    assert_eq!(code, 1, "{doc}\n{err}");
    assert_eq!(doc["properties"]["mtype"], "container_signature", "{doc}");
    // No task id anywhere: the template cannot be filled, and there is no reply-to.
    assert_eq!(doc["address"], Value::Null, "{doc}");
    Schema::Reply.validate(&doc["body"]).unwrap();
}

#[test]
fn a_replayed_request_for_a_testenv_key_is_signed_and_verifies_with_skopeo() {
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&env, dir.path());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/wire-examples/container-single.request.json");
    let mut example: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let ed = env.key_ed25519().to_owned();
    let body = example["body"].as_object_mut().unwrap();
    body.insert(
        "sig_key_id".into(),
        Value::String(ed[ed.len() - 8..].into()),
    );
    body.remove("sig_keyname");
    let file = dir.path().join("signable.json");
    std::fs::write(&file, example.to_string()).unwrap();

    let (code, doc, err) = replay(&config, &file);
    assert_eq!(code, 0, "{doc}\n{err}");
    let msg = &doc["body"]["msg"];
    assert_eq!(msg["errors"], Value::Array(vec![]), "{doc}");
    Schema::Reply.validate(&doc["body"]).unwrap();
    let signature = STANDARD
        .decode(msg["signed_claim"].as_str().expect("a signed claim"))
        .unwrap();
    // The example's claim is for registry.example.com/ns/repo0:tag-0 at sha256("0").
    let out = skopeo_verify(
        &env,
        b"0",
        "registry.example.com/ns/repo0:tag-0",
        &ed,
        &signature,
    )
    .unwrap_or_else(|e| panic!("skopeo refused the replayed signature: {e}"));
    assert!(out.contains("Signature verified"), "{out}");
}
