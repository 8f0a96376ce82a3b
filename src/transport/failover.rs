//! The one failover walk both protocols connect with: each URL of `broker.urls` in order, each attempt
//! time-boxed, the first connection wins; when none answers, the error names every URL (redacted) and the last
//! failure.
//!
//! Owns the order, the time box, the "connected" / "broker connection failed" log lines and the
//! [`TransportError::Connect`] that sums a failed walk up. One walk is one round: waiting and trying the list
//! again (with [`crate::backoff::Backoff`]) is the caller's, which knows whether to give up (the server's
//! reconnect loop, the requester's reconnect). It must never know how a protocol connects, nor log a password.

use super::broker_url::{bad_url, redact, redact_list};
use super::TransportError;
use std::future::Future;
use std::time::Duration;

/// How long each step of connecting to one broker (TCP, TLS, SASL, the AMQP handshake, the first channel or
/// session) may take. AMQP 0-9-1, whose library takes all steps in one call, gives its whole attempt this long.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one attempt at one broker failed.
#[derive(Debug)]
pub(super) enum AttemptError {
    /// This broker could not be reached or refused us: try the next URL.
    Unreachable(String),
    /// Trying further cannot help (a malformed URL): the walk stops with this error.
    Fatal(TransportError),
}

impl From<String> for AttemptError {
    fn from(reason: String) -> Self {
        AttemptError::Unreachable(reason)
    }
}

impl From<TransportError> for AttemptError {
    fn from(e: TransportError) -> Self {
        AttemptError::Fatal(e)
    }
}

/// Calls `attempt` for each of `urls` in order, each bounded by `limit`, and returns the first connection with
/// its redacted URL. `protocol` names the protocol in the log (`connected (AMQP 1.0)`).
pub(super) async fn first_reachable<'a, T, F, Fut>(
    urls: &'a [String],
    protocol: &str,
    limit: Duration,
    mut attempt: F,
) -> Result<(T, String), TransportError>
where
    F: FnMut(&'a str) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    if urls.is_empty() {
        return Err(bad_url("", "no broker URL configured"));
    }
    let mut last = String::new();
    for url in urls {
        let shown = redact(url);
        last = match tokio::time::timeout(limit, attempt(url)).await {
            Ok(Ok(connection)) => {
                tracing::info!(broker = %shown, "connected ({protocol})");
                return Ok((connection, shown));
            }
            Ok(Err(AttemptError::Fatal(e))) => return Err(e),
            Ok(Err(AttemptError::Unreachable(reason))) => reason,
            Err(_) => format!("connect timed out after {limit:?}"),
        };
        tracing::warn!(broker = %shown, error = %last, "broker connection failed");
    }
    Err(TransportError::Connect {
        attempts: redact_list(urls),
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| u.to_string()).collect()
    }

    #[tokio::test]
    async fn the_first_url_that_answers_wins() {
        let list = urls(&["amqp://u:secret@a", "amqp://b", "amqp://c"]);
        let mut tried = Vec::new();
        let (conn, shown) = first_reachable(&list, "test", Duration::from_secs(1), |url| {
            tried.push(url.to_owned());
            async move {
                match url {
                    "amqp://b" => Ok(url.len()),
                    _ => Err(AttemptError::Unreachable("refused".into())),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!((conn, shown.as_str()), (8, "amqp://b"));
        assert_eq!(tried, ["amqp://u:secret@a", "amqp://b"]);
    }

    #[tokio::test]
    async fn none_answering_names_every_url_redacted_and_the_last_failure() {
        let list = urls(&["amqp://u:secret@a", "amqp://b"]);
        let err = first_reachable(&list, "test", Duration::from_millis(50), |url| async move {
            if url == "amqp://b" {
                std::future::pending::<()>().await;
            }
            Err::<(), _>(AttemptError::Unreachable("refused".into()))
        })
        .await
        .unwrap_err();
        let TransportError::Connect { attempts, last } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(attempts, "amqp://u:***@a, amqp://b");
        assert_eq!(last, "connect timed out after 50ms");
        assert!(!err.is_permanent());
    }

    #[tokio::test]
    async fn a_fatal_attempt_stops_the_walk_and_no_url_is_a_bad_url() {
        let list = urls(&["http://a", "amqp://b"]);
        let mut tried = 0;
        let err = first_reachable(&list, "test", Duration::from_secs(1), |url| {
            tried += 1;
            async move { Err::<(), _>(AttemptError::Fatal(bad_url(url, "scheme"))) }
        })
        .await
        .unwrap_err();
        assert!(err.is_permanent() && tried == 1, "{err:?}");
        let none = first_reachable(&[], "test", Duration::from_secs(1), |_| async {
            Ok::<_, AttemptError>(())
        });
        assert!(matches!(none.await, Err(TransportError::BadUrl { .. })));
    }
}
