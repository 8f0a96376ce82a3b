//! The pubtools-sign-compatible requester commands (`msg-container-sign`, `msg-clear-sign`, `msg-blob-sign`):
//! flags, the pubtools-sign YAML section, the broker settings it implies, then the library sends the requests
//! and renders pubtools-sign's output; `--publish` stores what came back.

use super::progress::Bar;
use super::{init_logging, SignerType};
use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use signbus::requester::{self, output, ContainerSignInput, RequesterConfig, Retry};
use signbus::transport::{self, Connect as _, Sasl};
use std::path::PathBuf;

/// pubtools-sign's log levels.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
#[value(rename_all = "UPPER")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
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

/// Starts logging for a requester command: `--log-level` if given, else the config file's `log_level`, else INFO.
pub(super) fn requester_logging(flag: Option<LogLevel>, config: Option<&str>) {
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

pub(super) fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => PathBuf::from(p),
    }
}

/// Loads the pubtools-sign config file (`--config-file`, else pubtools-sign's default locations).
pub(super) fn load_file(config_file: Option<&str>) -> Result<RequesterConfig> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = requester::config::locate(config_file, home.as_deref())?;
    Ok(RequesterConfig::load(&path, |v| std::env::var(v).ok())?)
}

/// Loads the pubtools-sign config section a command uses and works out the requester name.
fn load_section(
    config_file: Option<&str>,
    batch: bool,
    requester: Option<&str>,
) -> Result<(requester::MsgSignerConfig, String)> {
    let file = load_file(config_file)?;
    let cfg = if batch { file.batch()? } else { file.single()? }.clone();
    let creator = creator(&cfg, requester)?;
    Ok((cfg, creator))
}

/// The `msg_signer` section of `file` and the requester name.
pub(super) fn single_section(
    file: &RequesterConfig,
    requester: Option<&str>,
) -> Result<(requester::MsgSignerConfig, String)> {
    let cfg = file.single()?.clone();
    let creator = creator(&cfg, requester)?;
    Ok((cfg, creator))
}

/// Sends `requests` over the broker `cfg` names and waits for the replies.
pub(super) async fn exchange(
    cfg: &requester::MsgSignerConfig,
    creator: &str,
    common: &RequesterArgs,
    requests: &[requester::PreparedRequest],
) -> Result<requester::Exchange> {
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
    Ok(requester::send_and_receive_with_progress(
        &connect,
        requests,
        &listen,
        &cfg.message_id_key,
        retry,
        progress,
    )
    .await)
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
    let ex = exchange(cfg, creator, common, &requests).await?;
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

/// `--publish`: stores every image signature of `ex` in the lookaside store registries.d (`dir`) names for its
/// image. Reports on stderr; returns 1 when any could not be stored.
fn publish_signatures(dir: &std::path::Path, ex: &requester::Exchange) -> i32 {
    use signbus::verify::registries_d::RegistriesD;
    let registries = match RegistriesD::load_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --publish: {e}");
            return 1;
        }
    };
    let mut failed = 0;
    for found in requester::received::image_signatures(ex) {
        let stored = found.map_err(|e| e.to_string()).and_then(|s| {
            let what = format!("{}@{}", s.reference, s.digest);
            signbus::store::publish(&registries, &s.reference, s.digest.as_str(), &s.signature)
                .map(|outcome| (what.clone(), outcome))
                .map_err(|e| format!("publishing {what}: {e}"))
        });
        match stored {
            Ok((what, outcome)) => eprintln!("published {what}: {}", outcome.path().display()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    i32::from(failed > 0)
}

/// `msg-container-sign`; returns the exit code.
pub async fn container_sign(a: ContainerSignArgs) -> Result<i32> {
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
        super::verify::user_or_system(
            a.registries_d.clone(),
            super::verify::USER_REGISTRIES_D,
            super::verify::SYSTEM_REGISTRIES_D,
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

/// `msg-clear-sign`; returns the exit code.
pub async fn clear_sign(a: ClearSignArgs) -> Result<i32> {
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

/// `msg-blob-sign`; returns the exit code.
pub async fn blob_sign(a: BlobSignArgs) -> Result<i32> {
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
