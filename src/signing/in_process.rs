//! The in-process backend: secret keys read from armored key files, unlocked once and held in memory, signing
//! with rPGP (the `pgp` crate) on the shared [`Workers`] threads. No gpg, no gpg-agent, no process per signature.
//!
//! It makes exactly the shapes the server needs, as gpg does: a binary signed message (one-pass signature,
//! literal data, signature: what an image signature is), a cleartext signature (built here over bytes, with
//! gpg's canonical text: trailing spaces and tabs ignored, CRLF line ends, dash escaping) and a detached
//! signature, armored or binary. Every signature is a v4 signature with SHA-256, signature creation time and
//! issuer fingerprint hashed, issuer key id unhashed. Only the primary key signs.
//!
//! At start each key is checked (one key per file, the configured `id` names it, it may sign, not revoked or
//! expired), its passphrase unlocks it (the S2K runs once, never per signature) and it makes a test signature
//! that is verified, so a server that starts can sign; any failure names the key.

use super::keys::{KeyConfig, KeyRing, Passphrases, ResolvedKey};
use super::workers::{SignFn, Workers};
use super::{KeyError, SignError, SignMode, SigningPool};
use pgp::composed::{
    ArmorOptions, Deserializable as _, DetachedSignature, MessageBuilder, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize as _;
use pgp::types::{KeyDetails as _, Password};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The secret keys read from the configured files, still locked, by full fingerprint.
pub struct SecretKeys {
    keys: HashMap<String, (PathBuf, SignedSecretKey)>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("fingerprints", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads every configured key's `secret_key_file` and resolves the key to its fingerprint: the file must hold
/// exactly one secret key, which the configured `id` names (a hex key id or fingerprint it ends with, or a part
/// of one of its user ids), and which may sign and is neither revoked nor expired.
pub fn resolve_keys(configs: &[KeyConfig]) -> Result<(KeyRing, SecretKeys), KeyError> {
    let mut resolved = Vec::new();
    let mut keys = HashMap::new();
    for c in configs {
        let bad = |reason: String| KeyError::BadConfigured {
            id: c.id.clone(),
            reason,
        };
        let path = c.secret_key_file.as_deref().ok_or_else(|| {
            bad("the in-process backend needs its secret_key_file (an armored secret key)".into())
        })?;
        let key = read_key(path).map_err(bad)?;
        let fingerprint = format!("{:X}", key.primary_key.fingerprint());
        if !names_key(&c.id, &fingerprint, &key) {
            return Err(bad(format!(
                "{} holds key {fingerprint}, which this id does not name",
                path.display()
            )));
        }
        usable(&key).map_err(|why| bad(format!("key in {} is {why}", path.display())))?;
        resolved.push(ResolvedKey {
            fingerprint: fingerprint.clone(),
            name: c.name.clone(),
            aliases: c.aliases.clone(),
        });
        keys.insert(fingerprint, (path.to_owned(), key));
    }
    Ok((KeyRing::new(resolved)?, SecretKeys { keys }))
}

fn read_key(path: &Path) -> Result<SignedSecretKey, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    let not_one = |what: &str| format!("{} {what}", path.display());
    let (mut found, _headers) = SignedSecretKey::from_armor_many(&text[..])
        .map_err(|e| not_one(&format!("is not an armored OpenPGP secret key: {e}")))?;
    let key = match found.next() {
        Some(Ok(k)) => k,
        Some(Err(e)) => return Err(not_one(&format!("holds an unreadable secret key: {e}"))),
        None => return Err(not_one("holds no secret key")),
    };
    if found.next().is_some() {
        return Err(not_one(
            "holds more than one secret key; give one key per file",
        ));
    }
    Ok(key)
}

/// Whether the configured `id` names this key, as gpg would resolve it: a hex key id or fingerprint (optionally
/// `0x`-prefixed) the fingerprint ends with, or text contained in one of its user ids.
fn names_key(id: &str, fingerprint: &str, key: &SignedSecretKey) -> bool {
    let hex = id.trim_start_matches("0x").to_ascii_uppercase();
    let is_hex =
        matches!(hex.len(), 8 | 16 | 40 | 64) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        return fingerprint.ends_with(&hex);
    }
    !id.is_empty()
        && key.details.users.iter().any(|u| {
            String::from_utf8_lossy(u.id.id())
                .to_lowercase()
                .contains(&id.to_lowercase())
        })
}

/// Why the primary key cannot sign, if it cannot: revoked, expired (by its newest self-signature), or its key
/// flags exclude signing.
fn usable(key: &SignedSecretKey) -> Result<(), &'static str> {
    if !key.details.revocation_signatures.is_empty() {
        return Err("revoked");
    }
    let newest = key
        .details
        .users
        .iter()
        .flat_map(|u| &u.signatures)
        .chain(&key.details.direct_signatures)
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
    if let Some(sig) = newest {
        if let Some(valid_for) = sig.key_expiration_time() {
            let created = u64::from(key.primary_key.created_at().as_secs());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let valid_for = u64::from(valid_for.as_secs());
            if valid_for != 0 && created + valid_for <= now {
                return Err("expired");
            }
        }
        let flags = sig.key_flags();
        if flags != Default::default() && !flags.sign() {
            return Err("not capable of signing (its key flags exclude signing)");
        }
    }
    Ok(())
}

impl SigningPool {
    /// The in-process backend: unlocks every key of `secrets` with its passphrase from `passphrases` (a key without one must not be
    /// protected), makes and verifies one test signature per key, and starts `workers` signing threads.
    pub fn in_process(
        keys: KeyRing,
        secrets: SecretKeys,
        passphrases: Passphrases,
        workers: usize,
    ) -> Result<Self, SignError> {
        let mut unlocked = HashMap::new();
        for (fpr, (path, mut key)) in secrets.keys {
            let bad = |reason: String| KeyError::BadConfigured {
                id: fpr.clone(),
                reason,
            };
            let locked = key.primary_key.secret_params().is_encrypted();
            match (locked, passphrases.get(&fpr)) {
                (true, None) => {
                    return Err(bad(format!(
                        "the key in {} needs a passphrase and none is configured \
                         (passphrase_file or passphrase_credential)",
                        path.display()
                    ))
                    .into())
                }
                (true, Some(p)) => key
                    .primary_key
                    .remove_password(&Password::from(p.expose()))
                    .map_err(|e| {
                        bad(format!(
                            "the configured passphrase does not unlock the key in {} (wrong \
                             passphrase?): {e}",
                            path.display()
                        ))
                    })?,
                (false, _) => {}
            }
            let test = b"signbus start-up test";
            sign(&key, SignMode::Detached { armor: false }, test)
                .and_then(|sig| verify_detached(&key, &sig, test))
                .map_err(|reason| bad(format!("start-up test signature failed: {reason}")))?;
            unlocked.insert(fpr, key);
        }
        let unlocked = Arc::new(unlocked);
        let workers = Workers::start("signbus-sign", workers, move || {
            let keys = unlocked.clone();
            let sign_one: SignFn = Box::new(move |fpr: &str, mode: SignMode, data: &[u8]| {
                let key = keys
                    .get(fpr)
                    .ok_or_else(|| SignError::from(KeyError::Unknown(fpr.to_owned())))?;
                sign(key, mode, data).map_err(|reason| SignError::Gpg {
                    fingerprint: fpr.to_owned(),
                    reason,
                })
            });
            Ok(sign_one)
        })?;
        Ok(SigningPool { workers, keys })
    }
}

const HASH: HashAlgorithm = HashAlgorithm::Sha256;

/// One signature of `data` in `mode` with the (unlocked) primary key of `key`.
fn sign(key: &SignedSecretKey, mode: SignMode, data: &[u8]) -> Result<Vec<u8>, String> {
    let signer = &key.primary_key;
    let pw = Password::empty();
    let rng = rand_core::OsRng;
    let err = |e: pgp::errors::Error| e.to_string();
    match mode {
        SignMode::Normal => {
            let mut b = MessageBuilder::from_bytes("", data.to_vec());
            b.sign(signer, pw, HASH);
            b.to_vec(rng).map_err(err)
        }
        SignMode::Detached { armor } => {
            let sig =
                DetachedSignature::sign_binary_data(rng, signer, &pw, HASH, data).map_err(err)?;
            if armor {
                sig.to_armored_bytes(ArmorOptions::default()).map_err(err)
            } else {
                sig.to_bytes().map_err(err)
            }
        }
        SignMode::Clear => {
            let (shown, hashed) = cleartext(data);
            let sig = DetachedSignature::sign_text_data(rng, signer, &pw, HASH, &hashed[..])
                .map_err(err)?;
            let mut out = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n".to_vec();
            out.extend_from_slice(&shown);
            out.extend_from_slice(&sig.to_armored_bytes(ArmorOptions::default()).map_err(err)?);
            Ok(out)
        }
    }
}

/// The cleartext framework (RFC 4880 §7) over bytes: what is shown (each line dash-escaped when it starts
/// with `-` or `From `, each ending in LF, so a last line without one gets one) and what is signed (each line
/// without trailing spaces, tabs and CR, joined by CRLF, with no line end after the last).
fn cleartext(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut shown = Vec::with_capacity(data.len() + 16);
    let mut hashed = Vec::with_capacity(data.len() + 16);
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.starts_with(b"-") || line.starts_with(b"From ") {
            shown.extend_from_slice(b"- ");
        }
        shown.extend_from_slice(line);
        shown.push(b'\n');
        if i > 0 {
            hashed.extend_from_slice(b"\r\n");
        }
        let keep = line
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            .map_or(0, |p| p + 1);
        hashed.extend_from_slice(&line[..keep]);
    }
    (shown, hashed)
}

/// Checks a binary detached signature of `data` against the public part of `key`.
fn verify_detached(key: &SignedSecretKey, sig: &[u8], data: &[u8]) -> Result<(), String> {
    let sig = DetachedSignature::from_bytes(sig).map_err(|e| e.to_string())?;
    sig.verify(&key.primary_key.public_key(), data)
        .map_err(|e| format!("it does not verify: {e}"))
}

#[cfg(test)]
mod tests {
    use super::cleartext;

    #[test]
    fn cleartext_shows_escaped_lines_and_signs_canonical_text() {
        let (shown, hashed) = cleartext(b"a  \n-b\nFrom x\t\r\nc");
        assert_eq!(shown, b"a  \n- -b\n- From x\t\r\nc\n");
        assert_eq!(hashed, b"a\r\n-b\r\nFrom x\r\nc");
        let (shown, hashed) = cleartext(b"one\n");
        assert_eq!(
            (shown.as_slice(), hashed.as_slice()),
            (&b"one\n"[..], &b"one"[..])
        );
        let (shown, hashed) = cleartext(b"");
        assert_eq!(
            (shown.as_slice(), hashed.as_slice()),
            (&b"\n"[..], &b""[..])
        );
    }
}
