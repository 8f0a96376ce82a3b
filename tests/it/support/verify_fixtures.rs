//! Fixtures for the `verify_*` tests: claims and manifests, real gpg signatures made with the testenv keys in a
//! file:// lookaside store, registries.d and policy files. A missing testenv is a test failure, never a skip.

use super::env::Env;
use super::gpg::{gpg_sign, Mode};
use signbus::claim::Claim;
use signbus::reference::Reference;
use signbus::verify::lookaside::FetchLimits;
use signbus::verify::policy::Policy;
use signbus::verify::registries_d::RegistriesD;
use signbus::verify::{self, ImageDigest, Report, Verifier, VerifyError};
use std::path::PathBuf;

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
            registry: Default::default(),
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
