//! Several servers, several broker nodes, one queue. Two signbus servers and a requester, each given the three
//! nodes of a RabbitMQ cluster as a failover list, share a quorum request queue (replicated on the three nodes).
//! The node one server is connected to is SIGKILLed mid-run: that server fails over to another node, the
//! requests it held go back to the queue (its new leader, if the dead node led it) and are answered; the run ends
//! with one verified signature per request. And a poison request, one that keeps taking its consumers down, is
//! answered with an error once the quorum queue has counted `server.max_deliveries` deliveries of it, instead of
//! being processed again: it does not loop.
//!
//! The tests start the cluster themselves (testenv/cluster-up.sh) and run one at a time; testenv/test.sh runs
//! this module on its own and stops the cluster afterwards (testenv/cluster-down.sh).

use crate::support::cluster::*;
use crate::support::*;
use signbus::transport::{Connect, Settlement, Transport};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_of_a_server_killed_mid_run_every_request_answered_once() {
    let cluster = Cluster::up();
    let env = Env::load();
    let queue = unique("cluster");
    cluster.declare_quorum_request_queue(&queue);
    // Everyone gets all three nodes, each list starting elsewhere: server A on node 1, server B on node 2, the
    // requester on node 3 (while those answer).
    let server_a = Server::start(&cluster_server_config(
        &env,
        &cluster.urls_from(0),
        &queue,
        "",
    ));
    let server_b = Server::start(&cluster_server_config(
        &env,
        &cluster.urls_from(1),
        &queue,
        "",
    ));
    let a_url =
        connected_url(&server_a.logs()).expect("server A logged the broker it connected to");
    let victim = cluster
        .node_of(&a_url)
        .unwrap_or_else(|| panic!("server A connected to {a_url}, not a cluster node"));

    let n = 1000;
    let (cfg, task, requests) = container_requests(&env, &queue, n, env.key_ed25519());
    let connect = cluster.connector(&cluster.urls_from(2), "cluster-requester");
    let run = BackgroundRun::start(connect, &cfg, &task, &requests);
    let logs = || {
        format!(
            "A:\n{}\nB:\n{}",
            server_a.log_digest(),
            server_b.log_digest()
        )
    };
    let answered_before = run.wait_for_replies(100, logs).await;
    let killed_at = Instant::now();
    tokio::task::spawn_blocking(move || Cluster::kill_node(victim))
        .await
        .unwrap();
    let (ex, elapsed, progress) = run.finish().await;
    assert_each_answered_once(&ex, &progress, &requests, logs);
    // Every reply is a signature, by the test key, over the claim its request sent.
    let verify_started = Instant::now();
    let mut signatures = Vec::new();
    for r in &requests {
        let msg = &ex.replies[&r.id].0["msg"];
        signatures.push(unbase64(msg["signed_claim"].as_str().unwrap()));
    }
    let payloads = gpg_payloads(&env, env.key_ed25519(), &signatures);
    for (r, payload) in requests.iter().zip(&payloads) {
        assert_eq!(
            *payload,
            unbase64(r.body["claim_file"].as_str().unwrap()),
            "{}",
            r.id
        );
    }
    eprintln!(
        "verified {n} signatures in {:.1} s",
        verify_started.elapsed().as_secs_f64()
    );
    // Server A failed over to another node; it answered requests before and after.
    let a_connections = connected_urls(&server_a.logs());
    let after = a_connections.last().cloned().unwrap_or_default();
    assert!(
        a_connections.len() >= 2 && after != a_url,
        "server A reconnected elsewhere: {a_connections:?}\n{}",
        logs()
    );
    let by_a = metric_sum(&server_a.scrape(), "signbus_requests_total", &[]);
    let by_b = metric_sum(&server_b.scrape(), "signbus_requests_total", &[]);
    // The longest silence among the replies after the kill: how long the run noticed the node's loss.
    let gap = {
        let times = progress.reply_times.lock().unwrap();
        let mut last = killed_at;
        let mut gap = Duration::ZERO;
        for t in times.iter().filter(|t| **t > killed_at) {
            gap = gap.max(t.duration_since(last));
            last = *t;
        }
        gap
    };
    println!(
        "cluster failover ({} servers): {n} requests, {answered_before} answered before node {} ({}) was killed \
         under server A; A reconnected to {after}; longest wait for a reply after the kill {:.1} s; run took {:.1} s; \
         requests handled (repeats included) A {by_a}, B {by_b}; {} replies, 0 duplicates, 0 errors, every \
         signature verified",
        server_protocol(),
        victim + 1,
        cluster.nodes[victim],
        gap.as_secs_f64(),
        elapsed.as_secs_f64(),
        ex.replies.len()
    );
    let t = Instant::now();
    drop(server_a);
    drop(server_b);
    eprintln!("servers stopped in {:.1} s", t.elapsed().as_secs_f64());
    cluster.delete_request_queue(&queue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_request_in_a_quorum_queue_is_answered_after_max_deliveries_and_never_loops() {
    let cluster = Cluster::up();
    let env = Env::load();
    let queue = unique("poison");
    cluster.declare_quorum_request_queue(&queue);
    let max_deliveries = 3;
    let (_, task, requests) = container_requests(&env, &queue, 1, env.key_ed25519());
    let request = &requests[0];

    // The requester: listens for the reply, then publishes the request.
    let requester = cluster
        .connector(&cluster.urls_from(2), &task)
        .connect()
        .await
        .unwrap();
    let mut replies = requester
        .subscribe(&format!("/topic/signbus.reply.tester.{task}"), 10)
        .await
        .unwrap();
    requester
        .publish(signbus::transport::OutgoingMessage {
            address: request.address.clone(),
            body: serde_json::Value::Object(request.body.clone()).to_string(),
            properties: request.properties.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    // "Servers" that die holding it: each takes the delivery and loses its connection without settling it.
    // The quorum queue counts each return.
    let crash_protocol = protocol_of(&server_protocol());
    let mut counts = Vec::new();
    for i in 0..max_deliveries {
        let connector = signbus::transport::Connector {
            config: Cluster::broker_config(&cluster.urls_from(i as usize % 3), crash_protocol),
            container_id: format!("crashing-server-{i}"),
        };
        let conn = connector.connect().await.unwrap();
        let mut sub = conn
            .subscribe(&format!("/queues/{queue}"), 1)
            .await
            .unwrap();
        let d = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .unwrap_or_else(|_| panic!("delivery {i} of the poison request did not come"))
            .expect("the link stays open");
        counts.push(d.message().delivery_count);
        // What a server that crashes mid-request leaves behind: no settlement at all (dropping the delivery
        // would release it, an outcome of its own), then its connection goes away.
        std::mem::forget(d);
        drop(sub);
        conn.close().await;
    }
    assert_eq!(
        counts,
        (0..max_deliveries).collect::<Vec<_>>(),
        "the quorum queue counts every delivery that was not settled"
    );

    // A real server with the limit: it answers with the error and does not sign.
    let started = Instant::now();
    let server = Server::start_with(
        &cluster_server_config(
            &env,
            &cluster.urls_from(0),
            &queue,
            &format!("  max_deliveries: {max_deliveries}"),
        ),
        &[],
        &["--log-level", "info,signbus::server=debug"],
    );
    let reply = tokio::time::timeout(Duration::from_secs(30), replies.next())
        .await
        .unwrap_or_else(|_| panic!("no reply to the poison request\n{}", server.logs()))
        .expect("the reply link stays open");
    let doc: serde_json::Value = serde_json::from_slice(&reply.message().body).unwrap();
    reply.settle(Settlement::Accept).await.unwrap();
    let answered_in = started.elapsed();
    let msg = &doc["msg"];
    assert_eq!(msg["request_id"], request.body["request_id"]);
    let errors = msg["errors"].to_string();
    assert!(
        errors.contains(&format!("delivered {} times", max_deliveries + 1))
            && errors.contains("not processing it again"),
        "{msg}"
    );
    assert!(
        msg["signed_claim"].is_null() || msg["signed_claim"] == "",
        "not signed: {msg}"
    );

    // It never loops: the queue and its dead-letter queue end empty, the server received it once, and no other
    // reply comes.
    let drained = wait_until(Duration::from_secs(15), || {
        cluster.queue_depth(&queue) == (0, 0)
    });
    assert!(
        drained,
        "queue not empty: {:?}",
        cluster.queue_depth(&queue)
    );
    assert_eq!(
        cluster.queue_depth(&format!("{queue}.dead")),
        (0, 0),
        "nothing dead-lettered"
    );
    let more = tokio::time::timeout(Duration::from_secs(3), replies.next()).await;
    assert!(more.is_err(), "a second reply came: the request looped");
    let received = server
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "received")
        .count();
    assert_eq!(
        received,
        1,
        "the server received it once\n{}",
        server.logs()
    );
    let metrics = server.scrape();
    let redelivered = metric_sum(
        &metrics,
        "signbus_requests_total",
        &[("outcome", "redelivered")],
    );
    assert_eq!(redelivered, 1.0, "{metrics}");
    println!(
        "poison request ({} server): {max_deliveries} consumers died holding it (quorum queue delivery counts \
         {counts:?}); the server with max_deliveries {max_deliveries} answered it in {:.1} s with {errors}; \
         received once, queue and dead-letter queue empty",
        server_protocol(),
        answered_in.as_secs_f64()
    );
    drop(server);
    requester.close().await;
    cluster.delete_request_queue(&queue);
}
