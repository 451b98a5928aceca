//! `drill run|list`: restore drills; `drill run` exits 5 unless the drill passed.

use repovault_common::domain::{CheckOutcome, DrillStatus, Trigger};
use repovault_proto::v1 as pb;

use super::pages;
use crate::admin_client::{Admin, CliError};
use crate::args::{DrillCmd, OutputFormat};
use crate::exit;
use crate::output::{self, fields};
use crate::output::{spelled, value};

use super::task_wait::{Ended, Task, queued, run_and_wait};
use super::verify_cmd::print_checks;

pub(super) async fn drill(
    c: &mut Admin,
    cmd: DrillCmd,
    out: OutputFormat,
) -> Result<i32, CliError> {
    match cmd {
        DrillCmd::Run {
            org,
            repo,
            backup,
            from_copy,
            detach,
        } => {
            let d = c
                .run_drill(pb::RunDrillRequest {
                    org: org.clone(),
                    repo: repo.unwrap_or_default(),
                    backup_id: backup.map(String::from).unwrap_or_default(),
                    from_copy,
                })
                .await?
                .into_inner()
                .drill
                .unwrap_or_default();
            if detach {
                return Ok(queued(out, &d, |d| {
                    format!(
                        "drill {} of {} (backup {}) queued",
                        d.id, d.repo, d.backup_id
                    )
                }));
            }
            let task = Task {
                id: &d.task_id,
                what: format!("drill of {}", d.repo),
            };
            let fetch = async |c: &mut Admin| {
                c.list_drills(pb::ListDrillsRequest {
                    org: org.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .drills
                .into_iter()
                .find(|x| x.id == d.id)
                .ok_or_else(|| CliError::new(exit::FAILED, "the drill's record is gone"))
            };
            let human = |d: &pb::Drill| {
                fields(&[
                    ("drill", d.id.clone()),
                    ("repo", d.repo.clone()),
                    ("backup", d.backup_id.clone()),
                    ("status", spelled::<DrillStatus>(d.status)),
                    (
                        "error",
                        if d.error.is_empty() {
                            "-".into()
                        } else {
                            d.error.clone()
                        },
                    ),
                ]);
                print_checks(&d.checks);
            };
            let code = |d: &pb::Drill| {
                if value(d.status) == Some(DrillStatus::Passed) {
                    exit::OK
                } else {
                    exit::VERIFY_FAILED
                }
            };
            run_and_wait(c, out, Some(task), Ended { fetch, human, code }).await
        }
        DrillCmd::List { org, page } => {
            let shown = pages::follow(
                c,
                page,
                async |c: &mut Admin, page_size: u32, page_token: String| {
                    let r = c
                        .list_drills(pb::ListDrillsRequest {
                            org: org.clone(),
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok::<_, CliError>((r.drills, r.next_page_token))
                },
            )
            .await?;
            let drills = shown.items;
            output::list(
                out,
                &drills,
                &[
                    "CREATED",
                    "DRILL",
                    "REPOSITORY",
                    "BACKUP",
                    "TRIGGER",
                    "STATUS",
                    "DETAIL",
                ],
                |d| {
                    let detail = if !d.error.is_empty() {
                        d.error.clone()
                    } else {
                        d.checks
                            .iter()
                            .filter(|c| value(c.result) != Some(CheckOutcome::Pass))
                            .map(|c| {
                                format!("{}: {}", c.name, c.detail.lines().next().unwrap_or(""))
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    vec![
                        d.created_at.clone(),
                        d.id.clone(),
                        d.repo.clone(),
                        d.backup_id.clone(),
                        spelled::<Trigger>(d.trigger),
                        spelled::<DrillStatus>(d.status),
                        if detail.is_empty() {
                            "-".into()
                        } else {
                            detail
                        },
                    ]
                },
            );
            pages::note_more(out, drills.len(), shown.more, "drills");
            Ok(exit::OK)
        }
    }
}
