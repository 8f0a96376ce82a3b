//! One request in, one decision out: validate, sign, and build the reply — or decide to reject.
//!
//! [`Handler::handle`] never fails and never touches the broker: every problem with a request that can be
//! answered becomes an error reply naming the problem (and no signature); a message that cannot be answered at
//! all (not JSON, no request id, no reply address) becomes [`Decision::Reject`] for the broker to dead-letter.

use super::reply_address::reply_address;
use crate::claim::Claim;
use crate::signing::{KeyRing, SignMode, Signer};
use crate::transport::{IncomingMessage, OutgoingMessage};
use crate::wire::{self, Reply, RequestType, Schema};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
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
        let (fields, errors) =
            match Schema::RequestProperties.validate(&Value::Object(msg.properties.clone())) {
                Err(e) => (Map::new(), vec![e.to_string()]),
                Ok(()) => match Schema::for_request(kind).validate(&Value::Object(body.clone())) {
                    Err(e) => (Map::new(), vec![e.to_string()]),
                    Ok(()) => self.sign_request(kind, &body, &msg.properties).await,
                },
            };
        let signed = errors.is_empty();
        let reply = Reply::new(&body, kind, fields, errors);
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

    /// Signs a schema-valid request; returns the reply's result members and its errors.
    async fn sign_request(
        &self,
        kind: RequestType,
        body: &Map<String, Value>,
        props: &Map<String, Value>,
    ) -> (Map<String, Value>, Vec<String>) {
        let single = |r: Result<String, String>| match r {
            Ok(sig) => (
                Map::from_iter([(kind.result_field().to_owned(), Value::String(sig))]),
                Vec::new(),
            ),
            Err(e) => (Map::new(), vec![e]),
        };
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        let key_name = body.get("sig_keyname").and_then(Value::as_str);
        match kind {
            RequestType::Container => {
                let digest = text("manifest_digest");
                if let Some(p) = props.get("manifest_digest").and_then(Value::as_str) {
                    if p != digest {
                        return single(Err(format!(
                            "manifest_digest property {p} differs from the body's {digest}"
                        )));
                    }
                }
                let claim = match checked_claim(text("claim_file"), digest, text("repo")) {
                    Ok((bytes, _)) => bytes,
                    Err(e) => return single(Err(e)),
                };
                single(
                    self.sign_with(text("sig_key_id"), key_name, SignMode::Normal, claim)
                        .await,
                )
            }
            RequestType::ClearSign => match decode("data", text("data")) {
                Ok(data) => single(
                    self.sign_with(text("sig_key_id"), key_name, SignMode::Clear, data)
                        .await,
                ),
                Err(e) => single(Err(e)),
            },
            RequestType::Blob => match decode("artifact", text("artifact")) {
                Ok(data) => {
                    let mode = SignMode::Detached { armor: false };
                    single(
                        self.sign_with(text("sig_key_id"), key_name, mode, data)
                            .await,
                    )
                }
                Err(e) => single(Err(e)),
            },
            RequestType::Batch => self.batch(body).await,
        }
    }

    /// Resolves the key a request names and signs `data` with it; the result is base64.
    async fn sign_with(
        &self,
        key_id: &str,
        key_name: Option<&str>,
        mode: SignMode,
        data: Vec<u8>,
    ) -> Result<String, String> {
        let key = self
            .keys
            .lookup(Some(key_id), key_name)
            .map_err(|e| e.to_string())?;
        let sig = self
            .signer
            .sign(&key.fingerprint, mode, data)
            .await
            .map_err(|e| e.to_string())?;
        Ok(STANDARD.encode(sig))
    }

    /// Every claim × key of a batch, each validated and signed on its own, concurrently, in request order.
    async fn batch(&self, body: &Map<String, Value>) -> (Map<String, Value>, Vec<String>) {
        let claims = body
            .get("claims")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut jobs = Vec::new();
        for (index, claim) in claims.iter().enumerate() {
            let text = |k: &str| {
                claim
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let strings = |k: &str| -> Vec<String> {
                let items = claim.get(k).and_then(Value::as_array).into_iter().flatten();
                items.filter_map(Value::as_str).map(str::to_owned).collect()
            };
            let checked =
                checked_claim(&text("claim_file"), &text("manifest_digest"), &text("repo"));
            let names = strings("sig_keynames");
            for (k, key_id) in strings("sig_key_ids").into_iter().enumerate() {
                let key_name = names.get(k).filter(|n| !n.is_empty()).cloned();
                let (digest, repo, checked) =
                    (text("manifest_digest"), text("repo"), checked.clone());
                jobs.push(async move {
                    let reference = checked.as_ref().ok().map(|(_, r)| r.clone());
                    let result = match checked {
                        Ok((bytes, _)) => {
                            self.sign_with(&key_id, key_name.as_deref(), SignMode::Normal, bytes)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    let (signed, errors) = match result {
                        Ok(sig) => (Value::String(sig), Vec::new()),
                        Err(e) => (Value::Null, vec![Value::String(e)]),
                    };
                    json!({
                        "claim_index": index, "sig_key_id": key_id, "sig_keyname": key_name,
                        "manifest_digest": digest, "repo": repo, "docker_reference": reference,
                        "signed_claim": signed, "errors": errors,
                    })
                });
            }
        }
        let signatures = futures_util::future::join_all(jobs).await;
        let mut errors = Vec::new();
        for s in &signatures {
            for e in s["errors"].as_array().into_iter().flatten() {
                let key = s["sig_key_id"].as_str().unwrap_or_default();
                errors.push(format!(
                    "claim {} key {key}: {}",
                    s["claim_index"],
                    e.as_str().unwrap_or_default()
                ));
            }
        }
        let mut fields = Map::new();
        if errors.is_empty() {
            let all: Vec<&str> = signatures
                .iter()
                .filter_map(|s| s["signed_claim"].as_str())
                .collect();
            fields.insert("signed_claim".into(), Value::String(all.join("\n")));
        }
        fields.insert("signatures".into(), Value::Array(signatures));
        (fields, errors)
    }
}

/// Decodes a base64 member, naming it in the error.
fn decode(member: &str, b64: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("{member} is not valid base64: {e}"))
}

/// Decodes and strictly parses a claim, and checks it names `digest` and a reference inside `repo`.
/// Returns the exact claim bytes (what gets signed) and the claim's docker reference.
fn checked_claim(claim_file: &str, digest: &str, repo: &str) -> Result<(Vec<u8>, String), String> {
    let bytes = decode("claim_file", claim_file)?;
    let claim = Claim::parse(&bytes).map_err(|e| e.to_string())?;
    if claim.manifest_digest != digest {
        return Err(format!(
            "claim names manifest digest {} but the request's manifest_digest is {digest}",
            claim.manifest_digest
        ));
    }
    if !claim.reference().path_matches(repo) {
        return Err(format!(
            "claim names {} which is not in the request's repo {repo:?}",
            claim.docker_reference
        ));
    }
    Ok((bytes, claim.docker_reference))
}
