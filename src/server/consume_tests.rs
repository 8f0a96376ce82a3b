//! The consume loop's promises, proved without a broker: [`super::run`] against the in-memory broker
//! ([`crate::transport::memory`]) with the shared [`FakeSigner`]. The broker tests in `tests/it/` prove the same
//! promises over RabbitMQ; these run in milliseconds and can cut a connection at an exact moment.

use super::handler::Handler;
use super::health::Health;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::signing::fake::FakeSigner;
use crate::signing::{KeyRing, ResolvedKey};
use crate::transport::memory::{Event, MemoryBroker};
use crate::transport::IncomingMessage;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const REQUESTS: &str = "/queues/requests";
const REPLIES: &str = "/queues/replies";

/// A running server on `broker`, signing with `signer`; `extra` adds `server:` members (YAML flow, each
/// followed by `, `).
struct Running {
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

fn start(broker: &MemoryBroker, signer: FakeSigner, extra: &str) -> Running {
    let cfg = ServerConfig::from_yaml(&format!(
        "{{broker: {{urls: [amqp://memory]}}, server: {{{extra}listen_to: {REQUESTS}, reply_to: {REPLIES}}}, \
         signing: {{keys: [{{id: k}}]}}}}"
    ))
    .unwrap();
    let keys = KeyRing::new(vec![ResolvedKey {
        fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
        name: Some("k".into()),
        aliases: vec![],
    }])
    .unwrap();
    let (metrics, health) = (Arc::new(Metrics::new()), Arc::new(Health::new()));
    let handler = Handler::new(
        Arc::new(signer),
        keys,
        Default::default(),
        &cfg,
        metrics.clone(),
        health.clone(),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let (stop, connector) = (shutdown.clone(), broker.connector());
    let done = tokio::spawn(async move {
        super::run(&cfg, &connector, handler, metrics, health, stop)
            .await
            .unwrap();
    });
    Running { shutdown, done }
}

/// A clearsign request with id `id`.
fn request(id: &str) -> IncomingMessage {
    let body = json!({"sig_key_id": "01234567", "data": "aGk=", "request_id": id, "requested_by": "me",
        "created": crate::requester::isodate_now(), "repo": null});
    IncomingMessage {
        body: body.to_string().into_bytes(),
        properties: Map::from_iter([("mtype".to_owned(), Value::from("clearsign_signature"))]),
        ..Default::default()
    }
}

fn request_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    let id = v.get("msg").unwrap_or(&v)["request_id"].as_str();
    id.unwrap_or_default().to_owned()
}

/// Waits until `done` holds for the broker's events (10 s at most).
async fn until(broker: &MemoryBroker, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let started = Instant::now();
    loop {
        let events = broker.events();
        if done(&events) {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn accepted(events: &[Event]) -> Vec<String> {
    let ids = events.iter().filter_map(|e| match e {
        Event::Accepted { address, body } if address == REQUESTS => Some(request_id(body)),
        _ => None,
    });
    ids.collect()
}

fn replies(events: &[Event]) -> Vec<(usize, String, Value)> {
    let replies = events.iter().enumerate().filter_map(|(i, e)| match e {
        Event::Published { address, body } if address == REPLIES => {
            Some((i, request_id(body), serde_json::from_str(body).unwrap()))
        }
        _ => None,
    });
    replies.collect()
}

#[tokio::test]
async fn every_request_is_accepted_only_after_its_reply_was_published() {
    let broker = MemoryBroker::new();
    let ids: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    for id in &ids {
        broker.enqueue(REQUESTS, request(id));
    }
    let server = start(&broker, FakeSigner::new(), "");
    let events = until(&broker, |e| accepted(e).len() == ids.len()).await;
    for id in &ids {
        let accepted_at = events
            .iter()
            .position(|e| matches!(e, Event::Accepted { body, .. } if request_id(body) == *id))
            .unwrap();
        let reply = replies(&events).into_iter().find(|(_, r, _)| r == id);
        let (published_at, _, doc) = reply.unwrap_or_else(|| panic!("{id}: no reply"));
        assert!(
            published_at < accepted_at,
            "{id}: accepted before its reply"
        );
        assert_eq!(doc["msg"]["errors"], json!([]), "{id}");
    }
    server.shutdown.cancel();
    server.done.await.unwrap();
    assert_eq!(broker.queued(REQUESTS), 0);
}

/// Runs 10 requests through a server that holds 4 at a time, each signed in 150 ms; `cut` cuts the connection
/// 50 ms in, so it finds requests taken and not yet answered. Asserts each request ends accepted exactly once
/// and returns the broker's events.
async fn cut_mid_run(cut: impl FnOnce(&MemoryBroker)) -> Vec<Event> {
    let broker = MemoryBroker::new();
    let ids: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for id in &ids {
        broker.enqueue(REQUESTS, request(id));
    }
    let signer = FakeSigner::new().with_delay(Duration::from_millis(150));
    let server = start(&broker, signer, "max_in_flight: 4, ");
    tokio::time::sleep(Duration::from_millis(50)).await;
    cut(&broker);
    let events = until(&broker, |e| {
        let done = accepted(e);
        ids.iter().all(|id| done.contains(id))
    })
    .await;
    let mut done = accepted(&events);
    done.sort();
    done.dedup();
    assert_eq!(done.len(), ids.len(), "each request accepted once");
    assert_eq!(accepted(&events).len(), ids.len(), "and only once");
    server.shutdown.cancel();
    server.done.await.unwrap();
    events
}

#[tokio::test]
async fn a_cut_connection_releases_unanswered_requests_and_they_are_answered_after_reconnecting() {
    let events = cut_mid_run(MemoryBroker::cut_connections).await;
    let released = events
        .iter()
        .filter(|e| matches!(e, Event::Released { .. }))
        .count();
    assert!(released >= 1, "the cut released nothing: {events:#?}");
}

#[tokio::test]
async fn a_settlement_that_never_answers_after_a_cut_does_not_stop_the_server() {
    // Every request slot is taken when the connection dies, and the protocol library neither ends the
    // subscription nor answers the settlements of the dead connection (lapin was seen to do this under load):
    // the server must still notice, reconnect and answer everything.
    cut_mid_run(MemoryBroker::cut_connections_silently).await;
}

#[tokio::test]
async fn a_drain_answers_what_was_taken_and_leaves_the_rest_on_the_queue() {
    let broker = MemoryBroker::new();
    for i in 0..10 {
        broker.enqueue(REQUESTS, request(&format!("d{i}")));
    }
    let signer = FakeSigner::new().with_delay(Duration::from_millis(300));
    let server = start(&broker, signer, "max_in_flight: 2, grace_period_secs: 5, ");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.cancel();
    server.done.await.unwrap();
    let events = broker.events();
    let answered = accepted(&events);
    assert_eq!(
        answered.len(),
        2,
        "the two taken were answered: {events:#?}"
    );
    assert_eq!(replies(&events).len(), 2);
    assert_eq!(
        broker.queued(REQUESTS),
        8,
        "the rest wait for another server"
    );
}

#[tokio::test]
async fn a_reply_that_cannot_be_routed_dead_letters_its_request() {
    let broker = MemoryBroker::new();
    broker.refuse_publishes_to(REPLIES);
    broker.enqueue(REQUESTS, request("u1"));
    let server = start(&broker, FakeSigner::new(), "");
    let events = until(&broker, |e| {
        e.iter().any(|e| matches!(e, Event::Rejected { .. }))
    })
    .await;
    assert!(accepted(&events).is_empty());
    server.shutdown.cancel();
    server.done.await.unwrap();
    assert_eq!(broker.queued(REQUESTS), 0);
}
