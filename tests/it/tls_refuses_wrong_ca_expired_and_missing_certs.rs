//! TLS refusals over both protocols (AMQP 1.0 `amqps://`, AMQP 0-9-1 `amqps091://`), against the testenv broker,
//! whose TLS listener requires a client certificate signed by the testenv CA:
//! - a broker whose certificate the trusted CA did not sign is refused by the client, at the handshake;
//! - an expired client certificate, a client certificate from another CA, and no client certificate at all are
//!   refused by the broker.
//!
//! Each refusal is an error that says which of these happened, within a bounded time (never a hang). Every test
//! first connects with the right CA and certificate, so a missing broker fails the test instead of passing it
//! as a "refusal".

use crate::support::*;
use signbus::transport::tls::TlsConfig;
use signbus::transport::{self, BrokerConfig, Protocol, Sasl, Transport};
use std::time::{Duration, Instant};

/// Longer than any connect timeout inside signbus (10 s per step): a refusal must come well before.
const BOUND: Duration = Duration::from_secs(30);

/// The testenv's TLS URL in `protocol`'s scheme.
fn tls_url(env: &Env, protocol: Protocol) -> String {
    let amqps = env.get("SIGNBUS_AMQPS_URL");
    match protocol {
        Protocol::Amqp091 => amqps.replacen("amqps://", "amqps091://", 1),
        _ => amqps.to_owned(),
    }
}

/// Connects over TLS trusting `ca` and presenting `cert_key`; closes again on success. Panics if it takes longer
/// than [`BOUND`].
async fn attempt(
    env: &Env,
    protocol: Protocol,
    ca: &str,
    cert_key: Option<&str>,
) -> Result<(), String> {
    let cfg = BrokerConfig {
        urls: vec![tls_url(env, protocol)],
        protocol,
        sasl: Sasl::Anonymous,
        tls: TlsConfig {
            ca_cert: Some(ca.into()),
            cert_key: cert_key.map(Into::into),
        },
        ..Default::default()
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(BOUND, transport::connect(&cfg, &unique("tls-refusal")))
        .await
        .unwrap_or_else(|_| panic!("{protocol:?}: connecting did not finish within {BOUND:?}"));
    eprintln!(
        "{protocol:?} ca={ca} cert_key={cert_key:?}: {:?} after {:?}",
        outcome
            .as_ref()
            .map(|_| "connected")
            .map_err(|e| e.to_string()),
        started.elapsed()
    );
    match outcome {
        Ok(broker) => {
            broker.close().await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The right CA and client certificate connect: the broker is there and speaks TLS.
async fn control(env: &Env, protocol: Protocol) {
    attempt(
        env,
        protocol,
        env.get("SIGNBUS_TLS_CA"),
        Some(env.get("SIGNBUS_TLS_CLIENT")),
    )
    .await
    .unwrap_or_else(|e| panic!("{protocol:?}: the right CA and certificate must connect: {e}"));
}

async fn client_refuses_broker_signed_by_another_ca(protocol: Protocol) {
    let env = Env::load();
    control(&env, protocol).await;
    let e = attempt(
        &env,
        protocol,
        env.get("SIGNBUS_TLS_OTHER_CA"),
        Some(env.get("SIGNBUS_TLS_CLIENT")),
    )
    .await
    .expect_err("a broker certificate the trusted CA did not sign must be refused");
    assert!(
        e.contains("TLS handshake with localhost") && e.contains("invalid peer certificate"),
        "{e}"
    );
}

async fn broker_refuses(protocol: Protocol, cert_key: Option<&str>, alert: &str, meaning: &str) {
    let env = Env::load();
    control(&env, protocol).await;
    let cert_key = cert_key.map(|var| env.get(var).to_owned());
    let e = attempt(
        &env,
        protocol,
        env.get("SIGNBUS_TLS_CA"),
        cert_key.as_deref(),
    )
    .await
    .expect_err("the broker must refuse this client");
    assert!(
        e.contains("refused the connection with alert") && e.contains(alert) && e.contains(meaning),
        "{e}"
    );
}

#[tokio::test]
async fn amqp1_client_refuses_a_broker_signed_by_another_ca() {
    client_refuses_broker_signed_by_another_ca(Protocol::Amqp1).await;
}

#[tokio::test]
async fn amqp091_client_refuses_a_broker_signed_by_another_ca() {
    client_refuses_broker_signed_by_another_ca(Protocol::Amqp091).await;
}

#[tokio::test]
async fn amqp1_broker_refuses_an_expired_client_certificate() {
    broker_refuses(
        Protocol::Amqp1,
        Some("SIGNBUS_TLS_CLIENT_EXPIRED"),
        "CertificateExpired",
        "expired",
    )
    .await;
}

#[tokio::test]
async fn amqp091_broker_refuses_an_expired_client_certificate() {
    broker_refuses(
        Protocol::Amqp091,
        Some("SIGNBUS_TLS_CLIENT_EXPIRED"),
        "CertificateExpired",
        "expired",
    )
    .await;
}

#[tokio::test]
async fn amqp1_broker_refuses_a_connection_without_client_certificate() {
    broker_refuses(
        Protocol::Amqp1,
        None,
        "CertificateRequired",
        "requires a client certificate",
    )
    .await;
}

#[tokio::test]
async fn amqp091_broker_refuses_a_connection_without_client_certificate() {
    broker_refuses(
        Protocol::Amqp091,
        None,
        "CertificateRequired",
        "requires a client certificate",
    )
    .await;
}

#[tokio::test]
async fn amqp1_broker_refuses_a_client_certificate_from_another_ca() {
    broker_refuses(
        Protocol::Amqp1,
        Some("SIGNBUS_TLS_OTHER_CLIENT"),
        "UnknownCA",
        "not signed by a CA the broker trusts",
    )
    .await;
}

#[tokio::test]
async fn amqp091_broker_refuses_a_client_certificate_from_another_ca() {
    broker_refuses(
        Protocol::Amqp091,
        Some("SIGNBUS_TLS_OTHER_CLIENT"),
        "UnknownCA",
        "not signed by a CA the broker trusts",
    )
    .await;
}
