//! registries.d: which lookaside store holds an image's signatures.
//!
//! Owns reading a registries.d directory (containers-registries.d(5)) and choosing, for one image, the
//! lookaside base URL to read from or to write to. It never fetches or writes signatures and never decides
//! whether an image is trusted.
//!
//! Choices, written down:
//! - Files ending in `.yaml` **and** `.yml` are read (containers/image reads only `.yaml`), in name order.
//! - Unknown keys are ignored with a warning, as containers/image ignores them (its YAML decoding is not
//!   strict); a wrong type for a known key is an error.
//! - A scope defined in two files, or `default-docker` in two files, is an error naming both files.
//! - The deprecated `sigstore` / `sigstore-staging` keys work as `lookaside` / `lookaside-staging` (a
//!   `lookaside*` key wins when both are present) and are reported once per load with `tracing::warn!`.
//! - `use-sigstore-attachments` is looked up as containers/image does: the most specific matching scope that
//!   sets it, then `default-docker`; unset everywhere means false ([`RegistriesD::sigstore_attachments`]).

use crate::reference::Reference;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use url::Url;

/// Why a registries.d directory is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistriesError {
    /// The directory or one of its files cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid YAML or has a known key of the wrong type.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The same `docker:` scope appears in two files.
    #[error("registries.d: docker scope {scope:?} is defined both in {} and {}", first.display(), second.display())]
    DuplicateScope {
        /// The scope.
        scope: String,
        /// The file read first.
        first: PathBuf,
        /// The file read second.
        second: PathBuf,
    },
    /// `default-docker` appears in two files.
    #[error("registries.d: \"default-docker\" is defined both in {} and {}", first.display(), second.display())]
    DuplicateDefault {
        /// The file read first.
        first: PathBuf,
        /// The file read second.
        second: PathBuf,
    },
    /// The chosen lookaside value is not a URL.
    #[error("{key} {value:?} (scope {scope} in {}) is not a valid URL: {reason}", file.display())]
    BadUrl {
        /// The key (`lookaside`, `sigstore-staging`, …).
        key: &'static str,
        /// Its value.
        value: String,
        /// The scope it belongs to.
        scope: String,
        /// The file it came from.
        file: PathBuf,
        /// The URL parser's complaint.
        reason: String,
    },
}

/// The settings of one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Namespace {
    /// `lookaside`: where signatures are read (and written, without a staging location).
    #[serde(default)]
    pub lookaside: Option<String>,
    /// `lookaside-staging`: where signatures are written.
    #[serde(default)]
    pub lookaside_staging: Option<String>,
    /// Deprecated `sigstore` (= `lookaside`).
    #[serde(default)]
    pub sigstore: Option<String>,
    /// Deprecated `sigstore-staging` (= `lookaside-staging`).
    #[serde(default)]
    pub sigstore_staging: Option<String>,
    /// `use-sigstore-attachments`: read (and write) sigstore signatures from the registry's `.sig` tag.
    #[serde(default)]
    pub use_sigstore_attachments: Option<bool>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_yaml::Value>,
}

impl Namespace {
    /// The configured base for reading (`write == false`) or writing, with the key it came from.
    fn top_level(&self, write: bool) -> Option<(&'static str, &str)> {
        fn nonempty(o: &Option<String>) -> Option<&str> {
            o.as_deref().filter(|s| !s.is_empty())
        }
        if write {
            if let Some(v) = nonempty(&self.lookaside_staging) {
                return Some(("lookaside-staging", v));
            }
            if let Some(v) = nonempty(&self.sigstore_staging) {
                return Some(("sigstore-staging", v));
            }
        }
        if let Some(v) = nonempty(&self.lookaside) {
            return Some(("lookaside", v));
        }
        nonempty(&self.sigstore).map(|v| ("sigstore", v))
    }

    fn uses_deprecated_keys(&self) -> bool {
        self.sigstore.is_some() || self.sigstore_staging.is_some()
    }
}

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    #[serde(default, rename = "default-docker")]
    default_docker: Option<Namespace>,
    #[serde(default)]
    docker: Option<BTreeMap<String, Namespace>>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_yaml::Value>,
}

/// A lookaside base chosen for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookasideBase {
    /// The base URL, before the repository path is appended.
    pub url: Url,
    /// The key it came from (`lookaside`, `lookaside-staging`, `sigstore`, `sigstore-staging`).
    pub key: &'static str,
    /// `docker: "<scope>"` or `default-docker`.
    pub scope: String,
    /// The file that defined it.
    pub file: PathBuf,
}

/// The merged contents of a registries.d directory.
#[derive(Debug, Clone, Default)]
pub struct RegistriesD {
    default_docker: Option<(Namespace, PathBuf)>,
    docker: BTreeMap<String, (Namespace, PathBuf)>,
}

impl RegistriesD {
    /// Reads every `*.yaml` / `*.yml` file in `dir`. A missing directory is an empty configuration.
    pub fn load_dir(dir: &Path) -> Result<Self, RegistriesError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RegistriesError::Io { path, source }
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if yaml && !path.is_dir() {
                files.push(path);
            }
        }
        files.sort();
        let mut merged = Self::default();
        let mut deprecated = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Removed between listing and reading: as if it had not been listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            let cfg = parse_file(&text).map_err(|message| RegistriesError::Parse {
                path: path.clone(),
                message,
            })?;
            merged.merge(cfg, &path, &mut deprecated)?;
        }
        if !deprecated.is_empty() {
            tracing::warn!(
                files = ?deprecated,
                "registries.d uses the deprecated \"sigstore\"/\"sigstore-staging\" keys; rename them to \"lookaside\"/\"lookaside-staging\""
            );
        }
        Ok(merged)
    }

    /// Parses one file's text as if it were the only file in the directory (handy for tests).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, RegistriesError> {
        let cfg = parse_file(text).map_err(|message| RegistriesError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let mut merged = Self::default();
        merged.merge(cfg, path, &mut Vec::new())?;
        Ok(merged)
    }

    fn merge(
        &mut self,
        cfg: FileConfig,
        path: &Path,
        deprecated: &mut Vec<PathBuf>,
    ) -> Result<(), RegistriesError> {
        let mut unknown: Vec<String> = cfg.unknown.keys().cloned().collect();
        let mut uses_deprecated = false;
        if let Some(ns) = cfg.default_docker {
            if let Some((_, first)) = &self.default_docker {
                return Err(RegistriesError::DuplicateDefault {
                    first: first.clone(),
                    second: path.to_owned(),
                });
            }
            unknown.extend(ns.unknown.keys().map(|k| format!("default-docker.{k}")));
            uses_deprecated |= ns.uses_deprecated_keys();
            self.default_docker = Some((ns, path.to_owned()));
        }
        for (scope, ns) in cfg.docker.unwrap_or_default() {
            if let Some((_, first)) = self.docker.get(&scope) {
                return Err(RegistriesError::DuplicateScope {
                    scope,
                    first: first.clone(),
                    second: path.to_owned(),
                });
            }
            unknown.extend(ns.unknown.keys().map(|k| format!("docker.{scope}.{k}")));
            uses_deprecated |= ns.uses_deprecated_keys();
            self.docker.insert(scope, (ns, path.to_owned()));
        }
        if !unknown.is_empty() {
            tracing::warn!(file = %path.display(), keys = ?unknown, "registries.d: ignoring unknown keys");
        }
        if uses_deprecated {
            deprecated.push(path.to_owned());
        }
        Ok(())
    }

    /// The lookaside base for `image` (reading, or writing when `write`): the exact reference's scope, then
    /// the repository and each namespace upward, the host, `*.domain` wildcards, then `default-docker`. A
    /// scope that matches but has nothing configured for this purpose passes the question on, as in
    /// containers/image. `None` when nothing is configured.
    pub fn lookaside_base(
        &self,
        image: &Reference,
        write: bool,
    ) -> Result<Option<LookasideBase>, RegistriesError> {
        let scopes = image
            .policy_identity()
            .into_iter()
            .chain(image.policy_namespaces());
        for scope in scopes {
            if let Some((ns, file)) = self.docker.get(&scope) {
                if let Some((key, value)) = ns.top_level(write) {
                    return base(key, value, format!("docker: {scope:?}"), file).map(Some);
                }
            }
        }
        if let Some((ns, file)) = &self.default_docker {
            if let Some((key, value)) = ns.top_level(write) {
                return base(key, value, "default-docker".to_owned(), file).map(Some);
            }
        }
        Ok(None)
    }
}

/// Whether sigstore attachments are read for one image, and where that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentsSetting {
    /// The value of `use-sigstore-attachments`.
    pub enabled: bool,
    /// `docker: "<scope>"` or `default-docker`.
    pub scope: String,
    /// The file that set it.
    pub file: PathBuf,
}

impl RegistriesD {
    /// `use-sigstore-attachments` for `image`: the exact reference's scope, the repository and each namespace
    /// upward, the host, `*.domain` wildcards, then `default-docker`; a scope that does not set it passes the
    /// question on (as containers/image). `None` when nothing sets it, which means false.
    pub fn sigstore_attachments(&self, image: &Reference) -> Option<AttachmentsSetting> {
        let scopes = image
            .policy_identity()
            .into_iter()
            .chain(image.policy_namespaces());
        let scoped = scopes.filter_map(|scope| {
            let (ns, file) = self.docker.get(&scope)?;
            Some((
                ns.use_sigstore_attachments?,
                format!("docker: {scope:?}"),
                file,
            ))
        });
        let default = self.default_docker.iter().filter_map(|(ns, file)| {
            Some((
                ns.use_sigstore_attachments?,
                "default-docker".to_owned(),
                file,
            ))
        });
        scoped
            .chain(default)
            .next()
            .map(|(enabled, scope, file)| AttachmentsSetting {
                enabled,
                scope,
                file: file.clone(),
            })
    }
}

fn base(
    key: &'static str,
    value: &str,
    scope: String,
    file: &Path,
) -> Result<LookasideBase, RegistriesError> {
    let url = Url::parse(value).map_err(|e| RegistriesError::BadUrl {
        key,
        value: value.to_owned(),
        scope: scope.clone(),
        file: file.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(LookasideBase {
        url,
        key,
        scope,
        file: file.to_owned(),
    })
}

fn parse_file(text: &str) -> Result<FileConfig, String> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    if v.is_null() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_value(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(cfg: &RegistriesD, image: &str, write: bool) -> Option<String> {
        let r = Reference::parse_normalized(image)
            .unwrap()
            .with_default_tag();
        cfg.lookaside_base(&r, write)
            .unwrap()
            .map(|b| format!("{} {} {}", b.scope, b.key, b.url))
    }

    #[test]
    fn most_specific_scope_wins_and_staging_is_for_writing() {
        let cfg = RegistriesD::from_yaml(
            r#"
default-docker:
  lookaside: file:///default
docker:
  reg.example.com:
    lookaside: https://host/sigs
    lookaside-staging: file:///staging
  reg.example.com/ns:
    sigstore: https://host/ns-sigs
  reg.example.com/ns/only-staging:
    lookaside-staging: file:///only-staging
    use-sigstore-attachments: true
"#,
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(
            lookup(&cfg, "reg.example.com/x:1", false).unwrap(),
            r#"docker: "reg.example.com" lookaside https://host/sigs"#
        );
        assert_eq!(
            lookup(&cfg, "reg.example.com/x:1", true).unwrap(),
            r#"docker: "reg.example.com" lookaside-staging file:///staging"#
        );
        assert_eq!(
            lookup(&cfg, "reg.example.com/ns/x:1", false).unwrap(),
            r#"docker: "reg.example.com/ns" sigstore https://host/ns-sigs"#
        );
        // A matching scope with nothing for reading passes the question to its parent.
        assert_eq!(
            lookup(&cfg, "reg.example.com/ns/only-staging:1", false).unwrap(),
            r#"docker: "reg.example.com/ns" sigstore https://host/ns-sigs"#
        );
        assert_eq!(
            lookup(&cfg, "quay.io/x", false).unwrap(),
            "default-docker lookaside file:///default"
        );
    }

    #[test]
    fn use_sigstore_attachments_comes_from_the_most_specific_scope_that_sets_it() {
        let cfg = RegistriesD::from_yaml(
            r#"
default-docker:
  use-sigstore-attachments: true
docker:
  reg.example.com:
    use-sigstore-attachments: false
  reg.example.com/ns:
    lookaside: file:///x
  reg.example.com/ns/on:
    use-sigstore-attachments: true
"#,
            Path::new("a.yaml"),
        )
        .unwrap();
        let get = |image: &str| {
            let r = Reference::parse_normalized(image)
                .unwrap()
                .with_default_tag();
            cfg.sigstore_attachments(&r)
                .map(|s| format!("{} {}", s.scope, s.enabled))
        };
        assert_eq!(
            get("reg.example.com/ns/on:1").unwrap(),
            r#"docker: "reg.example.com/ns/on" true"#
        );
        // reg.example.com/ns does not set it: its parent decides.
        assert_eq!(
            get("reg.example.com/ns/x:1").unwrap(),
            r#"docker: "reg.example.com" false"#
        );
        assert_eq!(get("quay.io/x").unwrap(), "default-docker true");
        let none =
            RegistriesD::from_yaml("docker: {a.io: {lookaside: 'file:///x'}}", Path::new("x"));
        let r = Reference::parse_normalized("a.io/x:1").unwrap();
        assert_eq!(none.unwrap().sigstore_attachments(&r), None);
    }

    #[test]
    fn wrong_types_are_errors_unknown_keys_are_not() {
        assert!(
            RegistriesD::from_yaml("docker: {a.io: {lookaside: [1]}}", Path::new("x")).is_err()
        );
        assert!(RegistriesD::from_yaml("docker: [1]", Path::new("x")).is_err());
        assert!(RegistriesD::from_yaml(
            "future: 1\ndocker: {a.io: {lookaside: 'file:///x', other: 2}}",
            Path::new("x")
        )
        .is_ok());
        assert!(RegistriesD::from_yaml("# only a comment\n", Path::new("x")).is_ok());
    }
}
