//! Shared fixtures for the integration tests: the testenv broker, a signbus server process per test, and the
//! RabbitMQ management API for declaring per-test queues. A missing testenv is a test failure, never a skip.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Values exported by `testenv/up.sh` in `testenv/.run/env`.
pub struct Env {
    pub vars: HashMap<String, String>,
}

impl Env {
    pub fn load() -> Env {
        Env::load_file(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testenv/.run/env"))
    }

    /// Reads an env file of `export K=V` lines (testenv/.run/env, testenv/.run/cluster/env).
    pub fn load_file(path: &std::path::Path) -> Env {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}. The integration tests need the real broker: run testenv/up.sh first",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    v.trim_matches(|c| c == '"' || c == '\'').to_owned(),
                )
            })
            .collect();
        Env { vars }
    }
    pub fn get(&self, k: &str) -> &str {
        self.vars
            .get(k)
            .unwrap_or_else(|| panic!("testenv/.run/env lacks {k}"))
    }
    pub fn gnupg_home(&self) -> &str {
        self.get("GNUPGHOME")
    }
    pub fn amqp_url(&self) -> &str {
        self.get("SIGNBUS_AMQP_URL")
    }
    pub fn key_ed25519(&self) -> &str {
        self.get("SIGNBUS_TEST_KEY")
    }
    pub fn key_rsa(&self) -> &str {
        self.get("SIGNBUS_TEST_KEY_RSA")
    }
}

/// The protocol the test servers speak: `SIGNBUS_TEST_PROTOCOL` (`amqp1`, the default, or `amqp091`). The
/// same suite runs once per protocol combination (see testenv/test.sh).
pub fn server_protocol() -> String {
    std::env::var("SIGNBUS_TEST_PROTOCOL").unwrap_or_else(|_| "amqp1".into())
}

/// The protocol the test requesters speak: `SIGNBUS_TEST_REQUESTER_PROTOCOL`, default the server's.
pub fn requester_protocol() -> String {
    std::env::var("SIGNBUS_TEST_REQUESTER_PROTOCOL").unwrap_or_else(|_| server_protocol())
}

pub fn protocol_of(name: &str) -> signbus::transport::Protocol {
    match name {
        "amqp091" => signbus::transport::Protocol::Amqp091,
        "amqp1" => signbus::transport::Protocol::Amqp1,
        other => panic!("unknown protocol {other:?} (amqp1 or amqp091)"),
    }
}

/// A unique name for this test's queues and task ids.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Declares a request queue `name` (dead-lettering into `name.dead`) through the management API.
pub fn declare_request_queue(env: &Env, name: &str) {
    declare_queues(env, name, false);
}

/// As [`declare_request_queue`], durable: the queues survive a broker restart.
pub fn declare_durable_request_queue(env: &Env, name: &str) {
    declare_queues(env, name, true);
}

fn declare_queues(env: &Env, name: &str, durable: bool) {
    let dead = format!("{name}.dead");
    mgmt(
        env,
        "PUT",
        &format!("/api/queues/%2F/{dead}"),
        &format!(r#"{{"durable":{durable},"auto_delete":false}}"#),
    );
    let args = format!(
        r#"{{"durable":{durable},"auto_delete":false,"arguments":{{"x-dead-letter-exchange":"","x-dead-letter-routing-key":"{dead}"}}}}"#
    );
    mgmt(env, "PUT", &format!("/api/queues/%2F/{name}"), &args);
}

/// Kills the testenv broker with SIGKILL, keeps it down for `down`, starts it again with its data, and waits
/// until it is ready (testenv/restart-broker.sh). Returns how long the broker was unavailable.
pub fn restart_broker(env: &Env, down: Duration) -> Duration {
    let script = std::path::Path::new(env.get("SIGNBUS_TESTENV_DIR"))
        .parent()
        .unwrap()
        .join("restart-broker.sh");
    let started = Instant::now();
    let out = Command::new(&script)
        .arg(down.as_secs().to_string())
        .output()
        .expect("restart-broker.sh runs");
    assert!(
        out.status.success(),
        "restart-broker.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Deletes a queue (and its dead-letter queue).
pub fn delete_request_queue(env: &Env, name: &str) {
    mgmt(env, "DELETE", &format!("/api/queues/%2F/{name}"), "");
    mgmt(env, "DELETE", &format!("/api/queues/%2F/{name}.dead"), "");
}

/// Calls the testenv broker's management API with curl; returns the body. Panics on HTTP errors.
pub fn mgmt(env: &Env, method: &str, path: &str, body: &str) -> String {
    mgmt_at(env.get("SIGNBUS_MGMT_URL"), method, path, body)
        .unwrap_or_else(|(_, e)| panic!("{method} {path}: {e}"))
}

/// Calls a RabbitMQ management API at `base` with curl (10 s at most): Ok(body), or Err((could not connect,
/// message)).
pub fn mgmt_at(base: &str, method: &str, path: &str, body: &str) -> Result<String, (bool, String)> {
    let url = format!("{base}{path}");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--fail-with-body",
        "--max-time",
        "10",
        "-u",
        "guest:guest",
        "-X",
        method,
        "-H",
        "content-type: application/json",
        &url,
    ]);
    if !body.is_empty() {
        cmd.args(["-d", body]);
    }
    let out = cmd.output().expect("curl runs");
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // curl exit 7: could not connect; 28: timed out (a node going down)
    let unreachable = matches!(out.status.code(), Some(7) | Some(28) | Some(52) | Some(56));
    Err((
        unreachable,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// A server config consuming `queue`, replying by template, with both test keys.
pub fn server_config(env: &Env, queue: &str, extra_server: &str) -> String {
    format!(
        r#"broker:
  urls: ["{url}"]
  protocol: {protocol}
  sasl: anonymous
server:
  listen_to: "/queues/{queue}"
  reply_to: "/exchanges/amq.topic/signbus.reply.{{creator}}.{{task_id}}"
  max_in_flight: 64
{extra_server}
metrics:
  listen: "127.0.0.1:0"
signing:
  gnupg_home: "{home}"
  workers: 2
  keys:
    - id: "{ed}"
      name: "ed25519"
      aliases: ["test-ed25519"]
    - id: "{rsa}"
      name: "rsa"
"#,
        url = env.amqp_url(),
        protocol = server_protocol(),
        home = env.gnupg_home(),
        ed = env.key_ed25519(),
        rsa = env.key_rsa(),
    )
}

/// A `signbus serve` process; SIGTERMed and reaped on drop.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The operations listener's address, from the `metrics listening` log line (the fixture binds port 0).
    pub metrics_addr: Option<String>,
}

impl Server {
    /// Starts a server with `config` and waits until it consumes.
    pub fn start(config: &str) -> Server {
        Server::start_with(config, &[], &[])
    }

    /// As [`Server::start`], with more environment variables and `serve` arguments.
    pub fn start_with(config: &str, envs: &[(&str, &str)], args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_signbus"))
            .args([
                "serve",
                "--config",
                path.to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start signbus serve");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("consuming") {
                    let _ = tx.send(());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        loop {
            if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "server exited with {status}: {}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start: {}",
                log.lock().unwrap().join("\n")
            );
        }
        let metrics_addr = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "metrics listening")
            .and_then(|v| v["addr"].as_str().map(str::to_owned));
        Server {
            child,
            dir,
            log,
            metrics_addr,
        }
    }

    /// `GET path` on the server's operations listener: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let addr = self
            .metrics_addr
            .as_deref()
            .expect("the server logged no `metrics listening` line");
        http_get(addr, path)
    }

    /// The server's `/metrics` text (panics unless 200).
    pub fn scrape(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Sends SIGTERM and waits for exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("server did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe_kill(self.child.id(), "TERM");
            let started = Instant::now();
            while self.child.try_wait().ok().flatten().is_none()
                && started.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal with kill(1).
pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

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

/// Verifies an image signature with skopeo against the testenv keyring. Returns skopeo's output or panics.
pub fn skopeo_verify(
    env: &Env,
    manifest: &[u8],
    reference: &str,
    fingerprint: &str,
    signature: &[u8],
) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifest");
    let s = dir.path().join("signature");
    std::fs::write(&m, manifest).unwrap();
    std::fs::write(&s, signature).unwrap();
    let out = Command::new("skopeo")
        .env("GNUPGHOME", env.gnupg_home())
        .args([
            "standalone-verify",
            m.to_str().unwrap(),
            reference,
            fingerprint,
            s.to_str().unwrap(),
        ])
        .output()
        .expect("skopeo runs");
    verdict(out)
}

/// A finished command's stdout and stderr together, as `Ok` when it succeeded and `Err` when it failed.
pub fn verdict(out: std::process::Output) -> Result<String, String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The literal data inside an OpenPGP signed message, extracted by gpg (which also checks the signature).
pub fn gpg_payload(env: &Env, signature: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gpg")
        .env("GNUPGHOME", env.gnupg_home())
        .args(["--batch", "--quiet", "--decrypt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(signature).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gpg --decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

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

/// Runs a program; returns (exit code, stdout, stderr).
pub fn run_cmd(program: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    // signbus requester commands speak this run's requester protocol; other programs ignore the variable.
    let out = Command::new(program)
        .env("SIGNBUS_PROTOCOL", requester_protocol())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `gpg --verify` with the testenv keyring; returns gpg's report or its complaint.
pub fn gpg_verify(env: &Env, args: &[&std::path::Path]) -> Result<String, String> {
    let out = Command::new("gpg")
        .env("GNUPGHOME", env.gnupg_home())
        .args(["--batch", "--status-fd", "1", "--verify"])
        .args(args)
        .output()
        .expect("gpg runs");
    verdict(out)
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

/// The signbus binary under test.
pub fn signbus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_signbus"))
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

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, body.to_owned())
}

/// The sum of the samples of metric `name` (exact name, no suffix) whose labels include every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let has_all = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            has_all.then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The local ports of the established TCP connections process `pid` has to remote port `port` (its socket inodes
/// from `/proc/<pid>/fd`, matched in `/proc/<pid>/net/tcp{,6}`).
pub fn local_ports_to(pid: u32, port: u16) -> Vec<u64> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex_port = |addr: &str| u64::from_str_radix(addr.rsplit(':').next()?, 16).ok();
            if f.len() > 9
                && f[3] == "01"
                && hex_port(f[2]) == Some(u64::from(port))
                && inodes.iter().any(|i| i == f[9])
            {
                ports.extend(hex_port(f[1]));
            }
        }
    }
    ports
}

/// The testenv's TLS URL in `protocol`'s scheme (`amqps://` for AMQP 1.0, `amqps091://` for 0-9-1).
pub fn tls_url(env: &Env, protocol: &str) -> String {
    let amqps = env.get("SIGNBUS_AMQPS_URL");
    match protocol {
        "amqp091" => amqps.replacen("amqps://", "amqps091://", 1),
        _ => amqps.to_owned(),
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
    assert_eq!(ex.error, None, "{}", context());
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

/// `server_config` over the testenv's TLS listener in `protocol` (`amqp1` or `amqp091`) with SASL `sasl`,
/// trusting the testenv CA and presenting the testenv client certificate.
pub fn tls_server_config(env: &Env, queue: &str, protocol: &str, sasl: &str) -> String {
    let (ca, client) = (env.get("SIGNBUS_TLS_CA"), env.get("SIGNBUS_TLS_CLIENT"));
    let config = server_config(env, queue, "")
        .replace(
            &format!("urls: [\"{}\"]", env.amqp_url()),
            &format!("urls: [\"{}\"]", tls_url(env, protocol)),
        )
        .replace(
            &format!("  protocol: {}\n", server_protocol()),
            &format!("  protocol: {protocol}\n"),
        )
        .replace(
            "  sasl: anonymous\n",
            &format!("  sasl: {sasl}\n  tls: {{ca_cert: \"{ca}\", cert_key: \"{client}\"}}\n"),
        );
    assert!(
        config.contains(&tls_url(env, protocol)) && config.contains("cert_key"),
        "{config}"
    );
    config
}
