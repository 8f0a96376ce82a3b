//! `gpg_signature`: a binary detached signature over a blob, which must not be a claim look-alike.

use super::{decode, named_repo, not_a_claim, Refusal};
use crate::server::authorize::Identity;
use crate::server::signatory::{SignJob, Signatory};
use crate::signing::{SignMode, Signer};
use crate::wire::{BlobRequest, RequestType};

/// Decodes the blob, refuses a claim look-alike, and signs it detached.
pub(super) async fn sign<S: Signer>(
    signatory: &Signatory<S>,
    r: &BlobRequest,
    who: &Identity,
) -> Result<String, Refusal> {
    let data = not_a_claim(decode("artifact", &r.artifact)?)?;
    signatory
        .sign(SignJob {
            kind: RequestType::Blob,
            key_id: &r.sig_key_id,
            key_name: r.sig_keyname.as_deref(),
            mode: SignMode::Detached { armor: false },
            data,
            who,
            repo: named_repo(&r.repo),
        })
        .await
}
