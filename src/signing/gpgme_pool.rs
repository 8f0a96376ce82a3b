//! The gpgme backend: a fixed pool of worker threads ([`Workers`]), each owning its own `gpgme::Context`s.
//!
//! A gpgme context is `!Send` and costly to create (creating one per signature halves throughput), so each
//! worker creates one context per configured key when it starts (armor off, loopback pinentry, signer added)
//! and reuses it for every job. Partial output of a failed signature is discarded. Each signature still runs
//! one `gpg` process (gpgme forks it), which asks gpg-agent to sign.
//!
//! Keys with a passphrase: every signature runs with a passphrase provider that answers gpg-agent's loopback
//! pinentry with the key's [`Passphrase`] (only when the agent has not cached it), and refuses a second try,
//! so a wrong passphrase fails at once instead of looping. At start the agent's cached passphrases for those keys
//! are cleared, so the start-up test signature proves the configured passphrase, not one cached earlier.

use super::keys::{KeyConfig, KeyRing, Passphrases, ResolvedKey};
use super::secret::Passphrase;
use super::workers::{SignFn, Workers};
use super::{KeyError, SignError, SignMode, SigningPool};
use gpgme::{Context, PinentryMode, Protocol};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn new_context(home: Option<&Path>) -> Result<Context, String> {
    let mut ctx =
        Context::from_protocol(Protocol::OpenPgp).map_err(|e| format!("gpgme context: {e}"))?;
    if let Some(home) = home {
        ctx.set_engine_home_dir(home.to_string_lossy().as_bytes().to_vec())
            .map_err(|e| format!("gpg home {}: {e}", home.display()))?;
    }
    ctx.set_armor(false);
    ctx.set_text_mode(false);
    ctx.set_pinentry_mode(PinentryMode::Loopback)
        .map_err(|e| format!("loopback pinentry: {e}"))?;
    Ok(ctx)
}

/// Resolves every configured key to exactly one usable secret key in `home` (the gpg home directory;
/// `None` = gpg's default).
pub fn resolve_keys(home: Option<&Path>, configs: &[KeyConfig]) -> Result<KeyRing, KeyError> {
    let mut ctx = new_context(home).map_err(|reason| KeyError::BadConfigured {
        id: String::new(),
        reason,
    })?;
    let mut resolved = Vec::new();
    for c in configs {
        let bad = |reason: String| KeyError::BadConfigured {
            id: c.id.clone(),
            reason,
        };
        let found: Vec<gpgme::Key> = ctx
            .find_secret_keys([c.id.as_str()])
            .map_err(|e| bad(format!("keyring search failed: {e}")))?
            .filter_map(Result::ok)
            .collect();
        let key = match found.as_slice() {
            [k] => k,
            [] => return Err(bad("no secret key matches it in the gpg home".into())),
            many => {
                let fprs: Vec<&str> = many.iter().filter_map(|k| k.fingerprint().ok()).collect();
                return Err(bad(format!("ambiguous: matches {}", fprs.join(", "))));
            }
        };
        let unusable = [
            (key.is_revoked(), "revoked"),
            (key.is_expired(), "expired"),
            (key.is_disabled(), "disabled"),
            (key.is_invalid(), "invalid"),
            (!key.can_sign(), "not capable of signing"),
        ];
        if let Some((_, why)) = unusable.iter().find(|(b, _)| *b) {
            return Err(bad(format!("key is {why}")));
        }
        let fingerprint = key
            .fingerprint()
            .map_err(|_| bad("fingerprint not readable".into()))?
            .to_ascii_uppercase();
        resolved.push(ResolvedKey {
            fingerprint,
            name: c.name.clone(),
            aliases: c.aliases.clone(),
        });
    }
    KeyRing::new(resolved)
}

/// Makes gpg-agent forget the passphrases it cached for the keys `fingerprints` (every subkey's keygrip), so
/// the next signature asks for them.
fn forget_cached_passphrases(
    home: Option<&Path>,
    fingerprints: &[&String],
) -> Result<(), KeyError> {
    if fingerprints.is_empty() {
        return Ok(());
    }
    let bad = |fpr: &str, reason: String| KeyError::BadConfigured {
        id: fpr.to_owned(),
        reason,
    };
    let mut ctx = new_context(home).map_err(|r| bad("", r))?;
    let mut commands = Vec::new();
    for fpr in fingerprints {
        let key = ctx
            .get_secret_key(fpr.as_str())
            .map_err(|e| bad(fpr, format!("get key: {e}")))?;
        for sub in key.subkeys() {
            if let Ok(grip) = sub.keygrip() {
                commands.push(format!("CLEAR_PASSPHRASE --mode=normal {grip}"));
            }
        }
    }
    let mut cmd = std::process::Command::new("gpg-connect-agent");
    if let Some(home) = home {
        cmd.arg("--homedir").arg(home);
    }
    let out = cmd
        .args(&commands)
        .arg("/bye")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| bad(fingerprints[0], format!("gpg-connect-agent: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.lines().any(|l| l.starts_with("ERR")) {
        return Err(bad(
            fingerprints[0],
            format!(
                "could not clear gpg-agent's cached passphrases: {}{}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

impl SigningPool {
    /// The gpgme backend: starts `workers` threads (at least one) that sign with the keys of `keys` from gpg home
    /// `home`, answering gpg's passphrase requests from `passphrases`. Each worker makes one test signature per
    /// key before the pool is returned, so a pool that starts works — with the configured passphrases, not
    /// cached ones.
    pub fn gpgme(
        home: Option<PathBuf>,
        keys: KeyRing,
        passphrases: Passphrases,
        workers: usize,
    ) -> Result<Self, SignError> {
        let protected: Vec<&String> = passphrases.keys().collect();
        forget_cached_passphrases(home.as_deref(), &protected)?;
        let passphrases = Arc::new(passphrases);
        let fprs: Vec<String> = keys.keys().iter().map(|k| k.fingerprint.clone()).collect();
        let workers = Workers::start("signbus-gpg", workers, move || {
            worker_contexts(home.as_deref(), &fprs, passphrases.clone())
        })?;
        Ok(SigningPool { workers, keys })
    }
}

/// On a worker thread: one context per key, each proven by a test signature; returns the worker's signing
/// function over them.
fn worker_contexts(
    home: Option<&Path>,
    fingerprints: &[String],
    passphrases: Arc<Passphrases>,
) -> Result<SignFn, SignError> {
    let mut contexts: HashMap<String, Context> = HashMap::new();
    for fpr in fingerprints {
        let made = new_context(home).and_then(|mut ctx| {
            let key = ctx
                .get_secret_key(fpr.as_str())
                .map_err(|e| format!("get key: {e}"))?;
            ctx.add_signer(&key)
                .map_err(|e| format!("add signer: {e}"))?;
            Ok(ctx)
        });
        let mut ctx = made.map_err(|reason| KeyError::BadConfigured {
            id: fpr.clone(),
            reason,
        })?;
        let test = b"signbus start-up test";
        let passphrase = passphrases.get(fpr);
        sign_with(&mut ctx, fpr, SignMode::Normal, test, passphrase).map_err(|e| match e {
            SignError::Gpg { reason, .. } => KeyError::BadConfigured {
                id: fpr.clone(),
                reason: format!("start-up test signature failed: {reason}"),
            }
            .into(),
            other => other,
        })?;
        contexts.insert(fpr.clone(), ctx);
    }
    Ok(Box::new(
        move |fpr: &str, mode: SignMode, data: &[u8]| match contexts.get_mut(fpr) {
            Some(ctx) => sign_with(ctx, fpr, mode, data, passphrases.get(fpr)),
            None => Err(KeyError::Unknown(fpr.to_owned()).into()),
        },
    ))
}

/// Signs `data` in `mode`, answering a passphrase request with `passphrase` (once: a second request means
/// gpg refused it; without a passphrase, a request is refused and reported as a missing passphrase).
fn sign_with(
    ctx: &mut Context,
    fpr: &str,
    mode: SignMode,
    data: &[u8],
    passphrase: Option<&Passphrase>,
) -> Result<Vec<u8>, SignError> {
    let mut out = Vec::new();
    // Whether gpg asked for a passphrase: then a failure is the passphrase's (gpg reports a refused loopback
    // passphrase as a general error), or the lack of one.
    let asked = AtomicBool::new(false);
    let secret = passphrase.map(Passphrase::expose);
    let provider = |req: gpgme::PassphraseRequest<'_>, w: &mut dyn std::io::Write| {
        asked.store(true, Ordering::Relaxed);
        match secret {
            Some(_) if req.prev_attempt_failed => Err(gpgme::Error::BAD_PASSPHRASE),
            Some(secret) => {
                w.write_all(secret)?;
                w.write_all(b"\n")?;
                Ok(())
            }
            None => Err(gpgme::Error::NO_PASSPHRASE),
        }
    };
    let result = ctx.with_passphrase_provider(provider, |ctx| sign_raw(ctx, mode, data, &mut out));
    let gpg_err = |reason: String| SignError::Gpg {
        fingerprint: fpr.to_owned(),
        reason,
    };
    let result = result.map_err(|e| match (asked.load(Ordering::Relaxed), passphrase) {
        (true, Some(_)) => gpg_err(format!(
            "gpg refused the configured passphrase (wrong passphrase): {e}"
        )),
        (true, None) => gpg_err(
            "the key needs a passphrase and none is configured (passphrase_file or \
             passphrase_credential)"
                .into(),
        ),
        (false, _) => gpg_err(e.to_string()),
    })?;
    if let Some(bad) = result.invalid_signers().next() {
        return Err(gpg_err(format!(
            "invalid signer {}: {}",
            bad.fingerprint().unwrap_or("?"),
            bad.reason().map(|r| r.to_string()).unwrap_or_default()
        )));
    }
    if result.new_signatures().next().is_none() || out.is_empty() {
        return Err(gpg_err("gpg produced no signature".into()));
    }
    Ok(out)
}

fn sign_raw(
    ctx: &mut Context,
    mode: SignMode,
    data: &[u8],
    out: &mut Vec<u8>,
) -> gpgme::Result<gpgme::SigningResult> {
    match mode {
        SignMode::Normal => {
            ctx.set_armor(false);
            ctx.sign_normal(data, out)
        }
        SignMode::Clear => ctx.sign_clear(data, out),
        SignMode::Detached { armor } => {
            ctx.set_armor(armor);
            let r = ctx.sign_detached(data, out);
            ctx.set_armor(false);
            r
        }
    }
}
