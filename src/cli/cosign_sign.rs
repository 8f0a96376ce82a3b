//! `cosign-container-sign`: a drop-in for pubtools-sign 1.0.6's `pubtools-sign-cosign-container-sign` (same
//! flags, same `cosign_signer` section, same output), signing natively. This edge reads what the library must
//! not: the config file, `COSIGN_PASSWORD`, `$HOME`, the auth file locations and the key files; then
//! [`signbus::requester::cosign`] plans, signs and renders.

use super::msg_sign::{expand_home, requester_logging};
use anyhow::Result;
use clap::Args;
use signbus::requester::cosign::{self, document, Plan, SignInput};
use signbus::requester::{config, RequesterConfig};
use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;

/// `cosign-container-sign`, flag for flag pubtools-sign's.
#[derive(Debug, Args)]
pub struct CosignSignArgs {
    /// Key to sign with: a cosign private key file, a KMS URI, or an alias from key_aliases. Repeatable.
    #[arg(long = "signing-key", required = true)]
    pub signing_key: Vec<String>,
    /// Path to the config file.
    #[arg(long = "config-file", default_value = config::CONFIG_PATHS[0])]
    pub config_file: String,
    /// Digest to sign (with --reference), or a whole repository@digest (without). Repeatable.
    #[arg(long, required = true)]
    pub digest: Vec<String>,
    /// Reference (repository:tag) to sign, paired with --digest in order. Repeatable.
    #[arg(long)]
    pub reference: Vec<String>,
    /// Identity to sign instead of the repository, paired in order. Repeatable.
    #[arg(long)]
    pub identity: Vec<String>,
    /// Print the results one per line instead of JSON.
    #[arg(long)]
    pub raw: bool,
}

/// `cosign-container-sign`; returns the exit code.
pub async fn run(a: CosignSignArgs) -> Result<i32> {
    tokio::task::spawn_blocking(move || sign(a)).await?
}

fn sign(a: CosignSignArgs) -> Result<i32> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = config::locate(Some(&a.config_file), home.as_deref())?;
    let file = RequesterConfig::load(&path, |v| std::env::var(v).ok())?;
    let cfg = file.cosign()?.clone();
    requester_logging(None, Some(&cfg.log_level));
    let input = SignInput {
        digests: a.digest,
        references: a.reference,
        identities: a.identity,
        signing_keys: a.signing_key,
    };
    let plan = Plan::new(&input, &cfg)?;
    let options = cosign::client_options(&cfg, super::auth_files())?;
    let password = cosign::password(
        &cfg,
        std::env::var_os("COSIGN_PASSWORD").map(|p| p.into_vec()),
    );
    let keys = cosign::load_keys(&plan, password.as_ref(), |p| std::fs::read(expand_home(p)))?;
    let client = signbus::registry::Client::new(options)?;
    let outcomes = cosign::sign_all(&plan, &cfg, &keys, &client);
    let r = document::render(&input, &outcomes, a.raw);
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    Ok(r.exit_code)
}
