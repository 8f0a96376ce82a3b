//! [`Signatory`]: signs on a request's behalf. It resolves the key a request names, checks the requester may use
//! it for this request type and repository, signs (trying again while the signer's errors are transient) and
//! keeps the signer's health: after a signer error the server is unready until a background re-test of every
//! key succeeds.
//!
//! It knows request types only as authorization needs them; it never parses requests, builds replies or touches
//! the broker.

use super::authorize::{Authorizer, Identity};
use super::health::Health;
use super::refusal::Refusal;
use crate::backoff::Backoff;
use crate::cosign::ring::KeyRing as CosignKeys;
use crate::metrics::Metrics;
use crate::signing::{KeyRing, SignError, SignMode, Signer};
use crate::wire::{Request, RequestType};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::Instrument;

/// One signature to make for a request.
pub struct SignJob<'a> {
    /// The request's type (authorization grants are per type).
    pub kind: RequestType,
    /// `sig_key_id` as the request gave it.
    pub key_id: &'a str,
    /// `sig_keyname`, when given.
    pub key_name: Option<&'a str>,
    /// The OpenPGP shape to make.
    pub mode: SignMode,
    /// The bytes to sign, already checked by the request type's rules.
    pub data: Vec<u8>,
    /// Who asked.
    pub who: &'a Identity,
    /// The repository the request names, if any (`None` for none).
    pub repo: Option<&'a str>,
}

/// One cosign signature to make for a request: the payload the server built.
pub struct CosignJob<'a> {
    /// `sig_key_id`: a cosign key name or alias.
    pub key: &'a str,
    /// The simple-signing payload bytes.
    pub payload: &'a [u8],
    /// Who asked.
    pub who: &'a Identity,
    /// The repository path of the identity the payload names.
    pub repo: &'a str,
}

/// The signer with its keys, the authorization rules and the retry policy.
pub struct Signatory<S> {
    signer: Arc<S>,
    keys: KeyRing,
    cosign: CosignKeys,
    authorizer: Authorizer,
    attempts: u32,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// The signer re-test, when one runs; aborted when the signatory is dropped.
    background: Mutex<JoinSet<()>>,
}

impl<S: Signer> Signatory<S> {
    /// Signs with `signer` using `keys` (and `cosign` for cosign requests), for whom `authorizer` allows,
    /// making up to `attempts` tries per gpg signature.
    pub fn new(
        signer: Arc<S>,
        keys: KeyRing,
        cosign: CosignKeys,
        authorizer: Authorizer,
        attempts: u32,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        Signatory {
            signer,
            keys,
            cosign,
            authorizer,
            attempts,
            metrics,
            health,
            background: Mutex::new(JoinSet::new()),
        }
    }

    /// The authorization rules (for identifying requesters).
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// The signer (tests count its calls).
    pub fn signer(&self) -> &S {
        &self.signer
    }

    /// The metric label of the keys a request names: the configured label, `multiple` when a batch names
    /// several, `unknown` when none resolves.
    pub fn key_label(&self, request: Option<&Request>) -> String {
        let mut labels = std::collections::BTreeSet::new();
        let cosign = request.is_some_and(|r| r.kind() == RequestType::Cosign);
        for (id, name) in request.map(Request::keys).unwrap_or_default() {
            let label = if cosign {
                self.cosign.find(id).map_or("unknown", |k| k.name.as_str())
            } else {
                self.keys
                    .lookup(Some(id), name)
                    .map_or("unknown", |k| k.label())
            };
            labels.insert(label.to_owned());
        }
        match labels.len() {
            1 => labels.pop_first().unwrap_or_default(),
            0 => "unknown".into(),
            _ => "multiple".into(),
        }
    }

    /// Resolves the job's key, checks its requester may use it, and signs; the signature is base64. A signer
    /// error is tried again (up to `signing.attempts` in all) unless the signer has shut down.
    pub async fn sign(&self, job: SignJob<'_>) -> Result<String, Refusal> {
        let key = self.keys.lookup(Some(job.key_id), job.key_name)?;
        let (kind, repo) = (job.kind, job.repo);
        self.authorizer
            .check(job.who, kind, &key.fingerprint, key.label(), repo)?;
        let mut data = job.data;
        let mut attempt = 1;
        loop {
            let last = attempt >= self.attempts;
            let input = if last {
                std::mem::take(&mut data)
            } else {
                data.clone()
            };
            // The signer observes its own queue wait and signing time (`signbus_signing_*`).
            let signed = self.signer.sign(&key.fingerprint, job.mode, input).await;
            match signed {
                Ok(sig) => return Ok(STANDARD.encode(sig)),
                Err(e) if !last && e.is_retryable() => {
                    tracing::warn!(error = %e, attempt, "signer failed; trying again");
                    self.metrics.sign_retries.inc();
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "signer failed");
                    if !matches!(e, SignError::Key(_)) {
                        self.signer_failed();
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// Checks the job's requester may use its cosign key for its repository, and signs the payload (ECDSA P-256,
    /// in process: nothing to retry). Returns the signature, base64 as cosign stores it, and the key's public
    /// half (PEM).
    pub fn sign_cosign(&self, job: CosignJob<'_>) -> Result<(String, String), Refusal> {
        let key = self
            .cosign
            .find(job.key)
            .ok_or_else(|| Refusal::UnknownCosignKey(job.key.to_owned()))?;
        let repo = Some(job.repo);
        self.authorizer.check(
            job.who,
            RequestType::Cosign,
            &key.fingerprint,
            &key.name,
            repo,
        )?;
        let started = Instant::now();
        let signature = key.key.sign(job.payload);
        self.metrics
            .signing_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok((signature, key.public_pem.clone()))
    }

    /// Marks the signer unusable and, unless a re-test is already running, re-tests every configured key in
    /// the background (with backoff) until all sign again; only then is the server ready again.
    fn signer_failed(&self) {
        if !self.health.signer_failed() {
            return;
        }
        tracing::warn!("signer marked unusable; re-testing it before reporting ready again");
        let (signer, health) = (self.signer.clone(), self.health.clone());
        let fingerprints: Vec<String> = self
            .keys
            .keys()
            .iter()
            .map(|k| k.fingerprint.clone())
            .collect();
        let retest = async move {
            let mut wait = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
            loop {
                let mut failed = None;
                for fpr in &fingerprints {
                    let test = b"signbus readiness test signature".to_vec();
                    if let Err(e) = signer.sign(fpr, SignMode::Normal, test).await {
                        failed = Some(e);
                        break;
                    }
                }
                match failed {
                    None => {
                        health.signer_recovered();
                        tracing::info!("signer test signatures succeeded; signer usable again");
                        return;
                    }
                    Some(SignError::Closed) => return,
                    Some(e) => {
                        tracing::warn!(error = %e, retry_in = ?wait.peek(), "signer test signature failed")
                    }
                }
                tokio::time::sleep(wait.next_delay()).await;
            }
        };
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        while background.try_join_next().is_some() {}
        background.spawn(retest.instrument(tracing::info_span!("signer_retest")));
    }
}
