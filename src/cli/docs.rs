//! Documentation generated from the clap definitions: `signbus completions <shell>` prints a shell completion
//! script, `signbus manpages <dir>` writes `signbus.1` and one page per subcommand (`signbus-serve.1`, …).
//!
//! This module owns only that generation; the commands themselves are defined in `cli.rs` and `cli_verify.rs`,
//! so completions and pages follow every flag change without edits here. The scripts and pages always name the
//! program `signbus` (the pubtools-sign-* argv[0] aliases are symlinks to it, with their own flags documented
//! on the `signbus-msg-*` pages). The Debian package (`deploy/deb/build.sh`) installs what this writes.

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The program name completions and pages are written for.
const BIN: &str = "signbus";

/// `signbus completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `signbus manpages`.
#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// The whole command tree as clap sees it, named `signbus`.
fn command() -> clap::Command {
    crate::cli::Cli::command().bin_name(BIN)
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut command(), BIN, out);
}

/// Writes `signbus.1` and `signbus-<subcommand>.1` for every visible subcommand into `dir`; returns the paths.
pub fn write_manpages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut root = command().disable_help_subcommand(true);
    root.build();
    let mut written = Vec::new();
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(page(sub.clone(), dir)?);
    }
    written.insert(0, page(root, dir)?);
    Ok(written)
}

fn page(cmd: clap::Command, dir: &Path) -> Result<PathBuf> {
    let man = clap_mangen::Man::new(cmd)
        .source(format!("{BIN} {}", env!("CARGO_PKG_VERSION")))
        .manual("signbus manual");
    man.generate_to(dir)
        .with_context(|| format!("writing {} in {}", man.get_filename(), dir.display()))
}

/// `signbus completions <shell>`: the script on stdout.
pub fn run_completions(a: CompletionsArgs) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    write_completions(a.shell, &mut out);
    out.flush().context("writing the completion script")?;
    Ok(0)
}

/// `signbus manpages <dir>`: the pages in `dir`, their paths on stdout.
pub fn run_manpages(a: ManpagesArgs) -> Result<i32> {
    for path in write_manpages(&a.dir)? {
        println!("{}", path.display());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand a user can type (what `signbus --help` lists, without `help`).
    fn subcommands() -> Vec<String> {
        let names: Vec<String> = command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_owned())
            .collect();
        for expected in [
            "serve",
            "msg-container-sign",
            "verify",
            "completions",
            "manpages",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} not in {names:?}"
            );
        }
        names
    }

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        write_completions(shell, &mut out);
        String::from_utf8(out).expect("completion scripts are UTF-8")
    }

    #[test]
    fn bash_completion_offers_every_subcommand() {
        let text = script(Shell::Bash);
        assert!(
            text.contains("complete -F _signbus"),
            "not a bash script for signbus:\n{text}"
        );
        // The words offered after `signbus `: the `opts=` line of the top-level case.
        let top = text
            .split("case \"${cmd}\" in")
            .nth(1)
            .and_then(|rest| rest.split("opts=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .expect("a top-level opts line");
        let offered: Vec<&str> = top.split_whitespace().collect();
        for name in subcommands() {
            assert!(
                offered.contains(&name.as_str()),
                "{name} not offered: {offered:?}"
            );
            // …and recognised when typed, so that its own flags are completed after it.
            let case = format!("signbus,{name})");
            assert!(text.contains(&case), "no completion case {case} for {name}");
        }
    }

    #[test]
    fn zsh_and_fish_completions_name_every_subcommand() {
        for shell in [Shell::Zsh, Shell::Fish] {
            let text = script(shell);
            for name in subcommands() {
                assert!(
                    text.contains(&format!("'{name}:")) || text.contains(&format!("-a \"{name}\"")),
                    "{shell}: {name} missing"
                );
            }
        }
    }

    #[test]
    fn man_pages_are_written_for_the_program_and_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_manpages(dir.path()).unwrap();
        let mut expected = vec!["signbus.1".to_owned()];
        expected.extend(subcommands().iter().map(|n| format!("signbus-{n}.1")));
        let mut names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        expected.sort();
        assert_eq!(names, expected);
        let top = std::fs::read_to_string(dir.path().join("signbus.1")).unwrap();
        assert!(top.contains(".TH signbus 1"), "no title line:\n{top}");
        for name in subcommands() {
            // roff escapes every dash: `signbus\-msg\-container\-sign(1)`.
            let see = format!("signbus-{name}(1)").replace('-', "\\-");
            assert!(top.contains(&see), "signbus.1 does not refer to {name}");
        }
        let serve = std::fs::read_to_string(dir.path().join("signbus-serve.1")).unwrap();
        assert!(
            serve.contains("\\-\\-config"),
            "signbus-serve.1 lacks --config:\n{serve}"
        );
        let sign =
            std::fs::read_to_string(dir.path().join("signbus-msg-container-sign.1")).unwrap();
        assert!(
            sign.contains("\\-\\-signing\\-key"),
            "no --signing-key:\n{sign}"
        );
        let version = format!("\"signbus {}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            sign.contains(&version),
            "no {version} in the title line:\n{sign}"
        );
    }
}
