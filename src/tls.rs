//! TLS settings (rustls) for every TLS connection signbus makes: which CAs to trust and which client
//! certificate to present.
//!
//! Both come from PEM files, as pubtools-sign's `messaging_ca_cert` and `messaging_cert_key` (certificate and key
//! in one file). Without a CA file the system bundle (`/etc/ssl/certs/ca-certificates.crt`, what containers/image
//! and gpg's tools trust too) is trusted — never a bundle compiled into the binary. One [`client_config`] serves
//! broker connections over both protocols (AMQP 1.0 `amqps://`, fe2o3 over tokio-rustls; AMQP 0-9-1
//! `amqps091://`, lapin) and https lookaside stores (`verify`). This module only builds TLS settings and explains
//! TLS failures; it never opens a connection of its own or reads configuration itself.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The system CA bundle on Debian and its derivatives.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS settings for `amqps://` and `amqps091://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of the CAs to trust (default: the system bundle).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// PEM file holding the client certificate (chain) and its private key, for brokers that check clients.
    #[serde(default)]
    pub cert_key: Option<PathBuf>,
}

/// Why TLS settings could not be built, or why a TLS connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA bundle could not be read or holds something that is not a usable certificate.
    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// The client certificate file could not be read, holds no certificate, or its key does not fit.
    #[error("client certificate {}: {reason}", path.display())]
    ClientCert { path: PathBuf, reason: String },
    /// The client certificate file holds no usable private key.
    #[error("client key {}: {reason}", path.display())]
    ClientKey { path: PathBuf, reason: String },
    /// The broker's host name cannot be checked against a certificate.
    #[error("TLS server name {host:?}: {reason}")]
    ServerName { host: String, reason: String },
    /// rustls refused the protocol settings.
    #[error("TLS settings: {0}")]
    Settings(String),
    /// The handshake failed on our side (e.g. the broker's certificate is not signed by a trusted CA, or has
    /// another name) or the broker aborted it.
    #[error("TLS handshake with {host}: {reason}")]
    Handshake { host: String, reason: String },
    /// The broker ended the connection with a TLS alert right after the handshake: with TLS 1.3 this is how a
    /// broker refuses the client certificate (missing, expired, or signed by a CA it does not trust).
    #[error(
        "TLS: the broker {host} refused the connection with alert {alert:?}: {}",
        alert_meaning(*alert)
    )]
    RefusedByBroker {
        host: String,
        alert: rustls::AlertDescription,
    },
}

fn alert_meaning(alert: rustls::AlertDescription) -> &'static str {
    use rustls::AlertDescription as A;
    match alert {
        A::CertificateRequired => {
            "it requires a client certificate (set messaging_cert_key / broker.tls.cert_key)"
        }
        A::CertificateExpired => "our client certificate has expired",
        A::UnknownCA => "our client certificate is not signed by a CA the broker trusts",
        A::BadCertificate | A::UnsupportedCertificate | A::CertificateRevoked | A::CertificateUnknown => {
            "it does not accept our client certificate"
        }
        A::HandshakeFailure => {
            "the handshake failed on its side (with TLS 1.2: often a missing client certificate; else no common \
             TLS version or cipher)"
        }
        _ => "see the broker's log",
    }
}

/// The rustls client settings for `cfg`: trust `cfg.ca_cert` (or the system bundle) and present `cfg.cert_key`
/// when given. TLS 1.2 and 1.3 with the ring provider.
pub fn client_config(cfg: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let ca_path = cfg
        .ca_cert
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let ca_err = |reason: String| TlsError::CaFile {
        path: ca_path.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca_path).map_err(|e| ca_err(e.to_string()))? {
        let cert = cert.map_err(|e| ca_err(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_err("holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &cfg.cert_key {
        Some(path) => {
            let (chain, key) = client_identity(path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::ClientCert {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The certificate chain and private key of a `messaging_cert_key`-style PEM file.
fn client_identity(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_err = |reason: String| TlsError::ClientCert {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::ClientKey {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((chain, key))
}

/// A tokio connector with [`client_config`]`(cfg)` (AMQP 1.0).
pub fn connector(cfg: &TlsConfig) -> Result<tokio_rustls::TlsConnector, TlsError> {
    Ok(tokio_rustls::TlsConnector::from(client_config(cfg)?))
}

/// The name to check the broker's certificate against.
pub fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, TlsError> {
    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| TlsError::ServerName {
        host: host.to_owned(),
        reason: e.to_string(),
    })
}

/// The rustls error inside an I/O error from a TLS stream, if that is what it is.
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Explains an I/O error a TLS stream to `host` returned after its handshake: a TLS alert from the broker
/// becomes [`TlsError::RefusedByBroker`]; anything else is not a TLS refusal (`None`).
pub fn refusal(host: &str, e: &std::io::Error) -> Option<TlsError> {
    match rustls_error(e)? {
        rustls::Error::AlertReceived(alert) => Some(TlsError::RefusedByBroker {
            host: host.to_owned(),
            alert: *alert,
        }),
        _ => None,
    }
}

/// A failed handshake with `host` as a [`TlsError`]: an alert from the broker (its refusal of our client
/// certificate, with TLS 1.2) becomes [`TlsError::RefusedByBroker`], anything else [`TlsError::Handshake`].
pub fn handshake_error(host: &str, e: &std::io::Error) -> TlsError {
    refusal(host, e).unwrap_or_else(|| TlsError::Handshake {
        host: host.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_from_the_broker_are_refusals() {
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired),
        );
        let e = handshake_error("broker", &alert);
        assert!(matches!(e, TlsError::RefusedByBroker { .. }), "{e:?}");
        assert!(e.to_string().contains("expired"), "{e}");
        let other = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = handshake_error("broker", &other);
        assert!(matches!(e, TlsError::Handshake { .. }), "{e:?}");
        assert!(refusal("broker", &std::io::Error::other("reset")).is_none());
    }

    #[test]
    fn missing_files_are_named() {
        let cfg = TlsConfig {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            cert_key: None,
        };
        let e = client_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
