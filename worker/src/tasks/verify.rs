//! A verify task: `backup verify` (every check again, every pack the snapshot
//! references read back, the tree restored into scratch) or a read-back rotation visit (every
//! pack of the repository not read within the age the coordinator sends).

use std::sync::Arc;

use repovault_common::repo::ReadBackLedger;
use repovault_proto::v1 as pb;

use crate::verify;

use repovault_common::domain::VerifyMode;

use super::leased::VerifyWork;
use super::{TaskContext, TaskError, blocking};

pub async fn run(
    ctx: Arc<TaskContext>,
    access: pb::RepoAccess,
    work: VerifyWork,
) -> Result<pb::VerifyResult, TaskError> {
    let VerifyWork { spec, mode } = work;
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
    let result = match mode {
        VerifyMode::Rotation => {
            ctx.progress
                .phase("read-back", "reading back packs not read recently");
            let max_age = spec.max_age_ms;
            let (r, l) = blocking(move || {
                let report = |done: u64, total: u64| progress.update(done, 0, total);
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
        VerifyMode::Manual => {
            if spec.snapshot_id.is_empty() {
                return Err(TaskError::permanent(format!(
                    "backup {} is gone (deleted since the verification was asked for)",
                    spec.backup_id
                )));
            }
            let work =
                super::fresh_scratch(&ctx, &format!("verify-{}", ctx.lease.token.task_id)).await?;
            ctx.progress.phase(
                "verify",
                format!(
                    "reading back and checking snapshot {}",
                    &spec.snapshot_id[..8.min(spec.snapshot_id.len())]
                ),
            );
            let (snapshot, w) = (spec.snapshot_id.clone(), work.clone());
            let outcome = blocking(move || {
                let report = |done: u64, total: u64| progress.update(done, 0, total);
                let how = verify::archive::Reading {
                    now_ms: now,
                    progress: &report,
                    interrupt: &interrupt,
                };
                let r = verify::stored(&repo, &snapshot, &w, &mut ledger, &how)?;
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
