//! What the configuration says about the broker: the failover list of URLs, protocol, SASL, TLS, time limits
//! and the topology a server may declare; and who that makes us (the broker user).
//!
//! Owns these types, their defaults and their redacting `Debug`. It reads no environment and opens no
//! connection (the certificate file named for SASL EXTERNAL is read only to tell its subject name).

use super::broker_url;
use crate::tls;

/// How a client authenticates with SASL.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sasl {
    /// No SASL layer at all (what pubtools-sign does; brokers like ActiveMQ accept it).
    None,
    /// SASL ANONYMOUS (RabbitMQ 4 maps it to its anonymous user).
    #[default]
    Anonymous,
    /// SASL PLAIN with the configured username and password.
    Plain,
    /// SASL EXTERNAL: the broker takes the identity from the TLS client certificate (`tls.cert_key`); needs
    /// `amqps://` / `amqps091://`. With RabbitMQ: `rabbitmq_auth_mechanism_ssl`, and the user named by the
    /// certificate's CN (`ssl_cert_login_from = common_name`).
    External,
}

/// Broker topology a server may declare at start (AMQP 0-9-1 only; on AMQP 1.0 use the broker's own
/// definitions). Declaring is idempotent: what exists with the same settings is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The request queue to declare (durable).
    pub queue: String,
    /// Also declare a fanout exchange `<queue>.dlx` and a durable queue `<queue>.dead` bound to it, and make
    /// it the request queue's dead-letter exchange, so rejected requests are kept.
    #[serde(default)]
    pub dead_letter: bool,
    /// Bindings of the request queue (e.g. `{exchange: amq.topic, routing_key: VirtualTopic.eng.sign}`).
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

/// One binding of the request queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Exchange name (must exist, e.g. `amq.topic`).
    pub exchange: String,
    /// Routing key (binding key).
    pub routing_key: String,
}

/// Which AMQP protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// By URL scheme: `amqp091://` / `amqps091://` mean AMQP 0-9-1, `amqp://` / `amqps://` AMQP 1.0.
    #[default]
    Auto,
    /// AMQP 1.0 (fe2o3-amqp): RabbitMQ 4, ActiveMQ, Artemis, Qpid.
    Amqp1,
    /// AMQP 0-9-1 (lapin): RabbitMQ's native protocol.
    Amqp091,
}

/// Where and how to connect: a failover list of URLs tried in order. `Debug` redacts secrets.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Broker URLs, `amqp://host:port` (or `amqps://`), tried in order until one connects.
    pub urls: Vec<String>,
    /// Protocol; `auto` decides by the first URL's scheme.
    #[serde(default)]
    pub protocol: Protocol,
    /// SASL mechanism. Credentials in a URL (`amqp://user:pass@host`) imply PLAIN.
    #[serde(default)]
    pub sasl: Sasl,
    /// Username for PLAIN.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for PLAIN. Never logged.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// TLS settings for `amqps://` and `amqps091://` URLs (CA bundle, client certificate).
    #[serde(default)]
    pub tls: tls::TlsConfig,
    /// Seconds to wait for the broker to settle a published message.
    #[serde(default = "default_publish_timeout")]
    pub publish_timeout_secs: u64,
    /// Heartbeat: each side must hear from the other at least this often (AMQP 0-9-1 heartbeats, AMQP 1.0
    /// idle-time-out, sent at half the interval); a connection silent for twice as long is dropped, so a silent
    /// network partition is noticed in bounded time. 0 turns it off (not recommended).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u16,
}

fn default_publish_timeout() -> u64 {
    30
}

fn default_heartbeat() -> u16 {
    10
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            urls: Vec::new(),
            protocol: Protocol::default(),
            tls: tls::TlsConfig::default(),
            sasl: Sasl::default(),
            username: None,
            password: None,
            publish_timeout_secs: default_publish_timeout(),
            heartbeat_secs: default_heartbeat(),
        }
    }
}

impl BrokerConfig {
    /// The broker user this configuration authenticates as, when known: the certificate's name (CN, else UID)
    /// with SASL EXTERNAL, else [`BrokerConfig::plain_user`].
    pub fn broker_user(&self) -> Option<String> {
        if self.sasl == Sasl::External {
            let pem = std::fs::read_to_string(self.tls.cert_key.as_ref()?).ok()?;
            return crate::cert::subject_name(&pem).ok();
        }
        self.plain_user()
    }

    /// The user this configuration authenticates as with SASL PLAIN, when that is known whichever broker of the
    /// list answers: `username` (with `sasl: plain`), else the user every URL names (`amqp://user:pass@host`).
    pub fn plain_user(&self) -> Option<String> {
        if self.sasl == Sasl::Plain {
            if let Some(u) = &self.username {
                return Some(u.clone());
            }
        }
        let users: std::collections::BTreeSet<Option<String>> = self
            .urls
            .iter()
            .map(|u| {
                broker_url::BrokerUrl::parse(u)
                    .ok()
                    .and_then(|b| b.credentials)
                    .map(|(user, _)| user)
            })
            .collect();
        match users.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(user)] => Some(user.clone()),
            _ => None,
        }
    }

    /// True when SASL EXTERNAL authenticates a connection: configured, and the URL names no user (a user in
    /// the URL means PLAIN). An error when it would but the connection is not TLS (`tls_scheme://`) or no client
    /// certificate is configured.
    pub(crate) fn sasl_external(
        &self,
        url_names_user: bool,
        tls: bool,
        tls_scheme: &str,
    ) -> Result<bool, String> {
        if self.sasl != Sasl::External || url_names_user {
            return Ok(false);
        }
        if !tls || self.tls.cert_key.is_none() {
            return Err(format!(
                "SASL EXTERNAL needs TLS with a client certificate ({tls_scheme}:// and tls.cert_key / \
                 messaging_cert_key)"
            ));
        }
        Ok(true)
    }

    /// The protocol to speak, resolving `auto` by the first URL's scheme.
    pub fn resolved_protocol(&self) -> Protocol {
        match self.protocol {
            Protocol::Auto => {
                let first = self.urls.first().map(String::as_str).unwrap_or_default();
                if broker_url::names_amqp091(first) {
                    Protocol::Amqp091
                } else {
                    Protocol::Amqp1
                }
            }
            p => p,
        }
    }
}

impl std::fmt::Debug for BrokerConfig {
    /// Never shows the password, nor passwords inside URLs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| broker_url::redact(u)).collect();
        f.debug_struct("BrokerConfig")
            .field("urls", &urls)
            .field("protocol", &self.protocol)
            .field("tls", &self.tls)
            .field("sasl", &self.sasl)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("publish_timeout_secs", &self.publish_timeout_secs)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_user_is_known_only_when_every_broker_agrees() {
        let cfg = |urls: &[&str], sasl: Sasl, username: Option<&str>| BrokerConfig {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            sasl,
            username: username.map(str::to_owned),
            ..Default::default()
        };
        let plain = Sasl::Plain;
        assert_eq!(
            cfg(&["amqp://h"], plain.clone(), Some("svc"))
                .plain_user()
                .as_deref(),
            Some("svc")
        );
        assert_eq!(
            cfg(&["amqp://h"], Sasl::Anonymous, Some("svc")).plain_user(),
            None
        );
        let both = ["amqp://a%40b:p@h1", "amqp091://a%40b:q@h2:5673"];
        assert_eq!(
            cfg(&both, Sasl::Anonymous, None).plain_user().as_deref(),
            Some("a@b")
        );
        assert_eq!(
            cfg(&["amqp://a:p@h1", "amqp://b:p@h2"], Sasl::Anonymous, None).plain_user(),
            None
        );
        assert_eq!(
            cfg(&["amqp://a:p@h1", "amqp://h2"], Sasl::Anonymous, None).plain_user(),
            None
        );
        assert_eq!(cfg(&["amqp://h"], Sasl::Anonymous, None).plain_user(), None);
    }

    #[test]
    fn sasl_external_needs_tls_and_a_certificate_unless_the_url_names_a_user() {
        let mut cfg = BrokerConfig {
            sasl: Sasl::External,
            ..Default::default()
        };
        assert_eq!(cfg.sasl_external(true, false, "amqps"), Ok(false));
        let err = cfg.sasl_external(false, true, "amqps091").unwrap_err();
        assert!(
            err.contains("(amqps091:// and tls.cert_key / messaging_cert_key)"),
            "{err}"
        );
        cfg.tls.cert_key = Some("client.pem".into());
        assert!(cfg.sasl_external(false, false, "amqps").is_err());
        assert_eq!(cfg.sasl_external(false, true, "amqps"), Ok(true));
        cfg.sasl = Sasl::Plain;
        assert_eq!(cfg.sasl_external(false, false, "amqps"), Ok(false));
    }
}
