//! signbus's cosign keys, signatures and payloads against the real cosign 2.5 (Debian 13's package, fetched by
//! testenv/cosign-tools.sh): keys cosign makes sign in signbus, keys signbus makes work in cosign, signatures
//! cross over both ways, and the payload bytes are cosign's own.
//!
//! cosign is found through `SIGNBUS_TEST_COSIGN` (the binary's path; `testenv/test.sh` sets it). Unset, or set to
//! something that is not a working cosign: the tests fail.

use signbus::cosign::{self, KeyError, Payload, PrivateKey, PublicKey};
use signbus::signing::secret::Passphrase;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn cosign_bin() -> PathBuf {
    crate::support::cosign::bin()
}

/// Runs cosign in `dir` with `COSIGN_PASSWORD`; returns stdout, failing the test on a non-zero exit.
fn cosign(bin: &Path, dir: &Path, password: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", password)
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pw(s: &str) -> Passphrase {
    Passphrase::from_bytes(s.as_bytes().to_vec())
}

fn payload() -> Vec<u8> {
    Payload::new("127.0.0.1:5000/test/app", DIGEST, BTreeMap::new())
        .unwrap()
        .to_json()
}

#[test]
fn a_key_cosign_generates_signs_in_signbus_and_cosign_verifies_it() {
    let bin = cosign_bin();
    let dir = tempfile::tempdir().unwrap();
    cosign(&bin, dir.path(), "cosign pw", &["generate-key-pair"]);
    let key_file = std::fs::read(dir.path().join("cosign.key")).unwrap();
    let pub_file = std::fs::read(dir.path().join("cosign.pub")).unwrap();

    let key = PrivateKey::from_encrypted_pem(&key_file, &pw("cosign pw")).unwrap();
    assert_eq!(key.public_key(), PublicKey::from_pem(&pub_file).unwrap());
    assert_eq!(
        PrivateKey::from_encrypted_pem(&key_file, &pw("not it")).unwrap_err(),
        KeyError::WrongPassword
    );

    let payload = payload();
    std::fs::write(dir.path().join("payload"), &payload).unwrap();
    std::fs::write(dir.path().join("sig"), key.sign(&payload)).unwrap();
    cosign(
        &bin,
        dir.path(),
        "",
        &[
            "verify-blob",
            "--key",
            "cosign.pub",
            "--signature",
            "sig",
            "--insecure-ignore-tlog=true",
            "payload",
        ],
    );
}

#[test]
fn a_key_pair_signbus_writes_is_read_by_cosign_and_signatures_cross_over() {
    let bin = cosign_bin();
    let dir = tempfile::tempdir().unwrap();
    let files = cosign::generate_key_pair(&pw("signbus pw")).unwrap();
    std::fs::write(dir.path().join("ours.key"), &files.private_pem).unwrap();
    std::fs::write(dir.path().join("ours.pub"), &files.public_pem).unwrap();

    // cosign decrypts our private key and derives the same public key file, byte for byte.
    let public = cosign(
        &bin,
        dir.path(),
        "signbus pw",
        &["public-key", "--key", "ours.key"],
    );
    assert_eq!(public, files.public_pem);

    // Our signature verifies in cosign ...
    let payload = payload();
    std::fs::write(dir.path().join("payload"), &payload).unwrap();
    let key =
        PrivateKey::from_encrypted_pem(files.private_pem.as_bytes(), &pw("signbus pw")).unwrap();
    std::fs::write(dir.path().join("sig"), key.sign(&payload)).unwrap();
    cosign(
        &bin,
        dir.path(),
        "",
        &[
            "verify-blob",
            "--key",
            "ours.pub",
            "--signature",
            "sig",
            "--insecure-ignore-tlog=true",
            "payload",
        ],
    );
    // ... and cosign's signature with our key verifies in signbus; a changed payload does not.
    let theirs = cosign(
        &bin,
        dir.path(),
        "signbus pw",
        &[
            "sign-blob",
            "--key",
            "ours.key",
            "--tlog-upload=false",
            "--yes",
            "payload",
        ],
    );
    let public = PublicKey::from_pem(files.public_pem.as_bytes()).unwrap();
    public.verify(&payload, theirs.trim()).unwrap();
    let mut changed = payload.clone();
    changed.push(b' ');
    assert!(public.verify(&changed, theirs.trim()).is_err());
}

#[test]
fn payload_bytes_equal_cosign_generate_for_the_same_inputs() {
    let bin = cosign_bin();
    let dir = tempfile::tempdir().unwrap();
    // `cosign generate` prints the payload `cosign sign` would sign, without contacting the registry when the
    // image is given by digest.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        ("127.0.0.1:5999/test/pt", "127.0.0.1:5999/test/pt", &[]),
        (
            "busybox",
            "index.docker.io/library/busybox",
            &[("tag", "v1"), ("Z", "a<b>&c"), ("u", "é\u{2028}x")],
        ),
    ];
    for (image, identity, annotations) in cases {
        let mut args = vec!["generate".to_owned()];
        for (k, v) in annotations.iter() {
            args.push("-a".into());
            args.push(format!("{k}={v}"));
        }
        args.push(format!("{image}@{DIGEST}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let theirs = cosign(&bin, dir.path(), "", &args);
        let reference = signbus::reference::Reference::parse_normalized(image).unwrap();
        assert_eq!(cosign::default_identity(&reference), *identity);
        let ours = Payload::new(
            identity,
            DIGEST,
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
        .to_json();
        assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{image}");
    }
}
