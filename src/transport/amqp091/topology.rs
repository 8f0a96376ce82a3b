//! Declaring the server's topology on AMQP 0-9-1 (`server.topology`): the durable request queue, its
//! dead-letter exchange and queue when asked, and its bindings.
//!
//! Owns only declaring, which is idempotent (what exists with the same settings is left as it is). It never
//! deletes or changes what exists, and never publishes or consumes.

use crate::transport::{Topology, TransportError};
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Connection;

/// Declares `t` on a channel of its own, closed afterwards.
pub(super) async fn declare(connection: &Connection, t: &Topology) -> Result<(), TransportError> {
    let fail = |e: lapin::Error| TransportError::Attach {
        address: t.queue.clone(),
        reason: e.to_string(),
    };
    let ch = connection.create_channel().await.map_err(fail)?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut args = FieldTable::default();
    if t.dead_letter {
        let dlx = format!("{}.dlx", t.queue);
        let dead = format!("{}.dead", t.queue);
        let opts = lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            dlx.as_str().into(),
            lapin::ExchangeKind::Fanout,
            opts,
            FieldTable::default(),
        )
        .await
        .map_err(fail)?;
        ch.queue_declare(dead.as_str().into(), durable, FieldTable::default())
            .await
            .map_err(fail)?;
        ch.queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(fail)?;
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.as_str().into()),
        );
    }
    ch.queue_declare(t.queue.as_str().into(), durable, args)
        .await
        .map_err(fail)?;
    for b in &t.bindings {
        ch.queue_bind(
            t.queue.as_str().into(),
            b.exchange.as_str().into(),
            b.routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(fail)?;
    }
    let _ = ch.close(200, "declared".into()).await;
    tracing::info!(queue = %t.queue, dead_letter = t.dead_letter, bindings = t.bindings.len(), "topology declared");
    Ok(())
}
