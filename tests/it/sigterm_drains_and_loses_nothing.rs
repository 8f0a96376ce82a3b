//! SIGTERM in the middle of a 500-request run: the server stops taking requests, finishes and replies to those
//! in flight, releases the rest to the broker and exits 0; a second server answers everything that is left. No
//! request is lost. The first server's `/metrics`, scraped just before the SIGTERM, is consistent (received ≥
//! finished, nothing failed), and the two servers together signed at least every request.

use crate::support::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_loses_no_request() {
    let n = 500;
    let (first_replied, bed) =
        every_request_answered_across_a_stop("drain", "  grace_period_secs: 20", n, |mut first| {
            // Counters so far are consistent: every finished request was received first, none failed.
            let text = first.scrape();
            let m = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);
            let received = m("signbus_requests_received_total", &[]);
            let finished = m("signbus_requests_total", &[]);
            let signed = m("signbus_requests_total", &[("outcome", "signed")]);
            assert!(signed >= 1.0, "{text}");
            assert!(received >= signed, "{text}");
            assert_eq!(finished, signed, "only signed outcomes so far:\n{text}");
            assert!(received >= finished, "{text}");
            assert!(
                m("signbus_in_flight", &[]) <= 8.0,
                "max_in_flight is 8:\n{text}"
            );
            assert_eq!(first.http_get("/readyz").0, 200);
            // Stop the first server mid-run; it must drain and exit cleanly.
            let status = first.stop();
            let logs = first.logs();
            assert!(
                status.success(),
                "first server exited with {status}: {logs}"
            );
            assert!(
                logs.contains("shutdown requested") && logs.contains("\"stopped\""),
                "{logs}"
            );
            logs.lines()
                .filter(|l| l.contains("\"message\":\"replied\""))
                .count()
        })
        .await;
    // Together the two servers signed every request (a request whose settlement was lost may be signed twice).
    let second = bed.server.as_ref().unwrap();
    let started = Instant::now();
    loop {
        let text = second.scrape();
        let signed = metric_sum(&text, "signbus_requests_total", &[("outcome", "signed")]);
        if first_replied as f64 + signed >= n as f64 {
            assert_eq!(metric_sum(&text, "signbus_in_flight", &[]), 0.0, "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "first replied {first_replied}, second signed {signed} of {n}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
