//! `cosign-container-sign`: pubtools-sign 1.0.6's cosign signer, done natively.
//!
//! [`plan`] pairs the inputs and decides, key by key, whether signbus signs itself or runs `cosign_bin`;
//! [`load_keys`] decrypts the key files once; [`run`] makes every signature (groups of one `repo@digest` in
//! order, groups concurrently on `num_threads`); [`document`] prints pubtools-sign's JSON or `--raw` lines.
//! Nothing here reads the environment or configuration files: the binary's edge passes the password, the
//! auth file paths and a function that reads key files.

pub mod document;
pub mod plan;
pub mod run;

pub use plan::{Fallback, Plan, SignInput, Way};
pub use run::{sign_all, Outcome};

use super::cosign_config::CosignSignerConfig;
use crate::cosign::{KeyError, PrivateKey};
use crate::registry::{ClientOptions, Credentials};
use crate::signing::secret::Passphrase;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Why nothing was signed. Each is about the input, the configuration or the keys: fix it and run again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CosignError {
    /// A `--digest`, `--reference`, `--identity` or `--signing-key` is malformed or unpaired.
    #[error("{0}")]
    Input(String),
    /// The `cosign_signer` section has a value signbus cannot use.
    #[error("{0}")]
    Config(String),
    /// A key file cannot be read: a missing file, or an alias that is not in `key_aliases`.
    #[error("--signing-key {given:?}: cannot read {path}: {reason} (it is not a key_aliases entry either)")]
    KeyUnreadable {
        given: String,
        path: String,
        reason: String,
    },
    /// A key file that does not open: a wrong password, a damaged file, a key of another type.
    #[error("--signing-key {given:?} ({path}): {reason}{hint}")]
    Key {
        given: String,
        path: String,
        reason: KeyError,
        hint: &'static str,
    },
}

/// The password for the keys: `env_variables.COSIGN_PASSWORD` when configured (as pubtools-sign lets it
/// override the environment), else `from_env` (the process's `COSIGN_PASSWORD`, read at the edge).
pub fn password(cfg: &CosignSignerConfig, from_env: Option<Vec<u8>>) -> Option<Passphrase> {
    cfg.env_variables
        .get("COSIGN_PASSWORD")
        .map(|p| p.as_bytes().to_vec())
        .or(from_env)
        .map(Passphrase::from_bytes)
}

/// Decrypts every key the plan signs with natively, once each (`read` reads a key file; the edge passes it):
/// one entry per [`Plan::keys`], `None` for keys `cosign_bin` uses. Without a password, the empty one is tried.
pub fn load_keys(
    plan: &Plan,
    password: Option<&Passphrase>,
    read: impl Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<Option<PrivateKey>>, CosignError> {
    let empty = Passphrase::from_bytes(Vec::new());
    let mut loaded: HashMap<&str, PrivateKey> = HashMap::new();
    let mut out = Vec::new();
    for k in &plan.keys {
        if k.way != Way::Native {
            out.push(None);
            continue;
        }
        if let Some(key) = loaded.get(k.resolved.as_str()) {
            out.push(Some(key.clone()));
            continue;
        }
        let bytes = read(&k.resolved).map_err(|e| CosignError::KeyUnreadable {
            given: k.given.clone(),
            path: k.resolved.clone(),
            reason: e.to_string(),
        })?;
        let key = PrivateKey::from_encrypted_pem(&bytes, password.unwrap_or(&empty)).map_err(
            |reason| CosignError::Key {
                given: k.given.clone(),
                path: k.resolved.clone(),
                hint: match (&reason, password) {
                    (KeyError::WrongPassword, None) => " (COSIGN_PASSWORD is not set)",
                    _ => "",
                },
                reason,
            },
        )?;
        loaded.insert(&k.resolved, key.clone());
        out.push(Some(key));
    }
    Ok(out)
}

/// How to reach the registries: `timeout`, `allow_http_registry`, and basic auth from `registry_user` /
/// `registry_password` when set, else the containers auth files `auth_files` (the edge lists them:
/// `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`).
pub fn client_options(
    cfg: &CosignSignerConfig,
    auth_files: Vec<PathBuf>,
) -> Result<ClientOptions, CosignError> {
    let timeout = cfg.timeout().map_err(CosignError::Config)?;
    if cfg.num_threads == 0 {
        return Err(CosignError::Config(
            "cosign_signer.num_threads must be at least 1".into(),
        ));
    }
    let credentials = if cfg.registry_user.is_empty() {
        Credentials::AuthFiles(auth_files)
    } else {
        Credentials::Basic {
            username: cfg.registry_user.clone(),
            password: Arc::new(Passphrase::from_bytes(
                cfg.registry_password.as_bytes().to_vec(),
            )),
        }
    };
    Ok(ClientOptions {
        allow_http: cfg.allow_http_registry,
        credentials,
        timeout: if timeout.is_zero() {
            ClientOptions::default().timeout
        } else {
            timeout
        },
        ..Default::default()
    })
}
