//! AMQP 1.0 transport on fe2o3-amqp.
//!
//! One TCP connection (TCP_NODELAY: without it every settled message waits for the peer's delayed ACK), one
//! session, one anonymous-terminus sender (each message carries its address in `to`, as pubtools-sign sends),
//! and one receiver link per subscription with explicit settlement and automatic credit. A task per receiver
//! owns the link; deliveries settle through it. Knows nothing of what the bodies mean.

mod sasl;

use super::broker_url::{bad_url, BrokerUrl, Scheme};
use super::delivery::{spawn_consumer, ConsumerLink, LinkEvent};
use super::failover;
use super::{
    BrokerConfig, IncomingMessage, OutgoingMessage, Sasl, Settlement, Subscription, Transport,
    TransportError,
};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::RecvError;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorFrame};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Header, Message, Outcome, Properties, Target,
};
use fe2o3_amqp::types::primitives::{
    Binary, OrderedMap, SimpleValue, Timestamp, Value as AmqpValue,
};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Mutex};

/// How long each step of connecting (TCP, TLS, SASL EXTERNAL, AMQP open, session and senders) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one broker of the failover list gets: the sum of the steps' own limits, so a slow step's own
/// error (which names the step) comes first.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(5 * 10);

/// Anonymous senders per connection. Each carries one unsettled message at a time (a non-batchable transfer:
/// RabbitMQ delays the outcome of `batchable` transfers), so this many publishes are in flight at once.
const SENDERS: usize = 8;

/// The fe2o3 objects of one connection; lives on the connection's I/O thread.
struct Engine {
    link: Mutex<Links>,
    senders: Vec<Mutex<Sender>>,
    next_sender: std::sync::atomic::AtomicUsize,
    publish_timeout: Duration,
    url: String,
}

struct Links {
    connection: ConnectionHandle<()>,
    /// Session for the anonymous senders.
    session: SessionHandle<()>,
    /// Sessions for receivers, one per subscription: a receiver's incoming transfers never share a session
    /// with outgoing publishes (fe2o3 0.14 was seen to stall a publish when both shared one session).
    receiver_sessions: Vec<SessionHandle<()>>,
    next_link: u64,
}

/// Opens an AMQP connection (SASL as `profile` says) over an established stream, within the connect timeout.
/// `heartbeat_secs` > 0 sets the idle time-out: we advertise half of twice the heartbeat (the broker must send
/// something at least every heartbeat) and drop the connection after twice the heartbeat of silence.
async fn open<Io>(
    container_id: &str,
    host: &str,
    profile: Option<SaslProfile>,
    heartbeat_secs: u16,
    stream: Io,
) -> Result<ConnectionHandle<()>, String>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let mut builder = Connection::builder()
        .container_id(container_id)
        .hostname(host);
    if heartbeat_secs > 0 {
        builder = builder.idle_time_out(u32::from(heartbeat_secs) * 2000);
    }
    let opening = async {
        match profile {
            Some(p) => builder.sasl_profile(p).open_with_stream(stream).await,
            None => builder.open_with_stream(stream).await,
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, opening)
        .await
        .map_err(|_| format!("AMQP open timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| match &e {
            // With TLS 1.3 a broker refuses our client certificate only after the handshake: the first read fails.
            fe2o3_amqp::connection::OpenError::Io(io) => match crate::tls::refusal(host, io) {
                Some(refused) => refused.to_string(),
                None => format!("AMQP open: {e}"),
            },
            _ => format!("AMQP open: {e}"),
        })
}

impl Engine {
    /// Connects to the first URL in `cfg.urls` that accepts a connection, session and anonymous senders.
    pub async fn connect(cfg: &BrokerConfig, container_id: &str) -> Result<Self, TransportError> {
        let walk =
            failover::first_reachable(&cfg.urls, "AMQP 1.0", ATTEMPT_LIMIT, |url| async move {
                let parsed = BrokerUrl::parse(url)?;
                if parsed.scheme.names_amqp091() {
                    return Err(bad_url(url, "scheme must be amqp or amqps").into());
                }
                Ok(Self::connect_one(cfg, &parsed, container_id).await?)
            });
        let (mut engine, url) = walk.await?;
        engine.url = url;
        Ok(engine)
    }

    async fn connect_one(
        cfg: &BrokerConfig,
        url: &BrokerUrl,
        container_id: &str,
    ) -> Result<Self, String> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| format!("TCP connect timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("TCP connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let profile = match (&url.credentials, &cfg.sasl) {
            (Some((u, p)), _) => Some(SaslProfile::Plain {
                username: u.clone(),
                password: p.clone(),
            }),
            (None, Sasl::Plain) => Some(SaslProfile::Plain {
                username: cfg.username.clone().unwrap_or_default(),
                password: cfg.password.clone().unwrap_or_default(),
            }),
            (None, Sasl::Anonymous) => Some(SaslProfile::Anonymous),
            (None, Sasl::None | Sasl::External) => None,
        };
        let external = cfg.sasl == Sasl::External && url.credentials.is_none();
        if external && (url.scheme != Scheme::Amqps || cfg.tls.cert_key.is_none()) {
            return Err(
                "SASL EXTERNAL needs TLS with a client certificate (amqps:// and tls.cert_key / \
                 messaging_cert_key)"
                    .into(),
            );
        }
        let mut connection = if url.scheme == Scheme::Amqps {
            let connector = crate::tls::connector(&cfg.tls).map_err(|e| e.to_string())?;
            let name = crate::tls::server_name(&url.host).map_err(|e| e.to_string())?;
            let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
                .await
                .map_err(|_| format!("TLS handshake timed out after {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| crate::tls::handshake_error(&url.host, &e).to_string())?;
            if external {
                let sasl = sasl::external(&mut tls, &url.host);
                tokio::time::timeout(CONNECT_TIMEOUT, sasl)
                    .await
                    .map_err(|_| format!("SASL EXTERNAL timed out after {CONNECT_TIMEOUT:?}"))??;
            }
            open(container_id, &url.host, profile, cfg.heartbeat_secs, tls).await?
        } else {
            open(container_id, &url.host, profile, cfg.heartbeat_secs, stream).await?
        };
        // The session and the anonymous senders, bounded like the rest of connecting.
        let links = async {
            let mut session = Session::begin(&mut connection)
                .await
                .map_err(|e| format!("AMQP begin session: {e}"))?;
            let mut senders = Vec::with_capacity(SENDERS);
            for n in 0..SENDERS {
                let sender = Sender::builder()
                    .name(format!("{container_id}-sender-{n}"))
                    .target(Target::builder().build())
                    .attach(&mut session)
                    .await
                    .map_err(|e| format!("attach anonymous sender: {e}"))?;
                senders.push(Mutex::new(sender));
            }
            Ok::<_, String>((session, senders))
        };
        let (session, senders) = tokio::time::timeout(CONNECT_TIMEOUT, links)
            .await
            .map_err(|_| {
                format!("AMQP session and senders not attached within {CONNECT_TIMEOUT:?}")
            })??;
        Ok(Engine {
            link: Mutex::new(Links {
                connection,
                session,
                receiver_sessions: Vec::new(),
                next_link: 0,
            }),
            senders,
            next_sender: std::sync::atomic::AtomicUsize::new(0),
            publish_timeout: Duration::from_secs(cfg.publish_timeout_secs.max(1)),
            url: String::new(),
        })
    }
}

impl Engine {
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let address = msg.address.clone();
        let message = to_amqp(msg);
        let start = self
            .next_sender
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Take the first idle sender, starting round-robin; wait on the round-robin one if all are busy.
        let mut sender =
            match (0..SENDERS).find_map(|i| self.senders[(start + i) % SENDERS].try_lock().ok()) {
                Some(s) => s,
                None => self.senders[start % SENDERS].lock().await,
            };
        // Unconstrained: the send must not yield between handing the transfer to the session and recording
        // it as unsettled (see `Amqp1`). A broker that ends the session instead of settling (RabbitMQ does for
        // a user-id that is not the connection's user) leaves the send waiting forever: watch for that.
        let ended = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if self.link.lock().await.session.is_ended() {
                    return;
                }
            }
        };
        let send = async {
            tokio::select! {
                biased;
                r = tokio::task::unconstrained(sender.send(message)) => {
                    r.map_err(|e| TransportError::Lost(e.to_string()))
                }
                () = ended => Err(TransportError::Lost(
                    "the broker ended the publishing session instead of settling the message (see the broker \
                     log: e.g. a user-id that is not the connection's user)"
                        .into(),
                )),
            }
        };
        let outcome = tokio::time::timeout(self.publish_timeout, send)
            .await
            .map_err(|_| TransportError::Timeout {
                address: address.clone(),
                timeout: self.publish_timeout,
            })??;
        drop(sender);
        match outcome {
            Outcome::Accepted(_) => Ok(()),
            Outcome::Released(_) => Err(TransportError::Unroutable { address }),
            Outcome::Modified(_) => Err(TransportError::Unroutable { address }),
            Outcome::Rejected(r) => Err(TransportError::Rejected {
                address,
                reason: r
                    .error
                    .map(|e| format!("{:?}: {}", e.condition, e.description.unwrap_or_default()))
                    .unwrap_or_else(|| "no reason given".into()),
            }),
            #[allow(unreachable_patterns)]
            _ => Err(TransportError::Rejected {
                address,
                reason: "unexpected outcome".into(),
            }),
        }
    }

    async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        let receiver = {
            let mut links = self.link.lock().await;
            links.next_link += 1;
            let name = format!(
                "signbus-receiver-{}-{}",
                std::process::id(),
                links.next_link
            );
            let mut session = Session::begin(&mut links.connection)
                .await
                .map_err(|e| TransportError::Lost(format!("begin receiver session: {e}")))?;
            let receiver = Receiver::builder()
                .name(name)
                .source(address)
                .credit_mode(CreditMode::Auto(prefetch.max(1)))
                .auto_accept(false)
                .attach(&mut session)
                .await
                .map_err(|e| TransportError::Attach {
                    address: address.to_owned(),
                    reason: e.to_string(),
                })?;
            links.receiver_sessions.push(session);
            receiver
        };
        Ok(spawn_consumer(ReceiverLink { receiver }, address))
    }

    async fn close(&self) {
        let mut links = self.link.lock().await;
        for s in links.receiver_sessions.iter_mut() {
            let _ = s.end().await;
        }
        let _ = links.session.end().await;
        let _ = links.connection.close().await;
    }
}

/// A live AMQP 1.0 connection, driven by its own I/O thread.
///
/// fe2o3-amqp 0.14 hands a transfer to its session before it records the delivery as unsettled, so a broker
/// that settles fast enough (loopback, TCP_NODELAY, a busy machine) has its disposition dropped and the
/// publish never completes. Every fe2o3 task of a connection therefore runs on one current-thread runtime, and
/// each send is polled unconstrained: nothing else on that thread runs between the transfer leaving and its
/// entry being recorded. Closing (or dropping) the connection ends its subscriptions.
pub struct Amqp1 {
    commands: mpsc::UnboundedSender<Command>,
    url: String,
    round_trip: Duration,
}

enum Command {
    Publish(OutgoingMessage, oneshot::Sender<Result<(), TransportError>>),
    Subscribe(
        String,
        u32,
        oneshot::Sender<Result<Subscription, TransportError>>,
    ),
    Close(oneshot::Sender<()>),
}

fn io_thread_gone() -> TransportError {
    TransportError::Lost("the connection's I/O thread has stopped".into())
}

impl Amqp1 {
    /// Connects to the first URL in `cfg.urls` that accepts a connection, session and anonymous senders.
    pub async fn connect(cfg: &BrokerConfig, container_id: &str) -> Result<Self, TransportError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (commands, mut rx) = mpsc::unbounded_channel::<Command>();
        let round_trip = Duration::from_secs(cfg.publish_timeout_secs.max(1));
        let cfg = cfg.clone();
        let id = container_id.to_owned();
        std::thread::Builder::new()
            .name("signbus-amqp1".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(TransportError::Lost(format!("I/O runtime: {e}"))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let engine = match Engine::connect(&cfg, &id).await {
                        Ok(e) => std::sync::Arc::new(e),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(engine.url.clone()));
                    while let Some(cmd) = rx.recv().await {
                        let engine = engine.clone();
                        match cmd {
                            Command::Publish(m, done) => {
                                tokio::spawn(async move {
                                    let _ = done.send(engine.publish(m).await);
                                });
                            }
                            Command::Subscribe(address, prefetch, done) => {
                                tokio::spawn(async move {
                                    let _ = done.send(engine.subscribe(&address, prefetch).await);
                                });
                            }
                            Command::Close(done) => {
                                engine.close().await;
                                let _ = done.send(());
                                return;
                            }
                        }
                    }
                    engine.close().await;
                });
            })
            .map_err(|e| TransportError::Lost(format!("spawn I/O thread: {e}")))?;
        let url = ready_rx.await.map_err(|_| io_thread_gone())??;
        Ok(Amqp1 {
            commands,
            url,
            round_trip,
        })
    }

    /// How long one broker round trip may take (`broker.publish_timeout_secs`).
    pub(crate) fn round_trip_timeout(&self) -> Duration {
        self.round_trip
    }

    /// The (redacted) URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Transport for Amqp1 {
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Publish(msg, done))
            .map_err(|_| io_thread_gone())?;
        wait.await.map_err(|_| io_thread_gone())?
    }

    async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(address.to_owned(), prefetch, done))
            .map_err(|_| io_thread_gone())?;
        wait.await.map_err(|_| io_thread_gone())?
    }

    async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// An fe2o3 receiver as a [`ConsumerLink`].
struct ReceiverLink {
    receiver: Receiver,
}

impl ConsumerLink for ReceiverLink {
    type Handle = DeliveryInfo;

    async fn recv(&mut self) -> LinkEvent<DeliveryInfo> {
        match self.receiver.recv::<Body<AmqpValue>>().await {
            Ok(d) => {
                let (info, message) = d.into_parts();
                LinkEvent::Message(from_amqp(message), info)
            }
            Err(RecvError::MessageDecode(e)) => {
                // A message fe2o3 cannot decode: settle it as rejected so it is dead-lettered, not redelivered
                // forever, and keep the link.
                tracing::warn!(error = %e.source, "rejecting an undecodable AMQP message");
                let reason = format!("undecodable AMQP message: {}", e.source);
                let err = AmqpErrorFrame::new(AmqpError::DecodeError, Some(reason), None);
                let _ = self.receiver.reject(e.info, err).await;
                LinkEvent::Skip
            }
            Err(e) => LinkEvent::Ended(e.to_string()),
        }
    }

    async fn settle(&mut self, info: DeliveryInfo, s: &Settlement) -> Result<(), TransportError> {
        dispose(&self.receiver, info, s).await
    }

    async fn stop_flow(&mut self) {
        self.receiver.set_credit_mode(CreditMode::Manual);
        let _ = self.receiver.set_credit(0).await;
    }

    async fn close(self) {
        let _ = self.receiver.close().await;
    }
}

async fn dispose(
    receiver: &Receiver,
    info: DeliveryInfo,
    s: &Settlement,
) -> Result<(), TransportError> {
    let r = match s {
        Settlement::Accept => receiver.accept(info).await,
        Settlement::Release => receiver.release(info).await,
        Settlement::Reject { reason } => {
            let err =
                AmqpErrorFrame::new(AmqpError::DecodeError, Some(truncate(reason, 1000)), None);
            receiver.reject(info, err).await
        }
    };
    r.map_err(|e| TransportError::Lost(e.to_string()))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn to_amqp(msg: OutgoingMessage) -> Message<fe2o3_amqp::types::messaging::AmqpValue<String>> {
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

fn from_amqp(message: Message<Body<AmqpValue>>) -> IncomingMessage {
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
