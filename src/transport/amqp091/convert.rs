//! Conversion between signbus messages and AMQP 0-9-1: application properties as headers (JSON scalars both
//! ways), and a received delivery as an [`IncomingMessage`] (body decoded from AMQP 1.0 sections when it is
//! encoded, delivery count, `user-id`, deadline from `timestamp` + `expiration`).
//!
//! Pure functions: they never touch a channel or the network, and never interpret the body.

use super::codec::decode_amqp1_body;
use crate::transport::IncomingMessage;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use serde_json::{Map, Value};
use std::time::Duration;

pub(super) fn to_headers(props: &Map<String, Value>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in props {
        let value = match v {
            Value::Null => AMQPValue::Void,
            Value::Bool(b) => AMQPValue::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => AMQPValue::LongLongInt(i),
                None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => AMQPValue::LongString(s.as_str().into()),
            other => AMQPValue::LongString(other.to_string().into()),
        };
        t.insert(ShortString::from(k.as_str()), value);
    }
    t
}

fn header_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Void => Value::Null,
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(x) => (*x).into(),
        AMQPValue::ShortShortUInt(x) => (*x).into(),
        AMQPValue::ShortInt(x) => (*x).into(),
        AMQPValue::ShortUInt(x) => (*x).into(),
        AMQPValue::LongInt(x) => (*x).into(),
        AMQPValue::LongUInt(x) => (*x).into(),
        AMQPValue::LongLongInt(x) => (*x).into(),
        AMQPValue::Float(x) => {
            serde_json::Number::from_f64(*x as f64).map_or(Value::Null, Value::Number)
        }
        AMQPValue::Double(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongString(s) => Value::String(s.to_string()),
        AMQPValue::Timestamp(t) => (*t).into(),
        other => Value::String(format!("{other:?}")),
    }
}

pub(super) fn from_delivery(d: &lapin::message::Delivery) -> IncomingMessage {
    let mut properties = Map::new();
    if let Some(h) = d.properties.headers() {
        for (k, v) in h.inner() {
            properties.insert(k.to_string(), header_to_json(v));
        }
    }
    IncomingMessage {
        body: decode_amqp1_body(&d.data).unwrap_or_else(|| d.data.clone()),
        properties,
        reply_to: d.properties.reply_to().as_ref().map(|r| r.to_string()),
        delivery_count: delivery_count(d),
        user_id: d.properties.user_id().as_ref().map(|u| u.to_string()),
        expires_at: expires_at(&d.properties),
    }
}

/// Earlier deliveries: quorum queues count them (`x-delivery-count`); elsewhere only `redelivered` is known.
fn delivery_count(d: &lapin::message::Delivery) -> u32 {
    let counted = d.properties.headers().as_ref().and_then(|h| {
        h.inner().iter().find_map(|(k, v)| {
            (k.as_str() == "x-delivery-count").then(|| header_to_json(v).as_u64())
        })
    });
    match counted.flatten() {
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        None => u32::from(d.redelivered),
    }
}

/// The deadline a sender set: `timestamp` (seconds) + `expiration` (milliseconds), when both are present.
fn expires_at(p: &BasicProperties) -> Option<std::time::SystemTime> {
    let sent = (*p.timestamp())?;
    let ttl_ms: u64 = p.expiration().as_ref()?.as_str().parse().ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(sent) + Duration::from_millis(ttl_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut m = Map::new();
        m.insert("s".into(), "x".into());
        m.insert("n".into(), 7.into());
        m.insert("b".into(), false.into());
        let t = to_headers(&m);
        for (k, v) in t.inner() {
            assert_eq!(header_to_json(v), m[k.as_str()]);
        }
    }
}
