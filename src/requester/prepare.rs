//! Building request messages exactly as pubtools-sign 1.0.6 lays them out.
//!
//! One message per input × key for container, clearsign and blob requests; for batch, claims grouped by
//! repository (first-seen order) and split into messages of `chunk_size`. Aliases from `key_aliases` are
//! expanded and the last 8 characters of the key are sent, as pubtools-sign does. Every body is checked
//! against its schema before anything is sent. No I/O happens here.

use super::{format_address, template_vars, MsgSignerConfig, PreparedRequest, RequestError};
use crate::claim::Claim;
use crate::reference::Reference;
use crate::wire::{RequestType, Schema};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// The keys and identity shared by every command.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// `--signing-key` (ids or aliases), in order.
    pub signing_keys: Vec<String>,
    /// `--signing-key-name`, paired with `signing_keys` when given.
    pub signing_key_names: Vec<String>,
    /// `--task-id`.
    pub task_id: String,
    /// `--requester`.
    pub requester: Option<String>,
}

/// What the user asked for in `msg-container-sign`.
#[derive(Debug, Clone, Default)]
pub struct ContainerSignInput {
    /// `--digest`, paired with `references`.
    pub digests: Vec<String>,
    /// `--reference`.
    pub references: Vec<String>,
    /// `--signing-key` (ids or aliases).
    pub signing_keys: Vec<String>,
    /// `--signing-key-name`, paired with `signing_keys` when given.
    pub signing_key_names: Vec<String>,
    /// `--task-id`.
    pub task_id: String,
    /// `--requester`.
    pub requester: Option<String>,
}

impl ContainerSignInput {
    fn common(&self) -> Common {
        Common {
            signing_keys: self.signing_keys.clone(),
            signing_key_names: self.signing_key_names.clone(),
            task_id: self.task_id.clone(),
            requester: self.requester.clone(),
        }
    }
}

/// A request builder for one run: the config, the requester name and the run's keys.
pub(super) struct Builder<'a> {
    cfg: &'a MsgSignerConfig,
    creator: &'a str,
    common: &'a Common,
    address: String,
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        cfg: &'a MsgSignerConfig,
        creator: &'a str,
        common: &'a Common,
    ) -> Result<Self, RequestError> {
        if !common.signing_key_names.is_empty()
            && common.signing_key_names.len() != common.signing_keys.len()
        {
            return Err(RequestError::UnpairedNames {
                names: common.signing_key_names.len(),
                keys: common.signing_keys.len(),
            });
        }
        let vars = template_vars(cfg, creator, &common.task_id, common.requester.as_deref());
        let address = format_address(&cfg.topic_send_to, &vars)?;
        Ok(Builder {
            cfg,
            creator,
            common,
            address,
        })
    }

    /// `key` after alias expansion, as pubtools-sign sends it (its last 8 characters).
    fn key_id(&self, key: &str) -> String {
        let key = self.cfg.key_aliases.get(key).map_or(key, String::as_str);
        key.chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    pub(super) fn headers(&self, kind: RequestType, extra: &[(&str, Value)]) -> Map<String, Value> {
        let mut h = Map::new();
        h.insert("service".into(), json!(self.cfg.service));
        h.insert("environment".into(), json!(self.cfg.environment));
        h.insert("owner_id".into(), json!(self.creator));
        h.insert("mtype".into(), json!(kind.as_str()));
        h.insert("source".into(), json!("metadata"));
        h.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        h
    }

    pub(super) fn finish(
        &self,
        kind: RequestType,
        body: Map<String, Value>,
        headers: Map<String, Value>,
    ) -> Result<PreparedRequest, RequestError> {
        let doc = Value::Object(body);
        Schema::for_request(kind)
            .validate(&doc)
            .map_err(|e| RequestError::Invalid(e.to_string()))?;
        let Value::Object(body) = doc else {
            unreachable!("built as an object")
        };
        let id = body
            .get(&self.cfg.message_id_key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(PreparedRequest {
            id,
            body,
            properties: headers,
            address: self.address.clone(),
        })
    }

    /// Adds what every request carries: a fresh `request_id`, `created` and `requested_by`.
    pub(super) fn stamp(&self, body: &mut Map<String, Value>) {
        body.insert("request_id".into(), json!(uuid::Uuid::new_v4().to_string()));
        body.insert("created".into(), json!(super::isodate_now()));
        body.insert("requested_by".into(), json!(self.creator));
    }

    /// One request per key for `data` under `data_attr` (pubtools-sign's `_create_msg_messages`).
    fn per_key(
        &self,
        kind: RequestType,
        data_attr: &str,
        data: &str,
        repo: Value,
        extra: &[(&str, Value)],
    ) -> Result<Vec<PreparedRequest>, RequestError> {
        let mut out = Vec::new();
        for (i, key) in self.common.signing_keys.iter().enumerate() {
            let mut body = Map::new();
            body.insert("sig_key_id".into(), json!(self.key_id(key)));
            body.insert(data_attr.into(), json!(data));
            self.stamp(&mut body);
            body.insert("repo".into(), repo.clone());
            if let Some(name) = self
                .common
                .signing_key_names
                .get(i)
                .filter(|n| !n.is_empty())
            {
                body.insert("sig_keyname".into(), json!(name));
            }
            body.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            out.push(self.finish(kind, body, self.headers(kind, extra))?);
        }
        Ok(out)
    }
}

fn claim_for(digest: &str, reference: &str, now: i64) -> Result<(Reference, String), RequestError> {
    let parsed = Reference::parse_normalized(reference)
        .map_err(|e| RequestError::Invalid(format!("--reference {reference:?}: {e}")))?;
    let claim = Claim::new(&parsed, digest, Some(now))
        .map_err(|e| RequestError::Invalid(format!("--digest {digest:?}: {e}")))?;
    Ok((parsed, STANDARD.encode(claim.to_json())))
}

fn check_pairs(input: &ContainerSignInput) -> Result<(), RequestError> {
    if input.digests.len() != input.references.len() {
        return Err(RequestError::Unpaired {
            digests: input.digests.len(),
            references: input.references.len(),
        });
    }
    Ok(())
}

/// One `container_signature` request per (reference, key), in pubtools-sign's order and layout.
pub fn prepare_container(
    cfg: &MsgSignerConfig,
    creator: &str,
    input: &ContainerSignInput,
) -> Result<Vec<PreparedRequest>, RequestError> {
    check_pairs(input)?;
    let common = input.common();
    let b = Builder::new(cfg, creator, &common)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = Vec::new();
    for (digest, reference) in input.digests.iter().zip(&input.references) {
        let (parsed, claim) = claim_for(digest, reference, now)?;
        let extra = [
            (cfg.task_id_attribute(), json!(input.task_id)),
            ("manifest_digest", json!(digest)),
        ];
        out.extend(b.per_key(
            RequestType::Container,
            "claim_file",
            &claim,
            json!(parsed.path()),
            &extra,
        )?);
    }
    Ok(out)
}

/// `batch` requests: claims grouped by repository, `chunk_size` claims per message, every claim with every key.
pub fn prepare_batch(
    cfg: &MsgSignerConfig,
    creator: &str,
    input: &ContainerSignInput,
) -> Result<Vec<PreparedRequest>, RequestError> {
    check_pairs(input)?;
    let common = input.common();
    let b = Builder::new(cfg, creator, &common)?;
    let chunk = cfg.chunk_size.unwrap_or(50).max(1);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    let key_ids: Vec<String> = input.signing_keys.iter().map(|k| b.key_id(k)).collect();
    let key_names = if input.signing_key_names.is_empty() {
        vec![String::new()]
    } else {
        input.signing_key_names.clone()
    };
    for (digest, reference) in input.digests.iter().zip(&input.references) {
        let (parsed, claim) = claim_for(digest, reference, now)?;
        let repo = parsed.path().to_owned();
        let entry = json!({
            "claim_file": claim, "sig_keynames": key_names, "sig_key_ids": key_ids,
            "manifest_digest": digest, "repo": repo,
        });
        match groups.iter_mut().find(|(r, _)| *r == repo) {
            Some((_, claims)) => claims.push(entry),
            None => groups.push((repo, vec![entry])),
        }
    }
    let mut out = Vec::new();
    for (_, claims) in groups {
        for part in claims.chunks(chunk) {
            let mut body = Map::new();
            body.insert("claims".into(), Value::Array(part.to_vec()));
            b.stamp(&mut body);
            body.insert("pipeline_run_id".into(), json!(input.task_id));
            let headers = b.headers(
                RequestType::Batch,
                &[("pipeline_run_id", json!(input.task_id))],
            );
            out.push(b.finish(RequestType::Batch, body, headers)?);
        }
    }
    Ok(out)
}

/// Text bytes as pubtools-sign sends them: latin-1 when every character fits, else UTF-8.
pub fn text_bytes(text: &str) -> Vec<u8> {
    if text.chars().all(|c| (c as u32) < 256) {
        text.chars().map(|c| c as u8).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// One `clearsign_signature` request per (input, key).
pub fn prepare_clearsign(
    cfg: &MsgSignerConfig,
    creator: &str,
    inputs: &[String],
    repo: Option<&str>,
    common: &Common,
) -> Result<Vec<PreparedRequest>, RequestError> {
    let b = Builder::new(cfg, creator, common)?;
    let mut out = Vec::new();
    for text in inputs {
        let data = STANDARD.encode(text_bytes(text));
        let extra = [(cfg.task_id_attribute(), json!(common.task_id))];
        out.extend(b.per_key(RequestType::ClearSign, "data", &data, json!(repo), &extra)?);
    }
    Ok(out)
}

/// One `gpg_signature` request per (blob, key).
pub fn prepare_blob(
    cfg: &MsgSignerConfig,
    creator: &str,
    blobs: &[Vec<u8>],
    common: &Common,
) -> Result<Vec<PreparedRequest>, RequestError> {
    let b = Builder::new(cfg, creator, common)?;
    let mut out = Vec::new();
    for blob in blobs {
        let extra = [(cfg.task_id_attribute(), json!(common.task_id))];
        out.extend(b.per_key(
            RequestType::Blob,
            "artifact",
            &STANDARD.encode(blob),
            json!(""),
            &extra,
        )?);
    }
    Ok(out)
}
