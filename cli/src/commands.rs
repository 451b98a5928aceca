//! The admin commands.

use std::path::Path;

use sha2::{Digest, Sha256};

use repovault_proto::v1 as pb;

use crate::args::{
    AdminCmd, BackupCmd, OrgCmd, OrgKeyCmd, OutputFormat, RepoCmd, RestoreCmd, RestoreTarget,
    RestoreType, VALID_RESTORES, valid_restores_text,
};
use crate::client::{Admin, CliError, read_token};
use crate::exit;
use crate::output::{self, fields, human_bytes, is_json};

mod task_wait;

pub(crate) use task_wait::{Ended, Task, completed, progress_bar, queued, run_and_wait};

/// One backup's record (`backup show`, and the end of every wait on a backup's task).
pub(crate) async fn get_backup(c: &mut Admin, id: String) -> Result<pb::Backup, CliError> {
    Ok(c.get_backup(pb::GetBackupRequest { id })
        .await?
        .into_inner()
        .backup
        .unwrap_or_default())
}

/// One restore's record (`restore show`, and the end of every wait on a restore's task).
pub(crate) async fn get_restore(c: &mut Admin, id: String) -> Result<pb::Restore, CliError> {
    Ok(c.get_restore(pb::GetRestoreRequest { id })
        .await?
        .into_inner()
        .restore
        .unwrap_or_default())
}

pub async fn org(c: &mut Admin, cmd: OrgCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        OrgCmd::Add(a) => {
            let req = crate::org_add::request(&a, |k| std::env::var(k).ok())?;
            let r = c.add_org(req).await?.into_inner();
            let o = r.org.clone().unwrap_or_default();
            if is_json(out) {
                output::json(&o);
            } else {
                println!(
                    "organisation {} added (id {}, provider {}{})",
                    o.name,
                    o.id,
                    o.provider,
                    if o.provider == "github" {
                        format!(", {}", credential(&o))
                    } else {
                        String::new()
                    }
                );
                if let Some(s) = &r.sync {
                    print_sync(s);
                }
            }
        }
        OrgCmd::List => {
            let orgs = c.list_orgs(pb::ListOrgsRequest {}).await?.into_inner().orgs;
            output::list(
                out,
                &orgs,
                &["NAME", "ID", "PROVIDER", "API URL", "CREDENTIAL", "CREATED"],
                |o| {
                    vec![
                        o.name.clone(),
                        o.id.clone(),
                        o.provider.clone(),
                        or_dash(&o.api_url),
                        credential(o),
                        o.created_at.clone(),
                    ]
                },
            );
        }
        OrgCmd::Show { org } => {
            let r = c.get_org(pb::GetOrgRequest { org }).await?.into_inner();
            let o = r.org.clone().unwrap_or_default();
            output::show(out, &r, |r| {
                fields(&[
                    ("name", o.name.clone()),
                    ("id", o.id.clone()),
                    ("provider", o.provider.clone()),
                    ("api_url", or_dash(&o.api_url)),
                    ("credential", credential(&o)),
                    (
                        "ca_cert",
                        if o.has_ca_cert {
                            "yes".into()
                        } else {
                            "-".into()
                        },
                    ),
                    ("created_at", o.created_at.clone()),
                    ("last_sync_at", or_dash(&o.last_sync_at)),
                    ("schedule", schedule_text(&o)),
                    (
                        "repositories",
                        format!(
                            "{} ({} archived, {} deleted)",
                            r.repos, r.archived, r.deleted
                        ),
                    ),
                ])
            });
        }
        OrgCmd::Set(a) => {
            if a.schedule.is_none()
                && a.timezone.is_none()
                && a.full_every_days.is_none()
                && a.drill.is_none()
            {
                return Err(CliError::usage(
                    "nothing to set: give --schedule, --timezone, --full-every-days or --drill",
                ));
            }
            let o = c
                .set_org_schedule(pb::SetOrgScheduleRequest {
                    org: a.org,
                    schedule: a.schedule,
                    timezone: a.timezone,
                    full_every_days: a.full_every_days,
                    drill: a.drill,
                })
                .await?
                .into_inner()
                .org
                .unwrap_or_default();
            if is_json(out) {
                output::json(&o);
            } else {
                println!(
                    "{}: schedule {}; drills {}",
                    o.name,
                    schedule_text(&o),
                    o.drill
                );
            }
        }
        OrgCmd::Disconnect { org } => {
            return crate::escrow_cmds::org_connected(c, org, false, out).await;
        }
        OrgCmd::Connect { org } => {
            return crate::escrow_cmds::org_connected(c, org, true, out).await;
        }
        OrgCmd::Retention(a) => return crate::escrow_cmds::org_retention(c, a, out).await,
        OrgCmd::Purge { org, confirm } => {
            return crate::escrow_cmds::org_purge(c, org, confirm, out).await;
        }
        OrgCmd::Sync { org } => {
            let s = c.sync_org(pb::SyncOrgRequest { org }).await?.into_inner();
            if is_json(out) {
                output::json(&s);
            } else {
                print_sync(&s);
            }
        }
        OrgCmd::Key(OrgKeyCmd::Export { org, to }) => {
            if to.exists() {
                return Err(CliError::usage(format!(
                    "{} exists; choose a new file (keys are never overwritten)",
                    to.display()
                )));
            }
            let r = c
                .export_org_key(pb::ExportOrgKeyRequest { org: org.clone() })
                .await?
                .into_inner();
            repovault_common::crypto::write_private_file(&to, format!("{}\n", r.key).as_bytes())
                .map_err(|e| CliError::failed(format!("writing {}: {e}", to.display())))?;
            if is_json(out) {
                output::json(&serde_json::json!({"org": org, "org_id": r.org_id, "file": to}));
            } else {
                println!(
                    "key of {org} written to {} (mode 0600); it opens the snapshot repositories under <storage>/{}/",
                    to.display(),
                    r.org_id
                );
            }
        }
    }
    Ok(exit::OK)
}

pub async fn repo(c: &mut Admin, cmd: RepoCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        RepoCmd::Add { name, url, token } => {
            let (org, repo) = name
                .split_once('/')
                .ok_or_else(|| CliError::usage(format!("{name:?} is not ORG/NAME")))?;
            let token = read_token(token.token_env.as_deref(), token.token_file.as_deref())?;
            let r = c
                .add_repo(pb::AddRepoRequest {
                    org: org.into(),
                    name: repo.into(),
                    url,
                    token: token.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .repo
                .unwrap_or_default();
            if is_json(out) {
                output::json(&r);
            } else {
                println!("repository {} added (id {})", r.full_name, r.id);
            }
        }
        RepoCmd::Purge { name, confirm } => {
            return crate::escrow_cmds::repo_purge(c, name, confirm, out).await;
        }
        RepoCmd::Set {
            name,
            schedule,
            on_push,
            no_on_push,
        } => {
            let on_push = match (on_push, no_on_push) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            if schedule.is_none() && on_push.is_none() {
                return Err(CliError::usage(
                    "nothing to set: give --schedule, --on-push or --no-on-push",
                ));
            }
            let r = c
                .set_repo_schedule(pb::SetRepoScheduleRequest {
                    repo: name,
                    schedule,
                    on_push,
                })
                .await?
                .into_inner()
                .repo
                .unwrap_or_default();
            if is_json(out) {
                output::json(&r);
            } else {
                println!(
                    "{}: schedule {}{}{}",
                    r.full_name,
                    or_dash(&r.effective_schedule),
                    if r.schedule.is_empty() {
                        " (inherited)"
                    } else {
                        ""
                    },
                    if r.on_push { ", backed up on push" } else { "" }
                );
            }
        }
        RepoCmd::List { org } => {
            let repos = c
                .list_repos(pb::ListReposRequest {
                    org: org.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .repos;
            output::list(
                out,
                &repos,
                &[
                    "REPOSITORY",
                    "ID",
                    "URL",
                    "MARK",
                    "SCHEDULE",
                    "LAST BACKUP",
                    "AT",
                ],
                |r| {
                    vec![
                        r.full_name.clone(),
                        r.id.clone(),
                        r.url.clone(),
                        match (r.deleted, r.archived) {
                            (true, _) => "deleted".into(),
                            (false, true) => "archived".into(),
                            (false, false) => "-".into(),
                        },
                        {
                            let s = or_dash(&r.effective_schedule);
                            match (r.on_push, r.schedule.is_empty()) {
                                (true, _) => format!("{s} + push"),
                                (false, true) => s,
                                (false, false) => format!("{s} (own)"),
                            }
                        },
                        if r.incomplete.is_empty() || r.last_backup_status != "completed" {
                            or_dash(&r.last_backup_status)
                        } else {
                            format!(
                                "{} (incomplete: {})",
                                r.last_backup_status,
                                r.incomplete.join(", ")
                            )
                        },
                        or_dash(&r.last_backup_at),
                    ]
                },
            );
        }
    }
    Ok(exit::OK)
}

/// `daily (Europe/Berlin), full every 7 days`, or `-`.
fn schedule_text(o: &pb::Org) -> String {
    if o.schedule.is_empty() {
        return "-".into();
    }
    let tz = if o.timezone.is_empty() {
        "UTC"
    } else {
        &o.timezone
    };
    format!(
        "{} ({tz}), full every {} days",
        o.schedule, o.full_every_days
    )
}

/// The credential kind, never the secret: `token`, `app <id> installation <id>`, or `-`.
fn credential(o: &pb::Org) -> String {
    match o.credential.as_str() {
        "app" => format!("app {} installation {}", o.app_id, o.installation_id),
        "" | "none" => "-".into(),
        other => other.to_string(),
    }
}

fn print_sync(s: &pb::SyncOrgResponse) {
    println!(
        "{}: {} listed, {} added, {} renamed, {} archived, {} unarchived, {} deleted, {} restored, {} unchanged",
        s.org,
        s.listed,
        s.added.len(),
        s.renamed.len(),
        s.archived.len(),
        s.unarchived.len(),
        s.deleted.len(),
        s.restored.len(),
        s.unchanged
    );
    for n in &s.added {
        println!("  added       {}/{n}", s.org);
    }
    for r in &s.renamed {
        println!(
            "  renamed     {}/{} -> {}/{} (id {})",
            s.org, r.from, s.org, r.to, r.repo_id
        );
    }
    for (what, names) in [
        ("archived", &s.archived),
        ("unarchived", &s.unarchived),
        ("deleted", &s.deleted),
        ("restored", &s.restored),
    ] {
        for n in names {
            println!("  {what:<11} {}/{n}", s.org);
        }
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn backup_fields(b: &pb::Backup) {
    let c = b.counts.unwrap_or_default();
    let mut rows = vec![
        ("id", b.id.clone()),
        ("repo", b.repo.clone()),
        ("type", b.r#type.clone()),
        ("trigger", b.trigger.clone()),
        ("status", b.status.clone()),
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
            .filter(|k| b.components[*k].status != "included")
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
        rows.push(("verification", crate::verify_cmds::verification_line(v)));
    }
    fields(&rows);
    if let Some(v) = &b.verification {
        crate::verify_cmds::print_checks(&v.checks);
    }
    if !b.components.is_empty() {
        println!("components:");
        for k in component_order(b) {
            let st = &b.components[k];
            if st.reason.is_empty() {
                println!("  {k:<12} {}", st.status);
            } else {
                println!("  {k:<12} {}: {}", st.status, st.reason);
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

pub async fn backup(c: &mut Admin, cmd: BackupCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        BackupCmd::Run {
            repo,
            wait,
            backup_type,
        } => {
            let b = c
                .run_backup(pb::RunBackupRequest {
                    repo,
                    r#type: backup_type,
                })
                .await?
                .into_inner()
                .backup
                .unwrap_or_default();
            if !wait {
                return Ok(queued(out, &b, |b| {
                    format!(
                        "backup {} queued ({} {}, priority {})",
                        b.id, b.r#type, b.trigger, b.priority
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
                    code: |b: &pb::Backup| completed(&b.status),
                },
            )
            .await
        }
        BackupCmd::Download {
            backup_id,
            to,
            expires,
        } => crate::download_zip::backup_download(c, &backup_id, &to, expires, out).await,
        BackupCmd::List { repo } => {
            let list = c
                .list_backups(pb::ListBackupsRequest {
                    repo: repo.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .backups;
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
                        b.r#type.clone(),
                        b.trigger.clone(),
                        b.status.clone(),
                        b.verification
                            .as_ref()
                            .map_or_else(|| "-".to_string(), |v| v.status.clone()),
                        b.created_at.clone(),
                        human_bytes(b.size_bytes),
                        human_bytes(b.added_bytes),
                    ]
                },
            );
            Ok(exit::OK)
        }
        BackupCmd::Show { id } => {
            let b = get_backup(c, id).await?;
            output::show(out, &b, backup_fields);
            Ok(exit::OK)
        }
        BackupCmd::Delete { id } => crate::escrow_cmds::backup_delete(c, id, out).await,
        BackupCmd::Verify { id, detach } => crate::verify_cmds::verify(c, id, detach, out).await,
        BackupCmd::Browse { id, path } => {
            let r = c
                .browse_backup(pb::BrowseBackupRequest { id, path })
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
                    output::json(&doc);
                } else {
                    print_thread(&doc);
                }
            }
            Ok(exit::OK)
        }
    }
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
    println!(
        "#{} {} [{}]",
        item.get("number").and_then(Value::as_u64).unwrap_or(0),
        s(item, "title"),
        if merged {
            "merged".into()
        } else {
            s(item, "state")
        }
    );
    println!("by {} at {}", login(item), s(item, "created_at"));
    let body = s(item, "body");
    if !body.is_empty() {
        println!("\n{body}");
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
        println!("\n--- {header} at {at}");
        if !body.is_empty() {
            println!("{body}");
        }
    }
}

fn restore_fields(r: &pb::Restore) {
    fields(&[
        ("id", r.id.clone()),
        ("backup", r.backup_id.clone()),
        ("repo", r.repo.clone()),
        ("type", r.r#type.clone()),
        ("target", r.target.clone()),
        ("url", or_dash(&r.target_url)),
        ("status", r.status.clone()),
        ("error", or_dash(&r.error)),
        ("created_at", r.created_at.clone()),
        ("finished_at", or_dash(&r.finished_at)),
        ("refs_pushed", r.refs_pushed.to_string()),
        ("target_repo", or_dash(&r.target_repo)),
        ("access", access_name(r.access())),
        ("summary", or_dash(&r.summary)),
    ]);
    crate::download_zip::link_fields(r);
}

/// A restore's access scope as `--access` names it (`-` where it does not apply).
fn access_name(a: pb::RestoreAccess) -> String {
    match a {
        pb::RestoreAccess::Unspecified => "-",
        pb::RestoreAccess::Direct => "direct",
        pb::RestoreAccess::Teams => "teams",
        pb::RestoreAccess::All => "all",
    }
    .into()
}

/// The target a restore start names, checked against [`crate::args::VALID_RESTORES`]: a usage
/// error (exit 2) names the valid combinations.
fn restore_target(
    restore_type: RestoreType,
    target: Option<RestoreTarget>,
    into: bool,
) -> Result<&'static str, CliError> {
    let target = match (target, into) {
        (Some(t), _) => t.as_str(),
        (None, true) => "existing",
        (None, false) if restore_type == RestoreType::DownloadZip => "download",
        (None, false) => {
            return Err(CliError::usage(format!(
                "--target is required; {}",
                valid_restores_text()
            )));
        }
    };
    let ok = VALID_RESTORES
        .iter()
        .any(|(t, targets)| *t == restore_type.as_str() && targets.contains(&target));
    if !ok {
        return Err(CliError::usage(format!(
            "restore type {} to target {target} is not a valid combination; {}",
            restore_type.as_str(),
            valid_restores_text()
        )));
    }
    Ok(target)
}

pub async fn restore(c: &mut Admin, cmd: RestoreCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        RestoreCmd::Start {
            backup_id,
            restore_type,
            target,
            url,
            org,
            name,
            credential_org,
            into,
            path,
            access,
            token,
            wait,
        } => {
            let target = restore_target(restore_type, target, into.is_some())?;
            let is_tar = restore_type == RestoreType::FullRepo && target == "download";
            match (is_tar, &path) {
                (true, None) => {
                    return Err(CliError::usage(
                        "full_repo to download needs --path DIR (where the bare repository goes)",
                    ));
                }
                (false, Some(_)) => {
                    return Err(CliError::usage("--path is only for full_repo to download"));
                }
                _ => {}
            }
            if target == "new" && url.is_none() && (org.is_none() || name.is_none()) {
                return Err(CliError::usage(
                    "target new needs --org ORG --name NAME (a forge) or --url URL (plain git)",
                ));
            }
            if target == "original" && name.is_none() {
                return Err(CliError::usage(
                    "target original needs --name NAME (a repository that does not exist yet)",
                ));
            }
            if target == "existing" && into.is_none() {
                return Err(CliError::usage(
                    "target existing needs --into ORG/NAME (an existing repository)",
                ));
            }
            let token = read_token(token.token_env.as_deref(), token.token_file.as_deref())?;
            if let Some(p) = &path {
                check_download_dir(p)?;
            }
            let r = c
                .start_restore(pb::StartRestoreRequest {
                    backup_id,
                    r#type: restore_type.as_str().into(),
                    target: target.into(),
                    url: url.unwrap_or_default(),
                    token: token.unwrap_or_default(),
                    org: org.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                    credential_org: credential_org.unwrap_or_default(),
                    into: into.unwrap_or_default(),
                    access: pb::RestoreAccess::from(access).into(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .restore
                .unwrap_or_default();
            if !wait && !is_tar {
                return Ok(queued(out, &r, |r| format!("restore {} queued", r.id)));
            }
            let task = Task {
                id: &r.task_id,
                what: format!("restore {}", r.id),
            };
            // The bare repository of a full_repo download is fetched once the restore has
            // completed, before anything is printed.
            let fetch = async |c: &mut Admin| {
                let r = get_restore(c, r.id.clone()).await?;
                if r.status == "completed"
                    && let Some(p) = &path
                {
                    download(c, &r, p, out).await?;
                }
                Ok(r)
            };
            let human = |r: &pb::Restore| {
                restore_fields(r);
                if let Some(p) = &path
                    && r.status == "completed"
                {
                    println!("bare repository written to {}", p.display());
                }
            };
            run_and_wait(
                c,
                out,
                Some(task),
                Ended {
                    fetch,
                    human,
                    code: |r: &pb::Restore| completed(&r.status),
                },
            )
            .await
        }
        RestoreCmd::List { repo } => {
            let list = c
                .list_restores(pb::ListRestoresRequest {
                    repo: repo.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .restores;
            output::list(
                out,
                &list,
                &[
                    "ID",
                    "REPOSITORY",
                    "TYPE",
                    "TARGET",
                    "INTO",
                    "STATUS",
                    "CREATED",
                ],
                |r| {
                    vec![
                        r.id.clone(),
                        r.repo.clone(),
                        r.r#type.clone(),
                        r.target.clone(),
                        or_dash(if r.target_repo.is_empty() {
                            &r.target_url
                        } else {
                            &r.target_repo
                        }),
                        r.status.clone(),
                        r.created_at.clone(),
                    ]
                },
            );
            Ok(exit::OK)
        }
        RestoreCmd::Watch { id } => {
            let r = get_restore(c, id).await?;
            // A restore that has ended has no progress left to follow.
            let task = (r.status != "completed" && r.status != "failed").then(|| Task {
                id: &r.task_id,
                what: format!("restore {}", r.id),
            });
            let fetch = async |c: &mut Admin| get_restore(c, r.id.clone()).await;
            run_and_wait(
                c,
                out,
                task,
                Ended {
                    fetch,
                    human: restore_fields,
                    code: |r: &pb::Restore| completed(&r.status),
                },
            )
            .await
        }
        RestoreCmd::Cancel { id } => {
            let r = c
                .cancel_restore(pb::CancelRestoreRequest { id })
                .await?
                .into_inner()
                .restore
                .unwrap_or_default();
            if is_json(out) {
                output::json(&r);
            } else {
                println!("restore {} {}: {}", r.id, r.status, or_dash(&r.error));
            }
            Ok(exit::OK)
        }
        RestoreCmd::Link { id, expires } => {
            crate::download_zip::restore_link(c, &id, expires, out).await
        }
        RestoreCmd::Show { id } => {
            let r = get_restore(c, id).await?;
            output::show(out, &r, restore_fields);
            Ok(exit::OK)
        }
    }
}

/// `--path` must be an empty directory or absent, and neither it nor the directory it is
/// created in (its nearest existing ancestor) a symbolic link. Checked before the restore is
/// queued: the final `rename` into place fails on a link only after the whole restore, and a
/// link would put the repository somewhere else than the path named.
fn check_download_dir(p: &Path) -> Result<(), CliError> {
    let refuse = |what: String| Err(CliError::usage(format!("--path {}: {what}", p.display())));
    let link_target = |a: &Path| {
        std::fs::read_link(a)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|e| format!("unreadable: {e}"))
    };
    for (i, a) in p.ancestors().enumerate() {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        let meta = match std::fs::symlink_metadata(a) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return refuse(format!("{}: {e}", a.display())),
        };
        if meta.file_type().is_symlink() {
            return if i == 0 {
                refuse(format!(
                    "is a symbolic link (to {}); give the directory itself",
                    link_target(a)
                ))
            } else {
                refuse(format!(
                    "is under the symbolic link {} (to {}); give a path without links",
                    a.display(),
                    link_target(a)
                ))
            };
        }
        if !meta.is_dir() {
            return refuse(format!("{} is not a directory", a.display()));
        }
        if i == 0 {
            let empty = std::fs::read_dir(p)
                .map_err(|e| CliError::usage(format!("--path {}: {e}", p.display())))?
                .next()
                .is_none();
            if !empty {
                return refuse("exists and is not empty".into());
            }
            // The directory it is renamed into place in must not be a link either.
            continue;
        }
        break;
    }
    Ok(())
}

/// Streams the artifact, checks its SHA-256, unpacks it beside `dest` and renames it into place:
/// `dest` is either absent or complete.
async fn download(
    c: &mut Admin,
    r: &pb::Restore,
    dest: &Path,
    out: OutputFormat,
) -> Result<(), CliError> {
    check_download_dir(dest)?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| CliError::failed(format!("{}: {e}", parent.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(".repovault-download-")
        .tempdir_in(parent)
        .map_err(|e| {
            CliError::failed(format!("temporary directory in {}: {e}", parent.display()))
        })?;
    let tar_path = tmp.path().join("download.tar");
    let mut file = std::fs::File::create(&tar_path)
        .map_err(|e| CliError::failed(format!("{}: {e}", tar_path.display())))?;
    let mut stream = c
        .download_restore(pb::DownloadRestoreRequest { id: r.id.clone() })
        .await?
        .into_inner();
    let mut hash = Sha256::new();
    let (mut got, mut expected_sha, mut total) = (0u64, String::new(), r.artifact_bytes);
    let bar = progress_bar(out, "download");
    while let Some(chunk) = stream.message().await? {
        if !chunk.sha256.is_empty() {
            expected_sha = chunk.sha256.clone();
            total = chunk.total_bytes;
            if let Some(b) = &bar {
                b.set_length(total);
            }
        }
        hash.update(&chunk.data);
        got += chunk.data.len() as u64;
        std::io::Write::write_all(&mut file, &chunk.data)
            .map_err(|e| CliError::failed(format!("{}: {e}", tar_path.display())))?;
        if let Some(b) = &bar {
            b.set_position(got);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(file);
    let actual = hex::encode(hash.finalize());
    if got != total || (!expected_sha.is_empty() && actual != expected_sha) {
        return Err(CliError::failed(format!(
            "download of restore {} is corrupt: {got} of {total} bytes, sha256 {actual} (expected {expected_sha}); nothing was written to {}",
            r.id,
            dest.display()
        )));
    }
    let unpacked = tmp.path().join("unpacked");
    let f = std::fs::File::open(&tar_path).map_err(|e| CliError::failed(e.to_string()))?;
    tar::Archive::new(f)
        .unpack(&unpacked)
        .map_err(|e| CliError::failed(format!("unpacking the download: {e}")))?;
    let code = unpacked.join("code.git");
    if dest.exists() {
        std::fs::remove_dir(dest)
            .map_err(|e| CliError::failed(format!("{}: {e}", dest.display())))?;
    }
    std::fs::rename(&code, dest).map_err(|e| {
        CliError::failed(format!("moving the repository to {}: {e}", dest.display()))
    })?;
    Ok(())
}

pub async fn admin(c: &mut Admin, cmd: AdminCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        AdminCmd::RebuildCatalog => {
            let r = c
                .rebuild_catalog(pb::RebuildCatalogRequest {})
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r);
            } else {
                println!(
                    "catalog rebuilt: {} repositories, {} backups",
                    r.repositories, r.backups
                );
            }
        }
    }
    Ok(exit::OK)
}

pub async fn workers(c: &mut Admin, out: OutputFormat) -> Result<i32, CliError> {
    let w = c
        .list_workers(pb::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    output::list(
        out,
        &w,
        &["ID", "NAME", "RUNNING", "STATE", "LAST HEARTBEAT"],
        |w| {
            vec![
                w.id.clone(),
                w.name.clone(),
                format!("{}/{}", w.running, w.slots),
                if w.draining {
                    "draining".into()
                } else {
                    "active".into()
                },
                w.last_heartbeat_at.clone(),
            ]
        },
    );
    Ok(exit::OK)
}

pub async fn audit(c: &mut Admin, limit: u32, out: OutputFormat) -> Result<i32, CliError> {
    let entries = c
        .list_audit(pb::ListAuditRequest { limit })
        .await?
        .into_inner()
        .entries;
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
    Ok(exit::OK)
}

pub async fn queue(c: &mut Admin, out: OutputFormat) -> Result<i32, CliError> {
    let q = c
        .get_queue(pb::GetQueueRequest {})
        .await?
        .into_inner()
        .entries;
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
                e.kind.clone(),
                e.repo.clone(),
                format!("{} ({})", e.effective_priority, e.priority),
                e.state.clone(),
                e.attempt.to_string(),
                or_dash(&e.worker_id),
                e.enqueued_at.clone(),
            ]
        },
    );
    Ok(exit::OK)
}

/// `health [ORG]`: one row per repository, then the summary; with `--output json` the
/// response (`repos` and `summary`) as one document.
pub async fn health(
    c: &mut Admin,
    org: Option<String>,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .get_health(pb::GetHealthRequest {
            org: org.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if is_json(out) {
        output::json(&r);
        return Ok(exit::OK);
    }
    output::table(
        &["REPOSITORY", "STATE", "LAST BACKUP", "NEXT RUN", "DETAIL"],
        &r.repos
            .iter()
            .map(|h| {
                let mut detail = h.message.clone();
                if !h.incomplete.is_empty() {
                    if !detail.is_empty() {
                        detail.push_str("; ");
                    }
                    detail.push_str(&format!("skipped: {}", h.incomplete.join(", ")));
                }
                if !h.housekeeping.is_empty() {
                    if !detail.is_empty() {
                        detail.push_str("; ");
                    }
                    detail.push_str(&format!("housekeeping failed: {}", h.housekeeping));
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
    let s = r.summary.unwrap_or_default();
    println!();
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
        println!();
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
pub async fn timeline(c: &mut Admin, repo: String, out: OutputFormat) -> Result<i32, CliError> {
    let r = c
        .get_timeline(pb::GetTimelineRequest { repo })
        .await?
        .into_inner();
    let flag = |b: bool, s: &str| if b { s.to_string() } else { String::new() };
    output::list(
        out,
        &r.entries,
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
                row.push(e.trigger.clone());
                row.push(e.status.clone());
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
                .filter(|c| c.result == "fail" || (c.result == "skipped" && c.incomplete))
                .map(|c| format!("{} {}", c.name, c.result))
                .collect();
            let mut note = flag(e.size_jump, "size jump");
            if !failing.is_empty() {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str(&failing.join(", "));
            }
            if !e.error.is_empty() {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str(&e.error);
            }
            vec![
                e.at.clone(),
                e.backup_id.clone(),
                e.r#type.clone(),
                e.trigger.clone(),
                e.status.clone(),
                human_bytes(e.size_bytes),
                human_bytes(e.added_bytes),
                or_dash(&e.verification),
                flag(e.is_escrowed, "escrowed"),
                note,
            ]
        },
    );
    Ok(exit::OK)
}
