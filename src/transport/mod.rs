//! Moving messages to and from a broker: one trait, one directory per protocol (`amqp1/`, `amqp091/`).
//!
//! A [`Transport`] publishes [`OutgoingMessage`]s and waits until the broker has settled them, and opens
//! [`Subscription`]s that yield [`Delivery`]s which the caller settles exactly once ([`Settlement`]). A delivery
//! dropped unsettled is released back to the broker, never lost. This module knows nothing of gpg, claims or
//! the JSON inside bodies: bodies are bytes, properties are JSON scalars.
//!
//! This file owns the traits and the message types; the pieces both protocols share sit beside it (`broker.rs`,
//! `config.rs`, `error.rs`, `broker_url.rs`, `failover.rs`, `address.rs`, `delivery.rs`). A protocol must never
//! import from the other protocol's directory: what both need lives here.

pub mod address;
pub mod amqp091;
pub mod amqp1;
mod broker;
pub mod broker_url;
mod config;
mod delivery;
mod error;
mod failover;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub use crate::tls;

pub use broker::{connect, Broker};
pub use config::{Binding, BrokerConfig, Protocol, Sasl, Topology};
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

    /// Declares `topology` (the request queue, its dead-letter queue, bindings) where the protocol can; an
    /// error that says how to declare it otherwise where it cannot.
    fn declare(
        &self,
        topology: &Topology,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

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
