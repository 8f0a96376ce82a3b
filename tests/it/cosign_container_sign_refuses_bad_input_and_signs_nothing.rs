//! Bad input to `signbus cosign-container-sign` gets a clear error, exit code 1, and no signature anywhere:
//! malformed digests and references, unpaired flags, an unknown key alias, a wrong password, an unknown config
//! key, an unreachable registry, a registry answering 401, 403 or 500, and a `.sig` tag holding a manifest of
//! another media type. Checked against Debian's docker-registry on loopback and a loopback server answering a
//! fixed status.

use crate::support::cosign_cli::{document, status_server, Bench, PASSWORD};
use signbus::reference::Reference;
use signbus::registry::DOCKER_MANIFEST;

#[test]
fn malformed_or_unpaired_input_and_bad_keys_or_config_are_refused_before_signing() {
    let b = Bench::start();
    let config = b.native_config();
    let key = b.signbus_key("signer");
    let k = key.to_str().unwrap();
    let digest = b.push("test/app", "v1");
    let reference = format!("{}:v1", b.repo("test/app"));
    let other = format!("{}:v2", b.repo("test/app"));
    let aliased = b.config(
        "alias.yaml",
        "  upload_tlog: false\n  allow_http_registry: true\n  key_aliases: {prod: /nonexistent/prod.key}\n",
    );
    let unknown_key = b.config(
        "unknown.yaml",
        "  upload_tlog: false\n  registry_auth_file: /a.json\n",
    );
    // (config, flags after --signing-key, what the error must say); `K` stands for the key file.
    let cases: Vec<(&std::path::Path, String, &str)> = vec![
        (
            &config,
            format!("K --digest sha256:123 --reference {reference}"),
            "--digest \"sha256:123\"",
        ),
        (
            &config,
            format!("K --digest {digest} --reference 127.0.0.1:5000/Bad:v1"),
            "--reference",
        ),
        (
            &config,
            format!("K --digest {digest} --reference 127.0.0.1:5000/ns/app"),
            "has no tag",
        ),
        (
            &config,
            format!("K --digest {digest} --reference {reference} --reference {other}"),
            "must pair",
        ),
        (
            &config,
            format!(
                "K --digest {digest} --reference {reference} --identity a/b:1 --identity c/d:1"
            ),
            "--identity",
        ),
        (&config, format!("K --digest {digest}"), "repository@sha256"),
        (
            &config,
            format!("nope --digest {digest} --reference {reference}"),
            "not a key_aliases entry",
        ),
        (
            &aliased,
            format!("prod --digest {digest} --reference {reference}"),
            "/nonexistent/prod.key",
        ),
        (
            &unknown_key,
            format!("K --digest {digest} --reference {reference}"),
            "registry_auth_file",
        ),
    ];
    for (cfg, flags, says) in cases {
        let args: Vec<&str> = ["--signing-key"]
            .into_iter()
            .chain(
                flags
                    .split_whitespace()
                    .map(|w| if w == "K" { k } else { w }),
            )
            .collect();
        let (code, out, err) = b.sign(cfg, &args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert_eq!(out, "", "{args:?}: nothing printed on stdout");
        assert!(err.contains(says), "{args:?}: expected {says:?} in: {err}");
    }
    // A wrong password, from the environment or from env_variables (which wins, as in pubtools-sign).
    let args = [
        "--signing-key",
        k,
        "--digest",
        &digest,
        "--reference",
        &reference,
    ];
    let (code, _, err) = b.sign_with_password(&config, &args, Some("wrong"));
    assert_eq!(code, 1);
    assert!(err.contains("wrong password"), "{err}");
    let overridden = b.config(
        "pw.yaml",
        "  upload_tlog: false\n  allow_http_registry: true\n  env_variables: {COSIGN_PASSWORD: wrong}\n",
    );
    let (code, _, err) = b.sign(&overridden, &args);
    assert_eq!(code, 1);
    assert!(err.contains("wrong password"), "{err}");
    assert!(
        b.signatures("test/app", &digest).is_empty(),
        "something was signed"
    );
    // And with the right one from env_variables, without COSIGN_PASSWORD in the environment, it signs.
    let right = b.config(
        "right.yaml",
        &format!("  upload_tlog: false\n  allow_http_registry: true\n  env_variables: {{COSIGN_PASSWORD: '{PASSWORD}'}}\n"),
    );
    let (code, out, err) = b.sign_with_password(&right, &args, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(b.signatures("test/app", &digest).len(), 1);
}

#[test]
fn unreachable_or_refusing_registries_fail_the_signature_with_exit_1() {
    let b = Bench::start();
    let config = b.native_config();
    let key = b.signbus_key("signer");
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    for (host, says) in [
        (closed, "Connection refused".to_owned()),
        (status_server(401), "refused access (401)".to_owned()),
        (status_server(403), "refused access (403)".to_owned()),
        (status_server(500), "answered 500".to_owned()),
    ] {
        let reference = format!("{host}/test/app:v1");
        let (code, out, err) = b.sign_image(&config, &key, digest, &reference, &[]);
        assert_eq!(code, 1, "{host}: {out}{err}");
        let doc = document(&out);
        assert_eq!(doc["signer_result"]["status"], "error", "{doc}");
        let message = doc["signer_result"]["error_message"].as_str().unwrap();
        assert!(
            message.contains(&says),
            "{host}: expected {says:?} in {message}"
        );
        assert!(
            message.contains(&format!("{host}/test/app@{digest}")),
            "{message}"
        );
        assert!(err.contains("1 of 1 signatures failed"), "{err}");
    }
}

#[test]
fn a_sig_tag_of_another_media_type_is_not_overwritten() {
    let b = Bench::start();
    let key = b.signbus_key("signer");
    let digest = b.push("test/app", "v1");
    // Put a Docker schema 2 manifest (of the image itself) under the image's .sig tag.
    let repo = Reference::parse_normalized(&b.repo("test/app")).unwrap();
    let image = b
        .client
        .get_manifest(&repo, &digest, &[signbus::registry::OCI_MANIFEST])
        .unwrap();
    let tag = signbus::cosign::signature_tag(&digest).unwrap();
    let docker = String::from_utf8(image.bytes)
        .unwrap()
        .replace(signbus::registry::OCI_MANIFEST, DOCKER_MANIFEST);
    b.client
        .put_manifest(&repo, &tag, DOCKER_MANIFEST, docker.as_bytes())
        .unwrap();
    let reference = format!("{}:v1", b.repo("test/app"));
    let (code, out, err) = b.sign_image(&b.native_config(), &key, &digest, &reference, &["--raw"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("media type") && err.contains(DOCKER_MANIFEST),
        "{err}"
    );
    let still = b
        .client
        .get_manifest(&repo, &tag, &[DOCKER_MANIFEST])
        .unwrap();
    assert_eq!(still.bytes, docker.as_bytes());
}
