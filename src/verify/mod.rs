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

use crate::claim::Claim;
use crate::reference::{self, Reference, ReferenceError};
use lookaside::{FetchLimits, FetchedSignature, LookasideError};
use policy::{KeySource, Policy, Requirement, SignedBy};
use registries_d::{RegistriesD, RegistriesError};
use serde::Serialize;
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

/// The verdict on one signature under one requirement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignatureVerdict {
    /// N in `signature-N`.
    pub index: usize,
    /// Where it was read.
    pub url: String,
    /// Fingerprint of the key that made it, once known (the claimed key id when the key is not trusted).
    pub key: Option<String>,
    /// The signed docker-reference: present only when the signature checked out and the payload parsed.
    pub identity: Option<String>,
    /// The signed manifest digest, under the same condition.
    pub signed_digest: Option<String>,
    /// Whether this signature satisfies the requirement.
    pub accepted: bool,
    /// Why (or "accepted").
    pub reason: String,
}

/// The outcome of one requirement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequirementReport {
    /// The requirement's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `signedBy`: the trusted key fingerprints and the identity rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether it holds.
    pub satisfied: bool,
    /// Why.
    pub reason: String,
    /// Per-signature verdicts (signedBy only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureVerdict>,
}

/// The full account of one verification.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// The image reference, normalised.
    pub image: String,
    /// Its manifest digest.
    pub digest: String,
    /// The policy entry that applied.
    pub policy_scope: String,
    /// The lookaside store read (if signatures were needed), and where it was configured.
    pub lookaside: Option<String>,
    /// Every requirement of the entry, in order.
    pub requirements: Vec<RequirementReport>,
    /// True when every requirement holds.
    pub accepted: bool,
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

fn simple(kind: &str, satisfied: bool, reason: &str) -> RequirementReport {
    RequirementReport {
        kind: kind.to_owned(),
        detail: None,
        satisfied,
        reason: reason.to_owned(),
        signatures: Vec::new(),
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
        Requirement::SignedBy(sb) => signed_by(sb, image, digest, fetched),
    }
}

fn load_keyrings(keys: &KeySource) -> Result<Vec<Vec<u8>>, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("reading key file {}: {e}", p.display()))
    };
    match keys {
        KeySource::Path(p) => Ok(vec![read(p)?]),
        KeySource::Paths(ps) => ps.iter().map(|p| read(p)).collect(),
        KeySource::Data(d) => Ok(vec![d.clone()]),
    }
}

fn signed_by(
    sb: &SignedBy,
    image: &Reference,
    digest: &ImageDigest,
    fetched: Option<&[FetchedSignature]>,
) -> RequirementReport {
    let mut report = RequirementReport {
        kind: "signedBy".to_owned(),
        detail: Some(format!("identity {}", sb.identity)),
        satisfied: false,
        reason: String::new(),
        signatures: Vec::new(),
    };
    if sb.key_type != "GPGKeys" {
        report.reason = format!("keyType {:?} is not implemented", sb.key_type);
        return report;
    }
    let keys = load_keyrings(&sb.keys).and_then(|rings| {
        gpg::TrustedKeys::import(rings.iter().map(Vec::as_slice)).map_err(|e| e.to_string())
    });
    let mut keys = match keys {
        Ok(k) => k,
        Err(e) => {
            report.reason = e;
            return report;
        }
    };
    report.detail = Some(format!(
        "keys {}; identity {}",
        keys.fingerprints().collect::<Vec<_>>().join(", "),
        sb.identity
    ));
    let Some(fetched) = fetched else {
        report.reason =
            "no lookaside store is configured for this image, so no signature can be read"
                .to_owned();
        return report;
    };
    for f in fetched {
        let v = check_one(&mut keys, sb, image, digest, f);
        report.signatures.push(v);
    }
    let accepted = report.signatures.iter().find(|s| s.accepted);
    (report.satisfied, report.reason) = match (accepted, report.signatures.len()) {
        (Some(s), _) => (true, format!("signature-{} is accepted", s.index)),
        (None, 0) => (
            false,
            "a signature was required, but no signature exists".to_owned(),
        ),
        (None, n) => (false, format!("none of the {n} signatures is accepted")),
    };
    report
}

fn check_one(
    keys: &mut gpg::TrustedKeys,
    sb: &SignedBy,
    image: &Reference,
    digest: &ImageDigest,
    f: &FetchedSignature,
) -> SignatureVerdict {
    let mut v = SignatureVerdict {
        index: f.index,
        url: f.url.clone(),
        key: None,
        identity: None,
        signed_digest: None,
        accepted: false,
        reason: String::new(),
    };
    // 1. Cryptography first.
    let verified = match keys.verify(&f.bytes) {
        Ok(ok) => ok,
        Err(rejection) => {
            if let gpg::SignatureRejection::UnknownKey(k)
            | gpg::SignatureRejection::Invalid { fingerprint: k, .. } = &rejection
            {
                v.key = Some(k.clone());
            }
            v.reason = rejection.to_string();
            return v;
        }
    };
    v.key = Some(verified.fingerprint.clone());
    // 2. Only now parse the payload, strictly.
    let claim = match Claim::parse(&verified.payload) {
        Ok(c) => c,
        Err(e) => {
            v.reason = format!("signed payload rejected: {e}");
            return v;
        }
    };
    v.identity = Some(claim.docker_reference().to_owned());
    v.signed_digest = Some(claim.manifest_digest().to_string());
    // 3. The digest.
    if !digest.matches(claim.manifest_digest().as_str()) {
        v.reason = format!(
            "signed digest {} does not match the image digest {}",
            claim.manifest_digest(),
            digest.as_str()
        );
        return v;
    }
    // 4. The identity.
    match sb.identity.check(image, claim.docker_reference()) {
        Ok(()) => {
            v.accepted = true;
            v.reason = "accepted".to_owned();
        }
        Err(why) => v.reason = why,
    }
    v
}

impl Report {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "image:     {}", self.image);
        let _ = writeln!(s, "digest:    {}", self.digest);
        let _ = writeln!(s, "policy:    {}", self.policy_scope);
        if let Some(l) = &self.lookaside {
            let _ = writeln!(s, "lookaside: {l}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            let _ = writeln!(
                s,
                "requirement {}: {}{}",
                i + 1,
                r.kind,
                r.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
            for sig in &r.signatures {
                let verdict = if sig.accepted { "ACCEPTED" } else { "rejected" };
                let _ = writeln!(s, "  signature-{}: {verdict}", sig.index);
                let _ = writeln!(
                    s,
                    "    key:      {}",
                    sig.key.as_deref().unwrap_or("(unknown)")
                );
                if let Some(id) = &sig.identity {
                    let _ = writeln!(s, "    identity: {id}");
                }
                let _ = writeln!(s, "    reason:   {}", sig.reason);
            }
            let _ = writeln!(
                s,
                "  → {}: {}",
                if r.satisfied {
                    "satisfied"
                } else {
                    "NOT satisfied"
                },
                r.reason
            );
        }
        let _ = writeln!(
            s,
            "verdict:   {}",
            if self.accepted {
                "ACCEPTED by policy"
            } else {
                "REJECTED by policy"
            }
        );
        s
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
