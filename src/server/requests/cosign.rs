//! `cosign_signature`: a cosign (sigstore) signature. The server builds the simple-signing payload itself from
//! the request's digest, identity and annotations — it never signs bytes it is handed — checks the requester may
//! use the cosign key for the identity's repository, signs, and replies with the payload and the signature.

use super::{Refusal, Signed};
use crate::cosign::Payload;
use crate::reference::Reference;
use crate::server::authorize::Identity;
use crate::server::outcome::Outcome;
use crate::server::signatory::{CosignJob, Signatory};
use crate::signing::Signer;
use crate::wire::CosignRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

/// Builds the payload `r` describes and signs it; the reply carries `cosign_payload`, `cosign_signature` and the
/// signing key's `cosign_public_key` (PEM).
pub(super) fn sign<S: Signer>(
    signatory: &Signatory<S>,
    r: &CosignRequest,
    who: &Identity,
) -> Signed {
    match payload_and_signature(signatory, r, who) {
        Ok((payload, signature, public_key)) => Signed {
            fields: Map::from_iter([
                ("cosign_payload".to_owned(), Value::String(payload)),
                ("cosign_public_key".to_owned(), Value::String(public_key)),
                ("cosign_signature".to_owned(), Value::String(signature)),
            ]),
            errors: Vec::new(),
            outcome: Outcome::Signed,
        },
        Err(refusal) => Signed::refused(refusal),
    }
}

fn payload_and_signature<S: Signer>(
    signatory: &Signatory<S>,
    r: &CosignRequest,
    who: &Identity,
) -> Result<(String, String, String), Refusal> {
    let payload = Payload::new(
        &r.identity,
        r.manifest_digest.as_str(),
        r.annotations.clone(),
    )?;
    // Payload::new parsed the identity; its repository path is what grants restrict.
    let repo = Reference::parse_normalized(&r.identity)
        .map(|i| i.path().to_owned())
        .unwrap_or_default();
    let bytes = payload.to_json();
    let (signature, public_key) = signatory.sign_cosign(CosignJob {
        key: &r.sig_key_id,
        payload: &bytes,
        who,
        repo: &repo,
    })?;
    Ok((STANDARD.encode(&bytes), signature, public_key))
}
