//! A request's W3C `traceparent` is continued: the reply carries the same trace id with a new span id, and the
//! server's JSON log lines about the request carry its request_id, type, key, requester and the trace id.
//! Configured secrets never appear in the logs.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use signbus::transport::{OutgoingMessage, Settlement, Transport};
use std::time::{Duration, Instant};

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_and_log_lines_continue_the_requests_trace() {
    let env = Env::load();
    let queue = unique("trace");
    declare_request_queue(&env, &queue);
    // A password in the config (unused with SASL ANONYMOUS) must never be logged.
    let config = server_config(&env, &queue, "").replace(
        "  sasl: anonymous\n",
        "  sasl: anonymous\n  username: someone\n  password: \"pw-that-must-not-leak\"\n",
    );
    let server = Server::start(&config);

    let task = unique("task");
    let rsa = env.key_rsa().to_owned();
    let claim = STANDARD.encode(format!(
        r#"{{"critical": {{"type": "atomic container signature", "image": {{"docker-manifest-digest": "{DIGEST}"}}, "identity": {{"docker-reference": "registry.example.com/ns/repo:1"}}}}, "optional": {{"creator": "t"}}}}"#
    ));
    let id = unique("req");
    let body = json!({
        "sig_key_id": &rsa[rsa.len() - 8..], "claim_file": claim, "request_id": id,
        "created": signbus::requester::isodate_now(), "requested_by": "tracer", "repo": "ns/repo",
        "pub_task_id": task, "manifest_digest": DIGEST,
    });
    let props = json!({
        "mtype": "container_signature", "pub_task_id": task, "manifest_digest": DIGEST,
        "traceparent": format!("00-{TRACE}-{PARENT}-01"),
    });
    let conn = connect(&env, "trace-test").await;
    let mut replies = conn
        .subscribe(&format!("/topic/signbus.reply.tracer.{task}"), 10)
        .await
        .unwrap();
    conn.publish(OutgoingMessage {
        address: format!("/queues/{queue}"),
        body: body.to_string(),
        properties: props.as_object().unwrap().clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(30), replies.next())
        .await
        .expect("a reply within 30 s")
        .unwrap();
    let reply: Value = serde_json::from_slice(&d.message().body).unwrap();
    let reply_props = d.message().properties.clone();
    d.settle(Settlement::Accept).await.unwrap();
    conn.close().await;
    assert_eq!(reply["msg"]["errors"], json!([]), "{reply}");

    let tp = reply_props["traceparent"]
        .as_str()
        .expect("the reply carries traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], TRACE, "same trace id");
    assert_eq!(parts[2].len(), 16);
    assert_ne!(parts[2], PARENT, "a new span id");
    assert_ne!(parts[2], "0000000000000000");
    assert_eq!(parts[3], "01");

    // The "replied" line is written after the broker settled the reply; wait for it.
    let started = Instant::now();
    let line = loop {
        let found = server
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == id.as_str() && v["message"] == "replied");
        if let Some(v) = found {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no `replied` line with span.request_id {id}:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let span = &line["span"];
    assert_eq!(span["trace_id"], TRACE, "{line}");
    assert_eq!(span["span_id"], parts[2], "{line}");
    assert_eq!(span["type"], "container_signature", "{line}");
    assert_eq!(span["key"], "rsa", "{line}");
    assert_eq!(span["requester"], "tracer", "{line}");
    assert_eq!(line["outcome"], "signed", "{line}");
    assert!(
        !server.logs().contains("pw-that-must-not-leak"),
        "{}",
        server.logs()
    );
    drop(server);
    delete_request_queue(&env, &queue);
}
