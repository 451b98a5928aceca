//! `repovault`: the admin CLI, the coordinator and worker entry points, and `standalone`.
//!
//! Exit codes: see [`exit`] (and `repovault --help`).

mod admin_client;
mod args;
pub mod autoscale;
mod commands;
mod connection;
mod docs;
mod failure;
mod output;
mod run;
use output::errln;

pub use args::Cli;
pub use run::{run_cli, standalone_settings};

/// Exit codes. The numbers are kept across versions: scripts branch on them.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    /// Nothing listens at the coordinator's address, or nothing answered within the timeout.
    pub const UNREACHABLE: i32 = 4;
    /// `backup verify` or `drill run`: a check failed (the backup is not verified); `storage
    /// check`: a credential cannot do its role's work.
    pub const VERIFY_FAILED: i32 = 5;
    /// The TLS handshake failed (plaintext against TLS or the reverse, an untrusted CA).
    pub const TLS: i32 = 6;
    /// What answered is not a repovault coordinator (another server, the HTTP port).
    pub const NOT_A_COORDINATOR: i32 = 7;
    /// No admin token, or one the coordinator does not know.
    pub const UNAUTHENTICATED: i32 = 8;
    /// The admin token's role does not allow the call.
    pub const FORBIDDEN: i32 = 9;

    /// The list `--help` ends with.
    pub const HELP: &str = "Exit codes:
  0  success
  1  the task or the request failed
  2  usage error or invalid input
  3  not found
  4  coordinator unreachable: nothing listens at the address, or no answer within --timeout
  5  a verification or restore drill found a problem
  6  TLS failed: plaintext against TLS or the reverse, or a CA this machine does not trust
  7  not a repovault coordinator: something else answers at the address
  8  unauthenticated: no admin token, or one the coordinator does not know
  9  forbidden: the admin token's role does not allow the call";
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
