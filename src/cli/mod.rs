//! The command line: one file per command group, each only wiring the library and printing.
//!
//! [`serve`] runs the server, [`msg_sign`] the pubtools-sign-compatible requester commands, [`verify`] checks
//! and publishes signatures, [`docs`] writes completions and man pages. Invoked as
//! `pubtools-sign-msg-container-sign` (a symlink), signbus behaves as that command, busybox style. This is the
//! binary's edge: configuration and the environment are read here, errors become messages and exit codes here.

pub mod cosign_keys;
pub mod cosign_sign;
pub mod docs;
pub mod msg_cosign;
pub mod msg_sign;
mod progress;
pub mod serve;
pub mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use msg_sign::{BlobSignArgs, ClearSignArgs, ContainerSignArgs};
use serve::ServeArgs;

/// signbus: container signing over a message bus.
#[derive(Debug, Parser)]
#[command(name = "signbus", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the signing server.
    Serve(ServeArgs),
    /// Sign container images (pubtools-sign-msg-container-sign).
    MsgContainerSign(ContainerSignArgs),
    /// Clearsign texts (pubtools-sign-msg-clear-sign).
    MsgClearSign(ClearSignArgs),
    /// Make detached signatures of files (pubtools-sign-msg-blob-sign).
    MsgBlobSign(BlobSignArgs),
    /// Sign container images with cosign keys, natively (pubtools-sign-cosign-container-sign).
    CosignContainerSign(cosign_sign::CosignSignArgs),
    /// Sign container images with cosign keys held by the signing server, over the bus; attach the signatures.
    MsgCosignContainerSign(msg_cosign::MsgCosignSignArgs),
    /// Write a cosign key pair (as cosign generate-key-pair does).
    CosignGenerateKeyPair(cosign_keys::GenerateKeyPairArgs),
    /// Check an image's signatures against policy.json (lookaside stores from registries.d).
    Verify(verify::VerifyArgs),
    /// Add a signature to an image's lookaside store (file:// lookaside-staging or lookaside).
    Publish(verify::PublishArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(docs::CompletionsArgs),
    /// Write the man pages (signbus.1 and one per subcommand) into a directory.
    Manpages(docs::ManpagesArgs),
}

/// Signer type.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SignerType {
    Single,
    Batch,
}

/// Maps an argv[0] name to the subcommand it stands for: `pubtools-sign-msg-container-sign` runs
/// `msg-container-sign`; `pubtools-sign` (the bundle) takes the subcommand as its first argument.
pub fn alias_subcommand(argv0: &str) -> Option<&'static str> {
    let base = std::path::Path::new(argv0).file_name()?.to_str()?;
    match base {
        "pubtools-sign-msg-container-sign" => Some("msg-container-sign"),
        "pubtools-sign-msg-clear-sign" => Some("msg-clear-sign"),
        "pubtools-sign-msg-blob-sign" => Some("msg-blob-sign"),
        "pubtools-sign-cosign-container-sign" => Some("cosign-container-sign"),
        _ => None,
    }
}

/// Starts logging on stderr with `filter`, as JSON lines or text.
fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        // One object per line: the event's fields at the top level, the request span's fields (request_id,
        // type, key, requester, trace_id) under "span".
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(a) => serve::run(a).await,
        Command::MsgContainerSign(a) => msg_sign::container_sign(a).await,
        Command::MsgClearSign(a) => msg_sign::clear_sign(a).await,
        Command::MsgBlobSign(a) => msg_sign::blob_sign(a).await,
        Command::CosignContainerSign(a) => cosign_sign::run(a).await,
        Command::MsgCosignContainerSign(a) => msg_cosign::run(a).await,
        Command::CosignGenerateKeyPair(a) => cosign_keys::run(a),
        Command::Verify(a) => verify::run_verify(a).await,
        Command::Publish(a) => verify::run_publish(a).await,
        Command::Completions(a) => docs::run_completions(a),
        Command::Manpages(a) => docs::run_manpages(a),
    }
}

/// The registry auth files, in the order containers-auth.json(5) consults them: `$REGISTRY_AUTH_FILE` alone when
/// set, else `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`, `~/.docker/config.json`.
fn auth_files() -> Vec<std::path::PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    if let Some(f) = var("REGISTRY_AUTH_FILE") {
        return vec![f];
    }
    let mut files = Vec::new();
    if let Some(run) = var("XDG_RUNTIME_DIR") {
        files.push(run.join("containers/auth.json"));
    }
    if let Some(h) = var("HOME") {
        files.push(h.join(".config/containers/auth.json"));
        files.push(h.join(".docker/config.json"));
    }
    files
}

/// Resolves at SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}
