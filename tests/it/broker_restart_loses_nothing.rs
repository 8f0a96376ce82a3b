//! The broker dies (SIGKILL) and comes back in the middle of a 1000-request run. The server reconnects and
//! resumes consuming; the requester reconnects and resends whatever is unanswered; the server answers repeats
//! with the replies it already made. The run ends with exactly one signed reply per request.
//!
//! This test restarts the shared test broker, so testenv/test.sh runs it on its own, after the other tests.

use crate::support::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_run_every_request_answered_once() {
    let env = Env::load();
    let queue = unique("restart");
    declare_durable_request_queue(&env, &queue);
    let server = Server::start(&server_config(&env, &queue, ""));
    let n = 1000;
    let (cfg, task, requests) = container_requests(&env, &queue, n, env.key_ed25519());
    let run = BackgroundRun::start(connector(&env, "restart-requester"), &cfg, &task, &requests);
    let answered_before = run.wait_for_replies(200, || server.log_digest()).await;
    let outage = tokio::task::spawn_blocking({
        let env = Env::load();
        move || restart_broker(&env, Duration::from_secs(2))
    })
    .await
    .unwrap();
    let (ex, elapsed, progress) = run.finish().await;
    assert_each_answered_once(&ex, &progress, &requests, || server.log_digest());
    // The signatures are over the claims sent (a sample, through gpg).
    for r in requests.iter().step_by(97) {
        let msg = &ex.replies[&r.id].0["msg"];
        let sig = unbase64(msg["signed_claim"].as_str().unwrap());
        assert_eq!(
            gpg_payload(&env, &sig),
            unbase64(r.body["claim_file"].as_str().unwrap())
        );
    }
    let metrics = server.scrape();
    let reconnects = metric_sum(&metrics, "signbus_broker_connections_total", &[]);
    let replayed = metric_sum(&metrics, "signbus_replayed_replies_total", &[]);
    assert!(reconnects >= 2.0, "the server reconnected: {reconnects}");
    println!(
        "broker restart: {n} requests, {answered_before} answered before the kill, broker unavailable for \
         {:.1} s, run took {:.1} s; server connections {reconnects}, repeats answered from the reply cache \
         {replayed}; {} replies, 0 duplicates, 0 errors",
        outage.as_secs_f64(),
        elapsed.as_secs_f64(),
        ex.replies.len()
    );
    drop(server);
    delete_request_queue(&env, &queue);
}
