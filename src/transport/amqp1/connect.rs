//! Connecting over AMQP 1.0: TCP (TCP_NODELAY), TLS for `amqps://`, the SASL layer, the AMQP open with its
//! idle time-out, the session and the anonymous senders, each step time-boxed; one broker after the other
//! through [`failover::first_reachable`].
//!
//! Owns how one `Engine` comes to life. It never publishes or consumes, and never logs a URL unredacted.

use super::{publisher, Engine, Links};
use crate::transport::broker_url::{bad_url, BrokerUrl, Scheme};
use crate::transport::failover::{self, CONNECT_TIMEOUT};
use crate::transport::{BrokerConfig, Sasl, TransportError};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::{Connection, Session};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// How long one broker of the failover list gets: the sum of the limits of the five steps (TCP, TLS, SASL
/// EXTERNAL, AMQP open, session and senders), each [`CONNECT_TIMEOUT`], so a slow step's own error (which
/// names the step) comes first.
const ATTEMPT_LIMIT: Duration = CONNECT_TIMEOUT.saturating_mul(5);

/// Opens an AMQP connection (SASL as `profile` says) over an established stream, within the connect timeout.
/// `heartbeat_secs` > 0 sets the idle time-out: we advertise half of twice the heartbeat (the broker must send
/// something at least every heartbeat) and drop the connection after twice the heartbeat of silence.
async fn open<Io>(
    container_id: &str,
    host: &str,
    profile: Option<SaslProfile>,
    heartbeat_secs: u16,
    stream: Io,
) -> Result<ConnectionHandle<()>, String>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let mut builder = Connection::builder()
        .container_id(container_id)
        .hostname(host);
    if heartbeat_secs > 0 {
        builder = builder.idle_time_out(u32::from(heartbeat_secs) * 2000);
    }
    let opening = async {
        match profile {
            Some(p) => builder.sasl_profile(p).open_with_stream(stream).await,
            None => builder.open_with_stream(stream).await,
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, opening)
        .await
        .map_err(|_| format!("AMQP open timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| match &e {
            // With TLS 1.3 a broker refuses our client certificate only after the handshake: the first read fails.
            fe2o3_amqp::connection::OpenError::Io(io) => match crate::tls::refusal(host, io) {
                Some(refused) => refused.to_string(),
                None => format!("AMQP open: {e}"),
            },
            _ => format!("AMQP open: {e}"),
        })
}

impl Engine {
    /// Connects to the first URL in `cfg.urls` that accepts a connection, session and anonymous senders.
    pub async fn connect(cfg: &BrokerConfig, container_id: &str) -> Result<Self, TransportError> {
        let walk =
            failover::first_reachable(&cfg.urls, "AMQP 1.0", ATTEMPT_LIMIT, |url| async move {
                let parsed = BrokerUrl::parse(url)?;
                if parsed.scheme.names_amqp091() {
                    return Err(bad_url(url, "scheme must be amqp or amqps").into());
                }
                Ok(Self::connect_one(cfg, &parsed, container_id).await?)
            });
        let (mut engine, url) = walk.await?;
        engine.url = url;
        Ok(engine)
    }

    async fn connect_one(
        cfg: &BrokerConfig,
        url: &BrokerUrl,
        container_id: &str,
    ) -> Result<Self, String> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| format!("TCP connect timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("TCP connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let profile = match (&url.credentials, &cfg.sasl) {
            (Some((u, p)), _) => Some(SaslProfile::Plain {
                username: u.clone(),
                password: p.clone(),
            }),
            (None, Sasl::Plain) => Some(SaslProfile::Plain {
                username: cfg.username.clone().unwrap_or_default(),
                password: cfg.password.clone().unwrap_or_default(),
            }),
            (None, Sasl::Anonymous) => Some(SaslProfile::Anonymous),
            (None, Sasl::None | Sasl::External) => None,
        };
        let tls = url.scheme == Scheme::Amqps;
        let external = cfg.sasl_external(url.credentials.is_some(), tls, "amqps")?;
        let mut connection = if tls {
            let connector = crate::tls::connector(&cfg.tls).map_err(|e| e.to_string())?;
            let name = crate::tls::server_name(&url.host).map_err(|e| e.to_string())?;
            let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
                .await
                .map_err(|_| format!("TLS handshake timed out after {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| crate::tls::handshake_error(&url.host, &e).to_string())?;
            if external {
                let sasl = super::sasl::external(&mut tls, &url.host);
                tokio::time::timeout(CONNECT_TIMEOUT, sasl)
                    .await
                    .map_err(|_| format!("SASL EXTERNAL timed out after {CONNECT_TIMEOUT:?}"))??;
            }
            open(container_id, &url.host, profile, cfg.heartbeat_secs, tls).await?
        } else {
            open(container_id, &url.host, profile, cfg.heartbeat_secs, stream).await?
        };
        // The session and the anonymous senders, bounded like the rest of connecting.
        let links = async {
            let mut session = Session::begin(&mut connection)
                .await
                .map_err(|e| format!("AMQP begin session: {e}"))?;
            let senders = publisher::attach_senders(&mut session, container_id).await?;
            Ok::<_, String>((session, senders))
        };
        let (session, senders) = tokio::time::timeout(CONNECT_TIMEOUT, links)
            .await
            .map_err(|_| {
                format!("AMQP session and senders not attached within {CONNECT_TIMEOUT:?}")
            })??;
        Ok(Engine {
            link: Mutex::new(Links {
                connection,
                session,
                receiver_sessions: Vec::new(),
                next_link: 0,
            }),
            senders,
            next_sender: std::sync::atomic::AtomicUsize::new(0),
            publish_timeout: Duration::from_secs(cfg.publish_timeout_secs.max(1)),
            url: String::new(),
        })
    }
}
