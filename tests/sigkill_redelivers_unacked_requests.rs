//! SIGKILL in the middle of a run: nothing the killed server held was acknowledged, so the broker redelivers
//! its unacknowledged requests to a second server and every request is answered (some perhaps twice: the
//! requester de-duplicates by request id).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_redelivers_every_unacked_request() {
    every_request_answered_across_a_stop("kill", "", 300, |mut server| {
        unsafe_kill(server.child.id(), "KILL");
        let status = server.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    })
    .await;
}
