//! Opening one AMQP 0-9-1 connection with lapin: the URI lapin understands, heartbeats, SASL EXTERNAL, and TLS
//! for `amqps091://` through lapin's connector hook (signbus opens the TCP stream and wraps it with rustls using
//! the same [`crate::tls::client_config`] as AMQP 1.0, CA bundle and client certificate).
//!
//! Owns one attempt at one URL; walking the failover list is `transport/failover.rs`. A TLS URL must never be
//! spoken to in plaintext, and errors must never carry a password.

use crate::transport::broker_url::{without_091, BrokerUrl};
use crate::transport::failover::CONNECT_TIMEOUT;
use crate::transport::{BrokerConfig, Sasl};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{AsyncTcpStream, Connection, ConnectionProperties};
use std::io;
use std::net::SocketAddr;

/// The lapin URI for a signbus broker URL: `amqp091://` / `amqps091://` become `amqp://` / `amqps://`, and the
/// default vhost is filled in.
pub fn lapin_uri(url: &str, cfg: &BrokerConfig) -> String {
    let mut uri = without_091(url);
    if let (Ok(mut u), Some(user)) = (url::Url::parse(&uri), cfg.username.as_deref()) {
        if u.username().is_empty() && cfg.sasl == Sasl::Plain {
            let _ = u.set_username(user);
            let _ = u.set_password(cfg.password.as_deref());
            uri = u.to_string();
        }
    }
    uri
}

/// Opens an AMQP 0-9-1 connection to `url`: plain TCP for `amqp091://`, TLS with [`crate::tls::client_config`]
/// for `amqps091://` (never plaintext). Both go through lapin's own connection machinery (heartbeats, confirms).
pub(super) async fn open(
    url: &str,
    cfg: &BrokerConfig,
    container_id: &str,
) -> Result<Connection, String> {
    let props = ConnectionProperties::default().with_connection_name(container_id.into());
    let mut uri: AMQPUri = lapin_uri(url, cfg)
        .parse()
        .map_err(|e| format!("invalid broker URL: {e}"))?;
    // Heartbeats: the broker and we each send one every heartbeat/2; lapin drops the connection after twice the
    // heartbeat without hearing from the broker.
    uri.query.heartbeat = Some(cfg.heartbeat_secs);
    let named_user = BrokerUrl::parse(url).is_ok_and(|u| u.credentials.is_some());
    if cfg.sasl_external(named_user, uri.scheme == AMQPScheme::AMQPS, "amqps091")? {
        uri.query.auth_mechanism = Some(lapin::uri::SASLMechanism::External);
    }
    if uri.scheme != AMQPScheme::AMQPS {
        return Connection::connect_uri(uri, props)
            .await
            .map_err(|e| e.to_string());
    }
    let host = uri.authority.host.clone();
    let connector = tcp_stream::RustlsConnector::from(
        crate::tls::client_config(&cfg.tls).map_err(|e| e.to_string())?,
    );
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    // lapin calls this on its I/O thread (inside the tokio runtime) and drives whatever stream it returns.
    let connect = async move |uri: AMQPUri, runtime| {
        let (host, port) = (uri.authority.host.as_str(), uri.authority.port);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("resolve {host}:{port}: {e}")))?
            .collect();
        let tcp = AsyncTcpStream::connect(&runtime, addrs)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TCP connect {host}:{port}: {e}")))?;
        let handshake = tokio::time::timeout(CONNECT_TIMEOUT, tcp.into_rustls(&connector, host));
        let tls = handshake
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake with {host} timed out after {CONNECT_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| io::Error::other(crate::tls::handshake_error(host, &e)))?;
        Ok::<_, lapin::Error>(tls)
    };
    Connection::connector(uri, runtime, connect, props)
        .await
        .map_err(|e| describe_tls_failure(&host, &e))
}

/// A lapin error on a TLS connection, in words: our own [`crate::tls::TlsError`] as it is, a TLS alert the broker
/// sent after the handshake as a refusal, anything else as lapin says it.
fn describe_tls_failure(host: &str, e: &lapin::Error) -> String {
    if let lapin::ErrorKind::IOError(io) = e.kind() {
        if let Some(ours) = io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<crate::tls::TlsError>())
        {
            return ours.to_string();
        }
        if let Some(refused) = crate::tls::refusal(host, io) {
            return refused.to_string();
        }
    }
    e.to_string()
}
