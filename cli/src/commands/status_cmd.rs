//! `health` and `timeline`: how the backups stand.

use repovault_common::domain::{BackupType, CheckOutcome, TaskStatus, Trigger};
use repovault_proto::v1 as pb;

use crate::admin_client::{Admin, CliError};
use crate::args::{OutputFormat, PageArgs};
use crate::exit;
use crate::output::outln;
use crate::output::{self, fields, human_bytes, is_json};
use crate::output::{spelled, value};

use super::{or_dash, pages};

/// `health [ORG]`: one row per repository, then the summary; with `--output json` the
/// response (`repos`, `summary` and `drills`) as one document. The rows come page by page; the
/// summary and drills with the first page.
pub(super) async fn health(
    c: &mut Admin,
    org: Option<String>,
    page: PageArgs,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let org = org.unwrap_or_default();
    let mut first: Option<pb::GetHealthResponse> = None;
    let shown = pages::follow(
        c,
        page,
        async |c: &mut Admin, page_size: u32, page_token: String| {
            let mut r = c
                .get_health(pb::GetHealthRequest {
                    org: org.clone(),
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            let rows = std::mem::take(&mut r.repos);
            let next = std::mem::take(&mut r.next_page_token);
            first.get_or_insert(r);
            Ok::<_, CliError>((rows, next))
        },
    )
    .await?;
    let r = pb::GetHealthResponse {
        repos: shown.items,
        ..first.unwrap_or_default()
    };
    if is_json(out) {
        // The document the unpaged call answered: without the paging field.
        let mut doc = serde_json::to_value(&r).unwrap_or_default();
        if let Some(o) = doc.as_object_mut() {
            o.remove("next_page_token");
        }
        output::json(&doc);
        return Ok(exit::OK);
    }
    output::table(
        &["REPOSITORY", "STATE", "LAST BACKUP", "NEXT RUN", "DETAIL"],
        &r.repos
            .iter()
            .map(|h| {
                let mut detail = h.message.clone();
                if !h.incomplete.is_empty() {
                    push_part(
                        &mut detail,
                        &format!("skipped: {}", h.incomplete.join(", ")),
                    );
                }
                if !h.housekeeping.is_empty() {
                    push_part(
                        &mut detail,
                        &format!("housekeeping failed: {}", h.housekeeping),
                    );
                }
                if !h.copy.is_empty() {
                    push_part(&mut detail, &format!("copy {}", h.copy));
                }
                vec![
                    h.repo.clone(),
                    h.state.clone(),
                    or_dash(&h.last_backup_at),
                    or_dash(&h.next_run_at),
                    or_dash(&detail),
                ]
            })
            .collect::<Vec<_>>(),
    );
    pages::note_more(out, r.repos.len(), shown.more, "repositories");
    let s = r.summary.unwrap_or_default();
    outln!();
    fields(&[
        ("repositories", s.total.to_string()),
        ("backed up", s.backed_up.to_string()),
        ("active backup", s.active.to_string()),
        ("not yet backed up", s.never.to_string()),
        ("failing", s.failed.to_string()),
        ("late", s.late.to_string()),
        ("paused", s.paused.to_string()),
        ("incomplete", s.incomplete.to_string()),
        ("failed verification", s.unverified.to_string()),
        (
            "read back in 30 days",
            format!("{} (overdue: {})", s.readback_current, s.readback_overdue),
        ),
        ("housekeeping failing", s.housekeeping_failing.to_string()),
        ("last backup", or_dash(&s.last_backup_at)),
        ("next scheduled run", or_dash(&s.next_run_at)),
    ]);
    if !r.drills.is_empty() {
        outln!();
        output::table(
            &[
                "ORGANISATION",
                "LAST DRILL",
                "REPOSITORY",
                "FINISHED",
                "NEXT",
                "DETAIL",
            ],
            &r.drills
                .iter()
                .map(|d| {
                    vec![
                        d.org.clone(),
                        d.status.clone(),
                        or_dash(&d.repo),
                        or_dash(&d.finished_at),
                        or_dash(&d.next_at),
                        or_dash(&d.detail),
                    ]
                })
                .collect::<Vec<_>>(),
        );
    }
    Ok(exit::OK)
}

/// `timeline ORG/NAME`: every backup oldest first with its verification, skipped slots and
/// drills in between.
pub(super) async fn timeline(
    c: &mut Admin,
    repo: String,
    page: PageArgs,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let shown = pages::follow(
        c,
        page,
        async |c: &mut Admin, page_size: u32, page_token: String| {
            let r = c
                .get_timeline(pb::GetTimelineRequest {
                    repo: repo.clone(),
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok::<_, CliError>((r.entries, r.next_page_token))
        },
    )
    .await?;
    let flag = |b: bool, s: &str| if b { s.to_string() } else { String::new() };
    output::list(
        out,
        &shown.items,
        &[
            "AT", "BACKUP", "TYPE", "TRIGGER", "STATUS", "SIZE", "ADDED", "VERIFIED", "ESCROW",
            "NOTE",
        ],
        |e| {
            if e.kind == "skipped_slot" {
                let mut row = vec![e.at.clone(), "-".into()];
                row.extend(std::iter::repeat_n(String::new(), 7));
                row.push("slot skipped: the previous backup still ran".into());
                return row;
            }
            if e.kind == "drill" {
                let mut row = vec![e.at.clone(), e.backup_id.clone(), "drill".into()];
                row.push(spelled::<Trigger>(e.trigger));
                row.push(spelled::<TaskStatus>(e.status));
                row.extend(std::iter::repeat_n(String::new(), 2));
                row.push(e.verification.clone());
                row.push(String::new());
                row.push(if e.error.is_empty() {
                    "restore drill".into()
                } else {
                    format!("restore drill: {}", e.error)
                });
                return row;
            }
            let failing: Vec<String> = e
                .checks
                .iter()
                .filter(|c| match value(c.result) {
                    Some(CheckOutcome::Fail) => true,
                    Some(CheckOutcome::Skipped) => c.incomplete,
                    _ => false,
                })
                .map(|c| format!("{} {}", c.name, spelled::<CheckOutcome>(c.result)))
                .collect();
            let mut note = flag(e.size_jump, "size jump");
            if !failing.is_empty() {
                push_part(&mut note, &failing.join(", "));
            }
            if !e.error.is_empty() {
                push_part(&mut note, &e.error);
            }
            if !e.copy.is_empty() {
                push_part(&mut note, &format!("copy {}", e.copy));
            }
            vec![
                e.at.clone(),
                e.backup_id.clone(),
                spelled::<BackupType>(e.r#type),
                spelled::<Trigger>(e.trigger),
                spelled::<TaskStatus>(e.status),
                human_bytes(e.size_bytes),
                human_bytes(e.added_bytes),
                or_dash(&e.verification),
                flag(e.is_escrowed, "escrowed"),
                note,
            ]
        },
    );
    pages::note_more(out, shown.items.len(), shown.more, "timeline entries");
    Ok(exit::OK)
}

/// Appends `part` to a `; `-separated note.
fn push_part(note: &mut String, part: &str) {
    if !note.is_empty() {
        note.push_str("; ");
    }
    note.push_str(part);
}
