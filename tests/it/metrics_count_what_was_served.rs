//! `/metrics` counts exactly what the server was sent: 20 good requests signed, each bad one under its error
//! class, the undecodable one rejected and dead-lettered, nothing left in flight; `/readyz` and `/healthz` are
//! 200 while the server consumes.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use std::collections::HashSet;
use std::time::{Duration, Instant};

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";
const OTHER: &str = "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";

fn request(
    task: &str,
    id: &str,
    key: &str,
    digest: &str,
) -> (Map<String, Value>, Map<String, Value>) {
    let claim = STANDARD.encode(format!(
        r#"{{"critical": {{"type": "atomic container signature", "image": {{"docker-manifest-digest": "{DIGEST}"}}, "identity": {{"docker-reference": "registry.example.com/ns/repo:1"}}}}, "optional": {{"creator": "t"}}}}"#
    ));
    let body = json!({
        "sig_key_id": key, "claim_file": claim, "request_id": id, "created": signbus::requester::isodate_now(),
        "requested_by": "tester", "repo": "ns/repo", "pub_task_id": task, "manifest_digest": digest,
    });
    let props =
        json!({"mtype": "container_signature", "pub_task_id": task, "manifest_digest": digest});
    (
        body.as_object().unwrap().clone(),
        props.as_object().unwrap().clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_what_was_sent_and_readyz_is_200_while_consuming() {
    let bed = Bed::start("metrics", "");
    let server = bed.server.as_ref().unwrap();
    assert_eq!(server.http_get("/healthz").0, 200);
    let (status, body) = server.http_get("/readyz");
    assert_eq!(status, 200, "{body}");

    let task = unique("task");
    let rsa = bed.env.key_rsa().to_owned();
    let short = &rsa[rsa.len() - 8..];
    let mut messages = Vec::new();
    for i in 0..20 {
        messages.push(request(&task, &format!("good-{i}"), short, DIGEST));
    }
    messages.push(request(&task, "bad-key", "DEADBEEF", DIGEST)); // key
    messages.push(request(&task, "bad-claim", short, OTHER)); // claim: digest differs
    let (mut body, props) = request(&task, "bad-schema", short, DIGEST);
    body.remove("claim_file"); // schema
    messages.push((body, props));

    let mut client = RawClient::open(&bed.env, &task).await;
    let address = format!("/queues/{}", bed.queue);
    for (body, properties) in &messages {
        client
            .send(
                &address,
                Value::Object(body.clone()).to_string(),
                &Value::Object(properties.clone()),
            )
            .await;
    }
    // One message nobody can answer: dead-lettered.
    client
        .send(
            &address,
            "not json".into(),
            &serde_json::json!({"mtype": "container_signature"}),
        )
        .await;

    let mut seen = HashSet::new();
    while seen.len() < messages.len() {
        let v = client
            .next_reply(Duration::from_secs(30), || bed.logs())
            .await;
        seen.insert(v["msg"]["request_id"].as_str().unwrap().to_owned());
        // /readyz stays 200 while the server is busy consuming.
        assert_eq!(server.http_get("/readyz").0, 200);
    }
    client.close().await;

    // The server counts a request once the broker settled it, just after the reply went out: wait for all 24.
    let started = Instant::now();
    let text = loop {
        let text = server.scrape();
        if metric_sum(&text, "signbus_requests_total", &[]) >= 24.0 {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "requests_total never reached 24:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let m = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);
    let ct = ("type", "container_signature");
    assert_eq!(m("signbus_requests_received_total", &[ct]), 24.0, "{text}");
    assert_eq!(m("signbus_requests_total", &[]), 24.0, "{text}");
    assert_eq!(
        m(
            "signbus_requests_total",
            &[ct, ("key", "rsa"), ("outcome", "signed")]
        ),
        20.0,
        "{text}"
    );
    assert_eq!(
        m(
            "signbus_requests_total",
            &[ct, ("key", "unknown"), ("outcome", "key")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m(
            "signbus_requests_total",
            &[ct, ("key", "rsa"), ("outcome", "claim")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m("signbus_requests_total", &[ct, ("outcome", "schema")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        m("signbus_requests_total", &[("outcome", "rejected")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        m("signbus_dead_lettered_total", &[("reason", "undecodable")]),
        1.0,
        "{text}"
    );
    assert_eq!(m("signbus_in_flight", &[]), 0.0, "{text}");
    assert_eq!(m("signbus_request_seconds_count", &[]), 24.0, "{text}");
    // 20 signatures, plus the claim-mismatch one never reaches the signer; the unknown key neither.
    assert_eq!(m("signbus_signing_seconds_count", &[]), 20.0, "{text}");
    assert_eq!(m("signbus_broker_connections_total", &[]), 1.0, "{text}");
    assert_eq!(m("signbus_signer_workers", &[]), 2.0, "{text}");
    assert_eq!(m("signbus_signer_busy", &[]), 0.0, "{text}");
    assert_eq!(
        m(
            "signbus_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0,
        "{text}"
    );
    // No request ids or repositories as labels.
    assert!(
        !text.contains("good-") && !text.contains("ns/repo"),
        "{text}"
    );
    // The undecodable message really went to the dead-letter queue.
    let dead = mgmt(
        &bed.env,
        "GET",
        &format!("/api/queues/%2F/{}.dead", bed.queue),
        "",
    );
    let dead: Value = serde_json::from_str(&dead).unwrap();
    let started = Instant::now();
    let mut count = dead["messages"].as_u64().unwrap_or(0);
    while count < 1 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(500));
        let d: Value = serde_json::from_str(&mgmt(
            &bed.env,
            "GET",
            &format!("/api/queues/%2F/{}.dead", bed.queue),
            "",
        ))
        .unwrap();
        count = d["messages"].as_u64().unwrap_or(0);
    }
    assert_eq!(count, 1, "dead-letter queue");
}

#[test]
fn the_metrics_listener_can_be_disabled_with_listen_null() {
    let env = Env::load();
    let queue = unique("ready");
    declare_request_queue(&env, &queue);
    // Disabled: no listener line, a line saying it is off.
    let off = server_config(&env, &queue, "").replace("listen: \"127.0.0.1:0\"", "listen: null");
    let server = Server::start(&off);
    assert!(server.metrics_addr.is_none());
    assert!(
        server.logs().contains("metrics listener disabled"),
        "{}",
        server.logs()
    );
    drop(server);
    delete_request_queue(&env, &queue);
}
