//! `signbus publish` / `store::publish`: next free signature-N, never overwriting, safe under concurrency,
//! idempotent for the same bytes; what it writes verifies with `signbus verify` and `skopeo standalone-verify`.

use crate::support::verify_fixtures::*;
use crate::support::*;
use signbus::reference::Reference;
use signbus::store::{self, PublishOutcome};
use signbus::verify::registries_d::RegistriesD;
use std::sync::{Arc, Barrier};

const IMAGE: &str = "registry.example.com/ns/repo:1";

fn staging_fixture() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    let staging = f.dir.path().join("staging");
    f.write_registries(
        "ns.yaml",
        &format!(
            "docker:\n  registry.example.com/ns:\n    lookaside: https://unused.example.com/sigs\n    lookaside-staging: {}\n",
            url::Url::from_file_path(&staging).unwrap()
        ),
    );
    (f, staging)
}

#[test]
fn two_concurrent_publishers_get_signature_1_and_2() {
    let (f, _) = staging_fixture();
    let registries = Arc::new(RegistriesD::load_dir(&f.registries_d()).unwrap());
    for round in 0..25 {
        let (_, d) = manifest(&format!("race-{round}"));
        let image = Reference::parse_normalized(IMAGE).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [b"sig-A".to_vec(), b"sig-B".to_vec()]
            .into_iter()
            .map(|blob| {
                let (barrier, registries, image, d) = (
                    barrier.clone(),
                    registries.clone(),
                    image.clone(),
                    d.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    let out = store::publish(&registries, &image, &d, &blob).unwrap();
                    (out, blob)
                })
            })
            .collect();
        let mut got: Vec<(usize, Vec<u8>, std::path::PathBuf)> = handles
            .into_iter()
            .map(|h| match h.join().unwrap() {
                (PublishOutcome::Written { index, path }, blob) => (index, blob, path),
                (other, _) => panic!("round {round}: {other:?}"),
            })
            .collect();
        got.sort();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            [1, 2],
            "round {round}"
        );
        for (_, blob, path) in &got {
            assert_eq!(&std::fs::read(path).unwrap(), blob, "round {round}");
        }
        let dir = got[0].2.parent().unwrap();
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }
}

#[test]
fn republishing_the_same_bytes_is_a_no_op_that_says_so() {
    let (f, staging) = staging_fixture();
    let (_, d) = manifest("again");
    let sig = f.sign(f.env.key_ed25519(), IMAGE, &d);
    let sigfile = f.dir.path().join("sig");
    std::fs::write(&sigfile, &sig).unwrap();
    let publish = |file: &std::path::Path| {
        run(signbus().args([
            "publish",
            "--reference",
            IMAGE,
            "--digest",
            &d,
            "--signature",
            path_str(file),
            "--registries-d",
            path_str(&f.registries_d()),
        ]))
    };
    let (code, out, err) = publish(&sigfile);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("published signature-1"), "{out}");
    let other = f.dir.path().join("other");
    std::fs::write(&other, f.sign(f.env.key_rsa(), IMAGE, &d)).unwrap();
    let (code, out, _) = publish(&other);
    assert_eq!(code, 0);
    assert!(out.contains("published signature-2"), "{out}");
    let (code, out, err) = publish(&sigfile);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already published as signature-1"), "{out}");
    assert!(out.contains("nothing written"), "{out}");
    let dir = staging.join(format!("ns/repo@{}", d.replacen(':', "=", 1)));
    assert!(!dir.join("signature-3").exists());
    assert_eq!(std::fs::read(dir.join("signature-1")).unwrap(), sig);
}

#[test]
fn the_publish_command_refuses_blobs_that_are_not_signed_messages() {
    let (f, staging) = staging_fixture();
    let (_, d) = manifest("not-a-message");
    let blob = f.dir.path().join("claim.json");
    std::fs::write(&blob, claim(IMAGE, &d)).unwrap();
    let (code, out, err) = run(signbus().args([
        "publish",
        "--reference",
        IMAGE,
        "--digest",
        &d,
        "--signature",
        path_str(&blob),
        "--registries-d",
        path_str(&f.registries_d()),
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("not an OpenPGP signed message"), "{err}");
    assert!(!staging.exists(), "nothing may be written");
}

#[test]
fn publishing_to_http_is_refused_clearly() {
    let f = Fixture::new();
    f.write_registries(
        "http.yaml",
        "docker:\n  registry.example.com:\n    lookaside: https://sigs.example.com/x\n",
    );
    let (_, d) = manifest("http-publish");
    let registries = RegistriesD::load_dir(&f.registries_d()).unwrap();
    let image = Reference::parse_normalized(IMAGE).unwrap();
    let err = store::publish(&registries, &image, &d, b"x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("only file://"), "{err}");
}

#[test]
fn what_signbus_publishes_verifies_with_skopeo_and_signbus() {
    let (f, staging) = staging_fixture();
    let (m, d) = manifest("skopeo");
    let manifest_file = f.dir.path().join("manifest.json");
    std::fs::write(&manifest_file, &m).unwrap();
    // One signature made by gpg over a signbus claim, one by skopeo itself.
    let ours = f.sign(f.env.key_ed25519(), IMAGE, &d);
    let ours_file = f.dir.path().join("ours.sig");
    std::fs::write(&ours_file, &ours).unwrap();
    let skopeo_file = f.dir.path().join("skopeo.sig");
    let (code, _, err) = run(std::process::Command::new("skopeo")
        .env("GNUPGHOME", f.env.gnupg_home())
        .args([
            "standalone-sign",
            path_str(&manifest_file),
            IMAGE,
            f.env.key_rsa(),
            "-o",
        ])
        .arg(&skopeo_file));
    assert_eq!(code, 0, "skopeo standalone-sign: {err}");
    for file in [&ours_file, &skopeo_file] {
        let (code, out, err) = run(signbus().args([
            "publish",
            "--reference",
            IMAGE,
            "--digest",
            &d,
            "--signature",
            path_str(file),
            "--registries-d",
            path_str(&f.registries_d()),
        ]));
        assert_eq!(code, 0, "{out}{err}");
    }
    let dir = staging.join(format!("ns/repo@{}", d.replacen(':', "=", 1)));
    for (n, key) in [(1, f.env.key_ed25519()), (2, f.env.key_rsa())] {
        let (code, out, err) = run(std::process::Command::new("skopeo")
            .env("GNUPGHOME", f.env.gnupg_home())
            .args(["standalone-verify", path_str(&manifest_file), IMAGE, key])
            .arg(dir.join(format!("signature-{n}"))));
        assert_eq!(
            code, 0,
            "skopeo standalone-verify signature-{n}: {out}{err}"
        );
        assert!(out.contains("verified"), "{out}");
    }

    // signbus verify reads the *lookaside* key, so point a second registries.d at the staging directory.
    let read_d = f.dir.path().join("read.d");
    std::fs::create_dir_all(&read_d).unwrap();
    std::fs::write(
        read_d.join("r.yaml"),
        format!(
            "default-docker:\n  lookaside: {}\n",
            url::Url::from_file_path(&staging).unwrap()
        ),
    )
    .unwrap();
    // Only the RSA key is trusted: signature-1 (ed25519) is skipped, skopeo's signature-2 accepted.
    let policy = f.policy_file(
        r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"@RSA@","signedIdentity":{"type":"matchExact"}}]}"#,
    );
    let (code, out, err) = run(signbus().args([
        "verify",
        IMAGE,
        "--manifest",
        path_str(&manifest_file),
        "--policy",
        path_str(&policy),
        "--registries-d",
        path_str(&read_d),
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("signature-2: ACCEPTED"), "{out}");
    assert!(out.contains("verdict:   ACCEPTED by policy"), "{out}");
}
