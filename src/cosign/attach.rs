//! Appending a cosign signature to an image's `.sig` manifest without losing anyone else's.
//!
//! The `sha256-HEX.sig` tag holds an OCI image manifest with one layer per signature (payload blob, media type
//! [`SIMPLE_SIGNING_MEDIA_TYPE`], signature in the [`SIGNATURE_ANNOTATION`]) and a config blob listing each
//! layer's digest as a `diff_id`, shaped as cosign makes it. Adding one is a read-modify-write on a tag: every
//! existing layer is kept; writers of the same `repo@digest` in this process are serialised by the
//! [`Attacher`]; after the PUT the manifest is read back (after a short jittered pause) and the layer appended
//! again, a bounded number of times, if a writer elsewhere overwrote it. A layer with the same payload and a
//! signature that verifies under the same key is already there: nothing is written, and the outcome says so.
//!
//! This is the one part of [`crate::cosign`] that does I/O, and only through the [`registry::Client`] its
//! caller hands it. It never imports `transport`, `server` or `requester`.

use super::keys::PublicKey;
use super::{signature_tag, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};
use crate::reference::Reference;
use crate::registry::{self, RegistryError, OCI_MANIFEST};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Go's zero time, which cosign writes as every `created`.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Why a signature could not be attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The registry failed; [`RegistryError::is_retryable`] says whether trying again may help.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The image digest is not `sha256:<hex>` / `sha512:<hex>`. Not retryable.
    #[error("image digest {0:?} is invalid")]
    BadDigest(String),
    /// The existing `.sig` manifest is not an OCI image manifest signbus can append to. Not retryable: appending
    /// would drop what is there.
    #[error("the existing signature manifest {tag} cannot be appended to: {reason}")]
    BadManifest { tag: String, reason: String },
    /// The signature to attach does not verify under the key given with it: nothing was written. Not retryable.
    #[error("the signature to attach does not verify under its key: {0}")]
    BadSignature(super::VerifyError),
    /// Other writers kept overwriting the tag: our layer was missing after every attempt. Retryable.
    #[error(
        "the signature layer was lost to concurrent writers of {tag} (written {attempts} times)"
    )]
    Lost { tag: String, attempts: u32 },
}

impl AttachError {
    /// True when attaching again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttachError::Registry(e) => e.is_retryable(),
            AttachError::Lost { .. } => true,
            _ => false,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutcome {
    /// Our layer is in the manifest now; `puts` writes were made (more than 1: a concurrent writer dropped our
    /// layer, or the registry failed a racing write, and it was appended again).
    Attached { manifest_digest: String, puts: u32 },
    /// The same payload with a signature that verifies under the same key was already there: nothing written.
    AlreadyPresent { manifest_digest: String },
}

/// One layer of a `.sig` manifest as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub media_type: String,
    /// The payload blob's digest.
    pub digest: String,
    pub size: u64,
    /// The [`SIGNATURE_ANNOTATION`] value, when present.
    pub signature: Option<String>,
}

/// The layers of a `.sig` manifest (every layer, of any media type, in order).
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<SignatureLayer>, String> {
    let v: Value = serde_json::from_slice(manifest).map_err(|e| format!("not JSON: {e}"))?;
    let layers = match v.get("layers") {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(l)) => l,
        Some(_) => return Err("layers is not an array".into()),
    };
    layers
        .iter()
        .map(|l| {
            let s = |k: &str| l.get(k).and_then(Value::as_str).map(str::to_owned);
            Ok(SignatureLayer {
                media_type: s("mediaType").ok_or("a layer has no mediaType")?,
                digest: s("digest").ok_or("a layer has no digest")?,
                size: l
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or("a layer has no size")?,
                signature: l
                    .get("annotations")
                    .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        })
        .collect()
}

/// Attaches signatures through one registry client. Share one `Attacher` between the threads of a process: it
/// serialises writers of the same `repo@digest`.
pub struct Attacher<'a> {
    client: &'a registry::Client,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Read(-write) rounds before giving up on a tag other writers keep overwriting.
    pub max_rounds: u32,
    /// Base pause before each read after the first (doubled each round up to 8×, plus up to as much again at
    /// random), so a writer elsewhere that read before our PUT has written by the time we read back.
    pub settle: Duration,
}

impl<'a> Attacher<'a> {
    pub fn new(client: &'a registry::Client) -> Self {
        Attacher {
            client,
            locks: Mutex::new(HashMap::new()),
            max_rounds: 8,
            settle: Duration::from_millis(100),
        }
    }

    /// Appends the layer `payload` + `signature_b64` (made by the key whose public half is `key`, which is
    /// checked first) to the signatures of `repo@image_digest`, keeping every existing layer.
    pub fn attach(
        &self,
        repo: &Reference,
        image_digest: &str,
        payload: &[u8],
        signature_b64: &str,
        key: &PublicKey,
    ) -> Result<AttachOutcome, AttachError> {
        let tag = signature_tag(image_digest)
            .ok_or_else(|| AttachError::BadDigest(image_digest.into()))?;
        key.verify(payload, signature_b64)
            .map_err(AttachError::BadSignature)?;
        let lock = self
            .locks
            .lock()
            .unwrap()
            .entry(format!("{}@{image_digest}", repo.name()))
            .or_default()
            .clone();
        let _serialised = lock.lock().unwrap_or_else(|p| p.into_inner());
        let payload_digest = registry::sha256_digest(payload);
        let (mut puts, mut round) = (0, 0);
        loop {
            if round > 0 {
                // Back off (doubling, jittered) so writers elsewhere finish and fall out of step with us.
                let pause = self.settle * ((1u32 << round.min(4)) / 2);
                std::thread::sleep(pause + jitter(pause));
            }
            round += 1;
            // Ask for every manifest type, so a registry cannot hide a manifest of another type behind a 404
            // (distribution answers MANIFEST_UNKNOWN when the Accept header leaves its type out) and have it
            // overwritten; anything but an OCI image manifest is then refused below.
            let current = match self
                .client
                .get_manifest(repo, &tag, registry::MANIFEST_TYPES)
            {
                Ok(m) if m.media_type != OCI_MANIFEST => {
                    return Err(AttachError::BadManifest {
                        tag,
                        reason: format!("its media type is {}, not {OCI_MANIFEST}", m.media_type),
                    })
                }
                Ok(m) => Some(m),
                Err(RegistryError::NotFound { .. }) => None,
                // A registry can fail a read or write that races another writer's (distribution's filesystem
                // storage answers 500): try again within the same budget.
                Err(e) if e.is_retryable() && round < self.max_rounds => continue,
                Err(e) => return Err(e.into()),
            };
            let bad = |reason: String| AttachError::BadManifest {
                tag: tag.clone(),
                reason,
            };
            let (object, layers) = match &current {
                None => (Map::new(), vec![]),
                Some(m) => match serde_json::from_slice::<Value>(&m.bytes) {
                    Ok(Value::Object(o)) => (o, signature_layers(&m.bytes).map_err(bad)?),
                    _ => return Err(bad("not a JSON object".into())),
                },
            };
            let present = layers.iter().any(|l| {
                l.digest == payload_digest
                    && l.media_type == SIMPLE_SIGNING_MEDIA_TYPE
                    && l.signature
                        .as_deref()
                        .is_some_and(|s| key.verify(payload, s).is_ok())
            });
            if let (true, Some(m)) = (present, &current) {
                let manifest_digest = m.digest.clone();
                return Ok(if puts == 0 {
                    AttachOutcome::AlreadyPresent { manifest_digest }
                } else {
                    AttachOutcome::Attached {
                        manifest_digest,
                        puts,
                    }
                });
            }
            if round >= self.max_rounds {
                return Err(AttachError::Lost {
                    tag,
                    attempts: puts,
                });
            }
            let written = self
                .client
                .put_blob(repo, payload)
                .map_err(AttachError::from)
                .and_then(|_| self.appended(repo, object, payload, &payload_digest, signature_b64))
                .and_then(|manifest| {
                    Ok(self
                        .client
                        .put_manifest(repo, &tag, OCI_MANIFEST, &manifest)?)
                });
            match written {
                Ok(_) => puts += 1,
                Err(e) if e.is_retryable() && round < self.max_rounds => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The manifest `object` (existing members and layers kept) with our layer appended and a config blob,
    /// uploaded, listing every layer as cosign's does.
    fn appended(
        &self,
        repo: &Reference,
        mut object: Map<String, Value>,
        payload: &[u8],
        payload_digest: &str,
        signature_b64: &str,
    ) -> Result<Vec<u8>, AttachError> {
        let mut layers = match object.remove("layers") {
            Some(Value::Array(l)) => l,
            _ => vec![],
        };
        layers.push(json!({
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "size": payload.len(),
            "digest": payload_digest,
            "annotations": {SIGNATURE_ANNOTATION: signature_b64},
        }));
        let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
        let config = json!({
            "architecture": "",
            "created": ZERO_TIME,
            "history": vec![json!({"created": ZERO_TIME}); layers.len()],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        });
        let config = serde_json::to_vec(&config).expect("JSON values serialise");
        let config_digest = self.client.put_blob(repo, &config)?;
        object.insert("schemaVersion".into(), json!(2));
        object.insert("mediaType".into(), json!(OCI_MANIFEST));
        object.insert(
            "config".into(),
            json!({"mediaType": CONFIG_MEDIA_TYPE, "size": config.len(), "digest": config_digest}),
        );
        object.insert("layers".into(), Value::Array(layers));
        Ok(serde_json::to_vec(&Value::Object(object)).expect("JSON values serialise"))
    }
}

/// A pseudo-random duration in `[0, max)` (from the clock; it only spreads writers apart).
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    max.mul_f64(f64::from(nanos % 1000) / 1000.0)
}
