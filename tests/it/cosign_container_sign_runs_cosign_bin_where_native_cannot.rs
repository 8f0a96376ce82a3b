//! Where signbus cannot sign natively — a KMS (or other URI) key, `upload_tlog: true` — `cosign-container-sign`
//! runs `cosign_bin` with exactly the argv pubtools-sign 1.0.6 runs, and says so in its output. `cosign_bin` here
//! is a shell-script stand-in that records its argv and `COSIGN_PASSWORD`; the real pubtools-sign runs the same
//! stand-in with the same config, and the two recordings must be equal.

use crate::support::cosign_cli::{document, Bench};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Writes a stand-in cosign that records each call (argv one per line, then `COSIGN_PASSWORD`) as a file in
/// `record`, and prints what cosign prints on success to stderr.
fn stand_in(dir: &Path, record: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(record).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("cosign-stand-in");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nf=$(mktemp {}/call.XXXXXX)\nfor a in \"$0\" \"$@\"; do printf '%s\\n' \"$a\"; done > \"$f\"\n\
             printf 'COSIGN_PASSWORD=%s\\n' \"${{COSIGN_PASSWORD-unset}}\" >> \"$f\"\n\
             eval last=\\${{$#}}\necho \"Pushing signature to: ${{last%@*}}\" >&2\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Every recorded call, as a set of texts.
fn calls(record: &Path) -> BTreeSet<String> {
    std::fs::read_dir(record)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn kms_keys_and_tlog_uploads_run_cosign_bin_with_pubtools_signs_argv() {
    let b = Bench::start();
    let (ours, theirs) = (b.path("ours"), b.path("theirs"));
    let section = |bin: &Path, tlog: bool| {
        format!(
            "  cosign_bin: {}\n  timeout: 90s\n  upload_tlog: {tlog}\n  rekor_url: https://rekor.example.com\n  \
             registry_user: robot\n  registry_password: s3cret\n  env_variables: {{COSIGN_PASSWORD: from-config}}\n  \
             key_aliases: {{prod: 'awskms:///alias/prod', file: {}}}\n  retries: 1\n",
            bin.display(),
            b.path("signer.key").display()
        )
    };
    b.signbus_key("signer");
    let digests = [
        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "sha256:2222222222222222222222222222222222222222222222222222222222222222",
    ];
    let args = [
        "--signing-key",
        "prod",
        "--signing-key",
        "hashivault://transit/k",
        "--digest",
        digests[0],
        "--reference",
        "quay.example.com/ns/one:v1",
        "--digest",
        digests[1],
        "--reference",
        "quay.example.com/ns/two:v2",
        "--identity",
        "registry.example.com/ns/one:v1",
    ];
    for tlog in [false, true] {
        let _ = std::fs::remove_dir_all(&ours);
        let _ = std::fs::remove_dir_all(&theirs);
        let (our_bin, their_bin) = (
            stand_in(&b.path("o"), &ours),
            stand_in(&b.path("t"), &theirs),
        );
        let our_cfg = b.config("ours.yaml", &section(&our_bin, tlog));
        let their_cfg = b.config("theirs.yaml", &section(&their_bin, tlog));
        // With upload_tlog, even a key file goes to cosign_bin.
        let args: Vec<&str> = if tlog {
            [&args[..], &["--signing-key", "file"]].concat()
        } else {
            args.to_vec()
        };
        let (code, out, err) = b.sign(&our_cfg, &args);
        assert_eq!(code, 0, "{out}{err}");
        let (pcode, pout, perr) = b.pubtools_sign(&their_cfg, &args);
        assert_eq!(pcode, 0, "{pout}{perr}");
        let (mine, pubtools) = (calls(&ours), calls(&theirs));
        assert_eq!(mine.len(), if tlog { 6 } else { 4 }, "{mine:?}");
        let named = |s: &str, bin: &Path| s.replace(&bin.display().to_string(), "<bin>");
        let mine: BTreeSet<String> = mine.iter().map(|c| named(c, &our_bin)).collect();
        let pubtools: BTreeSet<String> = pubtools.iter().map(|c| named(c, &their_bin)).collect();
        assert_eq!(
            mine, pubtools,
            "signbus ran cosign_bin differently from pubtools-sign"
        );
        let one = mine
            .iter()
            .find(|c| c.contains("awskms:///alias/prod") && c.contains("ns/one"))
            .unwrap();
        assert_eq!(
            one.lines().collect::<Vec<_>>(),
            [
                "<bin>",
                "-t",
                "90s",
                "sign",
                "-y",
                "--key",
                "awskms:///alias/prod",
                "--allow-http-registry=false",
                "--allow-insecure-registry=false",
                "--rekor-url",
                "https://rekor.example.com",
                if tlog {
                    "--tlog-upload=true"
                } else {
                    "--tlog-upload=false"
                },
                "--registry-username",
                "robot",
                "--registry-password",
                "s3cret",
                "--sign-container-identity",
                "registry.example.com/ns/one:v1",
                "-a",
                "tag=v1",
                &format!("quay.example.com/ns/one@{}", digests[0]),
                "COSIGN_PASSWORD=from-config",
            ]
        );
        let doc = document(&out);
        assert_eq!(doc["signer_result"]["status"], "ok");
        let n = if tlog { 6 } else { 4 };
        assert_eq!(doc["signed_with"], serde_json::json!(vec!["cosign_bin"; n]));
        assert_eq!(
            doc["operation_results"],
            document(&pout)["operation_results"]
        );
    }
}

#[test]
fn a_failing_cosign_bin_is_an_error_carrying_its_stderr() {
    let b = Bench::start();
    let bin = b.path("failing-cosign");
    std::fs::write(
        &bin,
        "#!/bin/sh\necho 'Error: signing failed: KMS says no' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = b.config(
        "fail.yaml",
        &format!(
            "  cosign_bin: {}\n  upload_tlog: false\n  retries: 2\n",
            bin.display()
        ),
    );
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let (code, out, err) = b.sign(
        &cfg,
        &[
            "--signing-key",
            "gcpkms://projects/p/k",
            "--digest",
            digest,
            "--reference",
            "quay.example.com/ns/a:1",
            "--raw",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("signed_with cosign_bin: quay.example.com/ns/a@"),
        "{err}"
    );
    assert!(
        err.contains("Error: signing failed: KMS says no\n"),
        "{err}"
    );
}
