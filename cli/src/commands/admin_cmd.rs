//! `admin rebuild-catalog`, `queue` and `audit list`.

use repovault_common::domain::TaskKind;
use repovault_proto::v1 as pb;

use crate::admin_client::{Admin, CliError};
use crate::args::{AdminCmd, OutputFormat, PageArgs};
use crate::exit;
use crate::output::outln;
use crate::output::spelled;
use crate::output::{self, is_json};

use super::or_dash;

pub(super) async fn admin(
    c: &mut Admin,
    cmd: AdminCmd,
    out: OutputFormat,
) -> Result<i32, CliError> {
    match cmd {
        AdminCmd::RebuildCatalog => {
            let r = c
                .rebuild_catalog(pb::RebuildCatalogRequest {})
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r);
            } else {
                outln!(
                    "catalog rebuilt: {} repositories, {} backups",
                    r.repositories,
                    r.backups
                );
            }
        }
    }
    Ok(exit::OK)
}

pub(super) async fn queue(
    c: &mut Admin,
    page: PageArgs,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let shown = super::pages::follow(
        c,
        page,
        async |c: &mut Admin, page_size: u32, page_token: String| {
            let r = c
                .get_queue(pb::GetQueueRequest {
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok::<_, CliError>((r.entries, r.next_page_token))
        },
    )
    .await?;
    let q = shown.items;
    output::list(
        out,
        &q,
        &[
            "TASK",
            "KIND",
            "REPOSITORY",
            "PRIORITY",
            "STATE",
            "ATTEMPT",
            "WORKER",
            "ENQUEUED",
        ],
        |e| {
            vec![
                e.task_id.clone(),
                spelled::<TaskKind>(e.kind),
                e.repo.clone(),
                format!("{} ({})", e.effective_priority, e.priority),
                e.state.clone(),
                e.attempt.to_string(),
                or_dash(&e.worker_id),
                e.enqueued_at.clone(),
            ]
        },
    );
    super::pages::note_more(out, q.len(), shown.more, "tasks");
    Ok(exit::OK)
}

pub(super) async fn audit(
    c: &mut Admin,
    page: PageArgs,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let shown = super::pages::follow(
        c,
        page,
        async |c: &mut Admin, page_size: u32, page_token: String| {
            let r = c
                .list_audit(pb::ListAuditRequest {
                    page_size,
                    page_token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok::<_, CliError>((r.entries, r.next_page_token))
        },
    )
    .await?;
    let entries = shown.items;
    output::list(
        out,
        &entries,
        &["AT", "CALLER", "ROLE", "FROM", "CALL", "OUTCOME"],
        |e| {
            vec![
                e.at.clone(),
                e.caller.clone(),
                e.role.clone(),
                or_dash(&e.peer),
                e.method.clone(),
                if e.detail.is_empty() {
                    e.outcome.clone()
                } else {
                    format!("{} ({})", e.outcome, e.detail)
                },
            ]
        },
    );
    super::pages::note_more(out, entries.len(), shown.more, "audit entries");
    Ok(exit::OK)
}
