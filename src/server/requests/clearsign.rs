//! `clearsign_signature`: a cleartext signature over text, which must not be a claim look-alike.

use super::{Refusal, UncheckedData};
use crate::server::authorize::Identity;
use crate::server::signatory::Signatory;
use crate::signing::{SignMode, Signer};
use crate::wire::{ClearSignRequest, RequestType};

/// Decodes the text, refuses a claim look-alike, and clearsigns it.
pub(super) async fn sign<S: Signer>(
    signatory: &Signatory<S>,
    r: &ClearSignRequest,
    who: &Identity,
) -> Result<String, Refusal> {
    let data = UncheckedData {
        kind: RequestType::ClearSign,
        member: "data",
        b64: &r.data,
        key_id: &r.sig_key_id,
        key_name: r.sig_keyname.as_deref(),
        repo: r.repo.as_deref(),
    };
    data.sign(signatory, SignMode::Clear, who).await
}
