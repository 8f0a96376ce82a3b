//! Docker image references: parsing and normalisation as containers/image and docker do it.
//!
//! `busybox` is `docker.io/library/busybox:latest`; `quay.io/ns/repo@sha256:…` keeps its digest. This module
//! owns the grammar and the normal form and nothing else: it never touches the network or decides trust.

use crate::digest::Digest;
use std::fmt;

/// The registry assumed when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// Why a string is not a docker reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The string is empty.
    #[error("empty image reference")]
    Empty,
    /// The registry host part is malformed.
    #[error("invalid registry host {0:?} in image reference")]
    BadDomain(String),
    /// A repository path component breaks the grammar (lowercase alphanumerics with `.`, `_`, `__`, `-`).
    #[error("invalid repository path component {0:?} (lowercase letters, digits and single separators only)")]
    BadPathComponent(String),
    /// The tag breaks the grammar (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
    #[error("invalid tag {0:?}")]
    BadTag(String),
    /// The digest is not `sha256:<64 hex>` or `sha512:<128 hex>`.
    #[error("invalid digest {0:?} (expected sha256:<64 lowercase hex>)")]
    BadDigest(String),
    /// The repository name exceeds 255 characters.
    #[error("repository name longer than {MAX_NAME_LEN} characters")]
    TooLong,
}

/// A parsed, normalised docker reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference the way `reference.ParseNormalizedNamed` does: a missing registry
    /// becomes `docker.io`, and a single-component docker.io repository gains `library/`. No tag is added.
    pub fn parse_normalized(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d)?;
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                validate_tag(t)?;
                (&rest[..last_slash + i], Some(t.to_owned()))
            }
            None => (rest, None),
        };
        let (domain, path) = split_domain(name)?;
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong);
        }
        for component in path.split('/') {
            validate_path_component(component)?;
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Returns this reference with tag `latest` when it has neither tag nor digest (docker's `TagNameOnly`).
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_owned());
        }
        self
    }

    /// Registry host (and port), e.g. `registry.example.com:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// Repository path without host, tag or digest, e.g. `ns/repo` (`library/busybox` on docker.io).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// `domain/path`: the repository name.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
    /// The tag, when present.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest, when present.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// True when `repo` (a path as pubtools-sign sends it: `ns/repo`) names this reference's repository.
    /// On docker.io the implicit `library/` may be left out.
    pub fn path_matches(&self, repo: &str) -> bool {
        self.path == repo
            || (self.domain == DEFAULT_DOMAIN
                && self.path.strip_prefix(OFFICIAL_REPO_PREFIX) == Some(repo))
    }
}

impl Reference {
    /// True when the reference has neither tag nor digest (a bare repository name).
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The scope string a policy or registries.d entry uses for this exact image: `domain/path:tag` or
    /// `domain/path@digest` (containers/image's `PolicyConfigurationIdentity`). `None` for a bare name or a
    /// reference with both a tag and a digest, which have no single identity.
    pub fn policy_identity(&self) -> Option<String> {
        match (&self.tag, &self.digest) {
            (Some(t), None) => Some(format!("{}:{t}", self.name())),
            (None, Some(d)) => Some(format!("{}@{d}", self.name())),
            _ => None,
        }
    }

    /// The wider scopes that contain this reference, most specific first: the repository, each parent
    /// namespace, the host (with its port), then `*.domain` wildcards built from the host without its port
    /// (`quay.io/a/b` → `quay.io/a/b`, `quay.io/a`, `quay.io`, `*.io`).
    pub fn policy_namespaces(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut name = self.name();
        loop {
            out.push(name.clone());
            match name.rfind('/') {
                Some(i) => name.truncate(i),
                None => break,
            }
        }
        let mut host = match name.find(':') {
            Some(i) => &name[..i],
            None => name.as_str(),
        };
        while let Some(i) = host.find('.') {
            host = &host[i + 1..];
            out.push(format!("*.{host}"));
        }
        out
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> Result<(String, String), ReferenceError> {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            validate_domain(first)?;
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_owned()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    Ok((domain, path))
}

fn validate_domain(d: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::BadDomain(d.to_owned());
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if host.is_empty() {
        return Err(bad());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn validate_path_component(c: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::BadPathComponent(c.to_owned());
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn validate_tag(t: &str) -> Result<(), ReferenceError> {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::BadTag(t.to_owned()))
    }
}

/// True when `d` is a registry host with an optional port (`registry.example.com:5000`, `localhost`).
pub fn is_valid_domain(d: &str) -> bool {
    validate_domain(d).is_ok()
}

/// Checks `algo:hex` for the digest algorithms containers/image accepts (sha256, sha512), lowercase hex. See
/// [`Digest`] for a value that carries the check with it.
pub fn validate_digest(d: &str) -> Result<(), ReferenceError> {
    Digest::parse(d)
        .map(drop)
        .map_err(|e| ReferenceError::BadDigest(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse_normalized(s)
            .unwrap()
            .with_default_tag()
            .to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("ns/repo:1"), "docker.io/ns/repo:1");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(
            norm("registry.example.com/ns/repo:tag-0"),
            "registry.example.com/ns/repo:tag-0"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("quay.io/x/y@{d}")),
            format!("quay.io/x/y@{d}")
        );
    }

    #[test]
    fn exposes_parts() {
        let r = Reference::parse_normalized("registry.example.com:5000/ns/repo:v1").unwrap();
        assert_eq!(r.domain(), "registry.example.com:5000");
        assert_eq!(r.path(), "ns/repo");
        assert_eq!(r.tag(), Some("v1"));
        assert!(r.path_matches("ns/repo"));
        assert!(!r.path_matches("ns/other"));
        assert!(Reference::parse_normalized("busybox")
            .unwrap()
            .path_matches("busybox"));
    }

    #[test]
    fn policy_scopes_run_from_specific_to_wildcard() {
        let r = Reference::parse_normalized("registry.example.com:5000/ns/sub/repo:v1").unwrap();
        assert_eq!(
            r.policy_identity().as_deref(),
            Some("registry.example.com:5000/ns/sub/repo:v1")
        );
        assert_eq!(
            r.policy_namespaces(),
            [
                "registry.example.com:5000/ns/sub/repo",
                "registry.example.com:5000/ns/sub",
                "registry.example.com:5000/ns",
                "registry.example.com:5000",
                "*.example.com",
                "*.com",
            ]
        );
        let bare = Reference::parse_normalized("localhost/x").unwrap();
        assert!(bare.is_name_only());
        assert_eq!(bare.policy_identity(), None);
        assert_eq!(bare.policy_namespaces(), ["localhost/x", "localhost"]);
    }

    #[test]
    fn refuses_bad_grammar() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "x/Y:1",
            "x:",
            "x:-bad",
            "x@sha256:abc",
            "-x",
            "a..b",
            "h_st:5000/x",
            "x/y@md5:00",
        ] {
            assert!(Reference::parse_normalized(bad).is_err(), "{bad} accepted");
        }
        assert!(Reference::parse_normalized(&format!("x/{}", "a".repeat(300))).is_err());
    }
}
