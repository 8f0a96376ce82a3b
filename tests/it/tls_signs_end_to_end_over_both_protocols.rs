//! TLS end to end over both protocols: a server and the pubtools-sign-compatible requester connect with
//! `amqps://` (AMQP 1.0) or `amqps091://` (AMQP 0-9-1) to the testenv broker's TLS listener, trusting the
//! configured CA and presenting the client certificate (`messaging_ca_cert`, `messaging_cert_key`), and a request
//! is signed through the broker and verified with skopeo. The broker itself reports the server's connection as TLS
//! with our client certificate (so nothing was spoken in plaintext). A requester trusting a CA that did not sign
//! the broker's certificate is refused at the handshake with an error that says so, before anything is sent.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::process::Command;
use std::time::{Duration, Instant};

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

/// `signbus` with the requester protocol forced to `protocol`.
fn signbus(protocol: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(signbus_bin())
        .env("SIGNBUS_PROTOCOL", protocol)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Waits (management statistics lag) until the broker lists the connection of the server process `pid` over
/// `protocol`, and checks that it is TLS with the testenv client certificate and a heartbeat.
fn broker_sees_tls_connection(env: &Env, pid: u32, protocol: &str) {
    let port: u16 = env
        .get("SIGNBUS_AMQPS_URL")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ports = local_ports_to(pid, port);
    assert!(
        !ports.is_empty(),
        "server {pid} has no connection to port {port}"
    );
    let wire = if protocol == "amqp091" {
        "0-9-1"
    } else {
        "1-0"
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = mgmt(env, "GET", "/api/connections", "");
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let ours = all
            .iter()
            .find(|c| c["peer_port"].as_u64().is_some_and(|p| ports.contains(&p)));
        if let Some(c) = ours {
            let proto = c["protocol"].as_str().unwrap_or_default();
            assert!(proto.contains(wire), "{protocol}: {c}");
            assert_eq!(c["ssl"], serde_json::Value::Bool(true), "not TLS: {c}");
            assert_eq!(c["port"].as_u64(), Some(u64::from(port)), "{c}");
            // Heartbeats are negotiated over TLS as over plain TCP (RabbitMQ's 60 s); confirms are exercised by
            // every publish of the signing below.
            assert!(
                c["timeout"].as_u64().is_some_and(|t| t > 0),
                "no heartbeat: {c}"
            );
            assert!(
                c["peer_cert_subject"]
                    .as_str()
                    .is_some_and(|s| s.contains("CN=signbus-test")),
                "{c}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker lists no connection from ports {ports:?} of server {pid}: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn sign_over_tls(protocol: &str) {
    let env = Env::load();
    let url = tls_url(&env, protocol);
    let ca = env.get("SIGNBUS_TLS_CA");
    let client = env.get("SIGNBUS_TLS_CLIENT");
    let queue = unique(&format!("tls-{protocol}"));
    declare_request_queue(&env, &queue);
    let config = tls_server_config(&env, &queue, protocol, "anonymous");
    let server = Server::start(&config);
    let wire = if protocol == "amqp091" {
        "connected (AMQP 0-9-1)"
    } else {
        "connected (AMQP 1.0)"
    };
    assert!(server.logs().contains(wire), "{}", server.logs());
    broker_sees_tls_connection(&env, server.child.id(), protocol);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("conf.yaml");
    let text = client_config(&env, &queue, 15).replace(env.amqp_url(), &url);
    assert!(text.contains(ca) && text.contains(client), "{text}");
    std::fs::write(&cfg, &text).unwrap();
    let task = format!("tls-{protocol}");
    let args = [
        "msg-container-sign",
        "--signing-key",
        env.key_ed25519(),
        "--task-id",
        &task,
        "--config-file",
        cfg.to_str().unwrap(),
        "--digest",
        DIGEST,
        "--reference",
        "registry.example.com/ns/repo:tls",
        "--raw",
    ];
    let (code, stdout, stderr) = signbus(protocol, &args);
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
    std::fs::write(&cfg, text.replace(ca, env.get("SIGNBUS_TLS_OTHER_CA"))).unwrap();
    let started = Instant::now();
    let (code, _, stderr) = signbus(protocol, &args);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("TLS handshake") && stderr.contains("invalid peer certificate"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(server);
    delete_request_queue(&env, &queue);
}

#[test]
fn amqp1_server_and_requester_sign_over_amqps() {
    sign_over_tls("amqp1");
}

#[test]
fn amqp091_server_and_requester_sign_over_amqps091() {
    sign_over_tls("amqp091");
}
