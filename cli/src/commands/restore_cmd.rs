//! `restore ...`: start, list, watch, cancel, show (link is in `zip_cmd`), and the download of
//! a `full_repo` restore's bare repository.

use std::path::Path;

use sha2::{Digest, Sha256};

use repovault_common::domain::{self, RestoreCombination, TaskStatus};
use repovault_proto::v1 as pb;

use super::pages;
use crate::admin_client::{Admin, CliError, read_token};
use crate::args::{OutputFormat, RestoreCmd, RestoreTarget, RestoreType};
use crate::exit;
use crate::output::outln;
use crate::output::{self, fields, is_json};
use crate::output::{spelled, value};

use super::task_wait::{Bar, Ended, Task, Totals, completed, download_line, queued, run_and_wait};
use super::{or_dash, zip_cmd};

/// One restore's record (`restore show`, and the end of every wait on a restore's task).
pub(super) async fn get_restore(c: &mut Admin, id: String) -> Result<pb::Restore, CliError> {
    Ok(c.get_restore(pb::GetRestoreRequest { id })
        .await?
        .into_inner()
        .restore
        .unwrap_or_default())
}

pub(super) async fn restore(
    c: &mut Admin,
    cmd: RestoreCmd,
    out: OutputFormat,
) -> Result<i32, CliError> {
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
            from_copy,
            token,
            wait,
        } => {
            let combination = restore_combination(restore_type, target, into.is_some())?;
            let is_tar = combination.restore_type() == domain::RestoreType::FullRepo
                && combination.target() == domain::RestoreTarget::Download;
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
            let target = combination.target();
            if target == domain::RestoreTarget::New
                && url.is_none()
                && (org.is_none() || name.is_none())
            {
                return Err(CliError::usage(
                    "target new needs --org ORG --name NAME (a forge) or --url URL (plain git)",
                ));
            }
            if target == domain::RestoreTarget::Original && name.is_none() {
                return Err(CliError::usage(
                    "target original needs --name NAME (a repository that does not exist yet)",
                ));
            }
            if target == domain::RestoreTarget::Existing && into.is_none() {
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
                    backup_id: backup_id.into(),
                    r#type: combination.restore_type().into(),
                    target: combination.target().into(),
                    url: url.unwrap_or_default(),
                    token: token.unwrap_or_default(),
                    org: org.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                    credential_org: credential_org.unwrap_or_default(),
                    into: into.unwrap_or_default(),
                    access: pb::RestoreAccess::from(access).into(),
                    from_copy,
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
                if value(r.status) == Some(TaskStatus::Completed)
                    && let Some(p) = &path
                {
                    download(c, &r, p, out).await?;
                }
                Ok(r)
            };
            let human = |r: &pb::Restore| {
                restore_fields(r);
                if let Some(p) = &path
                    && value(r.status) == Some(TaskStatus::Completed)
                {
                    outln!("bare repository written to {}", p.display());
                }
            };
            run_and_wait(
                c,
                out,
                Some(task),
                Ended {
                    fetch,
                    human,
                    code: |r: &pb::Restore| completed(r.status),
                },
            )
            .await
        }
        RestoreCmd::List { repo, page } => {
            let repo = repo.unwrap_or_default();
            let shown = pages::follow(
                c,
                page,
                async |c: &mut Admin, page_size: u32, page_token: String| {
                    let r = c
                        .list_restores(pb::ListRestoresRequest {
                            repo: repo.clone(),
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok::<_, CliError>((r.restores, r.next_page_token))
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
                    "TARGET",
                    "INTO",
                    "STATUS",
                    "CREATED",
                ],
                |r| {
                    vec![
                        r.id.clone(),
                        r.repo.clone(),
                        spelled::<domain::RestoreType>(r.r#type),
                        spelled::<domain::RestoreTarget>(r.target),
                        or_dash(if r.target_repo.is_empty() {
                            &r.target_url
                        } else {
                            &r.target_repo
                        }),
                        spelled::<TaskStatus>(r.status),
                        r.created_at.clone(),
                    ]
                },
            );
            pages::note_more(out, list.len(), shown.more, "restores");
            Ok(exit::OK)
        }
        RestoreCmd::Watch { id } => {
            let r = get_restore(c, id.into()).await?;
            // A restore that has ended has no progress left to follow.
            let task =
                (!value::<TaskStatus>(r.status).is_some_and(TaskStatus::is_terminal)).then(|| {
                    Task {
                        id: &r.task_id,
                        what: format!("restore {}", r.id),
                    }
                });
            let fetch = async |c: &mut Admin| get_restore(c, r.id.clone()).await;
            run_and_wait(
                c,
                out,
                task,
                Ended {
                    fetch,
                    human: restore_fields,
                    code: |r: &pb::Restore| completed(r.status),
                },
            )
            .await
        }
        RestoreCmd::Cancel { id } => {
            let r = c
                .cancel_restore(pb::CancelRestoreRequest { id: id.into() })
                .await?
                .into_inner()
                .restore
                .unwrap_or_default();
            if is_json(out) {
                output::json(&r);
            } else {
                outln!(
                    "restore {} {}: {}",
                    r.id,
                    spelled::<TaskStatus>(r.status),
                    or_dash(&r.error)
                );
            }
            Ok(exit::OK)
        }
        RestoreCmd::Link { id, expires } => zip_cmd::restore_link(c, &id, expires, out).await,
        RestoreCmd::Show { id } => {
            let r = get_restore(c, id.into()).await?;
            output::show(out, &r, restore_fields);
            Ok(exit::OK)
        }
    }
}

fn restore_fields(r: &pb::Restore) {
    fields(&[
        ("id", r.id.clone()),
        ("backup", r.backup_id.clone()),
        ("repo", r.repo.clone()),
        ("type", spelled::<domain::RestoreType>(r.r#type)),
        ("target", spelled::<domain::RestoreTarget>(r.target)),
        ("url", or_dash(&r.target_url)),
        ("status", spelled::<TaskStatus>(r.status)),
        ("error", or_dash(&r.error)),
        ("created_at", r.created_at.clone()),
        ("finished_at", or_dash(&r.finished_at)),
        ("refs_pushed", r.refs_pushed.to_string()),
        ("target_repo", or_dash(&r.target_repo)),
        ("access", access_name(r.access())),
        ("summary", or_dash(&r.summary)),
    ]);
    zip_cmd::link_fields(r);
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

/// The type and target a restore start names, checked against [`RestoreCombination`]: a usage
/// error (exit 2) names the valid combinations.
fn restore_combination(
    restore_type: RestoreType,
    target: Option<RestoreTarget>,
    into: bool,
) -> Result<RestoreCombination, CliError> {
    let restore_type = domain::RestoreType::from(restore_type);
    let target = match (target, into) {
        (Some(t), _) => t.into(),
        (None, true) => domain::RestoreTarget::Existing,
        (None, false) if restore_type == domain::RestoreType::DownloadZip => {
            domain::RestoreTarget::Download
        }
        (None, false) => {
            return Err(CliError::usage(format!(
                "--target is required; {}",
                RestoreCombination::valid_text()
            )));
        }
    };
    RestoreCombination::new(restore_type, target).map_err(|e| CliError::usage(e.to_string()))
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
    let mut bar = Bar::on_terminal(out);
    while let Some(chunk) = stream.message().await? {
        if !chunk.sha256.is_empty() {
            expected_sha = chunk.sha256.clone();
            total = chunk.total_bytes;
        }
        hash.update(&chunk.data);
        got += chunk.data.len() as u64;
        std::io::Write::write_all(&mut file, &chunk.data)
            .map_err(|e| CliError::failed(format!("{}: {e}", tar_path.display())))?;
        if let Some(b) = &mut bar {
            b.show("download", Totals::bytes(got, total), download_line(&r.id));
        }
    }
    if let Some(b) = bar {
        b.finish();
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
