//! Image signature validation: does policy.json accept this image, given the signatures in its lookaside store
//! and the sigstore signatures attached to it in its registry?
//!
//! [`Verifier::verify`] ties the parts together: [`policy`] picks the requirement list for the image,
//! [`registries_d`] picks the lookaside store and says whether sigstore attachments are read. For `signedBy`,
//! [`lookaside`] fetches the untrusted blobs and [`gpg`] checks each blob's cryptography against the
//! requirement's keys; for `sigstoreSigned`, [`attachments`] reads the `.sig` tag's layers and each is checked
//! against the requirement's P-256 public keys. Only then is the payload parsed
//! ([`crate::claim::Claim::parse`], [`crate::cosign::ParsedPayload::parse`]), its digest compared with the
//! image's and its reference checked with the requirement's [`identity`] rule. Each source is read only when a
//! requirement needs it. This module owns that order and the [`Report`]; it reads the key files a policy names
//! (policy is configuration that points at them), but it never reads configuration from fixed paths or the
//! environment and never writes to a store or a registry.

pub mod attachments;
pub mod gpg;
pub mod identity;
pub mod lookaside;
pub mod policy;
pub mod registries_d;
mod report;
mod signed_by;
mod sigstore;
mod verdict;

use report::simple;
pub use report::{Report, RequirementReport, SignatureVerdict};

use crate::reference::{self, Reference, ReferenceError};
use attachments::{Attachments, AttachmentsError};
use lookaside::{FetchLimits, FetchedSignature, LookasideError};
use policy::{Policy, Requirement};
use registries_d::{RegistriesD, RegistriesError};
use sha2::Digest as _;
use url::Url;

/// Why verification could not reach a verdict (as opposed to a verdict of "rejected").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The image reference is unusable.
    #[error("image reference {reference:?}: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A digest is malformed.
    #[error("{0}")]
    BadDigest(ReferenceError),
    /// No digest source was given.
    #[error("the image digest is unknown: give a digest, a manifest, or a reference with @digest")]
    NoDigest,
    /// Two digest sources disagree.
    #[error("digests disagree: {0}")]
    DigestConflict(String),
    /// registries.d could not be used.
    #[error(transparent)]
    Registries(#[from] RegistriesError),
    /// The lookaside store could not be read.
    #[error(transparent)]
    Lookaside(#[from] LookasideError),
    /// The sigstore attachments could not be read from the registry.
    #[error(transparent)]
    Attachments(#[from] AttachmentsError),
}

/// The image's manifest digest, from `--digest`, the reference's `@digest`, and/or the manifest itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigest {
    digest: String,
    manifest: Option<Vec<u8>>,
}

impl ImageDigest {
    /// Combines the sources; every one given must agree. With a manifest, a signed digest matches when it is
    /// the manifest's digest under the signed digest's algorithm (sha256 or sha512).
    pub fn new(
        reference_digest: Option<&str>,
        digest: Option<&str>,
        manifest: Option<Vec<u8>>,
    ) -> Result<Self, VerifyError> {
        for d in reference_digest.iter().chain(digest.iter()) {
            reference::validate_digest(d).map_err(VerifyError::BadDigest)?;
        }
        if let (Some(a), Some(b)) = (reference_digest, digest) {
            if a != b {
                return Err(VerifyError::DigestConflict(format!(
                    "the reference names {a} but the digest given is {b}"
                )));
            }
        }
        let given = digest.or(reference_digest).map(str::to_owned);
        let digest = match (&given, &manifest) {
            (Some(d), Some(m)) => {
                let actual = manifest_digest(m, d).expect("validated digest");
                if &actual != d {
                    return Err(VerifyError::DigestConflict(format!(
                        "the manifest's digest is {actual}, not {d}"
                    )));
                }
                d.clone()
            }
            (Some(d), None) => d.clone(),
            (None, Some(m)) => manifest_digest(m, "sha256:").expect("sha256"),
            (None, None) => return Err(VerifyError::NoDigest),
        };
        Ok(ImageDigest { digest, manifest })
    }

    /// The digest that names the image (and its lookaside directory).
    pub fn as_str(&self) -> &str {
        &self.digest
    }

    /// Whether a (verified) signed digest names this image.
    pub fn matches(&self, signed: &str) -> bool {
        match &self.manifest {
            Some(m) => manifest_digest(m, signed).as_deref() == Some(signed),
            None => signed == self.digest,
        }
    }
}

/// `algo:hex` of `manifest` using the algorithm named by `like` (`sha256:…` or `sha512:…`).
fn manifest_digest(manifest: &[u8], like: &str) -> Option<String> {
    match like.split_once(':')?.0 {
        "sha256" => Some(format!("sha256:{:x}", sha2::Sha256::digest(manifest))),
        "sha512" => Some(format!("sha512:{:x}", sha2::Sha512::digest(manifest))),
        _ => None,
    }
}

/// Parses an image reference the way the `docker` transport does: normalised, `latest` when it names neither
/// tag nor digest, and not both a tag and a digest.
pub fn image_reference(s: &str) -> Result<Reference, VerifyError> {
    let bad = |reason: String| VerifyError::BadReference {
        reference: s.to_owned(),
        reason,
    };
    let r = Reference::parse_normalized(s)
        .map_err(|e| bad(e.to_string()))?
        .with_default_tag();
    if r.tag().is_some() && r.digest().is_some() {
        return Err(bad(
            "references with both a tag and a digest are not supported".to_owned(),
        ));
    }
    Ok(r)
}

/// Checks images against a policy.
#[derive(Debug)]
pub struct Verifier<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The registries.d configuration.
    pub registries: &'a RegistriesD,
    /// Store to read when registries.d configures none (containers/image uses a local directory).
    pub default_lookaside: Option<Url>,
    /// Fetch caps (also for sigstore attachments: count of signature layers, size of each).
    pub limits: FetchLimits,
    /// How to reach the image's registry for sigstore attachments (auth, TLS, plain http); the size caps come
    /// from `limits`.
    pub registry: crate::registry::ClientOptions,
}

impl Verifier<'_> {
    /// Evaluates the policy for `image` (from [`image_reference`]) at `digest`. Blocking: runs gpg and I/O.
    pub fn verify(&self, image: &Reference, digest: &ImageDigest) -> Result<Report, VerifyError> {
        let (reqs, scope) = self.policy.requirements_for(image);
        let needs_signatures = reqs.iter().any(|r| matches!(r, Requirement::SignedBy(_)));
        let mut lookaside = None;
        let mut fetched: Option<Vec<FetchedSignature>> = None;
        if needs_signatures {
            let base = match self.registries.lookaside_base(image, false)? {
                Some(b) => {
                    lookaside = Some(format!(
                        "{} ({} of {} in {})",
                        lookaside::redacted(&b.url),
                        b.key,
                        b.scope,
                        b.file.display()
                    ));
                    Some(b.url)
                }
                None => self.default_lookaside.clone().inspect(|u| {
                    lookaside = Some(format!(
                        "{} (built-in default: registries.d configures none)",
                        lookaside::redacted(u)
                    ));
                }),
            };
            if let Some(base) = base {
                let dir = lookaside::signature_dir_url(&base, image, digest.as_str())?;
                lookaside = lookaside
                    .map(|l| format!("{l}; signatures under {}", lookaside::redacted(&dir)));
                fetched = Some(lookaside::fetch_signatures(
                    &base,
                    image,
                    digest.as_str(),
                    &self.limits,
                )?);
            }
        }
        let (sigstore_attachments, attachments) = self.attachments(reqs, image, digest)?;
        let requirements: Vec<RequirementReport> = reqs
            .iter()
            .map(|r| evaluate(r, image, digest, fetched.as_deref(), attachments.as_ref()))
            .collect();
        let accepted = requirements.iter().all(|r| r.satisfied);
        Ok(Report {
            image: image.to_string(),
            digest: digest.as_str().to_owned(),
            policy_scope: scope.to_string(),
            lookaside,
            sigstore_attachments,
            requirements,
            accepted,
        })
    }

    /// Reads the `.sig` tag when a `sigstoreSigned` requirement signbus can evaluate applies and registries.d
    /// enables attachments for the image; returns what the report says about it, and what was read.
    fn attachments(
        &self,
        reqs: &[Requirement],
        image: &Reference,
        digest: &ImageDigest,
    ) -> Result<(Option<String>, Option<Attachments>), VerifyError> {
        let needed = reqs
            .iter()
            .any(|r| matches!(r, Requirement::SigstoreSigned(s) if s.unsupported().is_none()));
        if !needed {
            return Ok((None, None));
        }
        let setting = self.registries.sigstore_attachments(image);
        let Some(setting) = setting.filter(|s| s.enabled) else {
            return Ok((
                Some("not read: registries.d does not set use-sigstore-attachments: true for this image".into()),
                None,
            ));
        };
        let at = attachments::attachments_ref(image, digest.as_str())?;
        let options = crate::registry::ClientOptions {
            max_blob_bytes: self.limits.max_signature_bytes,
            ..self.registry.clone()
        };
        let client = crate::registry::Client::new(options).map_err(AttachmentsError::Client)?;
        let fetched =
            attachments::fetch_attachments(&client, image, digest.as_str(), &self.limits)?;
        let shown = format!(
            "{at} (use-sigstore-attachments of {} in {})",
            setting.scope,
            setting.file.display()
        );
        Ok((Some(shown), Some(fetched)))
    }
}

fn evaluate(
    req: &Requirement,
    image: &Reference,
    digest: &ImageDigest,
    fetched: Option<&[FetchedSignature]>,
    attachments: Option<&Attachments>,
) -> RequirementReport {
    match req {
        Requirement::InsecureAcceptAnything => simple(
            req.kind(),
            true,
            "insecureAcceptAnything: accepted without looking at signatures",
        ),
        Requirement::Reject => simple(req.kind(), false, "rejected by policy (reject)"),
        Requirement::SigstoreSigned(s) => sigstore::sigstore_signed(s, image, digest, attachments),
        Requirement::SignedBaseLayer => simple(
            req.kind(),
            false,
            "signedBaseLayer requirements are not implemented",
        ),
        Requirement::SignedBy(sb) => signed_by::signed_by(sb, image, digest, fetched),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_sources_must_agree() {
        let m = b"{\"schemaVersion\":2}".to_vec();
        let d = manifest_digest(&m, "sha256:").unwrap();
        let ok = ImageDigest::new(None, Some(&d), Some(m.clone())).unwrap();
        assert!(ok.matches(&d));
        assert!(ok.matches(&manifest_digest(&m, "sha512:").unwrap()));
        let other = format!("sha256:{}", "0".repeat(64));
        assert!(!ok.matches(&other));
        assert!(ImageDigest::new(None, Some(&other), Some(m.clone())).is_err());
        assert!(ImageDigest::new(Some(&d), Some(&other), None).is_err());
        assert!(ImageDigest::new(None, None, None).is_err());
        assert_eq!(ImageDigest::new(None, None, Some(m)).unwrap().as_str(), d);
    }

    #[test]
    fn docker_transport_references() {
        assert_eq!(
            image_reference("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(image_reference(&format!("quay.io/a:1@{d}")).is_err());
        assert_eq!(
            image_reference(&format!("quay.io/a@{d}")).unwrap().tag(),
            None
        );
    }
}
