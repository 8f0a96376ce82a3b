//! Publishing signatures into a lookaside store (`file://` bases only for now).
//!
//! Owns adding one signature blob as the next free `signature-N` of an image: never overwriting, safe when
//! several publishers run at once, and never letting a reader see a partial file. It stores bytes as given:
//! it never signs, verifies or parses a signature, and it never deletes or renumbers existing ones.
//!
//! How a write is made: the blob goes to a temporary file (`.signbus-*`, created exclusively) in the target
//! directory, is fsynced and made world-readable, and is then hard-linked to `signature-N`. `link(2)` fails
//! with `EEXIST` rather than replace an existing name, so two publishers racing for the same N cannot both win:
//! the loser moves on to N+1. Readers only open `signature-N` names, and a link appears complete or not at all.
//! The directory is fsynced and the file read back and compared before success is reported.

use crate::reference::{Reference, ReferenceError};
use crate::verify::lookaside::{self, LookasideError};
use crate::verify::registries_d::{RegistriesD, RegistriesError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use url::Url;

/// Highest N a publisher will try before giving up (a store with this many signatures is broken).
pub const MAX_INDEX: usize = 10_000;

/// Why a signature was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// registries.d could not be used.
    #[error(transparent)]
    Registries(#[from] RegistriesError),
    /// registries.d configures no lookaside (or lookaside-staging) for the image.
    #[error("registries.d configures no lookaside-staging or lookaside location for {0}")]
    NotConfigured(String),
    /// The base is not a `file://` URL.
    #[error("publishing to {url} is not supported: only file:// lookaside locations can be written (configure a file:// lookaside-staging)")]
    UnsupportedScheme {
        /// The base URL.
        url: String,
    },
    /// The digest is malformed.
    #[error("invalid digest: {0}")]
    BadDigest(#[from] ReferenceError),
    /// The URL layout could not be built.
    #[error(transparent)]
    Layout(#[from] LookasideError),
    /// The blob is empty.
    #[error("refusing to publish an empty signature")]
    Empty,
    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// What was read back differs from what was written.
    #[error("{} does not contain the bytes just written (read back {read} bytes, wrote {wrote})", path.display())]
    ReadBackMismatch {
        /// The file.
        path: PathBuf,
        /// Bytes read back.
        read: usize,
        /// Bytes written.
        wrote: usize,
    },
    /// Every index up to [`MAX_INDEX`] is taken.
    #[error("{} already holds {MAX_INDEX} signatures; refusing to add more", dir.display())]
    Full {
        /// The directory.
        dir: PathBuf,
    },
}

/// What [`publish_signature`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The blob is now `signature-<index>`.
    Written {
        /// N.
        index: usize,
        /// The file.
        path: PathBuf,
    },
    /// The same bytes were already stored as `signature-<index>`; nothing was written.
    AlreadyPresent {
        /// N.
        index: usize,
        /// The file.
        path: PathBuf,
    },
}

impl PublishOutcome {
    /// The file holding the signature.
    pub fn path(&self) -> &Path {
        match self {
            PublishOutcome::Written { path, .. } | PublishOutcome::AlreadyPresent { path, .. } => {
                path
            }
        }
    }
}

/// Publishes `signature` for `image` at `digest` into the lookaside-staging (else lookaside) location that
/// `registries` configures for the image.
pub fn publish(
    registries: &RegistriesD,
    image: &Reference,
    digest: &str,
    signature: &[u8],
) -> Result<PublishOutcome, StoreError> {
    let base = registries
        .lookaside_base(image, true)?
        .ok_or_else(|| StoreError::NotConfigured(image.to_string()))?;
    tracing::debug!(base = %lookaside::redacted(&base.url), key = base.key, scope = %base.scope, file = %base.file.display(), "publishing");
    publish_signature(&base.url, image, digest, signature)
}

/// Publishes `signature` as the next free `signature-N` under `base` (a `file://` URL).
pub fn publish_signature(
    base: &Url,
    image: &Reference,
    digest: &str,
    signature: &[u8],
) -> Result<PublishOutcome, StoreError> {
    if signature.is_empty() {
        return Err(StoreError::Empty);
    }
    if base.scheme() != "file" {
        return Err(StoreError::UnsupportedScheme {
            url: lookaside::redacted(base),
        });
    }
    let dir_url = lookaside::signature_dir_url(base, image, digest)?;
    let dir = dir_url
        .to_file_path()
        .map_err(|()| StoreError::UnsupportedScheme {
            url: lookaside::redacted(base),
        })?;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { what, path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;

    // Same bytes already there? Then there is nothing to do.
    let mut first_free = 1;
    loop {
        let path = dir.join(format!("signature-{first_free}"));
        match read_existing(&path)? {
            None => break,
            Some(existing) if existing == signature => {
                return Ok(PublishOutcome::AlreadyPresent {
                    index: first_free,
                    path,
                })
            }
            Some(_) => first_free += 1,
        }
        if first_free > MAX_INDEX {
            return Err(StoreError::Full { dir });
        }
    }

    let mut tmp = tempfile::Builder::new()
        .prefix(".signbus-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(io("creating a temporary file in", &dir))?;
    tmp.write_all(signature)
        .map_err(io("writing", tmp.path()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io("setting permissions of", tmp.path()))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(io("syncing", tmp.path()))?;

    let mut n = first_free;
    let (index, path) = loop {
        if n > MAX_INDEX {
            return Err(StoreError::Full { dir });
        }
        let target = dir.join(format!("signature-{n}"));
        match std::fs::hard_link(tmp.path(), &target) {
            Ok(()) => break (n, target),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another publisher took N. If it stored these very bytes, we are done.
                if read_existing(&target)?.as_deref() == Some(signature) {
                    return Ok(PublishOutcome::AlreadyPresent {
                        index: n,
                        path: target,
                    });
                }
                n += 1;
            }
            Err(e) => return Err(io("linking", &target)(e)),
        }
    };
    drop(tmp); // removes the temporary name; signature-N keeps the data
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let back = std::fs::read(&path).map_err(io("reading back", &path))?;
    if back != signature {
        return Err(StoreError::ReadBackMismatch {
            path,
            read: back.len(),
            wrote: signature.len(),
        });
    }
    Ok(PublishOutcome::Written { index, path })
}

fn read_existing(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            what: "reading",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_deduplicates() {
        let root = tempfile::tempdir().unwrap();
        let base = Url::from_directory_path(root.path()).unwrap();
        let image = Reference::parse_normalized("reg.example.com/ns/repo:1").unwrap();
        let d = format!("sha256:{}", "ab".repeat(32));
        let a = publish_signature(&base, &image, &d, b"one").unwrap();
        assert!(
            matches!(a, PublishOutcome::Written { index: 1, .. }),
            "{a:?}"
        );
        assert!(a
            .path()
            .ends_with(format!("ns/repo@sha256={}/signature-1", "ab".repeat(32))));
        let b = publish_signature(&base, &image, &d, b"two").unwrap();
        assert!(
            matches!(b, PublishOutcome::Written { index: 2, .. }),
            "{b:?}"
        );
        let again = publish_signature(&base, &image, &d, b"one").unwrap();
        assert!(matches!(
            again,
            PublishOutcome::AlreadyPresent { index: 1, .. }
        ));
        let leftovers: Vec<_> = std::fs::read_dir(a.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with("signature-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let http = Url::parse("https://x/y").unwrap();
        assert!(matches!(
            publish_signature(&http, &image, &d, b"x"),
            Err(StoreError::UnsupportedScheme { .. })
        ));
    }
}
