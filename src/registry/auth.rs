//! Registry authentication: credentials from the caller or from containers auth files, `WWW-Authenticate`
//! challenges, and bearer tokens cached per registry and scope.
//!
//! The caller says where credentials come from ([`Credentials`]); auth file paths are the caller's list (the
//! binary's edge knows `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR` and `$HOME`; this module reads no environment).
//! Passwords and tokens are never logged or shown in errors.

use super::error::RegistryError;
use crate::signing::secret::Passphrase;
use base64::Engine as _;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where registry credentials come from.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// No credentials: anonymous access (anonymous bearer tokens are still fetched when challenged).
    #[default]
    Anonymous,
    /// One user name and password for every registry this client talks to.
    Basic {
        username: String,
        password: Arc<Passphrase>,
    },
    /// containers-auth.json(5) / docker `config.json` files, in the order they are consulted; missing files are
    /// skipped. The first file with an entry for the registry wins.
    AuthFiles(Vec<PathBuf>),
}

/// The `user:password` for `registry` (a reference's domain, e.g. `quay.io` or `docker.io`) and `repo` (its
/// path), or `None`.
pub(super) fn basic_for(
    creds: &Credentials,
    registry: &str,
    repo: &str,
) -> Result<Option<Passphrase>, RegistryError> {
    match creds {
        Credentials::Anonymous => Ok(None),
        Credentials::Basic { username, password } => {
            let mut both = Vec::with_capacity(username.len() + 1 + password.expose().len());
            both.extend_from_slice(username.as_bytes());
            both.push(b':');
            both.extend_from_slice(password.expose());
            Ok(Some(Passphrase::from_bytes(both)))
        }
        Credentials::AuthFiles(paths) => {
            for path in paths {
                let text = match std::fs::read(path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(RegistryError::AuthFile {
                            path: path.clone(),
                            reason: e.to_string(),
                        })
                    }
                };
                if let Some(found) = auth_file_entry(&text, registry, repo).map_err(|reason| {
                    RegistryError::AuthFile {
                        path: path.clone(),
                        reason,
                    }
                })? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        }
    }
}

/// The decoded `auth` of the most specific entry of one auth file that matches `registry/repo`: keys
/// `registry/ns/repo`, then `registry/ns`, then `registry`. Keys written with a scheme (docker's legacy
/// `https://index.docker.io/v1/`) count for their host; `index.docker.io` counts as `docker.io`.
fn auth_file_entry(text: &[u8], registry: &str, repo: &str) -> Result<Option<Passphrase>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
    }
    let file: File = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let normal = |key: &str| -> String {
        let (key, had_scheme) = match key.split_once("://") {
            Some((_, rest)) => (rest, true),
            None => (key, false),
        };
        let key = if had_scheme {
            key.split('/').next().unwrap_or("")
        } else {
            key.trim_end_matches('/')
        };
        match key.split_once('/') {
            Some(("index.docker.io", rest)) => format!("docker.io/{rest}"),
            _ if key == "index.docker.io" => "docker.io".into(),
            _ => key.to_owned(),
        }
    };
    let entries: HashMap<String, &Entry> = file.auths.iter().map(|(k, v)| (normal(k), v)).collect();
    let mut wanted = vec![registry.to_owned()];
    let mut prefix = registry.to_owned();
    for part in repo.split('/') {
        prefix = format!("{prefix}/{part}");
        wanted.push(prefix.clone());
    }
    for key in wanted.iter().rev() {
        if let Some(Entry { auth: Some(a) }) = entries.get(key) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| format!("the auth of {key:?} is not base64"))?;
            if !bytes.contains(&b':') {
                return Err(format!("the auth of {key:?} is not user:password"));
            }
            return Ok(Some(Passphrase::from_bytes(bytes)));
        }
    }
    Ok(None)
}

/// `Basic <base64(user:password)>`.
pub(super) fn basic_header(user_pass: &Passphrase) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass.expose())
    )
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; `None` for anything else.
pub(super) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (name, after) = s.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_owned(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(name, value);
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// A bearer token and when to stop using it.
type CachedToken = (Arc<Passphrase>, Instant);

/// What to send as `Authorization` to one registry host, learned from its challenges.
#[derive(Default)]
pub(super) struct AuthState {
    /// Hosts that asked for Basic.
    basic: Mutex<HashMap<String, bool>>,
    /// Bearer tokens by (host, scope), with their expiry.
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl AuthState {
    /// The cached `Authorization` value for `host` and `scope`, if any is known and fresh.
    pub(super) fn header(
        &self,
        host: &str,
        scope: &str,
        basic: Option<&Passphrase>,
    ) -> Option<String> {
        let key = (host.to_owned(), scope.to_owned());
        if let Some((token, until)) = self.tokens.lock().unwrap().get(&key) {
            if Instant::now() < *until {
                return Some(format!(
                    "Bearer {}",
                    String::from_utf8_lossy(token.expose())
                ));
            }
        }
        if self.basic.lock().unwrap().contains_key(host) {
            return basic.map(basic_header);
        }
        None
    }

    pub(super) fn remember_basic(&self, host: &str) {
        self.basic.lock().unwrap().insert(host.to_owned(), true);
    }

    pub(super) fn store_token(
        &self,
        host: &str,
        scopes: &[&str],
        token: Passphrase,
        lifetime: Duration,
    ) {
        // Refresh a little before the server's expiry.
        let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(5));
        let token = Arc::new(token);
        let mut tokens = self.tokens.lock().unwrap();
        for scope in scopes {
            tokens.insert(
                (host.to_owned(), (*scope).to_owned()),
                (token.clone(), until),
            );
        }
    }
}

/// The token server's answer: `token` (or OAuth's `access_token`) and `expires_in` seconds (default 60).
pub(super) fn parse_token(body: &[u8]) -> Result<(Passphrase, Duration), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let token = a
        .token
        .filter(|t| !t.is_empty())
        .or(a.access_token.filter(|t| !t.is_empty()))
        .ok_or("answer holds no token")?;
    if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("the token holds characters a header cannot carry".into());
    }
    Ok((
        Passphrase::from_bytes(token.into_bytes()),
        Duration::from_secs(a.expires_in.unwrap_or(60).max(10)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_with_quoted_and_bare_values() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://t.example/token"),
            Some(Challenge::Bearer {
                realm: "https://t.example/token".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn the_most_specific_auth_file_entry_wins() {
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let file = format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/ns":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b("all:1"),
            b("ns:2"),
            b("hub:3")
        );
        let get = |reg: &str, repo: &str| {
            auth_file_entry(file.as_bytes(), reg, repo)
                .unwrap()
                .map(|p| String::from_utf8(p.expose().to_vec()).unwrap())
        };
        assert_eq!(get("quay.io", "ns/app").as_deref(), Some("ns:2"));
        assert_eq!(get("quay.io", "other/app").as_deref(), Some("all:1"));
        assert_eq!(
            get("docker.io", "library/busybox").as_deref(),
            Some("hub:3")
        );
        assert_eq!(get("ghcr.io", "a/b"), None);
        assert!(auth_file_entry(b"[1]", "quay.io", "a").is_err());
        assert!(auth_file_entry(
            br#"{"auths":{"quay.io":{"auth":"bm9jb2xvbg=="}}}"#,
            "quay.io",
            "a"
        )
        .is_err());
    }

    #[test]
    fn tokens_are_read_from_either_field_and_cached_per_scope() {
        let (t, life) = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.expose(), b"abc");
        assert_eq!(life, Duration::from_secs(300));
        let (t, _) = parse_token(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.expose(), b"xyz");
        assert!(parse_token(b"{}").is_err());
        let state = AuthState::default();
        state.store_token("h", &["repository:a:pull"], t, Duration::from_secs(60));
        assert_eq!(
            state.header("h", "repository:a:pull", None).as_deref(),
            Some("Bearer xyz")
        );
        assert_eq!(state.header("h", "repository:b:pull", None), None);
    }
}
