//! The signing server: consume requests, decide, reply, then settle.
//!
//! [`run`] owns the consume loop: it connects (failing over and reconnecting with backoff), takes at most
//! `max_in_flight` deliveries at a time, hands each to [`handler::Handler`], publishes the reply, and only when
//! the broker has settled the reply accepts the request. One `match` turns each outcome into a settlement. On
//! shutdown it stops the flow, lets in-flight work finish within the grace period, and releases the rest.
//! It keeps [`Metrics`] and [`health::Health`] up to date (connections, consuming, per-request outcomes);
//! [`endpoints`] serves them over HTTP.

pub mod authorize;
pub mod endpoints;
pub mod handler;
pub mod health;
pub mod recent;
pub mod reply_address;
pub mod trace_context;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::signing::Signer;
use crate::transport::{self, Delivery, Settlement, Transport, TransportError};
use handler::{Decision, Handler, RejectReason};
use health::Health;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Runs the server until `shutdown` is cancelled. Returns an error only for problems that retrying cannot fix
/// (a malformed broker URL, a request address the broker refuses). Counts into `metrics`; reports connected
/// and consuming into `health`.
/// The `outcome` label of a request rejected for the broker to dead-letter (besides the answered [`Outcome`]s).
///
/// [`Outcome`]: handler::Outcome
pub const REJECTED: &str = "rejected";
/// The `outcome` label of a request given back to the broker unanswered (lost connection, end of the grace
/// period).
pub const RELEASED: &str = "released";

pub async fn run<S: Signer>(
    cfg: &ServerConfig,
    handler: Handler<S>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), TransportError> {
    let handler = Arc::new(handler);
    let limit = Arc::new(Semaphore::new(cfg.server.max_in_flight));
    let mut tasks = JoinSet::new();
    let container_id = format!(
        "signbus-server-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let mut backoff = Duration::from_millis(200);
    let mut current: Option<Arc<transport::Broker>> = None;
    while !shutdown.is_cancelled() {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => break,
            t = transport::connect(&cfg.broker, &container_id) => t,
        };
        let transport = match connected {
            Ok(t) => Arc::new(t),
            Err(e @ TransportError::BadUrl { .. }) => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "broker unreachable");
                tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        metrics.broker_connections.inc();
        current = Some(transport.clone());
        if let Some(topology) = &cfg.server.topology {
            if let Err(e) = transport.declare(topology).await {
                transport.close().await;
                return Err(e);
            }
        }
        let mut sub = match transport
            .subscribe(&cfg.server.listen_to, cfg.server.max_in_flight as u32)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                transport.close().await;
                return Err(e);
            }
        };
        backoff = Duration::from_millis(200);
        // Cancelled when a reply publish finds the connection unusable: reconnect, even if the request link
        // still delivers (otherwise every request would be released and redelivered in a loop).
        let broken = CancellationToken::new();
        health.set_consuming(true);
        tracing::info!(address = %cfg.server.listen_to, max_in_flight = cfg.server.max_in_flight, "consuming");
        let lost = loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break false,
                p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break false,
                _ = broken.cancelled() => break true,
                d = sub.next() => d,
            };
            while tasks.try_join_next().is_some() {}
            let Some(delivery) = delivery else { break true };
            let (handler, transport, metrics, broken) = (
                handler.clone(),
                transport.clone(),
                metrics.clone(),
                broken.clone(),
            );
            tasks.spawn(async move {
                process(&handler, transport.as_ref(), delivery, &metrics, &broken).await;
                drop(permit);
            });
        };
        health.set_consuming(false);
        if lost {
            tracing::warn!(
                "broker connection lost; reconnecting (unsettled requests will be redelivered)"
            );
            drop(sub);
            transport.close().await;
            continue;
        }
        // Shutdown: stop the flow, release what was prefetched, let in-flight work finish.
        health.set_stopping();
        sub.pause().await;
        drain(
            &mut tasks,
            Duration::from_secs(cfg.server.grace_period_secs),
        )
        .await;
        drop(sub);
    }
    health.set_stopping();
    drain(
        &mut tasks,
        Duration::from_secs(cfg.server.grace_period_secs),
    )
    .await;
    if let Some(t) = current {
        // Give the receiver task a moment to put the last settlements on the wire.
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.close().await;
    }
    Ok(())
}

/// Waits up to `grace` for in-flight requests; aborts the rest, which releases their deliveries.
async fn drain(tasks: &mut JoinSet<()>, grace: Duration) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        in_flight = tasks.len(),
        ?grace,
        "draining in-flight requests"
    );
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "grace period over; releasing unfinished requests to the broker"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Counts one delivery in flight from receipt to settlement. Dropped unfinished (its task aborted at the end of
/// the grace period, so the delivery goes back to the broker), it counts the outcome `released`.
struct InFlight<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    key: String,
    received: Instant,
    finished: bool,
}

impl<'a> InFlight<'a> {
    fn start(metrics: &'a Metrics, kind: &'static str) -> Self {
        metrics.requests_received.with_label_values(&[kind]).inc();
        metrics.in_flight.inc();
        InFlight {
            metrics,
            kind,
            key: "unknown".into(),
            received: Instant::now(),
            finished: false,
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .requests
            .with_label_values(&[self.kind, &self.key, outcome])
            .inc();
        self.metrics
            .request_seconds
            .observe(self.received.elapsed().as_secs_f64());
    }

    fn finish(mut self, outcome: &str) {
        self.count(outcome);
        self.finished = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.count(RELEASED);
        }
        self.metrics.in_flight.dec();
    }
}

/// Handles one delivery from receipt to settlement. Nothing here can skip the settlement. Cancels `broken`
/// when the reply could not be published because the connection is unusable.
async fn process<S: Signer, T: Transport>(
    handler: &Handler<S>,
    transport: &T,
    delivery: Delivery,
    metrics: &Metrics,
    broken: &CancellationToken,
) {
    let mut tally = InFlight::start(metrics, handler::type_label(&delivery.message().properties));
    let handler::Handled {
        decision,
        kind,
        key,
        span,
    } = handler.handle(delivery.message()).await;
    tally.kind = kind;
    tally.key = key;
    let settle = async move {
        let (settlement, outcome, dead) = match decision {
            Decision::Reply { message, outcome } => {
                let address = message.address.clone();
                match transport.publish(message).await {
                    Ok(()) => {
                        tracing::info!(%address, outcome = outcome.as_str(), "replied");
                        (Settlement::Accept, outcome.as_str(), None)
                    }
                    Err(
                        e @ (TransportError::Unroutable { .. } | TransportError::Rejected { .. }),
                    ) => {
                        let reason = format!("reply could not be delivered: {e}");
                        let dead = Some(RejectReason::ReplyUndeliverable);
                        (Settlement::Reject { reason }, REJECTED, dead)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reply not confirmed; releasing the request for redelivery");
                        if matches!(e, TransportError::Lost(_)) {
                            broken.cancel();
                        }
                        (Settlement::Release, RELEASED, None)
                    }
                }
            }
            Decision::Reject { reason, class } => {
                (Settlement::Reject { reason }, REJECTED, Some(class))
            }
        };
        if let (Settlement::Reject { reason }, Some(class)) = (&settlement, dead) {
            tracing::warn!(%reason, class = class.as_str(), "rejecting request (dead-lettered by the broker)");
        }
        if let Err(e) = delivery.settle(settlement).await {
            tracing::warn!(error = %e, "settlement failed; the broker will redeliver the request");
            tally.finish(RELEASED);
            return;
        }
        if let Some(class) = dead {
            let reason = class.as_str();
            metrics.dead_lettered.with_label_values(&[reason]).inc();
        }
        tally.finish(outcome);
    };
    settle.instrument(span).await;
}
