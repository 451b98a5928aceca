//! `repovault workers`: the connected workers, and the join tokens of worker pools.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::PageArgs;

#[derive(Debug, Clone, Args)]
pub struct WorkersArgs {
    /// What to do; without one, `list`.
    #[command(subcommand)]
    pub cmd: Option<WorkersCmd>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WorkersCmd {
    /// The connected workers: pool, slots in use, state, last heartbeat.
    List,
    /// Join tokens of worker pools: each lets workers join the fleet as members of its pool
    /// (shown by `workers list` and in the audit log). The coordinator's configured join token
    /// keeps working beside them as the pool "bootstrap".
    #[command(
        subcommand,
        after_help = "Examples:\n  repovault workers token create --pool burst --expires-in 90d > burst.token\n  repovault worker --join-token-file burst.token --coordinator https://coord:7420\n  repovault workers token list --pool burst\n  repovault workers token revoke jt0123456789"
    )]
    Token(TokenCmd),
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create a join token for a pool (admin). The token is printed once, on stdout (the
    /// coordinator keeps only its SHA-256); the rest goes to stderr, so `> FILE` keeps just the
    /// token for `repovault worker --join-token-file FILE`.
    #[command(
        after_help = "Examples:\n  repovault workers token create --pool burst > burst.token\n  repovault workers token create --pool night --expires-in 90d -o json"
    )]
    Create {
        /// The pool: 1 to 40 lower-case letters, digits and '-' ("bootstrap" is the configured
        /// token's).
        #[arg(long)]
        pool: String,
        /// Refuse the token this long after its creation, e.g. 90d or 12h (at least 1m, at most
        /// 3650d). Default: it does not expire.
        #[arg(long, value_name = "DURATION", value_parser = parse_expires_in)]
        expires_in: Option<Duration>,
    },
    /// The pools' join tokens, newest first, revoked and expired ones included (never the
    /// tokens themselves).
    #[command(
        after_help = "Examples:\n  repovault workers token list\n  repovault workers token list --pool burst -o json"
    )]
    List {
        /// Only this pool's tokens.
        #[arg(long)]
        pool: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke a join token (operator): its workers are refused at their next call and forgotten,
    /// and the tasks they held go back to the queue at once.
    #[command(after_help = "Examples:\n  repovault workers token revoke jt0123456789")]
    Revoke {
        /// The token's id (`workers token list`).
        id: String,
    },
}

/// `repovault worker`'s client certificate, for a coordinator that requires workers to present
/// one (mTLS, `tls.require_worker_cert`).
#[derive(Debug, Clone, Args)]
pub struct ClientCertArgs {
    /// A client certificate (PEM) signed by the coordinator's `tls.client_ca_file`, presented
    /// with every connection. With --client-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "REPOVAULT_CLIENT_CERT_FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM): a path, so the key never appears in
    /// arguments. With --client-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "REPOVAULT_CLIENT_KEY_FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

impl ClientCertArgs {
    /// The files, when both are given (clap requires both or neither).
    pub fn files(&self) -> Option<repovault_common::grpc::ClientCertFiles> {
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(repovault_common::grpc::ClientCertFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
            }),
            _ => None,
        }
    }
}

/// `--expires-in`: a duration like 90d, 12h or 30m.
fn parse_expires_in(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v)
        .map_err(|e| format!("{v:?} is not a duration like 90d or 12h: {e}"))
}
