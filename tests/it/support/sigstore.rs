//! Sigstore (cosign) signatures against the real tools: a loopback `docker-registry`, Debian 13's cosign 2.5
//! (`SIGNBUS_TEST_COSIGN`) and skopeo 1.18 run inside the trixie chroot (`SIGNBUS_TEST_COSIGN_ROOTFS`), and
//! `signbus verify`. Each [`SigBed`] has a work directory that skopeo sees as the chroot's `/tmp` (bind-mounted
//! in a private mount namespace, so the cached chroot is never written); policies name key files as
//! `@DIR@/<name>`, written once for signbus (the host path) and once for skopeo (`/tmp`). A missing tool is a
//! test failure, never a skip.

use super::registry::Registry;
use super::run::{run, signbus};
use signbus::cosign::{
    signature_tag, Payload, PrivateKey, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};
use signbus::reference::Reference;
use signbus::registry::{Client, ClientOptions, OCI_MANIFEST};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The password of every cosign key the tests make.
pub const PASSWORD: &str = "sigstore-test";

/// A registry, a work directory and the tools.
pub struct SigBed {
    pub registry: Registry,
    pub client: Client,
    pub dir: tempfile::TempDir,
    cosign: PathBuf,
    rootfs: PathBuf,
    calls: AtomicUsize,
}

/// Stdout and stderr together; `Err` when the command failed.
pub type Outcome = Result<String, String>;

fn outcome(cmd: &mut Command) -> Outcome {
    let (code, out, err) = run(cmd);
    let text = format!("{out}{err}");
    if code == 0 {
        Ok(text)
    } else {
        Err(text)
    }
}

impl SigBed {
    pub fn start() -> SigBed {
        let cosign = super::cosign::bin();
        let rootfs = super::cosign::rootfs();
        let bed = SigBed {
            registry: Registry::start(),
            client: client(),
            dir: tempfile::tempdir().unwrap(),
            cosign,
            rootfs,
            calls: AtomicUsize::new(0),
        };
        bed.registries(&format!(
            "docker:\n  \"{}\":\n    use-sigstore-attachments: true\n",
            bed.registry.host
        ));
        std::fs::write(bed.path("pass"), PASSWORD).unwrap();
        bed
    }

    /// A file in the work directory (`/tmp/<name>` for skopeo).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the registries.d file (`@DIR@` for the work directory): `registries.d/` for signbus,
    /// `registries.d.chroot/` for skopeo.
    pub fn registries(&self, yaml: &str) {
        let host = self.dir.path().to_str().unwrap();
        for (dir, at) in [("registries.d", host), ("registries.d.chroot", "/tmp")] {
            std::fs::create_dir_all(self.path(dir)).unwrap();
            std::fs::write(
                self.path(&format!("{dir}/sigstore.yaml")),
                yaml.replace("@DIR@", at),
            )
            .unwrap();
        }
    }

    /// `host:port/<repo>`.
    pub fn repo(&self, repo: &str) -> Reference {
        Reference::parse_normalized(&format!("{}/{repo}", self.registry.host)).unwrap()
    }

    /// Pushes a tiny image (config blob only; `salt` makes it unique) as `<repo>:v1`; returns its digest.
    pub fn push_image(&self, repo: &str, salt: &str) -> String {
        let repo = self.repo(repo);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"salt":"{salt}"}}"#
        );
        let config_digest = self.client.put_blob(&repo, config.as_bytes()).unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
            config.len()
        );
        self.client
            .put_manifest(&repo, "v1", OCI_MANIFEST, manifest.as_bytes())
            .unwrap()
    }

    /// `cosign generate-key-pair` → `<name>.key`, `<name>.pub` in the work directory.
    pub fn cosign_key_pair(&self, name: &str) {
        self.cosign(&["generate-key-pair", "--output-key-prefix", name])
            .unwrap();
    }

    /// A signbus key: the private key, with `<name>.pub` written.
    pub fn signbus_key(&self, name: &str) -> PrivateKey {
        let k = PrivateKey::generate();
        std::fs::write(self.path(&format!("{name}.pub")), k.public_key().to_pem()).unwrap();
        k
    }

    /// Runs cosign in the work directory with the test password, no Rekor and plain http allowed by the caller.
    pub fn cosign(&self, args: &[&str]) -> Outcome {
        outcome(
            Command::new(&self.cosign)
                .args(args)
                .current_dir(self.dir.path())
                .env("COSIGN_PASSWORD", PASSWORD)
                .env("HOME", self.dir.path())
                .env_remove("REGISTRY_AUTH_FILE")
                .env_remove("DOCKER_CONFIG"),
        )
    }

    /// `cosign sign --key <key>.key` of `<repo>@<digest>` (no Rekor), with extra flags.
    pub fn cosign_sign(&self, key: &str, repo: &str, digest: &str, extra: &[&str]) {
        let image = format!("{}@{digest}", self.repo(repo).name());
        let key = format!("{key}.key");
        let mut args = vec!["sign", "--key", &key, "--tlog-upload=false", "--yes"];
        args.extend(["--allow-http-registry=true"]);
        args.extend(extra);
        args.push(&image);
        self.cosign(&args).unwrap();
    }

    /// `cosign verify --key <key>.pub` of `<repo>@<digest>` (Rekor not consulted).
    pub fn cosign_verify(&self, key: &str, repo: &str, digest: &str) -> Outcome {
        self.cosign(&[
            "verify",
            "--key",
            &format!("{key}.pub"),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry=true",
            &format!("{}@{digest}", self.repo(repo).name()),
        ])
    }

    /// Runs skopeo 1.18 in the chroot with the work directory as its `/tmp` and the bed's registries.d.
    pub fn skopeo(&self, args: &[&str]) -> Outcome {
        let tmp = self.rootfs.join("tmp");
        let mut script = format!(
            "mount --bind {} {} && exec chroot {} skopeo --registries.d /tmp/registries.d.chroot",
            self.dir.path().display(),
            tmp.display(),
            self.rootfs.display()
        );
        for a in args {
            script.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        }
        outcome(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .env("HOME", "/tmp")
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("REGISTRY_AUTH_FILE"),
        )
    }

    /// `skopeo copy --sign-by-sigstore-private-key` of `<repo>:v1` onto itself (signature appended, signed
    /// identity `<repo>:v1`); checks the digest stayed `digest`.
    pub fn skopeo_sign(&self, key: &str, repo: &str, digest: &str) {
        let image = format!("docker://{}:v1", self.repo(repo).name());
        self.skopeo(&[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--remove-signatures",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--sign-by-sigstore-private-key",
            &format!("/tmp/{key}.key"),
            "--sign-passphrase-file",
            "/tmp/pass",
            "--digestfile",
            "/tmp/skopeo.digest",
            &image,
            &image,
        ])
        .unwrap();
        let pushed = std::fs::read_to_string(self.path("skopeo.digest")).unwrap();
        assert_eq!(pushed.trim(), digest, "skopeo changed the image's digest");
    }

    /// Writes `json` (with `@DIR@` for the work directory) as `<name>.json` for signbus and
    /// `<name>.chroot.json` for skopeo.
    pub fn policy(&self, name: &str, json: &str) {
        let host = self.dir.path().to_str().unwrap();
        std::fs::write(
            self.path(&format!("{name}.json")),
            json.replace("@DIR@", host),
        )
        .unwrap();
        std::fs::write(
            self.path(&format!("{name}.chroot.json")),
            json.replace("@DIR@", "/tmp"),
        )
        .unwrap();
    }

    /// A policy whose entry for the registry is `requirements` (JSON list) and that rejects everything else.
    pub fn registry_policy(&self, name: &str, requirements: &str) {
        self.policy(
            name,
            &format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{}":{requirements}}}}}}}"#,
                self.registry.host
            ),
        );
    }

    /// `skopeo copy` of `<repo>:v1` under the policy `<name>`: `Ok` when the policy accepted the image.
    pub fn skopeo_verify(&self, policy: &str, repo: &str) -> Outcome {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        self.skopeo(&[
            "--policy",
            &format!("/tmp/{policy}.chroot.json"),
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}:v1", self.repo(repo).name()),
            &format!("dir:/tmp/copy-{n}"),
        ])
    }

    /// `signbus verify --json` of `<repo>:v1` at `digest` under the policy `<name>`: exit code and report.
    pub fn signbus_verify(
        &self,
        policy: &str,
        repo: &str,
        digest: &str,
    ) -> (i32, serde_json::Value) {
        let (code, out, err) = run(signbus()
            .arg("verify")
            .arg(format!("{}:v1", self.repo(repo).name()))
            .args([
                "--digest",
                digest,
                "--json",
                "--allow-http-registry",
                "--http-timeout",
                "20",
            ])
            .arg("--policy")
            .arg(self.path(&format!("{policy}.json")))
            .arg("--registries-d")
            .arg(self.path("registries.d"))
            .arg("--authfile")
            .arg(self.path("no-auth.json")));
        let report = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("signbus verify printed no JSON ({e}): {out}{err}"));
        (code, report)
    }

    /// Appends one layer with the signbus library (the signature must verify under `key`).
    pub fn attach(&self, repo: &str, digest: &str, payload: &[u8], key: &PrivateKey) {
        signbus::cosign::Attacher::new(&self.client)
            .attach(
                &self.repo(repo),
                digest,
                payload,
                &key.sign(payload),
                &key.public_key(),
            )
            .unwrap();
    }

    /// Writes the `.sig` manifest of `<repo>@<digest>` with exactly these (payload, signature) layers, as
    /// cosign shapes it, checking nothing: for signatures no honest writer makes.
    pub fn put_raw_signatures(&self, repo: &str, digest: &str, layers: &[(Vec<u8>, String)]) {
        let repo = self.repo(repo);
        let mut descriptors = Vec::new();
        for (payload, sig) in layers {
            let d = self.client.put_blob(&repo, payload).unwrap();
            descriptors.push(serde_json::json!({
                "mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "size": payload.len(), "digest": d,
                "annotations": {SIGNATURE_ANNOTATION: sig},
            }));
        }
        let diff_ids: Vec<_> = descriptors.iter().map(|l| l["digest"].clone()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config_digest = self.client.put_blob(&repo, &config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
            "layers": descriptors,
        });
        let tag = signature_tag(digest).unwrap();
        self.client
            .put_manifest(
                &repo,
                &tag,
                OCI_MANIFEST,
                &serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
    }
}

/// A registry client for the loopback registry (plain http).
pub fn client() -> Client {
    Client::new(ClientOptions {
        allow_http: true,
        timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .unwrap()
}

/// The payload cosign would sign for `identity` at `digest`.
pub fn payload(identity: &str, digest: &str) -> Vec<u8> {
    Payload::new(identity, digest, BTreeMap::new())
        .unwrap()
        .to_json()
}

/// The report's requirements as (type, satisfied, reason).
pub fn requirements(report: &serde_json::Value) -> Vec<(String, bool, String)> {
    report["requirements"]
        .as_array()
        .unwrap_or_else(|| panic!("no requirements in {report:#}"))
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap().to_owned(),
                r["satisfied"].as_bool().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The first requirement's signature verdicts as (accepted, reason).
pub fn verdicts(report: &serde_json::Value) -> Vec<(bool, String)> {
    report["requirements"][0]["signatures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["accepted"].as_bool().unwrap(),
                        s["reason"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
