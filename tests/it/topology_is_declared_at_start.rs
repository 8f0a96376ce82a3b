//! `server.topology`: over AMQP 0-9-1 the server declares its durable request queue, a dead-letter exchange and
//! queue, and bindings at start, and then serves through them; over AMQP 1.0 it refuses at start with a message
//! that says to use the broker's definitions.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_is_declared_over_amqp091_and_refused_over_amqp1() {
    let env = Env::load();
    let queue = unique("topo");
    let rk = unique("VirtualTopic.eng.sign");
    let extra = format!(
        "  topology:\n    queue: \"{queue}\"\n    dead_letter: true\n    bindings:\n      - {{exchange: amq.topic, routing_key: \"{rk}\"}}"
    );
    let config = server_config(&env, &queue, &extra);
    if server_protocol() == "amqp1" {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.yaml");
        std::fs::write(&path, &config).unwrap();
        let (code, _, stderr) = Args::new("serve")
            .opt("--config", &path)
            .opt("--log-format", "json")
            .run();
        assert_ne!(code, 0);
        assert!(stderr.contains("needs AMQP 0-9-1"), "{stderr}");
        return;
    }
    // Nothing declared beforehand: the server does it.
    let server = Server::start(&config);
    let q: Value =
        serde_json::from_str(&mgmt(&env, "GET", &format!("/api/queues/%2F/{queue}"), "")).unwrap();
    assert_eq!(q["durable"], true);
    assert_eq!(
        q["arguments"]["x-dead-letter-exchange"],
        format!("{queue}.dlx")
    );

    // A request published to the bound topic reaches the server; a bad one ends in the dead-letter queue.
    let task = unique("t");
    let mut client = RawClient::open(&env, &task).await;
    let body = serde_json::json!({"request_id": "r1", "requested_by": "tester", "pub_task_id": task, "sig_key_id": "x"});
    let props = serde_json::json!({"mtype": "clearsign_signature", "pub_task_id": task});
    for text in [body.to_string(), "not json".to_owned()] {
        client
            .send(&format!("/exchanges/amq.topic/{rk}"), text, &props)
            .await;
    }
    let v = client
        .next_reply(Duration::from_secs(20), || server.logs())
        .await;
    assert_eq!(v["msg"]["request_id"], "r1");
    assert!(
        v["msg"]["errors"][0].as_str().unwrap().contains("data"),
        "{v}"
    );
    let started = std::time::Instant::now();
    loop {
        let dead: Value = serde_json::from_str(&mgmt(
            &env,
            "GET",
            &format!("/api/queues/%2F/{queue}.dead"),
            "",
        ))
        .unwrap();
        if dead["messages"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing dead-lettered: {dead}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client.close().await;
    drop(server);
    for q in [queue.clone(), format!("{queue}.dead")] {
        mgmt(&env, "DELETE", &format!("/api/queues/%2F/{q}"), "");
    }
    mgmt(
        &env,
        "DELETE",
        &format!("/api/exchanges/%2F/{queue}.dlx"),
        "",
    );
}
