//! One test's world (a queue of its own and a server consuming it), and the run that stops one of two servers
//! on a queue mid-run and checks nothing was lost.

use super::broker::{declare_request_queue, delete_request_queue};
use super::env::{unique, Env};
use super::requester::{
    client_config, connector, container_requests, requester_section, RawClient,
};
use super::server::{metric_sum, server_config, Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One test's world: the env, a request queue of its own, and a server consuming it. Deletes the queue on drop.
pub struct Bed {
    pub env: Env,
    pub queue: String,
    pub server: Option<Server>,
}

impl Bed {
    /// Declares a queue named after `prefix` and starts a server on it (`extra_server` adds `server:` keys).
    pub fn start(prefix: &str, extra_server: &str) -> Bed {
        let env = Env::load();
        let queue = unique(prefix);
        declare_request_queue(&env, &queue);
        let server = Some(Server::start(&server_config(&env, &queue, extra_server)));
        Bed { env, queue, server }
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        self.server.as_ref().map(Server::logs).unwrap_or_default()
    }

    /// The pubtools-sign `msg_signer` section for this queue.
    pub fn requester_config(&self, timeout: u64) -> signbus::requester::MsgSignerConfig {
        requester_section(&self.env, &self.queue, timeout)
    }

    /// A pubtools-sign config file for this queue, in `dir`.
    pub fn requester_config_file(&self, dir: &std::path::Path, timeout: u64) -> PathBuf {
        let path = dir.join("conf.yaml");
        std::fs::write(&path, client_config(&self.env, &self.queue, timeout)).unwrap();
        path
    }

    /// Signs `input` through the library requester; returns the requests, replies and elapsed time.
    pub async fn sign(
        &self,
        input: &signbus::requester::ContainerSignInput,
    ) -> (
        Vec<signbus::requester::PreparedRequest>,
        signbus::requester::Exchange,
        Duration,
    ) {
        use signbus::requester;
        let cfg = self.requester_config(20);
        let requests = requester::prepare_container(&cfg, "tester", input).unwrap();
        let vars =
            requester::template_vars(&cfg, "tester", &input.task_id, input.requester.as_deref());
        let listen = requester::format_address(&cfg.topic_listen_to, &vars).unwrap();
        let connect = connector(&self.env, "bed-requester");
        let started = Instant::now();
        let retry = requester::Retry::from_config(&cfg);
        let ex =
            requester::send_and_receive(&connect, &requests, &listen, "request_id", retry).await;
        let elapsed = started.elapsed();
        (requests, ex, elapsed)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.server.take();
        delete_request_queue(&self.env, &self.queue);
    }
}

/// Sends `n` requests to a server (max_in_flight 8); after 30 replies starts a second server on the same queue and
/// calls `stop` on the first while the second consumes, and checks that every request is answered without errors. Returns what `stop` returned and
/// a [`Bed`] holding the second server (dropping it stops the server, then deletes the queue).
pub async fn every_request_answered_across_a_stop<T: Send + 'static>(
    prefix: &str,
    extra_server: &str,
    n: usize,
    stop: impl FnOnce(Server) -> T + Send + 'static,
) -> (T, Bed) {
    let env = Env::load();
    let queue = unique(prefix);
    declare_request_queue(&env, &queue);
    let config =
        server_config(&env, &queue, extra_server).replace("max_in_flight: 64", "max_in_flight: 8");
    // The first server logs every request it receives (debug), so a test can tell which ones it held.
    let first_server =
        Server::start_with(&config, &[], &["--log-level", "info,signbus::server=debug"]);
    let mut first = Some((first_server, stop));

    let (_, task, requests) = container_requests(&env, &queue, n, env.key_rsa());
    let mut client = RawClient::open(&env, &task).await;
    client.send_requests(&requests).await;

    let mut answered = std::collections::HashSet::new();
    let mut stopped = None;
    let mut second = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} answered",
            answered.len()
        );
        let v = client
            .next_reply(Duration::from_secs(30), || {
                format!("{} of {n} answered", answered.len())
            })
            .await;
        assert_eq!(v["msg"]["errors"], serde_json::Value::Array(vec![]), "{v}");
        answered.insert(v["msg"]["request_id"].as_str().unwrap().to_owned());
        if answered.len() == 30 && second.is_none() {
            // The second server consumes the same queue before the first is stopped.
            second = Some(Server::start(&config));
            let (server, stop) = first.take().unwrap();
            stopped = Some(
                tokio::task::spawn_blocking(move || stop(server))
                    .await
                    .unwrap(),
            );
        }
    }
    let (Some(stopped), Some(second)) = (stopped, second) else {
        panic!("the first server answered everything before it was stopped");
    };
    let ids: std::collections::HashSet<String> = requests.iter().map(|r| r.id.clone()).collect();
    assert_eq!(answered, ids);
    let by_second = metric_sum(&second.scrape(), "signbus_requests_total", &[]);
    println!(
        "{prefix}: {n} requests, first server stopped after 30 replies while a second consumed the same queue; \
         {} answered without errors, {by_second} of them (or their repeats) by the second server",
        answered.len()
    );
    client.close().await;
    (
        stopped,
        Bed {
            env,
            queue,
            server: Some(second),
        },
    )
}
