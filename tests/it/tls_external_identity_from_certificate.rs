//! Identity from the TLS client certificate (SASL EXTERNAL), over both protocols: with a certificate and no
//! password, server and requester authenticate to RabbitMQ as the certificate's CN (`signbus-test`), the broker
//! says so (`auth_mechanism` EXTERNAL, user `signbus-test`), the requester stamps that user as each request's AMQP
//! `user-id` (which RabbitMQ validates), and a server trusting `user-id` sees the broker-validated certificate
//! subject as an authenticated requester: granted, it signs; with no grant for that subject, it refuses.

use crate::support::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";
const SUBJECT: &str = "signbus-test";

/// A server config over TLS with SASL EXTERNAL, trusting `user-id` and granting `grants` (YAML flow list).
fn external_server_config(env: &Env, queue: &str, protocol: &str, grants: &str) -> String {
    let config = tls_server_config(env, queue, protocol, "external");
    format!(
        "{config}authorization:\n  trust_user_id: true\n  require_authenticated: true\n  grants: {grants}\n"
    )
}

/// Waits until the broker lists a connection as `user` with `mechanism`, over `protocol`'s wire.
fn broker_lists_connection(env: &Env, user: &str, mechanism: &str, protocol: &str) {
    let wire = if protocol == "amqp091" {
        "0-9-1"
    } else {
        "1-0"
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all: Vec<Value> =
            serde_json::from_str(&mgmt(env, "GET", "/api/connections", "")).unwrap();
        if all.iter().any(|c| {
            c["user"] == user
                && c["auth_mechanism"] == mechanism
                && c["ssl"] == true
                && c["protocol"].as_str().is_some_and(|p| p.contains(wire))
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {wire} connection as {user} by {mechanism}: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn external_identity(protocol: &str) {
    let env = Env::load();
    let queue = unique(&format!("external-{protocol}"));
    declare_request_queue(&env, &queue);
    let granted = format!("[{{requester: {SUBJECT}, keys: [ed25519]}}]");
    let server = Server::start(&external_server_config(&env, &queue, protocol, &granted));
    broker_lists_connection(&env, SUBJECT, "EXTERNAL", protocol);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("conf.yaml");
    let text = client_config(&env, &queue, 15).replace(env.amqp_url(), &tls_url(&env, protocol));
    std::fs::write(&cfg, &text).unwrap();
    let sign = |task: &str| {
        let out = Command::new(signbus_bin())
            .env("SIGNBUS_PROTOCOL", protocol)
            .env("SIGNBUS_SASL", "external")
            .args([
                "msg-container-sign",
                "--signing-key",
                env.key_ed25519(),
                "--task-id",
                task,
            ])
            .args([
                "--requester",
                "someone-else",
                "--config-file",
                cfg.to_str().unwrap(),
            ])
            .args([
                "--digest",
                DIGEST,
                "--reference",
                "registry.example.com/ns/app:ext",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let doc: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|_| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), doc)
    };
    // Granted: signed, and the server saw the certificate's subject, authenticated — not the declared requester.
    let task = unique("ext");
    let (code, doc) = sign(&task);
    assert_eq!(code, Some(0), "{doc}\n{}", server.logs());
    let replied: Vec<Value> = server
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "replied")
        .collect();
    assert_eq!(replied.len(), 1, "{}", server.logs());
    assert_eq!(replied[0]["span"]["requester"], SUBJECT, "{}", replied[0]);
    assert_eq!(replied[0]["span"]["authenticated"], true, "{}", replied[0]);
    drop(server);

    // The same certificate, but no grant for its subject: refused, saying who.
    let other = "[{requester: release-bot, keys: [ed25519]}]";
    let server = Server::start(&external_server_config(&env, &queue, protocol, other));
    let (code, doc) = sign(&unique("ext"));
    assert_eq!(code, Some(1), "{doc}");
    let e = doc["operation_results"][0][0]["msg"]["errors"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        e.contains(&format!(
            "requester {SUBJECT} is not authorised to sign with key ed25519"
        )),
        "{doc}\n{}",
        server.logs()
    );
    println!("{protocol}: SASL EXTERNAL as {SUBJECT}: granted request signed as an authenticated requester, ungranted refused");
    drop(server);
    delete_request_queue(&env, &queue);
}

#[test]
fn amqp1_identity_comes_from_the_client_certificate() {
    external_identity("amqp1");
}

#[test]
fn amqp091_identity_comes_from_the_client_certificate() {
    external_identity("amqp091");
}
