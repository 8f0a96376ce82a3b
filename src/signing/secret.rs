//! Key passphrases: read once at start from a file or a systemd credential, held in memory, never shown.
//!
//! A [`Passphrase`] has no `Display`, its `Debug` prints `Passphrase(<redacted>)`, and its bytes are overwritten
//! when it is dropped. The only way to the secret is [`Passphrase::expose`], which the signing backend calls
//! when gpg asks. This module reads files; it never logs, and it knows nothing of requests or AMQP.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret passphrase.
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    /// Reads a passphrase from `path`: the file's content without one trailing line break. The error names the
    /// file, never its content.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let mut bytes = std::fs::read(path).map_err(|e| SecretError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        for end in [&b"\r\n"[..], b"\n"] {
            if bytes.ends_with(end) {
                let keep = bytes.len() - end.len();
                bytes[keep..].fill(0);
                bytes.truncate(keep);
                break;
            }
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty(path.to_owned()));
        }
        if bytes.contains(&b'\n') {
            bytes.fill(0);
            return Err(SecretError::MultiLine(path.to_owned()));
        }
        Ok(Passphrase(bytes))
    }

    /// A passphrase given as bytes at the binary's edge (cosign's `COSIGN_PASSWORD`). Empty is allowed: cosign
    /// encrypts keys under an empty password when told to.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Passphrase(bytes)
    }

    /// The secret itself, for the signer to hand to gpg. Never log or format it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Drop for Passphrase {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference into our own buffer.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Why a passphrase could not be read. Fix the configuration or the file; retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The file cannot be read.
    #[error("passphrase file {} cannot be read: {reason}", .path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// The file is empty.
    #[error("passphrase file {} is empty", .0.display())]
    Empty(PathBuf),
    /// The file holds more than one line.
    #[error("passphrase file {} holds more than one line", .0.display())]
    MultiLine(PathBuf),
    /// A systemd credential is named but the process was given no credentials directory.
    #[error(
        "passphrase_credential {0:?} needs systemd's $CREDENTIALS_DIRECTORY (LoadCredential= in the unit), \
         which is not set"
    )]
    NoCredentialsDirectory(String),
    /// A credential name that is not a plain file name.
    #[error("passphrase_credential {0:?} is not a plain credential name")]
    BadCredentialName(String),
    /// Both a file and a credential are configured.
    #[error("passphrase_file and passphrase_credential are both set; use one")]
    TwoSources,
}

/// The file a key's passphrase is read from: `file` as given, or the credential `credential` in systemd's
/// credentials directory (`$CREDENTIALS_DIRECTORY`, passed in by the caller). `None`: the key has no passphrase.
pub fn passphrase_path(
    file: Option<&Path>,
    credential: Option<&str>,
    credentials_dir: Option<&Path>,
) -> Result<Option<PathBuf>, SecretError> {
    match (file, credential) {
        (Some(_), Some(_)) => Err(SecretError::TwoSources),
        (Some(f), None) => Ok(Some(f.to_owned())),
        (None, Some(name)) => {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(SecretError::BadCredentialName(name.to_owned()));
            }
            let dir = credentials_dir
                .ok_or_else(|| SecretError::NoCredentialsDirectory(name.to_owned()))?;
            Ok(Some(dir.join(name)))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_is_read_without_its_line_break_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, "s3cret-words\n").unwrap();
        let p = Passphrase::from_file(&path).unwrap();
        assert_eq!(p.expose(), b"s3cret-words");
        let shown = format!("{p:?} {:?}", Some(&p));
        assert!(!shown.contains("s3cret"), "{shown}");
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            Passphrase::from_file(&path).unwrap_err(),
            SecretError::Empty(path.clone())
        );
        std::fs::write(&path, "a\nb\n").unwrap();
        let e = Passphrase::from_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("more than one line") && !e.contains('a'.to_string().repeat(2).as_str())
        );
        let e = Passphrase::from_file(&dir.path().join("none")).unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
    }

    #[test]
    fn credentials_come_from_the_directory_systemd_gives() {
        let dir = Path::new("/run/credentials/signbus.service");
        assert_eq!(
            passphrase_path(None, Some("release-key"), Some(dir)),
            Ok(Some(dir.join("release-key")))
        );
        assert_eq!(
            passphrase_path(None, Some("k"), None),
            Err(SecretError::NoCredentialsDirectory("k".into()))
        );
        assert!(passphrase_path(None, Some("../etc/shadow"), Some(dir)).is_err());
        assert_eq!(
            passphrase_path(Some(Path::new("/p")), Some("k"), Some(dir)),
            Err(SecretError::TwoSources)
        );
        assert_eq!(passphrase_path(None, None, Some(dir)), Ok(None));
    }
}
