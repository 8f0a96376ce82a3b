//! Every invalid request gets an error reply that names the problem and carries no signature; a message that
//! cannot be answered at all is dead-lettered by the broker, not dropped.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
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
        "sig_key_id": key, "claim_file": claim_file, "request_id": id, "created": signbus::requester::isodate_now(),
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
        r#"["a JSON array", "not an object"]"#.to_owned(),
        format!(
            r#"{{"request_id": "deep", "x": {}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    ];
    for b in &bodies {
        client
            .send(&format!("/queues/{queue}"), b.clone(), &json!({}))
            .await;
    }
    // Bytes that are not UTF-8, published raw (AMQP 0-9-1, through the management API).
    let raw: &[u8] = b"{\"request_id\": \"\xff\xfe\"}";
    let publish = json!({"properties": {}, "routing_key": queue, "payload": STANDARD.encode(raw),
        "payload_encoding": "base64"});
    mgmt(
        env,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        &publish.to_string(),
    );
    let mut bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.clone().into_bytes()).collect();
    bodies.push(raw.to_vec());
    // Read the dead-letter queue through the management API: dead-lettered messages carry x-opt-deaths
    // annotations, and the point here is only that the broker holds every one of them.
    let mut seen: Vec<Vec<u8>> = Vec::new();
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
            let body = bodies
                .iter()
                .find(|b| raw.ends_with(b))
                .unwrap_or_else(|| panic!("unexpected {:?}", String::from_utf8_lossy(&raw)));
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
            && logs.contains("cannot be used in a reply address")
            && logs.contains("not a JSON object")
            && logs.contains("recursion limit"),
        "{logs}"
    );
    // Counted, and the server is still healthy.
    let server = bed.server.as_ref().unwrap();
    let metrics = server.scrape();
    let dead = metric_sum(&metrics, "signbus_dead_lettered_total", &[]);
    assert_eq!(dead, want.len() as f64, "{metrics}");
    assert_eq!(server.http_get("/readyz").0, 200);
    client.close().await;
}

/// A request: its body and its application properties.
type Message = (Map<String, Value>, Map<String, Value>);

/// Sends each `(body, properties)` and returns the replies by request id.
async fn send_all(
    client: &mut RawClient,
    address: &str,
    messages: &[Message],
    logs: impl Fn() -> String,
) -> std::collections::HashMap<String, Value> {
    for (body, props) in messages {
        client
            .send(
                address,
                Value::Object(body.clone()).to_string(),
                &Value::Object(props.clone()),
            )
            .await;
    }
    client.replies(messages.len(), logs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_answered_with_errors_and_nothing_unvalidated_is_signed() {
    let bed = Bed::start("hostile", "  max_message_bytes: 8192");
    let (env, queue) = (&bed.env, &bed.queue);
    let task = unique("task");
    let ed = env.key_ed25519().to_owned();
    let short = &ed[ed.len() - 8..];
    let good = claim(DIGEST, "registry.example.com/ns/repo:1");
    let critical = |extra: &str, kind: &str| {
        format!(
            r#"{{"critical": {{"type": "{kind}", "image": {{"docker-manifest-digest": "{DIGEST}"}}, "identity": {{"docker-reference": "registry.example.com/ns/repo:1"}}{extra}}}, "optional": {{}}}}"#
        )
    };
    let sig = "atomic container signature";
    let ok_claim = critical("", sig);
    let req = |id: &str, claim_file: &str| request(&task, id, short, claim_file, "ns/repo", DIGEST);
    let mut cases = vec![
        (
            "wrong claim type",
            req("h-type", &STANDARD.encode(critical("", "evil"))),
            "claim type is \"evil\"",
        ),
        (
            "unknown critical member",
            req(
                "h-critical",
                &STANDARD.encode(critical(r#", "extra": 1"#, sig)),
            ),
            "unknown member \"extra\"",
        ),
        (
            "trailing garbage after the claim",
            req(
                "h-trailing",
                &STANDARD.encode(format!("{ok_claim} garbage")),
            ),
            "not valid JSON",
        ),
        (
            "claim that is not JSON at all",
            req("h-not-json", &STANDARD.encode([0xff, 0xfe, 0x00, 0x7b])),
            "not valid JSON",
        ),
    ];
    let (mut body, props) = req("h-big", &good);
    body.insert("padding".into(), json!("A".repeat(20_000)));
    cases.push(("over the size limit", (body, props), "at most 8192"));
    let (body, props) = request(&task, "h-long", short, &good, &"a/".repeat(1500), DIGEST);
    cases.push(("very long string", (body, props), "/repo"));
    let (mut body, props) = req("h-old", &good);
    body.insert("created".into(), json!("2020-01-01T00:00:00.000000Z"));
    cases.push(("expired", (body, props), "expired"));
    let (mut body, props) = req("h-nested", &good);
    let deep = (0..60).fold(json!(1), |v, _| json!([v]));
    body.insert("sig_key_id".into(), deep);
    cases.push((
        "nested value where a string belongs",
        (body, props),
        "/sig_key_id",
    ));
    let (body, mut props) = req("h-mtype", &good);
    props.insert("mtype".into(), json!("launch_missiles"));
    cases.push(("unknown mtype", (body, props), "mtype"));
    let batch_props = json!({"service": "pubtools-sign", "environment": "test", "owner_id": "tester",
        "mtype": "batch", "source": "metadata", "pipeline_run_id": task});
    let empty_batch = json!({"claims": [], "request_id": "h-batch-empty",
        "created": signbus::requester::isodate_now(), "requested_by": "tester", "pipeline_run_id": task});
    cases.push((
        "batch with zero claims",
        (
            empty_batch.as_object().unwrap().clone(),
            batch_props.as_object().unwrap().clone(),
        ),
        "/claims",
    ));
    let control = req("h-good", &good);

    let mut client = RawClient::open(env, &task).await;
    let address = format!("/queues/{queue}");
    let mut messages: Vec<_> = cases.iter().map(|(_, m, _)| m.clone()).collect();
    messages.push(control.clone());
    let got = send_all(&mut client, &address, &messages, || bed.logs()).await;
    for (name, (body, _), needle) in &cases {
        let msg = &got[body["request_id"].as_str().unwrap()]["msg"];
        let errors: Vec<&str> = msg["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let text = errors.join(" | ");
        assert!(
            text.contains(needle),
            "{name}: {text:?} does not mention {needle:?}"
        );
        for field in ["signed_claim", "signatures"] {
            assert!(
                msg[field].is_null() || msg[field] == json!([]),
                "{name}: {field} in an error reply: {msg}"
            );
        }
    }
    assert_eq!(got["h-good"]["msg"]["errors"], json!([]));

    // The same request again gets the same reply; the same id for another request is refused.
    let again = send_all(
        &mut client,
        &address,
        std::slice::from_ref(&control),
        || bed.logs(),
    )
    .await;
    assert_eq!(
        again["h-good"], got["h-good"],
        "a repeat is answered identically"
    );
    let (mut other, props) = control.clone();
    other.insert(
        "claim_file".into(),
        json!(claim(OTHER, "registry.example.com/ns/repo:2")),
    );
    other.insert("manifest_digest".into(), json!(OTHER));
    let reused = send_all(&mut client, &address, &[(other, props)], || bed.logs()).await;
    let msg = &reused["h-good"]["msg"];
    assert!(msg["signed_claim"].is_null(), "{msg}");
    assert!(
        msg["errors"][0]
            .as_str()
            .unwrap()
            .contains("was already used for a different request"),
        "{msg}"
    );

    // Still healthy, and exactly one signature was made: the control's.
    let server = bed.server.as_ref().unwrap();
    assert_eq!(server.http_get("/readyz").0, 200);
    let metrics = server.scrape();
    let signed = metric_sum(&metrics, "signbus_requests_total", &[("outcome", "signed")]);
    assert_eq!(
        signed, 2.0,
        "the control, and its repeat from the cache:\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "signbus_replayed_replies_total", &[]),
        1.0
    );
    let signatures = metric_sum(&metrics, "signbus_signing_seconds_count", &[]);
    assert_eq!(signatures, 1.0, "one signature made in all");
    println!(
        "hostile input: {} bad requests answered with errors, 1 repeat answered from the cache, 1 signature made",
        cases.len() + 1
    );
    client.close().await;
}
