//! Key pairs cross over between the real cosign 2.5 and signbus's commands: a key from `cosign generate-key-pair`
//! signs in `signbus cosign-container-sign` (and cosign verifies the result), and a key from `signbus
//! cosign-generate-key-pair` signs in `cosign sign` (and cosign verifies it with signbus's public key). The files
//! signbus writes are cosign's: same names, labels and private-key mode.

use crate::support::cosign_cli::{document, Bench, PASSWORD};
use crate::support::run::{run, signbus};
use std::os::unix::fs::PermissionsExt as _;

fn verify(b: &Bench, public: &str, image: &str) -> (i32, String) {
    let (code, _, err) = b.cosign_verify(public, image);
    (code, err)
}

#[test]
fn a_key_from_cosign_generate_key_pair_signs_in_cosign_container_sign() {
    let b = Bench::start();
    let (code, _, err) = b.cosign(&["generate-key-pair"]);
    assert_eq!(code, 0, "{err}");
    let digest = b.push("test/app", "v1");
    let reference = format!("{}:v1", b.repo("test/app"));
    let key = b.path("cosign.key");
    let (code, out, err) = b.sign_image(&b.native_config(), &key, &digest, &reference, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(document(&out)["signed_with"][0], "signbus");
    let (code, err) = verify(
        &b,
        "cosign.pub",
        &format!("{}@{digest}", b.repo("test/app")),
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_key_from_signbus_cosign_generate_key_pair_signs_and_verifies_in_cosign() {
    let b = Bench::start();
    // cosign's default file names in the working directory, like `cosign generate-key-pair`.
    let (code, out, err) = run(signbus()
        .arg("cosign-generate-key-pair")
        .env("COSIGN_PASSWORD", PASSWORD)
        .current_dir(b.dir.path()));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        err,
        "Private key written to cosign.key\nPublic key written to cosign.pub\n"
    );
    let key = std::fs::read_to_string(b.path("cosign.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
        "{key}"
    );
    let public = std::fs::read_to_string(b.path("cosign.pub")).unwrap();
    assert!(
        public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{public}"
    );
    let mode = std::fs::metadata(b.path("cosign.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second run never overwrites the pair.
    let (code, _, err) = run(signbus()
        .arg("cosign-generate-key-pair")
        .env("COSIGN_PASSWORD", PASSWORD)
        .current_dir(b.dir.path()));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(b.path("cosign.key")).unwrap(), key);

    let digest = b.push("test/app", "v1");
    let image = format!("{}@{digest}", b.repo("test/app"));
    let (code, _, err) = b.cosign(&[
        "sign",
        "-y",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "--allow-http-registry=true",
        &image,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = verify(&b, "cosign.pub", &image);
    assert_eq!(code, 0, "{err}");

    // An empty password is allowed, as in cosign, and cosign opens the key with it.
    let (code, out, err) = run(signbus()
        .args(["cosign-generate-key-pair", "--output-key-prefix", "empty"])
        .env("COSIGN_PASSWORD", "")
        .current_dir(b.dir.path()));
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(std::process::Command::new(crate::support::cosign::bin())
        .args([
            "sign",
            "-y",
            "--key",
            "empty.key",
            "--tlog-upload=false",
            "--allow-http-registry=true",
        ])
        .arg(&image)
        .env("COSIGN_PASSWORD", "")
        .env("HOME", b.dir.path())
        .current_dir(b.dir.path()));
    assert_eq!(code, 0, "{err}");
    let (code, err) = verify(&b, "empty.pub", &image);
    assert_eq!(code, 0, "{err}");
}
