//! The `verify` and `publish` commands: argument parsing, default paths, output and exit codes.
//!
//! Meant to be included from `src/main.rs` as `mod cli_verify;` and wired into the `Command` enum as
//! `Verify(cli_verify::VerifyArgs)` and `Publish(cli_verify::PublishArgs)`. This is the binary's edge: it is the
//! only place that looks at `$HOME`, `/etc/containers` or the effective uid; the library gets explicit paths.

use anyhow::{Context as _, Result};
use clap::Args;
use signbus::registry::{ClientOptions, Credentials};
use signbus::store::{self, PublishOutcome};
use signbus::verify::lookaside::FetchLimits;
use signbus::verify::policy::Policy;
use signbus::verify::registries_d::RegistriesD;
use signbus::verify::{self, ImageDigest, Verifier, VerifyError};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SYSTEM_POLICY: &str = "/etc/containers/policy.json";
pub(crate) const SYSTEM_REGISTRIES_D: &str = "/etc/containers/registries.d";
const USER_POLICY: &str = ".config/containers/policy.json";
pub(crate) const USER_REGISTRIES_D: &str = ".config/containers/registries.d";
const ROOT_LOOKASIDE: &str = "/var/lib/containers/sigstore";
const USER_LOOKASIDE: &str = ".local/share/containers/sigstore";

/// Exit code for a usage error.
const USAGE: i32 = 2;

/// `signbus verify`: does policy.json accept this image, given its signatures?
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Image reference, e.g. registry.example.com/ns/repo:tag (docker transport; `latest` when untagged).
    pub image: String,
    /// Manifest digest of the image (sha256:…). Optional when --manifest is given or the reference has @digest.
    #[arg(long)]
    pub digest: Option<String>,
    /// The image's manifest; its digest must agree with --digest when both are given.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// policy.json [default: ~/.config/containers/policy.json if present, else /etc/containers/policy.json].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// registries.d directory [default: ~/.config/containers/registries.d if present, else
    /// /etc/containers/registries.d].
    #[arg(long = "registries-d")]
    pub registries_d: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Most signatures read from the lookaside store (and signature layers from the registry).
    #[arg(long, default_value_t = 128)]
    pub max_signatures: usize,
    /// Largest signature accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_signature_size: u64,
    /// Timeout of each HTTP request to the lookaside store or the registry, in seconds.
    #[arg(long, default_value_t = 30)]
    pub http_timeout: u64,
    /// PEM bundle of the CAs trusted for https lookaside stores and for the registry holding sigstore
    /// attachments (default: the system bundle, /etc/ssl/certs/ca-certificates.crt, as podman and skopeo).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// containers-auth.json(5) file with registry credentials for reading sigstore attachments; repeatable,
    /// the first file with an entry for the registry wins [default: $REGISTRY_AUTH_FILE if set, else
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, ~/.docker/config.json].
    #[arg(long = "authfile", value_name = "FILE")]
    pub auth_files: Vec<PathBuf>,
    /// Read sigstore attachments over plain http when the registry does not answer https (cosign's
    /// --allow-http-registry; for test and local registries only).
    #[arg(long)]
    pub allow_http_registry: bool,
}

/// `signbus publish`: add a signature to the image's lookaside store (file:// only for now).
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Image reference the signature is for, e.g. registry.example.com/ns/repo:tag.
    #[arg(long)]
    pub reference: String,
    /// Manifest digest of the image (sha256:…).
    #[arg(long)]
    pub digest: String,
    /// The signature blob, or `-` for standard input.
    #[arg(long)]
    pub signature: PathBuf,
    /// registries.d directory [default: ~/.config/containers/registries.d if present, else
    /// /etc/containers/registries.d].
    #[arg(long = "registries-d")]
    pub registries_d: Option<PathBuf>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The user's file when it exists, else the system one (podman's rule).
pub(crate) fn user_or_system(explicit: Option<PathBuf>, user: &str, system: &str) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    if let Some(p) = home().map(|h| h.join(user)).filter(|p| p.exists()) {
        return p;
    }
    PathBuf::from(system)
}

/// containers/image's built-in lookaside when registries.d names none: per user, or system-wide for root.
fn default_lookaside() -> Option<url::Url> {
    use std::os::unix::fs::MetadataExt as _;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let dir = if root {
        PathBuf::from(ROOT_LOOKASIDE)
    } else {
        home()?.join(USER_LOOKASIDE)
    };
    url::Url::from_file_path(dir).ok()
}

fn usage_error(json: bool, msg: &str) -> i32 {
    eprintln!("error: {msg}");
    if json {
        println!("{}", serde_json::json!({"accepted": false, "error": msg}));
    }
    USAGE
}

/// Runs `signbus verify`. Exit code 0 when the policy accepts the image, 1 when it does not or verification
/// failed, 2 for usage errors.
pub async fn run_verify(args: VerifyArgs) -> Result<i32> {
    init_logging();
    tokio::task::spawn_blocking(move || verify_blocking(args))
        .await
        .context("verification task")?
}

fn verify_blocking(args: VerifyArgs) -> Result<i32> {
    let image = match verify::image_reference(&args.image) {
        Ok(r) => r,
        Err(e) => return Ok(usage_error(args.json, &e.to_string())),
    };
    let manifest = match &args.manifest {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let digest = match ImageDigest::new(image.digest(), args.digest.as_deref(), manifest) {
        Ok(d) => d,
        Err(e @ (VerifyError::BadDigest(_) | VerifyError::NoDigest)) => {
            return Ok(usage_error(args.json, &e.to_string()))
        }
        Err(e) => return Ok(failure(args.json, &e.to_string())),
    };
    let policy_path = user_or_system(args.policy.clone(), USER_POLICY, SYSTEM_POLICY);
    let registries_path = user_or_system(
        args.registries_d.clone(),
        USER_REGISTRIES_D,
        SYSTEM_REGISTRIES_D,
    );
    let policy = match load_policy(&policy_path) {
        Ok(p) => p,
        Err(e) => return Ok(failure(args.json, &format!("{e:#}"))),
    };
    let registries = match RegistriesD::load_dir(&registries_path) {
        Ok(r) => r,
        Err(e) => return Ok(failure(args.json, &e.to_string())),
    };
    let verifier = Verifier {
        policy: &policy,
        registries: &registries,
        default_lookaside: default_lookaside(),
        limits: FetchLimits {
            max_signatures: args.max_signatures,
            max_signature_bytes: args.max_signature_size,
            http_timeout: Duration::from_secs(args.http_timeout),
            ca_cert: args.ca_cert.clone(),
        },
        registry: ClientOptions {
            tls: signbus::tls::TlsConfig {
                ca_cert: args.ca_cert.clone(),
                cert_key: None,
            },
            allow_http: args.allow_http_registry,
            credentials: Credentials::AuthFiles(if args.auth_files.is_empty() {
                super::auth_files()
            } else {
                args.auth_files.clone()
            }),
            timeout: Duration::from_secs(args.http_timeout),
            ..ClientOptions::default()
        },
    };
    let report = match verifier.verify(&image, &digest) {
        Ok(r) => r,
        Err(e) => return Ok(failure(args.json, &e.to_string())),
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["policy_file"] = serde_json::json!(policy_path.display().to_string());
        v["registries_d"] = serde_json::json!(registries_path.display().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("policy file: {}", policy_path.display());
        println!("registries.d: {}", registries_path.display());
        print!("{}", report.to_text());
    }
    Ok(if report.accepted { 0 } else { 1 })
}

fn failure(json: bool, msg: &str) -> i32 {
    eprintln!("error: {msg}");
    if json {
        println!("{}", serde_json::json!({"accepted": false, "error": msg}));
    }
    1
}

fn load_policy(path: &Path) -> Result<Policy> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Policy::parse(&bytes).with_context(|| format!("policy {}", path.display()))
}

/// Runs `signbus publish`. Exit code 0 when the signature is stored (or already was), 1 on failure, 2 for usage
/// errors.
pub async fn run_publish(args: PublishArgs) -> Result<i32> {
    init_logging();
    tokio::task::spawn_blocking(move || publish_blocking(args))
        .await
        .context("publish task")?
}

fn publish_blocking(args: PublishArgs) -> Result<i32> {
    let image = match verify::image_reference(&args.reference) {
        Ok(r) => r,
        Err(e) => return Ok(usage_error(false, &e.to_string())),
    };
    if let Err(e) = signbus::reference::validate_digest(&args.digest) {
        return Ok(usage_error(false, &e.to_string()));
    }
    if let Some(d) = image.digest().filter(|d| *d != args.digest) {
        return Ok(usage_error(
            false,
            &format!("the reference names {d} but --digest is {}", args.digest),
        ));
    }
    let blob = if args.signature.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("reading the signature from standard input")?;
        b
    } else {
        std::fs::read(&args.signature)
            .with_context(|| format!("reading {}", args.signature.display()))?
    };
    // The store keeps bytes as given; the command refuses what can never verify (a claim, a detached or
    // cleartext signature) before it takes a signature-N.
    if let Err(e) = signbus::verify::gpg::signed_message_bytes(&blob) {
        eprintln!(
            "error: refusing to publish {}: {e}",
            args.signature.display()
        );
        return Ok(1);
    }
    let registries_path = user_or_system(args.registries_d, USER_REGISTRIES_D, SYSTEM_REGISTRIES_D);
    let registries = RegistriesD::load_dir(&registries_path)?;
    match store::publish(&registries, &image, &args.digest, &blob) {
        Ok(PublishOutcome::Written { index, path }) => {
            println!("published signature-{index}: {}", path.display());
            Ok(0)
        }
        Ok(PublishOutcome::AlreadyPresent { index, path }) => {
            println!(
                "already published as signature-{index}: {} (nothing written)",
                path.display()
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e} (registries.d {})", registries_path.display());
            Ok(1)
        }
    }
}
