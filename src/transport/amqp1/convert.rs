//! Conversion between signbus messages and fe2o3 AMQP 1.0 messages: body as an `amqp-value` string, header
//! (durable, TTL), properties (`to`, `reply-to`, `user-id`, creation and expiry times) and application
//! properties as JSON scalars.
//!
//! Pure functions: they never touch a link or the network, and never interpret the body.

use crate::transport::{IncomingMessage, OutgoingMessage};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Header, Message, Properties};
use fe2o3_amqp::types::primitives::{
    Binary, OrderedMap, SimpleValue, Timestamp, Value as AmqpValue,
};
use serde_json::{Map, Value};
use std::time::Duration;

pub(super) fn to_amqp(
    msg: OutgoingMessage,
) -> Message<fe2o3_amqp::types::messaging::AmqpValue<String>> {
    let mut props = OrderedMap::new();
    for (k, v) in msg.properties {
        props.insert(k, json_to_simple(v));
    }
    // Stamp creation and expiry so a consumer can refuse the message once it is too old to be wanted.
    let now = unix_millis(std::time::SystemTime::now());
    let expiry = msg.ttl.map(|t| {
        Timestamp::from_milliseconds(now + t.as_millis().min(i64::MAX as u128 / 2) as i64)
    });
    let properties = Properties {
        to: Some(msg.address),
        reply_to: msg.reply_to,
        user_id: msg.user_id.map(|u| Binary::from(u.into_bytes())),
        creation_time: Some(Timestamp::from_milliseconds(now)),
        absolute_expiry_time: expiry,
        ..Default::default()
    };
    let header = Header {
        durable: msg.durable,
        ttl: msg.ttl.map(|t| t.as_millis().min(u32::MAX as u128) as u32),
        ..Default::default()
    };
    Message::builder()
        .header(header)
        .properties(properties)
        .application_properties(ApplicationProperties(props))
        .value(msg.body)
        .build()
}

fn json_to_simple(v: Value) -> SimpleValue {
    match v {
        Value::Null => SimpleValue::Null,
        Value::Bool(b) => SimpleValue::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => SimpleValue::Long(i),
            (None, Some(f)) => SimpleValue::Double(f.into()),
            _ => SimpleValue::String(n.to_string()),
        },
        Value::String(s) => SimpleValue::String(s),
        other => SimpleValue::String(other.to_string()),
    }
}

fn simple_to_json(v: &SimpleValue) -> Value {
    match v {
        SimpleValue::Null => Value::Null,
        SimpleValue::Bool(b) => Value::Bool(*b),
        SimpleValue::Ubyte(x) => (*x).into(),
        SimpleValue::Ushort(x) => (*x).into(),
        SimpleValue::Uint(x) => (*x).into(),
        SimpleValue::Ulong(x) => (*x).into(),
        SimpleValue::Byte(x) => (*x).into(),
        SimpleValue::Short(x) => (*x).into(),
        SimpleValue::Int(x) => (*x).into(),
        SimpleValue::Long(x) => (*x).into(),
        SimpleValue::Float(x) => {
            serde_json::Number::from_f64(x.0 as f64).map_or(Value::Null, Value::Number)
        }
        SimpleValue::Double(x) => {
            serde_json::Number::from_f64(x.0).map_or(Value::Null, Value::Number)
        }
        SimpleValue::String(s) => Value::String(s.clone()),
        SimpleValue::Symbol(s) => Value::String(s.0.clone()),
        other => Value::String(format!("{other:?}")),
    }
}

pub(super) fn from_amqp(message: Message<Body<AmqpValue>>) -> IncomingMessage {
    let mut properties = Map::new();
    if let Some(ap) = &message.application_properties {
        for (k, v) in ap.0.iter() {
            properties.insert(k.clone(), simple_to_json(v));
        }
    }
    let reply_to = message.properties.as_ref().and_then(|p| p.reply_to.clone());
    let user_id = message
        .properties
        .as_ref()
        .and_then(|p| p.user_id.as_ref())
        .and_then(|u| String::from_utf8(u.to_vec()).ok());
    let expires_at = message.properties.as_ref().and_then(|p| {
        let ttl = message.header.as_ref().and_then(|h| h.ttl);
        let at = match (
            p.absolute_expiry_time.as_ref(),
            p.creation_time.as_ref(),
            ttl,
        ) {
            (Some(at), _, _) => at.milliseconds(),
            (None, Some(created), Some(ttl)) => {
                created.milliseconds().saturating_add(i64::from(ttl))
            }
            _ => return None,
        };
        u64::try_from(at)
            .ok()
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
    });
    let delivery_count = message.header.as_ref().map_or(0, |h| h.delivery_count);
    let body = match message.body {
        Body::Value(v) => match v.0 {
            AmqpValue::String(s) => s.into_bytes(),
            AmqpValue::Binary(b) => b.into_vec(),
            AmqpValue::Symbol(s) => s.0.into_bytes(),
            other => format!("{other:?}").into_bytes(),
        },
        Body::Data(batch) => batch.into_iter().flat_map(|d| d.0.into_vec()).collect(),
        _ => Vec::new(),
    };
    IncomingMessage {
        body,
        properties,
        reply_to,
        delivery_count,
        user_id,
        expires_at,
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
fn unix_millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_as_scalars() {
        let mut m = Map::new();
        m.insert("s".into(), "x".into());
        m.insert("n".into(), 5.into());
        m.insert("b".into(), true.into());
        m.insert("z".into(), Value::Null);
        for (k, v) in m {
            assert_eq!(simple_to_json(&json_to_simple(v.clone())), v, "{k}");
        }
    }
}
