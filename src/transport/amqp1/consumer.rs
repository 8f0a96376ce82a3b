//! Consuming over AMQP 1.0: a receiver link (on a session of its own) per subscription, as the
//! [`ConsumerLink`] the shared consumer driver (`transport/delivery.rs`) runs.
//!
//! Owns attaching receivers and turning a [`Settlement`] into accepted / released / rejected on the link the
//! delivery came from. It must never settle a delivery on its own, except one fe2o3 cannot decode (rejected, so
//! it is dead-lettered instead of redelivered forever).

use super::{convert, Engine};
use crate::transport::delivery::{spawn_consumer, ConsumerLink, LinkEvent};
use crate::transport::{Settlement, Subscription, TransportError};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::RecvError;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorFrame};
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value as AmqpValue;
use fe2o3_amqp::{Receiver, Session};

impl Engine {
    /// Attaches a receiver for `address` on a new session and hands it to a consumer task.
    pub(super) async fn subscribe(
        &self,
        address: &str,
        prefetch: u32,
    ) -> Result<Subscription, TransportError> {
        let receiver = {
            let mut links = self.link.lock().await;
            links.next_link += 1;
            let name = format!(
                "signbus-receiver-{}-{}",
                std::process::id(),
                links.next_link
            );
            let mut session = Session::begin(&mut links.connection)
                .await
                .map_err(|e| TransportError::Lost(format!("begin receiver session: {e}")))?;
            let receiver = Receiver::builder()
                .name(name)
                .source(address)
                .credit_mode(CreditMode::Auto(prefetch.max(1)))
                .auto_accept(false)
                .attach(&mut session)
                .await
                .map_err(|e| TransportError::Attach {
                    address: address.to_owned(),
                    reason: e.to_string(),
                })?;
            links.receiver_sessions.push(session);
            receiver
        };
        Ok(spawn_consumer(
            ReceiverLink { receiver },
            address,
            self.publish_timeout,
        ))
    }
}

/// An fe2o3 receiver as a [`ConsumerLink`].
struct ReceiverLink {
    receiver: Receiver,
}

impl ConsumerLink for ReceiverLink {
    type Handle = DeliveryInfo;

    async fn recv(&mut self) -> LinkEvent<DeliveryInfo> {
        match self.receiver.recv::<Body<AmqpValue>>().await {
            Ok(d) => {
                let (info, message) = d.into_parts();
                LinkEvent::Message(convert::from_amqp(message), info)
            }
            Err(RecvError::MessageDecode(e)) => {
                // A message fe2o3 cannot decode: settle it as rejected so it is dead-lettered, not redelivered
                // forever, and keep the link.
                tracing::warn!(error = %e.source, "rejecting an undecodable AMQP message");
                let reason = format!("undecodable AMQP message: {}", e.source);
                let err = AmqpErrorFrame::new(AmqpError::DecodeError, Some(reason), None);
                let _ = self.receiver.reject(e.info, err).await;
                LinkEvent::Skip
            }
            Err(e) => LinkEvent::Ended(e.to_string()),
        }
    }

    async fn settle(&mut self, info: DeliveryInfo, s: &Settlement) -> Result<(), TransportError> {
        dispose(&self.receiver, info, s).await
    }

    async fn stop_flow(&mut self) {
        self.receiver.set_credit_mode(CreditMode::Manual);
        let _ = self.receiver.set_credit(0).await;
    }

    async fn close(self) {
        let _ = self.receiver.close().await;
    }
}

async fn dispose(
    receiver: &Receiver,
    info: DeliveryInfo,
    s: &Settlement,
) -> Result<(), TransportError> {
    let r = match s {
        Settlement::Accept => receiver.accept(info).await,
        Settlement::Release => receiver.release(info).await,
        Settlement::Reject { reason } => {
            let err =
                AmqpErrorFrame::new(AmqpError::DecodeError, Some(truncate(reason, 1000)), None);
            receiver.reject(info, err).await
        }
    };
    r.map_err(|e| TransportError::Lost(e.to_string()))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
