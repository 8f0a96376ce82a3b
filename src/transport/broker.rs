//! The [`Broker`] enum: one connection over whichever protocol the configuration chose, implementing
//! [`Transport`] by delegation, with each broker round trip (subscribe, declare) time-boxed.
//!
//! Owns choosing the protocol at [`connect`] and bounding round trips; it never speaks a protocol itself.

use super::{
    amqp091, amqp1, BrokerConfig, OutgoingMessage, Protocol, Subscription, Topology, Transport,
    TransportError,
};
use std::time::Duration;

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

    async fn declare(&self, topology: &Topology) -> Result<(), TransportError> {
        let what = || format!("the declaration of {:?}", topology.queue);
        match self {
            Broker::Amqp1(b) => self.time_boxed(what, b.declare(topology)).await,
            Broker::Amqp091(b) => self.time_boxed(what, b.declare(topology)).await,
        }
    }

    /// Closes the connection; one that does not close within the round-trip time is dropped as it is.
    async fn close(&self) {
        let close = async {
            match self {
                Broker::Amqp1(b) => b.close().await,
                Broker::Amqp091(b) => b.close().await,
            }
        };
        let _ = tokio::time::timeout(self.round_trip_timeout(), close).await;
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
