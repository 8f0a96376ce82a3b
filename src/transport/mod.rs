//! Moving messages to and from a broker: one trait, one file per protocol.
//!
//! A [`Transport`] publishes [`OutgoingMessage`]s and waits until the broker has settled them, and opens
//! [`Subscription`]s that yield [`Delivery`]s which the caller settles exactly once ([`Settlement`]). A delivery
//! dropped unsettled is released back to the broker, never lost. This module knows nothing of gpg, claims or
//! the JSON inside bodies: bodies are bytes, properties are JSON scalars.

pub mod address;
pub mod amqp091;
pub mod amqp1;
pub mod broker_url;
mod delivery;
mod error;
mod failover;
pub use crate::tls;

pub use delivery::{Delivery, Settlement, Subscription};
pub use error::TransportError;

use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

/// A message to publish.
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    /// Destination address (`to`), e.g. `/queues/signbus.requests` or `topic://VirtualTopic.eng.sign`.
    pub address: String,
    /// Body text (JSON); sent as an AMQP string value on AMQP 1.0, as it is by pubtools-sign.
    pub body: String,
    /// Application properties; scalar JSON values only (strings, numbers, booleans, null).
    pub properties: Map<String, Value>,
    /// Where replies should go, when the sender wants them routed by the message itself.
    pub reply_to: Option<String>,
    /// Time to live.
    pub ttl: Option<Duration>,
    /// Ask the broker to keep the message on disk.
    pub durable: bool,
    /// The AMQP `user-id`: the publisher's broker user name. Brokers that validate it (RabbitMQ) refuse the
    /// message when it is not the connection's authenticated user.
    pub user_id: Option<String>,
}

/// A message received from a subscription.
#[derive(Debug, Clone, Default)]
pub struct IncomingMessage {
    /// The body bytes: an AMQP string or binary value, or the concatenated data sections.
    pub body: Vec<u8>,
    /// Application properties, converted to JSON scalars.
    pub properties: Map<String, Value>,
    /// The message's `reply-to`, when set.
    pub reply_to: Option<String>,
    /// How many earlier deliveries of this message failed (0 on first delivery).
    pub delivery_count: u32,
    /// The AMQP `user-id`, when set (validated by brokers such as RabbitMQ).
    pub user_id: Option<String>,
    /// When the sender said the message expires (`absolute-expiry-time`, or creation time + TTL).
    pub expires_at: Option<std::time::SystemTime>,
}

/// One connection to a broker, whatever the protocol.
pub trait Transport: Send + Sync + 'static {
    /// Publishes `msg` and resolves once the broker has taken responsibility for it (AMQP 1.0 `accepted`,
    /// 0-9-1 confirm). Any other outcome is an error; nothing is silently dropped.
    fn publish(
        &self,
        msg: OutgoingMessage,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Starts consuming from `address` with at most about `prefetch` unsettled deliveries.
    fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> impl Future<Output = Result<Subscription, TransportError>> + Send;

    /// Closes the connection politely. Unsettled deliveries are redelivered by the broker.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Opens connections to a broker: what lets a client reconnect after the broker went away.
pub trait Connect: Send + Sync {
    /// The connection type.
    type Conn: Transport;
    /// Opens a new connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, TransportError>> + Send;
    /// The broker user messages are published as, when known: set as their AMQP `user-id`, which a broker
    /// like RabbitMQ validates, so a server can trust it as the publisher's identity.
    fn user_id(&self) -> Option<String> {
        None
    }
}

/// Connects with a [`BrokerConfig`] under a client container id.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Where and how.
    pub config: BrokerConfig,
    /// The AMQP container id (AMQP 1.0) / connection name (0-9-1).
    pub container_id: String,
}

impl Connect for Connector {
    type Conn = Broker;

    async fn connect(&self) -> Result<Broker, TransportError> {
        connect(&self.config, &self.container_id).await
    }

    fn user_id(&self) -> Option<String> {
        self.config.broker_user()
    }
}

/// A [`Connect`] whose first connection is already open (so a caller can report a first failure its own way);
/// later ones come from `inner`.
pub struct Primed<C: Connect> {
    first: std::sync::Mutex<Option<C::Conn>>,
    inner: C,
}

impl<C: Connect> Primed<C> {
    /// Hands out `first` once, then connects with `inner`.
    pub fn new(first: C::Conn, inner: C) -> Self {
        Primed {
            first: std::sync::Mutex::new(Some(first)),
            inner,
        }
    }
}

impl<C: Connect> Connect for Primed<C> {
    type Conn = C::Conn;

    async fn connect(&self) -> Result<C::Conn, TransportError> {
        let first = self.first.lock().map(|mut f| f.take()).unwrap_or(None);
        match first {
            Some(conn) => Ok(conn),
            None => self.inner.connect().await,
        }
    }

    fn user_id(&self) -> Option<String> {
        self.inner.user_id()
    }
}

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

/// A connection over whichever protocol the configuration chose.
pub enum Broker {
    /// AMQP 1.0.
    Amqp1(amqp1::Amqp1),
    /// AMQP 0-9-1.
    Amqp091(Box<amqp091::Amqp091>),
}

impl Broker {
    /// The (redacted) URL connected to.
    pub fn url(&self) -> &str {
        match self {
            Broker::Amqp1(b) => b.url(),
            Broker::Amqp091(b) => b.url(),
        }
    }

    /// How long one broker round trip (a publish confirmation, a subscribe, a declaration) may take:
    /// `broker.publish_timeout_secs`.
    pub fn round_trip_timeout(&self) -> Duration {
        match self {
            Broker::Amqp1(b) => b.round_trip_timeout(),
            Broker::Amqp091(b) => b.round_trip_timeout(),
        }
    }

    /// `step` bounded by [`Broker::round_trip_timeout`]: a broker that does not answer in time is treated as a
    /// lost connection (reconnect and try again), never waited for forever.
    async fn time_boxed<T>(
        &self,
        what: impl FnOnce() -> String,
        step: impl std::future::Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        let limit = self.round_trip_timeout();
        tokio::time::timeout(limit, step).await.unwrap_or_else(|_| {
            Err(TransportError::Lost(format!(
                "the broker did not answer {} within {limit:?}",
                what()
            )))
        })
    }
}

impl Broker {
    /// Declares `topology` on the broker. Only AMQP 0-9-1 can declare; over AMQP 1.0 this is an error that says
    /// to declare the topology with the broker's definitions instead.
    pub async fn declare(&self, topology: &Topology) -> Result<(), TransportError> {
        match self {
            Broker::Amqp091(b) => {
                let what = || format!("the declaration of {:?}", topology.queue);
                self.time_boxed(what, b.declare(topology)).await
            }
            Broker::Amqp1(_) => Err(TransportError::Attach {
                address: topology.queue.clone(),
                reason: "server.topology needs AMQP 0-9-1 (broker.protocol: amqp091); over AMQP 1.0 declare \
                         queues and bindings with the broker's definitions"
                    .into(),
            }),
        }
    }
}

impl Transport for Broker {
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        match self {
            Broker::Amqp1(b) => b.publish(msg).await,
            Broker::Amqp091(b) => b.publish(msg).await,
        }
    }

    async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        let what = || format!("the subscription to {address:?}");
        match self {
            Broker::Amqp1(b) => self.time_boxed(what, b.subscribe(address, prefetch)).await,
            Broker::Amqp091(b) => self.time_boxed(what, b.subscribe(address, prefetch)).await,
        }
    }

    async fn close(&self) {
        match self {
            Broker::Amqp1(b) => b.close().await,
            Broker::Amqp091(b) => b.close().await,
        }
    }
}

/// Connects to the first broker of `cfg.urls` that answers, over the configured protocol.
pub async fn connect(cfg: &BrokerConfig, container_id: &str) -> Result<Broker, TransportError> {
    match cfg.resolved_protocol() {
        Protocol::Amqp091 => Ok(Broker::Amqp091(Box::new(
            amqp091::Amqp091::connect(cfg, container_id).await?,
        ))),
        _ => Ok(Broker::Amqp1(
            amqp1::Amqp1::connect(cfg, container_id).await?,
        )),
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
}
