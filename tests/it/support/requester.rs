//! The requester side against the testenv broker: pubtools-sign client configs, prepared requests, connections,
//! a raw client that publishes hand-made messages, and library requester runs going on in the background.

use super::env::{protocol_of, requester_protocol, unique, Env};
use std::time::{Duration, Instant};

/// A pubtools-sign client config for the testenv broker, sending to `queue`.
pub fn client_config(env: &Env, queue: &str, timeout: u64) -> String {
    let dir = env.get("SIGNBUS_TESTENV_DIR");
    let section = format!(
        r#"  messaging_brokers: ["{url}"]
  messaging_cert_key: "{dir}/tls/client.pem"
  messaging_ca_cert: "{dir}/tls/ca.pem"
  topic_send_to: "/queues/{queue}"
  topic_listen_to: "/topic/signbus.reply.{{creator}}.{{task_id}}"
  environment: "test"
  service: "pubtools-sign"
  timeout: {timeout}
  retries: 2
  send_retries: 2
  message_id_key: "request_id"
  log_level: "INFO"
  key_aliases:
    test-alias: "{ed}"
"#,
        url = env.amqp_url(),
        ed = env.key_ed25519(),
    );
    format!("msg_signer:\n{section}msg_batch_signer:\n{section}  chunk_size: 50\n")
}

/// The `msg_signer` section of [`client_config`], parsed.
pub fn requester_section(
    env: &Env,
    queue: &str,
    timeout: u64,
) -> signbus::requester::MsgSignerConfig {
    let text = client_config(env, queue, timeout);
    let parsed =
        signbus::requester::RequesterConfig::parse(&text, std::path::Path::new("c"), |_| None);
    parsed.unwrap().single().unwrap().clone()
}

/// `n` container requests to `queue` (references `registry.example.com/ns/app:<i>`, each with its own digest),
/// signed with `key`, as the requester `tester` prepares them under a new task id. Returns the requester config
/// section (30 s timeout), the task id and the requests.
pub fn container_requests(
    env: &Env,
    queue: &str,
    n: usize,
    key: &str,
) -> (
    signbus::requester::MsgSignerConfig,
    String,
    Vec<signbus::requester::PreparedRequest>,
) {
    let cfg = requester_section(env, queue, 30);
    let task = unique("t");
    let input = signbus::requester::ContainerSignInput {
        digests: (0..n).map(|i| format!("sha256:{i:064x}")).collect(),
        references: (0..n)
            .map(|i| format!("registry.example.com/ns/app:{i}"))
            .collect(),
        signing_keys: vec![key.to_owned()],
        task_id: task.clone(),
        requester: Some("tester".into()),
        ..Default::default()
    };
    let requests = signbus::requester::prepare_container(&cfg, "tester", &input).unwrap();
    (cfg, task, requests)
}

/// Base64 to bytes (panics on bad input).
pub fn unbase64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A connection to the testenv broker (over the suite's requester protocol).
pub async fn connect(env: &Env, name: &str) -> signbus::transport::Broker {
    signbus::transport::Connect::connect(&connector(env, name))
        .await
        .unwrap()
}

/// What opens connections to the testenv broker (over the suite's requester protocol), for requesters that
/// reconnect.
pub fn connector(env: &Env, name: &str) -> signbus::transport::Connector {
    signbus::transport::Connector {
        config: signbus::transport::BrokerConfig {
            urls: vec![env.amqp_url().into()],
            protocol: protocol_of(&requester_protocol()),
            ..Default::default()
        },
        container_id: name.to_owned(),
    }
}

/// A requester that publishes hand-made messages and collects the replies a test server sends to
/// `/topic/signbus.reply.tester.<task>` (the tests' reply template with `requested_by: tester`).
pub struct RawClient {
    pub conn: signbus::transport::Broker,
    replies: signbus::transport::Subscription,
}

impl RawClient {
    /// Connects (over the suite's requester protocol) and listens for `task`'s replies before anything is sent.
    pub async fn open(env: &Env, task: &str) -> RawClient {
        let conn = connect(env, task).await;
        let address = format!("/topic/signbus.reply.tester.{task}");
        let replies = signbus::transport::Transport::subscribe(&conn, &address, 1000)
            .await
            .unwrap();
        RawClient { conn, replies }
    }

    /// Publishes `body` (JSON text or anything else) with `properties` (a JSON object) to `address`.
    pub async fn send(&self, address: &str, body: String, properties: &serde_json::Value) {
        self.try_send(address, body, properties, None)
            .await
            .unwrap();
    }

    /// Publishes prepared requests as they are.
    pub async fn send_requests(&self, requests: &[signbus::requester::PreparedRequest]) {
        for r in requests {
            let body = serde_json::Value::Object(r.body.clone()).to_string();
            let properties = serde_json::Value::Object(r.properties.clone());
            self.send(&r.address, body, &properties).await;
        }
    }

    /// As [`RawClient::send`], with an AMQP `user-id`, returning what the broker said.
    pub async fn try_send(
        &self,
        address: &str,
        body: String,
        properties: &serde_json::Value,
        user_id: Option<&str>,
    ) -> Result<(), signbus::transport::TransportError> {
        let message = signbus::transport::OutgoingMessage {
            address: address.to_owned(),
            body,
            properties: properties.as_object().cloned().unwrap_or_default(),
            user_id: user_id.map(str::to_owned),
            ..Default::default()
        };
        signbus::transport::Transport::publish(&self.conn, message).await
    }

    /// The next reply, accepted off the queue; panics after `timeout` (with `context()` in the message).
    pub async fn next_reply(
        &mut self,
        timeout: Duration,
        context: impl Fn() -> String,
    ) -> serde_json::Value {
        let d = tokio::time::timeout(timeout, self.replies.next())
            .await
            .unwrap_or_else(|_| panic!("no reply within {timeout:?}\n{}", context()))
            .expect("the reply link stays open");
        let v: serde_json::Value = serde_json::from_slice(&d.message().body).unwrap();
        d.settle(signbus::transport::Settlement::Accept)
            .await
            .unwrap();
        v
    }

    /// `n` replies keyed by `msg.request_id`, each waited for at most 20 s.
    pub async fn replies(
        &mut self,
        n: usize,
        context: impl Fn() -> String,
    ) -> std::collections::HashMap<String, serde_json::Value> {
        let mut got = std::collections::HashMap::new();
        while got.len() < n {
            let v = self
                .next_reply(Duration::from_secs(20), || {
                    format!("{} of {n} replies\n{}", got.len(), context())
                })
                .await;
            got.insert(v["msg"]["request_id"].as_str().unwrap().to_owned(), v);
        }
        got
    }

    pub async fn close(self) {
        signbus::transport::Transport::close(&self.conn).await;
    }
}

/// Counts sends and (de-duplicated) replies of a requester run as they arrive, and when each reply came.
#[derive(Default)]
pub struct Count {
    pub sent: std::sync::atomic::AtomicUsize,
    pub replied: std::sync::atomic::AtomicUsize,
    pub reply_times: std::sync::Mutex<Vec<Instant>>,
}

impl signbus::requester::Progress for Count {
    fn sent(&self) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn replied(&self, _ok: bool) {
        self.replied
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.reply_times.lock().unwrap().push(Instant::now());
    }
}

/// A library requester run (`send_and_receive_with_progress` with the config's retries) going on in the
/// background, for tests that break something in the middle of it.
pub struct BackgroundRun {
    pub progress: std::sync::Arc<Count>,
    pub started: Instant,
    run: tokio::task::JoinHandle<signbus::requester::Exchange>,
}

impl BackgroundRun {
    /// Sends `requests` (made for `task` under `cfg`) through `connect` and collects their replies.
    pub fn start(
        connect: signbus::transport::Connector,
        cfg: &signbus::requester::MsgSignerConfig,
        task: &str,
        requests: &[signbus::requester::PreparedRequest],
    ) -> BackgroundRun {
        use signbus::requester;
        let vars = requester::template_vars(cfg, "tester", task, Some("tester"));
        let listen = requester::format_address(&cfg.topic_listen_to, &vars).unwrap();
        let retry = requester::Retry::from_config(cfg);
        let progress = std::sync::Arc::new(Count::default());
        let (requests, counted) = (requests.to_vec(), progress.clone());
        let run = tokio::spawn(async move {
            requester::send_and_receive_with_progress(
                &connect,
                &requests,
                &listen,
                "request_id",
                retry,
                counted.as_ref(),
            )
            .await
        });
        BackgroundRun {
            progress,
            started: Instant::now(),
            run,
        }
    }

    /// Replies so far.
    pub fn replied(&self) -> usize {
        self.progress
            .replied
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `n` replies came (at most 120 s; the panic message ends with `context()`); returns how many.
    pub async fn wait_for_replies(&self, n: usize, context: impl Fn() -> String) -> usize {
        while self.replied() < n {
            assert!(
                self.started.elapsed() < Duration::from_secs(120),
                "only {} replies of the {n} awaited\n{}",
                self.replied(),
                context()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.replied()
    }

    /// The run's result (it must end within 300 s) and how long it took.
    pub async fn finish(
        self,
    ) -> (
        signbus::requester::Exchange,
        Duration,
        std::sync::Arc<Count>,
    ) {
        let ex = tokio::time::timeout(Duration::from_secs(300), self.run)
            .await
            .expect("the run ends")
            .unwrap();
        (ex, self.started.elapsed(), self.progress)
    }
}

/// Asserts a finished run got exactly one error-free reply per request, over the claim it sent, and counted
/// each request sent once and answered once (resends and repeats are not new).
pub fn assert_each_answered_once(
    ex: &signbus::requester::Exchange,
    progress: &Count,
    requests: &[signbus::requester::PreparedRequest],
    context: impl Fn() -> String,
) {
    use std::sync::atomic::Ordering;
    let n = requests.len();
    assert!(
        ex.error.is_none(),
        "the run failed: {:?}\n{}",
        ex.error,
        context()
    );
    assert_eq!(ex.replies.len(), n, "one reply per request\n{}", context());
    assert_eq!(
        progress.replied.load(Ordering::SeqCst),
        n,
        "no duplicate counted"
    );
    assert_eq!(
        progress.sent.load(Ordering::SeqCst),
        n,
        "resends are not new requests"
    );
    for r in requests {
        let (doc, _) = ex.replies.get(&r.id).expect("every request answered");
        let msg = &doc["msg"];
        assert_eq!(msg["errors"], serde_json::json!([]), "{msg}");
        assert_eq!(msg["claim_file"], r.body["claim_file"]);
    }
}
