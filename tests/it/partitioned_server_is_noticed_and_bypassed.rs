//! A silent network partition is noticed in bounded time: two servers consume one queue; every packet of one
//! server's broker connection is dropped (iptables on its port only: no RST, no FIN) for longer than the
//! requester's timeout. Heartbeats (`broker.heartbeat_secs`) make that server notice within about twice the
//! heartbeat (asserted from its log): it reports unready, drops the connection and reconnects; the broker, whose own heartbeat notices the
//! silent consumer too, gives the requests that server held to the other one. Every request sent during the
//! partition is answered, without errors, within the requester's timeout.

use crate::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

const HEARTBEAT: u64 = 3;
const REQUESTER_TIMEOUT: Duration = Duration::from_secs(30);
const PARTITION: Duration = Duration::from_secs(35);

/// Drops every loopback packet from or to local port `port` until dropped itself.
struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    fn cut(port: u64) -> Partition {
        let rules: Vec<Vec<String>> = ["--sport", "--dport"]
            .iter()
            .map(|dir| {
                [
                    "OUTPUT",
                    "-o",
                    "lo",
                    "-p",
                    "tcp",
                    dir,
                    &port.to_string(),
                    "-j",
                    "DROP",
                ]
                .map(str::to_owned)
                .to_vec()
            })
            .collect();
        for r in &rules {
            let ok = Command::new("iptables").arg("-I").args(r).status().unwrap();
            assert!(ok.success(), "iptables -I {r:?} (the test runs as root)");
        }
        Partition { rules }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for r in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(r).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_server_is_noticed_and_the_other_answers_in_time() {
    let env = Env::load();
    let queue = unique("partition");
    declare_request_queue(&env, &queue);
    let config = server_config(&env, &queue, "")
        .replace("max_in_flight: 64", "max_in_flight: 4")
        .replace(
            "  sasl: anonymous\n",
            &format!("  sasl: anonymous\n  heartbeat_secs: {HEARTBEAT}\n"),
        );
    assert!(config.contains("heartbeat_secs"), "{config}");
    let cut = Server::start(&config);
    let other = Server::start(&config);
    let broker_port: u16 = env.amqp_url().rsplit(':').next().unwrap().parse().unwrap();
    let ports = local_ports_to(cut.child.id(), broker_port);
    assert_eq!(ports.len(), 1, "one broker connection: {ports:?}");
    assert_eq!(cut.http_get("/readyz").0, 200);

    let partition_started = time::OffsetDateTime::now_utc();
    let partition = Partition::cut(ports[0]);
    let started = Instant::now();
    let (_, task, requests) = container_requests(&env, &queue, 40, env.key_ed25519());
    let mut client = RawClient::open(&env, &task).await;
    client.send_requests(&requests).await;
    let replies = client.replies(requests.len(), || cut.logs()).await;
    let answered_in = started.elapsed();
    // The partition outlasts the requester's timeout.
    if let Some(rest) = PARTITION.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    for (id, v) in &replies {
        assert_eq!(v["msg"]["errors"], serde_json::json!([]), "{id}: {v}");
    }
    assert!(
        answered_in < REQUESTER_TIMEOUT,
        "the last reply came after {answered_in:?}, past the requester's {REQUESTER_TIMEOUT:?}"
    );
    drop(partition);
    // When the partitioned server noticed: its log's "connection lost" line, against the partition's start.
    // (The first such line after the partition began: an earlier reconnect must not count.)
    let lost_at = cut
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("broker connection lost"))
        })
        .filter_map(|v| {
            let t = v["timestamp"].as_str()?.to_owned();
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
        })
        .find(|t| *t >= partition_started)
        .unwrap_or_else(|| panic!("the partitioned server never noticed: {}", cut.logs()));
    let noticed_after =
        Duration::try_from(lost_at - partition_started).expect("after the partition began");
    assert!(
        noticed_after < Duration::from_secs(2 * HEARTBEAT + 3),
        "noticed only after {noticed_after:?} (heartbeat {HEARTBEAT} s)"
    );
    // Healed: the partitioned server is ready again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cut.http_get("/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never ready again: {}",
            cut.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let by = |s: &Server| {
        metric_sum(
            &s.scrape(),
            "signbus_requests_total",
            &[("outcome", "signed")],
        )
    };
    println!(
        "partition: {} requests answered in {answered_in:.1?} (requester timeout {REQUESTER_TIMEOUT:?}, partition \
         {PARTITION:?}); the partitioned server noticed after {noticed_after:.1?} and reconnected, signed {} \
         (before or after reconnecting), the other {}",
        requests.len(),
        by(&cut),
        by(&other),
    );
    client.close().await;
    drop((cut, other));
    delete_request_queue(&env, &queue);
}
