//! The `signbus` binary: parses the command line (honouring pubtools-sign command names) and runs it.

mod cli;

use clap::Parser;

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(sub) = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(cli::alias_subcommand)
    {
        args.insert(1, sub.into());
    }
    let cli = cli::Cli::parse_from(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
