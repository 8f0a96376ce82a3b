//! SIGTERM in the middle of a run: the server stops taking requests, finishes and replies to those in flight,
//! releases the rest to the broker and exits 0; a second server answers everything that is left. No request is
//! lost.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_loses_no_request() {
    every_request_answered_across_a_stop("drain", "  grace_period_secs: 20", 500, |mut server| {
        let status = server.stop();
        let logs = server.logs();
        assert!(
            status.success(),
            "first server exited with {status}: {logs}"
        );
        assert!(
            logs.contains("shutdown requested") && logs.contains("\"stopped\""),
            "{logs}"
        );
    })
    .await;
}
