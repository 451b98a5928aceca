//! `repovault`: the admin CLI, the coordinator and worker entry points, and `standalone`.
//!
//! Exit codes: 0 success, 1 the task (or the request) failed, 2 usage or invalid input, 3 not
//! found, 4 coordinator unreachable or unauthenticated, 5 a verification or drill found a
//! problem.

mod admin_client;
mod args;
mod commands;
mod output;
mod run;
use output::errln;

pub use args::Cli;
pub use run::{run_cli, standalone_settings};

/// Exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const UNREACHABLE: i32 = 4;
    /// `backup verify` or `drill run`: a check failed (the backup is not verified).
    pub const VERIFY_FAILED: i32 = 5;
}

/// The process entry point: parses arguments, runs, returns the exit code.
pub fn main_entry() -> i32 {
    repovault_common::tls::install_crypto_provider();
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    rt.block_on(run_cli(cli))
}
