//! The command line: `serve` and the pubtools-sign-compatible requester commands.
//!
//! Invoked as `pubtools-sign-msg-container-sign` (a symlink), signbus behaves as that command, busybox style.
//! This is the binary's edge: configuration is loaded here, errors become messages and exit codes here.

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use signbus::config::ServerConfig;
use signbus::metrics::Metrics;
use signbus::requester::{self, output, ContainerSignInput, RequesterConfig, Retry};
use signbus::server::handler::{Decision, Handler, Origin};
use signbus::server::{self, endpoints, health::Health};
use signbus::signing::gpgme_pool::{resolve_keys, GpgmePool};
use signbus::signing::load_passphrases;
use signbus::transport::{self, Connect as _, Sasl};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// signbus: container signing over a message bus.
#[derive(Debug, Parser)]
#[command(name = "signbus", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the signing server.
    Serve(ServeArgs),
    /// Sign container images (pubtools-sign-msg-container-sign).
    MsgContainerSign(ContainerSignArgs),
    /// Clearsign texts (pubtools-sign-msg-clear-sign).
    MsgClearSign(ClearSignArgs),
    /// Make detached signatures of files (pubtools-sign-msg-blob-sign).
    MsgBlobSign(BlobSignArgs),
    /// Check an image's signatures against policy.json (lookaside stores from registries.d).
    Verify(crate::cli_verify::VerifyArgs),
    /// Add a signature to an image's lookaside store (file:// lookaside-staging or lookaside).
    Publish(crate::cli_verify::PublishArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(crate::cli_docs::CompletionsArgs),
    /// Write the man pages (signbus.1 and one per subcommand) into a directory.
    Manpages(crate::cli_docs::ManpagesArgs),
}

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

/// pubtools-sign's log levels.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
#[value(rename_all = "UPPER")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// Signer type.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SignerType {
    Single,
    Batch,
}

/// `msg-container-sign`, flag for flag pubtools-sign's.
#[derive(Debug, Args)]
pub struct ContainerSignArgs {
    #[command(flatten)]
    pub common: RequesterArgs,
    /// Key name sent beside each --signing-key (same order). Repeatable.
    #[arg(long = "signing-key-name")]
    pub signing_key_name: Vec<String>,
    /// Manifest digest to sign, paired with --reference. Repeatable.
    #[arg(long, required = true)]
    pub digest: Vec<String>,
    /// Image reference to sign, paired with --digest. Repeatable.
    #[arg(long, required = true)]
    pub reference: Vec<String>,
    /// Signer type: one message per reference × key, or batches (`msg_batch_signer`, `chunk_size`).
    #[arg(long = "signer-type", value_enum, default_value = "single")]
    pub signer_type: SignerType,
    /// Also publish every signature received into the lookaside store registries.d names for its image
    /// (signbus extension; file:// stores).
    #[arg(long)]
    pub publish: bool,
    /// registries.d directory for --publish (default: ~/.config/containers/registries.d, else
    /// /etc/containers/registries.d).
    #[arg(long = "registries-d", requires = "publish")]
    pub registries_d: Option<PathBuf>,
}

/// The flags every requester command shares, as pubtools-sign names them.
#[derive(Debug, Args)]
pub struct RequesterArgs {
    /// Key to sign with: fingerprint (its last 8 characters are sent) or an alias from key_aliases. Repeatable.
    #[arg(long = "signing-key", required = true)]
    pub signing_key: Vec<String>,
    /// Task id identifier (usually pub task-id).
    #[arg(long = "task-id", required = true)]
    pub task_id: String,
    /// Path to the config file.
    #[arg(long = "config-file")]
    pub config_file: Option<String>,
    /// Use this requester instead of the certificate's CN.
    #[arg(long)]
    pub requester: Option<String>,
    /// Print one result per line instead of JSON.
    #[arg(long)]
    pub raw: bool,
    /// Log level.
    #[arg(long = "log-level", value_enum, ignore_case = true)]
    pub log_level: Option<LogLevel>,
}

/// `msg-clear-sign`, flag for flag pubtools-sign's.
#[derive(Debug, Args)]
pub struct ClearSignArgs {
    #[command(flatten)]
    pub common: RequesterArgs,
    /// Repository reference.
    #[arg(long)]
    pub repo: Option<String>,
    /// Texts to sign; `@path` reads the text from a file.
    pub inputs: Vec<String>,
}

/// `msg-blob-sign`, flag for flag pubtools-sign's.
#[derive(Debug, Args)]
pub struct BlobSignArgs {
    #[command(flatten)]
    pub common: RequesterArgs,
    /// Key name sent beside each --signing-key (same order). Repeatable.
    #[arg(long = "signing-key-name")]
    pub signing_key_name: Vec<String>,
    /// File whose contents are signed. Repeatable.
    #[arg(long = "blob-file", required = true)]
    pub blob_file: Vec<String>,
    /// Signer type (pubtools-sign supports only single for blobs).
    #[arg(long = "signer-type", value_enum, default_value = "single")]
    pub signer_type: SignerType,
}

/// Maps an argv[0] name to the subcommand it stands for: `pubtools-sign-msg-container-sign` runs
/// `msg-container-sign`; `pubtools-sign` (the bundle) takes the subcommand as its first argument.
pub fn alias_subcommand(argv0: &str) -> Option<&'static str> {
    let base = std::path::Path::new(argv0).file_name()?.to_str()?;
    match base {
        "pubtools-sign-msg-container-sign" => Some("msg-container-sign"),
        "pubtools-sign-msg-clear-sign" => Some("msg-clear-sign"),
        "pubtools-sign-msg-blob-sign" => Some("msg-blob-sign"),
        _ => None,
    }
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        // One object per line: the event's fields at the top level, the request span's fields (request_id,
        // type, key, requester, trace_id) under "span".
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::MsgContainerSign(a) => container_sign(a).await,
        Command::MsgClearSign(a) => clear_sign(a).await,
        Command::MsgBlobSign(a) => blob_sign(a).await,
        Command::Verify(a) => crate::cli_verify::run_verify(a).await,
        Command::Publish(a) => crate::cli_verify::run_publish(a).await,
        Command::Completions(a) => crate::cli_docs::run_completions(a),
        Command::Manpages(a) => crate::cli_docs::run_manpages(a),
    }
}

async fn serve(a: ServeArgs) -> Result<i32> {
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
    let home = cfg.signing.gnupg_home.clone();
    let workers = cfg.workers();
    let keys_cfg = cfg.signing.keys.clone();
    // systemd passes credentials (LoadCredential=) in this directory; key passphrases may name them.
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let pool = tokio::task::spawn_blocking(move || -> Result<GpgmePool> {
        let keys = resolve_keys(home.as_deref(), &keys_cfg).context("resolving signing keys")?;
        let passphrases = load_passphrases(&keys_cfg, &keys, credentials.as_deref())
            .context("reading key passphrases")?;
        GpgmePool::start(home, keys, passphrases, workers).context("starting the signing pool")
    })
    .await??;
    for k in pool.keys().keys() {
        tracing::info!(fingerprint = %k.fingerprint, name = ?k.name, aliases = ?k.aliases, "signing key ready");
    }
    tracing::info!(workers = pool.size(), "signing pool started");
    let keys = pool.keys().clone();
    let pool = Arc::new(pool);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let weak = Arc::downgrade(&pool);
    metrics.set_signer_sampler(Box::new(move || {
        weak.upgrade().map_or((0, 0), |p| (p.size(), p.busy()))
    }));
    let handler = Handler::new(pool.clone(), keys, &cfg, metrics.clone(), health.clone())
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
    let result = server::run(&cfg, handler, metrics, health, shutdown).await;
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

/// The message a `--replay` file stands for: a wire example `{"address", "properties", "body", ["reply_to"]}`
/// (body an object or JSON text), or a bare request body with `mtype` `container_signature`.
fn replay_message(doc: serde_json::Value) -> Result<signbus::transport::IncomingMessage> {
    use serde_json::Value;
    let Value::Object(mut doc) = doc else {
        bail!("a replay file holds a JSON object: a wire message or a request body");
    };
    let (body, properties, reply_to) = match doc.remove("body") {
        Some(body) => {
            let body = match body {
                Value::String(text) => text,
                other => other.to_string(),
            };
            let properties = match doc.remove("properties") {
                Some(Value::Object(p)) => p,
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(_) => bail!("\"properties\" must be an object"),
            };
            let reply_to = doc
                .remove("reply_to")
                .and_then(|v| v.as_str().map(str::to_owned));
            (body, properties, reply_to)
        }
        None => {
            let mtype = serde_json::json!({"mtype": "container_signature"});
            let Value::Object(properties) = mtype else {
                unreachable!()
            };
            (Value::Object(doc).to_string(), properties, None)
        }
    };
    Ok(signbus::transport::IncomingMessage {
        body: body.into_bytes(),
        properties,
        reply_to,
        ..Default::default()
    })
}

/// `serve --replay`: one request through the handler, the reply on stdout.
async fn replay(handler: &Handler<GpgmePool>, path: &std::path::Path) -> Result<i32> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let msg = replay_message(doc).with_context(|| path.display().to_string())?;
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

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}

/// Starts logging for a requester command: `--log-level` if given, else the config file's `log_level`, else INFO.
fn requester_logging(flag: Option<LogLevel>, config: Option<&str>) {
    let from_config = config.and_then(|c| LogLevel::from_str(c, true).ok());
    let f = match flag.or(from_config).unwrap_or(LogLevel::Info) {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
    };
    init_logging(f, false);
}

fn broker_config(cfg: &requester::MsgSignerConfig) -> transport::BrokerConfig {
    let urls = &cfg.messaging_brokers;
    // pubtools-sign's file has no SASL setting; SIGNBUS_SASL (none|anonymous|plain|external) chooses, ANONYMOUS
    // by default. EXTERNAL: the broker takes the identity from the client certificate (messaging_cert_key).
    let sasl = match std::env::var("SIGNBUS_SASL").ok().as_deref() {
        Some("none") => Sasl::None,
        Some("plain") => Sasl::Plain,
        Some("external") => Sasl::External,
        _ => Sasl::Anonymous,
    };
    // Likewise SIGNBUS_PROTOCOL (amqp1|amqp091) chooses the protocol; by default the URL scheme decides
    // (`amqp091://` means AMQP 0-9-1).
    let protocol = match std::env::var("SIGNBUS_PROTOCOL").ok().as_deref() {
        Some("amqp091") => transport::Protocol::Amqp091,
        Some("amqp1") => transport::Protocol::Amqp1,
        _ => transport::Protocol::Auto,
    };
    // TLS (amqps://) as pubtools-sign does it: trust messaging_ca_cert, present messaging_cert_key.
    let tls = transport::tls::TlsConfig {
        ca_cert: Some(expand_home(&cfg.messaging_ca_cert)).filter(|p| p.exists()),
        cert_key: Some(expand_home(&cfg.messaging_cert_key)).filter(|p| p.exists()),
    };
    transport::BrokerConfig {
        urls: urls.to_vec(),
        protocol,
        sasl,
        tls,
        ..Default::default()
    }
}

fn creator(cfg: &requester::MsgSignerConfig, requester: Option<&str>) -> Result<String> {
    if let Some(r) = requester.filter(|r| !r.is_empty()) {
        return Ok(r.to_owned());
    }
    let path = expand_home(&cfg.messaging_cert_key);
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading messaging_cert_key {} (or pass --requester)",
            path.display()
        )
    })?;
    signbus::cert::subject_name(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => PathBuf::from(p),
    }
}

/// Loads the pubtools-sign config section a command uses and works out the requester name.
fn load_section(
    config_file: Option<&str>,
    batch: bool,
    requester: Option<&str>,
) -> Result<(requester::MsgSignerConfig, String)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = requester::config::locate(config_file, home.as_deref())?;
    let file = RequesterConfig::load(&path, |v| std::env::var(v).ok())?;
    let cfg = if batch { file.batch()? } else { file.single()? }.clone();
    let creator = creator(&cfg, requester)?;
    Ok((cfg, creator))
}

/// Sends `requests`, waits for the replies, prints pubtools-sign's output; returns the exit code.
async fn exchange_and_print(
    cfg: &requester::MsgSignerConfig,
    creator: &str,
    common: &RequesterArgs,
    requests: Vec<requester::PreparedRequest>,
    operation: serde_json::Value,
    result_field: &str,
    publish_to: Option<PathBuf>,
) -> Result<i32> {
    let vars = requester::template_vars(cfg, creator, &common.task_id, common.requester.as_deref());
    let listen = requester::format_address(&cfg.topic_listen_to, &vars)?;
    let id = format!("signbus-requester-{}", uuid::Uuid::new_v4());
    let connector = transport::Connector {
        config: broker_config(cfg),
        container_id: id,
    };
    let first = connector.connect().await.context(
        "connecting to messaging_brokers (is the broker up, and are the URLs and ports right?)",
    )?;
    let connect = transport::Primed::new(first, connector);
    tracing::info!(requests = requests.len(), listen = %listen, "signing");
    let retry = Retry::from_config(cfg);
    let bar = {
        use std::io::IsTerminal;
        (std::io::stderr().is_terminal() && requests.len() > 5).then(|| Bar::new(requests.len()))
    };
    let progress: &dyn requester::Progress = match &bar {
        Some(b) => b,
        None => &requester::NoProgress,
    };
    let ex = requester::send_and_receive_with_progress(
        &connect,
        &requests,
        &listen,
        &cfg.message_id_key,
        retry,
        progress,
    )
    .await;
    let r = output::render(
        &requests,
        &ex,
        operation,
        &common.signing_key,
        result_field,
        common.raw,
    );
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    match publish_to {
        Some(dir) => Ok(r.exit_code.max(publish_signatures(&dir, &ex))),
        None => Ok(r.exit_code),
    }
}

/// `--publish`: stores every signature of `ex` in the lookaside store registries.d (`dir`) names for its image.
/// Reports on stderr; returns 1 when any could not be stored.
fn publish_signatures(dir: &std::path::Path, ex: &requester::Exchange) -> i32 {
    use base64::Engine;
    use signbus::verify::registries_d::RegistriesD;
    let registries = match RegistriesD::load_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --publish: {e}");
            return 1;
        }
    };
    // (reference, digest, base64 signature) of every signature received: single replies carry the claim,
    // batch replies one entry per claim × key.
    let mut found: Vec<(String, String, String)> = Vec::new();
    for (doc, _) in ex.replies.values() {
        let msg = &doc["msg"];
        if let Some(sigs) = msg["signatures"].as_array() {
            for s in sigs {
                if let (Some(r), Some(d), Some(b)) = (
                    s["docker_reference"].as_str(),
                    s["manifest_digest"].as_str(),
                    s["signed_claim"].as_str(),
                ) {
                    found.push((r.to_owned(), d.to_owned(), b.to_owned()));
                }
            }
        } else if let (Some(c), Some(b)) =
            (msg["claim_file"].as_str(), msg["signed_claim"].as_str())
        {
            let claim = base64::engine::general_purpose::STANDARD.decode(c).ok();
            if let Some(claim) = claim.and_then(|c| signbus::claim::Claim::parse(&c).ok()) {
                found.push((
                    claim.docker_reference().to_owned(),
                    claim.manifest_digest().to_string(),
                    b.to_owned(),
                ));
            }
        }
    }
    let mut failed = 0;
    for (reference, digest, b64) in found {
        let stored = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .map_err(|e| e.to_string())
            .and_then(|sig| {
                let image = signbus::reference::Reference::parse_normalized(&reference)
                    .map_err(|e| e.to_string())?;
                signbus::store::publish(&registries, &image, &digest, &sig)
                    .map_err(|e| e.to_string())
            });
        match stored {
            Ok(outcome) => eprintln!(
                "published {reference}@{digest}: {}",
                outcome.path().display()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: publishing {reference}@{digest}: {e}");
            }
        }
    }
    i32::from(failed > 0)
}

async fn container_sign(a: ContainerSignArgs) -> Result<i32> {
    let c = &a.common;
    let batch = a.signer_type == SignerType::Batch;
    let (cfg, creator) = load_section(c.config_file.as_deref(), batch, c.requester.as_deref())?;
    requester_logging(c.log_level, cfg.log_level.as_deref());
    let input = ContainerSignInput {
        digests: a.digest.clone(),
        references: a.reference.clone(),
        signing_keys: c.signing_key.clone(),
        signing_key_names: a.signing_key_name.clone(),
        task_id: c.task_id.clone(),
        requester: c.requester.clone(),
    };
    let requests = if batch {
        requester::prepare_batch(&cfg, &creator, &input)?
    } else {
        requester::prepare_container(&cfg, &creator, &input)?
    };
    let operation = serde_json::json!({
        "digests": a.digest,
        "references": a.reference,
        "signing_key_names": a.signing_key_name,
        "signing_keys": c.signing_key,
        "task_id": c.task_id,
        "requester": c.requester,
    });
    let publish_to = a.publish.then(|| {
        crate::cli_verify::user_or_system(
            a.registries_d.clone(),
            crate::cli_verify::USER_REGISTRIES_D,
            crate::cli_verify::SYSTEM_REGISTRIES_D,
        )
    });
    exchange_and_print(
        &cfg,
        &creator,
        c,
        requests,
        operation,
        "signed_claim",
        publish_to,
    )
    .await
}

async fn clear_sign(a: ClearSignArgs) -> Result<i32> {
    let c = &a.common;
    let (cfg, creator) = load_section(c.config_file.as_deref(), false, c.requester.as_deref())?;
    requester_logging(c.log_level, cfg.log_level.as_deref());
    let mut texts = Vec::new();
    for input in &a.inputs {
        match input.strip_prefix('@') {
            Some(path) => texts
                .push(std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?),
            None => texts.push(input.clone()),
        }
    }
    let common = requester::Common {
        signing_keys: c.signing_key.clone(),
        signing_key_names: Vec::new(),
        task_id: c.task_id.clone(),
        requester: c.requester.clone(),
    };
    let requests =
        requester::prepare_clearsign(&cfg, &creator, &texts, a.repo.as_deref(), &common)?;
    let operation = serde_json::json!({
        "inputs": texts,
        "signing_keys": c.signing_key,
        "task_id": c.task_id,
        "repo": a.repo,
        "requester": c.requester,
    });
    exchange_and_print(&cfg, &creator, c, requests, operation, "signed_data", None).await
}

async fn blob_sign(a: BlobSignArgs) -> Result<i32> {
    let c = &a.common;
    if a.signer_type == SignerType::Batch {
        bail!("the batch signer does not support blob signing (as in pubtools-sign); use --signer-type single");
    }
    let (cfg, creator) = load_section(c.config_file.as_deref(), false, c.requester.as_deref())?;
    requester_logging(c.log_level, cfg.log_level.as_deref());
    let mut blobs = Vec::new();
    for path in &a.blob_file {
        blobs.push(std::fs::read(path).with_context(|| format!("reading --blob-file {path}"))?);
    }
    let common = requester::Common {
        signing_keys: c.signing_key.clone(),
        signing_key_names: a.signing_key_name.clone(),
        task_id: c.task_id.clone(),
        requester: c.requester.clone(),
    };
    let requests = requester::prepare_blob(&cfg, &creator, &blobs, &common)?;
    use base64::Engine;
    let b64: Vec<String> = blobs
        .iter()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .collect();
    let operation = serde_json::json!({
        "blobs": b64,
        "signing_key_names": a.signing_key_name,
        "signing_keys": c.signing_key,
        "task_id": c.task_id,
        "requester": c.requester,
    });
    exchange_and_print(
        &cfg,
        &creator,
        c,
        requests,
        operation,
        "signed_payload",
        None,
    )
    .await
}

/// The requester's progress bar on a terminal: sent, signed, failed, waiting.
struct Bar {
    bar: indicatif::ProgressBar,
    total: usize,
    sent: std::sync::atomic::AtomicUsize,
    signed: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
}

impl Bar {
    fn new(total: usize) -> Self {
        let bar = indicatif::ProgressBar::new(total as u64);
        let style =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        Bar {
            bar,
            total,
            sent: 0.into(),
            signed: 0.into(),
            failed: 0.into(),
        }
    }

    fn update(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let (signed, failed) = (self.signed.load(Relaxed), self.failed.load(Relaxed));
        let sent = self.sent.load(Relaxed).min(self.total);
        let waiting = sent.saturating_sub(signed + failed);
        self.bar.set_position((signed + failed) as u64);
        self.bar.set_message(format!(
            "sent {sent}, signed {signed}, failed {failed}, waiting {waiting}"
        ));
    }
}

impl requester::Progress for Bar {
    fn sent(&self) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.update();
    }

    fn replied(&self, ok: bool) {
        let n = if ok { &self.signed } else { &self.failed };
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.update();
    }

    fn finished(&self) {
        self.bar.finish_and_clear();
    }
}
