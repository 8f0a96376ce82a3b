//! AMQP 0-9-1 transport on lapin (RabbitMQ's native protocol): the connection and what it delegates.
//!
//! Publishes on a channel in confirm mode with `mandatory` set (`publisher.rs`): a publish resolves only when the
//! broker confirmed it, and a message no queue could take (`basic.return`) or a nack is an error, never a silent
//! drop. Each subscription has its own channel with `basic.qos` prefetch and manual acknowledgement
//! (`consumer.rs`). Addresses map to exchanges, routing keys and queues as [`super::address`] documents. Bodies
//! are bytes; they travel AMQP 1.0-encoded (`codec.rs`) so both protocols' receivers read the same text;
//! headers and properties convert in `convert.rs`; `topology.rs` declares the server's queues.
//!
//! This file owns the [`Amqp091`] handle: connecting through the failover list (the lapin connection itself,
//! TLS included, is `connect.rs`), and closing. Nothing in this directory knows what the bodies mean.

mod codec;
mod connect;
mod consumer;
mod convert;
mod publisher;
mod topology;

pub use codec::{decode_amqp1_body, encode_amqp1_string};
pub use connect::lapin_uri;

use super::address::AddressError;
use super::failover;
use super::{BrokerConfig, OutgoingMessage, Subscription, Topology, Transport, TransportError};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use std::time::Duration;

/// A live AMQP 0-9-1 connection with a confirm-mode publishing channel.
pub struct Amqp091 {
    connection: Connection,
    publisher: Channel,
    publish_timeout: Duration,
    url: String,
}

impl Amqp091 {
    /// Connects to the first URL in `cfg.urls` that accepts a connection and a confirm-mode channel.
    pub async fn connect(cfg: &BrokerConfig, container_id: &str) -> Result<Self, TransportError> {
        let walk = failover::first_reachable(
            &cfg.urls,
            "AMQP 0-9-1",
            failover::CONNECT_TIMEOUT,
            |url| async move {
                let connection = connect::open(url, cfg, container_id).await?;
                let publisher = connection
                    .create_channel()
                    .await
                    .map_err(|e| e.to_string())?;
                publisher
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((connection, publisher))
            },
        );
        let ((connection, publisher), url) = walk.await?;
        Ok(Amqp091 {
            connection,
            publisher,
            publish_timeout: Duration::from_secs(cfg.publish_timeout_secs.max(1)),
            url,
        })
    }

    /// How long one broker round trip may take (`broker.publish_timeout_secs`).
    pub(crate) fn round_trip_timeout(&self) -> Duration {
        self.publish_timeout
    }

    /// The (redacted) URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// An address that maps to nothing on 0-9-1: a configuration error.
fn bad_address(e: AddressError) -> TransportError {
    TransportError::BadUrl {
        url: e.0.clone(),
        reason: e.to_string(),
    }
}

impl Transport for Amqp091 {
    /// Declares the request queue (durable), its dead-letter exchange and queue when asked, and its bindings.
    async fn declare(&self, t: &Topology) -> Result<(), TransportError> {
        topology::declare(&self.connection, t).await
    }

    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        publisher::publish(&self.publisher, self.publish_timeout, msg).await
    }

    async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        consumer::subscribe(&self.connection, address, prefetch, self.publish_timeout).await
    }

    async fn close(&self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}
