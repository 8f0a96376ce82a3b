//! The signing server: consume requests, decide, reply, then settle.
//!
//! [`run`] owns the consume loop: it connects (failing over and reconnecting with backoff), takes at most
//! `max_in_flight` deliveries at a time, hands each to [`handler::Handler`], publishes the reply, and only when
//! the broker has settled the reply accepts the request. One `match` turns each outcome into a settlement. On
//! shutdown it stops the flow, lets in-flight work finish within the grace period, and releases the rest.

pub mod handler;
pub mod reply_address;

use crate::config::ServerConfig;
use crate::signing::Signer;
use crate::transport::{self, Delivery, Settlement, Transport, TransportError};
use handler::{Decision, Handler};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs the server until `shutdown` is cancelled. Returns an error only for problems that retrying cannot fix
/// (a malformed broker URL, a request address the broker refuses).
pub async fn run<S: Signer>(
    cfg: &ServerConfig,
    handler: Handler<S>,
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
        current = Some(transport.clone());
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
        tracing::info!(address = %cfg.server.listen_to, max_in_flight = cfg.server.max_in_flight, "consuming");
        let lost = loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break false,
                p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break false,
                d = sub.next() => d,
            };
            while tasks.try_join_next().is_some() {}
            let Some(delivery) = delivery else { break true };
            let (handler, transport) = (handler.clone(), transport.clone());
            tasks.spawn(async move {
                process(&handler, transport.as_ref(), delivery).await;
                drop(permit);
            });
        };
        if lost {
            tracing::warn!(
                "request link lost; reconnecting (unsettled requests will be redelivered)"
            );
            continue;
        }
        // Shutdown: stop the flow, release what was prefetched, let in-flight work finish.
        sub.pause().await;
        drain(
            &mut tasks,
            Duration::from_secs(cfg.server.grace_period_secs),
        )
        .await;
        drop(sub);
    }
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

/// Handles one delivery from receipt to settlement. Nothing here can skip the settlement.
async fn process<S: Signer, T: Transport>(handler: &Handler<S>, transport: &T, delivery: Delivery) {
    let decision = handler.handle(delivery.message()).await;
    let settlement = match decision {
        Decision::Reply { message, signed } => {
            let address = message.address.clone();
            match transport.publish(message).await {
                Ok(()) => {
                    tracing::debug!(%address, signed, "replied");
                    Settlement::Accept
                }
                Err(e @ (TransportError::Unroutable { .. } | TransportError::Rejected { .. })) => {
                    Settlement::Reject {
                        reason: format!("reply could not be delivered: {e}"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reply not confirmed; releasing the request for redelivery");
                    Settlement::Release
                }
            }
        }
        Decision::Reject(reason) => Settlement::Reject { reason },
    };
    if let Settlement::Reject { reason } = &settlement {
        tracing::warn!(%reason, "rejecting request (dead-lettered by the broker)");
    }
    if let Err(e) = delivery.settle(settlement).await {
        tracing::warn!(error = %e, "settlement failed; the broker will redeliver the request");
    }
}
