//! The gpgme backend: a fixed pool of worker threads, each owning its own `gpgme::Context`s.
//!
//! A gpgme context is `!Send` and costly to create (creating one per signature halves throughput), so each
//! worker creates one context per configured key when it starts (armor off, loopback pinentry, signer added)
//! and reuses it for every job. Jobs arrive over one shared queue; results return through a oneshot. Partial
//! output of a failed signature is discarded. Workers beyond the core count add nothing: gpg is CPU-bound.

use super::keys::{KeyConfig, KeyRing, ResolvedKey};
use super::{SignError, SignMode, Signer};
use gpgme::{Context, PinentryMode, Protocol};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

struct Job {
    fingerprint: String,
    mode: SignMode,
    data: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, SignError>>,
}

/// A pool of gpgme signing workers.
pub struct GpgmePool {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    keys: KeyRing,
    busy: Arc<AtomicUsize>,
}

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
pub fn resolve_keys(home: Option<&Path>, configs: &[KeyConfig]) -> Result<KeyRing, SignError> {
    let mut ctx = new_context(home).map_err(|reason| SignError::BadConfiguredKey {
        id: String::new(),
        reason,
    })?;
    let mut resolved = Vec::new();
    for c in configs {
        let bad = |reason: String| SignError::BadConfiguredKey {
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

impl GpgmePool {
    /// Starts `workers` threads (at least one) that sign with the keys of `keys` from gpg home `home`.
    /// Each worker makes one test signature per key before the pool is returned, so a pool that starts works.
    pub fn start(home: Option<PathBuf>, keys: KeyRing, workers: usize) -> Result<Self, SignError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for n in 0..workers.max(1) {
            let (ready_tx, ready_rx) = mpsc::channel::<Result<(), SignError>>();
            let rx = rx.clone();
            let home = home.clone();
            let fprs: Vec<String> = keys.keys().iter().map(|k| k.fingerprint.clone()).collect();
            let busy = busy.clone();
            let handle = std::thread::Builder::new()
                .name(format!("signbus-gpg-{n}"))
                .spawn(move || worker(home, fprs, rx, ready_tx, busy))
                .map_err(|e| SignError::Gpg {
                    fingerprint: String::new(),
                    reason: format!("spawn worker: {e}"),
                })?;
            ready_rx.recv().unwrap_or(Err(SignError::Closed))?;
            handles.push(handle);
        }
        Ok(GpgmePool {
            jobs: Mutex::new(Some(tx)),
            workers: handles,
            keys,
            busy,
        })
    }

    /// The keys this pool signs with.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Number of worker threads.
    pub fn size(&self) -> usize {
        self.workers.len()
    }

    /// Number of workers signing right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Stops taking jobs and waits for the workers to finish the ones they have.
    pub fn shutdown(mut self) {
        self.jobs.lock().expect("jobs lock").take();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for GpgmePool {
    fn drop(&mut self) {
        if let Ok(mut j) = self.jobs.lock() {
            j.take();
        }
    }
}

impl Signer for GpgmePool {
    async fn sign(
        &self,
        fingerprint: &str,
        mode: SignMode,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, SignError> {
        let (reply, wait) = oneshot::channel();
        let job = Job {
            fingerprint: fingerprint.to_owned(),
            mode,
            data,
            reply,
        };
        {
            let jobs = self.jobs.lock().expect("jobs lock");
            jobs.as_ref()
                .ok_or(SignError::Closed)?
                .send(job)
                .map_err(|_| SignError::Closed)?;
        }
        wait.await.unwrap_or(Err(SignError::Closed))
    }
}

fn worker(
    home: Option<PathBuf>,
    fingerprints: Vec<String>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    ready: mpsc::Sender<Result<(), SignError>>,
    busy: Arc<AtomicUsize>,
) {
    let mut contexts: HashMap<String, Context> = HashMap::new();
    for fpr in &fingerprints {
        let made = new_context(home.as_deref()).and_then(|mut ctx| {
            let key = ctx
                .get_secret_key(fpr.as_str())
                .map_err(|e| format!("get key: {e}"))?;
            ctx.add_signer(&key)
                .map_err(|e| format!("add signer: {e}"))?;
            Ok(ctx)
        });
        let mut ctx = match made {
            Ok(c) => c,
            Err(reason) => {
                let _ = ready.send(Err(SignError::BadConfiguredKey {
                    id: fpr.clone(),
                    reason,
                }));
                return;
            }
        };
        if let Err(e) = sign_with(&mut ctx, fpr, SignMode::Normal, b"signbus start-up test") {
            let _ = ready.send(Err(e));
            return;
        }
        contexts.insert(fpr.clone(), ctx);
    }
    let _ = ready.send(Ok(()));
    drop(ready);
    loop {
        let job = {
            let rx = match jobs.lock() {
                Ok(rx) => rx,
                Err(_) => return,
            };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // pool shut down
            }
        };
        busy.fetch_add(1, Ordering::Relaxed);
        let result = match contexts.get_mut(&job.fingerprint) {
            Some(ctx) => sign_with(ctx, &job.fingerprint, job.mode, &job.data),
            None => Err(SignError::UnknownKey(job.fingerprint.clone())),
        };
        busy.fetch_sub(1, Ordering::Relaxed);
        let _ = job.reply.send(result);
    }
}

fn sign_with(
    ctx: &mut Context,
    fpr: &str,
    mode: SignMode,
    data: &[u8],
) -> Result<Vec<u8>, SignError> {
    let mut out = Vec::new();
    let result = match mode {
        SignMode::Normal => {
            ctx.set_armor(false);
            ctx.sign_normal(data, &mut out)
        }
        SignMode::Clear => ctx.sign_clear(data, &mut out),
        SignMode::Detached { armor } => {
            ctx.set_armor(armor);
            let r = ctx.sign_detached(data, &mut out);
            ctx.set_armor(false);
            r
        }
    };
    let gpg_err = |reason: String| SignError::Gpg {
        fingerprint: fpr.to_owned(),
        reason,
    };
    let result = result.map_err(|e| gpg_err(e.to_string()))?;
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
