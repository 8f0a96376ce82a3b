//! The client against a scripted registry on loopback: challenges, tokens and status mapping. (The real
//! registry is exercised by tests/it/cosign_attach_keeps_every_layer.rs.)

use super::*;
use crate::signing::secret::Passphrase;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A one-request-per-connection HTTP server answering with `handler`; returns its `127.0.0.1:port` and what it
/// saw. Connections that are not HTTP (a TLS probe) are dropped.
fn serve(
    handler: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let me = host.clone();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (log, me, handler) = (log.clone(), me.clone(), handler.clone());
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || !line.contains(" HTTP/1.1") {
                    return;
                }
                let mut parts = line.split_whitespace();
                parts.next();
                let path = parts.next().unwrap_or("").to_owned();
                let (mut authorization, mut len) = (None, 0usize);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => authorization = Some(v.trim().to_owned()),
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let s = Seen {
                    path,
                    authorization,
                };
                log.lock().unwrap().push(s.clone());
                let (status, headers, body) = handler(&s, &me);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = stream.write_all(out.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    (host, seen)
}

fn client(credentials: Credentials) -> Client {
    Client::new(ClientOptions {
        allow_http: true,
        credentials,
        timeout: Duration::from_secs(5),
        max_manifest_bytes: 100,
        ..Default::default()
    })
    .unwrap()
}

fn repo(host: &str) -> Reference {
    Reference::parse_normalized(&format!("{host}/a/b")).unwrap()
}

const MANIFEST: &[u8] = br#"{"schemaVersion":2}"#;

#[test]
fn a_bearer_challenge_is_answered_with_a_token_fetched_once_per_scope() {
    let (host, seen) = serve(|s, me| {
        let ok = s.authorization.as_deref() == Some("Bearer T1");
        match s.path.as_str() {
            p if p.starts_with("/token?") => {
                // user:pw
                if s.authorization.as_deref() == Some("Basic dXNlcjpwdw==") {
                    (200, vec![], br#"{"token":"T1","expires_in":300}"#.to_vec())
                } else {
                    (401, vec![], vec![])
                }
            }
            "/v2/a/b/manifests/v1" if ok => (
                200,
                vec![("Content-Type", OCI_MANIFEST.into())],
                MANIFEST.to_vec(),
            ),
            _ => (
                401,
                vec![(
                    "WWW-Authenticate",
                    format!(
                        r#"Bearer realm="http://{me}/token",service="mock",scope="repository:a/b:pull""#
                    ),
                )],
                vec![],
            ),
        }
    });
    let c = client(Credentials::Basic {
        username: "user".into(),
        password: Arc::new(Passphrase::from_bytes(b"pw".to_vec())),
    });
    for _ in 0..2 {
        let m = c.get_manifest(&repo(&host), "v1", &[OCI_MANIFEST]).unwrap();
        assert_eq!(m.bytes, MANIFEST);
        assert_eq!(m.digest, sha256_digest(MANIFEST));
    }
    let seen = seen.lock().unwrap();
    let tokens: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/token?"))
        .collect();
    assert_eq!(tokens.len(), 1, "{seen:?}");
    assert_eq!(
        tokens[0].path,
        "/token?service=mock&scope=repository%3Aa%2Fb%3Apull"
    );
    drop(seen);
    // Anonymous: the token server refuses, and that is an authorization error, not a retryable one.
    let e = client(Credentials::Anonymous)
        .get_manifest(&repo(&host), "v1", &[OCI_MANIFEST])
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert!(!e.is_retryable());
}

#[test]
fn statuses_sizes_and_media_types_become_typed_errors() {
    let (host, _) = serve(|s, _| match s.path.as_str() {
        "/v2/a/b/manifests/missing" => (
            404,
            vec![],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
        ),
        "/v2/a/b/manifests/down" => (503, vec![], vec![]),
        "/v2/a/b/manifests/denied" => (403, vec![], vec![]),
        "/v2/a/b/manifests/index" => (
            200,
            vec![(
                "Content-Type",
                "application/vnd.oci.image.index.v1+json".into(),
            )],
            MANIFEST.to_vec(),
        ),
        "/v2/a/b/manifests/big" => (
            200,
            vec![("Content-Type", OCI_MANIFEST.into())],
            vec![b' '; 101],
        ),
        _ => (200, vec![("Content-Type", OCI_MANIFEST.into())], vec![]),
    });
    let c = client(Credentials::Anonymous);
    let get = |r: &str| {
        c.get_manifest(&repo(&host), r, &[OCI_MANIFEST])
            .unwrap_err()
    };
    let e = get("missing");
    assert!(
        matches!(&e, RegistryError::NotFound { detail, .. } if detail.contains("MANIFEST_UNKNOWN")),
        "{e}"
    );
    assert!(!e.is_retryable());
    let e = get("down");
    assert!(matches!(e, RegistryError::Server { status: 503, .. }) && e.is_retryable());
    let e = get("denied");
    assert!(matches!(e, RegistryError::Unauthorized { status: 403, .. }) && !e.is_retryable());
    assert!(matches!(get("index"), RegistryError::WrongMediaType { .. }));
    assert!(matches!(
        get("big"),
        RegistryError::TooLarge { limit: 100, .. }
    ));
    assert!(matches!(get("../x"), RegistryError::Refused { .. }));
    let digest = sha256_digest(b"other");
    assert!(matches!(get(&digest), RegistryError::DigestMismatch { .. }));
}

#[test]
fn plain_http_is_used_only_when_allowed() {
    let (host, _) = serve(|_, _| {
        (
            200,
            vec![("Content-Type", OCI_MANIFEST.into())],
            MANIFEST.to_vec(),
        )
    });
    let strict = Client::new(ClientOptions {
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap();
    let e = strict
        .get_manifest(&repo(&host), "v1", &[OCI_MANIFEST])
        .unwrap_err();
    assert!(matches!(e, RegistryError::Transport { .. }), "{e}");
    client(Credentials::Anonymous)
        .get_manifest(&repo(&host), "v1", &[OCI_MANIFEST])
        .unwrap();
}
