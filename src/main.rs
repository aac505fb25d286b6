//! The `katran` binary: parse arguments, run, report errors with their chain.

use std::process::ExitCode;

use clap::Parser;

/// The version `katran --version` and `/metrics` say: the package's, unless
/// a packager builds another (packaging/build-deb.sh sets KATRAN_VERSION).
const VERSION: &str = match option_env!("KATRAN_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our
    // output goes away (`katran status | head -1`) instead of panicking.
    // SAFETY: restoring the default disposition of one signal at start.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    katran::set_version(VERSION);
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    katran::kernel::bpf::loader::route_libbpf_log();
    match katran::cli::run(katran::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
