//! `cosign-generate-key-pair`: a cosign key pair written as `cosign generate-key-pair` writes it
//! (`<prefix>.key`, mode 0600, `ENCRYPTED SIGSTORE PRIVATE KEY`; `<prefix>.pub`, `PUBLIC KEY`), sealed under
//! `COSIGN_PASSWORD` (empty allowed), so no cosign binary is needed. Existing files are never overwritten.

use anyhow::{bail, Context as _, Result};
use clap::Args;
use signbus::signing::secret::Passphrase;
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::OpenOptionsExt as _;

/// `cosign-generate-key-pair`, with cosign's `--output-key-prefix`.
#[derive(Debug, Args)]
pub struct GenerateKeyPairArgs {
    /// Write the key pair to PREFIX.key and PREFIX.pub.
    #[arg(long = "output-key-prefix", default_value = "cosign")]
    pub output_key_prefix: String,
}

/// Writes `bytes` to a new file `path` with `mode`; an existing file is an error.
fn write_new(path: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {path}"))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {path}"))
}

/// `cosign-generate-key-pair`; returns the exit code.
pub fn run(a: GenerateKeyPairArgs) -> Result<i32> {
    let Some(password) = std::env::var_os("COSIGN_PASSWORD") else {
        bail!("COSIGN_PASSWORD is not set: set it to the password for the private key (it may be empty)");
    };
    let (key, public) = (
        format!("{}.key", a.output_key_prefix),
        format!("{}.pub", a.output_key_prefix),
    );
    for path in [&key, &public] {
        if std::path::Path::new(path).exists() {
            bail!("{path} already exists: not overwriting it (remove it or choose another --output-key-prefix)");
        }
    }
    let pair = signbus::cosign::generate_key_pair(&Passphrase::from_bytes(password.into_vec()))?;
    write_new(&key, pair.private_pem.as_bytes(), 0o600)?;
    eprintln!("Private key written to {key}");
    write_new(&public, pair.public_pem.as_bytes(), 0o644)?;
    eprintln!("Public key written to {public}");
    Ok(0)
}
