//! One request in, one decision out: validate, sign, and build the reply — or decide to reject.
//!
//! [`Handler::handle`] never fails and never touches the broker: every problem with a request that can be
//! answered becomes an error reply naming the problem (and no signature) and an [`Outcome`] class for metrics;
//! a message that cannot be answered at all (not JSON, no request id, no reply address) becomes
//! [`Decision::Reject`] with a [`RejectReason`] for the broker to dead-letter. It opens the request's tracing
//! span (request id, type, key, requester, trace id) and continues the request's W3C trace context into the
//! reply. After a signer error it marks the signer unusable in [`Health`] and re-tests it in the background.

use super::authorize::{Authorizer, Identity};
use super::health::Health;
use super::recent::{self, RecentReplies, Weigh};
use super::reply_address::reply_address;
use super::trace_context::TraceContext;
use crate::claim::Claim;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::signing::{KeyRing, SignError, SignMode, Signer};
use crate::transport::{IncomingMessage, OutgoingMessage};
use crate::wire::{self, Reply, RequestType, Schema};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// How an answered request ended: signed, or the class of its first error. A bounded set (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every signature was made.
    Signed,
    /// The properties or body break their JSON Schema.
    Schema,
    /// A base64 member (`claim_file`, `data`, `artifact`) does not decode.
    Encoding,
    /// The claim does not parse, or names another digest or repository than the request.
    Claim,
    /// The request names a key this server does not hold, ambiguously, or inconsistently.
    Key,
    /// The signer failed (gpg error, pool shut down), on every attempt.
    Signer,
    /// The request is past its deadline or too old.
    Expired,
    /// The request id was used before for a different request.
    Conflict,
    /// The request body is over the size limit.
    TooLarge,
    /// The requester may not use the key (or not for the repository).
    Forbidden,
    /// The request was delivered too many times without being settled.
    Redelivered,
    /// Clearsign or blob data that would pass for an image signature claim.
    CrossType,
}

impl Outcome {
    /// Every outcome, for documentation and tests that must cover them all.
    pub const ALL: [Outcome; 12] = [
        Outcome::Signed,
        Outcome::Schema,
        Outcome::Encoding,
        Outcome::Claim,
        Outcome::Key,
        Outcome::Signer,
        Outcome::Expired,
        Outcome::Conflict,
        Outcome::TooLarge,
        Outcome::Forbidden,
        Outcome::Redelivered,
        Outcome::CrossType,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Signed => "signed",
            Outcome::Schema => "schema",
            Outcome::Encoding => "encoding",
            Outcome::Claim => "claim",
            Outcome::Key => "key",
            Outcome::Signer => "signer",
            Outcome::Expired => "expired",
            Outcome::Conflict => "conflict",
            Outcome::TooLarge => "too_large",
            Outcome::Forbidden => "forbidden",
            Outcome::Redelivered => "redelivered",
            Outcome::CrossType => "cross_type",
        }
    }
}

/// Why a message is rejected (dead-lettered) instead of answered. A bounded set (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The body is not a JSON object.
    Undecodable,
    /// No `request_id`: a reply could not be correlated.
    NoRequestId,
    /// Neither `reply-to` nor a fillable reply template.
    NoReplyAddress,
    /// Our reply would break the reply schema.
    InvalidReply,
    /// The broker refused or could not route the reply.
    ReplyUndeliverable,
}

impl RejectReason {
    /// Every reason, for documentation and tests that must cover them all.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::Undecodable,
        RejectReason::NoRequestId,
        RejectReason::NoReplyAddress,
        RejectReason::InvalidReply,
        RejectReason::ReplyUndeliverable,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Undecodable => "undecodable",
            RejectReason::NoRequestId => "no_request_id",
            RejectReason::NoReplyAddress => "no_reply_address",
            RejectReason::InvalidReply => "invalid_reply",
            RejectReason::ReplyUndeliverable => "reply_undeliverable",
        }
    }
}

/// What to do with a delivery.
#[derive(Debug)]
pub enum Decision {
    /// Publish this reply, then accept the request once the broker settled the reply.
    Reply {
        /// The reply message.
        message: OutgoingMessage,
        /// Signed, or the class of the error the reply reports.
        outcome: Outcome,
    },
    /// The message cannot be answered; reject it (dead-letter).
    Reject {
        /// For the log and the broker.
        reason: String,
        /// For metrics.
        class: RejectReason,
    },
}

/// A decision with what the server needs to account for it.
#[derive(Debug)]
pub struct Handled {
    /// What to do.
    pub decision: Decision,
    /// Request type label: an `mtype`, or `unknown`.
    pub kind: &'static str,
    /// Configured key label (name, else last 16 hex digits), `multiple` for batches over several keys, or
    /// `unknown`.
    pub key: String,
    /// The request's span; enter it for everything done about this request.
    pub span: tracing::Span,
}

/// The request type label of a message, from its `mtype` property (absent means a container request, as in
/// [`Handler::handle`]); unrecognised values are `unknown`.
pub fn type_label(properties: &Map<String, Value>) -> &'static str {
    RequestType::from_properties(properties).map_or("unknown", RequestType::as_str)
}

/// A failed step: its class and message.
#[derive(Clone)]
struct Failure {
    class: Outcome,
    message: String,
}

impl Failure {
    fn new(class: Outcome, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }
}

/// A decision about a request before it is addressed: what the recent-reply cache keeps.
#[derive(Debug, Clone)]
enum Answer {
    /// Reply with this document.
    Reply { body: Arc<str>, outcome: Outcome },
    /// Reject (dead-letter).
    Reject { reason: String, class: RejectReason },
}

impl Weigh for Answer {
    fn weight(&self) -> usize {
        64 + match self {
            Answer::Reply { body, .. } => body.len(),
            Answer::Reject { reason, .. } => reason.len(),
        }
    }
}

/// Everything a request needs: keys, signer, reply addressing, limits, the recent replies and who may sign.
pub struct Handler<S> {
    signer: Arc<S>,
    keys: KeyRing,
    reply_template: Option<String>,
    task_id_attributes: Vec<String>,
    max_message_bytes: usize,
    max_request_age: Option<Duration>,
    max_deliveries: u32,
    sign_attempts: u32,
    recent: RecentReplies<Answer>,
    authorizer: Authorizer,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Background work the handler started (the signer re-test); aborted when the handler is dropped.
    background: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl<S: Signer> Handler<S> {
    /// A handler signing with `signer` using `keys` under `cfg`'s rules: reply addressing (replies without
    /// `reply-to` go to `server.reply_to`), limits, the recent-reply cache, and authorization. Fails when the
    /// authorization section grants a key that `keys` does not hold (or names ambiguously).
    pub fn new(signer: Arc<S>, keys: KeyRing, cfg: &ServerConfig) -> Result<Self, String> {
        let authorizer = match &cfg.authorization {
            Some(a) => Authorizer::new(a, &keys)?,
            None => Authorizer::allow_all(),
        };
        let s = &cfg.server;
        let cache = &s.reply_cache;
        Ok(Handler {
            signer,
            keys,
            reply_template: s.reply_to.clone(),
            task_id_attributes: s.task_id_attributes.clone(),
            max_message_bytes: s.max_message_bytes,
            max_request_age: s.max_request_age_secs.map(Duration::from_secs),
            max_deliveries: s.max_deliveries,
            sign_attempts: cfg.signing.attempts,
            recent: RecentReplies::new(
                cache.capacity,
                cache.max_bytes,
                Duration::from_secs(cache.ttl_secs),
            ),
            authorizer,
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::new()),
            background: Default::default(),
        })
    }

    /// Records signing times in `metrics` (default: a private registry nobody reads).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reports signer failures and recoveries to `health` (default: private flags nobody reads).
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = health;
        self
    }

    /// Decides what to do with one message from the broker.
    pub async fn handle(&self, msg: &IncomingMessage) -> Handled {
        self.decide(msg, true).await
    }

    /// As [`Handler::handle`], for a message that did not come from a broker (`serve --replay`): a missing
    /// reply address is not a reason to reject (the reply's address is then empty), and deadlines do not apply.
    pub async fn handle_offline(&self, msg: &IncomingMessage) -> Handled {
        self.decide(msg, false).await
    }

    async fn decide(&self, msg: &IncomingMessage, live: bool) -> Handled {
        let kind_label = type_label(&msg.properties);
        let trace = TraceContext::continue_or_start(
            msg.properties.get("traceparent").and_then(Value::as_str),
        );
        // The body stays one JSON value: the schema check reads it as it is, the handlers as a map.
        let doc = match wire::decode_object(&msg.body) {
            Ok(b) => Value::Object(b),
            Err(e) => {
                let nobody = self.authorizer.identify(msg.user_id.as_deref(), None, None);
                let span = request_span(kind_label, "", "unknown", &nobody, &trace);
                return Handled {
                    decision: Decision::Reject {
                        reason: e.to_string(),
                        class: RejectReason::Undecodable,
                    },
                    kind: kind_label,
                    key: "unknown".into(),
                    span,
                };
            }
        };
        let body = doc.as_object().expect("decoded as an object");
        let text = |k: &str| body.get(k).and_then(Value::as_str);
        // An unknown type is checked as a container request; its properties then fail their schema.
        let kind = RequestType::from_properties(&msg.properties).unwrap_or(RequestType::Container);
        let key = self.key_label(kind, body);
        let who = self.authorizer.identify(
            msg.user_id.as_deref(),
            text("requested_by"),
            msg.properties.get("owner_id").and_then(Value::as_str),
        );
        let span = request_span(
            kind_label,
            text("request_id").unwrap_or_default(),
            &key,
            &who,
            &trace,
        );
        let decision = self
            .decide_in_span(msg, &doc, kind, &who, &trace, live)
            .instrument(span.clone())
            .await;
        Handled {
            decision,
            kind: kind_label,
            key,
            span,
        }
    }

    async fn decide_in_span(
        &self,
        msg: &IncomingMessage,
        doc: &Value,
        kind: RequestType,
        who: &Identity,
        trace: &TraceContext,
        live: bool,
    ) -> Decision {
        tracing::debug!(delivery_count = msg.delivery_count, "received");
        let body = doc.as_object().expect("decoded as an object");
        let Some(request_id) = body
            .get("request_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Decision::Reject {
                reason: "request has no request_id: a reply could not be correlated".into(),
                class: RejectReason::NoRequestId,
            };
        };
        let address = match reply_address(
            msg.reply_to.as_deref(),
            self.reply_template.as_deref(),
            body,
            &msg.properties,
            &self.task_id_attributes,
        ) {
            Ok(a) => a,
            Err(e) if live => {
                return Decision::Reject {
                    reason: format!("no reply address: {e}"),
                    class: RejectReason::NoReplyAddress,
                }
            }
            Err(_) => String::new(),
        };
        let mtype = msg.properties.get("mtype").and_then(Value::as_str);
        let fingerprint = recent::fingerprint(mtype.unwrap_or_default(), &msg.body);
        let kept = self
            .recent
            .answer(request_id, fingerprint, || {
                self.answer(msg, doc, kind, who, live)
            })
            .await;
        let answer = match kept {
            Ok(k) => {
                if k.replayed {
                    self.metrics.replayed.inc();
                    tracing::info!(
                        "repeated request: answering with the reply already made for it"
                    );
                }
                k.value
            }
            Err(conflict) => {
                let f = Failure::new(Outcome::Conflict, conflict.to_string());
                finish(body, kind, Map::new(), vec![f.message], f.class)
            }
        };
        match answer {
            Answer::Reject { reason, class } => Decision::Reject { reason, class },
            Answer::Reply { body, outcome } => {
                let mut properties = msg.properties.clone();
                properties.insert(
                    "traceparent".into(),
                    Value::String(trace.reply_traceparent()),
                );
                Decision::Reply {
                    message: OutgoingMessage {
                        address,
                        body: body.to_string(),
                        properties,
                        ..Default::default()
                    },
                    outcome,
                }
            }
        }
    }

    /// Checks, authorises and signs one request. `Ok` is an answer to keep for repeats of the request; `Err` one
    /// that must not be kept (the signer failed: a repeat should try again).
    async fn answer(
        &self,
        msg: &IncomingMessage,
        doc: &Value,
        kind: RequestType,
        who: &Identity,
        live: bool,
    ) -> Result<Answer, Answer> {
        let body = doc.as_object().expect("decoded as an object");
        let refuse = |f: Failure| (Map::new(), vec![f.message], f.class);
        let schema = |e: wire::SchemaError| refuse(Failure::new(Outcome::Schema, e.to_string()));
        let (fields, errors, outcome) = if live && msg.delivery_count >= self.max_deliveries {
            refuse(Failure::new(
                Outcome::Redelivered,
                format!(
                    "request was delivered {} times without being settled (limit {}); not processing it again",
                    msg.delivery_count + 1,
                    self.max_deliveries
                ),
            ))
        } else if msg.body.len() > self.max_message_bytes {
            refuse(Failure::new(
                Outcome::TooLarge,
                format!(
                    "request body is {} bytes; this server accepts at most {} (server.max_message_bytes)",
                    msg.body.len(),
                    self.max_message_bytes
                ),
            ))
        } else if let Err(e) =
            Schema::RequestProperties.validate(&Value::Object(msg.properties.clone()))
        {
            schema(e)
        } else if let Err(e) = Schema::for_request(kind).validate(doc) {
            schema(e)
        } else if let Err(f) = self.check_deadline(msg, body, live) {
            refuse(f)
        } else {
            self.sign_request(kind, body, &msg.properties, who).await
        };
        let answer = finish(body, kind, fields, errors, outcome);
        if outcome == Outcome::Signer {
            Err(answer)
        } else {
            Ok(answer)
        }
    }

    /// Refuses a request past its sender's deadline or older than `server.max_request_age_secs`.
    fn check_deadline(
        &self,
        msg: &IncomingMessage,
        body: &Map<String, Value>,
        live: bool,
    ) -> Result<(), Failure> {
        if !live {
            return Ok(());
        }
        let now = SystemTime::now();
        if let Some(late) = msg.expires_at.and_then(|at| now.duration_since(at).ok()) {
            return Err(Failure::new(
                Outcome::Expired,
                format!(
                    "request expired {:.1}s ago (the deadline its sender set); not signed",
                    late.as_secs_f64()
                ),
            ));
        }
        let (Some(max), Some(created)) = (
            self.max_request_age,
            body.get("created").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        let Some(at) = parse_created(created) else {
            return Err(Failure::new(
                Outcome::Schema,
                format!("created {created:?} is not an ISO-8601 UTC time"),
            ));
        };
        match now.duration_since(at) {
            Ok(age) if age > max => Err(Failure::new(
                Outcome::Expired,
                format!(
                    "request expired: created {}s ago, over this server's limit of {}s \
                     (server.max_request_age_secs); not signed",
                    age.as_secs(),
                    max.as_secs()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The metric label of the key a request names: its configured label, `multiple` when a batch names
    /// several, `unknown` when none resolves.
    fn key_label(&self, kind: RequestType, body: &Map<String, Value>) -> String {
        let label = |id: Option<&str>, name: Option<&str>| {
            self.keys
                .lookup(id, name)
                .map_or("unknown", |k| k.label())
                .to_owned()
        };
        if kind != RequestType::Batch {
            let text = |k: &str| body.get(k).and_then(Value::as_str);
            return label(text("sig_key_id"), text("sig_keyname"));
        }
        let mut labels = std::collections::BTreeSet::new();
        for claim in body
            .get("claims")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let list = |k: &str| claim.get(k).and_then(Value::as_array).cloned();
            let names = list("sig_keynames").unwrap_or_default();
            for (i, id) in list("sig_key_ids").unwrap_or_default().iter().enumerate() {
                labels.insert(label(id.as_str(), names.get(i).and_then(Value::as_str)));
            }
        }
        match labels.len() {
            0 => "unknown".into(),
            1 => labels.pop_first().unwrap_or_default(),
            _ => "multiple".into(),
        }
    }

    /// Signs a schema-valid request for `who`; returns the reply's result members and its errors.
    async fn sign_request(
        &self,
        kind: RequestType,
        body: &Map<String, Value>,
        props: &Map<String, Value>,
        who: &Identity,
    ) -> (Map<String, Value>, Vec<String>, Outcome) {
        let single = |r: Result<String, Failure>| match r {
            Ok(sig) => (
                Map::from_iter([(kind.result_field().to_owned(), Value::String(sig))]),
                Vec::new(),
                Outcome::Signed,
            ),
            Err(f) => (Map::new(), vec![f.message], f.class),
        };
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        let key_name = body.get("sig_keyname").and_then(Value::as_str);
        // An empty repo (pubtools-sign sends "" for blobs) names none.
        let repo = body
            .get("repo")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty());
        let sign =
            |mode, data| self.sign_with(kind, text("sig_key_id"), key_name, mode, data, who, repo);
        match kind {
            RequestType::Container => {
                let digest = text("manifest_digest");
                if let Some(p) = props.get("manifest_digest").and_then(Value::as_str) {
                    if p != digest {
                        return single(Err(Failure::new(
                            Outcome::Claim,
                            format!(
                                "manifest_digest property {p} differs from the body's {digest}"
                            ),
                        )));
                    }
                }
                let claim = match checked_claim(text("claim_file"), digest, text("repo")) {
                    Ok((bytes, _)) => bytes,
                    Err(e) => return single(Err(e)),
                };
                single(sign(SignMode::Normal, claim).await)
            }
            RequestType::ClearSign => match decode("data", text("data")).and_then(not_a_claim) {
                Ok(data) => single(sign(SignMode::Clear, data).await),
                Err(e) => single(Err(e)),
            },
            RequestType::Blob => match decode("artifact", text("artifact")).and_then(not_a_claim) {
                Ok(data) => single(sign(SignMode::Detached { armor: false }, data).await),
                Err(e) => single(Err(e)),
            },
            RequestType::Batch => self.batch(body, who).await,
        }
    }

    /// Resolves the key a request names, checks `who` may use it for a `kind` request naming `repo`, and signs
    /// `data` with it, trying again (up to `signing.attempts` in all) when the signer fails; the result is base64.
    #[allow(clippy::too_many_arguments)]
    async fn sign_with(
        &self,
        kind: RequestType,
        key_id: &str,
        key_name: Option<&str>,
        mode: SignMode,
        mut data: Vec<u8>,
        who: &Identity,
        repo: Option<&str>,
    ) -> Result<String, Failure> {
        let key = self
            .keys
            .lookup(Some(key_id), key_name)
            .map_err(|e| Failure::new(Outcome::Key, e.to_string()))?;
        self.authorizer
            .check(who, kind, &key.fingerprint, key.label(), repo)
            .map_err(|m| Failure::new(Outcome::Forbidden, m))?;
        let mut attempt = 1;
        loop {
            let last = attempt >= self.sign_attempts;
            let input = if last {
                std::mem::take(&mut data)
            } else {
                data.clone()
            };
            let started = Instant::now();
            let signed = self.signer.sign(&key.fingerprint, mode, input).await;
            self.metrics
                .signing_seconds
                .observe(started.elapsed().as_secs_f64());
            match signed {
                Ok(sig) => return Ok(STANDARD.encode(sig)),
                Err(e) if !last && !matches!(e, SignError::Closed) => {
                    tracing::warn!(error = %e, attempt, "signer failed; trying again");
                    self.metrics.sign_retries.inc();
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "signer failed");
                    self.signer_failed();
                    return Err(Failure::new(Outcome::Signer, e.to_string()));
                }
            }
        }
    }

    /// Marks the signer unusable and, unless a re-test is already running, re-tests every configured key in
    /// the background (with backoff) until all sign again; only then is the server ready again.
    fn signer_failed(&self) {
        if !self.health.signer_failed() {
            return;
        }
        tracing::warn!("signer marked unusable; re-testing it before reporting ready again");
        let (signer, health) = (self.signer.clone(), self.health.clone());
        let fingerprints: Vec<String> = self
            .keys
            .keys()
            .iter()
            .map(|k| k.fingerprint.clone())
            .collect();
        let retest = async move {
            let mut wait =
                crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
            loop {
                let mut failed = None;
                for fpr in &fingerprints {
                    let test = b"signbus readiness test signature".to_vec();
                    if let Err(e) = signer.sign(fpr, SignMode::Normal, test).await {
                        failed = Some(e);
                        break;
                    }
                }
                match failed {
                    None => {
                        health.signer_recovered();
                        tracing::info!("signer test signatures succeeded; signer usable again");
                        return;
                    }
                    Some(SignError::Closed) => return,
                    Some(e) => {
                        tracing::warn!(error = %e, retry_in = ?wait.peek(), "signer test signature failed")
                    }
                }
                tokio::time::sleep(wait.next_delay()).await;
            }
        };
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        while background.try_join_next().is_some() {}
        background.spawn(retest.instrument(tracing::info_span!("signer_retest")));
    }

    /// Every claim × key of a batch, each validated and signed on its own, concurrently, in request order.
    async fn batch(
        &self,
        body: &Map<String, Value>,
        who: &Identity,
    ) -> (Map<String, Value>, Vec<String>, Outcome) {
        let claims = body
            .get("claims")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut jobs = Vec::new();
        for (index, claim) in claims.iter().enumerate() {
            let text = |k: &str| {
                claim
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let strings = |k: &str| -> Vec<String> {
                let items = claim.get(k).and_then(Value::as_array).into_iter().flatten();
                items.filter_map(Value::as_str).map(str::to_owned).collect()
            };
            let checked =
                checked_claim(&text("claim_file"), &text("manifest_digest"), &text("repo"));
            let names = strings("sig_keynames");
            for (k, key_id) in strings("sig_key_ids").into_iter().enumerate() {
                let key_name = names.get(k).filter(|n| !n.is_empty()).cloned();
                let (digest, repo, checked) =
                    (text("manifest_digest"), text("repo"), checked.clone());
                jobs.push(async move {
                    let reference = checked.as_ref().ok().map(|(_, r)| r.clone());
                    let result = match checked {
                        Ok((bytes, _)) => {
                            let mode = SignMode::Normal;
                            let name = key_name.as_deref();
                            let repo = Some(repo.as_str());
                            let kind = RequestType::Batch;
                            self.sign_with(kind, &key_id, name, mode, bytes, who, repo)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    let (signed, errors, outcome) = match result {
                        Ok(sig) => (Value::String(sig), Vec::new(), Outcome::Signed),
                        Err(f) => (Value::Null, vec![Value::String(f.message)], f.class),
                    };
                    let doc = json!({
                        "claim_index": index, "sig_key_id": key_id, "sig_keyname": key_name,
                        "manifest_digest": digest, "repo": repo, "docker_reference": reference,
                        "signed_claim": signed, "errors": errors,
                    });
                    (doc, outcome)
                });
            }
        }
        let results = futures_util::future::join_all(jobs).await;
        let outcome = results
            .iter()
            .map(|(_, o)| *o)
            .find(|o| *o != Outcome::Signed)
            .unwrap_or(Outcome::Signed);
        let signatures: Vec<Value> = results.into_iter().map(|(doc, _)| doc).collect();
        let mut errors = Vec::new();
        for s in &signatures {
            for e in s["errors"].as_array().into_iter().flatten() {
                let key = s["sig_key_id"].as_str().unwrap_or_default();
                errors.push(format!(
                    "claim {} key {key}: {}",
                    s["claim_index"],
                    e.as_str().unwrap_or_default()
                ));
            }
        }
        let mut fields = Map::new();
        if errors.is_empty() {
            let all: Vec<&str> = signatures
                .iter()
                .filter_map(|s| s["signed_claim"].as_str())
                .collect();
            fields.insert("signed_claim".into(), Value::String(all.join("\n")));
        }
        fields.insert("signatures".into(), Value::Array(signatures));
        (fields, errors, outcome)
    }
}

/// The answer for a request: its reply (the request's members, `fields`, `errors`), or a rejection when that
/// reply would break the reply schema (a request member shadowing one of ours could do that).
fn finish(
    request: &Map<String, Value>,
    kind: RequestType,
    fields: Map<String, Value>,
    errors: Vec<String>,
    outcome: Outcome,
) -> Answer {
    let reply = Reply::new(request, kind, fields, errors).into_value();
    match Schema::Reply.validate(&reply) {
        Ok(()) => Answer::Reply {
            body: reply.to_string().into(),
            outcome,
        },
        Err(e) => Answer::Reject {
            reason: format!("reply would not match its schema: {e}"),
            class: RejectReason::InvalidReply,
        },
    }
}

/// A request's `created` time: RFC 3339, or the same without an offset (taken as UTC).
fn parse_created(s: &str) -> Option<SystemTime> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
        .ok()?;
    Some(t.into())
}

/// Decodes a base64 member, naming it in the error.
fn decode(member: &str, b64: &str) -> Result<Vec<u8>, Failure> {
    STANDARD.decode(b64.as_bytes()).map_err(|e| {
        Failure::new(
            Outcome::Encoding,
            format!("{member} is not valid base64: {e}"),
        )
    })
}

/// Refuses clearsign and blob data that an image-signature verifier would take as an atomic container signature
/// claim: signing it would make a signature that containers/image (skopeo, podman) accepts for an image,
/// bypassing every container check. See [`crate::claim::looks_like_claim`].
fn not_a_claim(data: Vec<u8>) -> Result<Vec<u8>, Failure> {
    if crate::claim::looks_like_claim(&data) {
        return Err(Failure::new(
            Outcome::CrossType,
            "data is a JSON object with a \"critical\" member, which image verifiers (containers/image: \
             skopeo, podman) would accept as an atomic container signature claim; not signed (image \
             signatures are made by container_signature requests, whose claims the server checks)",
        ));
    }
    Ok(data)
}

/// The span every log line about one request is written in.
fn request_span(
    kind: &str,
    request_id: &str,
    key: &str,
    who: &Identity,
    trace: &TraceContext,
) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id,
        "type" = kind,
        key,
        requester = who.name,
        authenticated = who.authenticated,
        trace_id = %trace.trace_id,
        span_id = %trace.span_id,
    )
}

/// Decodes and strictly parses a claim, and checks it names `digest` and a reference inside `repo`.
/// Returns the exact claim bytes (what gets signed) and the claim's docker reference.
fn checked_claim(claim_file: &str, digest: &str, repo: &str) -> Result<(Vec<u8>, String), Failure> {
    let bytes = decode("claim_file", claim_file)?;
    let claim = Claim::parse(&bytes).map_err(|e| Failure::new(Outcome::Claim, e.to_string()))?;
    let fail = |m: String| Err(Failure::new(Outcome::Claim, m));
    if claim.manifest_digest() != digest {
        return fail(format!(
            "claim names manifest digest {} but the request's manifest_digest is {digest}",
            claim.manifest_digest()
        ));
    }
    if !claim.reference().path_matches(repo) {
        return fail(format!(
            "claim names {} which is not in the request's repo {repo:?}",
            claim.docker_reference()
        ));
    }
    Ok((bytes, claim.docker_reference().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::ResolvedKey;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails its first `failures` signatures with a gpg error, then signs (returns the data).
    struct Flaky {
        failures: usize,
        calls: AtomicUsize,
    }

    impl Signer for Flaky {
        async fn sign(&self, fpr: &str, _: SignMode, data: Vec<u8>) -> Result<Vec<u8>, SignError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(SignError::Gpg {
                    fingerprint: fpr.into(),
                    reason: "agent gone".into(),
                });
            }
            Ok(data)
        }
    }

    const FPR: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    fn handler(failures: usize) -> (Handler<Flaky>, Arc<Health>) {
        handler_with(failures, "")
    }

    /// A handler whose `server:` section also has `extra` (YAML flow members, each followed by `, `).
    fn handler_with(failures: usize, extra: &str) -> (Handler<Flaky>, Arc<Health>) {
        let keys = KeyRing::new(vec![ResolvedKey {
            fingerprint: FPR.into(),
            name: Some("k".into()),
            aliases: vec![],
        }])
        .unwrap();
        let signer = Arc::new(Flaky {
            failures,
            calls: AtomicUsize::new(0),
        });
        let health = Arc::new(Health::new());
        health.set_consuming(true);
        let cfg = ServerConfig::from_yaml(&format!(
            "{{broker: {{urls: [amqp://x]}}, server: {{{extra}listen_to: /q, reply_to: '/r/{{creator}}'}}, \
             signing: {{keys: [{{id: k}}]}}}}"
        ))
        .unwrap();
        let h = Handler::new(signer, keys, &cfg)
            .unwrap()
            .with_health(health.clone());
        (h, health)
    }

    fn clearsign(props: Map<String, Value>) -> IncomingMessage {
        let body = json!({"sig_key_id": "89ABCDEF01234567", "data": "aGk=", "request_id": "r1",
            "created": crate::requester::isodate_now(), "requested_by": "me", "repo": "ns/r"});
        IncomingMessage {
            body: body.to_string().into_bytes(),
            properties: props,
            ..Default::default()
        }
    }

    /// `m` with another request id.
    fn with_id(mut m: IncomingMessage, id: &str) -> IncomingMessage {
        let mut body: Map<String, Value> = serde_json::from_slice(&m.body).unwrap();
        body.insert("request_id".into(), Value::String(id.into()));
        m.body = Value::Object(body).to_string().into_bytes();
        m
    }

    /// `m`'s body with `member` set to `value`.
    fn with(mut m: IncomingMessage, member: &str, value: Value) -> IncomingMessage {
        let mut body: Map<String, Value> = serde_json::from_slice(&m.body).unwrap();
        body.insert(member.into(), value);
        m.body = Value::Object(body).to_string().into_bytes();
        m
    }

    /// The reply's outcome and `msg` document; panics on a rejection.
    fn reply_of(handled: Handled) -> (Outcome, Value) {
        match handled.decision {
            Decision::Reply { message, outcome } => {
                let doc: Value = serde_json::from_str(&message.body).unwrap();
                (outcome, doc["msg"].clone())
            }
            Decision::Reject { reason, .. } => panic!("rejected: {reason}"),
        }
    }

    #[tokio::test]
    async fn a_repeated_request_gets_the_same_reply_and_a_reused_id_is_refused() {
        let (h, _) = handler(0);
        let m = clearsign(props("clearsign_signature"));
        let (o1, first) = reply_of(h.handle(&m).await);
        let (o2, again) = reply_of(h.handle(&m).await);
        assert_eq!((o1, o2), (Outcome::Signed, Outcome::Signed));
        assert_eq!(first, again, "the same reply, signature included");
        assert_eq!(h.signer.calls.load(Ordering::SeqCst), 1, "signed once");
        let other = with(m, "data", Value::String("b3RoZXI=".into()));
        let (o, msg) = reply_of(h.handle(&other).await);
        assert_eq!(o, Outcome::Conflict);
        assert!(msg["signed_data"].is_null());
        let e = msg["errors"][0].as_str().unwrap();
        assert!(
            e.contains("\"r1\" was already used for a different request"),
            "{e}"
        );
        assert_eq!(h.signer.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_oversized_and_redelivered_requests_are_answered_without_signing() {
        let (h, _) = handler(0);
        let old = with(
            clearsign(props("clearsign_signature")),
            "created",
            Value::String("2020-01-01T00:00:00.000000Z".into()),
        );
        let (o, msg) = reply_of(h.handle(&old).await);
        assert_eq!(o, Outcome::Expired);
        assert!(
            msg["errors"][0].as_str().unwrap().contains("expired"),
            "{msg}"
        );
        let mut late = with_id(clearsign(props("clearsign_signature")), "late");
        late.expires_at = Some(SystemTime::now() - Duration::from_secs(2));
        let (o, msg) = reply_of(h.handle(&late).await);
        assert_eq!(o, Outcome::Expired);
        assert!(
            msg["errors"][0].as_str().unwrap().contains("deadline"),
            "{msg}"
        );
        let mut in_time = with_id(clearsign(props("clearsign_signature")), "in-time");
        in_time.expires_at = Some(SystemTime::now() + Duration::from_secs(60));
        assert_eq!(reply_of(h.handle(&in_time).await).0, Outcome::Signed);
        let big = with(
            with_id(clearsign(props("clearsign_signature")), "big"),
            "data",
            Value::String("QUFB".repeat(300_000)),
        );
        let (o, msg) = reply_of(h.handle(&big).await);
        assert_eq!(o, Outcome::TooLarge);
        assert!(
            msg["errors"][0]
                .as_str()
                .unwrap()
                .contains("at most 1048576"),
            "{msg}"
        );
        let mut again = with_id(clearsign(props("clearsign_signature")), "again");
        again.delivery_count = 5;
        let (o, msg) = reply_of(h.handle(&again).await);
        assert_eq!(o, Outcome::Redelivered);
        assert!(
            msg["errors"][0]
                .as_str()
                .unwrap()
                .contains("delivered 6 times"),
            "{msg}"
        );
        let bad_time = with(
            with_id(clearsign(props("clearsign_signature")), "bad-time"),
            "created",
            Value::String("yesterday".into()),
        );
        assert_eq!(reply_of(h.handle(&bad_time).await).0, Outcome::Schema);
        assert_eq!(
            h.signer.calls.load(Ordering::SeqCst),
            1,
            "only in-time was signed"
        );
    }

    #[tokio::test]
    async fn a_briefly_failing_signer_is_tried_again_and_its_error_is_not_kept() {
        let (h, _) = handler(1);
        let (o, _) = reply_of(h.handle(&clearsign(props("clearsign_signature"))).await);
        assert_eq!(o, Outcome::Signed, "the second attempt signs");
        let (h, _) = handler(3);
        let m = clearsign(props("clearsign_signature"));
        assert_eq!(reply_of(h.handle(&m).await).0, Outcome::Signer);
        assert_eq!(h.signer.calls.load(Ordering::SeqCst), 3, "three attempts");
        // Not remembered: a resend is signed (the signer works again by now).
        let (o, _) = reply_of(h.handle(&m).await);
        assert_eq!(o, Outcome::Signed);
    }

    #[tokio::test]
    async fn a_batch_with_too_many_claims_is_refused_by_its_schema() {
        let (h, _) = handler_with(0, "max_message_bytes: 16777216, ");
        let claim = json!({"claim_file": "e30=", "sig_keynames": [""], "sig_key_ids": ["89ABCDEF01234567"],
            "manifest_digest": format!("sha256:{}", "a".repeat(64)), "repo": "ns/r"});
        let body = json!({"claims": vec![claim; 10_001], "request_id": "b", "requested_by": "me",
            "created": crate::requester::isodate_now()});
        let m = IncomingMessage {
            body: body.to_string().into_bytes(),
            properties: props("batch"),
            ..Default::default()
        };
        let (o, msg) = reply_of(h.handle(&m).await);
        assert_eq!(o, Outcome::Schema);
        let e = msg["errors"][0].as_str().unwrap();
        assert!(e.contains("/claims") && e.contains("10000"), "{e}");
        assert_eq!(h.signer.calls.load(Ordering::SeqCst), 0);
    }

    fn props(mtype: &str) -> Map<String, Value> {
        Map::from_iter([("mtype".to_owned(), Value::String(mtype.into()))])
    }

    #[tokio::test]
    async fn a_signer_error_makes_the_server_unready_until_a_test_signature_succeeds() {
        let (h, health) = handler(3);
        let handled = h.handle(&clearsign(props("clearsign_signature"))).await;
        assert!(matches!(
            handled.decision,
            Decision::Reply {
                outcome: Outcome::Signer,
                ..
            }
        ));
        assert_eq!(handled.key, "k");
        assert!(health.readiness().is_err(), "unready right after the error");
        let started = Instant::now();
        while health.readiness().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never ready again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Two failed re-tests, then one good one.
        assert_eq!(h.signer.calls.load(Ordering::SeqCst), 4);
        let handled = h.handle(&clearsign(props("clearsign_signature"))).await;
        assert!(matches!(
            handled.decision,
            Decision::Reply {
                outcome: Outcome::Signed,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn outcomes_and_labels_are_classes_not_text() {
        let (h, _) = handler(0);
        let mut m = clearsign(props("clearsign_signature"));
        m.body = String::from_utf8(m.body)
            .unwrap()
            .replace("89ABCDEF01234567", "FFFFFFFF")
            .into_bytes();
        let handled = h.handle(&m).await;
        assert_eq!(handled.key, "unknown");
        assert!(matches!(
            handled.decision,
            Decision::Reply {
                outcome: Outcome::Key,
                ..
            }
        ));
        let handled = h
            .handle(&with_id(clearsign(props("no_such_type")), "r2"))
            .await;
        assert_eq!(handled.kind, "unknown");
        assert!(matches!(
            handled.decision,
            Decision::Reply {
                outcome: Outcome::Schema,
                ..
            }
        ));
        let handled = h
            .handle(&IncomingMessage {
                body: b"not json".to_vec(),
                ..Default::default()
            })
            .await;
        assert!(matches!(
            handled.decision,
            Decision::Reject {
                class: RejectReason::Undecodable,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn the_reply_continues_the_trace() {
        let (h, _) = handler(0);
        let mut p = props("clearsign_signature");
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        p.insert("traceparent".into(), Value::String(tp.into()));
        let Decision::Reply { message, outcome } = h.handle(&clearsign(p)).await.decision else {
            panic!("no reply")
        };
        assert_eq!(outcome, Outcome::Signed);
        let reply_tp = message.properties["traceparent"].as_str().unwrap();
        assert_eq!(&reply_tp[..36], &tp[..36]);
        assert_ne!(reply_tp, tp);
        assert_eq!(message.address, "/r/me");
    }
}
