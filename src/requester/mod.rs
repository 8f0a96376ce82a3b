//! The requester: build signing requests, publish them, wait for and correlate the replies.
//!
//! A drop-in for pubtools-sign 1.0.6's messaging signer. [`prepare_container`] turns references, digests and
//! keys into request messages exactly as pubtools-sign lays them out (one per reference × key);
//! [`send_and_receive`] attaches the reply receiver before sending, correlates by `message_id_key`, ignores
//! strays and duplicates, and retries with pubtools-sign's meaning of `timeout`, `retries` and `send_retries`.
//! [`output`] prints what pubtools-sign prints. Nothing here knows about gpg.

pub mod config;
pub mod cosign;
pub mod cosign_config;
pub mod output;
pub mod prepare;
pub mod received;

pub use prepare::{
    prepare_batch, prepare_blob, prepare_clearsign, prepare_container, Common, ContainerSignInput,
};

use crate::backoff::Backoff;
use crate::transport::{Connect, OutgoingMessage, Settlement, Transport, TransportError};
use crate::wire::Schema;
pub use config::{MsgSignerConfig, RequesterConfig};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A request ready to publish.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// `body[message_id_key]`.
    pub id: String,
    /// The JSON body.
    pub body: Map<String, Value>,
    /// Application properties.
    pub properties: Map<String, Value>,
    /// Destination.
    pub address: String,
}

/// Input the requester refuses before sending anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `--digest` and `--reference` counts differ.
    #[error("{digests} --digest values but {references} --reference values: they must pair up")]
    Unpaired { digests: usize, references: usize },
    /// `--signing-key-name` given but not one per key.
    #[error("{names} --signing-key-name values for {keys} --signing-key values")]
    UnpairedNames { names: usize, keys: usize },
    /// An input is invalid (bad reference, bad digest, ...).
    #[error("{0}")]
    Invalid(String),
    /// A placeholder in an address cannot be filled.
    #[error("address template {template:?}: {reason}")]
    Template { template: String, reason: String },
}

/// pubtools-sign's `isodate_now()`: UTC, microseconds, `Z`.
pub fn isodate_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    now.format(&f).expect("formatting a UTC time cannot fail")
}

/// Fills `{name}` placeholders (Python `str.format` style, `{{`/`}}` escapes) from `vars`.
pub fn format_address(
    template: &str,
    vars: &HashMap<&str, String>,
) -> Result<String, RequestError> {
    let err = |reason: String| RequestError::Template {
        template: template.to_owned(),
        reason,
    };
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let v = vars
                    .get(name.as_str())
                    .ok_or_else(|| err(format!("unknown placeholder {{{name}}}")))?;
                out.push_str(v);
            }
            '}' => return Err(err("single '}'".into())),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The variables pubtools-sign offers to address templates (signer and operation fields).
pub fn template_vars<'a>(
    cfg: &MsgSignerConfig,
    creator: &str,
    task_id: &str,
    requester: Option<&str>,
) -> HashMap<&'a str, String> {
    HashMap::from([
        ("creator", creator.to_owned()),
        ("task_id", task_id.to_owned()),
        ("requester", requester.unwrap_or("").to_owned()),
        ("environment", cfg.environment.clone()),
        ("service", cfg.service.clone()),
        ("topic_send_to", cfg.topic_send_to.clone()),
        ("topic_listen_to", cfg.topic_listen_to.clone()),
        ("message_id_key", cfg.message_id_key.clone()),
        ("task_id_attribute", cfg.task_id_attribute().to_owned()),
    ])
}

/// Replies collected for one run, by request id.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Request id → (reply document, reply properties).
    pub replies: HashMap<String, (Value, Map<String, Value>)>,
    /// A failure of the run as a whole (send failure, timeout), pubtools-sign style `Name : description`.
    pub error: Option<String>,
}

impl Exchange {
    /// Ids of `requests` that got no reply.
    pub fn missing<'a>(&self, requests: &'a [PreparedRequest]) -> Vec<&'a str> {
        requests
            .iter()
            .filter(|r| !self.replies.contains_key(&r.id))
            .map(|r| r.id.as_str())
            .collect()
    }
}

/// Retry settings, in pubtools-sign's meaning.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Silence after which a receive round ends.
    pub timeout: Duration,
    /// Receive rounds per send cycle.
    pub retries: u32,
    /// Send cycles.
    pub send_retries: u32,
}

impl Retry {
    /// From a config section.
    pub fn from_config(cfg: &MsgSignerConfig) -> Self {
        Retry {
            timeout: Duration::from_secs(cfg.timeout),
            retries: cfg.retries,
            send_retries: cfg.send_retries,
        }
    }
}

/// Hears how a run is going, e.g. to draw a progress bar. The library draws nothing itself; every method has a
/// no-op default.
pub trait Progress: Send + Sync {
    /// The broker accepted one request.
    fn sent(&self) {}
    /// An expected reply arrived; `ok` when it carries no errors.
    fn replied(&self, _ok: bool) {}
    /// The run is over (all answered, or given up).
    fn finished(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Publishes `requests` and collects their replies from `listen_to`, over connections `connect` opens.
///
/// Per send cycle (up to `send_retries`): attach the receiver, publish every request still unanswered, then
/// run up to `retries` receive rounds, each ending after `timeout` without a new expected reply. Replies are
/// matched by `msg[id_key]`; unknown ids and duplicates are accepted off the queue and ignored, so every request
/// has at most one reply in the result. When the connection is lost (broker restart, network), it reconnects
/// with backoff and resends every request not yet answered — the server answers a repeated request with the
/// reply it already made — without spending a send cycle; it gives up when no connection can be made within
/// `timeout × retries`, or after [`MAX_RECONNECTS`] losses.
pub async fn send_and_receive<C: Connect>(
    connect: &C,
    requests: &[PreparedRequest],
    listen_to: &str,
    id_key: &str,
    retry: Retry,
) -> Exchange {
    send_and_receive_with_progress(connect, requests, listen_to, id_key, retry, &NoProgress).await
}

/// [`send_and_receive`], telling `progress` about each send and reply.
pub async fn send_and_receive_with_progress<C: Connect>(
    connect: &C,
    requests: &[PreparedRequest],
    listen_to: &str,
    id_key: &str,
    retry: Retry,
    progress: &dyn Progress,
) -> Exchange {
    let mut run = Run {
        requests,
        listen_to,
        id_key,
        retry,
        progress,
        user_id: connect.user_id(),
        ex: Exchange::default(),
        sent: HashSet::new(),
    };
    run.exchange(connect).await;
    progress.finished();
    run.ex
}

/// Connection losses a run survives before it gives up.
pub const MAX_RECONNECTS: u32 = 20;

/// How one send cycle on one connection ended.
enum CycleEnd {
    /// Every request of the run has its reply.
    Done,
    /// Some replies did not come within the receive rounds.
    TimedOut,
    /// The connection or a link broke: reconnect and resend.
    Lost(String),
    /// Something retrying cannot fix; the run ends with this error.
    Failed(String),
}

/// The state of one run of [`send_and_receive`].
struct Run<'a> {
    requests: &'a [PreparedRequest],
    listen_to: &'a str,
    id_key: &'a str,
    retry: Retry,
    progress: &'a dyn Progress,
    user_id: Option<String>,
    ex: Exchange,
    /// Ids published at least once (for progress: a resend is not a new request).
    sent: HashSet<&'a str>,
}

impl<'a> Run<'a> {
    async fn exchange<C: Connect>(&mut self, connect: &C) {
        let mut cycle = 0;
        let mut losses = 0;
        let mut conn: Option<C::Conn> = None;
        while cycle < self.retry.send_retries.max(1) {
            if self.ex.missing(self.requests).is_empty() {
                break;
            }
            let transport = match conn.take() {
                Some(t) => t,
                None => match self.reconnect(connect, losses).await {
                    Ok(t) => t,
                    Err(e) => {
                        self.ex.error = Some(e);
                        return;
                    }
                },
            };
            let end = self.cycle(&transport, cycle).await;
            match end {
                CycleEnd::Done => {
                    self.ex.error = None;
                    conn = Some(transport);
                    break;
                }
                CycleEnd::TimedOut => {
                    self.ex.error = Some(format!(
                        "MessagingTimeout : Out of time when receiving messages ({}/{})",
                        self.requests.len() - self.ex.missing(self.requests).len(),
                        self.requests.len()
                    ));
                    conn = Some(transport);
                    cycle += 1;
                }
                CycleEnd::Lost(reason) => {
                    losses += 1;
                    tracing::warn!(%reason, losses, "connection to the broker lost; reconnecting to resend what is unanswered");
                    transport.close().await;
                    if losses > MAX_RECONNECTS {
                        self.ex.error = Some(format!(
                            "MessagingError : connection lost {losses} times, giving up: {reason}"
                        ));
                        return;
                    }
                }
                CycleEnd::Failed(e) => {
                    self.ex.error = Some(e);
                    transport.close().await;
                    return;
                }
            }
        }
        if let Some(t) = conn {
            t.close().await;
        }
    }

    /// Connects, retrying with backoff for up to `timeout × retries` (immediately the first time).
    async fn reconnect<C: Connect>(&self, connect: &C, losses: u32) -> Result<C::Conn, String> {
        let budget = self.retry.timeout * self.retry.retries.max(1);
        let started = Instant::now();
        let mut wait = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            match connect.connect().await {
                Ok(t) => {
                    if losses > 0 {
                        tracing::info!(losses, "reconnected to the broker");
                    }
                    return Ok(t);
                }
                Err(e)
                    if e.is_permanent()
                        || losses == 0
                        || started.elapsed() + wait.peek() > budget =>
                {
                    return Err(format!("MessagingError : {e}"));
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait.peek(), "broker unreachable");
                    tokio::time::sleep(wait.next_delay()).await;
                }
            }
        }
    }

    /// One send cycle on `transport`: listen, publish what is unanswered, receive.
    async fn cycle<T: Transport>(&mut self, transport: &T, cycle: u32) -> CycleEnd {
        let pending: Vec<&'a PreparedRequest> = self
            .requests
            .iter()
            .filter(|r| !self.ex.replies.contains_key(&r.id))
            .collect();
        let mut sub = match transport.subscribe(self.listen_to, 1000).await {
            Ok(s) => s,
            Err(e) if e.is_retryable() => return CycleEnd::Lost(e.to_string()),
            Err(e) => {
                return CycleEnd::Failed(format!("MessagingError : cannot listen for replies: {e}"))
            }
        };
        tracing::info!(cycle, count = pending.len(), "sending requests");
        let ttl = self.retry.timeout * self.retry.retries.max(1);
        let (progress, user_id) = (self.progress, self.user_id.as_deref());
        let sends: Vec<_> = pending
            .iter()
            .map(|r| {
                let first = !self.sent.contains(r.id.as_str());
                async move {
                    let sent = transport
                        .publish(OutgoingMessage {
                            address: r.address.clone(),
                            body: Value::Object(r.body.clone()).to_string(),
                            properties: r.properties.clone(),
                            reply_to: None,
                            ttl: Some(ttl),
                            durable: true,
                            user_id: user_id.map(str::to_owned),
                        })
                        .await;
                    if sent.is_ok() && first {
                        progress.sent();
                    }
                    sent.map(|()| r.id.as_str())
                }
            })
            .collect();
        let mut failure = None;
        for result in futures_join_all(sends.into_iter()).await {
            match result {
                Ok(id) => {
                    self.sent.insert(id);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) if e.is_retryable() => return CycleEnd::Lost(e.to_string()),
            Some(e) => {
                return CycleEnd::Failed(format!("MessagingError : {}", send_error_hint(&e)))
            }
            None => {}
        }
        let mut expected: HashSet<&str> = pending.iter().map(|r| r.id.as_str()).collect();
        for round in 0..self.retry.retries.max(1) {
            let mut last = Instant::now();
            while !expected.is_empty() {
                let left = self.retry.timeout.saturating_sub(last.elapsed());
                let next = match tokio::time::timeout(left, sub.next()).await {
                    Err(_) => break,
                    Ok(None) => return CycleEnd::Lost("reply link closed by the broker".into()),
                    Ok(Some(d)) => d,
                };
                let parsed = crate::wire::decode_object(&next.message().body);
                let props = next.message().properties.clone();
                let _ = next.settle(Settlement::Accept).await;
                if let Some(id) = self.take_reply(parsed, props, &mut expected) {
                    tracing::trace!(%id, "reply");
                    last = Instant::now();
                }
            }
            if expected.is_empty() {
                break;
            }
            tracing::warn!(
                round,
                missing = expected.len(),
                "timed out waiting for replies"
            );
        }
        if self.ex.missing(self.requests).is_empty() {
            CycleEnd::Done
        } else {
            CycleEnd::TimedOut
        }
    }

    /// Records a reply if it answers a request still `expected`; returns its id then. Anything else (not JSON,
    /// no id, a stray, a duplicate) is ignored.
    fn take_reply(
        &mut self,
        parsed: Result<Map<String, Value>, crate::wire::DecodeError>,
        props: Map<String, Value>,
        expected: &mut HashSet<&str>,
    ) -> Option<String> {
        let Ok(doc) = parsed else {
            tracing::warn!("ignoring a reply that is not a JSON object");
            return None;
        };
        let doc = Value::Object(doc);
        let Some(id) = doc
            .get("msg")
            .and_then(|m| m.get(self.id_key))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            tracing::warn!("ignoring a reply without msg.{}", self.id_key);
            return None;
        };
        if !expected.remove(id.as_str()) {
            tracing::debug!(%id, "ignoring stray or duplicate reply");
            return None;
        }
        let doc = match Schema::Reply.validate(&doc) {
            Ok(()) => doc,
            Err(e) => invalid_reply(doc, e.to_string()),
        };
        let ok = doc["msg"]["errors"].as_array().is_some_and(Vec::is_empty);
        self.progress.replied(ok);
        self.ex.replies.insert(id.clone(), (doc, props));
        Some(id)
    }
}

/// Marks a reply that broke the reply schema as failed, keeping what it said.
fn invalid_reply(mut doc: Value, why: String) -> Value {
    if let Some(msg) = doc.get_mut("msg").and_then(Value::as_object_mut) {
        let mut errors = match msg.remove("errors") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        errors.push(Value::String(format!("invalid reply from server: {why}")));
        msg.insert("errors".into(), Value::Array(errors));
    }
    doc
}

fn send_error_hint(e: &TransportError) -> String {
    match e {
        TransportError::Unroutable { .. } => {
            format!("{e}: is the signing server's queue declared and bound?")
        }
        TransportError::Rejected { .. } => format!("{e}: check topic_send_to"),
        _ => e.to_string(),
    }
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    use futures_util::StreamExt;
    // Publishes are pipelined on one link; keep a bounded number awaiting the broker's settlement.
    futures_util::stream::iter(futs)
        .buffered(256)
        .collect()
        .await
}
