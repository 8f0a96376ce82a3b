//! Fixtures for the `verify_*` tests: real gpg signatures made with the testenv keys, file:// and http://
//! lookaside stores, policy files. A missing testenv is a test failure, never a skip.

#![allow(dead_code)]

use signbus::claim::Claim;
use signbus::reference::Reference;
use signbus::verify::lookaside::FetchLimits;
use signbus::verify::policy::Policy;
use signbus::verify::registries_d::RegistriesD;
use signbus::verify::{self, ImageDigest, Report, Verifier, VerifyError};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Values exported by `testenv/up.sh` in `testenv/.run/env`.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn load() -> Env {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testenv/.run/env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}. The verify tests need the testenv gpg keys: run testenv/up.sh first",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches(['"', '\'']).to_owned()))
            .collect();
        Env { vars }
    }
    pub fn get(&self, k: &str) -> &str {
        self.vars
            .get(k)
            .unwrap_or_else(|| panic!("testenv/.run/env lacks {k}; rerun testenv/up.sh"))
    }
    pub fn gnupg_home(&self) -> &str {
        self.get("GNUPGHOME")
    }
    pub fn ed25519(&self) -> &str {
        self.get("SIGNBUS_TEST_KEY")
    }
    pub fn rsa(&self) -> &str {
        self.get("SIGNBUS_TEST_KEY_RSA")
    }
    fn keys_dir(&self) -> PathBuf {
        PathBuf::from(self.get("SIGNBUS_TESTENV_DIR")).join("keys")
    }
    /// Binary public keyring of the ed25519 key.
    pub fn ed25519_pub(&self) -> PathBuf {
        let p = self.keys_dir().join("ed25519.pub.gpg");
        assert!(p.exists(), "{} missing: run testenv/up.sh", p.display());
        p
    }
    /// Binary public keyring of the RSA key.
    pub fn rsa_pub(&self) -> PathBuf {
        let p = self.keys_dir().join("rsa.pub.gpg");
        assert!(p.exists(), "{} missing: run testenv/up.sh", p.display());
        p
    }
}

/// How gpg wraps the payload.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `gpg --sign`: a binary signed message (what an image signature is).
    Normal,
    /// `gpg --clearsign`.
    Clear,
    /// `gpg --detach-sign`.
    Detached,
}

/// Runs gpg with the testenv home.
pub fn gpg_sign(env: &Env, key: &str, payload: &[u8], mode: Mode) -> Vec<u8> {
    let flag = match mode {
        Mode::Normal => "--sign",
        Mode::Clear => "--clearsign",
        Mode::Detached => "--detach-sign",
    };
    let mut child = Command::new("gpg")
        .args([
            "--homedir",
            env.gnupg_home(),
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--local-user",
            key,
            flag,
            "--output",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gpg");
    child.stdin.take().unwrap().write_all(payload).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gpg {flag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A claim for `reference` at `digest`, as signbus writes it.
pub fn claim(reference: &str, digest: &str) -> Vec<u8> {
    let r = Reference::parse_normalized(reference).unwrap();
    Claim::new(&r, digest, Some(1_700_000_000))
        .unwrap()
        .to_json()
}

/// A manifest and its sha256 digest; `seed` makes them unique.
pub fn manifest(seed: &str) -> (Vec<u8>, String) {
    use sha2::Digest as _;
    let m = format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","seed":"{seed}"}}"#).into_bytes();
    let d = format!("sha256:{:x}", sha2::Sha256::digest(&m));
    (m, d)
}

/// A temporary directory with a file:// store and a registries.d pointing every image at it.
pub struct Fixture {
    pub env: Env,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let env = Env::load();
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { env, dir };
        std::fs::create_dir_all(f.store()).unwrap();
        std::fs::create_dir_all(f.registries_d()).unwrap();
        f.write_registries(
            "default.yaml",
            &format!("default-docker:\n  lookaside: {}\n", f.store_url()),
        );
        f
    }
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    pub fn store_url(&self) -> String {
        url::Url::from_file_path(self.store()).unwrap().to_string()
    }
    pub fn registries_d(&self) -> PathBuf {
        self.dir.path().join("registries.d")
    }
    pub fn write_registries(&self, name: &str, text: &str) {
        std::fs::write(self.registries_d().join(name), text).unwrap();
    }
    /// Writes `bytes` as `signature-n` of `image` at `digest` in the file store.
    pub fn put(&self, image: &str, digest: &str, n: usize, bytes: &[u8]) -> PathBuf {
        let r = Reference::parse_normalized(image).unwrap();
        let dir = self
            .store()
            .join(format!("{}@{}", r.path(), digest.replacen(':', "=", 1)));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("signature-{n}"));
        std::fs::write(&p, bytes).unwrap();
        p
    }
    /// A policy from JSON where `@ED@` and `@RSA@` stand for the public keyring paths.
    pub fn policy(&self, json: &str) -> Policy {
        let text = self.policy_text(json);
        Policy::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }
    pub fn policy_text(&self, json: &str) -> String {
        json.replace("@ED@", self.env.ed25519_pub().to_str().unwrap())
            .replace("@RSA@", self.env.rsa_pub().to_str().unwrap())
    }
    /// Writes a policy file and returns its path.
    pub fn policy_file(&self, json: &str) -> PathBuf {
        let p = self.dir.path().join("policy.json");
        std::fs::write(&p, self.policy_text(json)).unwrap();
        p
    }
    /// Signs a claim for `signed_ref` at `digest` with `key` (normal mode).
    pub fn sign(&self, key: &str, signed_ref: &str, digest: &str) -> Vec<u8> {
        gpg_sign(&self.env, key, &claim(signed_ref, digest), Mode::Normal)
    }
    pub fn verify(
        &self,
        policy: &Policy,
        image: &str,
        digest: &str,
    ) -> Result<Report, VerifyError> {
        self.verify_with(policy, image, digest, FetchLimits::default())
    }
    pub fn verify_with(
        &self,
        policy: &Policy,
        image: &str,
        digest: &str,
        limits: FetchLimits,
    ) -> Result<Report, VerifyError> {
        let registries = RegistriesD::load_dir(&self.registries_d()).unwrap();
        let verifier = Verifier {
            policy,
            registries: &registries,
            default_lookaside: None,
            limits,
        };
        let image = verify::image_reference(image)?;
        let digest = ImageDigest::new(image.digest(), Some(digest), None)?;
        verifier.verify(&image, &digest)
    }
}

/// The signedBy-by-ed25519 policy for every image, with an optional signedIdentity JSON.
pub fn ed_policy(identity: Option<&str>) -> String {
    let id = identity
        .map(|i| format!(r#","signedIdentity":{i}"#))
        .unwrap_or_default();
    format!(r#"{{"default":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"@ED@"{id}}}]}}"#)
}

/// The verdicts of the first requirement, as (index, accepted, reason).
pub fn verdicts(r: &Report) -> Vec<(usize, bool, String)> {
    r.requirements[0]
        .signatures
        .iter()
        .map(|s| (s.index, s.accepted, s.reason.clone()))
        .collect()
}

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

/// The signbus binary.
pub fn signbus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_signbus"))
}

/// Runs a command, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
