//! The admin service's health view and timeline: the health component's typed reports as
//! messages.

use repovault_proto::v1 as pb;

use crate::catalog::org_registry::repo_key;
use crate::clock::format_ms;
use crate::coordinator::Coordinator;
use crate::health::TimelineEntry;
use crate::health::health_view::{HealthReport, OrgDrill, RepoRow};
use crate::paging::{self, KeyPart, Order, Page, SortKey};

use super::paged::{List, Listing};
use crate::model::{CheckOutcome, DrillRecord, Status, VerifyStatus};

fn opt_ms(ms: Option<i64>) -> String {
    ms.map(format_ms).unwrap_or_default()
}

/// `GetHealth`: the first page computes every row (the summary needs them all) and carries
/// the summary and drills; a later page computes only its own rows, found by seeking in the
/// name indexes.
pub(super) async fn health(
    core: &Coordinator,
    req: pb::GetHealthRequest,
) -> Result<pb::GetHealthResponse, tonic::Status> {
    let listing = Listing::new(List::HealthRows, &req.org);
    let page = listing.page(req.page_size, &req.page_token)?;
    if !page.is_first() {
        let rows = core.health.report_rows_page(&req.org, &page).await?;
        let (repos, next_page_token) = listing.respond(rows.map(repo_health));
        return Ok(pb::GetHealthResponse {
            repos,
            summary: None,
            drills: Vec::new(),
            next_page_token,
        });
    }
    let report = core.health.report(&req.org).await?;
    Ok(health_response(report, &listing, &page))
}

/// `GetTimeline`: the timeline is built whole (its size jumps compare each backup with the
/// previous one), sorted and cut.
pub(super) async fn timeline(
    core: &Coordinator,
    req: pb::GetTimelineRequest,
) -> Result<pb::GetTimelineResponse, tonic::Status> {
    let listing = Listing::new(List::Timeline, &req.repo);
    let page = listing.page(req.page_size, &req.page_token)?;
    let t = core.health.timeline(&req.repo).await?;
    let escrowed = t.escrowed;
    let found = paging::sort_and_cut(t.entries, timeline_key, Order::Ascending, &page);
    let (entries, next_page_token) = listing.respond(found.map(|e| timeline_entry(e, escrowed)));
    Ok(pb::GetTimelineResponse {
        repo: t.repo.full_name(),
        entries,
        next_page_token,
    })
}

/// A timeline entry's sort key: its time, then backups before skipped slots before drills (as
/// the timeline interleaves them), then the backup's or drill's id.
fn timeline_key(e: &TimelineEntry) -> SortKey {
    let (rank, id) = match e {
        TimelineEntry::Backup { backup, .. } => (0, backup.id.to_string()),
        TimelineEntry::SkippedSlot { .. } => (1, String::new()),
        TimelineEntry::Drill { drill, .. } => (2, drill.id.to_string()),
    };
    SortKey::new([
        KeyPart::Int(e.at_ms()),
        KeyPart::Int(rank),
        KeyPart::from(id),
    ])
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
        copy: super::convert::copy_text(row.copy.as_ref()),
    }
}

/// The first page: its rows, and the summary and drills over every row.
fn health_response(r: HealthReport, listing: &Listing, page: &Page) -> pb::GetHealthResponse {
    let s = r.summary;
    let rows: Vec<(SortKey, pb::RepoHealth)> = r
        .rows
        .into_iter()
        .map(|row| (repo_key(&row.repo), repo_health(row)))
        .collect();
    let unverified = rows
        .iter()
        .filter(|(_, r)| r.verification == VerifyStatus::Failed.as_str())
        .count() as u64;
    let housekeeping_failing = rows
        .iter()
        .filter(|(_, r)| !r.housekeeping.is_empty())
        .count() as u64;
    let found = paging::sort_and_cut(rows, |(k, _)| k.clone(), Order::Ascending, page);
    let (repos, next_page_token) = listing.respond(found.map(|(_, r)| r));
    pb::GetHealthResponse {
        next_page_token,
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

/// One timeline entry as a message; `escrowed`: an escrow agreement holds the repository now.
fn timeline_entry(e: TimelineEntry, escrowed: bool) -> pb::TimelineEntry {
    match e {
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
            copy: super::convert::copy_text(b.copy.as_ref()),
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
    }
}
