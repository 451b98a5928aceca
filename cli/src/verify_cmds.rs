//! `backup verify` and `drill run|list` (issue 7), and how checks are printed.

use repovault_proto::v1 as pb;

use crate::args::{DrillCmd, OutputFormat};
use crate::client::{Admin, CliError};
use crate::commands::{Ended, Task, get_backup, queued, run_and_wait};
use crate::exit;
use crate::output::{self, fields, human_bytes};

/// One line: status, run, when, what was read.
pub fn verification_line(v: &pb::Verification) -> String {
    let mut s = v.status.clone();
    if !v.run.is_empty() {
        s.push_str(&format!(" ({}", v.run));
        if !v.finished_at.is_empty() {
            s.push_str(&format!(", {}", v.finished_at));
        }
        if v.packs_read > 0 {
            s.push_str(&format!(
                ", {} packs / {} read back",
                v.packs_read,
                human_bytes(v.bytes_read)
            ));
        }
        s.push(')');
    }
    s
}

/// Each check on its own line, its detail indented under it.
pub fn print_checks(checks: &[pb::CheckResult]) {
    if checks.is_empty() {
        return;
    }
    println!("checks:");
    for c in checks {
        let mark = match (c.result.as_str(), c.warning) {
            ("pass", true) => "pass (warning)",
            (r, _) => r,
        };
        let mut lines = c.detail.lines();
        println!(
            "  {:<19} {:<15} {}",
            c.name,
            mark,
            lines.next().unwrap_or("")
        );
        for l in lines {
            println!("  {:<19} {:<15} {l}", "", "");
        }
    }
}

/// `backup verify ID`: queue, wait, print; exit 5 unless verified.
pub async fn verify(
    c: &mut Admin,
    id: String,
    detach: bool,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .verify_backup(pb::VerifyBackupRequest { id: id.clone() })
        .await?
        .into_inner();
    if detach {
        return Ok(queued(out, &r, |r| {
            format!("verification of {id} queued (task {})", r.task_id)
        }));
    }
    let task = Task {
        id: &r.task_id,
        what: format!("verify {id}"),
    };
    let fetch = async |c: &mut Admin| get_backup(c, id.clone()).await;
    let human = |b: &pb::Backup| {
        let v = b.verification.clone().unwrap_or_default();
        fields(&[
            ("backup", b.id.clone()),
            ("repo", b.repo.clone()),
            ("verification", verification_line(&v)),
        ]);
        print_checks(&v.checks);
    };
    let code = |b: &pb::Backup| {
        if b.verification
            .as_ref()
            .is_some_and(|v| v.status == "verified")
        {
            exit::OK
        } else {
            exit::VERIFY_FAILED
        }
    };
    run_and_wait(c, out, Some(task), Ended { fetch, human, code }).await
}

pub async fn drill(c: &mut Admin, cmd: DrillCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        DrillCmd::Run {
            org,
            repo,
            backup,
            detach,
        } => {
            let d = c
                .run_drill(pb::RunDrillRequest {
                    org: org.clone(),
                    repo: repo.unwrap_or_default(),
                    backup_id: backup.unwrap_or_default(),
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
                c.list_drills(pb::ListDrillsRequest { org: org.clone() })
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
                    ("status", d.status.clone()),
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
                if d.status == "passed" {
                    exit::OK
                } else {
                    exit::VERIFY_FAILED
                }
            };
            run_and_wait(c, out, Some(task), Ended { fetch, human, code }).await
        }
        DrillCmd::List { org } => {
            let drills = c
                .list_drills(pb::ListDrillsRequest { org })
                .await?
                .into_inner()
                .drills;
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
                            .filter(|c| c.result != "pass")
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
                        d.trigger.clone(),
                        d.status.clone(),
                        if detail.is_empty() {
                            "-".into()
                        } else {
                            detail
                        },
                    ]
                },
            );
            Ok(exit::OK)
        }
    }
}
