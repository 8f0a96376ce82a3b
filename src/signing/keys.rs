//! Which keys a server may sign with, and how requests name them.
//!
//! The server configuration lists keys (any gpg key spec, plus an optional name and aliases). At start-up each
//! resolves to exactly one usable secret key's full fingerprint; from then on a request's `sig_key_id` (8- or
//! 16-hex suffix or full fingerprint), `sig_keyname`, or an alias must match exactly one configured key. Keys
//! not in the configuration are never used, whatever the keyring holds.

use super::secret::{passphrase_path, Passphrase};
use super::KeyError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One key entry of the server configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A key spec that resolves to exactly one secret key: full fingerprint (preferred), key id, or user id.
    pub id: String,
    /// A name requests may use in `sig_keyname`.
    #[serde(default)]
    pub name: Option<String>,
    /// More names for the same key.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A file holding the key's passphrase (one line), read once at start.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// The name of a systemd credential holding the key's passphrase (`LoadCredential=` in the unit; read from
    /// `$CREDENTIALS_DIRECTORY`), read once at start.
    #[serde(default)]
    pub passphrase_credential: Option<String>,
    /// An armored file holding this key's secret key (`gpg --armor --export-secret-keys`), for the in-process
    /// backend (`signing.backend: in-process`); the gpgme backend ignores it.
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
}

/// The passphrases of the keys that have one, by full fingerprint.
pub type Passphrases = HashMap<String, Passphrase>;

/// Reads the passphrase of every configured key that names one. `keys` is what `configs` resolved to (same
/// order); `credentials_dir` is systemd's `$CREDENTIALS_DIRECTORY`, if the process was given one. The error names
/// the key and the file, never the secret.
pub fn load_passphrases(
    configs: &[KeyConfig],
    keys: &KeyRing,
    credentials_dir: Option<&Path>,
) -> Result<Passphrases, KeyError> {
    let mut out = Passphrases::new();
    for (c, k) in configs.iter().zip(keys.keys()) {
        let bad = |e: super::secret::SecretError| KeyError::BadConfigured {
            id: c.id.clone(),
            reason: e.to_string(),
        };
        let file = c.passphrase_file.as_deref();
        let credential = c.passphrase_credential.as_deref();
        if let Some(path) = passphrase_path(file, credential, credentials_dir).map_err(bad)? {
            out.insert(
                k.fingerprint.clone(),
                Passphrase::from_file(&path).map_err(bad)?,
            );
        }
    }
    Ok(out)
}

/// A configured key, resolved to its full fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    /// Upper-case hex fingerprint of the primary key.
    pub fingerprint: String,
    /// The configured name, if any.
    pub name: Option<String>,
    /// The configured aliases.
    pub aliases: Vec<String>,
}

impl ResolvedKey {
    /// A short label for logs and metrics: the name, else the last 16 hex digits.
    pub fn label(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or(&self.fingerprint[self.fingerprint.len().saturating_sub(16)..])
    }

    fn matches(&self, token: &str) -> bool {
        let hex_id =
            matches!(token.len(), 8 | 16 | 40 | 64) && token.bytes().all(|b| b.is_ascii_hexdigit());
        (hex_id && self.fingerprint.ends_with(&token.to_ascii_uppercase()))
            || self.name.as_deref() == Some(token)
            || self.aliases.iter().any(|a| a == token)
    }
}

/// The set of keys a server signs with.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<ResolvedKey>,
}

impl KeyRing {
    /// A ring of already-resolved keys. Fails if a name or alias is used twice or a fingerprint repeats.
    pub fn new(keys: Vec<ResolvedKey>) -> Result<Self, KeyError> {
        for (i, k) in keys.iter().enumerate() {
            for other in &keys[..i] {
                if other.fingerprint == k.fingerprint {
                    return Err(KeyError::BadConfigured {
                        id: k.fingerprint.clone(),
                        reason: "listed twice".into(),
                    });
                }
                let names = k.name.iter().chain(&k.aliases);
                if let Some(n) = names
                    .into_iter()
                    .find(|n| other.name.as_ref() == Some(*n) || other.aliases.contains(n))
                {
                    return Err(KeyError::BadConfigured {
                        id: k.fingerprint.clone(),
                        reason: format!(
                            "name or alias {n:?} is already used by {}",
                            other.fingerprint
                        ),
                    });
                }
            }
        }
        Ok(KeyRing { keys })
    }

    /// Every configured key.
    pub fn keys(&self) -> &[ResolvedKey] {
        &self.keys
    }

    /// The one key named by `token` (hex id suffix, name or alias).
    pub fn find(&self, token: &str) -> Result<&ResolvedKey, KeyError> {
        let hits: Vec<&ResolvedKey> = self.keys.iter().filter(|k| k.matches(token)).collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => Err(KeyError::Unknown(token.to_owned())),
            many => Err(KeyError::Ambiguous {
                query: token.to_owned(),
                candidates: many
                    .iter()
                    .map(|k| k.fingerprint.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The key a request names by `sig_key_id` and/or `sig_keyname` (empty strings count as absent); when both
    /// are given they must agree.
    pub fn lookup(
        &self,
        key_id: Option<&str>,
        key_name: Option<&str>,
    ) -> Result<&ResolvedKey, KeyError> {
        let key_id = key_id.filter(|s| !s.is_empty());
        let key_name = key_name.filter(|s| !s.is_empty());
        match (key_id, key_name) {
            (Some(id), Some(name)) => {
                let a = self.find(id)?;
                let b = self.find(name)?;
                if a.fingerprint != b.fingerprint {
                    return Err(KeyError::Mismatch {
                        key_id: id.into(),
                        key_name: name.into(),
                    });
                }
                Ok(a)
            }
            (Some(t), None) | (None, Some(t)) => self.find(t),
            (None, None) => Err(KeyError::Unknown(String::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![
            ResolvedKey {
                fingerprint: "AAAA1111BBBB2222CCCC3333DDDD444423456789".into(),
                name: Some("ed".into()),
                aliases: vec!["e".into()],
            },
            ResolvedKey {
                fingerprint: "0000111122223333444455556666777723456789".into(),
                name: Some("rsa".into()),
                aliases: vec![],
            },
            ResolvedKey {
                fingerprint: "9999888877776666555544443333222211110000".into(),
                name: None,
                aliases: vec![],
            },
        ])
        .unwrap()
    }

    #[test]
    fn short_ids_names_and_aliases_resolve_to_one_key() {
        let r = ring();
        assert_eq!(
            r.find("11110000").unwrap().fingerprint,
            "9999888877776666555544443333222211110000"
        );
        assert_eq!(
            r.find("dddd444423456789").unwrap().name.as_deref(),
            Some("ed")
        );
        assert_eq!(r.find("e").unwrap().name.as_deref(), Some("ed"));
        assert_eq!(
            r.lookup(Some("DDDD444423456789"), Some("ed"))
                .unwrap()
                .name
                .as_deref(),
            Some("ed")
        );
        assert_eq!(
            r.lookup(Some(""), Some("rsa")).unwrap().name.as_deref(),
            Some("rsa")
        );
    }

    #[test]
    fn ambiguous_unknown_and_mismatched_are_refused() {
        let r = ring();
        assert!(matches!(
            r.find("23456789"),
            Err(KeyError::Ambiguous { .. })
        ));
        assert!(matches!(r.find("deadbeef"), Err(KeyError::Unknown(_))));
        assert!(
            matches!(r.find("1111"), Err(KeyError::Unknown(_))),
            "4 hex digits is not an id"
        );
        assert!(matches!(
            r.lookup(Some("11110000"), Some("ed")),
            Err(KeyError::Mismatch { .. })
        ));
        assert!(r.lookup(None, None).is_err());
        let dup = vec![
            ResolvedKey {
                fingerprint: "A".repeat(40),
                name: Some("x".into()),
                aliases: vec![],
            },
            ResolvedKey {
                fingerprint: "B".repeat(40),
                name: None,
                aliases: vec!["x".into()],
            },
        ];
        assert!(KeyRing::new(dup).is_err());
    }
}
