//! SIGKILL in the middle of a run: nothing the killed server held was acknowledged, so the broker redelivers
//! its unacknowledged requests to a second server and every request is answered (some perhaps twice: the
//! requester de-duplicates by request id). The proof of redelivery is in the logs: requests the killed server
//! had received but not answered when it died are answered by the second server.

use crate::support::*;
use serde_json::Value;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_redelivers_every_unacked_request() {
    let (first_logs, bed) = every_request_answered_across_a_stop("kill", "", 300, |mut server| {
        unsafe_kill(server.child.id(), "KILL");
        let status = server.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        std::thread::sleep(std::time::Duration::from_millis(200)); // the log pipe drains
        server.logs()
    })
    .await;
    let ids = |logs: &str, message: &str| -> HashSet<String> {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == message)
            .filter_map(|v| v["span"]["request_id"].as_str().map(str::to_owned))
            .collect()
    };
    let received = ids(&first_logs, "received");
    let replied = ids(&first_logs, "replied");
    let held: HashSet<&String> = received.difference(&replied).collect();
    assert!(
        !received.is_empty() && !held.is_empty(),
        "the killed server held no unanswered request ({} received, {} replied): nothing to redeliver",
        received.len(),
        replied.len()
    );
    let second = ids(&bed.logs(), "replied");
    let missing: Vec<_> = held.iter().filter(|id| !second.contains(**id)).collect();
    assert!(
        missing.is_empty(),
        "held by the killed server and never answered by the second: {missing:?}"
    );
    println!(
        "kill: the killed server held {} requests unanswered; the broker redelivered each to the second server, \
         which answered it",
        held.len()
    );
}
