//! SIGTERM in the middle of a 500-request run: the server stops taking requests, finishes and replies to those
//! in flight, releases the rest to the broker and exits 0; a second server answers everything that is left. No
//! request is lost. The first server's `/metrics`, scraped just before the SIGTERM, is consistent (received ≥
//! finished, nothing failed), and the two servers together signed at least every request.

mod common;

use common::*;
use serde_json::Value;
use signbus::requester::{self, config::RequesterConfig, ContainerSignInput};
use signbus::transport::{self, BrokerConfig, OutgoingMessage, Settlement, Transport};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_loses_no_request() {
    let env = Env::load();
    let queue = unique("drain");
    declare_request_queue(&env, &queue);
    let config = server_config(&env, &queue, "  grace_period_secs: 20");
    let config = config.replace("max_in_flight: 64", "max_in_flight: 8");
    let mut first = Some(Server::start(&config));

    let n = 500;
    let cfg =
        RequesterConfig::parse(&client_config(&env, &queue, 30), Path::new("c"), |_| None).unwrap();
    let cfg = cfg.single().unwrap().clone();
    let task = unique("t");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let input = ContainerSignInput {
        digests: vec![digest; n],
        references: (0..n)
            .map(|i| format!("registry.example.com/ns/app:{i}"))
            .collect(),
        signing_keys: vec![env.key_rsa().to_owned()],
        task_id: task.clone(),
        requester: Some("tester".into()),
        ..Default::default()
    };
    let requests = requester::prepare_container(&cfg, "tester", &input).unwrap();
    let conn = transport::connect(
        &BrokerConfig {
            urls: vec![env.amqp_url().into()],
            ..Default::default()
        },
        "drain",
    )
    .await
    .unwrap();
    let mut replies = conn
        .subscribe(&format!("/topic/signbus.reply.tester.{task}"), 500)
        .await
        .unwrap();
    for r in &requests {
        conn.publish(OutgoingMessage {
            address: r.address.clone(),
            body: Value::Object(r.body.clone()).to_string(),
            properties: r.properties.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }

    let mut answered = HashSet::new();
    let mut second: Option<Server> = None;
    let mut first_replied = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} answered",
            answered.len()
        );
        let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(30), replies.next()).await
        else {
            panic!("no reply for 30 s with {} of {n} answered", answered.len());
        };
        let v: Value = serde_json::from_slice(&d.message().body).unwrap();
        d.settle(Settlement::Accept).await.unwrap();
        assert_eq!(v["msg"]["errors"], Value::Array(vec![]), "{v}");
        answered.insert(v["msg"]["request_id"].as_str().unwrap().to_owned());
        if answered.len() == 30 && second.is_none() {
            // Counters so far are consistent: every finished request was received first, none failed.
            let text = first.as_ref().unwrap().scrape();
            let m = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);
            let received = m("signbus_requests_received_total", &[]);
            let finished = m("signbus_requests_total", &[]);
            let signed = m("signbus_requests_total", &[("outcome", "signed")]);
            let in_flight = m("signbus_in_flight", &[]);
            assert!(signed >= 1.0, "{text}");
            assert!(received >= signed, "{text}");
            assert_eq!(finished, signed, "only signed outcomes so far:\n{text}");
            assert!(received >= finished, "{text}");
            assert!(in_flight <= 8.0, "max_in_flight is 8:\n{text}");
            assert_eq!(first.as_ref().unwrap().http_get("/readyz").0, 200);
            // Stop the first server mid-run; it must drain and exit cleanly.
            let mut server = first.take().unwrap();
            let status = tokio::task::spawn_blocking(move || {
                let s = server.stop();
                (s, server.logs())
            })
            .await
            .unwrap();
            assert!(
                status.0.success(),
                "first server exited with {}: {}",
                status.0,
                status.1
            );
            assert!(
                status.1.contains("shutdown requested") && status.1.contains("\"stopped\""),
                "{}",
                status.1
            );
            first_replied = status
                .1
                .lines()
                .filter(|l| l.contains("\"message\":\"replied\""))
                .count();
            second = Some(Server::start(&config));
        }
    }
    assert!(
        second.is_some(),
        "the first server answered everything before it was stopped"
    );
    let ids: HashSet<String> = requests.iter().map(|r| r.id.clone()).collect();
    assert_eq!(answered, ids);
    // Together the two servers signed every request (a request whose settlement was lost may be signed twice).
    let second_server = second.as_ref().unwrap();
    let started = Instant::now();
    loop {
        let text = second_server.scrape();
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
    conn.close().await;
    drop(second);
    delete_request_queue(&env, &queue);
}
