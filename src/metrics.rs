//! The server's Prometheus metrics: one [`Metrics`] value owning its own `prometheus::Registry` and every handle.
//!
//! The server gets a `Metrics` passed in explicitly (there is no global registry) and bumps counters at the
//! points it owns; the operations listener renders it in the text exposition format. Labels are always bounded
//! sets: request types, configured key labels (or `unknown`), outcome classes and reject reasons. This module
//! must never label anything with request ids, repositories, requesters or free text, and does no I/O.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Reads the signer's (workers, busy) at scrape time.
pub type SignerSampler = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

/// Every metric the server exports, registered in a registry of its own.
pub struct Metrics {
    registry: Registry,
    /// `signbus_requests_received_total{type}`: deliveries taken from the broker.
    pub requests_received: IntCounterVec,
    /// `signbus_requests_total{type,key,outcome}`: deliveries settled (or released), by outcome class.
    pub requests: IntCounterVec,
    /// `signbus_signing_seconds`: time a signing thread (or, for cosign, the handler) spent on one signature.
    pub signing_seconds: Histogram,
    /// `signbus_signing_queue_seconds`: time a signature waited for a signing thread.
    pub signing_queue_seconds: Histogram,
    /// `signbus_request_seconds`: receipt to settlement.
    pub request_seconds: Histogram,
    /// `signbus_in_flight`: deliveries being processed.
    pub in_flight: IntGauge,
    /// `signbus_signer_workers`: signing threads.
    pub signer_workers: IntGauge,
    /// `signbus_signer_busy`: signing threads signing right now.
    pub signer_busy: IntGauge,
    /// `signbus_broker_connections_total`: successful (re)connections to the broker.
    pub broker_connections: IntCounter,
    /// `signbus_dead_lettered_total{reason}`: requests rejected for the broker to dead-letter.
    pub dead_lettered: IntCounterVec,
    /// `signbus_replayed_replies_total`: redelivered or resent requests answered with the reply already made.
    pub replayed: IntCounter,
    /// `signbus_sign_retries_total`: signatures tried again after a signer failure.
    pub sign_retries: IntCounter,
    /// `signbus_task_panics_total`: request tasks that panicked (their requests were released).
    pub task_panics: IntCounter,
    /// `signbus_ready`: 1 when `/readyz` would answer 200, else 0 (set by the operations listener at scrape).
    pub ready: IntGauge,
    sampler: OnceLock<SignerSampler>,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// A fresh registry with every metric registered and `signbus_build_info{version}` set to 1.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = Histogram::with_opts(opts).expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let requests_received = counter_vec(
            "signbus_requests_received_total",
            "Requests taken from the broker, by request type.",
            &["type"],
        );
        let requests = counter_vec(
            "signbus_requests_total",
            "Requests finished, by type, configured key and outcome (signed or an error class).",
            &["type", "key", "outcome"],
        );
        let signing_seconds = histogram(
            "signbus_signing_seconds",
            "Time spent making one signature (not counting the wait for a signing thread).",
        );
        let signing_queue_seconds = histogram(
            "signbus_signing_queue_seconds",
            "Time one signature waited for a signing thread.",
        );
        let request_seconds = histogram(
            "signbus_request_seconds",
            "Time from receiving a request to settling it with the broker.",
        );
        let in_flight = gauge("signbus_in_flight", "Requests being processed now.");
        let signer_workers = gauge("signbus_signer_workers", "Signing worker threads.");
        let signer_busy = gauge("signbus_signer_busy", "Signing workers signing now.");
        let ready = gauge(
            "signbus_ready",
            "1 when the server is ready (consuming, signer usable, not stopping), as /readyz; else 0.",
        );
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let broker_connections = counter(
            "signbus_broker_connections_total",
            "Successful connections (and reconnections) to the broker.",
        );
        let replayed = counter(
            "signbus_replayed_replies_total",
            "Redelivered or resent requests answered with the reply already made for them.",
        );
        let sign_retries = counter(
            "signbus_sign_retries_total",
            "Signatures tried again after a signer failure.",
        );
        let task_panics = counter(
            "signbus_task_panics_total",
            "Request tasks that panicked; their requests went back to the broker.",
        );
        let dead_lettered = counter_vec(
            "signbus_dead_lettered_total",
            "Requests rejected for the broker to dead-letter, by reason.",
            &["reason"],
        );
        let build_info = IntGaugeVec::new(
            Opts::new("signbus_build_info", "Always 1; the version is a label."),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            registry,
            requests_received,
            requests,
            signing_seconds,
            signing_queue_seconds,
            request_seconds,
            in_flight,
            signer_workers,
            signer_busy,
            broker_connections,
            dead_lettered,
            replayed,
            sign_retries,
            ready,
            task_panics,
            sampler: OnceLock::new(),
        }
    }

    /// Sets where `signbus_signer_workers` and `signbus_signer_busy` are read from at each scrape.
    /// Only the first call has an effect.
    pub fn set_signer_sampler(&self, sampler: SignerSampler) {
        let _ = self.sampler.set(sampler);
    }

    /// The Prometheus text exposition of every metric, sampling the signer first.
    pub fn render(&self) -> String {
        if let Some(sample) = self.sampler.get() {
            let (workers, busy) = sample();
            self.signer_workers.set(workers as i64);
            self.signer_busy.set(busy as i64);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_build_info() {
        let m = Metrics::new();
        m.requests_received
            .with_label_values(&["container_signature"])
            .inc();
        m.requests
            .with_label_values(&["container_signature", "rsa", "signed"])
            .inc();
        m.dead_lettered.with_label_values(&["undecodable"]).inc();
        m.set_signer_sampler(Box::new(|| (4, 1)));
        let text = m.render();
        for name in [
            "signbus_requests_received_total{type=\"container_signature\"} 1",
            "signbus_requests_total{key=\"rsa\",outcome=\"signed\",type=\"container_signature\"} 1",
            "signbus_signing_seconds_count 0",
            "signbus_signing_queue_seconds_count 0",
            "signbus_request_seconds_count 0",
            "signbus_in_flight 0",
            "signbus_signer_workers 4",
            "signbus_signer_busy 1",
            "signbus_ready 0",
            "signbus_broker_connections_total 0",
            "signbus_dead_lettered_total{reason=\"undecodable\"} 1",
            &format!(
                "signbus_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.broker_connections.inc();
        assert!(a.render().contains("signbus_broker_connections_total 1"));
        assert!(b.render().contains("signbus_broker_connections_total 0"));
    }
}
