//! One address syntax for both protocols, mapped onto AMQP 0-9-1's exchanges, routing keys and queues.
//!
//! RabbitMQ's AMQP 1.0 v2 addresses are the shared syntax: `/queues/<q>` and `/exchanges/<x>[/<rk>]`
//! (percent-encoded components). The v1 forms `/queue/<q>`, `/topic/<rk>`, `/exchange/<x>[/<rk>]` and the
//! ActiveMQ forms `queue://<q>`, `topic://<name>` are accepted too. On AMQP 0-9-1 an address means:
//!
//! | address | publish to | consume from |
//! |---|---|---|
//! | `/queues/q`, `/queue/q`, `queue://q` | default exchange, routing key `q` | queue `q` (must exist) |
//! | `/exchanges/x/rk`, `/exchange/x/rk` | exchange `x`, routing key `rk` | a private queue bound to `x` with `rk` |
//! | `/topic/rk`, `topic://rk` | exchange `amq.topic`, routing key `rk` | a private queue bound to `amq.topic` with `rk` |
//!
//! Private queues are exclusive and auto-deleted: they live as long as the subscription. This module only
//! parses; it never talks to a broker.

/// Where an address points on AMQP 0-9-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A named queue.
    Queue(String),
    /// An exchange and routing key.
    Exchange {
        /// Exchange name (`""` is the default exchange).
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
}

/// An address that maps to nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {0:?} is not one of /queues/<q>, /exchanges/<x>[/<rk>], /queue/<q>, /topic/<rk>, queue://<q>, topic://<name>")]
pub struct AddressError(pub String);

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Address {
    /// Parses an address string.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let err = || AddressError(s.to_owned());
        let non_empty = |x: &str| {
            if x.is_empty() {
                Err(err())
            } else {
                Ok(x.to_owned())
            }
        };
        if let Some(q) = s.strip_prefix("/queues/") {
            return Ok(Address::Queue(non_empty(&decode(q))?));
        }
        if let Some(rest) = s.strip_prefix("/exchanges/") {
            let (x, rk) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Address::Exchange {
                exchange: non_empty(&decode(x))?,
                routing_key: decode(rk),
            });
        }
        if let Some(q) = s
            .strip_prefix("/queue/")
            .or_else(|| s.strip_prefix("queue://"))
        {
            return Ok(Address::Queue(non_empty(q)?));
        }
        if let Some(rest) = s.strip_prefix("/exchange/") {
            let (x, rk) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Address::Exchange {
                exchange: non_empty(x)?,
                routing_key: rk.to_owned(),
            });
        }
        if let Some(rk) = s
            .strip_prefix("/topic/")
            .or_else(|| s.strip_prefix("topic://"))
        {
            return Ok(Address::Exchange {
                exchange: "amq.topic".into(),
                routing_key: non_empty(rk)?,
            });
        }
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(x: &str, rk: &str) -> Address {
        Address::Exchange {
            exchange: x.into(),
            routing_key: rk.into(),
        }
    }

    #[test]
    fn maps_every_form() {
        assert_eq!(
            Address::parse("/queues/signbus.requests").unwrap(),
            Address::Queue("signbus.requests".into())
        );
        assert_eq!(
            Address::parse("/queues/a%2Fb").unwrap(),
            Address::Queue("a/b".into())
        );
        assert_eq!(
            Address::parse("/exchanges/amq.topic/r.a.b").unwrap(),
            ex("amq.topic", "r.a.b")
        );
        assert_eq!(Address::parse("/exchanges/x").unwrap(), ex("x", ""));
        assert_eq!(
            Address::parse("/topic/r.1").unwrap(),
            ex("amq.topic", "r.1")
        );
        assert_eq!(
            Address::parse("topic://VirtualTopic.eng.sign").unwrap(),
            ex("amq.topic", "VirtualTopic.eng.sign")
        );
        assert_eq!(
            Address::parse("queue://Consumer.a.b").unwrap(),
            Address::Queue("Consumer.a.b".into())
        );
        assert_eq!(
            Address::parse("/queue/q").unwrap(),
            Address::Queue("q".into())
        );
    }

    #[test]
    fn refuses_the_rest() {
        for bad in [
            "",
            "q",
            "/queues/",
            "/topic/",
            "/exchanges/",
            "amqp://x",
            "/other/x",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
