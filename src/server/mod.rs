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
pub mod outcome;
pub mod recent;
pub mod refusal;
pub mod replay;
pub mod reply_address;
mod requests;
pub mod signatory;
pub mod trace_context;

use crate::backoff::Backoff;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::signing::Signer;
use crate::transport::{Connect, Delivery, Settlement, Transport, TransportError};
use handler::{Handler, Origin};
use health::Health;
use outcome::{Decision, RejectReason};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The `outcome` label of a request rejected for the broker to dead-letter (besides the answered [`Outcome`]s).
///
/// [`Outcome`]: outcome::Outcome
pub const REJECTED: &str = "rejected";
/// The `outcome` label of a request given back to the broker unanswered (lost connection, end of the grace
/// period).
pub const RELEASED: &str = "released";

/// Runs the server until `shutdown` is cancelled. Returns an error only for problems that retrying cannot fix
/// (a malformed broker URL, a request address the broker refuses). Every broker round trip is time-boxed
/// (`broker.publish_timeout_secs`) and raced against `shutdown`; a broker that does not answer is treated as a
/// lost connection. Counts into `metrics` (a request task that panics is logged and counted; its delivery is
/// released); reports connected and consuming into `health`. Connections come from `connector` (the broker of
/// `cfg.broker` in production: [`transport::Connector`]; an in-memory broker in tests).
pub async fn run<S: Signer, C: Connect>(
    cfg: &ServerConfig,
    connector: &C,
    handler: Handler<S>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), TransportError> {
    let handler = Arc::new(handler);
    let limit = Arc::new(Semaphore::new(cfg.server.max_in_flight));
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut current: Option<Arc<C::Conn>> = None;
    while !shutdown.is_cancelled() {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => break,
            t = connector.connect() => t,
        };
        let transport = match connected {
            Ok(t) => Arc::new(t),
            Err(e) if e.is_permanent() => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff.peek(), "broker unreachable");
                if !wait_before_retry(&mut backoff, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        metrics.broker_connections.inc();
        current = Some(transport.clone());
        let listen = &cfg.server.listen_to;
        let ready = async {
            if let Some(topology) = &cfg.server.topology {
                transport.declare(topology).await?;
            }
            transport
                .subscribe(listen, cfg.server.max_in_flight as u32)
                .await
        };
        let subscribed = tokio::select! {
            _ = shutdown.cancelled() => {
                transport.close().await;
                break;
            }
            s = ready => s,
        };
        let mut sub = match subscribed {
            Ok(s) => s,
            Err(e) if e.is_permanent() => {
                transport.close().await;
                return Err(e);
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff.peek(), "could not start consuming; reconnecting");
                transport.close().await;
                if !wait_before_retry(&mut backoff, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        // Cancelled when a reply publish finds the connection unusable: reconnect, even if the request link
        // still delivers (otherwise every request would be released and redelivered in a loop).
        let broken = CancellationToken::new();
        health.set_consuming(true);
        tracing::info!(address = %cfg.server.listen_to, max_in_flight = cfg.server.max_in_flight, "consuming");
        let lost = loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break false,
                _ = broken.cancelled() => break true,
                p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break false,
                _ = broken.cancelled() => break true,
                d = sub.next() => d,
            };
            while let Some(done) = tasks.try_join_next() {
                count_panic(done, &metrics);
            }
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
            &metrics,
        )
        .await;
        drop(sub);
    }
    health.set_stopping();
    drain(
        &mut tasks,
        Duration::from_secs(cfg.server.grace_period_secs),
        &metrics,
    )
    .await;
    if let Some(t) = current {
        // Give the receiver task a moment to put the last settlements on the wire.
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.close().await;
    }
    Ok(())
}

/// Sleeps the next `backoff` delay unless `shutdown` comes first; false on shutdown.
async fn wait_before_retry(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(backoff.next_delay()) => true,
    }
}

/// Logs and counts a request task that panicked (its delivery, dropped unsettled, goes back to the broker).
fn count_panic(done: Result<(), tokio::task::JoinError>, metrics: &Metrics) {
    if let Err(e) = done {
        if e.is_panic() {
            metrics.task_panics.inc();
            tracing::error!(error = %e, "a request task panicked; its request is released to the broker");
        }
    }
}

/// Waits up to `grace` for in-flight requests; aborts the rest, which releases their deliveries.
async fn drain(tasks: &mut JoinSet<()>, grace: Duration, metrics: &Metrics) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        in_flight = tasks.len(),
        ?grace,
        "draining in-flight requests"
    );
    let all = async {
        while let Some(done) = tasks.join_next().await {
            count_panic(done, metrics);
        }
    };
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
    let outcome::Handled {
        decision,
        kind,
        key,
        span,
    } = handler.handle(delivery.message(), Origin::Broker).await;
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
                    Err(e) if e.is_refused() => {
                        let reason = format!("reply could not be delivered: {e}");
                        let dead = Some(RejectReason::ReplyUndeliverable);
                        (Settlement::Reject { reason }, REJECTED, dead)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reply not confirmed; releasing the request for redelivery");
                        if matches!(e, TransportError::Lost(_)) {
                            // The connection is gone: the broker redelivers whatever it had not settled, and
                            // a release sent on it may never be answered. Drop the delivery (a release nobody
                            // waits for) so this request's slot is free for the next connection now.
                            broken.cancel();
                            drop(delivery);
                            tally.finish(RELEASED);
                            return;
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

#[cfg(test)]
mod consume_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_request_task_is_counted_and_the_drain_goes_on() {
        let metrics = Metrics::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(async { panic!("a bug in one request") });
        tasks.spawn(async {});
        drain(&mut tasks, Duration::from_secs(5), &metrics).await;
        assert!(tasks.is_empty());
        assert_eq!(metrics.task_panics.get(), 1);
        assert!(metrics.render().contains("signbus_task_panics_total 1"));
    }
}
