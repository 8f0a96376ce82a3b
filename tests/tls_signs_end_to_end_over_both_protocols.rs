//! `amqps://` over AMQP 1.0: the server and the pubtools-sign-compatible requester connect with TLS, trusting the
//! configured CA and presenting the client certificate (`messaging_ca_cert`, `messaging_cert_key`); a broker whose
//! certificate the CA did not sign is refused with an error that says so, before anything is sent.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use std::path::Path;
use std::process::Command;

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

fn signbus_amqp1(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(signbus_bin())
        .env("SIGNBUS_PROTOCOL", "amqp1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn requester_and_server_sign_over_amqps() {
    let env = Env::load();
    let tls = Path::new(env.get("SIGNBUS_TESTENV_DIR")).join("tls");
    let amqps = env.get("SIGNBUS_AMQPS_URL").to_owned();
    let queue = unique("tls");
    declare_request_queue(&env, &queue);
    let config = server_config(&env, &queue, "")
        .replace(
            &format!("urls: [\"{}\"]", env.amqp_url()),
            &format!("urls: [\"{amqps}\"]"),
        )
        .replace("  protocol: amqp091\n", "  protocol: amqp1\n")
        .replace(
            "  sasl: anonymous\n",
            &format!(
                "  sasl: anonymous\n  tls: {{ca_cert: \"{}\", cert_key: \"{}\"}}\n",
                tls.join("ca.pem").display(),
                tls.join("client.pem").display()
            ),
        );
    let server = Server::start(&config);
    assert!(
        server.logs().contains("connected (AMQP 1.0)"),
        "{}",
        server.logs()
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("conf.yaml");
    std::fs::write(
        &cfg,
        client_config(&env, &queue, 15).replace(env.amqp_url(), &amqps),
    )
    .unwrap();
    let args = [
        "msg-container-sign",
        "--signing-key",
        env.key_ed25519(),
        "--task-id",
        "tls-1",
        "--config-file",
        cfg.to_str().unwrap(),
        "--digest",
        DIGEST,
        "--reference",
        "registry.example.com/ns/repo:tls",
        "--raw",
    ];
    let (code, stdout, stderr) = signbus_amqp1(&args);
    assert_eq!(code, 0, "{stderr}\n{}", server.logs());
    let sig = STANDARD.decode(stdout.trim()).unwrap();
    skopeo_verify(
        &env,
        b"0",
        "registry.example.com/ns/repo:tls",
        env.key_ed25519(),
        &sig,
    )
    .unwrap();

    // A CA that did not sign the broker's certificate: refused at the handshake, nothing sent.
    let other = dir.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other-ca",
        ])
        .arg("-keyout")
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        tls.join("ca.pem").to_str().unwrap(),
        other.to_str().unwrap(),
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, _, stderr) = signbus_amqp1(&args);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("TLS handshake") && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );
    drop(server);
    delete_request_queue(&env, &queue);
}
