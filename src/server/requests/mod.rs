//! One file per request type: the checks and the signing that type needs, over its typed body.
//!
//! [`sign`] dispatches a schema-valid [`Request`] to its type's module and returns the reply's result members,
//! its errors and the outcome ([`Signed`]). The checks every type shares (base64 members, claims, claim
//! look-alikes) live here. Nothing here touches the broker, the reply cache or deadlines: the handler did those.

mod batch;
mod blob;
mod clearsign;
mod container;
mod cosign;
#[cfg(test)]
mod cosign_tests;

#[cfg(test)]
pub(crate) use batch::IN_FLIGHT as BATCH_IN_FLIGHT;

use super::authorize::Identity;
use super::outcome::Outcome;
use super::refusal::Refusal;
use super::signatory::Signatory;
use crate::claim::Claim;
use crate::signing::Signer;
use crate::wire::{Request, RequestType};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

/// What signing a request produced: the reply's result members, its errors (empty when signed) and the outcome.
pub struct Signed {
    /// Result members to add to the reply.
    pub fields: Map<String, Value>,
    /// Error messages for the reply.
    pub errors: Vec<String>,
    /// Signed, or the class of the first error.
    pub outcome: Outcome,
}

impl Signed {
    /// A request refused before any signature: no result, one error.
    pub fn refused(r: Refusal) -> Self {
        Signed {
            fields: Map::new(),
            errors: vec![r.to_string()],
            outcome: r.outcome(),
        }
    }

    /// A single-signature request's result under its type's result member.
    fn single(kind: RequestType, result: Result<String, Refusal>) -> Self {
        match result {
            Ok(sig) => Signed {
                fields: Map::from_iter([(kind.result_field().to_owned(), Value::String(sig))]),
                errors: Vec::new(),
                outcome: Outcome::Signed,
            },
            Err(r) => Signed::refused(r),
        }
    }
}

/// Checks and signs a schema-valid request for `who`; `properties` are the message's application properties.
pub async fn sign<S: Signer>(
    signatory: &Signatory<S>,
    request: &Request,
    properties: &Map<String, Value>,
    who: &Identity,
) -> Signed {
    let kind = request.kind();
    match request {
        Request::Container(r) => {
            Signed::single(kind, container::sign(signatory, r, properties, who).await)
        }
        Request::ClearSign(r) => Signed::single(kind, clearsign::sign(signatory, r, who).await),
        Request::Blob(r) => Signed::single(kind, blob::sign(signatory, r, who).await),
        Request::Batch(r) => batch::sign(signatory, r, who).await,
        Request::Cosign(r) => cosign::sign(signatory, r, who),
    }
}

/// Decodes a base64 member, naming it in the error.
fn decode(member: &'static str, b64: &str) -> Result<Vec<u8>, Refusal> {
    STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| Refusal::Encoding {
            member,
            reason: e.to_string(),
        })
}

/// Refuses clearsign and blob data that an image-signature verifier would take as an atomic container signature
/// claim: signing it would make a signature that containers/image (skopeo, podman) accepts for an image,
/// bypassing every container check. See [`crate::claim::looks_like_claim`].
fn not_a_claim(data: Vec<u8>) -> Result<Vec<u8>, Refusal> {
    if crate::claim::looks_like_claim(&data) {
        return Err(Refusal::CrossType);
    }
    Ok(data)
}

/// What clearsign and blob requests share: base64 data the server cannot check beyond refusing a claim
/// look-alike, and a repository it cannot verify (an empty one, as pubtools-sign sends for blobs, names none).
struct UncheckedData<'a> {
    kind: RequestType,
    member: &'static str,
    b64: &'a str,
    key_id: &'a str,
    key_name: Option<&'a str>,
    repo: Option<&'a str>,
}

impl UncheckedData<'_> {
    /// Decodes the data, refuses a claim look-alike, and signs it in `mode`.
    async fn sign<S: Signer>(
        self,
        signatory: &Signatory<S>,
        mode: crate::signing::SignMode,
        who: &Identity,
    ) -> Result<String, Refusal> {
        let data = not_a_claim(decode(self.member, self.b64)?)?;
        let job = super::signatory::SignJob {
            kind: self.kind,
            key_id: self.key_id,
            key_name: self.key_name,
            mode,
            data,
            who,
            repo: self.repo.filter(|r| !r.is_empty()),
        };
        signatory.sign(job).await
    }
}

/// Decodes and strictly parses a claim, and checks it names `digest` and a reference inside `repo`.
/// Returns the exact claim bytes (what gets signed) and the claim.
fn checked_claim(claim_file: &str, digest: &str, repo: &str) -> Result<(Vec<u8>, Claim), Refusal> {
    let bytes = decode("claim_file", claim_file)?;
    let claim = Claim::parse(&bytes)?;
    if claim.manifest_digest() != digest {
        return Err(Refusal::ClaimDigest {
            claim: claim.manifest_digest().to_string(),
            request: digest.to_owned(),
        });
    }
    if !claim.reference().path_matches(repo) {
        return Err(Refusal::ClaimRepository {
            reference: claim.docker_reference().to_owned(),
            repo: repo.to_owned(),
        });
    }
    Ok((bytes, claim))
}
