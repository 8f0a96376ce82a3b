//! Who may sign with which key: a request for a key its requester was not granted is refused with an error reply
//! that says so; a granted one is signed. The identity is the AMQP user-id the broker validated when the server
//! trusts it (a forged user-id is refused by the broker itself), and otherwise the request's `requested_by`,
//! logged as unauthenticated.

use crate::support::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

const DIGEST: &str = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

/// A queue of its own and a server on it that trusts `user-id` and has `grants` (YAML flow maps); a task id.
fn granting(prefix: &str, grants: &[&str]) -> (Env, String, Server, String) {
    let env = Env::load();
    let queue = unique(prefix);
    declare_request_queue(&env, &queue);
    let grants: String = grants.iter().map(|g| format!("    - {g}\n")).collect();
    let config = format!(
        "{}authorization:\n  trust_user_id: true\n  grants:\n{grants}",
        server_config(&env, &queue, "")
    );
    let server = Server::start(&config);
    (env, queue, server, unique("task"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_granted_keys_sign_for_the_authenticated_or_declared_requester() {
    // RabbitMQ maps the suite's anonymous connections to its user `guest`.
    let (env, queue, server, task) = granting(
        "authz",
        &[
            "{requester: guest, keys: [ed25519], repositories: [\"ns/\"]}",
            "{requester: tester, keys: [rsa]}",
        ],
    );
    let key_ids = std::collections::HashMap::from([
        ("ed25519", env.key_ed25519().to_owned()),
        ("rsa", env.key_rsa().to_owned()),
    ]);
    let request = |id: &str, key: &str, repo: &str| {
        let claim = format!(
            r#"{{"critical": {{"type": "atomic container signature", "image": {{"docker-manifest-digest": "{DIGEST}"}}, "identity": {{"docker-reference": "registry.example.com/{repo}:1"}}}}, "optional": {{}}}}"#
        );
        json!({
            "sig_keyname": key, "sig_key_id": key_ids[key], "claim_file": STANDARD.encode(claim), "request_id": id,
            "created": signbus::requester::isodate_now(), "requested_by": "tester", "repo": repo,
            "pub_task_id": task, "manifest_digest": DIGEST,
        })
        .to_string()
    };
    let props = json!({"mtype": "container_signature", "owner_id": "tester", "pub_task_id": task});
    // (request id, key, repository, AMQP user-id, expected: Ok(()) signed / Err(text in the error))
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Result<(), &'a str>,
    );
    let cases: Vec<Case> = vec![
        ("a-guest-ed", "ed25519", "ns/app", Some("guest"), Ok(())),
        (
            "a-guest-rsa",
            "rsa",
            "ns/app",
            Some("guest"),
            Err("requester guest is not authorised to sign with key rsa"),
        ),
        (
            "a-guest-repo",
            "ed25519",
            "other/app",
            Some("guest"),
            Err("not authorised to sign for repository \"other/app\""),
        ),
        ("a-tester-rsa", "rsa", "any/app", None, Ok(())),
        (
            "a-tester-ed",
            "ed25519",
            "ns/app",
            None,
            Err("requester tester (unauthenticated) is not authorised to sign with key ed25519"),
        ),
    ];
    let mut client = RawClient::open(&env, &task).await;
    let address = format!("/queues/{queue}");
    for (id, key, repo, user, _) in &cases {
        client
            .try_send(&address, request(id, key, repo), &props, *user)
            .await
            .unwrap();
    }
    // A user-id that is not the connection's user never reaches the server: the broker refuses it.
    let forged = client
        .try_send(
            &address,
            request("a-forged", "ed25519", "ns/app"),
            &props,
            Some("alice"),
        )
        .await;
    assert!(
        matches!(forged, Err(signbus::transport::TransportError::Lost(_))),
        "the broker accepted a forged user-id: {forged:?}"
    );
    // The forged publish may have cost the connection (0-9-1 closes the channel): read replies on a new one.
    let got = {
        let mut got = std::collections::HashMap::new();
        while got.len() < cases.len() {
            let v = client
                .next_reply(std::time::Duration::from_secs(20), || server.logs())
                .await;
            got.insert(v["msg"]["request_id"].as_str().unwrap().to_owned(), v);
        }
        got
    };
    for (id, key, _, _, expected) in &cases {
        let msg = &got[*id]["msg"];
        match expected {
            Ok(()) => {
                assert_eq!(msg["errors"], json!([]), "{id}: {msg}");
                let sig = STANDARD
                    .decode(msg["signed_claim"].as_str().unwrap())
                    .unwrap();
                assert_eq!(
                    gpg_payload(&env, &sig),
                    STANDARD
                        .decode(msg["claim_file"].as_str().unwrap())
                        .unwrap(),
                    "{id}: signed with {key}"
                );
            }
            Err(needle) => {
                assert_eq!(msg["signed_claim"], Value::Null, "{id}: {msg}");
                let e = msg["errors"][0].as_str().unwrap_or_default();
                assert!(e.contains(needle), "{id}: {e:?} lacks {needle:?}");
            }
        }
    }
    assert!(
        !got.contains_key("a-forged"),
        "the forged request was answered"
    );
    // Log lines say who asked and whether the broker vouched for it.
    let logs = server.logs();
    let spans: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "replied")
        .map(|v| v["span"].clone())
        .collect();
    let who = |id: &str| {
        let span = spans
            .iter()
            .find(|s| s["request_id"] == id)
            .expect("a replied line");
        (span["requester"].clone(), span["authenticated"].clone())
    };
    assert_eq!(
        who("a-tester-rsa"),
        (json!("tester"), json!(false)),
        "{logs}"
    );
    assert_eq!(who("a-guest-ed"), (json!("guest"), json!(true)), "{logs}");
    let metrics = server.scrape();
    assert_eq!(
        metric_sum(
            &metrics,
            "signbus_requests_total",
            &[("outcome", "forbidden")]
        ),
        3.0
    );

    // The CLI requester with credentials in the broker URL stamps that (broker-validated) user as user-id: the
    // server sees `guest`, not the `--requester` it declares.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf.yaml");
    let url = env.amqp_url().replacen("://", "://guest:guest@", 1);
    std::fs::write(
        &conf,
        client_config(&env, &queue, 15).replace(env.amqp_url(), &url),
    )
    .unwrap();
    let cli = |key: &str, repo: &str| {
        let reference = format!("registry.example.com/{repo}:1");
        let task = unique("cli");
        let (code, stdout, stderr) = Args::new("msg-container-sign")
            .opt("--signing-key", key)
            .opt("--task-id", &task)
            .opt("--requester", "tester")
            .opt("--config-file", &conf)
            .image(DIGEST, &reference)
            .run();
        (
            code,
            serde_json::from_str::<Value>(&stdout).unwrap_or_else(|_| {
                panic!(
                    "{stdout}
{stderr}"
                )
            }),
        )
    };
    let (code, out) = cli(env.key_ed25519(), "ns/app");
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(env.key_rsa(), "ns/app");
    assert_eq!(code, 1, "{out}");
    let e = out["operation_results"][0][0]["msg"]["errors"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        e.contains("requester guest is not authorised to sign with key rsa"),
        "{out}"
    );

    println!(
        "authorization: 3 granted requests signed, 4 refused (one from the CLI, identified by its broker user), \
         1 forged user-id refused by the broker"
    );
    client.close().await;
    drop(server);
    delete_request_queue(&env, &queue);
}

/// The hole a review found: with a grant restricted to repositories, a clearsign or blob request that leaves
/// `repo` out was signed. Now such a grant allows those types only when it lists them, and leaving `repo` out
/// never widens what a requester may do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearsign_and_blob_requests_need_a_grant_that_lists_their_type() {
    let (env, queue, server, task) = granting(
        "authz-types",
        &[
            "{requester: guest, keys: [ed25519], repositories: [\"ns/\"]}",
            "{requester: tester, keys: [ed25519], repositories: [\"ns/\"], types: [clearsign]}",
        ],
    );
    let key = env.key_ed25519();
    let request = |id: &str, mtype: &str, repo: Value| {
        let member = if mtype == "clearsign_signature" {
            "data"
        } else {
            "artifact"
        };
        json!({
            "sig_key_id": &key[key.len() - 16..], member: STANDARD.encode("release notes"), "request_id": id,
            "created": signbus::requester::isodate_now(), "requested_by": "tester", "repo": repo,
            "pub_task_id": task,
        })
        .to_string()
    };
    // (request id, mtype, repo, AMQP user-id, expected: Ok(()) signed / Err(text in the error))
    type Case<'a> = (
        &'a str,
        &'a str,
        Value,
        Option<&'a str>,
        Result<(), &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "t-guest-clear-norepo",
            "clearsign_signature",
            Value::Null,
            Some("guest"),
            Err("not authorised to send clearsign requests with key ed25519"),
        ),
        (
            "t-guest-clear-repo",
            "clearsign_signature",
            json!("ns/app"),
            Some("guest"),
            Err("must list the type"),
        ),
        (
            "t-guest-blob-norepo",
            "gpg_signature",
            Value::Null,
            Some("guest"),
            Err("not authorised to send blob requests"),
        ),
        (
            "t-tester-clear-norepo",
            "clearsign_signature",
            Value::Null,
            None,
            Ok(()),
        ),
        (
            "t-tester-clear-repo",
            "clearsign_signature",
            json!("ns/app"),
            None,
            Ok(()),
        ),
        (
            "t-tester-clear-other",
            "clearsign_signature",
            json!("other/app"),
            None,
            Err("not authorised to sign for repository \"other/app\""),
        ),
        (
            "t-tester-blob",
            "gpg_signature",
            Value::Null,
            None,
            Err("requester tester (unauthenticated) is not authorised to send blob requests"),
        ),
    ];
    let mut client = RawClient::open(&env, &task).await;
    let address = format!("/queues/{queue}");
    for (id, mtype, repo, user, _) in &cases {
        let props = json!({"mtype": mtype, "owner_id": "tester", "pub_task_id": task});
        client
            .try_send(&address, request(id, mtype, repo.clone()), &props, *user)
            .await
            .unwrap();
    }
    let got = client.replies(cases.len(), || server.logs()).await;
    for (id, mtype, _, _, expected) in &cases {
        let msg = &got[*id]["msg"];
        let result = signbus::wire::RequestType::from_mtype(mtype)
            .unwrap()
            .result_field();
        match expected {
            Ok(()) => {
                assert_eq!(msg["errors"], json!([]), "{id}: {msg}");
                assert!(msg[result].is_string(), "{id}: {msg}");
            }
            Err(needle) => {
                assert_eq!(msg[result], Value::Null, "{id}: signed: {msg}");
                let e = msg["errors"][0].as_str().unwrap_or_default();
                assert!(e.contains(needle), "{id}: {e:?} lacks {needle:?}");
            }
        }
    }
    let metrics = server.scrape();
    assert_eq!(
        metric_sum(
            &metrics,
            "signbus_requests_total",
            &[("outcome", "forbidden")]
        ),
        5.0
    );
    client.close().await;
    drop(server);
    delete_request_queue(&env, &queue);
}
