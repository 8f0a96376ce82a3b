//! A real image registry for interop tests: Debian's `docker-registry` (distribution 2.8) on loopback, storing
//! into a tempdir, plus a tiny OCI image layout built by hand and pushed to it with `skopeo copy`. No network
//! beyond 127.0.0.1 is needed. A missing `docker-registry` or `skopeo` is a test failure, never a skip.

use super::http;
use super::run::run;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A `docker-registry serve` process on `127.0.0.1:<port>` with filesystem storage in its own tempdir.
/// Killed and reaped on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`: the registry part of image references, and the registries.d / policy scope.
    pub host: String,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/` answers 200.
    pub fn start() -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} missing: install Debian's docker-registry package (testenv/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        // Another process may take the port between our probe and the registry's bind; then try another.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                    dir.path().join("storage").display()
                ),
            )
            .unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(REGISTRY_BIN)
                .args(["serve", config.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {REGISTRY_BIN}: {e}"));
            let mut child = child;
            if wait_ready(&mut child, &host, &log_path) {
                return Registry { child, host, dir };
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start: {last_log}");
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// `docker://<host>/<repo_tag>` for skopeo.
    pub fn docker_url(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host)
    }

    /// The registry's own log (warnings and errors only).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the registry at `host` answers `GET /v2/` with 200; false if it exits or takes over 20 s.
fn wait_ready(child: &mut Child, host: &str, log_path: &Path) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(status) = child.try_wait().unwrap() {
            eprintln!(
                "docker-registry exited with {status}: {}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
            return false;
        }
        if let Ok((200, _)) = http::try_get(&format!("http://{host}/v2/")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A one-file ustar archive (no compression).
pub fn tar_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let s = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64); // size
    octal(&mut header[136..148], 0); // mtime
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(s.as_bytes());

    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `gzip -n` of `bytes` (the system gzip; no compression crate in the dependency tree).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// A hand-built OCI image layout with one image (one gzip layer holding `hello.txt`) tagged `tag`.
pub struct OciLayout {
    pub dir: PathBuf,
    pub tag: String,
    /// The image manifest's digest.
    pub manifest_digest: String,
}

impl OciLayout {
    pub fn build(dir: &Path, tag: &str, hello: &str) -> OciLayout {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| -> String {
            let d = sha256_digest(bytes);
            std::fs::write(blobs.join(d.strip_prefix("sha256:").unwrap()), bytes).unwrap();
            d
        };
        let tar = tar_one_file("hello.txt", hello.as_bytes());
        let diff_id = sha256_digest(&tar);
        let layer = gzip(&tar);
        let layer_digest = put(&layer);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        })
        .to_string()
        .into_bytes();
        let config_digest = put(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        })
        .to_string()
        .into_bytes();
        let manifest_digest = put(&manifest);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        OciLayout {
            dir: dir.to_owned(),
            tag: tag.to_owned(),
            manifest_digest,
        }
    }

    /// `oci:<dir>:<tag>` for skopeo.
    pub fn oci_url(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// Pushes the image to `dest` (`docker://…`, plain http) with skopeo, keeping the manifest as is; returns
    /// the pushed manifest digest from `--digestfile`.
    pub fn push(&self, dest: &str, tmp: &Path) -> String {
        let digestfile = tmp.join("pushed.digest");
        let (code, out, err) = run(Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"])
            .args(["--dest-tls-verify=false", "--digestfile"])
            .arg(&digestfile)
            .arg(self.oci_url())
            .arg(dest));
        assert_eq!(code, 0, "skopeo copy {} {dest}: {out}{err}", self.oci_url());
        std::fs::read_to_string(&digestfile)
            .unwrap()
            .trim()
            .to_owned()
    }
}

/// `skopeo inspect --tls-verify=false <docker_url>`'s `Digest` field.
pub fn inspect_digest(docker_url: &str) -> String {
    let (code, out, err) =
        run(Command::new("skopeo").args(["inspect", "--tls-verify=false", docker_url]));
    assert_eq!(code, 0, "skopeo inspect {docker_url}: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}
