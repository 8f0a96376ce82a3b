//! Protocol-neutral deliveries and their settlement.
//!
//! Each protocol's consumer task hands out [`Delivery`]s carrying a token and a channel back to itself; the
//! task turns a [`Settlement`] into the protocol's disposition on the link the message came from. This file
//! owns the "settle exactly once, release on drop" rule.

use super::{IncomingMessage, TransportError};
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
