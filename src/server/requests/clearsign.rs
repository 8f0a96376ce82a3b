//! `clearsign_signature`: a cleartext signature over text, which must not be a claim look-alike.

use super::{decode, named_repo, not_a_claim, Refusal};
use crate::server::authorize::Identity;
use crate::server::signatory::{SignJob, Signatory};
use crate::signing::{SignMode, Signer};
use crate::wire::{ClearSignRequest, RequestType};

/// Decodes the text, refuses a claim look-alike, and clearsigns it.
pub(super) async fn sign<S: Signer>(
    signatory: &Signatory<S>,
    r: &ClearSignRequest,
    who: &Identity,
) -> Result<String, Refusal> {
    let data = not_a_claim(decode("data", &r.data)?)?;
    signatory
        .sign(SignJob {
            kind: RequestType::ClearSign,
            key_id: &r.sig_key_id,
            key_name: r.sig_keyname.as_deref(),
            mode: SignMode::Clear,
            data,
            who,
            repo: named_repo(&r.repo),
        })
        .await
}
