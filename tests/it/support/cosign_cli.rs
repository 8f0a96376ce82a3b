//! A bench for `signbus cosign-container-sign` against real things: Debian's docker-registry on loopback, images
//! pushed to it, a pubtools-sign config file with a `cosign_signer` section, cosign (`support::cosign::bin()`)
//! and pubtools-sign 1.0.6's own `pubtools-sign-cosign-container-sign` from testenv's venv.

use super::registry::Registry;
use super::run::{run, signbus};
use signbus::cosign::attach::signature_layers;
use signbus::cosign::signature_tag;
use signbus::reference::Reference;
use signbus::registry::{Client, ClientOptions, OCI_MANIFEST};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// pubtools-sign 1.0.6's cosign entry point in testenv's venv.
pub const PUBTOOLS_SIGN_COSIGN: &str =
    "/var/cache/signbus-testenv/pubtools-sign-1.0.6-venv/bin/pubtools-sign-cosign-container-sign";

/// The password of the keys the bench makes.
pub const PASSWORD: &str = "bench pw";

/// A registry, a scratch directory and a registry client.
pub struct Bench {
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    pub client: Client,
}

impl Bench {
    pub fn start() -> Bench {
        Bench {
            registry: Registry::start(),
            dir: tempfile::tempdir().unwrap(),
            client: Client::new(ClientOptions {
                allow_http: true,
                timeout: Duration::from_secs(20),
                ..Default::default()
            })
            .unwrap(),
        }
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `<registry>/<repo>`.
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{repo}", self.registry.host)
    }

    /// Pushes a tiny image (a config blob, no layers) to `<registry>/<repo>:<tag>`; returns its digest.
    pub fn push(&self, repo: &str, tag: &str) -> String {
        push_image(&self.client, &self.repo(repo), tag)
    }

    /// Writes a pubtools-sign config file whose `cosign_signer` section is `section` (YAML lines, indented by
    /// the caller's two spaces); returns its path.
    pub fn config(&self, name: &str, section: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, format!("cosign_signer:\n{section}")).unwrap();
        path
    }

    /// A config that signs natively (no tlog) against the loopback registry over http, with `cosign_bin` set
    /// to Debian 13's cosign so the same file serves pubtools-sign.
    pub fn native_config(&self) -> PathBuf {
        self.config(
            "native.yaml",
            &format!(
                "  cosign_bin: {}\n  upload_tlog: false\n  allow_http_registry: true\n  retries: 1\n  log_level: error\n",
                super::cosign::bin().display()
            ),
        )
    }

    /// Makes a key pair with `signbus cosign-generate-key-pair --output-key-prefix <prefix>` under
    /// [`PASSWORD`]; returns the private key's path.
    pub fn signbus_key(&self, prefix: &str) -> PathBuf {
        let p = self.path(prefix);
        let (code, out, err) = run(signbus()
            .args(["cosign-generate-key-pair", "--output-key-prefix"])
            .arg(&p)
            .env("COSIGN_PASSWORD", PASSWORD));
        assert_eq!(code, 0, "{out}{err}");
        p.with_extension("key")
    }

    /// Runs `signbus cosign-container-sign --config-file <config> <args>` with `COSIGN_PASSWORD`=[`PASSWORD`].
    pub fn sign(&self, config: &Path, args: &[&str]) -> (i32, String, String) {
        self.sign_with_password(config, args, Some(PASSWORD))
    }

    /// [`Bench::sign`] of one image: `--signing-key <key> --digest <digest> --reference <reference> <extra>`.
    pub fn sign_image(
        &self,
        config: &Path,
        key: &Path,
        digest: &str,
        reference: &str,
        extra: &[&str],
    ) -> (i32, String, String) {
        let k = key.to_str().unwrap();
        let args = [
            "--signing-key",
            k,
            "--digest",
            digest,
            "--reference",
            reference,
        ];
        self.sign(config, &[&args[..], extra].concat())
    }

    /// As [`Bench::sign`] with `COSIGN_PASSWORD` set to `password`, or unset.
    pub fn sign_with_password(
        &self,
        config: &Path,
        args: &[&str],
        password: Option<&str>,
    ) -> (i32, String, String) {
        let mut cmd = signbus();
        cmd.arg("cosign-container-sign")
            .arg("--config-file")
            .arg(config)
            .args(args)
            .current_dir(self.dir.path());
        match password {
            Some(p) => cmd.env("COSIGN_PASSWORD", p),
            None => cmd.env_remove("COSIGN_PASSWORD"),
        };
        run(&mut cmd)
    }

    /// `cosign verify --key <public> <image>` (no tlog, plain http allowed): (exit code, stdout, stderr).
    pub fn cosign_verify(&self, public: &str, image: &str) -> (i32, String, String) {
        self.cosign(&[
            "verify",
            "--key",
            public,
            "--insecure-ignore-tlog=true",
            "--allow-http-registry=true",
            image,
        ])
    }

    /// Runs pubtools-sign 1.0.6's `pubtools-sign-cosign-container-sign` the same way.
    pub fn pubtools_sign(&self, config: &Path, args: &[&str]) -> (i32, String, String) {
        assert!(
            Path::new(PUBTOOLS_SIGN_COSIGN).exists(),
            "{PUBTOOLS_SIGN_COSIGN} missing: testenv/up.sh makes the pubtools-sign venv"
        );
        run(Command::new(PUBTOOLS_SIGN_COSIGN)
            .arg("--config-file")
            .arg(config)
            .args(args)
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path()))
    }

    /// Runs cosign in the scratch directory with `COSIGN_PASSWORD`=[`PASSWORD`]; (exit code, stdout, stderr).
    pub fn cosign(&self, args: &[&str]) -> (i32, String, String) {
        run(Command::new(super::cosign::bin())
            .args(args)
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path()))
    }

    /// The signatures attached to `<registry>/<repo>@<digest>`: (payload, base64 signature) per layer; empty
    /// when there is no `.sig` tag.
    pub fn signatures(&self, repo: &str, digest: &str) -> Vec<(Vec<u8>, String)> {
        let r = Reference::parse_normalized(&self.repo(repo)).unwrap();
        let tag = signature_tag(digest).unwrap();
        let m = match self.client.get_manifest(&r, &tag, &[OCI_MANIFEST]) {
            Ok(m) => m,
            Err(signbus::registry::RegistryError::NotFound { .. }) => return vec![],
            Err(e) => panic!("reading {tag}: {e}"),
        };
        signature_layers(&m.bytes)
            .unwrap()
            .into_iter()
            .map(|l| {
                let payload = self.client.get_blob(&r, &l.digest).unwrap();
                (payload, l.signature.unwrap_or_default())
            })
            .collect()
    }
}

/// Pushes a tiny image whose config names `repo_tag` (so each image has its own digest); returns the digest.
pub fn push_image(c: &Client, repo: &str, tag: &str) -> String {
    let r = Reference::parse_normalized(repo).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"salt":"{repo}:{tag}"}}"#
    );
    let config_digest = c.put_blob(&r, config.as_bytes()).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    c.put_manifest(&r, tag, OCI_MANIFEST, manifest.as_bytes())
        .unwrap()
}

/// stdout parsed as the one JSON document pubtools-sign prints.
pub fn document(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {stdout}"))
}

/// A loopback HTTP server answering every request with `status` (and a distribution error body); returns its
/// `127.0.0.1:<port>`. A 401 carries no challenge, so it stays a refusal.
pub fn status_server(status: u16) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // signbus tries https first: a TLS hello is no HTTP request, so drop that connection at once.
            while !buf.windows(4).any(|w| w == b"\r\n\r\n")
                && buf.first().is_none_or(u8::is_ascii_uppercase)
            {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = format!(r#"{{"errors":[{{"code":"TEST","message":"status {status}"}}]}}"#);
            let _ = write!(
                s,
                "HTTP/1.1 {status} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    host
}
