//! `msg-cosign-container-sign`: cosign signatures made over the bus. The private key stays on the signing server
//! (`signing.cosign_keys`); the registry credentials stay here. The requests go out like `msg-container-sign`'s
//! (broker settings from `msg_signer`), each naming a digest, an identity and a cosign key; the server builds
//! and signs the payload; this command checks each reply names what was asked and attaches payload and signature
//! to the registry (settings from `cosign_signer`) as cosign does.

use super::msg_sign::{exchange, load_file, requester_logging, single_section, RequesterArgs};
use anyhow::{bail, Result};
use clap::Args;
use signbus::cosign::{AttachOutcome, Attacher};
use signbus::requester::cosign as cosign_req;
use signbus::requester::prepare_cosign::{prepare_cosign, CosignBusInput};
use signbus::requester::received::{cosign_signatures, CosignSignature};
use signbus::requester::{output, Common, PreparedRequest};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `msg-cosign-container-sign`: `msg-container-sign`'s flags, plus `--identity` and `--annotation`.
#[derive(Debug, Args)]
pub struct MsgCosignSignArgs {
    #[command(flatten)]
    pub common: RequesterArgs,
    /// Manifest digest to sign, paired with --reference. Repeatable.
    #[arg(long, required = true)]
    pub digest: Vec<String>,
    /// Image reference whose repository the signature is attached in, paired with --digest. Repeatable.
    #[arg(long, required = true)]
    pub reference: Vec<String>,
    /// Identity the signature names, paired with --reference (default: the reference's repository, as cosign
    /// signs). Repeatable.
    #[arg(long)]
    pub identity: Vec<String>,
    /// KEY=VALUE annotation written into every payload (cosign sign -a). Repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
}

/// `msg-cosign-container-sign`; returns the exit code.
pub async fn run(a: MsgCosignSignArgs) -> Result<i32> {
    let c = &a.common;
    let file = load_file(c.config_file.as_deref())?;
    let (cfg, creator) = single_section(&file, c.requester.as_deref())?;
    requester_logging(c.log_level, cfg.log_level.as_deref());
    // Registry settings: the cosign_signer section when the file has one, else its defaults.
    let registry_cfg = file.cosign().ok().cloned().unwrap_or_default();
    let options = cosign_req::client_options(&registry_cfg, super::auth_files())?;
    let mut annotations = BTreeMap::new();
    for kv in &a.annotation {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--annotation {kv:?}: expected KEY=VALUE");
        };
        annotations.insert(k.to_owned(), v.to_owned());
    }
    let input = CosignBusInput {
        digests: a.digest.clone(),
        references: a.reference.clone(),
        identities: a.identity.clone(),
        annotations,
        common: Common {
            signing_keys: c.signing_key.clone(),
            signing_key_names: Vec::new(),
            task_id: c.task_id.clone(),
            requester: c.requester.clone(),
        },
    };
    let prepared = prepare_cosign(&cfg, &creator, &input)?;
    let requests: Vec<PreparedRequest> = prepared.iter().map(|(_, r)| r.clone()).collect();
    let ex = exchange(&cfg, &creator, c, &requests).await?;
    let operation = serde_json::json!({
        "digests": a.digest,
        "references": a.reference,
        "identities": a.identity,
        "signing_keys": c.signing_key,
        "task_id": c.task_id,
        "requester": c.requester,
    });
    let r = output::render(
        &requests,
        &ex,
        operation,
        &c.signing_key,
        "cosign_signature",
        c.raw,
    );
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    let found = cosign_signatures(&ex, &prepared);
    let threads = registry_cfg.num_threads.max(1);
    let attached =
        tokio::task::spawn_blocking(move || attach_all(options, found, threads)).await??;
    Ok(r.exit_code.max(attached))
}

/// Attaches every signature received, `threads` at a time (the attacher serialises writers of one
/// `repo@digest`). Reports on stderr; 1 when any could not be attached.
fn attach_all(
    options: signbus::registry::ClientOptions,
    found: Vec<Result<CosignSignature, signbus::requester::received::Unusable>>,
    threads: usize,
) -> Result<i32> {
    let client = signbus::registry::Client::new(options)?;
    let attacher = Attacher::new(&client);
    let next = AtomicUsize::new(0);
    let report = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(found.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = found.get(i) else { break };
                let line = match item {
                    Err(e) => Err(format!("error: {e}")),
                    Ok(s) => {
                        let what = format!("{}@{}", s.image.reference.name(), s.image.digest);
                        attacher
                            .attach(
                                &s.image.reference,
                                s.image.digest.as_str(),
                                &s.payload,
                                &s.signature,
                                &s.public_key,
                            )
                            .map(|o| match o {
                                AttachOutcome::Attached { .. } => {
                                    format!("attached {what} (identity {})", s.image.identity)
                                }
                                AttachOutcome::AlreadyPresent { .. } => {
                                    format!(
                                        "already present {what} (identity {})",
                                        s.image.identity
                                    )
                                }
                            })
                            .map_err(|e| format!("error: attaching {what}: {e}"))
                    }
                };
                report
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, line));
            });
        }
    });
    let mut lines = report.into_inner().unwrap_or_else(|p| p.into_inner());
    lines.sort_by_key(|(i, _)| *i);
    let mut failed = false;
    for (_, line) in lines {
        match line {
            Ok(l) => eprintln!("{l}"),
            Err(l) => {
                failed = true;
                eprintln!("{l}");
            }
        }
    }
    Ok(i32::from(failed))
}
