//! pubtools-sign's YAML configuration, read as pubtools-sign 1.0.6 reads it.
//!
//! Sections `msg_signer`, `msg_batch_signer` and `cosign_signer` ([`super::cosign_config`]); unknown keys are
//! refused with their name; `${VAR}` is replaced from the environment and a missing variable is an error (as
//! piny's strict matcher does). Default paths: `~/.config/pubtools-sign/conf.yaml`, then
//! `/etc/pubtools-sign/conf.yaml`. The environment is read only here, at load time.

use super::cosign_config::CosignSignerConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// pubtools-sign's default config paths, in order.
pub const CONFIG_PATHS: [&str; 2] = [
    "~/.config/pubtools-sign/conf.yaml",
    "/etc/pubtools-sign/conf.yaml",
];

/// The `msg_signer` (or `msg_batch_signer`) section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MsgSignerConfig {
    /// Broker URLs (failover list).
    pub messaging_brokers: Vec<String>,
    /// PEM file with the client certificate and key; its subject CN (or UID) is the requester name.
    pub messaging_cert_key: String,
    /// PEM CA bundle for `amqps://`.
    pub messaging_ca_cert: String,
    /// Request address; may use `{creator}`, `{task_id}` and other operation fields.
    pub topic_send_to: String,
    /// Reply address to listen on; same placeholders.
    pub topic_listen_to: String,
    /// Sent as the `environment` property.
    pub environment: String,
    /// Sent as the `service` property.
    pub service: String,
    /// Seconds without a new expected reply before a receive round gives up.
    pub timeout: u64,
    /// Receive rounds per send cycle (also scales the message TTL: `timeout * retries`).
    pub retries: u32,
    /// Send cycles; each resends only the still-unanswered requests.
    pub send_retries: u32,
    /// Reply member that correlates replies to requests (normally `request_id`).
    pub message_id_key: String,
    /// Log level name (DEBUG, INFO, WARNING, ERROR).
    #[serde(default)]
    pub log_level: Option<String>,
    /// Alias → key id, expanded before the key is sent.
    #[serde(default)]
    pub key_aliases: BTreeMap<String, String>,
    /// Name of the body member and property carrying the task id (default `pub_task_id`).
    #[serde(default)]
    pub task_id_attribute: Option<String>,
    /// Batch signer only: claims per message.
    #[serde(default)]
    pub chunk_size: Option<usize>,
}

impl MsgSignerConfig {
    /// The task id attribute name.
    pub fn task_id_attribute(&self) -> &str {
        self.task_id_attribute.as_deref().unwrap_or("pub_task_id")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    msg_signer: Option<MsgSignerConfig>,
    #[serde(default)]
    msg_batch_signer: Option<MsgSignerConfig>,
    #[serde(default)]
    cosign_signer: Option<CosignSignerConfig>,
}

/// Both sections of a loaded file.
#[derive(Debug, Clone)]
pub struct RequesterConfig {
    /// The file read.
    pub path: PathBuf,
    /// `msg_signer`.
    pub msg_signer: Option<MsgSignerConfig>,
    /// `msg_batch_signer`.
    pub msg_batch_signer: Option<MsgSignerConfig>,
    /// `cosign_signer`.
    pub cosign_signer: Option<CosignSignerConfig>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither the given path nor the defaults exist.
    #[error("config file {0} not found (also looked at {fallback})", fallback = CONFIG_PATHS[1])]
    NotFound(String),
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// `${VAR}` names an unset variable.
    #[error("{path}: environment variable {var} is not set")]
    MissingVar { path: String, var: String },
    /// YAML or schema problem (unknown keys are named here).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// The section the command needs is absent.
    #[error("{path}: no {section} section")]
    NoSection { path: String, section: &'static str },
}

fn expand_home(p: &str, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

/// Finds the config file as pubtools-sign does: `given` if it exists, else `/etc/pubtools-sign/conf.yaml`.
pub fn locate(given: Option<&str>, home: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let first = expand_home(given.unwrap_or(CONFIG_PATHS[0]), home);
    if first.exists() {
        return Ok(first);
    }
    let fallback = PathBuf::from(CONFIG_PATHS[1]);
    if fallback.exists() {
        return Ok(fallback);
    }
    Err(ConfigError::NotFound(first.display().to_string()))
}

/// Replaces `${VAR}` from `env`; an unknown variable is an error.
pub fn substitute(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let var = &after[..end];
        out.push_str(&env(var).ok_or_else(|| var.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl RequesterConfig {
    /// Loads `path`, substituting `${VAR}` with `env(VAR)` (the binary passes the process environment).
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path, env)
    }

    /// Parses config text.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = substitute(text, env).map_err(|var| ConfigError::MissingVar {
            path: p.clone(),
            var,
        })?;
        let file: File = serde_yaml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: p.clone(),
            message: e.to_string(),
        })?;
        Ok(RequesterConfig {
            path: path.to_owned(),
            msg_signer: file.msg_signer,
            msg_batch_signer: file.msg_batch_signer,
            cosign_signer: file.cosign_signer,
        })
    }

    /// The `msg_signer` section, or an error naming the file.
    pub fn single(&self) -> Result<&MsgSignerConfig, ConfigError> {
        self.msg_signer.as_ref().ok_or(ConfigError::NoSection {
            path: self.path.display().to_string(),
            section: "msg_signer",
        })
    }

    /// The `cosign_signer` section, or an error naming the file.
    pub fn cosign(&self) -> Result<&CosignSignerConfig, ConfigError> {
        self.cosign_signer.as_ref().ok_or(ConfigError::NoSection {
            path: self.path.display().to_string(),
            section: "cosign_signer",
        })
    }

    /// The `msg_batch_signer` section, or an error naming the file.
    pub fn batch(&self) -> Result<&MsgSignerConfig, ConfigError> {
        self.msg_batch_signer
            .as_ref()
            .ok_or(ConfigError::NoSection {
                path: self.path.display().to_string(),
                section: "msg_batch_signer",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
msg_signer:
  messaging_brokers: ["amqp://h:5672"]
  messaging_cert_key: "${CERT}"
  messaging_ca_cert: /ca.pem
  topic_send_to: /queues/q
  topic_listen_to: /topic/r.{creator}.{task_id}
  environment: test
  service: pubtools-sign
  timeout: 10
  retries: 2
  send_retries: 2
  message_id_key: request_id
  log_level: INFO
  key_aliases: {prod: ABCD1234}
"#;

    #[test]
    fn loads_pubtools_sign_files_with_env() {
        let c = RequesterConfig::parse(OK, Path::new("c.yaml"), |v| {
            (v == "CERT").then(|| "/c.pem".into())
        })
        .unwrap();
        let s = c.single().unwrap();
        assert_eq!(s.messaging_cert_key, "/c.pem");
        assert_eq!(s.key_aliases["prod"], "ABCD1234");
        assert_eq!(s.task_id_attribute(), "pub_task_id");
        assert!(c.batch().is_err());
    }

    #[test]
    fn refuses_unknown_keys_and_missing_vars() {
        let e = RequesterConfig::parse(&OK.replace("service:", "servce:"), Path::new("c"), |_| {
            Some("x".into())
        })
        .unwrap_err();
        assert!(e.to_string().contains("servce"), "{e}");
        let e = RequesterConfig::parse(OK, Path::new("c"), |_| None).unwrap_err();
        assert!(matches!(e, ConfigError::MissingVar { .. }));
        let e = RequesterConfig::parse(
            &format!("{OK}extra_section: {{}}\n"),
            Path::new("c"),
            |_| Some("x".into()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("extra_section"), "{e}");
    }
}
