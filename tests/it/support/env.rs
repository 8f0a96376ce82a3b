//! The test environment: the values `testenv/up.sh` exports in `testenv/.run/env` (one loader for every test),
//! the protocols this run of the suite speaks, and unique names. A missing testenv is a test failure, never a
//! skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The repository's `testenv/` directory.
pub fn testenv_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testenv")
}

/// Values exported by `testenv/up.sh` in `testenv/.run/env`.
pub struct Env {
    pub vars: HashMap<String, String>,
}

impl Env {
    pub fn load() -> Env {
        Env::load_file(&testenv_dir().join(".run/env"))
    }

    /// Reads an env file of `export K=V` lines (testenv/.run/env, testenv/.run/cluster/env).
    pub fn load_file(path: &Path) -> Env {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}. The integration tests need the test environment (broker, gpg keys): run testenv/up.sh \
                 first",
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

    pub fn amqp_url(&self) -> &str {
        self.get("SIGNBUS_AMQP_URL")
    }

    /// The fingerprint of the testenv's ed25519 signing key.
    pub fn key_ed25519(&self) -> &str {
        self.get("SIGNBUS_TEST_KEY")
    }

    /// The fingerprint of the testenv's RSA signing key.
    pub fn key_rsa(&self) -> &str {
        self.get("SIGNBUS_TEST_KEY_RSA")
    }

    /// `testenv/.run` of the checkout that brought the testenv up (keys/, tls/, scripts' state).
    pub fn run_dir(&self) -> PathBuf {
        PathBuf::from(self.get("SIGNBUS_TESTENV_DIR"))
    }

    /// Binary public keyring of the ed25519 key.
    pub fn ed25519_pub(&self) -> PathBuf {
        self.public_keyring("ed25519.pub.gpg")
    }

    /// Binary public keyring of the RSA key.
    pub fn rsa_pub(&self) -> PathBuf {
        self.public_keyring("rsa.pub.gpg")
    }

    /// The armored secret key file (`gpg --armor --export-secret-keys`) of the key `fingerprint`, one of the
    /// four testenv keys, for the in-process backend.
    pub fn secret_key_file(&self, fingerprint: &str) -> &str {
        let var = [
            ("SIGNBUS_TEST_KEY", "SIGNBUS_TEST_SECRET_KEY_FILE"),
            ("SIGNBUS_TEST_KEY_RSA", "SIGNBUS_TEST_SECRET_KEY_FILE_RSA"),
            (
                "SIGNBUS_TEST_PASSPHRASE_KEY",
                "SIGNBUS_TEST_PASSPHRASE_SECRET_KEY_FILE",
            ),
            (
                "SIGNBUS_TEST_PASSPHRASE_KEY_RSA",
                "SIGNBUS_TEST_PASSPHRASE_SECRET_KEY_FILE_RSA",
            ),
        ]
        .into_iter()
        .find(|(key, _)| self.get(key) == fingerprint)
        .unwrap_or_else(|| panic!("{fingerprint} is not a testenv key"))
        .1;
        self.get(var)
    }

    /// What a server's `signing` section says for the key `fingerprint` besides its id, name and aliases
    /// under [`backend`]: nothing for gpgme, its `secret_key_file` for in-process (a YAML flow-mapping member,
    /// with its leading comma).
    pub fn key_source(&self, fingerprint: &str) -> String {
        match backend().as_str() {
            "in-process" => format!(
                ", secret_key_file: \"{}\"",
                self.secret_key_file(fingerprint)
            ),
            _ => String::new(),
        }
    }

    fn public_keyring(&self, name: &str) -> PathBuf {
        let p = self.run_dir().join("keys").join(name);
        assert!(p.exists(), "{} missing: run testenv/up.sh", p.display());
        p
    }
}

/// The signing backend the test servers run: `SIGNBUS_TEST_BACKEND` (`gpgme`, the default, or `in-process`).
/// The broker-facing suite runs with each (see testenv/test.sh).
pub fn backend() -> String {
    let b = std::env::var("SIGNBUS_TEST_BACKEND").unwrap_or_else(|_| "gpgme".into());
    assert!(
        matches!(b.as_str(), "gpgme" | "in-process"),
        "SIGNBUS_TEST_BACKEND={b:?}: gpgme or in-process"
    );
    b
}

/// The protocol the test servers speak: `SIGNBUS_TEST_PROTOCOL` (`amqp1`, the default, or `amqp091`). The
/// same suite runs once per protocol combination (see testenv/test.sh).
pub fn server_protocol() -> String {
    std::env::var("SIGNBUS_TEST_PROTOCOL").unwrap_or_else(|_| "amqp1".into())
}

/// The protocol the test requesters speak: `SIGNBUS_TEST_REQUESTER_PROTOCOL`, default the server's.
pub fn requester_protocol() -> String {
    std::env::var("SIGNBUS_TEST_REQUESTER_PROTOCOL").unwrap_or_else(|_| server_protocol())
}

pub fn protocol_of(name: &str) -> signbus::transport::Protocol {
    match name {
        "amqp091" => signbus::transport::Protocol::Amqp091,
        "amqp1" => signbus::transport::Protocol::Amqp1,
        other => panic!("unknown protocol {other:?} (amqp1 or amqp091)"),
    }
}

/// A unique name for this test's queues and task ids.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The testenv's TLS URL in `protocol`'s scheme (`amqps://` for AMQP 1.0, `amqps091://` for 0-9-1).
pub fn tls_url(env: &Env, protocol: &str) -> String {
    let amqps = env.get("SIGNBUS_AMQPS_URL");
    match protocol {
        "amqp091" => amqps.replacen("amqps://", "amqps091://", 1),
        _ => amqps.to_owned(),
    }
}
