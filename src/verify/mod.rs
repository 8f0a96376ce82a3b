//! Image signature validation: does policy.json accept this image, given the signatures in its lookaside store?
//!
//! [`Verifier::verify`] ties the parts together: [`policy`] picks the requirement list for the image,
//! [`registries_d`] picks the lookaside store, [`lookaside`] fetches the untrusted blobs, [`gpg`] checks each
//! blob's cryptography against the requirement's keys, and only then is the payload parsed
//! ([`crate::claim::Claim::parse`]), its digest compared with the image's and its reference checked with the
//! requirement's [`identity`] rule. This module owns that order and the [`Report`]; it reads the key files a
//! policy names (policy is configuration that points at them), but it never reads configuration from fixed
//! paths or the environment and never writes to a store.

pub mod gpg;
pub mod identity;
pub mod lookaside;
pub mod policy;
pub mod registries_d;
mod report;
mod signed_by;

use report::simple;
pub use report::{Report, RequirementReport, SignatureVerdict};

use crate::reference::{self, Reference, ReferenceError};
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
    /// Fetch caps.
    pub limits: FetchLimits,
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
        let requirements: Vec<RequirementReport> = reqs
            .iter()
            .map(|r| evaluate(r, image, digest, fetched.as_deref()))
            .collect();
        let accepted = requirements.iter().all(|r| r.satisfied);
        Ok(Report {
            image: image.to_string(),
            digest: digest.as_str().to_owned(),
            policy_scope: scope.to_string(),
            lookaside,
            requirements,
            accepted,
        })
    }
}

fn evaluate(
    req: &Requirement,
    image: &Reference,
    digest: &ImageDigest,
    fetched: Option<&[FetchedSignature]>,
) -> RequirementReport {
    match req {
        Requirement::InsecureAcceptAnything => simple(
            req.kind(),
            true,
            "insecureAcceptAnything: accepted without looking at signatures",
        ),
        Requirement::Reject => simple(req.kind(), false, "rejected by policy (reject)"),
        Requirement::SigstoreSigned => simple(
            req.kind(),
            false,
            "sigstoreSigned requirements are not supported by signbus yet",
        ),
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
