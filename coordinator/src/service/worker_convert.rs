//! The worker protocol's messages to the queue's typed values and back: each request is
//! decoded here once, and a malformed field is refused (`invalid_argument`) naming it, before
//! the queue or a task kind sees the request; each answer is encoded here from what the queue
//! returned.

use repovault_common::domain::{FromWire, WireError};
use repovault_common::manifest::{self, Counts};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;
use tonic::Status as RpcStatus;

use crate::forge_access::forge_credentials::{PermitAnswer, PermitRequest, RatePause};
use crate::forge_access::rate_budgets::{Grant, Reading};
use crate::model::{CheckOutcome, CheckResult, SnapshotId, TaskId, VerifyMode};
use crate::tasks::kinds::lease_spec::{LeaseSpec, LeasedTask, VerifySpec};
use crate::tasks::kinds::outcome::{
    BackupResult, DrillResult, RestoreResult, TaskReport, TaskResult, VerifyResult,
};
use crate::tasks::lease_access::RepoAccess;
use crate::tasks::lifecycle::Lease;
use crate::tasks::task_progress::WorkerProgress;

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

/// A progress event of a task as the worker reported it.
pub fn worker_progress(ev: &pb::TaskEvent) -> WorkerProgress {
    WorkerProgress {
        worker_id: ev.worker_id.clone(),
        phase: ev.phase.clone(),
        bytes: ev.bytes,
        objects: ev.objects,
        total_bytes: ev.total_bytes,
        total_objects: ev.total_objects,
        message: ev.message.clone(),
    }
}

/// A request's lease token; its task id empty or malformed is an error naming `field`.
pub fn lease(tok: &pb::LeaseToken, field: &'static str) -> Result<Lease, WireError> {
    Ok(Lease {
        task_id: TaskId::from_wire(&tok.task_id, field)?,
        attempt: tok.attempt,
    })
}

/// The leases a worker says it holds (registration, heartbeat): the well-formed ones, and the
/// others as they came. A malformed one names no task of this coordinator, so the caller
/// revokes it as it revokes an unknown one.
pub fn held_leases(held: &[pb::LeaseToken]) -> (Vec<Lease>, Vec<pb::LeaseToken>) {
    let mut leases = Vec::new();
    let mut malformed = Vec::new();
    for tok in held {
        match lease(tok, "held.task_id") {
            Ok(l) => leases.push(l),
            Err(_) => malformed.push(tok.clone()),
        }
    }
    (leases, malformed)
}

/// The leases a registration or heartbeat revokes: those the fleet revoked, then the malformed
/// ones the worker sent.
pub fn revoked_leases(revoked: &[Lease], malformed: Vec<pb::LeaseToken>) -> Vec<pb::LeaseToken> {
    revoked.iter().map(lease_token).chain(malformed).collect()
}

/// A lease's request for rate permits.
pub fn permit_request(r: &pb::RequestPermitsRequest) -> PermitRequest {
    PermitRequest {
        worker_id: r.worker_id.clone(),
        unspent: r.unspent,
        wanted: r.wanted,
        reading: r.reading.as_ref().map(|x| {
            (
                x.resource.clone(),
                Reading {
                    limit: x.limit,
                    remaining: x.remaining,
                    reset_s: x.reset,
                },
            )
        }),
        limited_until_ms: r.limited_until_ms,
        secondary: r.secondary,
        rejected_token_id: (!r.rejected_token_id.is_empty()).then(|| r.rejected_token_id.clone()),
    }
}

/// The answer to a permit request as its message.
pub fn permit_answer(a: &PermitAnswer) -> pb::RequestPermitsResponse {
    pb::RequestPermitsResponse {
        grant: Some(rate_grant(a.grant)),
        source_token: a.source_token.expose().to_string(),
    }
}

/// The pauses in force as a heartbeat carries them.
pub fn rate_pauses(pauses: &[RatePause]) -> Vec<pb::RatePause> {
    pauses
        .iter()
        .map(|p| pb::RatePause {
            credential_id: p.credential_id.clone(),
            until_ms: p.until_ms,
        })
        .collect()
}

/// A lease token as its message.
pub fn lease_token(l: &Lease) -> pb::LeaseToken {
    pb::LeaseToken {
        task_id: l.task_id.to_string(),
        attempt: l.attempt,
    }
}

/// A rate grant as its message.
pub fn rate_grant(g: Grant) -> pb::RateGrant {
    pb::RateGrant {
        permits: g.permits,
        paused_until_ms: g.paused_until_ms,
        retry_at_ms: g.retry_at_ms,
    }
}

fn id_or_empty<T: ToString>(id: &Option<T>) -> String {
    id.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// A leased task as the message the worker receives.
pub fn task_message(t: &LeasedTask) -> pb::Task {
    use pb::task::Spec;
    let spec = match &t.spec {
        LeaseSpec::Backup(b) => Spec::Backup(pb::BackupSpec {
            backup_id: b.backup_id.to_string(),
            backup_type: b.backup_type.into(),
            trigger: b.trigger.into(),
            parent_snapshot_id: id_or_empty(&b.parent_snapshot_id),
            parent_backup_id: id_or_empty(&b.parent_backup_id),
            parent_mirror_damaged: b.parent_mirror_damaged,
            parent_verified: b.parent_verified,
        }),
        LeaseSpec::Restore(r) => Spec::Restore(pb::RestoreSpec {
            restore_id: r.restore_id.to_string(),
            backup_id: r.backup_id.to_string(),
            snapshot_id: id_or_empty(&r.snapshot_id),
            restore_type: r.restore_type.into(),
            target: r.target.into(),
            target_url: r.target_url.clone().unwrap_or_default(),
            target_token: r.target_token.expose().to_string(),
            artifact_path: r.artifact_path.clone().unwrap_or_default(),
            target_owner: r.target_owner.clone(),
            target_name: r.target_name.clone(),
            target_api_url: r.target_api_url.clone().unwrap_or_default(),
            target_ca_cert_pem: r.target_ca_cert_pem.clone().unwrap_or_default(),
            target_provider: r.target_provider.into(),
            create_target: r.create_target,
            target_is_source_credential: r.target_is_source_credential,
            access: pb::RestoreAccess::from(r.access).into(),
        }),
        LeaseSpec::Verify(VerifySpec::Manual {
            backup_id,
            snapshot_id,
        }) => Spec::Verify(pb::VerifySpec {
            backup_id: backup_id.to_string(),
            snapshot_id: id_or_empty(snapshot_id),
            mode: VerifyMode::Manual.into(),
            max_age_ms: 0,
        }),
        LeaseSpec::Verify(VerifySpec::Rotation { max_age }) => Spec::Verify(pb::VerifySpec {
            mode: VerifyMode::Rotation.into(),
            max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
            ..Default::default()
        }),
        LeaseSpec::Drill(d) => Spec::Drill(pb::DrillSpec {
            drill_id: d.drill_id.to_string(),
            backup_id: d.backup_id.to_string(),
            snapshot_id: d.snapshot_id.to_string(),
        }),
    };
    pb::Task {
        lease: Some(lease_token(&t.lease)),
        repo: Some(repo_access(&t.repo)),
        rate: t.rate.map(rate_grant),
        spec: Some(spec),
    }
}

fn repo_access(a: &RepoAccess) -> pb::RepoAccess {
    pb::RepoAccess {
        org_id: a.org_id.to_string(),
        repo_id: a.repo_id.to_string(),
        org_name: a.org_name.clone(),
        repo_name: a.repo_name.clone(),
        source_url: a.source_url.clone(),
        source_token: a.source_token.expose().to_string(),
        snapshot_path: a.snapshot_path.clone(),
        repo_password: a.repo_password.expose().to_string(),
        master_key: a.master_key.expose().to_string(),
        provider: a.provider.into(),
        api_url: a.api_url.clone(),
        ca_cert_pem: a.ca_cert_pem.clone().unwrap_or_default(),
        credential_id: a.credential_id.clone(),
        storage: Some(a.storage.to_proto()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repovault_common::secret::Secret;

    #[test]
    fn a_workers_counters_reach_the_watchers_unchanged() {
        use crate::model::Status;
        use crate::tasks::task_progress::{Progress, ProgressHub};

        let task_id: TaskId = "00000000-0000-4000-8000-000000000001"
            .parse()
            .expect("task id");
        let ev = pb::TaskEvent {
            worker_id: "w1".into(),
            phase: "fetch".into(),
            bytes: 1,
            objects: 2,
            total_bytes: 3,
            total_objects: 4,
            message: "fetching".into(),
            ..Default::default()
        };
        let hub = ProgressHub::default();
        let (_, mut rx) = hub.subscribe(task_id.as_str());
        hub.publish(&Progress {
            task_id: task_id.clone(),
            attempt: 1,
            phase: ev.phase.clone(),
            status: Status::Running,
            error: String::new(),
            report: worker_progress(&ev),
        });
        let seen = rx.try_recv().expect("published");
        assert_eq!(
            (
                seen.bytes,
                seen.objects,
                seen.total_bytes,
                seen.total_objects
            ),
            (1, 2, 3, 4)
        );
        assert_eq!(
            (seen.phase.as_str(), seen.message.as_str()),
            ("fetch", "fetching")
        );
        assert_eq!(seen.worker_id, "w1");
    }

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

    #[test]
    fn malformed_held_leases_are_revoked_as_they_came() {
        let good = pb::LeaseToken {
            task_id: crate::ids::new_task_id().to_string(),
            attempt: 3,
        };
        let bad = pb::LeaseToken {
            task_id: "no/such task".into(),
            attempt: 1,
        };
        let (held, malformed) = held_leases(&[bad.clone(), good.clone()]);
        assert_eq!(held.len(), 1);
        assert_eq!(lease_token(&held[0]), good, "a lease encodes as it came");
        assert_eq!(revoked_leases(&held, malformed), vec![good, bad]);
    }

    fn leased(spec: LeaseSpec) -> LeasedTask {
        LeasedTask {
            lease: Lease {
                task_id: crate::ids::new_task_id(),
                attempt: 2,
            },
            repo: RepoAccess {
                org_id: crate::coordinator::testing::tid("org-1"),
                repo_id: crate::coordinator::testing::tid("repo-1"),
                org_name: "acme".into(),
                repo_name: "a".into(),
                source_url: "file:///a".into(),
                source_token: Secret::default(),
                snapshot_path: "acme/a".into(),
                repo_password: Secret::new("pw"),
                master_key: Secret::default(),
                provider: crate::model::Provider::Git,
                api_url: String::new(),
                ca_cert_pem: None,
                credential_id: String::new(),
                storage: repovault_common::storage::StorageConfig::fs("/srv/storage"),
            },
            rate: None,
            spec,
        }
    }

    /// What a lease leaves unset reaches the worker as the message's empty values, as it did
    /// when the queue built the message itself.
    #[test]
    fn absent_values_of_a_lease_encode_as_empty_fields() {
        let rotation = task_message(&leased(LeaseSpec::Verify(VerifySpec::Rotation {
            max_age: std::time::Duration::from_secs(23 * 86_400),
        })));
        let Some(pb::task::Spec::Verify(v)) = &rotation.spec else {
            panic!("a verify spec: {rotation:?}");
        };
        assert_eq!(
            (
                v.mode,
                v.max_age_ms,
                v.backup_id.as_str(),
                v.snapshot_id.as_str()
            ),
            (VerifyMode::Rotation.into(), 23 * 86_400_000, "", "")
        );
        let repo = rotation.repo.as_ref().expect("access");
        assert_eq!(
            (repo.ca_cert_pem.as_str(), repo.repo_password.as_str()),
            ("", "pw")
        );
        assert_eq!(rotation.rate, None);
        assert_eq!(rotation.lease.as_ref().map(|l| l.attempt), Some(2));

        let backup_id: crate::model::BackupId =
            crate::ids::new_backup_id(&crate::coordinator::testing::tid("repo-1"), 1_000);
        let deleted = task_message(&leased(LeaseSpec::Verify(VerifySpec::Manual {
            backup_id: backup_id.clone(),
            snapshot_id: None,
        })));
        let Some(pb::task::Spec::Verify(v)) = &deleted.spec else {
            panic!("a verify spec: {deleted:?}");
        };
        assert_eq!(
            (
                v.mode,
                v.max_age_ms,
                v.backup_id.as_str(),
                v.snapshot_id.as_str()
            ),
            (VerifyMode::Manual.into(), 0, backup_id.as_str(), "")
        );
    }
}
