//! Every invalid request gets an error reply that names the problem and carries no signature; a message that
//! cannot be answered at all is dead-lettered by the broker, not dropped.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::{json, Map, Value};
use std::time::Duration;

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";
const OTHER: &str = "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";

fn claim(digest: &str, reference: &str) -> String {
    STANDARD.encode(format!(
        r#"{{"critical": {{"type": "atomic container signature", "image": {{"docker-manifest-digest": "{digest}"}}, "identity": {{"docker-reference": "{reference}"}}}}, "optional": {{"creator": "pubtools-sign"}}}}"#
    ))
}

fn request(
    task: &str,
    id: &str,
    key: &str,
    claim_file: &str,
    repo: &str,
    digest: &str,
) -> (Map<String, Value>, Map<String, Value>) {
    let body = json!({
        "sig_key_id": key, "claim_file": claim_file, "request_id": id, "created": "2026-11-27T09:05:56.465511Z",
        "requested_by": "tester", "repo": repo, "pub_task_id": task, "manifest_digest": digest,
    });
    let props = json!({
        "service": "pubtools-sign", "environment": "test", "owner_id": "tester", "mtype": "container_signature",
        "source": "metadata", "pub_task_id": task, "manifest_digest": digest,
    });
    (
        body.as_object().unwrap().clone(),
        props.as_object().unwrap().clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_request_gets_an_error_reply_naming_the_problem_and_no_signature() {
    let bed = Bed::start("bad", "");
    let (env, queue) = (&bed.env, &bed.queue);
    let task = unique("task");
    let ed = env.key_ed25519().to_owned();
    let short = &ed[ed.len() - 8..];
    let good = claim(DIGEST, "registry.example.com/ns/repo:1");
    let bad_claim =
        STANDARD.encode(r#"{"critical": {"type": "atomic container signature"}, "optional": {}}"#);
    let dup_claim = STANDARD.encode(format!(
        r#"{{"critical": {{"type": "atomic container signature", "image": {{"docker-manifest-digest": "{DIGEST}"}}, "identity": {{"docker-reference": "registry.example.com/ns/repo:1"}}, "identity": {{"docker-reference": "evil.example.com/x:1"}}}}, "optional": {{}}}}"#
    ));
    // (name, request, substring the error must contain)
    let mut cases = vec![
        (
            "unknown key",
            request(&task, "r-unknown-key", "DEADBEEF", &good, "ns/repo", DIGEST),
            "unknown signing key",
        ),
        (
            "digest mismatch",
            request(&task, "r-digest", short, &good, "ns/repo", OTHER),
            "manifest digest",
        ),
        (
            "malformed claim",
            request(&task, "r-malformed", short, &bad_claim, "ns/repo", DIGEST),
            "claim critical lacks member \"image\"",
        ),
        (
            "duplicate member",
            request(&task, "r-dup", short, &dup_claim, "ns/repo", DIGEST),
            "duplicate member",
        ),
        (
            "bad base64",
            request(&task, "r-base64", short, "abc", "ns/repo", DIGEST),
            "not valid base64",
        ),
        (
            "repo mismatch",
            request(&task, "r-repo", short, &good, "ns/other", DIGEST),
            "not in the request's repo",
        ),
        (
            "schema",
            request(&task, "r-schema", short, &good, "ns/repo", "sha256:nothex"),
            "/manifest_digest",
        ),
    ];
    let (body, mut props) = request(&task, "r-mtype", short, &good, "ns/repo", DIGEST);
    props.remove("mtype");
    cases.push(("no mtype", (body, props), "mtype"));
    let (body, mut props) = request(&task, "r-prop-digest", short, &good, "ns/repo", DIGEST);
    props.insert("manifest_digest".into(), json!(OTHER));
    cases.push(("property digest differs", (body, props), "differs"));
    let (mut body, props) = request(&task, "r-keyname", short, &good, "ns/repo", DIGEST);
    body.insert("sig_keyname".into(), json!("rsa"));
    cases.push((
        "key id and name disagree",
        (body, props),
        "name different keys",
    ));
    // A good one in the same batch proves the error replies are not a broken server.
    let control = request(&task, "r-good", short, &good, "ns/repo", DIGEST);

    let mut client = RawClient::open(env, &task).await;
    let address = format!("/queues/{queue}");
    for (_, (body, props), _) in
        cases
            .iter()
            .chain(std::iter::once(&("control", control.clone(), "")))
    {
        client
            .send(
                &address,
                Value::Object(body.clone()).to_string(),
                &Value::Object(props.clone()),
            )
            .await;
    }
    let got = client.replies(cases.len() + 1, || bed.logs()).await;
    for (name, (body, _), needle) in &cases {
        let reply = &got[body["request_id"].as_str().unwrap()];
        let errors = reply["msg"]["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{name}: no error in {reply}");
        let text = errors
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" | ");
        assert!(
            text.contains(needle),
            "{name}: {text:?} does not mention {needle:?}"
        );
        assert_eq!(
            reply["msg"]["signed_claim"],
            Value::Null,
            "{name}: signature in an error reply"
        );
        assert_eq!(
            reply["msg"]["claim_file"], body["claim_file"],
            "{name}: request fields not echoed"
        );
    }
    let ok = &got["r-good"];
    assert_eq!(ok["msg"]["errors"], json!([]));
    assert!(ok["msg"]["signed_claim"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswerable_messages_are_dead_lettered_not_dropped() {
    let bed = Bed::start("dlq", "");
    let (env, queue) = (&bed.env, &bed.queue);
    let client = RawClient::open(env, &unique("dlq-task")).await;
    let bodies = [
        "this is not json".to_owned(),
        r#"{"no": "request id"}"#.to_owned(),
        r#"{"request_id": "x", "requested_by": "a/../b", "pub_task_id": "1"}"#.to_owned(),
    ];
    for b in &bodies {
        client
            .send(&format!("/queues/{queue}"), b.clone(), &json!({}))
            .await;
    }
    // Read the dead-letter queue through the management API: dead-lettered messages carry x-opt-deaths
    // annotations, and the point here is only that the broker holds every one of them.
    let mut seen: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    while seen.len() < bodies.len() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "dead-letter queue got {seen:?}; log:\n{}",
            bed.logs()
        );
        let got = mgmt(
            env,
            "POST",
            &format!("/api/queues/%2F/{queue}.dead/get"),
            r#"{"count":10,"ackmode":"ack_requeue_false","encoding":"auto"}"#,
        );
        let got: Vec<Value> = serde_json::from_str(&got).unwrap();
        for m in got {
            // The management API shows an AMQP 1.0 message as base64 of its encoded sections; the body
            // (an AMQP string value) is the last section.
            let raw = STANDARD.decode(m["payload"].as_str().unwrap()).unwrap();
            let text = String::from_utf8_lossy(&raw).into_owned();
            let body = bodies
                .iter()
                .find(|b| text.ends_with(b.as_str()))
                .unwrap_or_else(|| panic!("unexpected {text:?}"));
            seen.push(body.clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen.sort();
    let mut want = bodies.to_vec();
    want.sort();
    assert_eq!(seen, want);
    let logs = bed.logs();
    assert!(
        logs.contains("not valid JSON")
            && logs.contains("no request_id")
            && logs.contains("cannot be used in a reply address"),
        "{logs}"
    );
    client.close().await;
}
