//! The in-process backend's signatures are what gpg makes: the three shapes the server sends (binary signed
//! message, cleartext, detached binary and armored), for the ed25519 and RSA test keys and the passphrase-protected
//! ones, are checked by the real `gpg --verify` with the testenv's public keys, and a claim signature by
//! `skopeo standalone-verify`. Keys that cannot be used stop the start with a message naming the key. No broker.

use crate::support::*;
use signbus::signing::in_process::{resolve_keys, SecretKeys};
use signbus::signing::{load_passphrases, KeyConfig, KeyRing, SignMode, Signer, SigningPool};
use std::path::PathBuf;

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"; // sha256("0")

fn key(env: &Env, fpr: &str, passphrase_file: Option<&str>) -> KeyConfig {
    KeyConfig {
        id: fpr.to_owned(),
        name: None,
        aliases: vec![],
        passphrase_file: passphrase_file.map(PathBuf::from),
        passphrase_credential: None,
        secret_key_file: Some(env.secret_key_file(fpr).into()),
    }
}

fn start(configs: &[KeyConfig]) -> Result<SigningPool, String> {
    let (ring, secrets): (KeyRing, SecretKeys) =
        resolve_keys(configs).map_err(|e| e.to_string())?;
    let passphrases = load_passphrases(configs, &ring, None).map_err(|e| e.to_string())?;
    SigningPool::in_process(ring, secrets, passphrases, 2).map_err(|e| e.to_string())
}

/// Runs gpg with the home that holds the public half of `fpr`; returns the status lines, panicking unless gpg
/// reports a good signature by `fpr`.
fn gpg_checks(home: &str, fpr: &str, args: &[&str], stdin: &[u8]) -> (String, Vec<u8>) {
    let out = output_with_stdin(
        std::process::Command::new("gpg")
            .args(["--homedir", home, "--batch", "--status-fd", "2"])
            .args(args),
        stdin,
    );
    let status = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gpg {args:?}: {status}");
    assert!(status.contains(&format!("VALIDSIG {fpr}")), "{status}");
    assert!(!status.contains("BADSIG"), "{status}");
    (status, out.stdout)
}

/// The packet types in an OpenPGP message, as `gpg --list-packets` names them.
fn packets(message: &[u8]) -> Vec<String> {
    let out = output_with_stdin(
        std::process::Command::new("gpg")
            .args(["--batch", "--list-packets"])
            .env("GNUPGHOME", "/nonexistent"),
        message,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(':')?.split_once(" packet:"))
        .map(|(name, _)| name)
        .map(str::to_owned)
        .collect()
}

async fn every_shape_verifies(env: &Env, home: &str, signer: &SigningPool, fpr: &str) {
    let dir = tempfile::tempdir().unwrap();
    // A binary signed message: gpg checks it and gives back exactly the bytes signed.
    let claim = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"registry.example.com/ns/app:1"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"atomic container signature"}},"optional":{{}}}}"#
    );
    let sig = signer
        .sign(fpr, SignMode::Normal, claim.clone().into_bytes())
        .await
        .unwrap();
    assert_eq!(
        packets(&sig),
        ["onepass_sig", "literal data", "signature"],
        "{fpr}"
    );
    let (_, payload) = gpg_checks(home, fpr, &["--decrypt"], &sig);
    assert_eq!(payload, claim.as_bytes(), "{fpr}");

    // Detached, binary and armored, over bytes that are not text.
    let blob: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let data = dir.path().join("blob");
    std::fs::write(&data, &blob).unwrap();
    for armor in [false, true] {
        let sig = signer
            .sign(fpr, SignMode::Detached { armor }, blob.clone())
            .await
            .unwrap();
        assert_eq!(
            sig.starts_with(b"-----BEGIN PGP SIGNATURE-----"),
            armor,
            "{fpr}"
        );
        let path = dir.path().join(format!("blob.{armor}.sig"));
        std::fs::write(&path, &sig).unwrap();
        gpg_checks(
            home,
            fpr,
            &["--verify", path.to_str().unwrap(), data.to_str().unwrap()],
            b"",
        );
    }

    // Cleartext, with what the canonical text rules touch: trailing blanks, dashes, "From ", CRLF, no final
    // line end. gpg checks it and prints the text back.
    for text in [
        &b"line one  \n-----BEGIN fake\nFrom me\t\r\n\n  indented\nlast"[..],
        b"ends with a line end\n",
        b"",
    ] {
        let sig = signer
            .sign(fpr, SignMode::Clear, text.to_vec())
            .await
            .unwrap();
        assert!(
            sig.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"),
            "{}",
            String::from_utf8_lossy(&sig)
        );
        let (_, shown) = gpg_checks(home, fpr, &["--decrypt"], &sig);
        // The text gpg gives back is the one it gives back from its own cleartext signature of the same text.
        let by_gpg = gpg_sign(env, env.key_ed25519(), text, Mode::Clear);
        let (_, expected) =
            gpg_checks(env.gnupg_home(), env.key_ed25519(), &["--decrypt"], &by_gpg);
        assert_eq!(
            String::from_utf8_lossy(&shown),
            String::from_utf8_lossy(&expected),
            "{fpr}"
        );
        // A changed text does not verify.
        let tampered = String::from_utf8_lossy(&sig).replacen("line one", "line 1", 1);
        if tampered.as_bytes() != sig.as_slice() {
            let path = dir.path().join("tampered.asc");
            std::fs::write(&path, tampered).unwrap();
            let out = std::process::Command::new("gpg")
                .args(["--homedir", home, "--batch", "--verify"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(!out.status.success(), "a tampered cleartext verified");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_passes_gpg_for_ed25519_and_rsa() {
    let env = Env::load();
    let configs = [
        key(&env, env.key_ed25519(), None),
        key(&env, env.key_rsa(), None),
    ];
    let signer = start(&configs).unwrap();
    assert_eq!(signer.size(), 2);
    for fpr in [env.key_ed25519(), env.key_rsa()] {
        every_shape_verifies(&env, env.gnupg_home(), &signer, fpr).await;
    }
    signer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_signature_passes_skopeo() {
    let env = Env::load();
    let signer = start(&[key(&env, env.key_ed25519(), None)]).unwrap();
    let reference = "registry.example.com/ns/app:1";
    let claim = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"atomic container signature"}},"optional":{{"creator":"signbus"}}}}"#
    );
    let sig = signer
        .sign(env.key_ed25519(), SignMode::Normal, claim.into_bytes())
        .await
        .unwrap();
    let out = skopeo_verify(&env, b"0", reference, env.key_ed25519(), &sig).unwrap();
    assert!(out.contains("Signature verified"), "{out}");
    assert!(skopeo_verify(&env, b"1", reference, env.key_ed25519(), &sig).is_err());
    assert!(skopeo_verify(&env, b"0", reference, env.key_rsa(), &sig).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_keys_sign_and_bad_keys_stop_the_start_naming_the_key() {
    let env = Env::load();
    let home = env.get("SIGNBUS_TEST_PASSPHRASE_HOME").to_owned();
    let pass_file = env.get("SIGNBUS_TEST_PASSPHRASE_FILE").to_owned();
    let (ed, rsa) = (
        env.get("SIGNBUS_TEST_PASSPHRASE_KEY").to_owned(),
        env.get("SIGNBUS_TEST_PASSPHRASE_KEY_RSA").to_owned(),
    );
    let signer = start(&[
        key(&env, &ed, Some(&pass_file)),
        key(&env, &rsa, Some(&pass_file)),
    ])
    .unwrap();
    for fpr in [&ed, &rsa] {
        every_shape_verifies(&env, &home, &signer, fpr).await;
    }
    signer.shutdown();

    let dir = tempfile::tempdir().unwrap();
    let secret = std::fs::read_to_string(&pass_file).unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-passphrase\n").unwrap();
    let e = start(&[key(&env, &ed, Some(wrong.to_str().unwrap()))])
        .err()
        .expect("a wrong passphrase refused");
    assert!(e.contains(&ed) && e.contains("wrong passphrase"), "{e}");
    assert!(
        !e.contains("not-the-passphrase") && !e.contains(secret.trim()),
        "{e}"
    );
    let e = start(&[key(&env, &rsa, None)])
        .err()
        .expect("no passphrase refused");
    assert!(e.contains(&rsa) && e.contains("needs a passphrase"), "{e}");

    // The id must name the key in the file.
    let mut other = key(&env, env.key_ed25519(), None);
    other.secret_key_file = Some(env.secret_key_file(env.key_rsa()).into());
    let e = start(&[other])
        .err()
        .expect("a file holding another key refused");
    assert!(
        e.contains(env.key_ed25519()) && e.contains(env.key_rsa()),
        "{e}"
    );
    // Public keys, missing files and garbage are not secret keys.
    for (content, why) in [
        (std::fs::read(env.ed25519_pub()).unwrap(), "secret key"),
        (b"not a key".to_vec(), "secret key"),
    ] {
        let path = dir.path().join("k.asc");
        std::fs::write(&path, content).unwrap();
        let mut c = key(&env, env.key_ed25519(), None);
        c.secret_key_file = Some(path);
        let e = start(&[c]).err().expect("not a secret key");
        assert!(e.contains(env.key_ed25519()) && e.contains(why), "{e}");
    }
    let mut c = key(&env, env.key_ed25519(), None);
    c.secret_key_file = Some(dir.path().join("none.asc"));
    let e = start(&[c]).err().expect("a missing file");
    assert!(
        e.contains("cannot be read") && e.contains("none.asc"),
        "{e}"
    );
}
