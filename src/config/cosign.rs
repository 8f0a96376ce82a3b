//! `signing.cosign_keys`: the cosign keys a server signs `cosign_signature` requests with, and [`load`], which
//! reads and decrypts them once at start (a wrong password or a key of another type stops the start, naming the
//! key).

use crate::cosign::ring::{DuplicateName, KeyRing};
use crate::cosign::{KeyError, PrivateKey};
use crate::signing::secret::{passphrase_path, Passphrase, SecretError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One cosign key entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CosignKeyConfig {
    /// The name requests use (`sig_key_id` of a `cosign_signature` request; authorization grants too).
    pub name: String,
    /// More names for the same key.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The encrypted private key as `cosign generate-key-pair` (or `signbus cosign-generate-key-pair`) wrote it.
    pub key_file: PathBuf,
    /// A file holding the key's password (one line). Neither this nor `passphrase_credential`: the empty
    /// password (cosign allows one).
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// The name of a systemd credential holding the key's password (`$CREDENTIALS_DIRECTORY`).
    #[serde(default)]
    pub passphrase_credential: Option<String>,
}

/// Why the cosign keys could not be loaded. Retrying will not help: fix the configuration or the files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CosignKeyError {
    /// The password source is misconfigured or unreadable.
    #[error("cosign key {name:?}: {source}")]
    Password { name: String, source: SecretError },
    /// The key file cannot be read.
    #[error("cosign key {name:?}: reading {path}: {source}")]
    Read {
        name: String,
        path: String,
        source: std::io::Error,
    },
    /// The key file does not open with the password, or is not a P-256 cosign key.
    #[error("cosign key {name:?} ({path}): {source}")]
    Key {
        name: String,
        path: String,
        source: KeyError,
    },
    /// Two keys share a name.
    #[error(transparent)]
    Duplicate(#[from] DuplicateName),
}

/// Reads and decrypts every configured cosign key; `credentials_dir` is systemd's `$CREDENTIALS_DIRECTORY`.
pub fn load(
    configs: &[CosignKeyConfig],
    credentials_dir: Option<&Path>,
) -> Result<KeyRing, CosignKeyError> {
    let mut keys = Vec::new();
    for c in configs {
        let name = c.name.clone();
        let password = match passphrase_path(
            c.passphrase_file.as_deref(),
            c.passphrase_credential.as_deref(),
            credentials_dir,
        ) {
            Ok(Some(p)) => Passphrase::from_file(&p),
            Ok(None) => Ok(Passphrase::from_bytes(Vec::new())),
            Err(e) => Err(e),
        }
        .map_err(|source| CosignKeyError::Password {
            name: name.clone(),
            source,
        })?;
        let path = c.key_file.display().to_string();
        let pem = std::fs::read(&c.key_file).map_err(|source| CosignKeyError::Read {
            name: name.clone(),
            path: path.clone(),
            source,
        })?;
        let key = PrivateKey::from_encrypted_pem(&pem, &password)
            .map_err(|source| CosignKeyError::Key { name, path, source })?;
        keys.push((c.name.clone(), c.aliases.clone(), key));
    }
    Ok(KeyRing::new(keys)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_load_with_their_password_and_a_wrong_one_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let pair =
            crate::cosign::generate_key_pair(&Passphrase::from_bytes(b"pw".to_vec())).unwrap();
        std::fs::write(dir.path().join("cosign.key"), &pair.private_pem).unwrap();
        std::fs::write(dir.path().join("pw"), "pw\n").unwrap();
        std::fs::write(dir.path().join("bad"), "nope\n").unwrap();
        let cfg = |pw: &str| CosignKeyConfig {
            name: "release".into(),
            aliases: vec!["r".into()],
            key_file: dir.path().join("cosign.key"),
            passphrase_file: Some(dir.path().join(pw)),
            passphrase_credential: None,
        };
        let ring = load(&[cfg("pw")], None).unwrap();
        assert_eq!(ring.find("r").unwrap().name, "release");
        let e = load(&[cfg("bad")], None).unwrap_err().to_string();
        assert!(e.starts_with("cosign key \"release\""), "{e}");
        assert!(e.to_lowercase().contains("password"), "{e}");
    }
}
