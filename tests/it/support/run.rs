//! Running programs: the one command runner, the signbus binary under test (`CARGO_BIN_EXE_signbus`) and a
//! builder for its argument lists.

use super::env::requester_protocol;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The signbus binary under test.
pub fn signbus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_signbus"))
}

/// `program` as the tests run it: signbus requester commands speak this run's requester protocol
/// (`SIGNBUS_PROTOCOL`); other programs ignore the variable.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("SIGNBUS_PROTOCOL", requester_protocol());
    cmd
}

/// The signbus binary under test, as [`command`] runs it.
pub fn signbus() -> Command {
    command(signbus_bin())
}

/// Runs a command to its end; returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `program` with `args` (see [`command`]); returns (exit code, stdout, stderr).
pub fn run_cmd(program: &Path, args: &[&str]) -> (i32, String, String) {
    run(command(program).args(args))
}

/// Runs `cmd` with `stdin` written to its standard input; returns its status, stdout and stderr.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} runs: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// A finished command's stdout and stderr together, as `Ok` when it succeeded and `Err` when it failed.
pub fn verdict(out: Output) -> Result<String, String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Sends a signal with kill(1).
pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// A path as the `&str` an argument list takes.
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A signbus argument list, built flag by flag:
/// `Args::new("msg-container-sign").opt("--task-id", &task).image(digest, reference).flag("--raw").run()`.
#[derive(Clone, Debug, Default)]
pub struct Args(Vec<OsString>);

impl Args {
    /// The list for subcommand `command` (or for the program itself when `command` is a flag like `--help`).
    pub fn new(command: &str) -> Args {
        Args(vec![command.into()])
    }

    /// Adds bare arguments (a flag without a value, a positional argument).
    pub fn flag(mut self, arg: impl AsRef<OsStr>) -> Args {
        self.0.push(arg.as_ref().to_owned());
        self
    }

    /// Adds `--name value`.
    pub fn opt(self, name: &str, value: impl AsRef<OsStr>) -> Args {
        self.flag(name).flag(value)
    }

    /// Adds `--name value` once per value.
    pub fn opts<V: AsRef<OsStr>>(self, name: &str, values: impl IntoIterator<Item = V>) -> Args {
        values.into_iter().fold(self, |a, v| a.opt(name, v))
    }

    /// Adds `--digest digest --reference reference`: one image of a container-signing request.
    pub fn image(self, digest: &str, reference: &str) -> Args {
        self.opt("--digest", digest).opt("--reference", reference)
    }

    /// Replaces the value of `--name` (its first occurrence); panics when the list has no `--name`.
    pub fn set(mut self, name: &str, value: impl AsRef<OsStr>) -> Args {
        let at = self
            .0
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("{self:?} has no {name}"));
        self.0[at + 1] = value.as_ref().to_owned();
        self
    }

    /// `program` (the signbus binary, or a symlink to it) with these arguments, as [`command`] runs it.
    pub fn command_for(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = command(program);
        cmd.args(&self.0);
        cmd
    }

    /// The signbus binary with these arguments.
    pub fn command(&self) -> Command {
        self.command_for(signbus_bin())
    }

    /// Runs the signbus binary with these arguments; returns (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        run(&mut self.command())
    }
}
