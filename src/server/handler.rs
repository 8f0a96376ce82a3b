//! One request in, one decision out: the path every request type shares.
//!
//! [`Handler::handle`] never fails and never touches the broker. It decodes the body, opens the request's span
//! (request id, type, key, requester, trace id), finds the reply address, answers a repeated request from the
//! reply cache, and otherwise applies the gates every type shares — delivery count, size, schemas, deadlines —
//! before handing the typed request to its type's module ([`super::requests`]). Every problem that can be
//! answered becomes an error reply naming it ([`Refusal`]) and an [`Outcome`] class; a message that cannot be
//! answered at all (not JSON, no request id, no reply address) becomes [`Decision::Reject`].

use super::authorize::{Authorizer, Identity};
use super::health::Health;
pub use super::outcome::{Decision, Handled, Outcome, RejectReason};
use super::recent::{self, RecentReplies, Weigh};
use super::refusal::Refusal;
use super::reply_address::reply_address;
use super::requests::{self, Signed};
use super::signatory::Signatory;
use super::trace_context::TraceContext;
use crate::config::ServerConfig;
use crate::cosign::ring::KeyRing as CosignKeys;
use crate::metrics::Metrics;
use crate::signing::{KeyRing, Signer};
use crate::transport::{IncomingMessage, OutgoingMessage};
use crate::wire::{self, Reply, Request, RequestType, Schema, ShapeError};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::Instrument;

/// Where a message came from, which decides the rules that depend on a live broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Delivered by the broker: it must have a reply address, and deadlines and the delivery limit apply.
    Broker,
    /// Replayed from a file (`serve --replay`): a missing reply address leaves the reply's address empty, and
    /// deadlines and the delivery limit do not apply.
    Replay,
}

/// The request type label of a message, from its `mtype` property (absent means a container request, as in
/// [`Handler::handle`]); unrecognised values are `unknown`.
pub fn type_label(properties: &Map<String, Value>) -> &'static str {
    RequestType::from_properties(properties).map_or("unknown", RequestType::as_str)
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

/// The shared path's settings and state: reply addressing, limits, the recent replies, and the signatory.
pub struct Handler<S> {
    signatory: Signatory<S>,
    reply_template: Option<String>,
    task_id_attributes: Vec<String>,
    max_message_bytes: usize,
    max_request_age: Option<Duration>,
    max_deliveries: u32,
    recent: RecentReplies<Answer>,
    metrics: Arc<Metrics>,
}

impl<S: Signer> Handler<S> {
    /// A handler signing with `signer` using `keys` (and `cosign` for cosign requests) under `cfg`'s rules: reply addressing (replies without
    /// `reply-to` go to `server.reply_to`), limits, the recent-reply cache, and authorization; it counts into
    /// `metrics` and reports signer failures and recoveries to `health`. Fails when the authorization section
    /// grants a key that `keys` does not hold (or names ambiguously).
    pub fn new(
        signer: Arc<S>,
        keys: KeyRing,
        cosign: CosignKeys,
        cfg: &ServerConfig,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, String> {
        let authorizer = match &cfg.authorization {
            Some(a) => Authorizer::new(a, &keys, &cosign)?,
            None => Authorizer::allow_all(),
        };
        let s = &cfg.server;
        let cache = &s.reply_cache;
        let attempts = cfg.signing.attempts;
        Ok(Handler {
            signatory: Signatory::new(
                signer,
                keys,
                cosign,
                authorizer,
                attempts,
                metrics.clone(),
                health,
            ),
            reply_template: s.reply_to.clone(),
            task_id_attributes: s.task_id_attributes.clone(),
            max_message_bytes: s.max_message_bytes,
            max_request_age: s.max_request_age_secs.map(Duration::from_secs),
            max_deliveries: s.max_deliveries,
            recent: RecentReplies::new(
                cache.capacity,
                cache.max_bytes,
                Duration::from_secs(cache.ttl_secs),
            ),
            metrics,
        })
    }

    /// The signatory (tests look at its signer).
    pub fn signatory(&self) -> &Signatory<S> {
        &self.signatory
    }

    /// Decides what to do with one message from `origin`.
    pub async fn handle(&self, msg: &IncomingMessage, origin: Origin) -> Handled {
        let kind_label = type_label(&msg.properties);
        let trace = TraceContext::continue_or_start(
            msg.properties.get("traceparent").and_then(Value::as_str),
        );
        let authorizer = self.signatory.authorizer();
        let body = match wire::decode_object(&msg.body) {
            Ok(b) => b,
            Err(e) => {
                let nobody = authorizer.identify(msg.user_id.as_deref(), None, None);
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
        // An unknown type is checked as a container request; its properties then fail their schema.
        let kind = RequestType::from_properties(&msg.properties).unwrap_or(RequestType::Container);
        let doc = Value::Object(body);
        // Typed once: here for the key label, and by the gates only after the schemas passed.
        let typed = Request::parse(kind, &doc);
        let key = self.signatory.key_label(typed.as_ref().ok());
        let body = doc.as_object().unwrap_or(&EMPTY);
        let who = authorizer.identify(
            msg.user_id.as_deref(),
            text_of(body, "requested_by"),
            msg.properties.get("owner_id").and_then(Value::as_str),
        );
        let request_id = text_of(body, "request_id").unwrap_or_default();
        let span = request_span(kind_label, request_id, &key, &who, &trace);
        let decision = self
            .decide(msg, &doc, typed, kind, &who, &trace, origin)
            .instrument(span.clone())
            .await;
        Handled {
            decision,
            kind: kind_label,
            key,
            span,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        msg: &IncomingMessage,
        doc: &Value,
        typed: Result<Request, ShapeError>,
        kind: RequestType,
        who: &Identity,
        trace: &TraceContext,
        origin: Origin,
    ) -> Decision {
        tracing::debug!(delivery_count = msg.delivery_count, "received");
        let body = doc.as_object().unwrap_or(&EMPTY);
        let Some(request_id) = text_of(body, "request_id").filter(|s| !s.is_empty()) else {
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
            Err(e) if origin == Origin::Broker => {
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
                self.answer(msg, doc, typed, kind, who, origin)
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
            Err(conflict) => finish(body, kind, Signed::refused(Refusal::Conflict(conflict.0))),
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

    /// Applies the shared gates, then has the request's type check and sign it. `Ok` is an answer to keep for
    /// repeats of the request; `Err` one that must not be kept (the signer failed: a repeat should try again).
    async fn answer(
        &self,
        msg: &IncomingMessage,
        doc: &Value,
        typed: Result<Request, ShapeError>,
        kind: RequestType,
        who: &Identity,
        origin: Origin,
    ) -> Result<Answer, Answer> {
        let body = doc.as_object().unwrap_or(&EMPTY);
        let signed = match self.gates(msg, doc, typed, kind, origin) {
            Ok(request) => requests::sign(&self.signatory, &request, &msg.properties, who).await,
            Err(refusal) => Signed::refused(refusal),
        };
        let outcome = signed.outcome;
        let answer = finish(body, kind, signed);
        if outcome == Outcome::Signer {
            Err(answer)
        } else {
            Ok(answer)
        }
    }

    /// The checks every request passes before its type sees it, in order: delivery count, size, properties
    /// schema, body schema, deadlines. Returns the typed request (`typed`, parsed before the schemas were checked
    /// and relied on only after).
    fn gates(
        &self,
        msg: &IncomingMessage,
        doc: &Value,
        typed: Result<Request, ShapeError>,
        kind: RequestType,
        origin: Origin,
    ) -> Result<Request, Refusal> {
        let live = origin == Origin::Broker;
        if live && msg.delivery_count >= self.max_deliveries {
            return Err(Refusal::Redelivered {
                deliveries: msg.delivery_count + 1,
                limit: self.max_deliveries,
            });
        }
        if msg.body.len() > self.max_message_bytes {
            return Err(Refusal::TooLarge {
                size: msg.body.len(),
                limit: self.max_message_bytes,
            });
        }
        Schema::RequestProperties.validate(&Value::Object(msg.properties.clone()))?;
        Schema::for_request(kind).validate(doc)?;
        let request = typed?;
        if live {
            self.check_deadline(msg, request.created())?;
        }
        Ok(request)
    }

    /// Refuses a request past its sender's deadline or older than `server.max_request_age_secs`.
    fn check_deadline(&self, msg: &IncomingMessage, created: &str) -> Result<(), Refusal> {
        let now = SystemTime::now();
        if let Some(late) = msg.expires_at.and_then(|at| now.duration_since(at).ok()) {
            return Err(Refusal::PastDeadline {
                late_secs: late.as_secs_f64(),
            });
        }
        let Some(max) = self.max_request_age else {
            return Ok(());
        };
        let at = parse_created(created).ok_or_else(|| Refusal::BadCreated(created.to_owned()))?;
        match now.duration_since(at) {
            Ok(age) if age > max => Err(Refusal::TooOld {
                age_secs: age.as_secs(),
                max_secs: max.as_secs(),
            }),
            _ => Ok(()),
        }
    }
}

/// The body of a message that is not an object (never reached: [`wire::decode_object`] made it one).
static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn text_of<'a>(body: &'a Map<String, Value>, member: &str) -> Option<&'a str> {
    body.get(member).and_then(Value::as_str)
}

/// The answer for a request: its reply (the request's members, the result, the errors), or a rejection when
/// that reply would break the reply schema (a request member shadowing one of ours could do that).
fn finish(request: &Map<String, Value>, kind: RequestType, signed: Signed) -> Answer {
    let reply = Reply::new(request, kind, signed.fields, signed.errors).into_value();
    match Schema::Reply.validate(&reply) {
        Ok(()) => Answer::Reply {
            body: reply.to_string().into(),
            outcome: signed.outcome,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::fake::FakeSigner;
    use crate::signing::ResolvedKey;
    use serde_json::json;
    use std::time::Instant;

    const FPR: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    fn handler(failures: usize) -> (Handler<FakeSigner>, Arc<Health>) {
        handler_with(failures, "")
    }

    /// A handler whose `server:` section also has `extra` (YAML flow members, each followed by `, `).
    fn handler_with(failures: usize, extra: &str) -> (Handler<FakeSigner>, Arc<Health>) {
        handler_signing_with(FakeSigner::failing_first(failures), extra)
    }

    /// [`handler_with`], signing with `signer`.
    fn handler_signing_with(signer: FakeSigner, extra: &str) -> (Handler<FakeSigner>, Arc<Health>) {
        let keys = KeyRing::new(vec![ResolvedKey {
            fingerprint: FPR.into(),
            name: Some("k".into()),
            aliases: vec![],
        }])
        .unwrap();
        let signer = Arc::new(signer);
        let health = Arc::new(Health::new());
        health.set_consuming(true);
        let cfg = ServerConfig::from_yaml(&format!(
            "{{broker: {{urls: [amqp://x]}}, server: {{{extra}listen_to: /q, reply_to: '/r/{{creator}}'}}, \
             signing: {{keys: [{{id: k}}]}}}}"
        ))
        .unwrap();
        let h = Handler::new(
            signer,
            keys,
            Default::default(),
            &cfg,
            Default::default(),
            health.clone(),
        )
        .unwrap();
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
        let (o1, first) = reply_of(h.handle(&m, Origin::Broker).await);
        let (o2, again) = reply_of(h.handle(&m, Origin::Broker).await);
        assert_eq!((o1, o2), (Outcome::Signed, Outcome::Signed));
        assert_eq!(first, again, "the same reply, signature included");
        assert_eq!(h.signatory.signer().calls(), 1, "signed once");
        let other = with(m, "data", Value::String("b3RoZXI=".into()));
        let (o, msg) = reply_of(h.handle(&other, Origin::Broker).await);
        assert_eq!(o, Outcome::Conflict);
        assert!(msg["signed_data"].is_null());
        let e = msg["errors"][0].as_str().unwrap();
        assert!(
            e.contains("\"r1\" was already used for a different request"),
            "{e}"
        );
        assert_eq!(h.signatory.signer().calls(), 1);
    }

    #[tokio::test]
    async fn expired_oversized_and_redelivered_requests_are_answered_without_signing() {
        let (h, _) = handler(0);
        let old = with(
            clearsign(props("clearsign_signature")),
            "created",
            Value::String("2020-01-01T00:00:00.000000Z".into()),
        );
        let (o, msg) = reply_of(h.handle(&old, Origin::Broker).await);
        assert_eq!(o, Outcome::Expired);
        assert!(
            msg["errors"][0].as_str().unwrap().contains("expired"),
            "{msg}"
        );
        let mut late = with_id(clearsign(props("clearsign_signature")), "late");
        late.expires_at = Some(SystemTime::now() - Duration::from_secs(2));
        let (o, msg) = reply_of(h.handle(&late, Origin::Broker).await);
        assert_eq!(o, Outcome::Expired);
        assert!(
            msg["errors"][0].as_str().unwrap().contains("deadline"),
            "{msg}"
        );
        let mut in_time = with_id(clearsign(props("clearsign_signature")), "in-time");
        in_time.expires_at = Some(SystemTime::now() + Duration::from_secs(60));
        assert_eq!(
            reply_of(h.handle(&in_time, Origin::Broker).await).0,
            Outcome::Signed
        );
        let big = with(
            with_id(clearsign(props("clearsign_signature")), "big"),
            "data",
            Value::String("QUFB".repeat(300_000)),
        );
        let (o, msg) = reply_of(h.handle(&big, Origin::Broker).await);
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
        let (o, msg) = reply_of(h.handle(&again, Origin::Broker).await);
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
        assert_eq!(
            reply_of(h.handle(&bad_time, Origin::Broker).await).0,
            Outcome::Schema
        );
        assert_eq!(h.signatory.signer().calls(), 1, "only in-time was signed");
    }

    #[tokio::test]
    async fn a_briefly_failing_signer_is_tried_again_and_its_error_is_not_kept() {
        let (h, _) = handler(1);
        let (o, _) = reply_of(
            h.handle(&clearsign(props("clearsign_signature")), Origin::Broker)
                .await,
        );
        assert_eq!(o, Outcome::Signed, "the second attempt signs");
        let (h, _) = handler(3);
        let m = clearsign(props("clearsign_signature"));
        assert_eq!(
            reply_of(h.handle(&m, Origin::Broker).await).0,
            Outcome::Signer
        );
        assert_eq!(h.signatory.signer().calls(), 3, "three attempts");
        // Not remembered: a resend is signed (the signer works again by now).
        let (o, _) = reply_of(h.handle(&m, Origin::Broker).await);
        assert_eq!(o, Outcome::Signed);
    }

    /// A batch request `id` of `claims`.
    fn batch(claims: Vec<Value>, id: &str) -> IncomingMessage {
        let body = json!({"claims": claims, "request_id": id, "requested_by": "me",
            "created": crate::requester::isodate_now()});
        IncomingMessage {
            body: body.to_string().into_bytes(),
            properties: props("batch"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_batch_with_too_many_claims_is_refused_by_its_schema() {
        let (h, _) = handler_with(0, "max_message_bytes: 16777216, ");
        let claim = json!({"claim_file": "e30=", "sig_keynames": [""], "sig_key_ids": ["89ABCDEF01234567"],
            "manifest_digest": format!("sha256:{}", "a".repeat(64)), "repo": "ns/r"});
        let m = batch(vec![claim; 10_001], "b");
        let (o, msg) = reply_of(h.handle(&m, Origin::Broker).await);
        assert_eq!(o, Outcome::Schema);
        let e = msg["errors"][0].as_str().unwrap();
        assert!(e.contains("/claims") && e.contains("10000"), "{e}");
        assert_eq!(h.signatory.signer().calls(), 0);
    }

    #[tokio::test]
    async fn a_large_batch_keeps_a_bounded_number_of_signatures_waiting() {
        let signer = FakeSigner::new().with_delay(Duration::from_millis(1));
        use base64::{engine::general_purpose::STANDARD, Engine};
        let (h, _) = handler_signing_with(signer, "max_message_bytes: 16777216, ");
        let reference =
            crate::reference::Reference::parse_normalized("registry.example/ns/r:1").unwrap();
        let claims: Vec<Value> = (0..300)
            .map(|i| {
                let digest = format!("sha256:{i:064x}");
                let claim = crate::claim::Claim::new(&reference, &digest, None).unwrap();
                json!({"claim_file": STANDARD.encode(claim.to_json()), "sig_keynames": [""],
                    "sig_key_ids": ["89ABCDEF01234567"], "manifest_digest": digest, "repo": "ns/r"})
            })
            .collect();
        let (o, msg) = reply_of(h.handle(&batch(claims, "big"), Origin::Broker).await);
        assert_eq!(o, Outcome::Signed, "{msg}");
        assert_eq!(msg["signatures"].as_array().unwrap().len(), 300);
        let signer = h.signatory.signer();
        assert_eq!(signer.calls(), 300);
        let most = signer.most_at_once();
        assert!(
            (2..=crate::server::requests::BATCH_IN_FLIGHT).contains(&most),
            "{most} signatures of one batch at once"
        );
    }

    fn props(mtype: &str) -> Map<String, Value> {
        Map::from_iter([("mtype".to_owned(), Value::String(mtype.into()))])
    }

    #[tokio::test]
    async fn a_signer_error_makes_the_server_unready_until_a_test_signature_succeeds() {
        let (h, health) = handler(3);
        let handled = h
            .handle(&clearsign(props("clearsign_signature")), Origin::Broker)
            .await;
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
        assert_eq!(h.signatory.signer().calls(), 4);
        let handled = h
            .handle(&clearsign(props("clearsign_signature")), Origin::Broker)
            .await;
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
        let handled = h.handle(&m, Origin::Broker).await;
        assert_eq!(handled.key, "unknown");
        assert!(matches!(
            handled.decision,
            Decision::Reply {
                outcome: Outcome::Key,
                ..
            }
        ));
        let handled = h
            .handle(
                &with_id(clearsign(props("no_such_type")), "r2"),
                Origin::Broker,
            )
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
            .handle(
                &IncomingMessage {
                    body: b"not json".to_vec(),
                    ..Default::default()
                },
                Origin::Broker,
            )
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
        let Decision::Reply { message, outcome } =
            h.handle(&clearsign(p), Origin::Broker).await.decision
        else {
            panic!("no reply")
        };
        assert_eq!(outcome, Outcome::Signed);
        let reply_tp = message.properties["traceparent"].as_str().unwrap();
        assert_eq!(&reply_tp[..36], &tp[..36]);
        assert_ne!(reply_tp, tp);
        assert_eq!(message.address, "/r/me");
    }
}
