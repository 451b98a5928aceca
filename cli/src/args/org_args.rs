//! The arguments that carry an organisation's credential: `org add` and `org update`. A
//! secret is named by the variable or file that holds it, never given on the command line.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct OrgAddArgs {
    pub name: String,
    /// git or github.
    #[arg(long, default_value = "git")]
    pub provider: String,
    /// github: the REST API base, https only (GitHub Enterprise: https://HOST/api/v3).
    /// Default https://api.github.com.
    #[arg(long)]
    pub api_url: Option<String>,
    #[command(flatten)]
    pub credential: CredentialArgs,
    /// github: a CA certificate (PEM file) to trust for the API URL.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct OrgUpdateArgs {
    pub org: String,
    #[command(flatten)]
    pub credential: CredentialArgs,
}

/// A forge credential: a token (from a variable or a file) or a GitHub App installation.
#[derive(Debug, Clone, Default, Args)]
pub struct CredentialArgs {
    /// github: read a token from this environment variable.
    #[arg(long)]
    pub token_env: Option<String>,
    /// github: read a token from this file.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// github: the GitHub App's id (with --private-key and --installation-id).
    #[arg(long)]
    pub app_id: Option<u64>,
    /// github: the GitHub App's private key (PEM file). The coordinator keeps it sealed and
    /// mints installation tokens itself.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// github: the App's installation on this organisation.
    #[arg(long)]
    pub installation_id: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct OrgSetArgs {
    pub org: String,
    /// hourly, daily, weekly, monthly, a cron expression ("0 2 * * *"), or none.
    #[arg(long)]
    pub schedule: Option<String>,
    /// The IANA time zone the schedule is read in (default UTC), such as Europe/Berlin.
    #[arg(long)]
    pub timezone: Option<String>,
    /// A full backup at least this often, whatever the schedule (default 7; 1..=366, as the
    /// coordinator checks).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub full_every_days: Option<u32>,
    /// Restore drills: weekly, monthly, a cron expression, none, or default (the
    /// coordinator's `verification.default_drill`, monthly unless configured).
    #[arg(long)]
    pub drill: Option<String>,
    /// The storage location its backups go to (`repovault storage list`; default: the
    /// configured storage). Only before its first backup (`storage move` after).
    #[arg(long)]
    pub storage: Option<String>,
    /// Copy every completed backup to this second location too (3-2-1), read back there;
    /// `none` stops copying (copies made stay).
    #[arg(long)]
    pub copy_to: Option<String>,
    /// Days its packs stay in the standard tier before `storage lifecycle`'s policy moves them
    /// to an infrequent-access one (default 30; S3 allows no fewer).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub tier_after_days: Option<u32>,
}
