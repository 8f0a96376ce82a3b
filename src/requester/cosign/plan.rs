//! What `cosign-container-sign` will sign, decided before anything is signed: pubtools-sign 1.0.6's pairing of
//! `--reference`, `--identity` and `--digest`, its key aliases, its order of results, and which signatures
//! signbus makes itself and which it leaves to `cosign_bin`. Every input is checked here, so bad input signs
//! nothing. Pure: no I/O.

use super::super::cosign_config::CosignSignerConfig;
use super::CosignError;
use crate::reference::{validate_digest, Reference};
use std::fmt;

/// The command's inputs, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignInput {
    pub digests: Vec<String>,
    pub references: Vec<String>,
    pub identities: Vec<String>,
    pub signing_keys: Vec<String>,
}

/// Why a signature is made by `cosign_bin` instead of natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The key is a KMS or other URI (`awskms://`, `gcpkms://`, `hashivault://`, `k8s://`, `pkcs11:`, …).
    KeyUri,
    /// `upload_tlog: true`: the signature goes to a transparency log too.
    UploadTlog,
    /// `allow_insecure_registry: true`: TLS certificates that do not verify are accepted.
    InsecureRegistry,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fallback::KeyUri => "the key is a KMS/URI reference",
            Fallback::UploadTlog => "upload_tlog is true",
            Fallback::InsecureRegistry => "allow_insecure_registry is true",
        })
    }
}

/// How a key's signatures are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// signbus signs and attaches itself.
    Native,
    /// `cosign_bin` runs with pubtools-sign's argv.
    CosignBin(Fallback),
}

impl Way {
    /// The name printed in the output's `signed_with` member: `signbus` or `cosign_bin`.
    pub fn name(&self) -> &'static str {
        match self {
            Way::Native => "signbus",
            Way::CosignBin(_) => "cosign_bin",
        }
    }
}

/// One `--signing-key`, resolved through `key_aliases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedKey {
    /// As given on the command line.
    pub given: String,
    /// After `key_aliases`: a key file path or a URI.
    pub resolved: String,
    pub way: Way,
}

/// One signature to make: one image under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Index into [`Plan::keys`].
    pub key: usize,
    /// `repo@digest` as cosign is given it (the reference's text before its tag, or the `--digest` as given).
    pub target: String,
    /// The repository, normalised.
    pub repo: Reference,
    pub digest: String,
    /// `--identity`, when given for this image.
    pub identity: Option<String>,
    /// The reference's tag (signed as the `tag` annotation), when `--reference` was given.
    pub tag: Option<String>,
}

/// Everything to sign, in pubtools-sign's order of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub keys: Vec<PlannedKey>,
    /// In the order their results are printed: key by key, then image by image grouped by `repo@digest`.
    pub jobs: Vec<Job>,
    /// Job indices per `repo@digest`: groups run concurrently, the jobs of one group in order.
    pub groups: Vec<Vec<usize>>,
}

/// True when `key` is no file but something only cosign can reach: `pkcs11:…` or `<scheme>://…`.
pub fn is_key_uri(key: &str) -> bool {
    key.starts_with("pkcs11:")
        || key.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// An image to sign, before keys multiply it.
struct Image {
    target: String,
    repo: Reference,
    digest: String,
    identity: Option<String>,
    tag: Option<String>,
}

impl Plan {
    /// Pairs and checks `input` as pubtools-sign does (and refuses what makes it crash or sign the wrong thing).
    pub fn new(input: &SignInput, cfg: &CosignSignerConfig) -> Result<Plan, CosignError> {
        let invalid = |m: String| CosignError::Input(m);
        if input.signing_keys.is_empty() || input.digests.is_empty() {
            return Err(invalid(
                "give at least one --signing-key and one --digest".into(),
            ));
        }
        let images = if input.references.is_empty() {
            pair_digests(input)?
        } else {
            pair_references(input)?
        };
        let keys = input
            .signing_keys
            .iter()
            .map(|given| {
                let resolved = cfg.key_aliases.get(given).unwrap_or(given).clone();
                if resolved.is_empty() {
                    return Err(invalid(format!("--signing-key {given:?} is empty")));
                }
                let way = if is_key_uri(&resolved) {
                    Way::CosignBin(Fallback::KeyUri)
                } else if cfg.upload_tlog {
                    Way::CosignBin(Fallback::UploadTlog)
                } else if cfg.allow_insecure_registry {
                    Way::CosignBin(Fallback::InsecureRegistry)
                } else {
                    Way::Native
                };
                Ok(PlannedKey {
                    given: given.clone(),
                    resolved,
                    way,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Images grouped by target, in order of first appearance (pubtools-sign's dict of groups).
        let mut by_target: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, image) in images.iter().enumerate() {
            match by_target.iter_mut().find(|(t, _)| *t == image.target) {
                Some((_, members)) => members.push(i),
                None => by_target.push((image.target.clone(), vec![i])),
            }
        }
        let mut jobs = Vec::new();
        let mut groups = vec![Vec::new(); by_target.len()];
        for key in 0..keys.len() {
            for (g, (_, members)) in by_target.iter().enumerate() {
                for &i in members {
                    let image = &images[i];
                    groups[g].push(jobs.len());
                    jobs.push(Job {
                        key,
                        target: image.target.clone(),
                        repo: image.repo.clone(),
                        digest: image.digest.clone(),
                        identity: image.identity.clone(),
                        tag: image.tag.clone(),
                    });
                }
            }
        }
        Ok(Plan { keys, jobs, groups })
    }
}

/// The identity for image `i`, checked; `None` when not given (or given empty, as pubtools-sign skips it).
fn identity(input: &SignInput, i: usize) -> Result<Option<String>, CosignError> {
    match input.identities.get(i).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(id) => match Reference::parse_normalized(id) {
            Ok(_) => Ok(Some(id.clone())),
            Err(e) => Err(CosignError::Input(format!(
                "--identity {id:?} is not an image reference: {e}"
            ))),
        },
    }
}

fn too_many_identities(input: &SignInput, images: usize, what: &str) -> Result<(), CosignError> {
    if input.identities.len() > images {
        return Err(CosignError::Input(format!(
            "{} --identity values for {images} {what} values: each identity pairs with one {what}",
            input.identities.len()
        )));
    }
    Ok(())
}

/// `--reference` with `--digest` (and `--identity`), zipped in order.
fn pair_references(input: &SignInput) -> Result<Vec<Image>, CosignError> {
    let (d, r) = (input.digests.len(), input.references.len());
    if d != r {
        return Err(CosignError::Input(format!(
            "{d} --digest values but {r} --reference values: digests must pair with references"
        )));
    }
    too_many_identities(input, r, "--reference")?;
    let mut images = Vec::new();
    for (i, (reference, digest)) in input.references.iter().zip(&input.digests).enumerate() {
        validate_digest(digest)
            .map_err(|e| CosignError::Input(format!("--digest {digest:?}: {e}")))?;
        let bad = |why: String| CosignError::Input(format!("--reference {reference:?}: {why}"));
        let parsed = Reference::parse_normalized(reference).map_err(|e| bad(e.to_string()))?;
        if parsed.digest().is_some() {
            return Err(bad(
                "give a tag, not a digest (the digest is --digest)".into()
            ));
        }
        // A tag is required: pubtools-sign splits at the last ':', which without a tag is a registry port.
        let Some(tag) = parsed.tag() else {
            return Err(bad("has no tag (expected repository:tag)".into()));
        };
        let repo_text = &reference[..reference.len() - tag.len() - 1];
        let repo = Reference::parse_normalized(repo_text).map_err(|e| bad(e.to_string()))?;
        images.push(Image {
            target: format!("{repo_text}@{digest}"),
            repo,
            digest: digest.clone(),
            identity: identity(input, i)?,
            tag: Some(tag.to_owned()),
        });
    }
    Ok(images)
}

/// `--digest` values that are whole `repo@digest` references (no `--reference`), with `--identity`.
fn pair_digests(input: &SignInput) -> Result<Vec<Image>, CosignError> {
    too_many_identities(input, input.digests.len(), "--digest")?;
    let mut images = Vec::new();
    for (i, target) in input.digests.iter().enumerate() {
        let bad = |why: String| CosignError::Input(format!("--digest {target:?}: {why}"));
        let parsed = Reference::parse_normalized(target).map_err(|e| bad(e.to_string()))?;
        let (Some(digest), None) = (parsed.digest(), parsed.tag()) else {
            return Err(bad(
                "without --reference each --digest must be repository@sha256:<hex>".into(),
            ));
        };
        let repo = Reference::parse_normalized(&target[..target.len() - digest.len() - 1])
            .map_err(|e| bad(e.to_string()))?;
        images.push(Image {
            target: target.clone(),
            repo,
            digest: digest.to_owned(),
            identity: identity(input, i)?,
            tag: None,
        });
    }
    Ok(images)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
