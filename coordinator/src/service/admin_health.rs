//! The admin service's health view and timeline: the health component's typed reports as
//! messages.

use repovault_proto::v1 as pb;

use crate::clock::format_ms;
use crate::coordinator::Coordinator;
use crate::error::CoreResult;
use crate::health::TimelineEntry;
use crate::health::health_view::{HealthReport, OrgDrill, RepoRow, Timeline};
use crate::model::{CheckOutcome, DrillRecord, Status, VerifyStatus};

fn opt_ms(ms: Option<i64>) -> String {
    ms.map(format_ms).unwrap_or_default()
}

/// `GetHealth`.
pub(super) async fn health(
    core: &Coordinator,
    req: pb::GetHealthRequest,
) -> CoreResult<pb::GetHealthResponse> {
    Ok(health_response(core.health.report(&req.org).await?))
}

/// `GetTimeline`.
pub(super) async fn timeline(
    core: &Coordinator,
    req: pb::GetTimelineRequest,
) -> CoreResult<pb::GetTimelineResponse> {
    Ok(timeline_response(core.health.timeline(&req.repo).await?))
}

fn repo_health(row: RepoRow) -> pb::RepoHealth {
    let (r, st, h) = (&row.repo, &row.stats, &row.health);
    pb::RepoHealth {
        repo: r.full_name(),
        state: h.state.as_str().to_string(),
        message: h.message.clone(),
        incomplete: h.incomplete.clone(),
        last_backup_at: opt_ms(h.last_backup_at_ms),
        next_run_at: opt_ms(h.next_run_at_ms),
        verification: match (&st.last_success_id, st.last_success_verification) {
            (None, _) => String::new(),
            (Some(_), None) => VerifyStatus::Pending.as_str().into(),
            (Some(_), Some(v)) => v.as_str().into(),
        },
        verification_detail: st
            .last_success_verification_detail
            .clone()
            .unwrap_or_default(),
        housekeeping: row.housekeeping.unwrap_or_default(),
    }
}

fn health_response(r: HealthReport) -> pb::GetHealthResponse {
    let s = r.summary;
    let repos: Vec<pb::RepoHealth> = r.rows.into_iter().map(repo_health).collect();
    let unverified = repos
        .iter()
        .filter(|r| r.verification == VerifyStatus::Failed.as_str())
        .count() as u64;
    let housekeeping_failing = repos.iter().filter(|r| !r.housekeeping.is_empty()).count() as u64;
    pb::GetHealthResponse {
        repos,
        summary: Some(pb::HealthSummary {
            total: s.total,
            backed_up: s.backed_up,
            active: s.active,
            never: s.never,
            failed: s.failed,
            late: s.late,
            paused: s.paused,
            incomplete: s.incomplete,
            last_backup_at: opt_ms(s.last_backup_at_ms),
            next_run_at: opt_ms(s.next_run_at_ms),
            unverified,
            readback_current: r.readback_current,
            readback_overdue: r.readback_overdue,
            housekeeping_failing,
        }),
        drills: r.drills.into_iter().map(drill_health).collect(),
    }
}

fn drill_health(d: OrgDrill) -> pb::DrillHealth {
    let next_at = opt_ms(d.next_at_ms);
    match d.latest {
        Some(l) => pb::DrillHealth {
            org: d.org.name,
            status: l.outcome().as_str().into(),
            repo: l.repo_full_name.clone(),
            backup_id: l.backup_id.to_string(),
            finished_at: opt_ms(l.finished_at_ms),
            detail: drill_detail(&l),
            next_at,
        },
        None => pb::DrillHealth {
            org: d.org.name,
            status: "never".into(),
            next_at,
            ..Default::default()
        },
    }
}

/// What a drill found, in one line: its error, else its checks that did not pass.
fn drill_detail(d: &DrillRecord) -> String {
    if let Some(e) = &d.error {
        return e.clone();
    }
    d.checks
        .iter()
        .filter(|c| c.result != CheckOutcome::Pass)
        .map(|c| format!("{} {}: {}", c.name, c.result.as_str(), c.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

fn timeline_response(t: Timeline) -> pb::GetTimelineResponse {
    let escrowed = t.escrowed;
    let entries = t
        .entries
        .into_iter()
        .map(|e| match e {
            TimelineEntry::Backup {
                at_ms,
                backup: b,
                size_jump,
            } => pb::TimelineEntry {
                at: format_ms(at_ms),
                kind: "backup".into(),
                backup_id: b.id.to_string(),
                r#type: b.backup_type.into(),
                trigger: b.trigger.into(),
                status: b.status.into(),
                size_bytes: b.size_bytes,
                added_bytes: b.added_bytes,
                verification: match (&b.verification, b.status) {
                    (Some(v), _) => v.status.as_str().into(),
                    (None, Status::Completed) => VerifyStatus::Pending.as_str().into(),
                    (None, _) => "-".into(),
                },
                checks: b
                    .verification
                    .iter()
                    .flat_map(|v| v.checks.iter())
                    .map(super::convert::check_to_proto)
                    .collect(),
                // As listings: escrow covers the finished (completed) backups.
                is_escrowed: escrowed && b.status == Status::Completed,
                // The timeline's flag and size_match's warning are one threshold when
                // configured alike; a warning from size_match always shows.
                size_jump: size_jump
                    || b.verification
                        .iter()
                        .flat_map(|v| v.checks.iter())
                        .any(|c| c.name == crate::verification::SIZE_MATCH && c.warning),
                error: b.error.clone().unwrap_or_default(),
            },
            TimelineEntry::SkippedSlot { at_ms } => pb::TimelineEntry {
                at: format_ms(at_ms),
                kind: "skipped_slot".into(),
                verification: "-".into(),
                ..Default::default()
            },
            TimelineEntry::Drill { at_ms, drill: d } => pb::TimelineEntry {
                at: format_ms(at_ms),
                kind: "drill".into(),
                backup_id: d.backup_id.to_string(),
                trigger: d.trigger.into(),
                status: d.status.into(),
                verification: d.outcome().as_str().into(),
                checks: d
                    .checks
                    .iter()
                    .map(super::convert::check_to_proto)
                    .collect(),
                error: drill_detail(&d),
                ..Default::default()
            },
        })
        .collect();
    pb::GetTimelineResponse {
        repo: t.repo.full_name(),
        entries,
    }
}
