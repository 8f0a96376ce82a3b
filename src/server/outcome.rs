//! The decision vocabulary: how an answered request ended ([`Outcome`]), why one is dead-lettered instead
//! ([`RejectReason`]), and what the consume loop must do with a delivery ([`Decision`], [`Handled`]).
//!
//! Bounded sets only (they are metric labels). This module decides nothing and never touches the broker.

use crate::transport::OutgoingMessage;

/// How an answered request ended: signed, or the class of its first error. A bounded set (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every signature was made.
    Signed,
    /// The properties or body break their JSON Schema.
    Schema,
    /// A base64 member (`claim_file`, `data`, `artifact`) does not decode.
    Encoding,
    /// The claim does not parse, or names another digest or repository than the request.
    Claim,
    /// The request names a key this server does not hold, ambiguously, or inconsistently.
    Key,
    /// The signer failed (gpg error, pool shut down), on every attempt.
    Signer,
    /// The request is past its deadline or too old.
    Expired,
    /// The request id was used before for a different request.
    Conflict,
    /// The request body is over the size limit.
    TooLarge,
    /// The requester may not use the key (or not for the repository).
    Forbidden,
    /// The request was delivered too many times without being settled.
    Redelivered,
    /// Clearsign or blob data that would pass for an image signature claim.
    CrossType,
}

impl Outcome {
    /// Every outcome, for documentation and tests that must cover them all.
    pub const ALL: [Outcome; 12] = [
        Outcome::Signed,
        Outcome::Schema,
        Outcome::Encoding,
        Outcome::Claim,
        Outcome::Key,
        Outcome::Signer,
        Outcome::Expired,
        Outcome::Conflict,
        Outcome::TooLarge,
        Outcome::Forbidden,
        Outcome::Redelivered,
        Outcome::CrossType,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Signed => "signed",
            Outcome::Schema => "schema",
            Outcome::Encoding => "encoding",
            Outcome::Claim => "claim",
            Outcome::Key => "key",
            Outcome::Signer => "signer",
            Outcome::Expired => "expired",
            Outcome::Conflict => "conflict",
            Outcome::TooLarge => "too_large",
            Outcome::Forbidden => "forbidden",
            Outcome::Redelivered => "redelivered",
            Outcome::CrossType => "cross_type",
        }
    }
}

/// Why a message is rejected (dead-lettered) instead of answered. A bounded set (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The body is not a JSON object.
    Undecodable,
    /// No `request_id`: a reply could not be correlated.
    NoRequestId,
    /// Neither `reply-to` nor a fillable reply template.
    NoReplyAddress,
    /// Our reply would break the reply schema.
    InvalidReply,
    /// The broker refused or could not route the reply.
    ReplyUndeliverable,
}

impl RejectReason {
    /// Every reason, for documentation and tests that must cover them all.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::Undecodable,
        RejectReason::NoRequestId,
        RejectReason::NoReplyAddress,
        RejectReason::InvalidReply,
        RejectReason::ReplyUndeliverable,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Undecodable => "undecodable",
            RejectReason::NoRequestId => "no_request_id",
            RejectReason::NoReplyAddress => "no_reply_address",
            RejectReason::InvalidReply => "invalid_reply",
            RejectReason::ReplyUndeliverable => "reply_undeliverable",
        }
    }
}

/// What to do with a delivery.
#[derive(Debug)]
pub enum Decision {
    /// Publish this reply, then accept the request once the broker settled the reply.
    Reply {
        /// The reply message.
        message: OutgoingMessage,
        /// Signed, or the class of the error the reply reports.
        outcome: Outcome,
    },
    /// The message cannot be answered; reject it (dead-letter).
    Reject {
        /// For the log and the broker.
        reason: String,
        /// For metrics.
        class: RejectReason,
    },
}

/// A decision with what the server needs to account for it.
#[derive(Debug)]
pub struct Handled {
    /// What to do.
    pub decision: Decision,
    /// Request type label: an `mtype`, or `unknown`.
    pub kind: &'static str,
    /// Configured key label (name, else last 16 hex digits), `multiple` for batches over several keys, or
    /// `unknown`.
    pub key: String,
    /// The request's span; enter it for everything done about this request.
    pub span: tracing::Span,
}
