//! What can go wrong while talking to a broker, and what trying again can achieve.
//!
//! Owns the [`TransportError`] variants and their one classification ([`TransportError::is_permanent`],
//! [`TransportError::is_retryable`], [`TransportError::is_refused`]): callers decide what to do by asking these,
//! never by matching variants themselves. Nothing here talks to a broker.

use std::time::Duration;

/// What went wrong while talking to the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No broker in the list accepted a connection. Retry is safe (later, with backoff).
    #[error("cannot connect to any broker ({attempts}): {last}")]
    Connect { attempts: String, last: String },
    /// A broker URL could not be understood. Retrying will not help: fix the configuration.
    #[error("invalid broker URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The broker refused to attach a link to this address (missing queue, no permission).
    /// Retrying will not help until the topology or permissions change.
    #[error("broker refused address {address:?}: {reason}")]
    Attach { address: String, reason: String },
    /// The broker had no route for the message (AMQP 1.0 `released`, 0-9-1 `basic.return`): nobody could receive it.
    /// Nothing was delivered; retry only once a receiver exists.
    #[error("message to {address:?} could not be routed (no queue bound / nobody listening)")]
    Unroutable { address: String },
    /// The broker rejected the message (e.g. the exchange does not exist). Nothing was delivered.
    #[error("broker rejected message to {address:?}: {reason}")]
    Rejected { address: String, reason: String },
    /// The broker did not settle the message in time. It may or may not have been delivered.
    #[error("broker did not confirm message to {address:?} within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    /// The connection or link broke. Publishing may be retried on a new connection; unsettled deliveries
    /// will be redelivered by the broker.
    #[error("connection to broker lost: {0}")]
    Lost(String),
}

impl TransportError {
    /// True when reconnecting and trying again cannot help: the configuration or the broker's topology or
    /// permissions must change first (a malformed URL, an address the broker refuses).
    pub fn is_permanent(&self) -> bool {
        self.recovery() == Recovery::FixTheSetup
    }

    /// True when the connection is (or may be) the trouble: a new connection, later, may succeed where this one
    /// failed (no broker answered, the connection broke, the broker did not confirm in time).
    pub fn is_retryable(&self) -> bool {
        self.recovery() == Recovery::Reconnect
    }

    /// True when the broker refused this one message (no route, rejected): nothing was delivered, and sending
    /// the same message again will not help; the connection is fine.
    pub fn is_refused(&self) -> bool {
        self.recovery() == Recovery::NotThisMessage
    }

    /// The one place each error is classified: every variant in exactly one class.
    fn recovery(&self) -> Recovery {
        match self {
            TransportError::BadUrl { .. } | TransportError::Attach { .. } => Recovery::FixTheSetup,
            TransportError::Connect { .. }
            | TransportError::Lost(_)
            | TransportError::Timeout { .. } => Recovery::Reconnect,
            TransportError::Unroutable { .. } | TransportError::Rejected { .. } => {
                Recovery::NotThisMessage
            }
        }
    }
}

/// What can get past a [`TransportError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Only a change of configuration, topology or permissions.
    FixTheSetup,
    /// A new connection.
    Reconnect,
    /// Nothing for this message.
    NotThisMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_in_exactly_one_class() {
        let address = || "a".to_owned();
        let all = [
            TransportError::Connect {
                attempts: address(),
                last: address(),
            },
            TransportError::BadUrl {
                url: address(),
                reason: address(),
            },
            TransportError::Attach {
                address: address(),
                reason: address(),
            },
            TransportError::Unroutable { address: address() },
            TransportError::Rejected {
                address: address(),
                reason: address(),
            },
            TransportError::Timeout {
                address: address(),
                timeout: Duration::from_secs(1),
            },
            TransportError::Lost(address()),
        ];
        let classes: Vec<_> = all
            .iter()
            .map(|e| (e.is_permanent(), e.is_retryable(), e.is_refused()))
            .collect();
        assert_eq!(
            classes,
            [
                (false, true, false),
                (true, false, false),
                (true, false, false),
                (false, false, true),
                (false, false, true),
                (false, true, false),
                (false, true, false),
            ]
        );
    }
}
