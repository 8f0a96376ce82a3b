//! `signbus cosign-container-sign` is a drop-in for pubtools-sign 1.0.6's `pubtools-sign-cosign-container-sign`
//! (the real one, from testenv's venv, with `cosign_bin` = Debian 13's cosign 2.5): run with the same config
//! file and flags, both print documents of the same shape (signbus adds only `signed_with`) and the same
//! `--raw` lines, and the payload signbus pushes is byte for byte the one cosign signs (`cosign generate`, and
//! cosign's own layer for the same image).

use crate::support::cosign_cli::{document, Bench, PASSWORD};
use crate::support::run::{run, signbus_bin};
use serde_json::Value;
use std::process::Command;

/// The shape of a JSON value: objects keep their member names (in order) with the shapes of their values,
/// arrays the shape of each element, scalars their type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

/// signbus's document without its one extra member.
fn without_signed_with(mut doc: Value) -> Value {
    doc.as_object_mut().unwrap().remove("signed_with");
    doc
}

#[test]
fn the_same_config_and_flags_print_the_same_document_and_raw_lines() {
    let b = Bench::start();
    let config = b.native_config();
    let key = b.signbus_key("signer");
    let k = key.to_str().unwrap();
    let (d1, d2) = (b.push("test/one", "v1"), b.push("test/two", "v2"));
    let (r1, r2) = (
        format!("{}:v1", b.repo("test/one")),
        format!("{}:v2", b.repo("test/two")),
    );
    let args = [
        "--signing-key",
        k,
        "--digest",
        &d1,
        "--reference",
        &r1,
        "--digest",
        &d2,
        "--reference",
        &r2,
        "--identity",
        "registry.example.com/ns/one:v1",
    ];
    let (pc, pout, perr) = b.pubtools_sign(&config, &args);
    let (sc, sout, serr) = b.sign(&config, &args);
    assert_eq!(
        (pc, sc),
        (0, 0),
        "pubtools-sign: {pout}{perr}\nsignbus: {sout}{serr}"
    );
    let (p, s) = (document(&pout), document(&sout));
    assert_eq!(p["signer_result"]["status"], "ok", "{p}");
    assert_eq!(s["signed_with"], serde_json::json!(["signbus", "signbus"]));
    // Same members in the same order, same values apart from nothing at all: cosign's stderr line is
    // `Pushing signature to: <repo>`, and signbus prints the same.
    assert_eq!(
        without_signed_with(s.clone()),
        p,
        "\npubtools-sign: {pout}\nsignbus: {sout}"
    );
    // The layout is Python's json.dumps, byte for byte, up to the extra member.
    let extra = format!(
        ", \"signed_with\": {}}}",
        serde_json::to_string(&s["signed_with"])
            .unwrap()
            .replace(',', ", ")
    );
    assert_eq!(sout.replace(&extra, "}"), pout);

    let (pc, pout, _) = b.pubtools_sign(&config, &[&args[..], &["--raw"]].concat());
    let (sc, sout, _) = b.sign(&config, &[&args[..], &["--raw"]].concat());
    assert_eq!((pc, sc), (0, 0));
    assert_eq!(sout, pout);
    // The same through pubtools-sign's command names: a symlink, and the `pubtools-sign` bundle.
    for (name, sub) in [
        ("pubtools-sign-cosign-container-sign", None),
        ("pubtools-sign", Some("cosign-container-sign")),
    ] {
        let link = b.path(name);
        std::os::unix::fs::symlink(signbus_bin(), &link).unwrap();
        let (code, out, err) = run(Command::new(&link)
            .args(sub)
            .arg("--config-file")
            .arg(&config)
            .args(args)
            .arg("--raw")
            .env("COSIGN_PASSWORD", PASSWORD));
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert_eq!(out, pout, "{name}");
    }

    // A failed signature (a registry that is not there): the same shape; pubtools-sign says "failed" and
    // exits 0, signbus says "error" and exits 1 (on purpose).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = format!("{closed}/test/one:v1");
    let bad = ["--signing-key", k, "--digest", &d1, "--reference", &gone];
    let (pc, pout, _) = b.pubtools_sign(&config, &bad);
    let (sc, sout, _) = b.sign(&config, &bad);
    assert_eq!((pc, sc), (0, 1), "pubtools-sign: {pout}\nsignbus: {sout}");
    let (p, s) = (document(&pout), document(&sout));
    assert_eq!(p["signer_result"]["status"], "failed");
    assert_eq!(s["signer_result"]["status"], "error");
    assert_eq!(shape(&without_signed_with(s)), shape(&p));

    // On purpose too: signbus refuses to sign a digest the repository does not have; cosign signs it.
    let missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let absent = ["--signing-key", k, "--digest", missing, "--reference", &r1];
    let (pc, pout, _) = b.pubtools_sign(&config, &absent);
    let (sc, sout, _) = b.sign(&config, &absent);
    assert_eq!((pc, sc), (0, 1), "pubtools-sign: {pout}\nsignbus: {sout}");
    assert_eq!(document(&pout)["signer_result"]["status"], "ok");
    let message = document(&sout)["signer_result"]["error_message"].to_string();
    assert!(message.contains("not found"), "{message}");
}

#[test]
fn the_payload_signbus_pushes_is_the_one_cosign_signs() {
    let b = Bench::start();
    let config = b.native_config();
    let (mine, theirs) = (b.signbus_key("mine"), b.signbus_key("theirs"));
    let digest = b.push("test/app", "v1");
    let reference = format!("{}:v1", b.repo("test/app"));
    let args = |k: &std::path::Path| {
        vec![
            "--signing-key".to_owned(),
            k.display().to_string(),
            "--digest".into(),
            digest.clone(),
            "--reference".into(),
            reference.clone(),
        ]
    };
    let mine_args = args(&mine);
    let (code, out, err) = b.sign(
        &config,
        &mine_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let sigs = b.signatures("test/app", &digest);
    assert_eq!(sigs.len(), 1);
    // `cosign generate` prints the payload cosign signs for the same image and annotation.
    let image = format!("{}@{digest}", b.repo("test/app"));
    let (code, generated, err) = b.cosign(&[
        "generate",
        "-a",
        "tag=v1",
        "--allow-http-registry=true",
        &image,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8(sigs[0].0.clone()).unwrap(), generated);

    // pubtools-sign (through cosign) signs the same image with another key: cosign appends its layer next to
    // signbus's, and both carry the very same payload bytes.
    let theirs_args = args(&theirs);
    let (code, out, err) = b.pubtools_sign(
        &config,
        &theirs_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let sigs = b.signatures("test/app", &digest);
    assert_eq!(
        sigs.len(),
        2,
        "cosign kept signbus's layer and added its own"
    );
    assert_eq!(sigs[0].0, sigs[1].0);
    assert_ne!(sigs[0].1, sigs[1].1);
}
