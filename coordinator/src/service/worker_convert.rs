//! The worker protocol's messages to the queue's typed values: each request is decoded here
//! once, and a malformed field is refused (`invalid_argument`) naming it, before the queue or
//! a task kind sees the request.

use repovault_common::domain::FromWire;
use repovault_common::manifest::{self, Counts};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;
use tonic::Status as RpcStatus;

use crate::model::{CheckOutcome, CheckResult, SnapshotId};
use crate::tasks::kinds::outcome::{
    BackupResult, DrillResult, RestoreResult, TaskReport, TaskResult, VerifyResult,
};

fn refused(e: impl std::fmt::Display) -> RpcStatus {
    RpcStatus::invalid_argument(e.to_string())
}

/// A completion: its outcome and its result by kind.
pub fn task_report(r: &pb::CompleteTaskRequest) -> Result<TaskReport, RpcStatus> {
    use pb::complete_task_request::Result as R;
    let result = match &r.result {
        None => None,
        Some(R::Backup(b)) => Some(TaskResult::Backup(Box::new(backup_result(b)?))),
        Some(R::Restore(x)) => Some(TaskResult::Restore(RestoreResult {
            refs_pushed: x.refs_pushed,
            artifact_bytes: x.artifact_bytes,
            artifact_sha256: x.artifact_sha256.clone(),
            summary: x.summary.clone(),
        })),
        Some(R::Verify(v)) => Some(TaskResult::Verify(verify_result(
            v,
            "result.verify.checks.result",
        )?)),
        Some(R::Drill(d)) => Some(TaskResult::Drill(DrillResult {
            passed: d.passed,
            checks: checks(&d.checks, "result.drill.checks.result")?,
            summary: d.summary.clone(),
            damaged_snapshot_ids: d.damaged_snapshot_ids.clone(),
            damage: d.damage.clone(),
        })),
    };
    Ok(TaskReport {
        worker_id: r.worker_id.clone(),
        success: r.success,
        error: r.error.clone(),
        retryable: r.retryable,
        lease_lost: r.lease_lost,
        result,
    })
}

fn backup_result(b: &pb::BackupResult) -> Result<BackupResult, RpcStatus> {
    Ok(BackupResult {
        snapshot_id: SnapshotId::from_wire_optional(&b.snapshot_id, "result.backup.snapshot_id")
            .map_err(refused)?,
        size_bytes: b.size_bytes,
        added_bytes: b.added_bytes,
        counts: Counts::from(&b.counts.unwrap_or_default()),
        bytes_received: b.bytes_received,
        master_key: (!b.master_key.is_empty()).then(|| Secret::new(b.master_key.clone())),
        components: manifest::components_from_proto(&b.components).map_err(refused)?,
        verification: b
            .verification
            .as_ref()
            .map(|v| verify_result(v, "result.backup.verification.checks.result"))
            .transpose()?,
    })
}

/// A read-back's result; `checks_field` names its checks' result field in refusals.
fn verify_result(
    v: &pb::VerifyResult,
    checks_field: &'static str,
) -> Result<VerifyResult, RpcStatus> {
    Ok(VerifyResult {
        checks: checks(&v.checks, checks_field)?,
        packs_read: v.packs_read,
        bytes_read: v.bytes_read,
        damaged_snapshot_ids: v.damaged_snapshot_ids.clone(),
        damage: v.damage.clone(),
    })
}

/// The checks a worker reported, refusing a result this build does not know (sent by a newer
/// worker).
pub fn checks(
    checks: &[pb::CheckResult],
    field: &'static str,
) -> Result<Vec<CheckResult>, RpcStatus> {
    checks
        .iter()
        .map(|c| {
            let result = CheckOutcome::from_wire(c.result, field)
                .map_err(|e| refused(format!("check {:?}: {e}", c.name)))?;
            Ok(CheckResult {
                name: c.name.clone(),
                result,
                detail: c.detail.clone(),
                warning: c.warning,
                incomplete: c.incomplete,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_check_results_from_the_wire_are_refused_naming_the_field() {
        let bad = pb::CheckResult {
            name: crate::verification::GIT_FSCK.into(),
            result: 99,
            ..Default::default()
        };
        let req = pb::CompleteTaskRequest {
            success: true,
            result: Some(pb::complete_task_request::Result::Verify(
                pb::VerifyResult {
                    checks: vec![bad],
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let err = task_report(&req).expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("99 is unknown"), "{}", err.message());
        assert!(
            err.message().contains("result.verify.checks.result"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn a_malformed_snapshot_id_is_refused_naming_the_field() {
        let req = pb::CompleteTaskRequest {
            success: true,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_id: "not-hex".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let err = task_report(&req).expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("result.backup.snapshot_id"),
            "{}",
            err.message()
        );
    }
}
