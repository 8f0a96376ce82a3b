//! The requester: build signing requests, publish them, wait for and correlate the replies.
//!
//! A drop-in for pubtools-sign 1.0.6's messaging signer. [`prepare_container`] turns references, digests and
//! keys into request messages exactly as pubtools-sign lays them out (one per reference × key);
//! [`send_and_receive`] attaches the reply receiver before sending, correlates by `message_id_key`, ignores
//! strays and duplicates, and retries with pubtools-sign's meaning of `timeout`, `retries` and `send_retries`.
//! [`output`] prints what pubtools-sign prints. Nothing here knows about gpg.

pub mod cert;
pub mod config;
pub mod output;
pub mod prepare;

pub use prepare::{
    prepare_batch, prepare_blob, prepare_clearsign, prepare_container, Common, ContainerSignInput,
};

use crate::transport::{OutgoingMessage, Settlement, Transport, TransportError};
use crate::wire::Schema;
pub use config::{MsgSignerConfig, RequesterConfig};
use serde_json::{Map, Value};
use std::collections::HashMap;
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

/// Publishes `requests` and collects their replies from `listen_to`.
///
/// Per send cycle (up to `send_retries`): attach the receiver, publish every request still unanswered, then
/// run up to `retries` receive rounds, each ending after `timeout` without a new expected reply. Replies are
/// matched by `msg[id_key]`; unknown ids and duplicates are accepted off the queue and ignored.
pub async fn send_and_receive<T: Transport>(
    transport: &T,
    requests: &[PreparedRequest],
    listen_to: &str,
    id_key: &str,
    retry: Retry,
) -> Exchange {
    send_and_receive_with_progress(transport, requests, listen_to, id_key, retry, &NoProgress).await
}

/// [`send_and_receive`], telling `progress` about each send and reply.
pub async fn send_and_receive_with_progress<T: Transport>(
    transport: &T,
    requests: &[PreparedRequest],
    listen_to: &str,
    id_key: &str,
    retry: Retry,
    progress: &dyn Progress,
) -> Exchange {
    let ex = exchange(transport, requests, listen_to, id_key, retry, progress).await;
    progress.finished();
    ex
}

async fn exchange<T: Transport>(
    transport: &T,
    requests: &[PreparedRequest],
    listen_to: &str,
    id_key: &str,
    retry: Retry,
    progress: &dyn Progress,
) -> Exchange {
    let mut ex = Exchange::default();
    let ttl = retry.timeout * retry.retries.max(1);
    for cycle in 0..retry.send_retries.max(1) {
        let pending: Vec<&PreparedRequest> = requests
            .iter()
            .filter(|r| !ex.replies.contains_key(&r.id))
            .collect();
        if pending.is_empty() {
            break;
        }
        let mut sub = match transport.subscribe(listen_to, 1000).await {
            Ok(s) => s,
            Err(e) => {
                ex.error = Some(format!("MessagingError : cannot listen for replies: {e}"));
                return ex;
            }
        };
        tracing::info!(cycle, count = pending.len(), "sending requests");
        let sends = pending.iter().map(|r| async move {
            let sent = transport
                .publish(OutgoingMessage {
                    address: r.address.clone(),
                    body: Value::Object(r.body.clone()).to_string(),
                    properties: r.properties.clone(),
                    reply_to: None,
                    ttl: Some(ttl),
                    durable: false,
                })
                .await;
            if sent.is_ok() {
                progress.sent();
            }
            sent
        });
        let results = futures_join_all(sends).await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            ex.error = Some(format!("MessagingError : {}", send_error_hint(&e)));
            return ex;
        }
        let mut expected: std::collections::HashSet<&str> =
            pending.iter().map(|r| r.id.as_str()).collect();
        for round in 0..retry.retries.max(1) {
            let mut last = Instant::now();
            while !expected.is_empty() {
                let left = retry.timeout.saturating_sub(last.elapsed());
                let next = match tokio::time::timeout(left, sub.next()).await {
                    Err(_) => break,
                    Ok(None) => {
                        ex.error = Some("MessagingError : reply link closed by the broker".into());
                        return ex;
                    }
                    Ok(Some(d)) => d,
                };
                let parsed = crate::wire::decode_object(&next.message().body);
                let props = next.message().properties.clone();
                let _ = next.settle(Settlement::Accept).await;
                let Ok(doc) = parsed else {
                    tracing::warn!("ignoring a reply that is not a JSON object");
                    continue;
                };
                let doc = Value::Object(doc);
                let id = doc
                    .get("msg")
                    .and_then(|m| m.get(id_key))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let Some(id) = id else {
                    tracing::warn!("ignoring a reply without msg.{id_key}");
                    continue;
                };
                if !expected.remove(id.as_str()) {
                    tracing::debug!(%id, "ignoring stray or duplicate reply");
                    continue;
                }
                last = Instant::now();
                let doc = match Schema::Reply.validate(&doc) {
                    Ok(()) => doc,
                    Err(e) => invalid_reply(doc, e.to_string()),
                };
                let ok = doc["msg"]["errors"].as_array().is_some_and(Vec::is_empty);
                progress.replied(ok);
                ex.replies.insert(id, (doc, props));
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
        if expected.is_empty() {
            ex.error = None;
            break;
        }
        ex.error = Some(format!(
            "MessagingTimeout : Out of time when receiving messages ({}/{})",
            requests.len() - ex.missing(requests).len(),
            requests.len()
        ));
    }
    ex
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
