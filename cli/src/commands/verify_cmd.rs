//! `backup verify`: read a backup back from storage and check it; exit 5 unless verified. Also
//! how a verification and its checks are printed (`backup show`, `drill run`).

use repovault_common::domain::{BackupId, CheckOutcome, VerifyRun, VerifyStatus};
use repovault_proto::v1 as pb;

use crate::admin_client::{Admin, CliError};
use crate::args::OutputFormat;
use crate::exit;
use crate::output::outln;
use crate::output::{fields, human_bytes};
use crate::output::{spelled, value};

use super::backup_cmd::get_backup;
use super::task_wait::{Ended, Task, queued, run_and_wait};

/// `backup verify ID`: queue, wait, print; exit 5 unless verified.
pub(super) async fn verify(
    c: &mut Admin,
    id: BackupId,
    detach: bool,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .verify_backup(pb::VerifyBackupRequest { id: id.to_string() })
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
    let fetch = async |c: &mut Admin| get_backup(c, id.to_string()).await;
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
            .is_some_and(|v| value(v.status) == Some(VerifyStatus::Verified))
        {
            exit::OK
        } else {
            exit::VERIFY_FAILED
        }
    };
    run_and_wait(c, out, Some(task), Ended { fetch, human, code }).await
}

/// One line: status, run, when, what was read.
pub(super) fn verification_line(v: &pb::Verification) -> String {
    let mut s = spelled::<VerifyStatus>(v.status);
    if v.run != 0 {
        s.push_str(&format!(" ({}", spelled::<VerifyRun>(v.run)));
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
pub(super) fn print_checks(checks: &[pb::CheckResult]) {
    if checks.is_empty() {
        return;
    }
    outln!("checks:");
    for c in checks {
        let result = spelled::<CheckOutcome>(c.result);
        let mark = match (value(c.result), c.warning) {
            (Some(CheckOutcome::Pass), true) => "pass (warning)",
            _ => result.as_str(),
        };
        let mut lines = c.detail.lines();
        outln!(
            "  {:<19} {:<15} {}",
            c.name,
            mark,
            lines.next().unwrap_or("")
        );
        for l in lines {
            outln!("  {:<19} {:<15} {l}", "", "");
        }
    }
}
