//! gpg and skopeo with the testenv keyring: signing test data, and checking what signbus signed independently.

use super::env::Env;
use super::run::{output_with_stdin, verdict};
use std::path::PathBuf;
use std::process::Command;

/// Verifies an image signature with skopeo against the testenv keyring. Returns skopeo's output or panics.
pub fn skopeo_verify(
    env: &Env,
    manifest: &[u8],
    reference: &str,
    fingerprint: &str,
    signature: &[u8],
) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifest");
    let s = dir.path().join("signature");
    std::fs::write(&m, manifest).unwrap();
    std::fs::write(&s, signature).unwrap();
    let out = Command::new("skopeo")
        .env("GNUPGHOME", env.gnupg_home())
        .args([
            "standalone-verify",
            m.to_str().unwrap(),
            reference,
            fingerprint,
            s.to_str().unwrap(),
        ])
        .output()
        .expect("skopeo runs");
    verdict(out)
}

/// The literal data inside an OpenPGP signed message, extracted by gpg (which also checks the signature).
pub fn gpg_payload(env: &Env, signature: &[u8]) -> Vec<u8> {
    let out = output_with_stdin(
        Command::new("gpg")
            .env("GNUPGHOME", env.gnupg_home())
            .args(["--batch", "--quiet", "--decrypt"]),
        signature,
    );
    assert!(
        out.status.success(),
        "gpg --decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `gpg --verify` with the testenv keyring; returns gpg's report or its complaint.
pub fn gpg_verify(env: &Env, args: &[&std::path::Path]) -> Result<String, String> {
    let out = Command::new("gpg")
        .env("GNUPGHOME", env.gnupg_home())
        .args(["--batch", "--status-fd", "1", "--verify"])
        .args(args)
        .output()
        .expect("gpg runs");
    verdict(out)
}

/// How gpg wraps the payload.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `gpg --sign`: a binary signed message (what an image signature is).
    Normal,
    /// `gpg --clearsign`.
    Clear,
    /// `gpg --detach-sign`.
    Detached,
}

/// Signs `payload` with `key` by gpg with the testenv home; returns what gpg wrote.
pub fn gpg_sign(env: &Env, key: &str, payload: &[u8], mode: Mode) -> Vec<u8> {
    let flag = match mode {
        Mode::Normal => "--sign",
        Mode::Clear => "--clearsign",
        Mode::Detached => "--detach-sign",
    };
    let out = output_with_stdin(
        Command::new("gpg").args([
            "--homedir",
            env.gnupg_home(),
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--local-user",
            key,
            flag,
            "--output",
            "-",
        ]),
        payload,
    );
    assert!(
        out.status.success(),
        "gpg {flag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Checks many OpenPGP signed messages with one gpg process (`--multifile --decrypt`, the testenv keyring) and
/// returns what each signed, in order. Panics unless every one is a good signature by `fingerprint`.
pub fn gpg_payloads(env: &Env, fingerprint: &str, signatures: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = signatures
        .iter()
        .enumerate()
        .map(|(i, sig)| {
            let path = dir.path().join(format!("{i}.gpg"));
            std::fs::write(&path, sig).unwrap();
            path
        })
        .collect();
    let out = Command::new("gpg")
        .env("GNUPGHOME", env.gnupg_home())
        .args([
            "--batch",
            "--quiet",
            "--status-fd",
            "1",
            "--multifile",
            "--decrypt",
        ])
        .args(&files)
        .output()
        .expect("gpg runs");
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gpg --multifile --decrypt: {status}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let valid: Vec<&str> = status
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] VALIDSIG "))
        .collect();
    assert_eq!(
        valid.len(),
        signatures.len(),
        "one good signature each:\n{status}"
    );
    for v in &valid {
        // VALIDSIG <signing key fpr> ... <primary key fpr>
        assert_eq!(v.split_whitespace().last(), Some(fingerprint), "{v}");
    }
    assert!(
        !status.contains("BADSIG") && !status.contains("ERRSIG"),
        "{status}"
    );
    files
        .iter()
        .map(|f| std::fs::read(f.with_extension("")).expect("gpg wrote the payload"))
        .collect()
}
