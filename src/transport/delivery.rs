//! Protocol-neutral deliveries and their settlement.
//!
//! Each protocol's consumer task hands out [`Delivery`]s carrying a token and a channel back to itself; the
//! task turns a [`Settlement`] into the protocol's disposition on the link the message came from. This file
//! owns the "settle exactly once, release on drop" rule, and must never settle a delivery the caller did not
//! settle, except to release it.

use super::{IncomingMessage, TransportError};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The final word on a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: the broker forgets the message.
    Accept,
    /// The message is unprocessable: the broker dead-letters (or drops) it. The reason is logged and, where the
    /// protocol allows, sent to the broker.
    Reject { reason: String },
    /// Not processed here: the broker redelivers it, to this or another consumer.
    Release,
}

/// A settlement request sent from a [`Delivery`] to the consumer task that owns its link.
#[derive(Debug)]
pub(crate) struct SettleCommand {
    pub token: u64,
    pub settlement: Settlement,
    pub done: Option<oneshot::Sender<Result<(), TransportError>>>,
}

/// A received message that must be settled once. Dropping it unsettled releases it.
#[derive(Debug)]
pub struct Delivery {
    message: IncomingMessage,
    token: u64,
    settle: Option<mpsc::UnboundedSender<SettleCommand>>,
}

impl Delivery {
    pub(crate) fn new(
        message: IncomingMessage,
        token: u64,
        settle: mpsc::UnboundedSender<SettleCommand>,
    ) -> Self {
        Delivery {
            message,
            token,
            settle: Some(settle),
        }
    }

    /// The message.
    pub fn message(&self) -> &IncomingMessage {
        &self.message
    }

    /// Settles the delivery and waits until the settlement is on the wire.
    pub async fn settle(mut self, settlement: Settlement) -> Result<(), TransportError> {
        let tx = self
            .settle
            .take()
            .expect("settle is only taken here and in drop");
        let (done, wait) = oneshot::channel();
        tx.send(SettleCommand {
            token: self.token,
            settlement,
            done: Some(done),
        })
        .map_err(|_| TransportError::Lost("consumer link closed before settlement".into()))?;
        wait.await.unwrap_or_else(|_| {
            Err(TransportError::Lost(
                "consumer link closed before settlement".into(),
            ))
        })
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(tx) = self.settle.take() {
            let _ = tx.send(SettleCommand {
                token: self.token,
                settlement: Settlement::Release,
                done: None,
            });
        }
    }
}

/// Control messages from a [`Subscription`] to its consumer task.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stop the broker from sending more (credit 0 / cancel consumer); already-received deliveries stay valid.
    Pause(oneshot::Sender<()>),
}

/// A stream of deliveries from one address.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Delivery>,
    control: mpsc::Sender<Control>,
    address: String,
}

impl Subscription {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Delivery>,
        control: mpsc::Sender<Control>,
        address: String,
    ) -> Self {
        Subscription {
            rx,
            control,
            address,
        }
    }

    /// The next delivery; `None` when the link or connection ended (the broker redelivers what was unsettled).
    pub async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// The address consumed.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops the flow of new deliveries and releases those received but not yet taken with [`next`](Self::next).
    /// Deliveries already taken remain settleable until they are settled or dropped.
    pub async fn pause(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Pause(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.rx.close();
        while let Ok(d) = self.rx.try_recv() {
            drop(d); // released
        }
    }
}

/// What happened on a protocol's consumer link.
pub(crate) enum LinkEvent<H> {
    /// A message, with the protocol's handle for settling it.
    Message(IncomingMessage, H),
    /// Something the link handled itself (e.g. rejected an undecodable message); nothing to hand out.
    Skip,
    /// The broker stopped the flow after a pause; pending settlements still work.
    Paused,
    /// The link or connection ended; the broker redelivers what is unsettled.
    Ended(String),
}

/// The protocol side of a consumer: receive, settle, stop the flow, close.
pub(crate) trait ConsumerLink: Send + 'static {
    /// The protocol's handle for one unsettled delivery.
    type Handle: Send;
    /// The next event.
    fn recv(&mut self) -> impl Future<Output = LinkEvent<Self::Handle>> + Send;
    /// Applies a settlement to a delivery.
    fn settle(
        &mut self,
        handle: Self::Handle,
        s: &Settlement,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Asks the broker to send no more (link credit 0, consumer cancel).
    fn stop_flow(&mut self) -> impl Future<Output = ()> + Send;
    /// Closes the link.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Starts the task that drives `link` and returns its [`Subscription`]. Each broker round trip the task makes
/// (a settlement, stopping the flow, closing) may take at most `round_trip`.
pub(crate) fn spawn_consumer<L: ConsumerLink>(
    link: L,
    address: &str,
    round_trip: Duration,
) -> Subscription {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (ctl_tx, ctl_rx) = mpsc::channel(1);
    tokio::spawn(drive(link, out_tx, ctl_rx, address.to_owned(), round_trip));
    Subscription::new(out_rx, ctl_tx, address.to_owned())
}

/// Owns one consumer link: forwards deliveries, applies settlements, stops the flow on pause, and closes the
/// link once its subscription is gone and every delivery it handed out is settled or dropped.
///
/// A settlement the broker does not take within `round_trip` means the connection is dead even if the
/// protocol library has not noticed (a library can queue a frame for an I/O task that already ended and never
/// answer): the link ends there. Its subscription then yields `None`, every later settlement fails at once, and
/// the broker redelivers whatever was unsettled. Without this, one lost acknowledgement would hold its request
/// slot, and the consumer that waits for free slots, forever.
async fn drive<L: ConsumerLink>(
    mut link: L,
    out: mpsc::UnboundedSender<Delivery>,
    mut control: mpsc::Receiver<Control>,
    address: String,
    round_trip: Duration,
) {
    let (settle_tx, mut settle_rx) = mpsc::unbounded_channel::<SettleCommand>();
    let mut pending: HashMap<u64, L::Handle> = HashMap::new();
    let mut next_token = 0u64;
    let mut flowing = true;
    let mut subscribed = true;
    loop {
        if !subscribed && pending.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(cmd) = settle_rx.recv() => {
                let result = match pending.remove(&cmd.token) {
                    Some(handle) => {
                        match tokio::time::timeout(round_trip, link.settle(handle, &cmd.settlement)).await {
                            Ok(settled) => settled,
                            Err(_) => {
                                let reason = format!("the broker did not take a settlement within {round_trip:?}");
                                tracing::warn!(%address, %reason, "consumer link ended");
                                if let Some(done) = cmd.done {
                                    let _ = done.send(Err(TransportError::Lost(reason)));
                                }
                                return;
                            }
                        }
                    }
                    None => Err(TransportError::Lost("delivery already settled".into())),
                };
                if let Err(e) = &result {
                    tracing::warn!(%address, error = %e, settlement = ?cmd.settlement, "settlement failed");
                }
                if let Some(done) = cmd.done {
                    let _ = done.send(result);
                }
            }
            ctl = control.recv(), if subscribed => {
                if flowing {
                    let _ = tokio::time::timeout(round_trip, link.stop_flow()).await;
                    flowing = false;
                }
                match ctl {
                    Some(Control::Pause(ack)) => { let _ = ack.send(()); }
                    None => subscribed = false,
                }
            }
            event = link.recv(), if flowing => match event {
                LinkEvent::Message(message, handle) => {
                    next_token += 1;
                    pending.insert(next_token, handle);
                    // If nobody takes it, dropping it queues a Release for this loop to apply.
                    let _ = out.send(Delivery::new(message, next_token, settle_tx.clone()));
                }
                LinkEvent::Skip => {}
                LinkEvent::Paused => flowing = false,
                LinkEvent::Ended(reason) => {
                    tracing::warn!(%address, %reason, "consumer link ended");
                    return;
                }
            },
        }
    }
    let _ = tokio::time::timeout(round_trip, link.close()).await;
}
