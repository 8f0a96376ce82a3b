//! Broker URLs for both protocols: the four schemes, what a URL says (host, port, credentials, TLS, protocol),
//! and the redacted form every log line and error message shows.
//!
//! `amqp://` / `amqps://` mean AMQP 1.0 (or 0-9-1 when `broker.protocol` says so), `amqp091://` / `amqps091://`
//! AMQP 0-9-1; the `s` means TLS. This module only reads and rewrites strings: it never connects, and it must
//! never let a password reach a log or an error unredacted.

use super::TransportError;

/// A broker URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `amqp://`
    Amqp,
    /// `amqps://` (TLS)
    Amqps,
    /// `amqp091://` (AMQP 0-9-1)
    Amqp091,
    /// `amqps091://` (AMQP 0-9-1 over TLS)
    Amqps091,
}

impl Scheme {
    /// True for the TLS schemes.
    pub fn tls(self) -> bool {
        matches!(self, Scheme::Amqps | Scheme::Amqps091)
    }

    /// True for the schemes that name AMQP 0-9-1.
    pub fn names_amqp091(self) -> bool {
        matches!(self, Scheme::Amqp091 | Scheme::Amqps091)
    }

    fn default_port(self) -> u16 {
        if self.tls() {
            5671
        } else {
            5672
        }
    }
}

/// The parts of a broker URL the transports use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The scheme.
    pub scheme: Scheme,
    /// Host name or address.
    pub host: String,
    /// TCP port (5672 / 5671 by default).
    pub port: u16,
    /// Credentials from the URL (percent-decoded), implying SASL PLAIN.
    pub credentials: Option<(String, String)>,
}

impl BrokerUrl {
    /// Parses `amqp[s][091]://[user:pass@]host[:port][/...]`.
    pub fn parse(s: &str) -> Result<Self, TransportError> {
        let u = url::Url::parse(s).map_err(|e| bad_url(s, &e.to_string()))?;
        let scheme = match u.scheme() {
            "amqp" => Scheme::Amqp,
            "amqps" => Scheme::Amqps,
            "amqp091" => Scheme::Amqp091,
            "amqps091" => Scheme::Amqps091,
            _ => {
                return Err(bad_url(
                    s,
                    "scheme must be amqp, amqps, amqp091 or amqps091",
                ))
            }
        };
        let host = u
            .host_str()
            .ok_or_else(|| bad_url(s, "no host"))?
            .to_owned();
        let credentials = if u.username().is_empty() {
            None
        } else {
            let dec = |x: &str| {
                url::form_urlencoded::parse(x.as_bytes())
                    .map(|(k, v)| format!("{k}{v}"))
                    .collect::<String>()
            };
            Some((dec(u.username()), dec(u.password().unwrap_or(""))))
        };
        Ok(BrokerUrl {
            scheme,
            host,
            port: u.port().unwrap_or(scheme.default_port()),
            credentials,
        })
    }
}

/// A [`TransportError::BadUrl`] for `url` (redacted).
pub fn bad_url(url: &str, reason: &str) -> TransportError {
    TransportError::BadUrl {
        url: redact(url),
        reason: reason.to_owned(),
    }
}

/// True when `url` is written with a scheme that names AMQP 0-9-1 (`amqp091://`, `amqps091://`).
pub fn names_amqp091(url: &str) -> bool {
    url.starts_with("amqp091://") || url.starts_with("amqps091://")
}

/// `url` with the 0-9-1 mark dropped from its scheme (`amqp091://` → `amqp://`, `amqps091://` → `amqps://`):
/// the form AMQP libraries understand.
pub fn without_091(url: &str) -> String {
    url.replacen("amqp091://", "amqp://", 1)
        .replacen("amqps091://", "amqps://", 1)
}

/// A URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A failover list as messages show it: each URL redacted, in order, comma-separated.
pub fn redact_list(urls: &[String]) -> String {
    urls.iter()
        .map(|u| redact(u))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let u = BrokerUrl::parse("amqp://127.0.0.1:5673").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.credentials.is_none()),
            ("127.0.0.1", 5673, true)
        );
        let u = BrokerUrl::parse("amqps://u%40x:p%2F@broker.example.com").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Amqps, 5671));
        assert_eq!(u.credentials, Some(("u@x".into(), "p/".into())));
        let u = BrokerUrl::parse("amqps091://h").unwrap();
        assert!(u.scheme.tls() && u.scheme.names_amqp091() && u.port == 5671);
        assert!(BrokerUrl::parse("http://x").is_err());
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("amqp://u:secret@h:1"), "amqp://u:***@h:1");
        assert_eq!(redact("amqp://h:1"), "amqp://h:1");
        let list = ["amqp://u:secret@a".to_owned(), "amqp091://b".to_owned()];
        assert_eq!(redact_list(&list), "amqp://u:***@a, amqp091://b");
        let Err(TransportError::BadUrl { url, .. }) = BrokerUrl::parse("http://u:secret@x") else {
            panic!("http is no broker scheme");
        };
        assert!(!url.contains("secret"));
    }

    #[test]
    fn the_091_mark_is_read_and_dropped() {
        assert!(names_amqp091("amqps091://h") && !names_amqp091("amqp://h"));
        assert_eq!(without_091("amqps091://u:p@h:1/v"), "amqps://u:p@h:1/v");
    }
}
