//! Sigstore attachments: reading an image's cosign signatures from its own registry.
//!
//! Owns the read side of the `.sig` tag convention: the OCI manifest `<repository>:sha256-<hex>.sig` (404 = no
//! signatures), its layers of the simple-signing media type, each payload blob read through the
//! [`registry::Client`] it is given (size-capped, checked against the layer's digest) with the layer's signature
//! annotation beside it. Like [`super::lookaside`] it hands back untrusted bytes: it never verifies, parses or
//! trusts a payload, and it never writes to a registry.
//!
//! As containers/image: a `.sig` manifest of another media type, or a layer blob that cannot be read or does
//! not match its digest, stops verification with an error (the image is refused whatever the other
//! signatures). Unlike it, layers of other media types are counted but not downloaded.

use super::lookaside::FetchLimits;
use crate::cosign::attach::signature_layers;
use crate::cosign::{signature_tag, SIMPLE_SIGNING_MEDIA_TYPE};
use crate::reference::Reference;
use crate::registry::{self, RegistryError, DOCKER_MANIFEST, OCI_MANIFEST};

/// Why the attachments could not be read. Each names the `.sig` reference.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentsError {
    /// The image digest cannot name a `.sig` tag.
    #[error("cannot name the sigstore attachments of digest {0:?}")]
    BadDigest(String),
    /// The registry client could not be set up (TLS settings).
    #[error("reading sigstore attachments: {0}")]
    Client(RegistryError),
    /// Reading the `.sig` manifest failed (other than 404), or it is not an OCI image manifest.
    #[error("reading sigstore attachments {at}: {source}")]
    Manifest {
        /// `<repository>:<tag>`.
        at: String,
        /// The registry's failure.
        source: RegistryError,
    },
    /// The `.sig` manifest does not describe its layers.
    #[error("sigstore attachments {at}: invalid manifest: {reason}")]
    BadManifest {
        /// `<repository>:<tag>`.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// More signature layers than the cap.
    #[error(
        "sigstore attachments {at}: more than {limit} signature layers; refusing to read them"
    )]
    TooMany {
        /// `<repository>:<tag>`.
        at: String,
        /// The cap.
        limit: usize,
    },
    /// A signature layer could not be read, is larger than the cap, or does not match its digest.
    #[error("sigstore attachments {at}: layer {index} ({digest}): {reason}")]
    Layer {
        /// `<repository>:<tag>`.
        at: String,
        /// The layer's 1-based position.
        index: usize,
        /// Its digest as the manifest states it.
        digest: String,
        /// Why.
        reason: String,
    },
}

const ACCEPT: &[&str] = &[
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// One signature layer, still untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedAttachment {
    /// The layer's 1-based position in the `.sig` manifest.
    pub index: usize,
    /// Where it was read: `<repository>:<tag> layer <index> (<digest>)`.
    pub location: String,
    /// The payload blob, checked against the layer digest.
    pub payload: Vec<u8>,
    /// The `dev.cosignproject.cosign/signature` annotation, when present.
    pub signature: Option<String>,
}

/// What the `.sig` tag held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachments {
    /// `<repository>:<tag>` that was read.
    pub at: String,
    /// False when the tag does not exist (no signatures).
    pub found: bool,
    /// The simple-signing layers, in order.
    pub signatures: Vec<FetchedAttachment>,
    /// Layers of other media types (attestations and the like), not read.
    pub other_layers: usize,
}

/// The `<repository>:<tag>` holding the sigstore signatures of `image` at `digest`.
pub fn attachments_ref(image: &Reference, digest: &str) -> Result<String, AttachmentsError> {
    let tag =
        signature_tag(digest).ok_or_else(|| AttachmentsError::BadDigest(digest.to_owned()))?;
    Ok(format!("{}:{tag}", image.name()))
}

/// Reads the signature layers of `image` at `digest` from the image's registry.
pub fn fetch_attachments(
    client: &registry::Client,
    image: &Reference,
    digest: &str,
    limits: &FetchLimits,
) -> Result<Attachments, AttachmentsError> {
    let at = attachments_ref(image, digest)?;
    let tag = signature_tag(digest).expect("checked by attachments_ref");
    let mut out = Attachments {
        at: at.clone(),
        found: false,
        signatures: Vec::new(),
        other_layers: 0,
    };
    // Every manifest type is asked for, so that a registry serves what is there (distribution answers
    // MANIFEST_INVALID when it cannot serve an accepted type) and the message can say what it is.
    let manifest = match client.get_manifest(image, &tag, ACCEPT) {
        Ok(m) => m,
        Err(RegistryError::NotFound { .. }) => return Ok(out),
        Err(source) => return Err(AttachmentsError::Manifest { at, source }),
    };
    if manifest.media_type != OCI_MANIFEST {
        return Err(AttachmentsError::BadManifest {
            at,
            reason: format!(
                "its media type is {:?}, not {OCI_MANIFEST:?}",
                manifest.media_type
            ),
        });
    }
    out.found = true;
    let layers =
        signature_layers(&manifest.bytes).map_err(|reason| AttachmentsError::BadManifest {
            at: at.clone(),
            reason,
        })?;
    for (i, layer) in layers.into_iter().enumerate() {
        let index = i + 1;
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            out.other_layers += 1;
            continue;
        }
        if out.signatures.len() == limits.max_signatures {
            return Err(AttachmentsError::TooMany {
                at,
                limit: limits.max_signatures,
            });
        }
        let bad = |reason: String| AttachmentsError::Layer {
            at: at.clone(),
            index,
            digest: layer.digest.clone(),
            reason,
        };
        if !layer.digest.starts_with("sha256:") {
            return Err(bad("only sha256 layer digests are supported".to_owned()));
        }
        if layer.size > limits.max_signature_bytes {
            return Err(bad(format!(
                "its size {} is over the {}-byte cap on one signature",
                layer.size, limits.max_signature_bytes
            )));
        }
        let payload = client
            .get_blob(image, &layer.digest)
            .map_err(|e| bad(e.to_string()))?;
        out.signatures.push(FetchedAttachment {
            index,
            location: format!("{at} layer {index} ({})", layer.digest),
            payload,
            signature: layer.signature,
        });
    }
    Ok(out)
}
