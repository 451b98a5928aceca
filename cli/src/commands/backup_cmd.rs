//! `backup ...`: run, list, show, browse, delete (download is in `zip_cmd`, verify in
//! `verify_cmd`), and how a backup is printed.

use repovault_common::domain::{
    BackupId, BackupType, ComponentState, TaskStatus, Trigger, VerifyStatus,
};
use repovault_proto::v1 as pb;

use super::pages;
use crate::admin_client::{Admin, CliError};
use crate::args::{BackupCmd, OutputFormat};
use crate::exit;
use crate::output::outln;
use crate::output::{self, fields, human_bytes, is_json};
use crate::output::{spelled, value};

use super::task_wait::{Ended, Task, completed, queued, run_and_wait};
use super::{or_dash, verify_cmd, zip_cmd};

/// One backup's record (`backup show`, and the end of every wait on a backup's task).
pub(super) async fn get_backup(c: &mut Admin, id: String) -> Result<pb::Backup, CliError> {
    Ok(c.get_backup(pb::GetBackupRequest { id })
        .await?
        .into_inner()
        .backup
        .unwrap_or_default())
}

pub(super) async fn backup(
    c: &mut Admin,
    cmd: BackupCmd,
    out: OutputFormat,
) -> Result<i32, CliError> {
    match cmd {
        BackupCmd::Run {
            repo,
            wait,
            backup_type,
        } => {
            let b = c
                .run_backup(pb::RunBackupRequest {
                    repo,
                    r#type: backup_type
                        .parse::<BackupType>()
                        .map_err(|e| CliError::usage(e.to_string()))?
                        .into(),
                })
                .await?
                .into_inner()
                .backup
                .unwrap_or_default();
            if !wait {
                return Ok(queued(out, &b, |b| {
                    format!(
                        "backup {} queued ({} {}, priority {})",
                        b.id,
                        spelled::<BackupType>(b.r#type),
                        spelled::<Trigger>(b.trigger),
                        b.priority
                    )
                }));
            }
            let task = Task {
                id: &b.task_id,
                what: format!("backup {}", b.id),
            };
            let fetch = async |c: &mut Admin| get_backup(c, b.id.clone()).await;
            run_and_wait(
                c,
                out,
                Some(task),
                Ended {
                    fetch,
                    human: backup_fields,
                    code: |b: &pb::Backup| completed(b.status),
                },
            )
            .await
        }
        BackupCmd::Download {
            backup_id,
            to,
            expires,
        } => zip_cmd::backup_download(c, &backup_id, &to, expires, out).await,
        BackupCmd::List { repo, page } => {
            let repo = repo.unwrap_or_default();
            let shown = pages::follow(
                c,
                page,
                async |c: &mut Admin, page_size: u32, page_token: String| {
                    let r = c
                        .list_backups(pb::ListBackupsRequest {
                            repo: repo.clone(),
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok::<_, CliError>((r.backups, r.next_page_token))
                },
            )
            .await?;
            let list = shown.items;
            output::list(
                out,
                &list,
                &[
                    "ID",
                    "REPOSITORY",
                    "TYPE",
                    "TRIGGER",
                    "STATUS",
                    "VERIFIED",
                    "CREATED",
                    "SIZE",
                    "ADDED",
                ],
                |b| {
                    vec![
                        b.id.clone(),
                        b.repo.clone(),
                        spelled::<BackupType>(b.r#type),
                        spelled::<Trigger>(b.trigger),
                        spelled::<TaskStatus>(b.status),
                        b.verification
                            .as_ref()
                            .map_or_else(|| "-".to_string(), |v| spelled::<VerifyStatus>(v.status)),
                        b.created_at.clone(),
                        human_bytes(b.size_bytes),
                        human_bytes(b.added_bytes),
                    ]
                },
            );
            pages::note_more(out, list.len(), shown.more, "backups");
            Ok(exit::OK)
        }
        BackupCmd::Show { id } => {
            let b = get_backup(c, id.into()).await?;
            output::show(out, &b, backup_fields);
            Ok(exit::OK)
        }
        BackupCmd::Delete { id } => backup_delete(c, id, out).await,
        BackupCmd::Verify { id, detach } => verify_cmd::verify(c, id, detach, out).await,
        BackupCmd::Browse { id, path } => {
            let r = c
                .browse_backup(pb::BrowseBackupRequest {
                    id: id.into(),
                    path,
                })
                .await?
                .into_inner();
            if r.document_json.is_empty() {
                if is_json(out) {
                    output::json(&r.items);
                } else {
                    browse_table(&r.items);
                }
            } else {
                let doc: serde_json::Value =
                    serde_json::from_str(&r.document_json).map_err(|e| {
                        CliError::new(exit::FAILED, format!("the stored document: {e}"))
                    })?;
                if is_json(out) {
                    output::json_document(&doc);
                } else {
                    print_thread(&doc);
                }
            }
            Ok(exit::OK)
        }
    }
}

fn backup_fields(b: &pb::Backup) {
    let c = b.counts.unwrap_or_default();
    let mut rows = vec![
        ("id", b.id.clone()),
        ("repo", b.repo.clone()),
        ("type", spelled::<BackupType>(b.r#type)),
        ("trigger", spelled::<Trigger>(b.trigger)),
        ("status", spelled::<TaskStatus>(b.status)),
        ("error", or_dash(&b.error)),
        ("created_at", b.created_at.clone()),
        ("finished_at", or_dash(&b.finished_at)),
        ("size", human_bytes(b.size_bytes)),
        ("added", human_bytes(b.added_bytes)),
        ("received", human_bytes(b.bytes_received)),
        (
            "escrowed",
            if b.is_escrowed { "yes" } else { "no" }.to_string(),
        ),
        ("copy", or_dash(&b.copy)),
        (
            "branches/tags/commits",
            format!("{}/{}/{}", c.branches, c.tags, c.commits),
        ),
    ];
    if !b.components.is_empty() {
        rows.push((
            "issues/pulls/comments/reviews",
            format!("{}/{}/{}/{}", c.issues, c.pulls, c.comments, c.reviews),
        ));
        rows.push((
            "releases/assets",
            format!("{}/{}", c.releases, c.release_assets),
        ));
        rows.push((
            "wiki_pages/lfs_objects/attachments",
            format!("{}/{}/{}", c.wiki_pages, c.lfs_objects, c.attachments),
        ));
        rows.push((
            "labels/milestones/workflows",
            format!("{}/{}/{}", c.labels, c.milestones, c.workflows),
        ));
        let incomplete: Vec<&str> = component_order(b)
            .into_iter()
            .filter(|k| value(b.components[*k].status) != Some(ComponentState::Included))
            .collect();
        rows.push((
            "complete",
            if incomplete.is_empty() {
                "yes".to_string()
            } else {
                format!("no ({} not included)", incomplete.join(", "))
            },
        ));
    }
    rows.push(("snapshot", or_dash(&b.snapshot_id)));
    rows.push(("attempt", b.attempt.to_string()));
    if let Some(v) = &b.verification {
        rows.push(("verification", verify_cmd::verification_line(v)));
    }
    fields(&rows);
    if let Some(v) = &b.verification {
        verify_cmd::print_checks(&v.checks);
    }
    if !b.components.is_empty() {
        outln!("components:");
        for k in component_order(b) {
            let st = &b.components[k];
            if st.reason.is_empty() {
                outln!("  {k:<12} {}", spelled::<ComponentState>(st.status));
            } else {
                outln!(
                    "  {k:<12} {}: {}",
                    spelled::<ComponentState>(st.status),
                    st.reason
                );
            }
        }
    }
}

/// The backup's components in the order the product names them, then any others.
fn component_order(b: &pb::Backup) -> Vec<&str> {
    let known = repovault_common::manifest::GITHUB_COMPONENTS;
    let mut out: Vec<&str> = known
        .iter()
        .copied()
        .filter(|k| b.components.contains_key(*k))
        .collect();
    let mut rest: Vec<&str> = b
        .components
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    rest.sort_unstable();
    out.extend(rest);
    out
}

fn browse_table(items: &[pb::BrowseItem]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.number.to_string(),
                i.state.clone(),
                i.author.clone(),
                i.comments.to_string(),
                i.reviews_or_assets.to_string(),
                i.updated_at.clone(),
                i.title.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "NUMBER",
            "STATE",
            "AUTHOR",
            "COMMENTS",
            "REVIEWS/ASSETS",
            "UPDATED",
            "TITLE",
        ],
        &rows,
    );
}

/// One issue or pull request as a thread: the item, then its comments, reviews and review
/// comments in time order, each under a header naming the author and time.
fn print_thread(doc: &serde_json::Value) {
    use serde_json::Value;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let login = |v: &Value| v.get("user").map(|u| s(u, "login")).unwrap_or_default();
    let item = doc
        .get("pull")
        .or_else(|| doc.get("issue"))
        .unwrap_or(&Value::Null);
    let merged = item.get("merged_at").is_some_and(|m| !m.is_null());
    outln!(
        "#{} {} [{}]",
        item.get("number").and_then(Value::as_u64).unwrap_or(0),
        s(item, "title"),
        if merged {
            "merged".into()
        } else {
            s(item, "state")
        }
    );
    outln!("by {} at {}", login(item), s(item, "created_at"));
    let body = s(item, "body");
    if !body.is_empty() {
        outln!("\n{body}");
    }
    let mut entries: Vec<(String, String, String)> = Vec::new();
    let list = |k: &str| {
        doc.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for c in list("comments") {
        entries.push((
            s(&c, "created_at"),
            format!("comment by {}", login(&c)),
            s(&c, "body"),
        ));
    }
    for r in list("reviews") {
        entries.push((
            s(&r, "submitted_at"),
            format!("review by {}: {}", login(&r), s(&r, "state")),
            s(&r, "body"),
        ));
    }
    for c in list("review_comments") {
        let line = c
            .get("line")
            .and_then(Value::as_u64)
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        entries.push((
            s(&c, "created_at"),
            format!("review comment by {} on {}{line}", login(&c), s(&c, "path")),
            s(&c, "body"),
        ));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (at, header, body) in entries {
        outln!("\n--- {header} at {at}");
        if !body.is_empty() {
            outln!("{body}");
        }
    }
}

async fn backup_delete(c: &mut Admin, id: BackupId, out: OutputFormat) -> Result<i32, CliError> {
    let r = c
        .delete_backup(pb::DeleteBackupRequest { id: id.to_string() })
        .await?
        .into_inner();
    if is_json(out) {
        output::json(&r);
    } else {
        outln!("backup {id} deleted (its data goes at the repository's next prune)");
    }
    Ok(exit::OK)
}
