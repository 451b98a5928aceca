//! The git parts of a forge restore: every ref (never forced, into a target that holds none
//! but ours), the tags alone (append-only), the wiki (into an empty wiki), the LFS objects
//! (batch API upload), and the target's branches as the metadata restore needs them. All git
//! work runs on the blocking pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use repovault_common::forge::GitRemote;
use repovault_common::manifest;

use crate::git::{self, GitError, Remote};
use crate::progress::Counts;
use crate::tasks::{TaskContext, TaskError, blocking};

use super::{Items, Parts};

/// The namespace the backup's `refs/pull/*` are pushed under: a forge keeps `refs/pull/*` for
/// its own pull requests and refuses pushes there.
pub const PULL_REFS_NAMESPACE: &str = "refs/repovault/pull/";

/// Pushes every ref of the bare repository `code` to `remote`, after moving `refs/pull/*`
/// under [`PULL_REFS_NAMESPACE`]; refuses a target holding refs that are not this backup's.
/// Returns the refs pushed and the summary line.
pub async fn push_all_refs(
    ctx: &TaskContext,
    code: &Path,
    remote: &Remote,
    target: &str,
) -> Result<(u64, String), TaskError> {
    let (moved, local) = {
        let code = code.to_path_buf();
        blocking(move || Ok((move_pull_refs(&code)?, local_refs(&code)?))).await?
    };
    let mut items = Items::start(ctx, "push", "refs pushed", local.len() as u64);
    let (r, code, target) = (remote.clone(), code.to_path_buf(), target.to_string());
    let pushed = blocking(move || {
        refuse_foreign(&git::ls_remote(&r)?, &local, &target)?;
        Ok(git::push_refs(&code, &r, &["refs/*:refs/*"])?)
    })
    .await?;
    items.done(items.total);
    let moved = if moved > 0 {
        format!(" ({moved} pull refs under {PULL_REFS_NAMESPACE})")
    } else {
        String::new()
    };
    let line = format!("{} refs pushed{moved}", pushed.refs_pushed);
    Ok((pushed.refs_pushed, line))
}

/// Refuses a target whose refs are not all this backup's at the same id (a restore never mixes
/// histories). The forge's own `refs/pull/*` there belong to pull requests an earlier attempt
/// created (they cannot be pushed anyway).
fn refuse_foreign(
    there: &BTreeMap<String, String>,
    local: &BTreeMap<String, String>,
    target: &str,
) -> Result<(), TaskError> {
    let foreign: Vec<&String> = there
        .iter()
        .filter(|(name, _)| !name.starts_with("refs/pull/"))
        .filter(|(name, id)| local.get(*name) != Some(*id))
        .map(|(name, _)| name)
        .collect();
    match foreign.first() {
        None => Ok(()),
        Some(first) => Err(TaskError::permanent(format!(
            "{target} already holds {} refs that are not this backup's (such as {first}): refusing to push (a restore never mixes histories)",
            foreign.len(),
        ))),
    }
}

/// Pushes the tags of `code` without force; a tag the target has at another id stays as it
/// is (append-only). Returns the tags pushed.
pub async fn push_tags(ctx: &TaskContext, code: &Path, remote: &Remote) -> Result<u64, TaskError> {
    let (r, code) = (remote.clone(), code.to_path_buf());
    let tags = {
        let code = code.clone();
        blocking(move || local_refs(&code)).await?
    }
    .into_keys()
    .filter(|r| r.starts_with("refs/tags/"))
    .count() as u64;
    let mut items = Items::start(ctx, "push", "tags pushed", tags);
    let pushed = blocking(move || match git::push_refs(&code, &r, &["refs/tags/*:refs/tags/*"]) {
        Ok(p) => Ok(p.refs_pushed),
        Err(GitError::RefsRejected { refs, .. }) => {
            tracing::warn!(refs = %refs, "tags already in the target at another id were left alone");
            Ok(0)
        }
        Err(e) => Err(e.into()),
    })
    .await?;
    items.done(tags);
    Ok(pushed)
}

/// What became of a wiki restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WikiPush {
    /// Pushed: the refs pushed, and whether the target's first page was replaced.
    Pushed {
        refs: u64,
        replaced_first_page: bool,
    },
    /// The target has no wiki yet: GitHub makes one only when its first page is saved in the
    /// web interface, and refuses a push to a wiki never made.
    NotCreated,
}

/// Pushes the backup's wiki (`wiki`, a bare repository) to `remote`, only when the target's
/// wiki is empty, holds exactly an earlier attempt's refs, or holds only the first page saved
/// to create it (one commit of one file, which is replaced). A wiki with pages of its own is
/// refused, nothing pushed.
pub async fn push_wiki(
    ctx: &TaskContext,
    wiki: &Path,
    remote: Remote,
) -> Result<WikiPush, TaskError> {
    ctx.progress
        .phase("wiki", format!("pushing the wiki to {}", remote.url));
    let wiki = wiki.to_path_buf();
    blocking(move || {
        let local = local_refs(&wiki)?;
        let there = match git::ls_remote(&remote) {
            Ok(t) => t,
            Err(GitError::RepositoryNotFound { .. }) => return Ok(WikiPush::NotCreated),
            Err(e) => return Err(e.into()),
        };
        let foreign = there.iter().any(|(n, id)| local.get(n) != Some(id));
        if foreign && !only_a_first_page(&wiki, &remote, &there)? {
            return Err(TaskError::permanent(format!(
                "the target's wiki {} already has pages of its own: a wiki restore only fills an empty wiki, or one holding just the first page saved to create it",
                remote.url
            )));
        }
        // Forced only over a first page: every other push adds to an empty wiki or to ours.
        let refspec = if foreign { "+refs/*:refs/*" } else { "refs/*:refs/*" };
        let pushed = git::push_refs(&wiki, &remote, &[refspec])?;
        Ok(WikiPush::Pushed {
            refs: pushed.refs_pushed,
            replaced_first_page: foreign,
        })
    })
    .await
}

/// Blocking: whether the target wiki (`there`: its refs) holds only the first page saved to
/// create it: one branch, whose history is one commit of one file. Fetched into a scratch
/// repository beside `wiki` to look.
fn only_a_first_page(
    wiki: &Path,
    remote: &Remote,
    there: &BTreeMap<String, String>,
) -> Result<bool, TaskError> {
    let refs: Vec<(&String, &String)> = there.iter().collect();
    let [(name, tip)] = refs[..] else {
        return Ok(false);
    };
    if !name.starts_with("refs/heads/") {
        return Ok(false);
    }
    let look = wiki.with_file_name("target-wiki.git");
    if look.exists() {
        std::fs::remove_dir_all(&look).map_err(|e| git_failed("clearing", &look, e))?;
    }
    git::init_bare(&look)?;
    git::fetch_mirror(&look, remote)?;
    let count = local_git(&look)
        .args(["rev-list", "--count", tip])
        .output()
        .map_err(|e| git_failed("rev-list", &look, e))?;
    let files = local_git(&look)
        .args(["ls-tree", "-r", "--name-only", tip])
        .output()
        .map_err(|e| git_failed("ls-tree", &look, e))?;
    let _ = std::fs::remove_dir_all(&look);
    let one_line = |o: &std::process::Output| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim().lines().count() == 1
    };
    Ok(
        one_line(&files)
            && one_line(&count)
            && String::from_utf8_lossy(&count.stdout).trim() == "1",
    )
}

/// A `git` command on the local bare repository `dir`, isolated from the user's and system's
/// configuration (no remote, no credentials).
fn local_git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GIT_DIR", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn git_failed(what: &str, dir: &Path, detail: impl std::fmt::Display) -> TaskError {
    TaskError::retryable(format!("git {what} in {}: {detail}", dir.display()))
}

/// Blocking: every ref of the local bare repository `dir`: full name → id.
pub fn local_refs(dir: &Path) -> Result<BTreeMap<String, String>, TaskError> {
    let out = local_git(dir)
        .args(["for-each-ref", "--format=%(objectname) %(refname)"])
        .output()
        .map_err(|e| git_failed("for-each-ref", dir, e))?;
    if !out.status.success() {
        return Err(git_failed(
            "for-each-ref",
            dir,
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (name.to_string(), id.to_string()))
        .collect())
}

/// Blocking: renames `refs/pull/*` to `refs/repovault/pull/*` in the local bare repository
/// `dir` (in one transaction). Returns how many moved.
pub fn move_pull_refs(dir: &Path) -> Result<u64, TaskError> {
    use std::io::Write as _;
    let pulls: Vec<(String, String)> = local_refs(dir)?
        .into_iter()
        .filter(|(name, _)| name.starts_with("refs/pull/"))
        .collect();
    if pulls.is_empty() {
        return Ok(0);
    }
    let mut script = String::from("start\n");
    for (name, id) in &pulls {
        let rest = &name["refs/pull/".len()..];
        script.push_str(&format!("create {PULL_REFS_NAMESPACE}{rest} {id}\n"));
        script.push_str(&format!("delete {name} {id}\n"));
    }
    script.push_str("prepare\ncommit\n");
    let mut child = local_git(dir)
        .args(["update-ref", "--stdin"])
        .spawn()
        .map_err(|e| git_failed("update-ref", dir, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| git_failed("update-ref", dir, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| git_failed("update-ref", dir, e))?;
    if !out.status.success() {
        return Err(git_failed(
            "update-ref",
            dir,
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(pulls.len() as u64)
}

/// The LFS objects the mirror's pointers name and the backup holds: oid → size.
async fn held_objects(tree: &Path) -> Result<BTreeMap<String, u64>, TaskError> {
    let (code, store) = (tree.join(manifest::CODE_DIR), tree.join(manifest::LFS_DIR));
    blocking(move || {
        let pointers =
            crate::lfs::find_pointers(&code).map_err(|e| TaskError::retryable(e.to_string()))?;
        // Only what the backup holds (it says which objects the source lacked).
        Ok(pointers
            .into_iter()
            .filter(|(oid, _)| oid.len() == 64 && crate::lfs::object_path(&store, oid).is_file())
            .collect())
    })
    .await
}

fn lfs_failure(e: crate::lfs::LfsError) -> TaskError {
    match e {
        crate::lfs::LfsError::Interrupted => {
            TaskError::retryable("interrupted while uploading LFS objects")
        }
        e @ (crate::lfs::LfsError::Unauthorized { .. }
        | crate::lfs::LfsError::Corrupt { .. }
        | crate::lfs::LfsError::ObjectRefused { .. }) => TaskError::permanent(e.to_string()),
        e => TaskError::retryable(e.to_string()),
    }
}

/// Uploads the LFS objects the mirror's pointers name and the backup holds to `target`'s LFS
/// endpoint. Returns how many the target now has from us (uploaded or already there).
pub async fn push_lfs(
    ctx: &Arc<TaskContext>,
    tree: &Path,
    target: &GitRemote,
) -> Result<u64, TaskError> {
    let objects = held_objects(tree).await?;
    if objects.is_empty() {
        return Ok(0);
    }
    let total = objects.len() as u64;
    ctx.progress
        .phase("lfs", format!("LFS objects: 0 of {total}"));
    let source = crate::lfs::LfsSource {
        repo_url: target.url.clone(),
        token: Some(target.token.clone()).filter(|t| !t.is_empty()),
        ca_cert_pem: target.ca_cert_pem.clone().filter(|c| !c.is_empty()),
    };
    let progress = ctx.progress.clone();
    let report = crate::lfs::upload(
        &tree.join(manifest::LFS_DIR),
        &objects,
        &source,
        &ctx.lease.interrupt,
        move |done, bytes, total_bytes| {
            progress.update(Counts {
                bytes,
                total_bytes,
                objects: done,
                total_objects: total,
            })
        },
    )
    .await
    .map_err(lfs_failure)?;
    ctx.progress.phase(
        "lfs",
        format!(
            "LFS objects: {total} of {total} ({} uploaded, {} already there)",
            report.uploaded, report.present
        ),
    );
    Ok(report.uploaded + report.present)
}

/// The branches the target has (for pull requests: recreated as pull requests only where both
/// branches exist), read with `git ls-remote`; none asked for when issues are not restored.
pub async fn branches_present(remote: &Remote, parts: Parts) -> Result<Vec<String>, TaskError> {
    if !parts.issues {
        return Ok(Vec::new());
    }
    let r = remote.clone();
    blocking(move || {
        Ok(git::ls_remote(&r)?
            .into_keys()
            .filter_map(|n| n.strip_prefix("refs/heads/").map(str::to_string))
            .collect())
    })
    .await
}
