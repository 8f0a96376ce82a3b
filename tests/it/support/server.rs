//! A `signbus serve` process per test: its configuration, its start (waiting until it consumes), its log, its
//! operations listener (`/metrics`, `/healthz`, `/readyz`) and its stop.

use super::env::{backend, server_protocol, tls_url, Env};
use super::http;
use super::run::{signbus_bin, unsafe_kill};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server config consuming `queue`, replying by template, with both test keys, signing with the backend
/// `SIGNBUS_TEST_BACKEND` names ([`backend`]).
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
  backend: {backend}
  gnupg_home: "{home}"
  workers: 2
  keys:
    - {{id: "{ed}", name: "ed25519", aliases: ["test-ed25519"]{ed_source}}}
    - {{id: "{rsa}", name: "rsa"{rsa_source}}}
"#,
        url = env.amqp_url(),
        protocol = server_protocol(),
        backend = backend(),
        home = env.gnupg_home(),
        ed = env.key_ed25519(),
        rsa = env.key_rsa(),
        ed_source = env.key_source(env.key_ed25519()),
        rsa_source = env.key_source(env.key_rsa()),
    )
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

/// A `signbus serve` process; SIGTERMed and reaped on drop.
pub struct Server {
    pub child: Child,
    /// Holds the server's configuration file for as long as it runs.
    _dir: tempfile::TempDir,
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
        let mut child = Command::new(signbus_bin())
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
            _dir: dir,
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
        http::get(&format!("http://{addr}{path}"))
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

    /// The log for a failure message of a long run: without the line per reply, and only its last 80 lines
    /// (what went wrong is usually near the end, and a CI excerpt keeps the head and tail of the output).
    pub fn log_digest(&self) -> String {
        let log = self.log.lock().unwrap();
        let kept: Vec<&String> = log
            .iter()
            .filter(|l| !l.contains(r#""message":"replied""#))
            .collect();
        let skipped = kept.len().saturating_sub(80);
        let tail: Vec<&str> = kept[skipped..].iter().map(|l| l.as_str()).collect();
        format!(
            "server log ({} lines; replies and {skipped} earlier lines left out):\n{}",
            log.len(),
            tail.join("\n")
        )
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
