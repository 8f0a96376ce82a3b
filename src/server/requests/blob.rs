//! `gpg_signature`: a binary detached signature over a blob, which must not be a claim look-alike.

use super::{Refusal, UncheckedData};
use crate::server::authorize::Identity;
use crate::server::signatory::Signatory;
use crate::signing::{SignMode, Signer};
use crate::wire::{BlobRequest, RequestType};

/// Decodes the blob, refuses a claim look-alike, and signs it detached (binary).
pub(super) async fn sign<S: Signer>(
    signatory: &Signatory<S>,
    r: &BlobRequest,
    who: &Identity,
) -> Result<String, Refusal> {
    let data = UncheckedData {
        kind: RequestType::Blob,
        member: "artifact",
        b64: &r.artifact,
        key_id: &r.sig_key_id,
        key_name: r.sig_keyname.as_deref(),
        repo: r.repo.as_deref(),
    };
    data.sign(signatory, SignMode::Detached { armor: false }, who)
        .await
}
