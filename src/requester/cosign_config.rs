//! The `cosign_signer` section of pubtools-sign's YAML file, every key pubtools-sign 1.0.6 accepts with its
//! default, unknown keys refused by name (pubtools-sign's schema refuses them too). Parsing only: what the keys
//! make signbus do is [`super::cosign`]'s.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `cosign_signer` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CosignSignerConfig {
    /// The cosign binary run where signbus cannot sign natively (KMS keys, `upload_tlog`,
    /// `allow_insecure_registry`).
    pub cosign_bin: String,
    /// Time limit of one registry operation (Go duration: `3m0s`, `90s`, `1h`); passed as cosign's `-t`.
    pub timeout: String,
    /// Image references signed at once.
    pub num_threads: usize,
    /// Plain http registries are allowed.
    pub allow_http_registry: bool,
    /// Registries with TLS certificates that do not verify are allowed (only through `cosign_bin`).
    pub allow_insecure_registry: bool,
    /// Transparency log (only through `cosign_bin`).
    pub rekor_url: String,
    /// Upload each signature to `rekor_url` (only through `cosign_bin`; pubtools-sign's default is true).
    pub upload_tlog: bool,
    /// Log level name (debug, info, warning, error).
    pub log_level: String,
    /// Environment for signing: `COSIGN_PASSWORD` here overrides the process environment; all are passed to
    /// `cosign_bin`.
    pub env_variables: BTreeMap<String, String>,
    /// Alias → key file or KMS URI.
    pub key_aliases: BTreeMap<String, String>,
    /// Registry user for basic auth (with `registry_password`); empty: the auth files.
    pub registry_user: String,
    /// Registry password for basic auth.
    pub registry_password: String,
    /// Tries per signature when the registry (or `cosign_bin`) fails in a way that may pass.
    pub retries: u32,
}

impl Default for CosignSignerConfig {
    fn default() -> Self {
        CosignSignerConfig {
            cosign_bin: "/usr/bin/cosign".into(),
            timeout: "3m0s".into(),
            num_threads: 10,
            allow_http_registry: false,
            allow_insecure_registry: false,
            rekor_url: "https://rekor.sigstore.dev".into(),
            upload_tlog: true,
            log_level: "info".into(),
            env_variables: BTreeMap::new(),
            key_aliases: BTreeMap::new(),
            registry_user: String::new(),
            registry_password: String::new(),
            retries: 5,
        }
    }
}

impl CosignSignerConfig {
    /// `timeout` as a duration, or the reason it is not a Go duration.
    pub fn timeout(&self) -> Result<Duration, String> {
        parse_go_duration(&self.timeout)
            .map_err(|e| format!("cosign_signer.timeout {:?}: {e}", self.timeout))
    }
}

/// Parses a Go `time.Duration` string (`3m0s`, `1.5h`, `250ms`, `0`): numbers with units `ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`, without a sign.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a number without a unit")?;
        let value: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..n]))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?}")),
        };
        total += value * seconds;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_reads_them() {
        let s = Duration::from_secs;
        assert_eq!(parse_go_duration("3m0s").unwrap(), s(180));
        assert_eq!(parse_go_duration("1h30m").unwrap(), s(5400));
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "3", "3x", "-1s", "m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_pubtools_sign_key_is_accepted_with_its_default_and_others_refused() {
        let c: CosignSignerConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c, CosignSignerConfig::default());
        assert!(c.upload_tlog && c.num_threads == 10 && c.retries == 5);
        let full = "{cosign_bin: /c, timeout: 10s, num_threads: 2, allow_http_registry: true, \
                    allow_insecure_registry: false, rekor_url: 'http://r', upload_tlog: false, log_level: debug, \
                    env_variables: {COSIGN_PASSWORD: x}, key_aliases: {prod: /k}, registry_user: u, \
                    registry_password: p, retries: 1}";
        let c: CosignSignerConfig = serde_yaml::from_str(full).unwrap();
        assert_eq!(c.timeout().unwrap(), Duration::from_secs(10));
        let e = serde_yaml::from_str::<CosignSignerConfig>("{registry_auth_file: a}").unwrap_err();
        assert!(e.to_string().contains("registry_auth_file"), "{e}");
    }
}
