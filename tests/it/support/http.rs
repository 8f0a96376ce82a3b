//! The tests' one HTTP client (`ureq`): the servers' operations listener, the broker's management API, the
//! registry's readiness. Every call is bounded (10 s).

use std::time::Duration;

/// What an HTTP call came to.
#[derive(Debug)]
pub enum HttpError {
    /// Nothing answered (refused, reset, timed out): a server that is not up, or a node that is down.
    Unreachable(String),
    /// An answer with a status of 400 or more: (status, body).
    Status(u16, String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Unreachable(e) => write!(f, "unreachable: {e}"),
            HttpError::Status(status, body) => write!(f, "HTTP {status}: {body}"),
        }
    }
}

/// `method url`, with a JSON `body` when there is one and HTTP basic `auth` (user, password): the body of a
/// success, with its status.
pub fn call(
    method: &str,
    url: &str,
    body: Option<&str>,
    auth: Option<(&str, &str)>,
) -> Result<(u16, String), HttpError> {
    use base64::Engine;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut request = agent.request(method, url);
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.set("authorization", &format!("Basic {token}"));
    }
    let answer = match body {
        Some(body) => request
            .set("content-type", "application/json")
            .send_string(body),
        None => request.call(),
    };
    match answer {
        Ok(response) => {
            let status = response.status();
            let body = response
                .into_string()
                .map_err(|e| HttpError::Unreachable(format!("reading the body: {e}")))?;
            Ok((status, body))
        }
        Err(ureq::Error::Status(status, response)) => Err(HttpError::Status(
            status,
            response.into_string().unwrap_or_default(),
        )),
        Err(ureq::Error::Transport(e)) => Err(HttpError::Unreachable(e.to_string())),
    }
}

/// `GET url`: (status, body), or an error when nothing answers.
pub fn try_get(url: &str) -> Result<(u16, String), String> {
    match call("GET", url, None, None) {
        Ok(answer) => Ok(answer),
        Err(HttpError::Status(status, body)) => Ok((status, body)),
        Err(HttpError::Unreachable(e)) => Err(e),
    }
}

/// `GET url`: (status, body). Panics when nothing answers.
pub fn get(url: &str) -> (u16, String) {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}
