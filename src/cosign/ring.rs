//! [`KeyRing`]: the cosign keys a signing server holds, decrypted once at start, found by name or alias.
//!
//! Loading is the caller's: it reads the key files and passwords and hands over [`PrivateKey`]s. This module
//! never reads files or the environment.

use super::PrivateKey;

/// One cosign key the server signs with.
#[derive(Debug)]
pub struct NamedKey {
    /// The name requests use (`sig_key_id`).
    pub name: String,
    /// More names for the same key.
    pub aliases: Vec<String>,
    /// `sha256:<hex>` of the public key (SPKI DER): how logs and authorization know the key.
    pub fingerprint: String,
    /// The public key as PEM (what replies carry beside each signature).
    pub public_pem: String,
    /// The decrypted key.
    pub key: PrivateKey,
}

/// Two configured cosign keys share a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cosign key name {0:?} is used twice (names and aliases must be unique)")]
pub struct DuplicateName(pub String);

/// The server's cosign keys.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<NamedKey>,
}

impl KeyRing {
    /// A ring of `keys` (given as name, aliases, key); refuses a name or alias used twice.
    pub fn new(
        keys: impl IntoIterator<Item = (String, Vec<String>, PrivateKey)>,
    ) -> Result<Self, DuplicateName> {
        let mut ring = KeyRing::default();
        for (name, aliases, key) in keys {
            for n in std::iter::once(&name).chain(&aliases) {
                if ring.find(n).is_some() || aliases.iter().filter(|a| *a == n).count() > 1 {
                    return Err(DuplicateName(n.clone()));
                }
            }
            let public = key.public_key();
            ring.keys.push(NamedKey {
                name,
                aliases,
                fingerprint: public.fingerprint(),
                public_pem: public.to_pem(),
                key,
            });
        }
        Ok(ring)
    }

    /// The key named `token` (its name or an alias).
    pub fn find(&self, token: &str) -> Option<&NamedKey> {
        self.keys
            .iter()
            .find(|k| k.name == token || k.aliases.iter().any(|a| a == token))
    }

    /// Every key.
    pub fn keys(&self) -> &[NamedKey] {
        &self.keys
    }

    /// True when the server holds no cosign key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_name_or_alias_and_names_are_unique() {
        let ring = KeyRing::new([
            ("a".to_owned(), vec!["x".to_owned()], PrivateKey::generate()),
            ("b".to_owned(), vec![], PrivateKey::generate()),
        ])
        .unwrap();
        assert_eq!(ring.find("x").unwrap().name, "a");
        assert_eq!(ring.find("b").unwrap().name, "b");
        assert!(ring.find("c").is_none());
        assert!(ring.find("a").unwrap().fingerprint.starts_with("sha256:"));
        let twice = KeyRing::new([
            ("a".to_owned(), vec![], PrivateKey::generate()),
            ("b".to_owned(), vec!["a".to_owned()], PrivateKey::generate()),
        ]);
        assert_eq!(twice.unwrap_err(), DuplicateName("a".into()));
    }
}
