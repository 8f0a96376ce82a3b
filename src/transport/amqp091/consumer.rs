//! Consuming over AMQP 0-9-1: a channel per subscription (`basic.qos` prefetch, manual acknowledgement), with a
//! private queue bound for exchange addresses, as the [`ConsumerLink`] the shared consumer driver
//! (`transport/delivery.rs`) runs.
//!
//! Owns turning a [`Settlement`] into ack / reject (dead-letter) / nack+requeue (redeliver) on the channel the
//! delivery came from. It must never settle a delivery on its own.

use super::{bad_address, convert};
use crate::transport::address::Address;
use crate::transport::delivery::{spawn_consumer, ConsumerLink, LinkEvent};
use crate::transport::{Settlement, Subscription, TransportError};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

/// Starts consuming from `address` on a new channel of `connection`; a settlement may take `round_trip`.
pub(super) async fn subscribe(
    connection: &Connection,
    address: &str,
    prefetch: u32,
    round_trip: std::time::Duration,
) -> Result<Subscription, TransportError> {
    let attach = |e: lapin::Error| TransportError::Attach {
        address: address.to_owned(),
        reason: e.to_string(),
    };
    let channel = connection.create_channel().await.map_err(attach)?;
    channel
        .basic_qos(
            prefetch.clamp(1, u16::MAX as u32) as u16,
            BasicQosOptions::default(),
        )
        .await
        .map_err(attach)?;
    let queue = match Address::parse(address).map_err(bad_address)? {
        Address::Queue(q) => q,
        Address::Exchange {
            exchange,
            routing_key,
        } => {
            let opts = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            let q = channel
                .queue_declare("".into(), opts, FieldTable::default())
                .await
                .map_err(attach)?;
            let name = q.name().clone();
            channel
                .queue_bind(
                    name.clone(),
                    exchange.into(),
                    routing_key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(attach)?;
            name.to_string()
        }
    };
    let tag = format!("signbus-{}", uuid::Uuid::new_v4().simple());
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(attach)?;
    Ok(spawn_consumer(
        ConsumerChannel {
            channel,
            consumer,
            tag,
        },
        address,
        round_trip,
    ))
}

/// A lapin consumer and its channel as a [`ConsumerLink`].
struct ConsumerChannel {
    channel: Channel,
    consumer: lapin::Consumer,
    tag: String,
}

impl ConsumerLink for ConsumerChannel {
    type Handle = lapin::Acker;

    async fn recv(&mut self) -> LinkEvent<lapin::Acker> {
        match self.consumer.next().await {
            Some(Ok(d)) => LinkEvent::Message(convert::from_delivery(&d), d.acker.clone()),
            Some(Err(e)) => LinkEvent::Ended(e.to_string()),
            // Cancelled (after a pause) or the channel closed.
            None if self.channel.status().connected() => LinkEvent::Paused,
            None => LinkEvent::Ended("channel closed".into()),
        }
    }

    async fn settle(&mut self, acker: lapin::Acker, s: &Settlement) -> Result<(), TransportError> {
        settle(&acker, s).await
    }

    async fn stop_flow(&mut self) {
        let _ = self
            .channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }

    async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
    }
}

async fn settle(acker: &lapin::Acker, s: &Settlement) -> Result<(), TransportError> {
    let r = match s {
        Settlement::Accept => acker.ack(BasicAckOptions::default()).await,
        Settlement::Reject { .. } => acker.reject(BasicRejectOptions { requeue: false }).await,
        Settlement::Release => {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    };
    r.map(|_| ())
        .map_err(|e| TransportError::Lost(e.to_string()))
}
