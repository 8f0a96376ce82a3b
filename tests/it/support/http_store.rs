//! A tiny HTTP(S) server standing in for a lookaside store: path → (status, body), recording what was asked.

use signbus::reference::Reference;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// A tiny HTTP/1.1 server: path → (status, body). Unknown paths get 404. Records the paths requested.
pub struct HttpServer {
    pub base: String,
    pub requested: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    pub fn start(routes: HashMap<String, (u16, Vec<u8>)>) -> HttpServer {
        HttpServer::serve(routes, None)
    }

    /// As [`HttpServer::start`], over TLS with the certificate chain and key in `cert` and `key` (PEM): an
    /// https:// store.
    pub fn start_tls(
        routes: HashMap<String, (u16, Vec<u8>)>,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> HttpServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        HttpServer::serve(routes, Some(Arc::new(config)))
    }

    fn serve(
        routes: HashMap<String, (u16, Vec<u8>)>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = match tls {
            Some(_) => format!("https://localhost:{port}/sigs"),
            None => format!("http://127.0.0.1:{port}/sigs"),
        };
        let requested = Arc::new(Mutex::new(Vec::new()));
        let seen = requested.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                match &tls {
                    None => answer(tcp, &routes, &seen),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                            continue;
                        };
                        answer(rustls::StreamOwned::new(conn, tcp), &routes, &seen);
                    }
                }
            }
        });
        HttpServer { base, requested }
    }

    /// The request path of `signature-n` for `image` at `digest`.
    pub fn path(image: &str, digest: &str, n: usize) -> String {
        let r = Reference::parse_normalized(image).unwrap();
        format!(
            "/sigs/{}@{}/signature-{n}",
            r.path(),
            digest.replacen(':', "=", 1)
        )
    }
}

/// Reads one request from `s` and answers it from `routes`, recording the path in `seen`.
fn answer(
    mut s: impl Read + Write,
    routes: &HashMap<String, (u16, Vec<u8>)>,
    seen: &Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if buf.is_empty() {
        return; // a client that gave up (e.g. refused our certificate)
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    seen.lock().unwrap().push(path.clone());
    let (status, body) = routes
        .get(&path)
        .cloned()
        .unwrap_or((404, b"not found".to_vec()));
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Other",
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(&body);
    let _ = s.flush();
}
