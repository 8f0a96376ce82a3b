//! AMQP 0-9-1 transport on lapin (RabbitMQ's native protocol).
//!
//! Publishes on a channel in confirm mode with `mandatory` set: a publish resolves only when the broker
//! confirmed it, and a message no queue could take (`basic.return`) or a nack is an error, never a silent drop.
//! Each subscription has its own channel with `basic.qos` prefetch and manual acknowledgement; a task owns the
//! consumer and applies settlements (ack, reject → dead-letter, nack+requeue → redeliver). Addresses map to
//! exchanges, routing keys and queues as [`super::address`] documents. Bodies are bytes: a message published
//! over AMQP 1.0 with a string body arrives here AMQP-encoded, and is decoded back to its text.
//!
//! `amqps091://` URLs connect with TLS through lapin's connector hook: signbus opens the TCP stream and wraps it
//! with rustls using the same [`crate::tls::client_config`] as AMQP 1.0 (CA bundle, client certificate), so a
//! TLS URL is never spoken to in plaintext.

use super::address::Address;
use super::broker_url::{without_091, BrokerUrl};
use super::delivery::{spawn_consumer, ConsumerLink, LinkEvent};
use super::failover;
use super::{
    BrokerConfig, IncomingMessage, OutgoingMessage, Settlement, Subscription, Transport,
    TransportError,
};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::Confirmation;
use lapin::{AsyncTcpStream, BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Map, Value};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A live AMQP 0-9-1 connection with a confirm-mode publishing channel.
pub struct Amqp091 {
    connection: Connection,
    publisher: Channel,
    publish_timeout: Duration,
    url: String,
}

/// The lapin URI for a signbus broker URL: `amqp091://` / `amqps091://` become `amqp://` / `amqps://`, and the
/// default vhost is filled in.
pub fn lapin_uri(url: &str, cfg: &BrokerConfig) -> String {
    let mut uri = without_091(url);
    if let (Ok(mut u), Some(user)) = (url::Url::parse(&uri), cfg.username.as_deref()) {
        if u.username().is_empty() && cfg.sasl == super::Sasl::Plain {
            let _ = u.set_username(user);
            let _ = u.set_password(cfg.password.as_deref());
            uri = u.to_string();
        }
    }
    uri
}

/// How long one broker gets for TCP, TLS, the AMQP handshake and the publishing channel.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens an AMQP 0-9-1 connection to `url`: plain TCP for `amqp091://`, TLS with [`crate::tls::client_config`]
/// for `amqps091://` (never plaintext). Both go through lapin's own connection machinery (heartbeats, confirms).
async fn open(url: &str, cfg: &BrokerConfig, container_id: &str) -> Result<Connection, String> {
    let props = ConnectionProperties::default().with_connection_name(container_id.into());
    let mut uri: AMQPUri = lapin_uri(url, cfg)
        .parse()
        .map_err(|e| format!("invalid broker URL: {e}"))?;
    // Heartbeats: the broker and we each send one every heartbeat/2; lapin drops the connection after twice the
    // heartbeat without hearing from the broker.
    uri.query.heartbeat = Some(cfg.heartbeat_secs);
    let named_user = BrokerUrl::parse(url).is_ok_and(|u| u.credentials.is_some());
    if cfg.sasl == super::Sasl::External && !named_user {
        if uri.scheme != AMQPScheme::AMQPS || cfg.tls.cert_key.is_none() {
            return Err(
                "SASL EXTERNAL needs TLS with a client certificate (amqps091:// and \
                        tls.cert_key / messaging_cert_key)"
                    .into(),
            );
        }
        uri.query.auth_mechanism = Some(lapin::uri::SASLMechanism::External);
    }
    if uri.scheme != AMQPScheme::AMQPS {
        return Connection::connect_uri(uri, props)
            .await
            .map_err(|e| e.to_string());
    }
    let host = uri.authority.host.clone();
    let connector = tcp_stream::RustlsConnector::from(
        crate::tls::client_config(&cfg.tls).map_err(|e| e.to_string())?,
    );
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    // lapin calls this on its I/O thread (inside the tokio runtime) and drives whatever stream it returns.
    let connect = async move |uri: AMQPUri, runtime| {
        let (host, port) = (uri.authority.host.as_str(), uri.authority.port);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("resolve {host}:{port}: {e}")))?
            .collect();
        let tcp = AsyncTcpStream::connect(&runtime, addrs)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TCP connect {host}:{port}: {e}")))?;
        let handshake = tokio::time::timeout(CONNECT_TIMEOUT, tcp.into_rustls(&connector, host));
        let tls = handshake
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake with {host} timed out after {CONNECT_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| io::Error::other(crate::tls::handshake_error(host, &e)))?;
        Ok::<_, lapin::Error>(tls)
    };
    Connection::connector(uri, runtime, connect, props)
        .await
        .map_err(|e| describe_tls_failure(&host, &e))
}

/// A lapin error on a TLS connection, in words: our own [`crate::tls::TlsError`] as it is, a TLS alert the broker
/// sent after the handshake as a refusal, anything else as lapin says it.
fn describe_tls_failure(host: &str, e: &lapin::Error) -> String {
    if let lapin::ErrorKind::IOError(io) = e.kind() {
        if let Some(ours) = io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<crate::tls::TlsError>())
        {
            return ours.to_string();
        }
        if let Some(refused) = crate::tls::refusal(host, io) {
            return refused.to_string();
        }
    }
    e.to_string()
}

impl Amqp091 {
    /// Connects to the first URL in `cfg.urls` that accepts a connection and a confirm-mode channel.
    pub async fn connect(cfg: &BrokerConfig, container_id: &str) -> Result<Self, TransportError> {
        let walk =
            failover::first_reachable(&cfg.urls, "AMQP 0-9-1", CONNECT_TIMEOUT, |url| async move {
                let connection = open(url, cfg, container_id).await?;
                let publisher = connection
                    .create_channel()
                    .await
                    .map_err(|e| e.to_string())?;
                publisher
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((connection, publisher))
            });
        let ((connection, publisher), url) = walk.await?;
        Ok(Amqp091 {
            connection,
            publisher,
            publish_timeout: Duration::from_secs(cfg.publish_timeout_secs.max(1)),
            url,
        })
    }

    /// The (redacted) URL this connection reached.
    pub(crate) fn round_trip_timeout(&self) -> Duration {
        self.publish_timeout
    }

    /// The (redacted) URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Declares the request queue (durable), its dead-letter exchange and queue when asked, and its bindings.
    pub async fn declare(&self, t: &super::Topology) -> Result<(), TransportError> {
        let fail = |e: lapin::Error| TransportError::Attach {
            address: t.queue.clone(),
            reason: e.to_string(),
        };
        let ch = self.connection.create_channel().await.map_err(fail)?;
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
}

fn bad_address(e: super::address::AddressError) -> TransportError {
    TransportError::BadUrl {
        url: e.0.clone(),
        reason: e.to_string(),
    }
}

impl Transport for Amqp091 {
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
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
            .with_headers(to_headers(&msg.properties))
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
            let pending = self
                .publisher
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
        let confirmation = tokio::time::timeout(self.publish_timeout, confirm)
            .await
            .map_err(|_| TransportError::Timeout {
                address: address.clone(),
                timeout: self.publish_timeout,
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

    async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        let attach = |e: lapin::Error| TransportError::Attach {
            address: address.to_owned(),
            reason: e.to_string(),
        };
        let channel = self.connection.create_channel().await.map_err(attach)?;
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
        ))
    }

    async fn close(&self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
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
            Some(Ok(d)) => LinkEvent::Message(from_delivery(&d), d.acker.clone()),
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

fn to_headers(props: &Map<String, Value>) -> FieldTable {
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

fn from_delivery(d: &lapin::message::Delivery) -> IncomingMessage {
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

/// The 0-9-1 `type` RabbitMQ uses for payloads that are AMQP 1.0 encoded sections.
const AMQP10_TYPE: &str = "amqp-1.0";

/// `text` as an AMQP 1.0 `amqp-value` section holding a string.
pub fn encode_amqp1_string(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 8);
    out.extend_from_slice(&[0x00, 0x53, 0x77]);
    match u8::try_from(b.len()) {
        Ok(n) => out.extend_from_slice(&[0xa1, n]),
        Err(_) => {
            out.push(0xb1);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(b);
    out
}

/// A message that was published over AMQP 1.0 reaches a 0-9-1 consumer with its body sections AMQP-encoded.
/// Returns the text or bytes of an `amqp-value` string/binary section or of `data` sections; `None` when the
/// payload is not AMQP-encoded (a JSON document never starts with a zero byte).
pub fn decode_amqp1_body(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut rest = bytes;
    let mut out = Vec::new();
    let mut any = false;
    while !rest.is_empty() {
        // Described section: 0x00 0x53 <descriptor code>.
        let [0x00, 0x53, code, ctor, tail @ ..] = rest else {
            return None;
        };
        let (len, body) = match ctor {
            0xa0 | 0xa1 => (*tail.first()? as usize, tail.get(1..)?),
            0xb0 | 0xb1 => (
                u32::from_be_bytes(tail.get(..4)?.try_into().ok()?) as usize,
                tail.get(4..)?,
            ),
            _ => return None,
        };
        match code {
            0x75 | 0x77 => out.extend_from_slice(body.get(..len)?),
            _ => return None,
        }
        any = true;
        rest = &body[len..];
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_amqp1_string_and_data_bodies() {
        let mut v = vec![0x00, 0x53, 0x77, 0xa1, 4];
        v.extend_from_slice(b"{\"a\"");
        assert_eq!(decode_amqp1_body(&v).unwrap(), b"{\"a\"");
        let mut d = vec![0x00, 0x53, 0x75, 0xb0, 0, 0, 0, 2];
        d.extend_from_slice(b"{}");
        assert_eq!(decode_amqp1_body(&d).unwrap(), b"{}");
        assert!(decode_amqp1_body(b"{\"plain\": true}").is_none());
        assert!(
            decode_amqp1_body(&[0x00, 0x53, 0x77, 0xa1, 9, b'x']).is_none(),
            "truncated"
        );
    }

    #[test]
    fn encodes_what_it_decodes() {
        for len in [0, 5, 255, 256, 70_000] {
            let text = "x".repeat(len);
            assert_eq!(
                decode_amqp1_body(&encode_amqp1_string(&text)).unwrap(),
                text.as_bytes()
            );
        }
    }

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
