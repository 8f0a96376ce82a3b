//! The signer goes away mid-run: the server's private gpg-agent is killed again and again while 200 requests are
//! signed. Signatures that fail are tried again (`signing.attempts`) — gpg starts a new agent — and every request
//! is answered with a valid signature; none is lost, none is answered with an error.

use crate::support::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_gpg_agent_mid_run_loses_no_request() {
    let env = Env::load();
    // A private copy of the test keyring, so only this test's agent dies.
    let home = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "cd '{}' && tar --exclude='S.*' -cf - . | tar -xf - -C '{}'",
                env.gnupg_home(),
                home.path().display()
            ),
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    let queue = unique("agent");
    declare_request_queue(&env, &queue);
    // gpg-agent outages are the gpgme backend's: this test runs it whatever SIGNBUS_TEST_BACKEND says.
    let config = server_config(&env, &queue, "")
        .replace(env.gnupg_home(), home.path().to_str().unwrap())
        .replace("backend: in-process", "backend: gpgme");
    let server = Server::start(&config);

    let n = 200;
    let (_, task, requests) = container_requests(&env, &queue, n, env.key_rsa());
    let mut client = RawClient::open(&env, &task).await;
    client.send_requests(&requests).await;
    let kill_agent = || {
        std::process::Command::new("gpgconf")
            .args([
                "--homedir",
                home.path().to_str().unwrap(),
                "--kill",
                "gpg-agent",
            ])
            .status()
            .unwrap()
            .success()
    };
    let mut answered = std::collections::HashMap::new();
    let mut kills = 0;
    let started = Instant::now();
    while answered.len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{} of {n}",
            answered.len()
        );
        let v = client
            .next_reply(Duration::from_secs(30), || server.logs())
            .await;
        if answered.len() % 25 == 10 && kills < 6 && kill_agent() {
            kills += 1;
        }
        answered.insert(v["msg"]["request_id"].as_str().unwrap().to_owned(), v);
    }
    for r in &requests {
        let msg = &answered[&r.id]["msg"];
        assert_eq!(
            msg["errors"],
            serde_json::json!([]),
            "{msg}\n{}",
            server.logs()
        );
    }
    for r in requests.iter().step_by(40) {
        let msg = &answered[&r.id]["msg"];
        assert_eq!(
            gpg_payload(&env, &unbase64(msg["signed_claim"].as_str().unwrap())),
            unbase64(r.body["claim_file"].as_str().unwrap())
        );
    }
    assert!(kills >= 3, "the agent was killed only {kills} times");
    let metrics = server.scrape();
    let retries = metric_sum(&metrics, "signbus_sign_retries_total", &[]);
    let errors = metric_sum(&metrics, "signbus_requests_total", &[("outcome", "signer")]);
    assert_eq!(errors, 0.0);
    // gpgconf reports success whether or not an agent was running: the retries show the outages were real.
    assert!(
        retries >= 1.0,
        "no signature failed: the agent kills did not reach the signer"
    );
    assert_eq!(server.http_get("/readyz").0, 200);
    println!(
        "signer outage: gpg-agent kill requested {kills} times during {n} requests; {retries} signatures tried again; \
         {n} answered, 0 errors"
    );
    client.close().await;
    drop(server);
    delete_request_queue(&env, &queue);
}
