//! `bench/run.sh`'s measuring helper (a cargo example: `cargo build --release --example bench-probe`). Prints one
//! JSON object per run on stdout.
//!
//! - `limit BACKEND WORKERS N GNUPG_HOME FINGERPRINT SECRET_KEY_FILE`: the signing backend alone (no broker): N
//!   claim-sized binary signed messages queued at once on WORKERS threads (signatures/s), then 200 one at a time
//!   (p50 of one signature).
//! - `rtt URL PROTOCOL N`: N broker round trips one at a time (publish to a topic, receive it back): p50, p99.
//! - `latency URL PROTOCOL CLIENT_YAML KEY N`: N one-reference container requests (prepared from the pubtools-sign
//!   config CLIENT_YAML's `msg_signer`) sent one at a time over one requester connection, each waited for: p50,
//!   p99 (and how many failed).

use signbus::requester::{prepare_container, ContainerSignInput, RequesterConfig};
use signbus::signing::{
    gpgme_pool, in_process, KeyConfig, Passphrases, SignMode, Signer, SigningPool,
};
use signbus::transport::{
    Broker, BrokerConfig, Connect, Connector, OutgoingMessage, Protocol, Settlement, Subscription,
    Transport,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLAIM: &str = r#"{"critical":{"identity":{"docker-reference":"registry.example.com/namespace/repository:1.0"},"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"type":"atomic container signature"},"optional":{"creator":"signbus"}}"#;

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    let i = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[i.min(sorted_ms.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    serde_json::json!({"n": ms.len(), "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99)})
}

fn arg(args: &[String], i: usize, what: &str) -> String {
    args.get(i)
        .cloned()
        .unwrap_or_else(|| panic!("missing argument {i}: {what}"))
}

fn start_signer(backend: &str, workers: usize, home: &str, fpr: &str, file: &str) -> SigningPool {
    let config = KeyConfig {
        id: fpr.to_owned(),
        name: None,
        aliases: vec![],
        passphrase_file: None,
        passphrase_credential: None,
        secret_key_file: Some(file.into()),
    };
    match backend {
        "gpgme" => {
            let keys = gpgme_pool::resolve_keys(Some(home.as_ref()), &[config]).unwrap();
            SigningPool::gpgme(Some(home.into()), keys, Passphrases::new(), workers).unwrap()
        }
        "in-process" => {
            let (keys, secrets) = in_process::resolve_keys(&[config]).unwrap();
            SigningPool::in_process(keys, secrets, Passphrases::new(), workers).unwrap()
        }
        other => panic!("backend {other:?}: gpgme or in-process"),
    }
}

async fn limit(args: &[String]) -> serde_json::Value {
    let backend = arg(args, 0, "backend");
    let workers: usize = arg(args, 1, "workers").parse().unwrap();
    let n: usize = arg(args, 2, "n").parse().unwrap();
    let fpr = arg(args, 4, "fingerprint");
    let pool = Arc::new(start_signer(
        &backend,
        workers,
        &arg(args, 3, "gnupg home"),
        &fpr,
        &arg(args, 5, "secret key file"),
    ));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (pool, fpr) = (pool.clone(), fpr.clone());
        set.spawn(async move { pool.sign(&fpr, SignMode::Normal, CLAIM.into()).await });
    }
    while let Some(r) = set.join_next().await {
        assert!(!r.unwrap().unwrap().is_empty());
    }
    let per_s = n as f64 / started.elapsed().as_secs_f64();
    let mut one = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        pool.sign(&fpr, SignMode::Normal, CLAIM.into())
            .await
            .unwrap();
        one.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let single = summary(one);
    serde_json::json!({"backend": backend, "workers": workers, "n": n, "per_s": per_s,
        "single_p50_ms": single["p50_ms"], "single_p99_ms": single["p99_ms"]})
}

fn connector(url: &str, protocol: &str, name: &str) -> Connector {
    Connector {
        config: BrokerConfig {
            urls: vec![url.to_owned()],
            protocol: match protocol {
                "amqp091" => Protocol::Amqp091,
                _ => Protocol::Amqp1,
            },
            ..Default::default()
        },
        container_id: name.to_owned(),
    }
}

/// Publishes `msg` on `conn`, then takes the next delivery of `sub` (within `wait`), accepts it and returns its
/// body.
async fn publish_and_take(
    conn: &Broker,
    sub: &mut Subscription,
    msg: OutgoingMessage,
    wait: Duration,
) -> Vec<u8> {
    conn.publish(msg).await.unwrap();
    let d = tokio::time::timeout(wait, sub.next())
        .await
        .expect("a delivery in time")
        .expect("subscription open");
    let body = d.message().body.clone();
    d.settle(Settlement::Accept).await.unwrap();
    body
}

async fn rtt(args: &[String]) -> serde_json::Value {
    let n: usize = arg(args, 2, "n").parse().unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let conn = connector(&arg(args, 0, "url"), &arg(args, 1, "protocol"), &tag)
        .connect()
        .await
        .unwrap();
    // Out through amq.topic, back through a queue bound to it: the path a reply takes.
    let address = format!("/exchanges/amq.topic/signbus.bench.rtt.{tag}");
    let mut sub = conn
        .subscribe(&format!("/topic/signbus.bench.rtt.{tag}"), 10)
        .await
        .unwrap();
    let mut ms = Vec::new();
    for i in 0..n + 10 {
        let t = Instant::now();
        let msg = OutgoingMessage {
            address: address.clone(),
            body: format!("{{\"i\":{i}}}"),
            ..Default::default()
        };
        publish_and_take(&conn, &mut sub, msg, Duration::from_secs(10)).await;
        if i >= 10 {
            ms.push(t.elapsed().as_secs_f64() * 1e3); // the first 10 warm up
        }
    }
    conn.close().await;
    summary(ms)
}

async fn latency(args: &[String]) -> serde_json::Value {
    let (url, protocol) = (arg(args, 0, "url"), arg(args, 1, "protocol"));
    let (path, key) = (arg(args, 2, "client config"), arg(args, 3, "key"));
    let n: usize = arg(args, 4, "n").parse().unwrap();
    let yaml = std::fs::read_to_string(&path).unwrap();
    let parsed = RequesterConfig::parse(&yaml, path.as_ref(), |_| None).unwrap();
    let cfg = parsed.single().unwrap().clone();
    let task = format!("lat{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let input = ContainerSignInput {
        digests: (0..n).map(|i| format!("sha256:{i:064x}")).collect(),
        references: (0..n)
            .map(|i| format!("registry.example.com/bench/app:{i}"))
            .collect(),
        signing_keys: vec![key],
        task_id: task.clone(),
        requester: Some("bench".into()),
        ..Default::default()
    };
    let requests = prepare_container(&cfg, "bench", &input).unwrap();
    let conn = connector(&url, &protocol, &task).connect().await.unwrap();
    let mut replies = conn
        .subscribe(&format!("/topic/signbus.reply.bench.{task}"), 10)
        .await
        .unwrap();
    let (mut ms, mut failed) = (Vec::new(), 0);
    for r in &requests {
        let t = Instant::now();
        let msg = OutgoingMessage {
            address: r.address.clone(),
            body: serde_json::Value::Object(r.body.clone()).to_string(),
            properties: r.properties.clone(),
            ..Default::default()
        };
        let body = publish_and_take(&conn, &mut replies, msg, Duration::from_secs(60)).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if v["msg"]["errors"] != serde_json::json!([]) {
            failed += 1;
        }
    }
    conn.close().await;
    let mut out = summary(ms);
    out["failed"] = failed.into();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = &args[1.min(args.len())..];
    let out = match args.first().map(String::as_str) {
        Some("limit") => limit(rest).await,
        Some("rtt") => rtt(rest).await,
        Some("latency") => latency(rest).await,
        _ => panic!("usage: bench-probe limit|rtt|latency ARGS (see bench/probe.rs)"),
    };
    println!("{out}");
}
