//! The server's configuration: one YAML file, loaded once at start into typed structs and checked.
//!
//! `signbus serve --config FILE` reads it with figment (YAML, then `SIGNBUS_`-prefixed environment overrides such
//! as `SIGNBUS_BROKER__URLS`), refuses unknown keys by name, and validates what types cannot express. Nothing
//! else in the crate reads files or environment variables for configuration.

pub mod authorization;
pub mod cosign;

use crate::signing::{BackendKind, KeyConfig};
use crate::transport::BrokerConfig;
use authorization::AuthorizationConfig;
use figment::providers::{Env, Format, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// How to reach the broker.
    pub broker: BrokerConfig,
    /// What to consume and where to reply.
    pub server: ServerSection,
    /// Keys and the signing pool.
    pub signing: SigningSection,
    /// The operations HTTP listener (`/metrics`, `/healthz`, `/readyz`). Optional.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Who may sign with which key. Absent: every configured key for every requester.
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
}

/// Where the operations HTTP listener listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `IP:port` to serve `/metrics`, `/healthz` and `/readyz` on (default `127.0.0.1:9464`); `null` disables
    /// the listener. Port 0 takes a free port; the bound address is logged (`metrics listening`, `addr`).
    #[serde(default = "default_metrics_listen")]
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}

/// Consumption and replies.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address requests are consumed from, e.g. `/queues/signbus.requests` or `queue://Consumer.signbus.VirtualTopic.eng.sign`.
    pub listen_to: String,
    /// Reply address template, used when a request has no AMQP `reply-to`. Placeholders `{member}` are filled
    /// from the request body's string members, then its properties; `{creator}` means `requested_by` and
    /// `{task_id}` the task id. Values containing `/`, whitespace, `{`, `}`, `*`, `#` or `>` are refused.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// At most this many requests are processed at once (and about this many are prefetched).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// On SIGTERM, how long to let in-flight requests finish before releasing them back to the broker.
    #[serde(default = "default_grace")]
    pub grace_period_secs: u64,
    /// Attribute names accepted as the task id for `{task_id}`, in order.
    #[serde(default = "default_task_id_attributes")]
    pub task_id_attributes: Vec<String>,
    /// Broker topology to declare at start (AMQP 0-9-1 only).
    #[serde(default)]
    pub topology: Option<crate::transport::Topology>,
    /// Requests with a body larger than this many bytes are answered with an error and not processed.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Requests whose `created` time is older than this many seconds are answered "expired", never signed.
    /// `null`: no age limit (a deadline the message itself carries still applies).
    #[serde(default = "default_max_request_age")]
    pub max_request_age_secs: Option<u64>,
    /// A request delivered this many times without being settled (it keeps taking servers down, or keeps
    /// failing) is answered with an error instead of being processed again.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: u32,
    /// Recent replies kept to answer redelivered or resent requests identically.
    #[serde(default)]
    pub reply_cache: ReplyCacheSection,
}

/// Bounds of the recent-reply cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyCacheSection {
    /// Replies kept at most (0 disables the cache, and with it duplicate detection).
    #[serde(default = "default_cache_capacity")]
    pub capacity: usize,
    /// Bytes of replies kept at most (the oldest go first).
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: usize,
    /// Seconds a reply is kept.
    #[serde(default = "default_cache_ttl")]
    pub ttl_secs: u64,
}

impl Default for ReplyCacheSection {
    fn default() -> Self {
        ReplyCacheSection {
            capacity: default_cache_capacity(),
            max_bytes: default_cache_bytes(),
            ttl_secs: default_cache_ttl(),
        }
    }
}

/// Signing keys and workers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSection {
    /// The signer: `gpgme` (default; keys in `gnupg_home`) or `in-process` (each key's `secret_key_file`).
    #[serde(default)]
    pub backend: BackendKind,
    /// The gpg home directory holding the secret keys (default: gpg's own default). gpgme backend only.
    #[serde(default)]
    pub gnupg_home: Option<PathBuf>,
    /// Signing worker threads (default: the number of CPU cores).
    #[serde(default)]
    pub workers: Option<usize>,
    /// The keys this server signs with. Requests naming any other key are refused.
    pub keys: Vec<KeyConfig>,
    /// Attempts per signature when the signer fails (a gpg-agent restart, say) before the request is answered
    /// with the error.
    #[serde(default = "default_sign_attempts")]
    pub attempts: u32,
    /// The cosign keys `cosign_signature` requests are signed with (decrypted once at start). Empty: this
    /// server refuses cosign requests.
    #[serde(default)]
    pub cosign_keys: Vec<cosign::CosignKeyConfig>,
}

fn default_max_message_bytes() -> usize {
    1 << 20
}
fn default_max_request_age() -> Option<u64> {
    Some(3600)
}
fn default_max_deliveries() -> u32 {
    5
}
fn default_cache_capacity() -> usize {
    10_000
}
fn default_cache_bytes() -> usize {
    256 << 20
}
fn default_cache_ttl() -> u64 {
    3600
}
fn default_sign_attempts() -> u32 {
    3
}
fn default_in_flight() -> usize {
    64
}
fn default_grace() -> u64 {
    30
}
fn default_task_id_attributes() -> Vec<String> {
    vec![
        "pub_task_id".into(),
        "pipeline_run_id".into(),
        "task_id".into(),
    ]
}

/// A configuration that cannot be used; the message says which key and why.
#[derive(Debug, thiserror::Error)]
#[error("configuration {path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ServerConfig {
    /// The environment overrides the binary applies over the file: `SIGNBUS_` variables for the broker's URLs and
    /// credentials (`SIGNBUS_BROKER__URLS`, …). Only the binary's edge calls this; the library reads no
    /// environment.
    pub fn env_overrides() -> Env {
        Env::prefixed("SIGNBUS_").split("__").only(&[
            "broker.urls",
            "broker.sasl",
            "broker.username",
            "broker.password",
        ])
    }

    /// Loads `path` (YAML) with `overrides` merged over it (the binary passes [`ServerConfig::env_overrides`]),
    /// then validates.
    pub fn load(path: &Path, overrides: impl figment::Provider) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        if !path.exists() {
            return Err(err("file does not exist".into()));
        }
        let cfg: ServerConfig = Figment::new()
            .merge(Yaml::file(path))
            .merge(overrides)
            .extract()
            .map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Parses YAML text (no environment), then validates. For tests and tools.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            path: "<inline>".into(),
            message,
        };
        let cfg: ServerConfig = Figment::new()
            .merge(Yaml::string(text))
            .extract()
            .map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.broker.urls.is_empty() {
            return Err("broker.urls must list at least one broker".into());
        }
        if self.server.listen_to.trim().is_empty() {
            return Err("server.listen_to must name the request address".into());
        }
        if self.server.max_in_flight == 0 {
            return Err("server.max_in_flight must be at least 1".into());
        }
        if self.signing.keys.is_empty() && self.signing.cosign_keys.is_empty() {
            return Err("signing.keys (or signing.cosign_keys) must list at least one key".into());
        }
        if let Some(t) = &self.server.reply_to {
            crate::wire::template::check_template(t)
                .map_err(|e| format!("server.reply_to: {e}"))?;
        }
        if self.server.max_message_bytes < 1024 {
            return Err("server.max_message_bytes must be at least 1024".into());
        }
        if self.server.max_deliveries == 0 {
            return Err("server.max_deliveries must be at least 1".into());
        }
        if self.signing.attempts == 0 {
            return Err("signing.attempts must be at least 1".into());
        }
        if self.signing.workers == Some(0) {
            return Err("signing.workers must be at least 1".into());
        }
        if self.signing.backend == BackendKind::InProcess {
            if let Some(k) = self
                .signing
                .keys
                .iter()
                .find(|k| k.secret_key_file.is_none())
            {
                return Err(format!(
                    "signing.keys {:?}: the in-process backend needs its secret_key_file",
                    k.id
                ));
            }
        }
        Ok(())
    }

    /// Worker threads to start.
    pub fn workers(&self) -> usize {
        self.signing
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
broker: {urls: ["amqp://127.0.0.1:5672"]}
server: {listen_to: "/queues/q", reply_to: "/exchanges/amq.topic/r.{requested_by}"}
signing: {keys: [{id: "ABCD", name: "k"}]}
"#;

    #[test]
    fn loads_with_defaults() {
        let c = ServerConfig::from_yaml(OK).unwrap();
        assert_eq!(c.server.max_in_flight, 64);
        assert_eq!(c.broker.sasl, crate::transport::Sasl::Anonymous);
    }

    #[test]
    fn metrics_listener_defaults_on_and_can_be_disabled() {
        let c = ServerConfig::from_yaml(OK).unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let c = ServerConfig::from_yaml(&format!("{OK}metrics: {{listen: null}}\n")).unwrap();
        assert_eq!(c.metrics.listen, None);
        let c = ServerConfig::from_yaml(&format!("{OK}metrics: {{listen: \"0.0.0.0:1234\"}}\n"))
            .unwrap();
        assert_eq!(c.metrics.listen, Some("0.0.0.0:1234".parse().unwrap()));
        let c = ServerConfig::from_yaml(&format!("{OK}metrics: {{}}\n")).unwrap();
        assert_eq!(c.metrics, MetricsSection::default());
        let e = ServerConfig::from_yaml(&format!("{OK}metrics: {{listen: \"nowhere\"}}\n"));
        assert!(e.is_err());
        let e = ServerConfig::from_yaml(&format!("{OK}metrics: {{enabled: false}}\n")).unwrap_err();
        assert!(e.message.contains("enabled"), "{e}");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let text = OK.replace(
            "broker: {urls: [\"amqp://127.0.0.1:5672\"]}",
            "broker: {urls: [\"amqp://u:hunter2@127.0.0.1:5672\"], sasl: plain, username: u, password: s3cret-pw}",
        );
        let c = ServerConfig::from_yaml(&text).unwrap();
        assert_eq!(c.broker.password.as_deref(), Some("s3cret-pw"));
        let shown = format!("{c:?} {c:#?} {:?}", c.broker);
        assert!(
            !shown.contains("s3cret-pw") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("username"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = ServerConfig::from_yaml(&OK.replace("listen_to", "listen_too")).unwrap_err();
        assert!(e.message.contains("listen_too"), "{e}");
        let e = ServerConfig::from_yaml(&OK.replace("{id:", "{idd:")).unwrap_err();
        assert!(e.message.contains("idd"), "{e}");
    }

    #[test]
    fn the_backend_defaults_to_gpgme_and_in_process_needs_key_files() {
        let c = ServerConfig::from_yaml(OK).unwrap();
        assert_eq!(c.signing.backend, BackendKind::Gpgme);
        let in_process = OK.replace("signing: {", "signing: {backend: in-process, ");
        let e = ServerConfig::from_yaml(&in_process).unwrap_err();
        assert!(
            e.message.contains("secret_key_file") && e.message.contains("ABCD"),
            "{e}"
        );
        let with_file = in_process.replace("name: \"k\"}", "name: \"k\", secret_key_file: /k.asc}");
        let c = ServerConfig::from_yaml(&with_file).unwrap();
        assert_eq!(c.signing.backend, BackendKind::InProcess);
        assert!(
            ServerConfig::from_yaml(&OK.replace("signing: {", "signing: {backend: gpg, ")).is_err()
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(ServerConfig::from_yaml(&OK.replace(
            "reply_to: \"/exchanges/amq.topic/r.{requested_by}\"",
            "reply_to: \"x{\""
        ))
        .is_err());
        assert!(
            ServerConfig::from_yaml(&OK.replace("[{id: \"ABCD\", name: \"k\"}]", "[]")).is_err()
        );
    }
}
