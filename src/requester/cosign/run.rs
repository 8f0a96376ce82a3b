//! Making the signatures of a [`Plan`]: natively (payload, ECDSA signature, append to the `.sig` tag through
//! [`Attacher`]) or, where native cannot serve, by running `cosign_bin` with exactly pubtools-sign 1.0.6's argv.
//! The jobs of one `repo@digest` run in order; groups run concurrently on `num_threads` threads. A failure
//! is the job's outcome, never a panic: every job gets one.

use super::super::cosign_config::CosignSignerConfig;
use super::plan::{Job, Plan, Way};
use crate::backoff::Backoff;
use crate::cosign::{default_identity, AttachError, AttachOutcome, Attacher, Payload, PrivateKey};
use crate::registry::{self, RegistryError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The line(s) pubtools-sign puts in `operation_results`: cosign's stderr, or what signbus says in its place
    /// (`Pushing signature to: <repo>` as cosign does; an error message on failure).
    pub text: String,
    pub ok: bool,
    pub way: Way,
    /// `repo@digest`, for the `--raw` marker lines.
    pub target: String,
}

/// Why a native signature failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    #[error(transparent)]
    Payload(#[from] crate::cosign::PayloadError),
    /// The image to sign could not be read (missing, refused, unreachable).
    #[error("reading the image manifest: {0}")]
    Image(RegistryError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// `cosign_bin` failed; its stderr.
    #[error("{0}")]
    CosignFailed(String),
    /// `cosign_bin` could not be started.
    #[error("cannot run {bin}: {reason}")]
    Spawn { bin: String, reason: String },
}

/// Runs every job of `plan`; one outcome per job, in the plan's order. `keys` is [`super::load_keys`]'s.
pub fn sign_all(
    plan: &Plan,
    cfg: &CosignSignerConfig,
    keys: &[Option<PrivateKey>],
    client: &registry::Client,
) -> Vec<Outcome> {
    let attacher = Attacher::new(client);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; plan.jobs.len()]);
    let threads = cfg.num_threads.clamp(1, plan.groups.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let g = next.fetch_add(1, Ordering::Relaxed);
                let Some(group) = plan.groups.get(g) else {
                    break;
                };
                for &j in group {
                    let job = &plan.jobs[j];
                    let way = plan.keys[job.key].way;
                    let done = match (&keys[job.key], way) {
                        (Some(key), Way::Native) => native(job, key, cfg, client, &attacher),
                        _ => cosign_bin(job, &plan.keys[job.key].resolved, cfg),
                    };
                    let (text, ok) = match done {
                        Ok(text) => (text, true),
                        // As pubtools-sign: cosign's own stderr is the result.
                        Err(SignError::CosignFailed(stderr)) => (stderr, false),
                        Err(e) => {
                            tracing::error!(target = %job.target, error = %e, "signing failed");
                            (format!("Error: signing {}: {e}\n", job.target), false)
                        }
                    };
                    let outcome = Outcome {
                        text,
                        ok,
                        way,
                        target: job.target.clone(),
                    };
                    results.lock().unwrap()[j] = Some(outcome);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|o| o.expect("every job ran"))
        .collect()
}

/// Calls `f` up to `tries` times while it fails with an error `retryable` says may pass, backing off.
fn with_retries<T, E>(
    tries: u32,
    retryable: impl Fn(&E) -> bool,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if attempt < tries && retryable(&e) => {
                attempt += 1;
                std::thread::sleep(backoff.next_delay());
            }
            done => return done,
        }
    }
}

/// One signature made by signbus: the payload cosign would sign, the image checked to exist, signed, attached.
fn native(
    job: &Job,
    key: &PrivateKey,
    cfg: &CosignSignerConfig,
    client: &registry::Client,
    attacher: &Attacher,
) -> Result<String, SignError> {
    let repo_name = default_identity(&job.repo);
    let identity = job.identity.clone().unwrap_or_else(|| repo_name.clone());
    let annotations: BTreeMap<String, String> = job
        .tag
        .iter()
        .map(|t| ("tag".to_owned(), t.clone()))
        .collect();
    tracing::info!(%identity, target = %job.target, "signing natively");
    let payload = Payload::new(&identity, &job.digest, annotations)?.to_json();
    let tries = cfg.retries.max(1);
    with_retries(tries, RegistryError::is_retryable, || {
        client.get_manifest(&job.repo, &job.digest, registry::MANIFEST_TYPES)
    })
    .map_err(SignError::Image)?;
    let signature = key.sign(&payload);
    let public = key.public_key();
    let outcome = with_retries(tries, AttachError::is_retryable, || {
        attacher.attach(&job.repo, &job.digest, &payload, &signature, &public)
    })?;
    if let AttachOutcome::AlreadyPresent { .. } = outcome {
        tracing::info!(target = %job.target, "the same signature is already attached: nothing written");
    }
    Ok(format!("Pushing signature to: {repo_name}\n"))
}

/// The argv pubtools-sign 1.0.6 runs for `job` with `key` (after `key_aliases`).
pub fn cosign_argv(job: &Job, key: &str, cfg: &CosignSignerConfig) -> Vec<String> {
    let b = |v: bool| if v { "true" } else { "false" };
    let mut argv: Vec<String> = vec![
        cfg.cosign_bin.clone(),
        "-t".into(),
        cfg.timeout.clone(),
        "sign".into(),
        "-y".into(),
        "--key".into(),
        key.into(),
        format!("--allow-http-registry={}", b(cfg.allow_http_registry)),
        format!(
            "--allow-insecure-registry={}",
            b(cfg.allow_insecure_registry)
        ),
        "--rekor-url".into(),
        cfg.rekor_url.clone(),
        format!("--tlog-upload={}", b(cfg.upload_tlog)),
    ];
    if !cfg.registry_user.is_empty() {
        argv.extend(["--registry-username".into(), cfg.registry_user.clone()]);
    }
    if !cfg.registry_password.is_empty() {
        argv.extend(["--registry-password".into(), cfg.registry_password.clone()]);
    }
    if let Some(identity) = &job.identity {
        argv.extend(["--sign-container-identity".into(), identity.clone()]);
    }
    if let Some(tag) = &job.tag {
        argv.extend(["-a".into(), format!("tag={tag}")]);
    }
    argv.push(job.target.clone());
    argv
}

/// One signature made by `cosign_bin` (environment: this process's plus `env_variables`), tried up to
/// `retries` times; its stderr is the result, as in pubtools-sign.
fn cosign_bin(job: &Job, key: &str, cfg: &CosignSignerConfig) -> Result<String, SignError> {
    let argv = cosign_argv(job, key, cfg);
    tracing::info!(target = %job.target, bin = %cfg.cosign_bin, "signing with cosign_bin");
    let failed = |e: &SignError| matches!(e, SignError::CosignFailed(_));
    with_retries(cfg.retries.max(1), failed, || {
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .envs(&cfg.env_variables)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| SignError::Spawn {
                bin: argv[0].clone(),
                reason: e.to_string(),
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Ok(stderr)
        } else {
            Err(SignError::CosignFailed(stderr))
        }
    })
}
