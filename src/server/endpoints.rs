//! The operations HTTP listener: `GET /metrics`, `/healthz` and `/readyz`, over a minimal HTTP/1.1.
//!
//! It owns the listening socket and nothing else: it reads [`Metrics`] and [`Health`] and answers one request
//! per connection (`Connection: close`), GET and HEAD only, with bounded request heads and read timeouts. It
//! stops accepting when its `CancellationToken` is cancelled. It must never touch the broker or the signer, and
//! never block the server: a slow client only holds its own task.

use super::health::Health;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `stop` is cancelled. Connection errors are logged at debug level and otherwise ignored.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &metrics, &health).await {
                tracing::debug!(error = %e, "metrics listener: connection failed");
            }
        });
    }
}

/// A response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

fn text(status: &'static str, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

/// What to answer to `method path`.
fn route(method: &str, target: &str, metrics: &Metrics, health: &Health) -> Response {
    if method != "GET" && method != "HEAD" {
        return text("405 Method Not Allowed", "only GET and HEAD\n");
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => {
            // The readiness /readyz reports, as a gauge (alerting needs it as a series).
            metrics.ready.set(i64::from(health.readiness().is_ok()));
            Response {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics.render(),
            }
        }
        "/healthz" => text("200 OK", "ok\n"),
        "/readyz" => match health.readiness() {
            Ok(()) => text("200 OK", "ready\n"),
            Err(why) => text("503 Service Unavailable", format!("not ready: {why}\n")),
        },
        _ => text("404 Not Found", "try /metrics, /healthz or /readyz\n"),
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            break !head.is_empty();
        }
        head.extend_from_slice(&buf[..n]);
    };
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let response = match (complete, parts.next(), parts.next(), parts.next()) {
        (true, Some(method), Some(target), Some(v)) if v.starts_with("HTTP/1.") => {
            let mut r = route(method, target, metrics, health);
            if method == "HEAD" {
                r.body.clear();
            }
            r
        }
        _ => text("400 Bad Request", "bad request\n"),
    };
    let out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.content_type,
        response.body.len(),
        response.body
    );
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn routes_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (metrics, health) = (Arc::new(Metrics::new()), Arc::new(Health::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, metrics, health.clone(), stop.clone()));
        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("ok\n"),
            "{r}"
        );
        let r = get(addr, "GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 503 ") && r.contains("not consuming"),
            "{r}"
        );
        health.set_consuming(true);
        let r = get(addr, "GET /readyz HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        let r = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.contains("signbus_build_info{version="), "{r}");
        let r = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = get(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = get(addr, "garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the listener stops when cancelled")
            .unwrap();
    }

    #[tokio::test]
    async fn metrics_report_readiness_as_signbus_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (metrics, health) = (Arc::new(Metrics::new()), Arc::new(Health::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, metrics, health.clone(), stop.clone()));
        let scrape = || get(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(scrape().await.contains("\nsignbus_ready 0\n"));
        health.set_consuming(true);
        assert!(scrape().await.contains("\nsignbus_ready 1\n"));
        health.signer_failed();
        assert!(scrape().await.contains("\nsignbus_ready 0\n"));
        health.signer_recovered();
        health.set_stopping();
        assert!(scrape().await.contains("\nsignbus_ready 0\n"));
        stop.cancel();
        task.await.unwrap();
    }
}
