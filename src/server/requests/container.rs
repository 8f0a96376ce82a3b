//! `container_signature`: one claim, one key. The claim must parse strictly and name the request's digest and a
//! reference inside its repository; the `manifest_digest` property, when sent, must agree with the body.

use super::{checked_claim, Refusal};
use crate::server::authorize::Identity;
use crate::server::signatory::{SignJob, Signatory};
use crate::signing::{SignMode, Signer};
use crate::wire::{ContainerRequest, RequestType};
use serde_json::{Map, Value};

/// Checks the claim and signs it as a binary signed message.
pub(super) async fn sign<S: Signer>(
    signatory: &Signatory<S>,
    r: &ContainerRequest,
    properties: &Map<String, Value>,
    who: &Identity,
) -> Result<String, Refusal> {
    let digest = r.manifest_digest().unwrap_or_default();
    if let Some(p) = properties.get("manifest_digest").and_then(Value::as_str) {
        if p != digest {
            return Err(Refusal::DigestProperty {
                property: p.to_owned(),
                body: digest.to_owned(),
            });
        }
    }
    let (claim, _) = checked_claim(&r.claim_file, digest, &r.repo)?;
    signatory
        .sign(SignJob {
            kind: RequestType::Container,
            key_id: &r.sig_key_id,
            key_name: r.sig_keyname.as_deref(),
            mode: SignMode::Normal,
            data: claim,
            who,
            repo: Some(&r.repo),
        })
        .await
}
