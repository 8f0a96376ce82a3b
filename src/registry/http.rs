//! The HTTP exchange under [`Client`]'s operations: http/https choice, one request with its `Authorization`,
//! answering a 401 challenge (basic, or a bearer token from the realm), status codes to typed errors, and
//! size-capped body reads. No registry semantics live here.

use super::auth::{self, Challenge};
use super::error::{self, RegistryError};
use super::{api_host, Client};
use crate::reference::Reference;
use std::io::Read;

const ERROR_BODY_LIMIT: u64 = 64 << 10;

impl Client {
    /// `https://host` or, when allowed and https does not answer, `http://host` (probed once per host).
    pub(super) fn base(&self, repo: &Reference) -> Result<String, RegistryError> {
        let host = api_host(repo);
        if !self.opts.allow_http {
            return Ok(format!("https://{host}"));
        }
        if let Some(s) = self.schemes.lock().unwrap().get(host) {
            return Ok(format!("{s}://{host}"));
        }
        let mut last = String::new();
        for scheme in ["https", "http"] {
            let url = format!("{scheme}://{host}/v2/");
            match self.agent.get(&url).call() {
                Ok(_) | Err(ureq::Error::Status(..)) => {
                    self.schemes.lock().unwrap().insert(host.to_owned(), scheme);
                    return Ok(format!("{scheme}://{host}"));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(RegistryError::Transport {
            url: format!("{host}/v2/"),
            reason: last,
        })
    }

    /// Sends one request (path under the registry, or an absolute URL the registry gave), answering one 401
    /// challenge; returns the URL used and the 2xx response.
    pub(super) fn send(
        &self,
        repo: &Reference,
        method: &str,
        target: &str,
        push: bool,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(String, ureq::Response), RegistryError> {
        let base = self.base(repo)?;
        let url = if target.starts_with('/') {
            format!("{base}{target}")
        } else {
            target.to_owned()
        };
        let host = api_host(repo).to_owned();
        let same_host = url.starts_with(&format!("{base}/"));
        let scope = format!(
            "repository:{}:{}",
            repo.path(),
            if push { "pull,push" } else { "pull" }
        );
        let basic = auth::basic_for(&self.opts.credentials, repo.domain(), repo.path())?;
        for attempt in 0..2 {
            let mut req = self.agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if same_host {
                if let Some(h) = self.auth.header(&host, &scope, basic.as_ref()) {
                    req = req.set("Authorization", &h);
                }
            }
            let result = match body {
                Some(b) => req.send_bytes(b),
                None => req.call(),
            };
            match result {
                Ok(resp) => return Ok((url, resp)),
                Err(ureq::Error::Status(401, resp)) if attempt == 0 && same_host => {
                    match resp
                        .header("WWW-Authenticate")
                        .and_then(auth::parse_challenge)
                    {
                        Some(Challenge::Basic) if basic.is_some() => {
                            self.auth.remember_basic(&host)
                        }
                        Some(Challenge::Bearer {
                            realm,
                            service,
                            scope: asked,
                        }) => {
                            let asked = asked.unwrap_or_else(|| scope.clone());
                            self.fetch_token(
                                &host,
                                &realm,
                                service.as_deref(),
                                &asked,
                                &scope,
                                basic.as_ref(),
                            )?;
                        }
                        _ => return Err(status_error(&url, 401, resp)),
                    }
                }
                Err(ureq::Error::Status(code, resp)) => return Err(status_error(&url, code, resp)),
                Err(ureq::Error::Transport(t)) => {
                    return Err(RegistryError::Transport {
                        url,
                        reason: t.to_string(),
                    })
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Gets a bearer token for `asked` from `realm` (with basic credentials when there are some) and caches it
    /// for `asked` and `ours`.
    fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        asked: &str,
        ours: &str,
        basic: Option<&crate::signing::secret::Passphrase>,
    ) -> Result<(), RegistryError> {
        let token_err = |reason: String, retryable: bool| RegistryError::Token {
            url: realm.to_owned(),
            reason,
            retryable,
        };
        let mut url = url::Url::parse(realm).map_err(|e| token_err(e.to_string(), false))?;
        match url.scheme() {
            "https" => {}
            "http" if self.opts.allow_http => {}
            _ => {
                return Err(RegistryError::HttpNotAllowed {
                    realm: realm.to_owned(),
                })
            }
        }
        if let Some(s) = service {
            url.query_pairs_mut().append_pair("service", s);
        }
        url.query_pairs_mut().append_pair("scope", asked);
        let mut req = self.agent.get(url.as_str());
        if let Some(b) = basic {
            req = req.set("Authorization", &auth::basic_header(b));
        }
        match req.call() {
            Ok(resp) => {
                let body = read_limited(resp, ERROR_BODY_LIMIT, realm)?;
                let (token, life) = auth::parse_token(&body).map_err(|r| token_err(r, false))?;
                self.auth.store_token(host, &[asked, ours], token, life);
                Ok(())
            }
            Err(ureq::Error::Status(code, resp)) => Err(match status_error(realm, code, resp) {
                e @ RegistryError::Unauthorized { .. } => e,
                e => token_err(e.to_string(), e.is_retryable()),
            }),
            Err(ureq::Error::Transport(t)) => Err(token_err(t.to_string(), true)),
        }
    }
}

pub(super) fn status_error(url: &str, status: u16, resp: ureq::Response) -> RegistryError {
    let mut body = Vec::new();
    let _ = resp
        .into_reader()
        .take(ERROR_BODY_LIMIT)
        .read_to_end(&mut body);
    let detail = error::detail(&body);
    let url = url.to_owned();
    match status {
        401 | 403 => RegistryError::Unauthorized {
            url,
            status,
            detail,
        },
        404 => RegistryError::NotFound { url, detail },
        429 | 500..=599 => RegistryError::Server {
            url,
            status,
            detail,
        },
        _ => RegistryError::Refused {
            url,
            status,
            detail,
        },
    }
}

/// The body, refused when it is (or announces itself as) longer than `limit`.
pub(super) fn read_limited(
    resp: ureq::Response,
    limit: u64,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        url: url.to_owned(),
        limit,
    };
    if let Some(len) = resp
        .header("Content-Length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
    }
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}
