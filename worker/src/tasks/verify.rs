//! A verify task: `backup verify` (every check again, every pack the snapshot
//! references read back, the tree restored into scratch) or a read-back rotation visit (every
//! pack of the repository not read within the age the coordinator sends).

use std::sync::Arc;

use repovault_common::repo::ReadBackLedger;
use repovault_proto::v1 as pb;

use crate::verify;

use super::leased::{LeaseIds, VerifyWork};
use super::{TaskContext, TaskError, blocking};

pub async fn run(
    ctx: Arc<TaskContext>,
    ids: LeaseIds,
    access: pb::RepoAccess,
    work: VerifyWork,
) -> Result<pb::VerifyResult, TaskError> {
    ctx.progress
        .phase("open", "opening the snapshot repository");
    let repo = super::restore::open_snapshot_repo(&ctx, &access).await?;
    let mut ledger = ReadBackLedger::load(&ctx.storage, &access.snapshot_path)
        .await
        .unwrap_or_else(|e| {
            // The ledger only saves reads: without it, everything counts as unread.
            tracing::warn!(error = %e, "read-back ledger unreadable: starting a new one");
            ReadBackLedger::new()
        });
    let now = chrono::Utc::now().timestamp_millis();
    let progress = ctx.progress.clone();
    let interrupt = ctx.lease.interrupt.clone();
    let result = match work {
        VerifyWork::Rotation { max_age_ms } => {
            ctx.progress
                .phase("read-back", "reading back packs not read recently");
            let max_age = max_age_ms;
            let (r, l) = blocking(move || {
                let report = |done: u64, total: u64| progress.update_bytes(done, total);
                let how = verify::archive::Reading {
                    now_ms: now,
                    progress: &report,
                    interrupt: &interrupt,
                };
                let r = verify::archive::rotate(&repo, &mut ledger, max_age, &how)?;
                Ok((r, ledger))
            })
            .await?;
            ledger = l;
            pb::VerifyResult {
                checks: Vec::new(),
                packs_read: r.stats.packs_read,
                bytes_read: r.stats.bytes_read,
                damaged_snapshot_ids: r.damaged_snapshots,
                damage: r.damage.join("; "),
                packs_total: r.packs_total,
            }
        }
        VerifyWork::Backup {
            backup_id,
            snapshot_id,
        } => {
            let Some(snapshot) = snapshot_id else {
                return Err(TaskError::permanent(format!(
                    "backup {backup_id} is gone (deleted since the verification was asked for)"
                )));
            };
            let work = super::fresh_scratch(&ctx, &format!("verify-{}", ids.task_id)).await?;
            ctx.progress.phase(
                "verify",
                format!("reading back and checking snapshot {}", snapshot.short()),
            );
            let w = work.clone();
            let outcome = blocking(move || {
                let report = |done: u64, total: u64| progress.update_bytes(done, total);
                let how = verify::archive::Reading {
                    now_ms: now,
                    progress: &report,
                    interrupt: &interrupt,
                };
                let r = verify::stored(&repo, snapshot.as_str(), &w, &mut ledger, &how)?;
                Ok((r, ledger))
            })
            .await;
            super::discard_scratch(work).await;
            let ((checks, stats), l) = outcome?;
            ledger = l;
            pb::VerifyResult {
                checks: checks.iter().map(verify::Check::to_proto).collect(),
                packs_read: stats.packs_read,
                bytes_read: stats.bytes_read,
                damaged_snapshot_ids: stats.damage.snapshots.clone(),
                damage: stats.damage.lines.join("; "),
                ..Default::default()
            }
        }
    };
    if let Err(e) = ledger.save(&ctx.storage, &access.snapshot_path).await {
        // Advisory: a lost ledger costs re-reads, not correctness.
        tracing::warn!(error = %e, "could not save the read-back ledger");
    }
    ctx.progress.phase(
        "done",
        format!(
            "read back {} packs ({})",
            result.packs_read,
            verify::archive::human(result.bytes_read)
        ),
    );
    Ok(result)
}
