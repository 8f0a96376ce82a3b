//! Publishing over AMQP 1.0: the pool of anonymous-terminus senders and the outcome of each send.
//!
//! Owns which sender carries a message and what the broker's outcome means (`accepted` is the only success;
//! `released`/`modified` are unroutable, `rejected` carries the broker's reason). It must never leave a send
//! waiting on a session the broker ended, nor report a message as published before the broker accepted it.

use super::{convert, Engine};
use crate::transport::{OutgoingMessage, TransportError};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{Outcome, Target};
use fe2o3_amqp::Sender;
use std::time::Duration;
use tokio::sync::Mutex;

/// Anonymous senders per connection. Each carries one unsettled message at a time (a non-batchable transfer:
/// RabbitMQ delays the outcome of `batchable` transfers), so this many publishes are in flight at once.
const SENDERS: usize = 8;

/// The anonymous-terminus senders of a connection, attached on `session`.
pub(super) async fn attach_senders(
    session: &mut SessionHandle<()>,
    container_id: &str,
) -> Result<Vec<Mutex<Sender>>, String> {
    let mut senders = Vec::with_capacity(SENDERS);
    for n in 0..SENDERS {
        let sender = Sender::builder()
            .name(format!("{container_id}-sender-{n}"))
            .target(Target::builder().build())
            .attach(session)
            .await
            .map_err(|e| format!("attach anonymous sender: {e}"))?;
        senders.push(Mutex::new(sender));
    }
    Ok(senders)
}

impl Engine {
    /// Sends `msg` on an idle sender and waits for the broker's outcome.
    pub(super) async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let address = msg.address.clone();
        let message = convert::to_amqp(msg);
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
}
