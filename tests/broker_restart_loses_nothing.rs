//! The broker dies (SIGKILL) and comes back in the middle of a 1000-request run. The server reconnects and
//! resumes consuming; the requester reconnects and resends whatever is unanswered; the server answers repeats
//! with the replies it already made. The run ends with exactly one signed reply per request.
//!
//! This test restarts the shared test broker, so testenv/test.sh runs it on its own, after the other tests.

mod common;

use common::*;
use signbus::requester::{self, Progress};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts replies as they arrive.
#[derive(Default)]
struct Count {
    sent: AtomicUsize,
    replied: AtomicUsize,
}

impl Progress for Count {
    fn sent(&self) {
        self.sent.fetch_add(1, Ordering::SeqCst);
    }
    fn replied(&self, _ok: bool) {
        self.replied.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_run_every_request_answered_once() {
    let env = Env::load();
    let queue = unique("restart");
    declare_durable_request_queue(&env, &queue);
    let server = Server::start(&server_config(&env, &queue, ""));
    let n = 1000;
    let (cfg, task, requests) = container_requests(&env, &queue, n, env.key_ed25519());
    let vars = requester::template_vars(&cfg, "tester", &task, Some("tester"));
    let listen = requester::format_address(&cfg.topic_listen_to, &vars).unwrap();
    let retry = requester::Retry::from_config(&cfg);
    let progress = Arc::new(Count::default());

    let started = Instant::now();
    let run = {
        let (requests, progress, connect) = (
            requests.clone(),
            progress.clone(),
            connector(&env, "restart-requester"),
        );
        tokio::spawn(async move {
            requester::send_and_receive_with_progress(
                &connect,
                &requests,
                &listen,
                "request_id",
                retry,
                progress.as_ref(),
            )
            .await
        })
    };
    while progress.replied.load(Ordering::SeqCst) < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} replies before the restart\n{}",
            progress.replied.load(Ordering::SeqCst),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered_before = progress.replied.load(Ordering::SeqCst);
    let outage = tokio::task::spawn_blocking({
        let env = Env::load();
        move || restart_broker(&env, Duration::from_secs(2))
    })
    .await
    .unwrap();
    let ex = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the run ends")
        .unwrap();
    let elapsed = started.elapsed();

    assert_eq!(ex.error, None, "{}", server.logs());
    assert_eq!(ex.replies.len(), n, "one reply per request");
    assert_eq!(
        progress.replied.load(Ordering::SeqCst),
        n,
        "no duplicate counted"
    );
    assert_eq!(
        progress.sent.load(Ordering::SeqCst),
        n,
        "resends are not new requests"
    );
    for r in &requests {
        let (doc, _) = ex.replies.get(&r.id).expect("every request answered");
        let msg = &doc["msg"];
        assert_eq!(msg["errors"], serde_json::json!([]), "{msg}");
        assert_eq!(msg["claim_file"], r.body["claim_file"]);
    }
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
