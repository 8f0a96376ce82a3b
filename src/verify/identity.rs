//! `signedIdentity`: which docker references a signature may name for a given image.
//!
//! Owns the six identity rules of containers-policy.json(5) and their comparison semantics. It compares
//! references only: it never looks at digests, keys or signature bytes, and it must never be asked about a
//! reference that came from a payload whose signature has not been verified.

use crate::reference::{self, Reference};
use std::fmt;

/// Why a `signedIdentity` object in policy.json is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// `exactReference.dockerReference` does not parse or names no tag or digest.
    #[error("exactReference dockerReference {0:?} is invalid: {1}")]
    BadReference(String, String),
    /// `exactRepository.dockerRepository` does not parse.
    #[error("exactRepository dockerRepository {0:?} is invalid: {1}")]
    BadRepository(String, String),
    /// A `remapIdentity` prefix is neither a host nor a `host/namespace` name.
    #[error(
        "remapIdentity prefix {0:?} is not valid (expected host[:port] or host[:port]/namespace)"
    )]
    BadPrefix(String),
}

/// A `signedIdentity` rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedIdentity {
    /// The signed reference equals the image reference exactly (tag or digest included).
    MatchExact,
    /// As `MatchExact`, but an image referenced by digest accepts any signed reference in its repository.
    /// The default when a policy names no `signedIdentity`.
    #[default]
    MatchRepoDigestOrExact,
    /// Same repository, any tag or digest.
    MatchRepository,
    /// The signed reference equals this fixed reference (which has a tag or digest).
    ExactReference(Reference),
    /// The signed reference is in this fixed repository.
    ExactRepository(Reference),
    /// Rewrite `prefix` in the image reference to `signed_prefix`, then apply `MatchRepoDigestOrExact`.
    RemapIdentity {
        /// Prefix of the image's repository name to replace.
        prefix: String,
        /// What the signature is expected to name instead.
        signed_prefix: String,
    },
}

impl fmt::Display for SignedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignedIdentity::MatchExact => f.write_str("matchExact"),
            SignedIdentity::MatchRepoDigestOrExact => f.write_str("matchRepoDigestOrExact"),
            SignedIdentity::MatchRepository => f.write_str("matchRepository"),
            SignedIdentity::ExactReference(r) => write!(f, "exactReference {r}"),
            SignedIdentity::ExactRepository(r) => write!(f, "exactRepository {}", r.name()),
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => write!(f, "remapIdentity {prefix} → {signed_prefix}"),
        }
    }
}

impl SignedIdentity {
    /// `exactReference` with its `dockerReference` checked.
    pub fn exact_reference(s: &str) -> Result<Self, IdentityError> {
        let r = Reference::parse_normalized(s)
            .map_err(|e| IdentityError::BadReference(s.to_owned(), e.to_string()))?;
        if r.is_name_only() {
            return Err(IdentityError::BadReference(
                s.to_owned(),
                "it has neither a tag nor a digest".to_owned(),
            ));
        }
        Ok(SignedIdentity::ExactReference(r))
    }

    /// `exactRepository` with its `dockerRepository` checked.
    pub fn exact_repository(s: &str) -> Result<Self, IdentityError> {
        let r = Reference::parse_normalized(s)
            .map_err(|e| IdentityError::BadRepository(s.to_owned(), e.to_string()))?;
        Ok(SignedIdentity::ExactRepository(r))
    }

    /// `remapIdentity` with both prefixes checked.
    pub fn remap(prefix: &str, signed_prefix: &str) -> Result<Self, IdentityError> {
        for p in [prefix, signed_prefix] {
            if !valid_prefix(p) {
                return Err(IdentityError::BadPrefix(p.to_owned()));
            }
        }
        Ok(SignedIdentity::RemapIdentity {
            prefix: prefix.to_owned(),
            signed_prefix: signed_prefix.to_owned(),
        })
    }

    /// Whether a signature naming `signed` (the claim's docker-reference, from a verified payload) is
    /// acceptable for `image` (normalised, with a tag or a digest). `Err` carries the reason it is not.
    pub fn check(&self, image: &Reference, signed: &str) -> Result<(), String> {
        let sig = Reference::parse_normalized(signed)
            .map_err(|e| format!("signed reference {signed:?} is invalid: {e}"))?;
        let ok = match self {
            SignedIdentity::MatchExact => exact(image, &sig),
            SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(image, &sig),
            SignedIdentity::MatchRepository => sig.name() == image.name(),
            SignedIdentity::ExactReference(want) => exact(want, &sig),
            SignedIdentity::ExactRepository(want) => sig.name() == want.name(),
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let remapped = remap(image, prefix, signed_prefix)?;
                repo_digest_or_exact(&remapped, &sig)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "signed identity {sig} is not accepted for {image} by {self}"
            ))
        }
    }
}

fn exact(want: &Reference, sig: &Reference) -> bool {
    !want.is_name_only() && !sig.is_name_only() && want.to_string() == sig.to_string()
}

fn repo_digest_or_exact(image: &Reference, sig: &Reference) -> bool {
    if sig.is_name_only() {
        return false;
    }
    if image.tag().is_some() {
        image.to_string() == sig.to_string()
    } else if image.digest().is_some() {
        // The digest itself is checked against the signed digest separately.
        image.name() == sig.name()
    } else {
        false
    }
}

/// Replaces `prefix` at the start of the image's repository name (whole path components only).
fn remap(image: &Reference, prefix: &str, signed_prefix: &str) -> Result<Reference, String> {
    let name = image.name();
    let matches = name == prefix
        || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'));
    if !matches {
        return Ok(image.clone());
    }
    let full = image.to_string();
    let rewritten = format!("{signed_prefix}{}", &full[prefix.len()..]);
    match Reference::parse_normalized(&rewritten) {
        // The rewritten name must already be in normal form (no implied docker.io or library/).
        Ok(r) if r.to_string() == rewritten => Ok(r),
        Ok(_) => Err(format!(
            "remapIdentity rewrote {full} to {rewritten}, which is not a fully expanded reference"
        )),
        Err(e) => Err(format!(
            "remapIdentity rewrote {full} to invalid {rewritten:?}: {e}"
        )),
    }
}

fn valid_prefix(p: &str) -> bool {
    if reference::is_valid_domain(p) {
        return true;
    }
    match p.split_once('/') {
        Some((host, _)) => {
            reference::is_valid_domain(host)
                && Reference::parse_normalized(p).is_ok_and(|r| r.is_name_only())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

    fn r(s: &str) -> Reference {
        Reference::parse_normalized(s).unwrap()
    }

    #[test]
    fn repo_digest_or_exact_accepts_any_tag_for_a_digest_image() {
        let id = SignedIdentity::MatchRepoDigestOrExact;
        let by_digest = r(&format!("quay.io/a/b@{D}"));
        assert!(id.check(&by_digest, "quay.io/a/b:v1").is_ok());
        assert!(id.check(&by_digest, "quay.io/a/c:v1").is_err());
        assert!(id.check(&by_digest, "quay.io/a/b").is_err());
        let tagged = r("quay.io/a/b:v1");
        assert!(id.check(&tagged, "quay.io/a/b:v1").is_ok());
        assert!(id.check(&tagged, "quay.io/a/b:v2").is_err());
        assert!(SignedIdentity::MatchExact
            .check(&by_digest, "quay.io/a/b:v1")
            .is_err());
    }

    #[test]
    fn remap_rewrites_whole_components_only() {
        let id = SignedIdentity::remap("mirror.local/rh", "registry.redhat.io").unwrap();
        assert!(id
            .check(&r("mirror.local/rh/ubi9:1"), "registry.redhat.io/ubi9:1")
            .is_ok());
        assert!(id
            .check(&r("mirror.local/rhx/ubi9:1"), "registry.redhat.io/ubi9:1")
            .is_err());
        assert!(SignedIdentity::remap("not a prefix", "x.io").is_err());
        assert!(SignedIdentity::remap("x.io/UPPER", "x.io").is_err());
    }
}
