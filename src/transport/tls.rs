//! TLS for broker connections (rustls): which CAs to trust and which client certificate to present.
//!
//! Both come from PEM files, as pubtools-sign's `messaging_ca_cert` and `messaging_cert_key` (certificate and key
//! in one file). Without a CA file the system bundle (`/etc/ssl/certs/ca-certificates.crt`) is trusted. This
//! module only builds the connector; it never chooses a broker or reads configuration itself.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The system CA bundle on Debian and its derivatives.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS settings for `amqps://` URLs.
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

fn read_err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// A connector trusting `cfg.ca_cert` (or the system bundle) and presenting `cfg.cert_key` when given.
pub fn connector(cfg: &TlsConfig) -> Result<tokio_rustls::TlsConnector, String> {
    let ca_path = cfg
        .ca_cert
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&ca_path).map_err(|e| read_err(&ca_path, "CA file", e))?;
    for cert in certs {
        let cert = cert.map_err(|e| read_err(&ca_path, "CA file", e))?;
        roots
            .add(cert)
            .map_err(|e| read_err(&ca_path, "CA certificate in", e))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "CA file {} holds no certificate",
            ca_path.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &cfg.cert_key {
        Some(path) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| read_err(path, "client certificate", e))?
                .collect::<Result<_, _>>()
                .map_err(|e| read_err(path, "client certificate", e))?;
            if chain.is_empty() {
                return Err(format!("{} holds no certificate", path.display()));
            }
            let key =
                PrivateKeyDer::from_pem_file(path).map_err(|e| read_err(path, "client key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| read_err(path, "client certificate", e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name to check the broker's certificate against.
pub fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("TLS server name {host:?}: {e}"))
}
