//! OpenPGP verification of signature blobs against one requirement's keys, in a throwaway keyring.
//!
//! Owns the cryptographic check: the blob must be an OpenPGP *signed message* (not a detached or cleartext
//! signature), carry exactly one signature, and that signature must be good and made by one of the keys
//! imported into a private, temporary GNUPGHOME. It returns the signed payload's bytes; it never parses them
//! and never consults the user's keyring, trust database or agent.

use base64::Engine as _;
use gpgme::{Context, Protocol, SignatureSummary, Validity};
use std::collections::BTreeSet;

/// Why a keyring for a requirement could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpgError {
    /// The temporary GNUPGHOME could not be created.
    #[error("creating a temporary GNUPGHOME: {0}")]
    TempHome(std::io::Error),
    /// gpgme refused to create or configure a context.
    #[error("gpgme: {0}")]
    Context(String),
    /// A keyring did not import.
    #[error("importing trusted keys: {0}")]
    Import(String),
    /// The keyrings held no public key.
    #[error("no public keys imported from the requirement's keys")]
    NoKeys,
}

/// Why one signature blob is not acceptable. The message is the reason shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureRejection {
    /// `-----BEGIN PGP SIGNED MESSAGE-----`.
    #[error("a cleartext signature (-----BEGIN PGP SIGNED MESSAGE-----), not an OpenPGP signed message; image signatures must be made with gpg --sign")]
    Cleartext,
    /// Only signature packets: a detached signature.
    #[error("a detached signature, not an OpenPGP signed message; image signatures must contain the signed claim (gpg --sign)")]
    Detached,
    /// Encrypted data.
    #[error("an encrypted OpenPGP message, not a signed message")]
    Encrypted,
    /// Anything else that is not an OpenPGP message.
    #[error("not an OpenPGP signed message: {0}")]
    NotAMessage(String),
    /// gpg found no signature, or more than one.
    #[error("expected exactly one OpenPGP signature, found {0}")]
    SignatureCount(usize),
    /// The signing key is not one of the requirement's keys.
    #[error("signed by key {0}, which is not one of the trusted keys")]
    UnknownKey(String),
    /// Bad, expired or revoked.
    #[error("invalid signature by key {fingerprint}: {reason}")]
    Invalid {
        /// The signing key as gpg reports it.
        fingerprint: String,
        /// Why.
        reason: String,
    },
    /// gpg failed to process the blob.
    #[error("gpg could not verify it: {0}")]
    Gpg(String),
}

/// A signature that checked out: the signing (primary) key's fingerprint and the payload it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Fingerprint of the trusted primary key that made the signature.
    pub fingerprint: String,
    /// The signed bytes. Only now may they be parsed.
    pub payload: Vec<u8>,
}

/// The trusted keys of one requirement, imported into a temporary GNUPGHOME that is deleted on drop.
pub struct TrustedKeys {
    ctx: Context,
    fingerprints: BTreeSet<String>,
    // Dropped after `ctx` (fields drop in declaration order), so gpg is done with the directory first.
    _home: tempfile::TempDir,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKeys")
            .field("fingerprints", &self.fingerprints)
            .finish()
    }
}

impl TrustedKeys {
    /// Imports the given keyrings (binary or armored) into a fresh GNUPGHOME.
    pub fn import<'a>(keyrings: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, GpgError> {
        let home = tempfile::Builder::new()
            .prefix("signbus-verify-")
            .tempdir()
            .map_err(GpgError::TempHome)?;
        let gpg_err = |e: gpgme::Error| GpgError::Context(e.to_string());
        let mut ctx = Context::from_protocol(Protocol::OpenPgp).map_err(gpg_err)?;
        ctx.set_engine_home_dir(home.path().to_string_lossy().as_bytes().to_vec())
            .map_err(gpg_err)?;
        ctx.set_armor(false);
        ctx.set_text_mode(false);
        ctx.set_offline(true);
        let mut fingerprints = BTreeSet::new();
        for ring in keyrings {
            let result = ctx
                .import(ring)
                .map_err(|e| GpgError::Import(e.to_string()))?;
            for i in result.imports() {
                if i.result().is_ok() {
                    if let Ok(fpr) = i.fingerprint() {
                        fingerprints.insert(fpr.to_uppercase());
                    }
                }
            }
        }
        if fingerprints.is_empty() {
            return Err(GpgError::NoKeys);
        }
        Ok(TrustedKeys {
            ctx,
            fingerprints,
            _home: home,
        })
    }

    /// Fingerprints of the imported primary keys.
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> {
        self.fingerprints.iter().map(String::as_str)
    }

    /// Checks `blob` and returns what it signed. The payload is untrusted until this returns `Ok`.
    pub fn verify(&mut self, blob: &[u8]) -> Result<Verified, SignatureRejection> {
        let binary = signed_message_bytes(blob)?;
        let mut payload = Vec::new();
        let result = self
            .ctx
            .verify_opaque(&binary[..], &mut payload)
            .map_err(|e| SignatureRejection::Gpg(e.to_string()))?;
        let sigs: Vec<_> = result.signatures().collect();
        if sigs.len() != 1 {
            return Err(SignatureRejection::SignatureCount(sigs.len()));
        }
        let sig = &sigs[0];
        let reported = sig.fingerprint().unwrap_or("(unknown)").to_uppercase();
        if let Err(e) = sig.status() {
            if e.code() == gpgme::Error::NO_PUBKEY.code() {
                return Err(SignatureRejection::UnknownKey(reported));
            }
            return Err(SignatureRejection::Invalid {
                fingerprint: reported,
                reason: e.to_string(),
            });
        }
        let summary = sig.summary();
        let bad = [
            (SignatureSummary::RED, "bad signature"),
            (SignatureSummary::KEY_REVOKED, "key revoked"),
            (SignatureSummary::KEY_EXPIRED, "key expired"),
            (SignatureSummary::SIG_EXPIRED, "signature expired"),
            (SignatureSummary::KEY_MISSING, "key missing"),
        ];
        if let Some((_, why)) = bad.iter().find(|(flag, _)| summary.contains(*flag)) {
            return Err(SignatureRejection::Invalid {
                fingerprint: reported,
                reason: (*why).to_owned(),
            });
        }
        if sig.validity() == Validity::Never {
            return Err(SignatureRejection::Invalid {
                fingerprint: reported,
                reason: "key validity is \"never\"".to_owned(),
            });
        }
        if let Some(e) = sig.nonvalidity_reason() {
            return Err(SignatureRejection::Invalid {
                fingerprint: reported,
                reason: e.to_string(),
            });
        }
        if sig.is_wrong_key_usage() {
            return Err(SignatureRejection::Invalid {
                fingerprint: reported,
                reason: "key not usable for signing".to_owned(),
            });
        }
        // gpg may report a signing subkey; trust is on the primary key that was imported.
        let primary = self
            .ctx
            .get_key(reported.as_str())
            .ok()
            .and_then(|k| k.fingerprint().ok().map(str::to_uppercase))
            .unwrap_or_else(|| reported.clone());
        if !self.fingerprints.contains(&primary) {
            return Err(SignatureRejection::UnknownKey(primary));
        }
        Ok(Verified {
            fingerprint: primary,
            payload,
        })
    }
}

/// Checks the blob's outer shape and returns its binary form: a binary OpenPGP message, or an armored
/// `PGP MESSAGE` decoded. Cleartext and detached signatures, encrypted data and other input are refused here,
/// before gpg sees them (gpg would happily "verify" a cleartext signature).
pub fn signed_message_bytes(blob: &[u8]) -> Result<Vec<u8>, SignatureRejection> {
    let binary = match blob.first() {
        None => return Err(SignatureRejection::NotAMessage("empty".to_owned())),
        Some(b) if b & 0x80 != 0 => blob.to_vec(),
        Some(_) => dearmor(blob)?,
    };
    let tags = top_level_tags(&binary).map_err(SignatureRejection::NotAMessage)?;
    if tags.iter().any(|t| matches!(t, 1 | 3 | 9 | 18 | 20)) {
        return Err(SignatureRejection::Encrypted);
    }
    if tags.iter().any(|t| matches!(t, 8 | 11)) {
        return Ok(binary);
    }
    if !tags.is_empty() && tags.iter().all(|t| matches!(t, 2 | 10)) {
        return Err(SignatureRejection::Detached);
    }
    Err(SignatureRejection::NotAMessage(format!(
        "OpenPGP packets {tags:?} hold no signed data"
    )))
}

fn dearmor(blob: &[u8]) -> Result<Vec<u8>, SignatureRejection> {
    let text = std::str::from_utf8(blob).map_err(|_| {
        SignatureRejection::NotAMessage("neither binary OpenPGP nor ASCII armor".to_owned())
    })?;
    let trimmed = text.trim_start();
    let header = trimmed.lines().next().unwrap_or("").trim_end();
    match header {
        "-----BEGIN PGP MESSAGE-----" => {}
        "-----BEGIN PGP SIGNED MESSAGE-----" => return Err(SignatureRejection::Cleartext),
        "-----BEGIN PGP SIGNATURE-----" => return Err(SignatureRejection::Detached),
        _ => {
            return Err(SignatureRejection::NotAMessage(
                "neither binary OpenPGP nor an armored PGP MESSAGE".to_owned(),
            ))
        }
    }
    let mut lines = trimmed.lines().skip(1);
    // Armor headers end at the first empty line.
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
    }
    let mut b64 = String::new();
    let mut ended = false;
    for l in lines {
        let l = l.trim();
        if l == "-----END PGP MESSAGE-----" {
            ended = true;
            break;
        }
        if l.starts_with('=') {
            continue; // CRC-24 checksum line
        }
        b64.push_str(l);
    }
    if !ended {
        return Err(SignatureRejection::NotAMessage(
            "armor has no END PGP MESSAGE line".to_owned(),
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| SignatureRejection::NotAMessage(format!("bad armor: {e}")))
}

/// The tags of the top-level packets, or why the packet stream is malformed.
fn top_level_tags(b: &[u8]) -> Result<Vec<u8>, String> {
    let mut tags = Vec::new();
    let mut i = 0usize;
    let take = |i: usize, n: usize| -> Result<&[u8], String> {
        b.get(i..i + n)
            .ok_or_else(|| "truncated OpenPGP packet".to_owned())
    };
    while i < b.len() {
        let h = b[i];
        if h & 0x80 == 0 {
            return Err(format!("byte {i} is not an OpenPGP packet header"));
        }
        i += 1;
        if h & 0x40 != 0 {
            let tag = h & 0x3f;
            tags.push(tag);
            // New format: possibly a chain of partial body lengths.
            loop {
                let l0 = take(i, 1)?[0] as usize;
                let (len, partial, hdr) = match l0 {
                    0..=191 => (l0, false, 1),
                    192..=223 => (
                        ((l0 - 192) << 8) + take(i + 1, 1)?[0] as usize + 192,
                        false,
                        2,
                    ),
                    255 => {
                        let x = take(i + 1, 4)?;
                        (
                            u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize,
                            false,
                            5,
                        )
                    }
                    _ => (1usize << (l0 & 0x1f), true, 1),
                };
                i += hdr;
                take(i, len)?;
                i += len;
                if !partial {
                    break;
                }
            }
        } else {
            let tag = (h >> 2) & 0x0f;
            tags.push(tag);
            let len = match h & 3 {
                0 => {
                    let x = take(i, 1)?;
                    i += 1;
                    x[0] as usize
                }
                1 => {
                    let x = take(i, 2)?;
                    i += 2;
                    u16::from_be_bytes([x[0], x[1]]) as usize
                }
                2 => {
                    let x = take(i, 4)?;
                    i += 4;
                    u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize
                }
                _ => b.len() - i, // indeterminate: to the end
            };
            take(i, len)?;
            i += len;
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_blob_shapes() {
        assert_eq!(
            signed_message_bytes(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n"),
            Err(SignatureRejection::Cleartext)
        );
        assert_eq!(
            signed_message_bytes(
                b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"
            ),
            Err(SignatureRejection::Detached)
        );
        // Old-format signature packet (tag 2), 1-byte length.
        assert_eq!(
            signed_message_bytes(&[0x88, 0x02, 0x04, 0x00]),
            Err(SignatureRejection::Detached)
        );
        // Old-format compressed packet (tag 8), indeterminate length.
        assert!(signed_message_bytes(&[0xa3, 0x01, 0x02]).is_ok());
        // New-format literal packet (tag 11).
        assert!(signed_message_bytes(&[0xcb, 0x01, 0x62]).is_ok());
        assert!(matches!(
            signed_message_bytes(&[0x88, 0x09, 0x00]),
            Err(SignatureRejection::NotAMessage(_))
        ));
        assert!(matches!(
            signed_message_bytes(b"{\"critical\":{}}"),
            Err(SignatureRejection::NotAMessage(_))
        ));
        assert_eq!(
            signed_message_bytes(&[0x84, 0x01, 0x00]),
            Err(SignatureRejection::Encrypted)
        );
    }
}
