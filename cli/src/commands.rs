//! The admin commands, one file per noun, and the dispatch from a parsed command to its file.
//! Every command that queues a task and waits for it ends through
//! [`task_wait::run_and_wait`].

use repovault_proto::v1 as pb;

use crate::admin_client::{Admin, CliError};
use crate::args::{AuditCmd, Command, OutputFormat};
use crate::output::outln;
use crate::output::{self, is_json};

mod admin_cmd;
mod backup_cmd;
mod drill_cmd;
mod escrow_cmd;
mod org_add;
mod org_cmd;
mod pages;
mod repo_cmd;
mod restore_cmd;
mod status_cmd;
mod storage_cmd;
mod task_wait;
mod verify_cmd;
mod workers_cmd;
mod zip_cmd;

/// Runs one admin command (one that talks to the coordinator) and returns its exit code.
pub async fn run(c: &mut Admin, command: Command, out: OutputFormat) -> Result<i32, CliError> {
    match command {
        Command::Org(cmd) => org_cmd::org(c, cmd, out).await,
        Command::Repo(cmd) => repo_cmd::repo(c, cmd, out).await,
        Command::Backup(cmd) => backup_cmd::backup(c, cmd, out).await,
        Command::Restore(cmd) => restore_cmd::restore(c, cmd, out).await,
        Command::Admin(cmd) => admin_cmd::admin(c, cmd, out).await,
        Command::Escrow(cmd) => escrow_cmd::escrow(c, cmd, out).await,
        Command::Storage(cmd) => storage_cmd::storage(c, cmd, out).await,
        Command::Workers(a) => workers_cmd::workers(c, a, out).await,
        Command::Queue { page } => admin_cmd::queue(c, page, out).await,
        Command::Health { org, page } => status_cmd::health(c, org, page, out).await,
        Command::Timeline { repo, page } => status_cmd::timeline(c, repo, page, out).await,
        Command::Drill(cmd) => drill_cmd::drill(c, cmd, out).await,
        Command::Audit(AuditCmd::List { page }) => admin_cmd::audit(c, page, out).await,
        Command::Standalone(_)
        | Command::Coordinator { .. }
        | Command::Worker(_)
        | Command::Completions { .. }
        | Command::Man { .. } => Err(CliError::usage(
            "this command does not talk to a coordinator",
        )),
    }
}

/// `-` for an empty field, the field otherwise.
fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// What `org purge` and `repo purge` print.
fn purge_done(out: OutputFormat, what: &str, r: &pb::PurgeResponse) {
    if is_json(out) {
        output::json(&serde_json::json!({"purged": what, "backups_deleted": r.backups_deleted}));
    } else {
        outln!(
            "{what} purged: {} backups and the snapshot data deleted",
            r.backups_deleted
        );
    }
}
