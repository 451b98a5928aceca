//! The metadata part of a forge restore: the target forge's metadata restore
//! ([`Forge::restore_metadata`]) run on the snapshot's export tree, with its progress reported
//! as the task's `metadata` phase (items done of total, ETA).
//!
//! The journal file is the caller's (it keeps it in storage across attempts); the forge also
//! matches its markers in the target, so a repeated run creates nothing twice.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use repovault_common::forge::{
    AccessPlan, AccessScope, Forge, ForgeError, MetadataRequest, Progress, RestoreReport,
};

use repovault_common::domain::BackupId;

use super::restore_forge::{Parts, human};
use super::{TaskContext, TaskError};

/// How often the lease's interrupt flag is looked at while the forge restores.
const INTERRUPT_POLL: Duration = Duration::from_millis(200);

/// What the metadata part will do, before it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataPlan {
    /// Items to create (when the target holds none yet).
    pub creations: u64,
    /// How long that takes at the forge's content-creation pace.
    pub estimate_secs: u64,
}

/// The forge's request for a restore's parts.
pub fn request(
    backup_id: &BackupId,
    parts: Parts,
    access: AccessScope,
    branches: BTreeSet<String>,
    journal: &Path,
) -> MetadataRequest {
    MetadataRequest {
        backup_id: backup_id.clone(),
        issues: parts.issues,
        releases: parts.releases,
        settings: parts.settings,
        branches_present: branches,
        journal: journal.to_path_buf(),
        access,
    }
}

fn engine_failure(context: &str, e: ForgeError) -> TaskError {
    crate::forge::task_failure(context, e)
}

/// Counts what restoring the export tree `tree` creates, and how long it takes (reads the tree
/// on the blocking pool).
pub async fn plan(
    forge: &Arc<dyn Forge>,
    tree: &Path,
    backup_id: &BackupId,
    parts: Parts,
    access: AccessScope,
) -> Result<MetadataPlan, TaskError> {
    let request = request(
        backup_id,
        parts,
        access,
        BTreeSet::new(),
        &tree.join("unused-journal"),
    );
    let (forge, tree) = (forge.clone(), tree.to_path_buf());
    let p = super::blocking(move || {
        forge
            .plan_metadata(&tree, &request)
            .map_err(|e| engine_failure("planning the metadata restore", e))
    })
    .await?;
    Ok(MetadataPlan {
        creations: p.creations,
        estimate_secs: p.estimate.as_secs(),
    })
}

/// What restoring the access recorded in `tree` into `owner` grants and leaves out (the target
/// organisation asked for its teams); `None` when settings are not restored or the backup
/// holds no access record.
pub async fn access_plan(
    forge: &dyn Forge,
    tree: &Path,
    owner: &str,
    parts: Parts,
    access: AccessScope,
) -> Result<Option<AccessPlan>, TaskError> {
    if !parts.settings {
        return Ok(None);
    }
    forge
        .plan_access(tree, owner, access)
        .await
        .map_err(|e| engine_failure(&format!("planning the access restore into {owner}"), e))
}

/// Reports the forge's progress as the `metadata` phase, at most once a second.
fn reporter(ctx: &TaskContext) -> impl Fn(Progress) + Sync + '_ {
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    move |p: Progress| {
        ctx.progress.update_items(p.done, p.total);
        let mut l = last.lock();
        if l.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) && p.done < p.total {
            return;
        }
        *l = Some(Instant::now());
        ctx.progress.status(
            "metadata",
            format!(
                "{}: {} of {} items, ETA {}",
                p.phase,
                p.done,
                p.total,
                human(p.eta.as_secs())
            ),
        );
        ctx.progress.update_items(p.done, p.total);
    }
}

/// Restores the metadata of `tree` into `owner/name` on `forge`, as `request` says. Returns a
/// one-line account for the restore's summary.
pub async fn restore(
    ctx: &TaskContext,
    forge: &dyn Forge,
    tree: &Path,
    owner: &str,
    name: &str,
    request: &MetadataRequest,
) -> Result<String, TaskError> {
    let progress = reporter(ctx);
    // The forge does not know the lease: its restore is dropped (between two requests at the
    // latest) as soon as the lease is revoked, the restore cancelled or the worker stops, so an
    // attempt that lost its lease creates nothing more.
    let interrupt = ctx.lease.interrupt.clone();
    let stopped = async move {
        while !interrupt.load(Ordering::SeqCst) {
            tokio::time::sleep(INTERRUPT_POLL).await;
        }
    };
    let report = tokio::select! {
        r = forge.restore_metadata(tree, owner, name, request, &progress) => r,
        () = stopped => {
            return Err(TaskError::retryable(
                "the metadata restore was interrupted (lease revoked, cancelled, or worker stopping)",
            ));
        }
    }
    .map_err(|e| engine_failure(&format!("restoring metadata into {owner}/{name}"), e))?;
    Ok(summary(&report))
}

/// The one-line account of `report`.
fn summary(report: &RestoreReport) -> String {
    let created: Vec<String> = report
        .created
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let mut line = format!(
        "metadata: {} created ({}), {} already there",
        report.total_created(),
        if created.is_empty() {
            "nothing".to_string()
        } else {
            created.join(", ")
        },
        report.reused.values().sum::<u64>()
    );
    if !report.converted.is_empty() {
        line.push_str(&format!(
            ", {} pull requests as issues",
            report.converted.len()
        ));
    }
    if !report.skipped.is_empty() {
        let shown: Vec<String> = report
            .skipped
            .iter()
            .take(5)
            .map(|s| format!("{} ({})", s.item, s.reason))
            .collect();
        line.push_str(&format!(
            ", {} skipped: {}",
            report.skipped.len(),
            shown.join(", ")
        ));
    }
    if !report.webhooks_needing_secret.is_empty() {
        line.push_str(&format!(
            ", webhooks needing a secret: {}",
            report.webhooks_needing_secret.join(", ")
        ));
    }
    if let Some(access) = &report.access {
        line.push_str("; ");
        line.push_str(&access.describe());
    }
    line
}
