//! Drill tasks: they read storage only, so the lease never carries the source's credential;
//! their outcome goes onto the drill record once the task ends for good, and damage a drill met
//! fails every backup using the damaged packs.

use repovault_proto::v1 as pb;

use crate::error::CoreResult;
use crate::model::{BackupRecord, Status, TaskRecord};
use crate::store::Batch;

use super::super::Core;
use super::{Completion, Kind, LeaseCtx, check_error};

pub(in crate::core) struct DrillKind;

impl DrillKind {
    /// The task ended for good: record its outcome. Errors are logged: the task's own outcome
    /// is already committed.
    async fn finished(core: &Core, task: &TaskRecord, req: &pb::CompleteTaskRequest) {
        let error = check_error(task, req);
        let r = req.drill.as_ref().filter(|_| req.success);
        if let Err(e) = core.finish_drill(task, r, error.as_deref()).await {
            tracing::warn!(task = %task.id, kind = task.kind.as_str(), error = %e, "recording the outcome failed");
        }
    }
}

impl Kind for DrillKind {
    /// The drill spec and the drill record marked running (see `drills.rs`).
    async fn lease(
        core: &Core,
        l: &LeaseCtx<'_>,
        proto: &mut pb::Task,
        batch: &mut Batch,
    ) -> CoreResult<()> {
        if let Some(access) = proto.repo.as_mut() {
            access.source_token.clear();
        }
        proto.drill = Some(core.lease_drill(l.task, batch).await?);
        Ok(())
    }

    /// The drill's outcome when the task ended, then the damage it found when it could not
    /// restore.
    async fn after_commit(core: &Core, c: &Completion<'_>, _finished: Option<BackupRecord>) {
        if c.task.lease.state.is_terminal() {
            Self::finished(core, c.task, c.req).await;
        }
        if let Some(d) = &c.req.drill {
            let found = pb::VerifyResult {
                damaged_snapshot_ids: d.damaged_snapshot_ids.clone(),
                damage: d.damage.clone(),
                ..Default::default()
            };
            core.fail_damage_found(c.task, &found, c.now).await;
        }
    }

    /// A final failure without a completion (last attempt expired, cancelled) is recorded as a
    /// failed drill.
    async fn after_requeue(core: &Core, task: &TaskRecord, status: Status) {
        if status.is_terminal() {
            let failure = pb::CompleteTaskRequest {
                error: task.lease.last_error.clone().unwrap_or_default(),
                ..Default::default()
            };
            Self::finished(core, task, &failure).await;
        }
    }
}
