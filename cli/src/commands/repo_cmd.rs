//! `repo ...`: add, set, list, purge.

use repovault_proto::v1 as pb;

use super::pages;
use crate::admin_client::{Admin, CliError, read_token};
use crate::args::{OutputFormat, RepoCmd};
use crate::exit;
use crate::output::outln;
use crate::output::{self, is_json};

use super::{or_dash, purge_done};

pub(super) async fn repo(c: &mut Admin, cmd: RepoCmd, out: OutputFormat) -> Result<i32, CliError> {
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
                outln!("repository {} added (id {})", r.full_name, r.id);
            }
        }
        RepoCmd::Update {
            name,
            token,
            no_token,
        } => {
            let token = read_token(token.token_env.as_deref(), token.token_file.as_deref())?;
            if token.is_none() && !no_token {
                return Err(CliError::usage(
                    "give the new token (--token-env VAR or --token-file FILE), or --no-token to remove it",
                ));
            }
            let r = c
                .update_repo_credential(pb::UpdateRepoCredentialRequest {
                    repo: name,
                    token: token.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .repo
                .unwrap_or_default();
            if is_json(out) {
                output::json(&r);
            } else {
                outln!(
                    "repository {}: token {}",
                    r.full_name,
                    if no_token { "removed" } else { "replaced" }
                );
            }
        }
        RepoCmd::Purge { name, confirm } => {
            return repo_purge(c, name, confirm, out).await;
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
                outln!(
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
        RepoCmd::List { org, page } => {
            let org = org.unwrap_or_default();
            let shown = pages::follow(
                c,
                page,
                async |c: &mut Admin, page_size: u32, page_token: String| {
                    let r = c
                        .list_repos(pb::ListReposRequest {
                            org: org.clone(),
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok::<_, CliError>((r.repos, r.next_page_token))
                },
            )
            .await?;
            let repos = shown.items;
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
            pages::note_more(out, repos.len(), shown.more, "repositories");
        }
    }
    Ok(exit::OK)
}

async fn repo_purge(
    c: &mut Admin,
    repo: String,
    confirm: bool,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .purge_repo(pb::PurgeRepoRequest {
            repo: repo.clone(),
            confirm,
        })
        .await?
        .into_inner();
    purge_done(out, &repo, &r);
    Ok(exit::OK)
}
