//! Publishing over AMQP 0-9-1: address → exchange and routing key, properties, the AMQP 1.0-encoded body, and the
//! broker's confirm.
//!
//! Owns what a confirm means: an ack without a return is the only success; a `basic.return` (mandatory) is
//! unroutable, a nack a rejection. It must never report a message as published before the broker confirmed it.

use super::codec::{encode_amqp1_string, AMQP10_TYPE};
use super::{bad_address, convert};
use crate::transport::address::Address;
use crate::transport::{OutgoingMessage, TransportError};
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use std::time::Duration;

/// Publishes `msg` on the confirm-mode `channel` and waits up to `timeout` for the broker's confirm.
pub(super) async fn publish(
    channel: &Channel,
    timeout: Duration,
    msg: OutgoingMessage,
) -> Result<(), TransportError> {
    let (exchange, routing_key) = match Address::parse(&msg.address).map_err(bad_address)? {
        Address::Queue(q) => (String::new(), q),
        Address::Exchange {
            exchange,
            routing_key,
        } => (exchange, routing_key),
    };
    // Type `amqp-1.0` with an AMQP-encoded body tells RabbitMQ the payload is AMQP 1.0 sections, so an AMQP 1.0
    // receiver (pubtools-sign's python-qpid-proton) gets a string body, exactly as if sent over AMQP 1.0.
    let mut props = BasicProperties::default()
        .with_type(AMQP10_TYPE.into())
        .with_headers(convert::to_headers(&msg.properties))
        .with_delivery_mode(if msg.durable { 2 } else { 1 });
    if let Some(r) = &msg.reply_to {
        props = props.with_reply_to(r.as_str().into());
    }
    if let Some(ttl) = msg.ttl {
        props = props.with_expiration(ttl.as_millis().to_string().into());
    }
    if let Some(u) = &msg.user_id {
        props = props.with_user_id(u.as_str().into());
    }
    // 0-9-1 timestamps are whole seconds; with `expiration` they give the consumer the message's deadline.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    props = props.with_timestamp(now);
    let address = msg.address.clone();
    let lost = |e: lapin::Error| TransportError::Lost(e.to_string());
    let confirm = async {
        let pending = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &encode_amqp1_string(&msg.body),
                props,
            )
            .await
            .map_err(lost)?;
        pending.await.map_err(lost)
    };
    let confirmation =
        tokio::time::timeout(timeout, confirm)
            .await
            .map_err(|_| TransportError::Timeout {
                address: address.clone(),
                timeout,
            })??;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(TransportError::Unroutable { address }),
        Confirmation::Nack(_) => Err(TransportError::Rejected {
            address,
            reason: "broker nacked the message".into(),
        }),
        Confirmation::NotRequested => Err(TransportError::Rejected {
            address,
            reason: "no publisher confirm".into(),
        }),
    }
}
