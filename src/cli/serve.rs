//! `signbus serve`: loads the server configuration, starts the signing pool, the HTTP endpoints and the consume
//! loop, and drains on SIGTERM; `--replay FILE` answers one request from a file instead.

use super::{init_logging, wait_for_signal};
use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use signbus::config::ServerConfig;
use signbus::metrics::Metrics;
use signbus::server::handler::{Decision, Handler, Origin};
use signbus::server::{self, endpoints, health::Health};
use signbus::signing::{
    gpgme_pool, in_process, load_passphrases, BackendKind, KeyRing, SigningPool,
};
use signbus::transport;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `signbus serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Server configuration file (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `signbus=debug`.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Process one request message from this file as if it came from the broker, print the reply
    /// (`{"address", "properties", "body"}`) on stdout and exit: 0 when the reply has no errors, 1 otherwise.
    /// No broker is contacted. The file is a wire example (`{"address", "properties", "body", ...}`) or a bare
    /// request body (then `mtype` is `container_signature`).
    #[arg(long, value_name = "REQUEST.json")]
    pub replay: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable.
    Text,
    /// JSON lines.
    Json,
}

/// systemd's credentials directory (`LoadCredential=`), where key passphrases may be named.
fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

/// Runs the server until SIGTERM or SIGINT (then drains); returns the exit code.
pub async fn run(a: ServeArgs) -> Result<i32> {
    use std::io::IsTerminal;
    let json = match a.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    init_logging(&a.log_level, json);
    let cfg = ServerConfig::load(&a.config, ServerConfig::env_overrides())?;
    // Bind first: a listener address that is taken stops the start before the pool spends time.
    let listener = match (&a.replay, cfg.metrics.listen) {
        (None, Some(addr)) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics.listen {addr}"))?,
        ),
        _ => None,
    };
    let signing = cfg.signing.clone();
    let workers = cfg.workers();
    let credentials = credentials_dir();
    let mut pool = tokio::task::spawn_blocking(move || -> Result<SigningPool> {
        let configs = &signing.keys;
        let passphrases = |keys: &KeyRing| {
            load_passphrases(configs, keys, credentials.as_deref())
                .context("reading key passphrases")
        };
        match signing.backend {
            BackendKind::Gpgme => {
                let home = signing.gnupg_home.clone();
                let keys = gpgme_pool::resolve_keys(home.as_deref(), configs)
                    .context("resolving signing keys")?;
                let passphrases = passphrases(&keys)?;
                SigningPool::gpgme(home, keys, passphrases, workers)
                    .context("starting the signing pool")
            }
            BackendKind::InProcess => {
                let (keys, secrets) =
                    in_process::resolve_keys(configs).context("reading signing keys")?;
                let passphrases = passphrases(&keys)?;
                SigningPool::in_process(keys, secrets, passphrases, workers)
                    .context("starting the in-process signer")
            }
        }
    })
    .await??;
    for k in pool.keys().keys() {
        tracing::info!(fingerprint = %k.fingerprint, name = ?k.name, aliases = ?k.aliases, "signing key ready");
    }
    let backend = cfg.signing.backend.as_str();
    tracing::info!(backend, workers = pool.size(), "signing pool started");
    let keys = pool.keys().clone();
    let metrics = Arc::new(Metrics::new());
    pool.observe(signbus::signing::workers::Timings {
        queue_wait: metrics.signing_queue_seconds.clone(),
        signing: metrics.signing_seconds.clone(),
    });
    let pool = Arc::new(pool);
    let health = Arc::new(Health::new());
    let weak = Arc::downgrade(&pool);
    metrics.set_signer_sampler(Box::new(move || {
        weak.upgrade().map_or((0, 0), |p| (p.size(), p.busy()))
    }));
    let cosign_keys =
        signbus::config::cosign::load(&cfg.signing.cosign_keys, credentials_dir().as_deref())
            .context("loading signing.cosign_keys")?;
    for k in cosign_keys.keys() {
        tracing::info!(name = %k.name, aliases = ?k.aliases, fingerprint = %k.fingerprint, "cosign key ready");
    }
    let handler = Handler::new(
        pool.clone(),
        keys,
        cosign_keys,
        &cfg,
        metrics.clone(),
        health.clone(),
    )
    .map_err(|e| anyhow::anyhow!("configuration {}: {e}", a.config.display()))?;
    if let Some(path) = &a.replay {
        return replay(&handler, path).await;
    }
    let http_stop = CancellationToken::new();
    let http = match listener {
        Some(listener) => {
            let addr = listener.local_addr().context("metrics listener address")?;
            tracing::info!(%addr, "metrics listening");
            let task =
                endpoints::serve(listener, metrics.clone(), health.clone(), http_stop.clone());
            Some(tokio::spawn(task))
        }
        None => {
            tracing::info!("metrics listener disabled (metrics.listen is null)");
            None
        }
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: no new requests; draining");
        trigger.cancel();
    });
    let connector = transport::Connector {
        config: cfg.broker.clone(),
        container_id: format!(
            "signbus-server-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ),
    };
    let result = server::run(&cfg, &connector, handler, metrics, health, shutdown).await;
    // The listener outlives the drain, so /metrics can be scraped until the end.
    http_stop.cancel();
    if let Some(task) = http {
        let _ = task.await;
    }
    result.context("server stopped")?;
    if let Ok(pool) = Arc::try_unwrap(pool) {
        tokio::task::spawn_blocking(move || pool.shutdown()).await?;
    }
    tracing::info!("stopped");
    Ok(0)
}

/// `serve --replay`: one request through the handler, the reply on stdout.
async fn replay(handler: &Handler<SigningPool>, path: &std::path::Path) -> Result<i32> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let msg = server::replay::message(doc).with_context(|| path.display().to_string())?;
    let handled = handler.handle(&msg, Origin::Replay).await;
    let (out, code) = match handled.decision {
        Decision::Reply { message, outcome } => {
            let span = handled.span;
            span.in_scope(|| tracing::info!(outcome = outcome.as_str(), "replayed"));
            let body: serde_json::Value =
                serde_json::from_str(&message.body).context("reply body")?;
            let address = Some(message.address).filter(|a| !a.is_empty());
            let out = serde_json::json!({
                "address": address,
                "properties": message.properties,
                "body": body,
            });
            (out, i32::from(outcome != server::outcome::Outcome::Signed))
        }
        Decision::Reject { reason, class } => {
            let span = handled.span;
            span.in_scope(|| tracing::warn!(%reason, class = class.as_str(), "replay rejected"));
            let out = serde_json::json!({"rejected": {"reason": reason, "class": class.as_str()}});
            (out, 1)
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}
