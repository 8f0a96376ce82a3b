//! `batch`: many claims, each signed with each of its keys. Every claim × key is checked and signed on its own,
//! at most [`IN_FLIGHT`] at a time; the reply lists one result per pair in request order, and `signed_claim`
//! joins them only when all were signed.

use super::{checked_claim, Refusal, Signed};
use crate::server::authorize::Identity;
use crate::server::outcome::Outcome;
use crate::server::signatory::{SignJob, Signatory};
use crate::signing::{SignMode, Signer};
use crate::wire::{BatchRequest, RequestType};
use serde_json::{json, Map, Value};

/// How many of a batch's signatures may wait in the signer's queue at once. Enough to keep every signing thread
/// busy; small enough that a 10 000-claim batch does not queue 10 000 jobs (and their claims) at once. With
/// `server.max_in_flight` requests this bounds the signer's queue to `max_in_flight × IN_FLIGHT` jobs, and the
/// queue's round robin between requests keeps single requests flowing beside a batch.
pub(crate) const IN_FLIGHT: usize = 64;

/// Signs every claim × key of `r` for `who`.
pub(super) async fn sign<S: Signer>(
    signatory: &Signatory<S>,
    r: &BatchRequest,
    who: &Identity,
) -> Signed {
    let mut jobs = Vec::new();
    for (index, claim) in r.claims.iter().enumerate() {
        let checked = checked_claim(
            &claim.claim_file,
            claim.manifest_digest.as_str(),
            &claim.repo,
        );
        for (key_id, key_name) in claim.keys() {
            let checked = checked.clone();
            jobs.push(async move {
                let reference = checked
                    .as_ref()
                    .ok()
                    .map(|(_, c)| c.docker_reference().to_owned());
                let result: Result<String, Refusal> = match checked {
                    Ok((bytes, _)) => {
                        let job = SignJob {
                            kind: RequestType::Batch,
                            key_id,
                            key_name,
                            mode: SignMode::Normal,
                            data: bytes,
                            who,
                            repo: Some(&claim.repo),
                        };
                        signatory.sign(job).await
                    }
                    Err(e) => Err(e),
                };
                let (signed, error, outcome) = match result {
                    Ok(sig) => (Value::String(sig), None, Outcome::Signed),
                    Err(r) => (Value::Null, Some(r.to_string()), r.outcome()),
                };
                let doc = json!({
                    "claim_index": index, "sig_key_id": key_id, "sig_keyname": key_name,
                    "manifest_digest": claim.manifest_digest, "repo": claim.repo,
                    "docker_reference": reference, "signed_claim": signed,
                    "errors": error.iter().collect::<Vec<_>>(),
                });
                (doc, error, outcome)
            });
        }
    }
    let results: Vec<_> = {
        use futures_util::StreamExt;
        futures_util::stream::iter(jobs)
            .buffered(IN_FLIGHT)
            .collect()
            .await
    };
    let outcome = results
        .iter()
        .map(|(_, _, o)| *o)
        .find(|o| *o != Outcome::Signed)
        .unwrap_or(Outcome::Signed);
    let mut errors = Vec::new();
    let mut signatures = Vec::with_capacity(results.len());
    for (doc, error, _) in results {
        if let Some(e) = error {
            let key = doc["sig_key_id"].as_str().unwrap_or_default();
            errors.push(format!("claim {} key {key}: {e}", doc["claim_index"]));
        }
        signatures.push(doc);
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
    Signed {
        fields,
        errors,
        outcome,
    }
}
