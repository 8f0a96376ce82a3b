//! Keys with passphrases, as production keys have: a passphrase-protected ed25519 key (passphrase from a file)
//! and RSA key (from a systemd credential in `$CREDENTIALS_DIRECTORY`) sign end to end; a wrong or missing
//! passphrase stops the start with a message naming the key — even when gpg-agent still caches the right one —
//! and the secret never appears in logs (at trace level), metrics, replies or error messages. With either signing
//! backend (`SIGNBUS_TEST_BACKEND`).

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

/// `server_config` with its signing section replaced by `signing`.
fn config_with_signing(env: &Env, queue: &str, signing: &str) -> String {
    let base = server_config(env, queue, "");
    let head = &base[..base.find("signing:").unwrap()];
    format!("{head}{signing}")
}

/// Runs `signbus serve` on `config`, which must fail to start; returns its exit code and all it printed.
fn failed_start(config: &str, envs: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(signbus_bin())
        .args([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--log-level",
            "debug",
        ])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the server started (or hung) with a bad passphrase");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_keys_sign_end_to_end_and_the_secret_never_shows() {
    let env = Env::load();
    let home = env.get("SIGNBUS_TEST_PASSPHRASE_HOME").to_owned();
    let pass_file = env.get("SIGNBUS_TEST_PASSPHRASE_FILE").to_owned();
    let secret = std::fs::read_to_string(&pass_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(secret.len() >= 16);
    let (ed, rsa) = (
        env.get("SIGNBUS_TEST_PASSPHRASE_KEY").to_owned(),
        env.get("SIGNBUS_TEST_PASSPHRASE_KEY_RSA").to_owned(),
    );
    // The RSA key's passphrase comes as a systemd credential.
    let creds = tempfile::tempdir().unwrap();
    std::fs::copy(&pass_file, creds.path().join("pp-rsa")).unwrap();
    let creds_dir = creds.path().to_str().unwrap().to_owned();
    // Under the in-process backend (SIGNBUS_TEST_BACKEND) the same keys come from their armored files.
    let (ed_file, rsa_file) = (env.key_source(&ed), env.key_source(&rsa));
    let signing = |ed_source: &str| {
        format!(
            "signing:\n  backend: {backend}\n  gnupg_home: \"{home}\"\n  workers: 2\n  keys:\n    - {{id: \"{ed}\", name: pp-ed, {ed_source}{ed_file}}}\n    - {{id: \"{rsa}\", name: pp-rsa, passphrase_credential: pp-rsa{rsa_file}}}\n",
            backend = backend(),
        )
    };
    let queue = unique("passphrase");
    declare_request_queue(&env, &queue);
    let good = config_with_signing(
        &env,
        &queue,
        &signing(&format!("passphrase_file: \"{pass_file}\"")),
    );
    let envs = [("CREDENTIALS_DIRECTORY", creds_dir.as_str())];
    let server = Server::start_with(&good, &envs, &["--log-level", "trace"]);

    let task = unique("task");
    let mut client = RawClient::open(&env, &task).await;
    let address = format!("/queues/{queue}");
    let mut sent = Vec::new();
    for (name, fpr) in [("pp-ed", &ed), ("pp-rsa", &rsa)] {
        let claim = format!(
            r#"{{"critical":{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{DIGEST}"}},"identity":{{"docker-reference":"registry.example.com/ns/app:1"}}}},"optional":{{}}}}"#
        );
        let id = format!("pp-{name}");
        let body = json!({
            "sig_key_id": &fpr[fpr.len() - 8..], "claim_file": STANDARD.encode(&claim), "request_id": id,
            "created": signbus::requester::isodate_now(), "requested_by": "tester", "repo": "ns/app",
            "pub_task_id": task, "manifest_digest": DIGEST,
        });
        let props =
            json!({"mtype": "container_signature", "owner_id": "tester", "pub_task_id": task});
        client.send(&address, body.to_string(), &props).await;
        sent.push((id, claim, fpr.clone()));
    }
    let replies = client.replies(sent.len(), || server.logs()).await;
    for (id, claim, fpr) in &sent {
        let msg = &replies[id]["msg"];
        assert_eq!(msg["errors"], json!([]), "{id}: {msg}");
        let sig = STANDARD
            .decode(msg["signed_claim"].as_str().unwrap())
            .unwrap();
        // gpg (holding only the public halves' trust in this home) checks signer and content.
        let out = output_with_stdin(
            Command::new("gpg").args([
                "--homedir",
                &home,
                "--batch",
                "--status-fd",
                "2",
                "--decrypt",
            ]),
            &sig,
        );
        let status = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{id}: {status}");
        assert!(
            status.contains(&format!("VALIDSIG {fpr}")),
            "{id}: {status}"
        );
        assert_eq!(out.stdout, claim.as_bytes(), "{id}");
    }
    let metrics = server.scrape();
    let logs = server.logs();
    for (what, text) in [
        ("replies", serde_json::to_string(&replies).unwrap()),
        ("metrics", metrics),
        ("logs", logs.clone()),
    ] {
        assert!(
            !text.contains(&secret),
            "the passphrase appears in the {what}"
        );
    }
    assert!(
        logs.contains("signing key ready"),
        "the logs were captured: {logs}"
    );
    client.close().await;
    drop(server);

    // A wrong passphrase stops the start, though gpg-agent still caches the right one from the server above.
    let wrong_file = creds.path().join("wrong");
    let wrong = format!("{}-not-it", &secret[..8]);
    std::fs::write(&wrong_file, format!("{wrong}\n")).unwrap();
    let bad = config_with_signing(
        &env,
        &queue,
        &signing(&format!("passphrase_file: \"{}\"", wrong_file.display())),
    );
    let (code, out) = failed_start(&bad, &envs);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&ed) && out.contains("wrong passphrase"),
        "{out}"
    );
    assert!(
        !out.contains(&wrong) && !out.contains(&secret),
        "the secret is in: {out}"
    );

    // No passphrase for a key that needs one, and a credential without $CREDENTIALS_DIRECTORY.
    let (code, out) = failed_start(
        &config_with_signing(&env, &queue, &signing("aliases: []")),
        &envs,
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&ed) && out.contains("needs a passphrase"),
        "{out}"
    );
    let (code, out) = failed_start(&good, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("CREDENTIALS_DIRECTORY"), "{out}");
    println!("passphrase keys: ed25519 (file) and RSA (systemd credential) signed; wrong, missing and unreachable passphrases refused at start");
    delete_request_queue(&env, &queue);
}
