//! Command-line arguments. An id argument is its typed id (`BackupId`, `RestoreId`), so a
//! malformed one is a usage error naming the argument before anything is called.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use repovault_common::domain::{BackupId, RestoreId};

mod escrow_args;
mod org_args;
mod page_args;
mod restore_args;
mod storage_args;
pub mod workers_args;

pub use escrow_args::EscrowCmd;
pub use org_args::{OrgAddArgs, OrgSetArgs, OrgUpdateArgs};
pub use page_args::{DEFAULT_LIMIT, PageArgs};
pub use restore_args::{RestoreAccess, RestoreTarget, RestoreType};
pub use storage_args::{StorageAddArgs, StorageCmd};
pub use workers_args::WorkerArgs;

#[derive(Debug, Parser)]
#[command(name = "repovault", version, about = "Back up and restore hosted git: organisations, repositories, full history.", long_about = None, after_help = crate::exit::HELP)]
pub struct Cli {
    /// The coordinator's gRPC address; for a coordinator group, every member's, separated by
    /// commas (calls go to the elected leader).
    #[arg(
        long,
        global = true,
        value_name = "URL[,URL...]",
        env = "REPOVAULT_COORDINATOR",
        default_value = "http://127.0.0.1:7420"
    )]
    pub coordinator: String,
    /// A CA certificate (PEM) to trust for an https:// coordinator, besides the system's.
    #[arg(long, global = true, env = "REPOVAULT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A file holding the admin token, when the coordinator requires one.
    #[arg(long, global = true, env = "REPOVAULT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Output format: aligned columns, or one JSON document (an absent value is null; the
    /// repository's cli/schemas/ holds each command's JSON Schema).
    #[arg(
        short = 'o',
        long,
        global = true,
        env = "REPOVAULT_OUTPUT",
        value_enum,
        default_value_t = OutputFormat::Table
    )]
    pub output: OutputFormat,
    /// How long to wait for the coordinator to answer a call (or a keepalive ping during a
    /// long one), e.g. 10s or 2m [default: 30s; calls that run a whole job, such as org sync,
    /// admin rebuild-catalog and purges, wait as long as the coordinator answers pings]
    #[arg(
        long,
        global = true,
        env = "REPOVAULT_TIMEOUT",
        value_name = "DURATION",
        value_parser = crate::connection::parse_timeout
    )]
    pub timeout: Option<std::time::Duration>,
    /// How `standalone`, `coordinator` and `worker` write their logs to stderr: text lines for
    /// people, or one JSON object per event for log pipelines (colour only on a terminal;
    /// RUST_LOG sets the filter).
    #[arg(
        long,
        global = true,
        env = "REPOVAULT_LOG_FORMAT",
        value_name = "text|json",
        default_value = "text",
        value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<repovault_common::telemetry::LogFormat>())
    )]
    pub log_format: repovault_common::telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run a coordinator and N workers on this machine: embedded store, storage under DIR.
    Standalone(StandaloneArgs),
    /// Run a coordinator from a TOML configuration file.
    Coordinator {
        #[arg(long)]
        config: PathBuf,
        /// Validate the configuration (file, then REPOVAULT_* environment overrides) without
        /// writing anything or starting, print the effective configuration with secrets
        /// redacted, and say what a start would create. Exit 0 when valid, 2 when not.
        #[arg(long)]
        check: bool,
    },
    /// Run a worker that leases tasks from a coordinator.
    Worker(WorkerArgs),
    /// Print a shell completion script. Example: repovault completions bash >
    /// /etc/bash_completion.d/repovault
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (repovault.1 and one per subcommand, repovault-org-add.1, ...) into DIR.
    /// Example: repovault man --dir /usr/local/share/man/man1
    Man {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Organisations.
    #[command(
        subcommand,
        after_help = "Examples:\n  GH_TOKEN=... repovault org add acme --provider github --token-env GH_TOKEN\n  repovault org set acme --schedule daily --timezone Europe/Berlin\n  GH_TOKEN=... repovault org update acme --token-env GH_TOKEN\n  repovault org retention acme --keep-daily 7"
    )]
    Org(OrgCmd),
    /// Repositories.
    #[command(
        subcommand,
        after_help = "Examples:\n  repovault repo add plain/site --url https://git.example.com/site.git --token-file /etc/site.token\n  repovault repo set acme/widgets --schedule none\n  repovault repo list acme"
    )]
    Repo(RepoCmd),
    /// Backups.
    #[command(
        subcommand,
        after_help = "Examples:\n  repovault backup run acme/widgets --wait\n  repovault backup list acme/widgets\n  repovault backup verify BACKUP_ID"
    )]
    Backup(BackupCmd),
    /// Restores.
    #[command(
        subcommand,
        after_help = "Examples:\n  repovault restore start BACKUP_ID --type full_repo --target new --org acme --name widgets-restored --wait\n  repovault restore start BACKUP_ID --type full_repo --target download --path ./widgets.git --wait"
    )]
    Restore(RestoreCmd),
    /// Administration.
    #[command(
        subcommand,
        after_help = "Examples:\n  repovault admin rebuild-catalog"
    )]
    Admin(AdminCmd),
    /// Escrow agreements.
    #[command(
        subcommand,
        after_help = "Examples:\n  repovault escrow enable acme/widgets --agreement \"Escrow for ACME, contract 42\" --until 2027-12-31 --key-to escrow.key\n  repovault escrow list acme/widgets"
    )]
    Escrow(EscrowCmd),
    /// Storage locations: where organisations' snapshots live (the configured storage is
    /// "default"; `org set ORG --storage NAME` chooses another before its first backup).
    #[command(
        subcommand,
        after_help = "Examples:\n  AWS_KEY=... AWS_SECRET=... repovault storage add client-a --kind s3 --bucket client-a-backups --region eu-west-1 --access-key-env AWS_KEY --secret-key-env AWS_SECRET\n  AZ_SAS=... repovault storage add client-b --kind azblob --container backups --endpoint https://clientb.blob.core.windows.net --account-name clientb --secret-env sas_token=AZ_SAS\n  repovault storage check client-a\n  repovault org set acme --storage client-a"
    )]
    Storage(StorageCmd),
    /// The workers connected to the coordinator (`workers` alone lists them), and the join
    /// tokens of worker pools.
    #[command(
        after_help = "Examples:\n  repovault workers\n  repovault workers token create --pool burst --expires-in 90d > burst.token\n  repovault workers token revoke jt0123456789"
    )]
    Workers(workers_args::WorkersArgs),
    /// The task queue in the order leases take it: highest effective priority first (the
    /// number in brackets is the task's own priority, before ageing and fairness), then first
    /// enqueued.
    #[command(
        after_help = "Examples:\n  repovault queue\n  repovault queue --limit 20\n  repovault --output json queue --all"
    )]
    Queue {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Per repository one state (backed_up, pending, error, never, paused, late) and what it
    /// left out, then the summary and each organisation's latest restore drill. backed_up
    /// needs the latest backup verified; a failed verification reads error.
    #[command(after_help = "Examples:\n  repovault health acme\n  repovault health --all")]
    Health {
        /// Only this organisation's repositories.
        org: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Every backup of a repository in order with its verification, skipped slots, size jumps
    /// and restore drills.
    #[command(after_help = "Examples:\n  repovault timeline acme/widgets --limit 50")]
    Timeline {
        /// ORG/NAME.
        repo: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// The audit log: every admin call that changed something, who made it, how it ended.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Restore drills: a backup restored into a scratch repository and compared with its
    /// manifest (ref tips, objects, item counts), then deleted. They also run on each
    /// organisation's drill schedule (`org set --drill`, monthly by default).
    #[command(
        subcommand,
        after_help = "Examples:\n  repovault drill run acme --repo acme/widgets\n  repovault drill list acme"
    )]
    Drill(DrillCmd),
}

#[derive(Debug, Clone, Subcommand)]
pub enum DrillCmd {
    /// Run a drill now (operator): of --backup, else of --repo's latest backup, else of the
    /// organisation's repository drilled least recently. Exit code 5 when it does not pass.
    Run {
        org: String,
        /// ORG/NAME or NAME.
        #[arg(long)]
        repo: Option<String>,
        /// A completed backup of the organisation.
        #[arg(long)]
        backup: Option<BackupId>,
        /// Read the backup from the organisation's second copy (org set --copy-to), whose copy
        /// of it must be done: proof that the copy alone restores.
        #[arg(long)]
        from_copy: bool,
        /// Return once queued instead of waiting for the outcome.
        #[arg(long)]
        detach: bool,
    },
    /// The organisation's drills, newest first.
    List {
        org: String,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// Entries, newest first.
    #[command(
        after_help = "Examples:\n  repovault audit list --limit 20\n  repovault audit list --all"
    )]
    List {
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    /// State, keys, storage and caches live here (created when missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:7420")]
    pub listen: std::net::SocketAddr,
    /// HTTP listen address (/metrics, /healthz).
    #[arg(long, default_value = "127.0.0.1:7421")]
    pub http_listen: std::net::SocketAddr,
    /// In-process workers.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true, value_parser = count())]
    pub workers: u32,
    /// Instead of --workers: between MIN and MAX in-process workers, following the queue (the
    /// desired-worker figure, 2 slots per worker); workers above MIN exit after 30 s idle, e.g.
    /// 0..4.
    #[arg(long, value_name = "MIN..MAX", conflicts_with = "workers")]
    pub autoscale: Option<crate::autoscale::Bounds>,
    /// Heartbeat interval H; every lease timeout derives from it.
    #[arg(long, default_value = "5s")]
    pub heartbeat: String,
    /// A directory whose git repositories may be backed up from, and restored to, as file://
    /// URLs (repeatable). None by default: every file:// URL is refused. DIR must exist; the
    /// data directory stays refused even when under DIR.
    #[arg(long = "allow-local-root", value_name = "DIR")]
    pub allow_local_roots: Vec<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum OrgCmd {
    /// Add an organisation: `git` (repositories added by URL) or `github` (repositories
    /// discovered with a token or a GitHub App installation; the credential is checked now).
    Add(OrgAddArgs),
    /// Replace a forge organisation's credential (an expired or rotated token, a new App key):
    /// proven against the forge before it is stored; history, keys and schedules stay.
    /// Example: GH_TOKEN=... repovault org update acme --token-env GH_TOKEN
    Update(OrgUpdateArgs),
    /// List organisations, by name.
    #[command(after_help = "Examples:\n  repovault org list\n  repovault org list --all")]
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// One organisation: provider, API URL, credential kind (never the secret), repositories.
    Show { org: String },
    /// Discover a GitHub organisation's repositories now: new ones added, renamed ones
    /// followed, archived and deleted ones marked (backups are kept).
    Sync { org: String },
    /// The organisation's key.
    #[command(subcommand)]
    Key(OrgKeyCmd),
    /// Settings: the schedule of its repositories' backups.
    Set(OrgSetArgs),
    /// Pause the organisation's schedules; its credentials and every backup are kept (retention
    /// removes none of them until it is connected again).
    Disconnect { org: String },
    /// Resume the schedules of a disconnected organisation (the next backups are full).
    Connect { org: String },
    /// Show or set the retention policy: backups younger than --days (default 90) are kept,
    /// plus restic-style counts. The latest successful backup is always kept. A change that
    /// removes existing backups needs the admin role and --confirm.
    Retention(OrgRetentionArgs),
    /// Delete every backup and snapshot repository of the organisation, and the organisation
    /// itself. Refused without --confirm and while any of its repositories is under escrow.
    Purge {
        org: String,
        #[arg(long)]
        confirm: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct OrgRetentionArgs {
    pub org: String,
    /// Keep backups younger than this many days.
    #[arg(long, allow_negative_numbers = true, value_parser = count())]
    pub days: Option<u32>,
    /// Keep the newest N backups.
    #[arg(long, allow_negative_numbers = true, value_parser = count())]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours (days, weeks, months) with one.
    #[arg(long, allow_negative_numbers = true, value_parser = count())]
    pub keep_hourly: Option<u32>,
    #[arg(long, allow_negative_numbers = true, value_parser = count())]
    pub keep_daily: Option<u32>,
    #[arg(long, allow_negative_numbers = true, value_parser = count())]
    pub keep_weekly: Option<u32>,
    #[arg(long, allow_negative_numbers = true, value_parser = count())]
    pub keep_monthly: Option<u32>,
    /// Needed (with the admin role) when the new policy removes existing backups; without it
    /// the change is refused with how many would go.
    #[arg(long)]
    pub confirm: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum OrgKeyCmd {
    /// Write the organisation's key (the restic password of its snapshot repositories) to FILE,
    /// mode 0600. FILE must not exist.
    Export {
        org: String,
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(Debug, Clone, Args, Default)]
#[group(multiple = false)]
pub struct TokenArgs {
    /// Read the token from this environment variable.
    #[arg(long)]
    pub token_env: Option<String>,
    /// Read the token from this file.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RepoCmd {
    /// Add a repository by URL (git://, http(s)://, file://). The source is not contacted now.
    Add {
        /// ORG/NAME
        name: String,
        #[arg(long)]
        url: String,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Replace a plain git repository's own token (--token-env or --token-file), or remove it
    /// (--no-token). A forge repository uses its organisation's credential (`org update`).
    Update {
        /// ORG/NAME
        name: String,
        #[command(flatten)]
        token: TokenArgs,
        /// Remove the repository's token (the source is then read without one).
        #[arg(long, conflicts_with_all = ["token_env", "token_file"])]
        no_token: bool,
    },
    /// List repositories by organisation, then name, optionally of one organisation.
    #[command(
        after_help = "Examples:\n  repovault repo list acme --limit 50\n  repovault repo list --all --output json"
    )]
    List {
        org: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete every backup and the snapshot repository of ORG/NAME, and the repository's
    /// records. Refused without --confirm and while it is under escrow.
    Purge {
        /// ORG/NAME
        name: String,
        #[arg(long)]
        confirm: bool,
    },
    /// Settings of one repository: its own schedule, on-push backups.
    Set {
        /// ORG/NAME
        name: String,
        /// hourly, daily, weekly, monthly, a cron expression, inherit (its organisation's), or
        /// none (not scheduled, whatever its organisation's schedule).
        #[arg(long)]
        schedule: Option<String>,
        /// Back up on push: registers a push webhook on the GitHub repository.
        #[arg(long, conflicts_with = "no_on_push")]
        on_push: bool,
        /// Stop backing up on push: removes the webhook.
        #[arg(long)]
        no_on_push: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum BackupCmd {
    /// Start a manual backup (priority 8; full unless `--type incremental`).
    Run {
        /// ORG/NAME
        repo: String,
        /// Wait for the outcome, showing progress.
        #[arg(long)]
        wait: bool,
        /// `full` re-reads everything (the default for manual backups); `incremental` reads
        /// only what changed since the last successful backup (a repository's first backup is
        /// full whatever is asked).
        #[arg(long = "type", value_name = "TYPE", default_value = "full", value_parser = ["full", "incremental"])]
        backup_type: String,
    },
    /// Backups, newest first (the full history, read from the catalog).
    #[command(
        after_help = "Examples:\n  repovault backup list acme/widgets --limit 20\n  repovault backup list --all"
    )]
    List {
        repo: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One backup: counts of each kind, each component's status with the reason when it was
    /// skipped or failed, and its verification with each check's result.
    Show { id: BackupId },
    /// Delete one backup now (admin); its data goes at the repository's next prune. Refused
    /// for an escrowed backup until the agreement is released or expires.
    Delete { id: BackupId },
    /// Verify a backup again (operator): every pack its snapshot references is read back from
    /// storage and hashed, the mirrors are fsck'd, the metadata documents parsed and counted,
    /// the ref tips and commit count compared with the source's at backup time, the size with
    /// the previous backup's. Waits and prints each check; exit code 5 when one fails.
    Verify {
        id: BackupId,
        /// Return once queued instead of waiting for the outcome.
        #[arg(long)]
        detach: bool,
    },
    /// Download a backup as a ZIP (bare mirror, wiki, LFS objects, metadata as JSON, with a
    /// listing of every entry's SHA-256): starts a `download_zip` restore, waits, fetches its
    /// link, checks the SHA-256 and writes FILE atomically.
    Download {
        backup_id: BackupId,
        /// Where to write the ZIP (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// How long the link (and the ZIP in storage) stays valid: 30m..7d.
        #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_link_ttl)]
        expires: std::time::Duration,
    },
    /// The issues, pull requests or releases a backup holds, read from the backup itself.
    ///
    /// `issues`, `pulls` or `releases` lists them; `issues/N` or `pulls/N` shows one with its
    /// comments (and a pull request's reviews and review comments).
    Browse {
        /// The backup id.
        id: BackupId,
        /// `issues`, `pulls`, `releases`, `issues/N` or `pulls/N`.
        path: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum RestoreCmd {
    /// Start a restore of a backup. Valid: full_repo to new|original|download, issues_only,
    /// wiki_only and releases_only to existing (--into), download_zip to download.
    Start {
        backup_id: BackupId,
        #[arg(long = "type", value_enum)]
        restore_type: RestoreType,
        /// Where to restore; with --into alone, `existing`.
        #[arg(long, value_enum)]
        target: Option<RestoreTarget>,
        /// For --target new: the URL of an empty plain git repository to push into.
        #[arg(long)]
        url: Option<String>,
        /// For --target new: the forge organisation to create the repository in.
        #[arg(long)]
        org: Option<String>,
        /// For --target new or original: the repository to create.
        #[arg(long)]
        name: Option<String>,
        /// Use this repovault organisation's forge and credential for the target.
        #[arg(long)]
        credential_org: Option<String>,
        /// For --target existing: the repository (`ORG/NAME`) to restore into.
        #[arg(long)]
        into: Option<String>,
        /// For full_repo to download: where to put the bare repository (must not exist or be
        /// empty). A download always waits.
        #[arg(long)]
        path: Option<PathBuf>,
        /// For full_repo to a forge: which access to grant in the target. `direct` invites the
        /// direct collaborators only; `teams` also grants each team's access to the target
        /// organisation's team of the same slug; `all` also invites everyone else who had
        /// access (through the organisation, or unknown how) as a direct collaborator. The
        /// restore lists what it grants and leaves out before it starts (its `access` phase).
        #[arg(long, value_enum, default_value = "direct")]
        access: RestoreAccess,
        /// Read the backup from the organisation's second copy (`org set --copy-to`), when its
        /// primary storage is lost. Not for downloads.
        #[arg(long)]
        from_copy: bool,
        #[command(flatten)]
        token: TokenArgs,
        /// Wait for the outcome, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Restores, newest first, optionally of one repository (`ORG/NAME`).
    #[command(after_help = "Examples:\n  repovault restore list acme/widgets --all")]
    List {
        repo: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Follow a restore's progress until it ends.
    Watch { id: RestoreId },
    /// Cancel a pending or running restore (its worker stops; it fails "cancelled").
    Cancel { id: RestoreId },
    /// One restore.
    Show { id: RestoreId },
    /// Mint a new link to a completed download's artifact, which then lives at least as long.
    Link {
        id: RestoreId,
        /// How long the link stays valid: 30m..7d.
        #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_link_ttl)]
        expires: std::time::Duration,
    },
}

/// A day or item count: a whole number in 0..=4294967295 (u32). With `allow_negative_numbers`,
/// `-1` reaches this parser, whose error names the range, instead of clap's "unexpected
/// argument '-1'".
fn count() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(0..=i64::from(u32::MAX))
}

/// A download link lifetime: a duration within 30m..=7d.
fn parse_link_ttl(v: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(v).map_err(|e| format!("{v:?}: {e}"))?;
    repovault_common::links::check_link_ttl(d)
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCmd {
    /// Rebuild the store's view of backups from the catalog objects in storage alone.
    RebuildCatalog,
}
