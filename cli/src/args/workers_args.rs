//! `repovault workers`: the connected workers, and the join tokens of worker pools; and
//! `repovault worker`, the worker process itself.

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

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// A file holding the coordinator's join token, or a worker pool's (`workers token create`).
    #[arg(long)]
    pub join_token_file: PathBuf,
    #[command(flatten)]
    pub client_cert: ClientCertArgs,
    /// Tasks run at once.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX)))]
    pub slots: u32,
    /// Exit after this long without work (burst pools), e.g. 60s.
    #[arg(long)]
    pub exit_when_idle: Option<String>,
    /// Mirror cache directory.
    #[arg(long, default_value = "/var/cache/repovault")]
    pub cache_dir: PathBuf,
    /// Serve this worker's own Prometheus metrics on ADDR (`http://ADDR/metrics`): bytes fetched
    /// and stored, phase durations, cache hits and misses, slots busy. Default: none.
    #[arg(long, value_name = "ADDR", env = "REPOVAULT_WORKER_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Cap on the mirror cache; least recently used mirrors are evicted above it.
    #[arg(long)]
    pub cache_max_bytes: Option<u64>,
    /// How long running tasks may finish after SIGTERM before they are released.
    #[arg(long, default_value = "60s")]
    pub drain_grace: String,
    /// How old a mirror's last full git_fsck may be before a backup checks every object of it
    /// again; in between, a backup checks the objects it received and the refs that moved, and
    /// trusts packs verified before whose size, times and inode are unchanged. `backup verify`
    /// and drills always check everything.
    #[arg(long, default_value = "7d", env = "REPOVAULT_FULL_CHECK_EVERY")]
    pub full_check_every: String,
    /// Name shown in `repovault workers` (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// A directory whose git repositories tasks may read from and push to as file:// URLs
    /// (repeatable; the environment variable takes a ':'-separated list). None by default:
    /// every file:// URL is refused. DIR must exist; the cache directory, its scratch and the
    /// storage root stay refused even when under DIR.
    #[arg(
        long = "allow-local-root",
        value_name = "DIR",
        env = "REPOVAULT_ALLOWED_LOCAL_ROOTS",
        value_delimiter = ':'
    )]
    pub allow_local_roots: Vec<PathBuf>,
}
