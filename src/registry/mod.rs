//! A small OCI distribution client for what signatures need: manifests by tag or digest, blob existence,
//! blob reads, and monolithic blob uploads. Synchronous (ureq), TLS through [`crate::tls`] (system CAs or a given
//! bundle), plain http only when the caller allows it, anonymous / basic / bearer-token auth ([`auth`]).
//!
//! Sizes are capped (manifests and blobs, 4 MiB by default: what containers/image allows for a signature), and
//! content fetched by digest is checked against it. This module moves registry content; it never decides what a
//! signature means, never reads environment variables or configuration files other than the auth files its
//! caller names, and never imports `transport`, `server` or `requester`.

pub mod auth;
mod error;
mod http;

pub use auth::Credentials;
pub use error::RegistryError;

use crate::reference::Reference;
use auth::AuthState;
use http::read_limited;
use sha2::Digest as _;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type above: what to accept when reading whatever a tag or digest holds.
pub const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];
/// What a cap defaults to: 4 MiB.
pub const DEFAULT_LIMIT: u64 = 4 << 20;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// CA bundle (default: the system bundle) and optional client certificate.
    pub tls: crate::tls::TlsConfig,
    /// Allow plain http: a registry that does not answer over https is tried over http (cosign's
    /// `--allow-http-registry`). Bearer realms on http are refused unless this is set.
    pub allow_http: bool,
    pub credentials: Credentials,
    /// Whole-request time limit.
    pub timeout: Duration,
    pub max_manifest_bytes: u64,
    pub max_blob_bytes: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls: Default::default(),
            allow_http: false,
            credentials: Credentials::Anonymous,
            timeout: Duration::from_secs(60),
            max_manifest_bytes: DEFAULT_LIMIT,
            max_blob_bytes: DEFAULT_LIMIT,
        }
    }
}

/// A manifest as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:` of `bytes`.
    pub digest: String,
}

/// A registry client. Cheap to share between threads (`&Client` is `Sync`); tokens and the http/https choice
/// are cached per registry.
pub struct Client {
    agent: ureq::Agent,
    opts: ClientOptions,
    auth: AuthState,
    schemes: Mutex<HashMap<String, &'static str>>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The API host of a reference's registry: Docker Hub's `docker.io` is served by `registry-1.docker.io`.
fn api_host(repo: &Reference) -> &str {
    match repo.domain() {
        crate::reference::DEFAULT_DOMAIN => "registry-1.docker.io",
        d => d,
    }
}

/// A tag or digest safe to put in a URL path.
fn checked_ref(r: &str) -> Result<&str, RegistryError> {
    let ok = !r.is_empty()
        && r.len() <= 200
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(r)
    } else {
        Err(RegistryError::Refused {
            url: r.to_owned(),
            status: 0,
            detail: " (not a tag or digest)".into(),
        })
    }
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Self, RegistryError> {
        let tls = crate::tls::client_config(&opts.tls)?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(tls)
            .timeout_connect(opts.timeout.min(Duration::from_secs(10)))
            .timeout(opts.timeout)
            .build();
        Ok(Client {
            agent,
            opts,
            auth: AuthState::default(),
            schemes: Mutex::new(HashMap::new()),
        })
    }

    /// GETs the manifest `reference` (tag or digest) of `repo`, accepting only `accept` media types. A digest
    /// reference is checked against the content.
    pub fn get_manifest(
        &self,
        repo: &Reference,
        reference: &str,
        accept: &[&str],
    ) -> Result<Manifest, RegistryError> {
        let path = format!("/v2/{}/manifests/{}", repo.path(), checked_ref(reference)?);
        let (url, resp) = self.send(
            repo,
            "GET",
            &path,
            false,
            &[("Accept", &accept.join(", "))],
            None,
        )?;
        let header_type = resp
            .header("Content-Type")
            .map(|t| t.split(';').next().unwrap_or("").trim().to_owned());
        let bytes = read_limited(resp, self.opts.max_manifest_bytes, &url)?;
        // Without a Content-Type, the manifest's own mediaType member says what it is.
        let media_type = header_type.filter(|t| !t.is_empty()).unwrap_or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .unwrap_or_default()
        });
        if !accept.contains(&media_type.as_str()) {
            return Err(RegistryError::WrongMediaType {
                url,
                found: media_type,
                expected: accept.iter().map(|s| s.to_string()).collect(),
            });
        }
        let digest = sha256_digest(&bytes);
        if reference.contains(':') && reference != digest {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: reference.to_owned(),
                got: digest,
            });
        }
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// PUTs `bytes` as the manifest `reference` (tag or digest) of `repo`; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &Reference,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let path = format!("/v2/{}/manifests/{}", repo.path(), checked_ref(reference)?);
        if bytes.len() as u64 > self.opts.max_manifest_bytes {
            return Err(RegistryError::TooLarge {
                url: path,
                limit: self.opts.max_manifest_bytes,
            });
        }
        self.send(
            repo,
            "PUT",
            &path,
            true,
            &[("Content-Type", media_type)],
            Some(bytes),
        )?;
        Ok(sha256_digest(bytes))
    }

    /// Whether the blob `digest` exists in `repo` (HEAD).
    pub fn blob_exists(&self, repo: &Reference, digest: &str) -> Result<bool, RegistryError> {
        let path = format!("/v2/{}/blobs/{}", repo.path(), checked_ref(digest)?);
        match self.send(repo, "HEAD", &path, false, &[], None) {
            Ok(_) => Ok(true),
            Err(RegistryError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// GETs the blob `digest` of `repo` (at most the blob cap), checked against its digest.
    pub fn get_blob(&self, repo: &Reference, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let path = format!("/v2/{}/blobs/{}", repo.path(), checked_ref(digest)?);
        let (url, resp) = self.send(repo, "GET", &path, false, &[], None)?;
        let bytes = read_limited(resp, self.opts.max_blob_bytes, &url)?;
        let got = sha256_digest(&bytes);
        if got != digest {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: digest.to_owned(),
                got,
            });
        }
        Ok(bytes)
    }

    /// Uploads `bytes` as a blob of `repo` in one request (POST, then PUT `?digest=`), unless it is already
    /// there; returns its digest.
    pub fn put_blob(&self, repo: &Reference, bytes: &[u8]) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        if bytes.len() as u64 > self.opts.max_blob_bytes {
            return Err(RegistryError::TooLarge {
                url: digest,
                limit: self.opts.max_blob_bytes,
            });
        }
        if self.blob_exists(repo, &digest)? {
            return Ok(digest);
        }
        let path = format!("/v2/{}/blobs/uploads/", repo.path());
        let (url, resp) = self.send(repo, "POST", &path, true, &[], Some(&[]))?;
        let location =
            resp.header("Location")
                .map(str::to_owned)
                .ok_or_else(|| RegistryError::Protocol {
                    url: url.clone(),
                    reason: "upload answer without Location".into(),
                })?;
        let mut put = url::Url::parse(&url)
            .and_then(|base| base.join(&location))
            .map_err(|e| RegistryError::Protocol {
                url: url.clone(),
                reason: format!("upload Location {location:?}: {e}"),
            })?;
        put.query_pairs_mut().append_pair("digest", &digest);
        let headers = [("Content-Type", "application/octet-stream")];
        self.send(repo, "PUT", put.as_str(), true, &headers, Some(bytes))?;
        Ok(digest)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
