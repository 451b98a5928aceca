//! Verify tasks (`backup verify`, and the read-back rotation): they read storage only, so the
//! lease never carries the source's credential; their outcome goes onto the backup's
//! verification (or the rotation's record) once the task ends for good.

use repovault_proto::v1 as pb;

use crate::error::CoreResult;
use crate::model::{BackupRecord, Status, TaskRecord};
use crate::store::Batch;

use super::super::Core;
use super::{Completion, Kind, LeaseCtx, check_error};

pub(in crate::core) struct VerifyKind;

impl VerifyKind {
    /// The task ended for good: record its outcome. Errors are logged: the task's own outcome
    /// is already committed.
    async fn finished(core: &Core, task: &TaskRecord, req: &pb::CompleteTaskRequest) {
        let error = check_error(task, req);
        let r = req.verify.as_ref().filter(|_| req.success);
        if let Err(e) = core.finish_verify(task, r, error.as_deref()).await {
            tracing::warn!(task = %task.id, kind = task.kind.as_str(), error = %e, "recording the outcome failed");
        }
    }
}

impl Kind for VerifyKind {
    /// The verify spec; a manual run is marked running on its backup (see `verify.rs`).
    async fn lease(
        core: &Core,
        l: &LeaseCtx<'_>,
        proto: &mut pb::Task,
        batch: &mut Batch,
    ) -> CoreResult<()> {
        if let Some(access) = proto.repo.as_mut() {
            access.source_token.clear();
        }
        proto.verify = Some(core.lease_verify(l.task, batch).await?);
        Ok(())
    }

    async fn after_commit(core: &Core, c: &Completion<'_>, _finished: Option<BackupRecord>) {
        if c.task.lease.state.is_terminal() {
            Self::finished(core, c.task, c.req).await;
        }
    }

    /// A final failure without a completion (last attempt expired, cancelled) is recorded as
    /// a verification that could not run.
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
