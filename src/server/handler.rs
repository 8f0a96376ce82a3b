//! One request in, one decision out: validate, sign, and build the reply — or decide to reject.
//!
//! [`Handler::handle`] never fails and never touches the broker: every problem with a request that can be
//! answered becomes an error reply naming the problem (and no signature); a message that cannot be answered at
//! all (not JSON, no request id, no reply address) becomes [`Decision::Reject`] for the broker to dead-letter.

use super::reply_address::reply_address;
use crate::claim::Claim;
use crate::signing::{KeyRing, SignMode, Signer};
use crate::transport::{IncomingMessage, OutgoingMessage};
use crate::wire::{self, ContainerRequest, Reply, RequestType, Schema};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What to do with a delivery.
#[derive(Debug)]
pub enum Decision {
    /// Publish this reply, then accept the request once the broker settled the reply.
    Reply {
        /// The reply message.
        message: OutgoingMessage,
        /// Whether the reply carries a signature (for logs and counters).
        signed: bool,
    },
    /// The message cannot be answered; reject it (dead-letter) with this reason.
    Reject(String),
}

/// Everything a request needs: keys, signer, and reply addressing.
pub struct Handler<S> {
    signer: Arc<S>,
    keys: KeyRing,
    reply_template: Option<String>,
    task_id_attributes: Vec<String>,
}

impl<S: Signer> Handler<S> {
    /// A handler signing with `signer` using `keys`; replies without `reply-to` go to `reply_template`.
    pub fn new(
        signer: Arc<S>,
        keys: KeyRing,
        reply_template: Option<String>,
        task_id_attributes: Vec<String>,
    ) -> Self {
        Handler {
            signer,
            keys,
            reply_template,
            task_id_attributes,
        }
    }

    /// Decides what to do with one message.
    pub async fn handle(&self, msg: &IncomingMessage) -> Decision {
        let body = match wire::decode_object(&msg.body) {
            Ok(b) => b,
            Err(e) => return Decision::Reject(e.to_string()),
        };
        if !matches!(body.get("request_id"), Some(Value::String(s)) if !s.is_empty()) {
            return Decision::Reject(
                "request has no request_id: a reply could not be correlated".into(),
            );
        }
        let address = match reply_address(
            msg.reply_to.as_deref(),
            self.reply_template.as_deref(),
            &body,
            &msg.properties,
            &self.task_id_attributes,
        ) {
            Ok(a) => a,
            Err(e) => return Decision::Reject(format!("no reply address: {e}")),
        };
        let mtype = msg
            .properties
            .get("mtype")
            .and_then(Value::as_str)
            .and_then(RequestType::from_mtype);
        let kind = mtype.unwrap_or(RequestType::Container);
        let outcome =
            match Schema::RequestProperties.validate(&Value::Object(msg.properties.clone())) {
                Err(e) => Err(vec![e.to_string()]),
                Ok(()) => match kind {
                    RequestType::Container => self.container(&body, &msg.properties).await,
                    other => Err(vec![format!(
                        "request type {:?} is not supported by this server",
                        other.as_str()
                    )]),
                },
            };
        let signed = outcome.is_ok();
        let reply = match outcome {
            Ok(sig) => Reply::signed(&body, kind, sig),
            Err(errors) => Reply::failed(&body, kind, errors),
        };
        let reply = reply.to_value();
        if let Err(e) = Schema::Reply.validate(&reply) {
            // Our own reply must match our schema; a request member shadowing ours could break that.
            return Decision::Reject(format!("reply would not match its schema: {e}"));
        }
        Decision::Reply {
            message: OutgoingMessage {
                address,
                body: reply.to_string(),
                properties: msg.properties.clone(),
                reply_to: None,
                ttl: None,
                durable: false,
            },
            signed,
        }
    }

    async fn container(
        &self,
        body: &Map<String, Value>,
        props: &Map<String, Value>,
    ) -> Result<String, Vec<String>> {
        let one = |e: String| vec![e];
        Schema::ContainerRequest
            .validate(&Value::Object(body.clone()))
            .map_err(|e| one(e.to_string()))?;
        let req: ContainerRequest = serde_json::from_value(Value::Object(body.clone()))
            .map_err(|e| one(format!("request body: {e}")))?;
        let claim_bytes = STANDARD
            .decode(req.claim_file.as_bytes())
            .map_err(|e| one(format!("claim_file is not valid base64: {e}")))?;
        let claim = Claim::parse(&claim_bytes).map_err(|e| one(e.to_string()))?;
        let digest = req.manifest_digest().unwrap_or_default();
        if claim.manifest_digest != digest {
            return Err(one(format!(
                "claim names manifest digest {} but the request's manifest_digest is {digest}",
                claim.manifest_digest
            )));
        }
        if let Some(p) = props.get("manifest_digest").and_then(Value::as_str) {
            if p != digest {
                return Err(one(format!(
                    "manifest_digest property {p} differs from the body's {digest}"
                )));
            }
        }
        if !claim.reference().path_matches(&req.repo) {
            return Err(one(format!(
                "claim names {} which is not in the request's repo {:?}",
                claim.docker_reference, req.repo
            )));
        }
        let key = self
            .keys
            .lookup(Some(&req.sig_key_id), req.sig_keyname.as_deref())
            .map_err(|e| one(e.to_string()))?;
        let sig = self
            .signer
            .sign(&key.fingerprint, SignMode::Normal, claim_bytes)
            .await
            .map_err(|e| one(e.to_string()))?;
        Ok(STANDARD.encode(sig))
    }
}
