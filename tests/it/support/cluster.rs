//! The 3-node RabbitMQ test cluster (testenv/cluster-up.sh): brought up by the tests that need it, one such
//! test at a time. A cluster that cannot be brought up is a test failure, never a skip.

use super::broker::mgmt_at;
use super::env::{protocol_of, requester_protocol, testenv_dir, Env};
use super::http::HttpError;
use super::server::server_config;
use std::process::Command;
use std::time::{Duration, Instant};

/// The cluster, up and whole, for as long as this value lives; no other cluster test of this checkout runs
/// meanwhile (they kill nodes). Teardown is testenv/cluster-down.sh's (testenv/test.sh calls it).
pub struct Cluster {
    /// `amqp://127.0.0.1:<port>` of nodes 1..3.
    pub urls: Vec<String>,
    /// Management API base URLs of nodes 1..3 (guest:guest).
    pub mgmt_urls: Vec<String>,
    /// Erlang node names of nodes 1..3.
    pub nodes: Vec<String>,
    _lock: std::fs::File,
}

impl Cluster {
    /// Runs testenv/cluster-up.sh (idempotent: it reuses a whole cluster and restarts nodes an earlier test
    /// killed) under an exclusive lock held until drop.
    pub fn up() -> Cluster {
        let dir = testenv_dir().join(".run/cluster");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join(".test.lock")).unwrap();
        lock.lock().expect("lock the cluster for this test");
        let started = Instant::now();
        let out = Command::new(testenv_dir().join("cluster-up.sh"))
            .output()
            .expect("testenv/cluster-up.sh runs");
        assert!(
            out.status.success(),
            "testenv/cluster-up.sh failed (the cluster tests need a 3-node RabbitMQ cluster):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "cluster up in {:.1} s:\n{}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        let env = Env::load_file(&dir.join("env"));
        let list =
            |k: &str| -> Vec<String> { env.get(k).split_whitespace().map(str::to_owned).collect() };
        let cluster = Cluster {
            urls: list("SIGNBUS_CLUSTER_AMQP_URLS"),
            mgmt_urls: list("SIGNBUS_CLUSTER_MGMT_URLS"),
            nodes: list("SIGNBUS_CLUSTER_NODES"),
            _lock: lock,
        };
        assert_eq!(cluster.urls.len(), 3, "three nodes");
        cluster
    }

    /// The node URLs starting at node `first` (0-based) and wrapping around: a failover list.
    pub fn urls_from(&self, first: usize) -> Vec<String> {
        (0..self.urls.len())
            .map(|i| self.urls[(first + i) % self.urls.len()].clone())
            .collect()
    }

    /// The index (0-based) of the node whose AMQP URL is `url`.
    pub fn node_of(&self, url: &str) -> Option<usize> {
        self.urls.iter().position(|u| u == url)
    }

    /// SIGKILLs every process of node `i` (0-based) with testenv/cluster-kill-node.sh; it stays down.
    pub fn kill_node(i: usize) {
        let out = Command::new(testenv_dir().join("cluster-kill-node.sh"))
            .arg((i + 1).to_string())
            .output()
            .expect("cluster-kill-node.sh runs");
        assert!(
            out.status.success(),
            "cluster-kill-node.sh {} failed: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Calls the management API of the first node that answers; returns the body. Panics on HTTP errors.
    pub fn mgmt(&self, method: &str, path: &str, body: &str) -> String {
        let mut last = String::new();
        for base in &self.mgmt_urls {
            match mgmt_at(base, method, path, body) {
                Ok(text) => return text,
                // a node that is down does not answer at all; try the next
                Err(HttpError::Unreachable(e)) => last = e,
                Err(e) => panic!("{method} {base}{path}: {e}"),
            }
        }
        panic!("{method} {path}: no node answered: {last}")
    }

    /// Declares quorum queue `name` on three replicas, dead-lettering to quorum queue `name.dead`. Its
    /// `x-delivery-limit` (1000) is far above any `server.max_deliveries`, so the limit a test meets is signbus's.
    pub fn declare_quorum_request_queue(&self, name: &str) {
        let quorum =
            r#""x-queue-type":"quorum","x-quorum-initial-group-size":3,"x-delivery-limit":1000"#;
        let dead = format!("{name}.dead");
        self.mgmt(
            "PUT",
            &format!("/api/queues/%2F/{dead}"),
            &format!(r#"{{"durable":true,"auto_delete":false,"arguments":{{{quorum}}}}}"#),
        );
        self.mgmt(
            "PUT",
            &format!("/api/queues/%2F/{name}"),
            &format!(
                r#"{{"durable":true,"auto_delete":false,"arguments":{{{quorum},"x-dead-letter-exchange":"","x-dead-letter-routing-key":"{dead}"}}}}"#
            ),
        );
    }

    /// Deletes a request queue and its dead-letter queue.
    pub fn delete_request_queue(&self, name: &str) {
        self.mgmt("DELETE", &format!("/api/queues/%2F/{name}"), "");
        self.mgmt("DELETE", &format!("/api/queues/%2F/{name}.dead"), "");
    }

    /// (ready, unacknowledged) messages of a queue, as the management API reports them (it lags ~1-2 s).
    pub fn queue_depth(&self, name: &str) -> (u64, u64) {
        let v: serde_json::Value = serde_json::from_str(&self.mgmt(
            "GET",
            &format!("/api/queues/%2F/{name}?columns=messages_ready,messages_unacknowledged"),
            "",
        ))
        .unwrap();
        (
            v["messages_ready"].as_u64().unwrap_or(0),
            v["messages_unacknowledged"].as_u64().unwrap_or(0),
        )
    }

    /// The broker section of a signbus config: `urls` as a failover list, over `protocol`.
    pub fn broker_config(
        urls: &[String],
        protocol: signbus::transport::Protocol,
    ) -> signbus::transport::BrokerConfig {
        signbus::transport::BrokerConfig {
            urls: urls.to_vec(),
            protocol,
            ..Default::default()
        }
    }

    /// A connector to the cluster over the suite's requester protocol, trying `urls` in order.
    pub fn connector(&self, urls: &[String], name: &str) -> signbus::transport::Connector {
        signbus::transport::Connector {
            config: Cluster::broker_config(urls, protocol_of(&requester_protocol())),
            container_id: name.to_owned(),
        }
    }
}

/// A test server config (see [`server_config`]) with `urls` as its broker failover list.
pub fn cluster_server_config(
    env: &Env,
    urls: &[String],
    queue: &str,
    extra_server: &str,
) -> String {
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let single = format!("urls: [\"{}\"]", env.amqp_url());
    let config = server_config(env, queue, extra_server);
    assert!(config.contains(&single));
    config.replace(&single, &format!("urls: [{list}]"))
}

/// The broker URL a server's log says it connected to last (`connected (AMQP ...)`, field `broker`).
pub fn connected_url(logs: &str) -> Option<String> {
    connected_urls(logs).pop()
}

/// Every `connected (AMQP ...)` URL in a server's log, in order.
pub fn connected_urls(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("connected (AMQP"))
        })
        .filter_map(|v| v["broker"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `cond` every 250 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
