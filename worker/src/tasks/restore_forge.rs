//! Forge restores: a backup into a repository of a forge (through the forge seam, for the
//! target's provider), whole or in part.
//!
//! Contract of [`run`]:
//! - `full_repo` to `new`/`original`: the target repository (`spec.target_owner/target_name`)
//!   is created when `spec.create_target` and it does not exist ([`Forge::target_repo`]), else
//!   it must exist. Every ref of the backup is pushed, never forced; `refs/pull/*` (which the
//!   forge keeps for its own pull requests) go to `refs/repovault/pull/*`. A target that already
//!   holds refs is accepted only when each of them (but the forge's own `refs/pull/*`, of pull
//!   requests an earlier attempt created) is one of ours at the same id (an earlier attempt of
//!   this restore); anything else is refused (never mix histories). Then the LFS objects (batch
//!   API upload), the wiki (pushed to the forge's wiki remote), the metadata
//!   ([`Forge::restore_metadata`]), and the default branch.
//! - `issues_only`: the metadata without releases; `releases_only`: the tags the releases need
//!   (pushed without force; a tag already there at another id is left alone) and the releases;
//!   `wiki_only`: the wiki, pushed only when the target's wiki is empty or holds exactly an
//!   earlier attempt's refs. All three are append-only into an existing repository.
//! - Metadata is created idempotently: the engine matches its markers in the target and keeps a
//!   journal (old → new numbers) kept in storage across attempts ([`restore_journal`]), so a
//!   re-leased restore creates nothing twice.
//! - Access: as `spec.access` says, direct collaborators only by default. Before
//!   anything is pushed, the `access` phase lists who will be invited and which team grants
//!   made, and who is left out and why; the summary repeats it.
//! - Progress: phases `plan` (with the estimated duration), `access`, `push`, `lfs`, `wiki`,
//!   `metadata`, each with items done of total and an ETA.
//!
//! Secrets: the token travels only in headers (git through the environment); messages name
//! URLs without credentials.
//!
//! Parts: [`restore_target`] (the snapshot's tree, the target repository and its remote),
//! [`restore_push`] (refs, tags, wiki, LFS), [`restore_journal`] (the metadata journal in
//! storage); the metadata itself is [`super::restore_meta`].

mod restore_journal;
mod restore_push;
mod restore_target;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use repovault_common::domain::RestoreType;
use repovault_common::forge::{AccessScope, Forge, GitRemote, TargetRepo};
use repovault_common::manifest::{self, Manifest};
use repovault_proto::v1 as pb;

use super::leased::RestoreWork;
use super::restore_meta::{self, MetadataPlan};
use super::{TaskContext, TaskError};
use restore_journal::{JournalSaver, journal_storage_path, load_journal, save_journal};
use restore_push::WikiPush;

/// What one restore type restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    /// Every ref (full_repo) — `tags` alone for releases_only.
    pub refs: bool,
    pub tags: bool,
    pub lfs: bool,
    pub wiki: bool,
    /// Metadata kinds handed to the engine: issues (with pulls, labels, milestones,
    /// attachments), releases, settings.
    pub issues: bool,
    pub releases: bool,
    pub settings: bool,
}

impl Parts {
    /// The parts of `restore_type`, `None` for one this module does not restore.
    pub fn of(restore_type: RestoreType) -> Option<Parts> {
        Some(match restore_type {
            RestoreType::FullRepo => Parts {
                refs: true,
                tags: true,
                lfs: true,
                wiki: true,
                issues: true,
                releases: true,
                settings: true,
            },
            RestoreType::IssuesOnly => Parts {
                issues: true,
                ..Parts::default()
            },
            RestoreType::WikiOnly => Parts {
                wiki: true,
                ..Parts::default()
            },
            RestoreType::ReleasesOnly => Parts {
                tags: true,
                releases: true,
                ..Parts::default()
            },
            RestoreType::DownloadZip => return None,
        })
    }

    fn metadata(&self) -> bool {
        self.issues || self.releases || self.settings
    }

    /// The snapshot directories these parts need.
    fn dirs(&self) -> Vec<&'static str> {
        let mut d = Vec::new();
        if self.refs || self.tags || self.lfs {
            d.push(manifest::CODE_DIR);
        }
        if self.lfs {
            d.push("lfs");
        }
        if self.wiki {
            d.push(manifest::WIKI_DIR);
        }
        if self.metadata() {
            d.push("meta");
        }
        if self.releases {
            d.push("releases");
        }
        if self.issues {
            d.push("attachments");
        }
        d
    }
}

/// Reports one phase's items done of total with an ETA, at most once a second.
struct Items<'a> {
    ctx: &'a TaskContext,
    phase: &'static str,
    what: &'static str,
    total: u64,
    started: Instant,
    last: Option<Instant>,
}

impl<'a> Items<'a> {
    fn start(ctx: &'a TaskContext, phase: &'static str, what: &'static str, total: u64) -> Self {
        ctx.progress.phase(phase, format!("{what}: 0 of {total}"));
        Items {
            ctx,
            phase,
            what,
            total,
            started: Instant::now(),
            last: None,
        }
    }

    fn done(&mut self, done: u64) {
        self.ctx.progress.update_items(done, self.total);
        if self
            .last
            .is_some_and(|l| l.elapsed() < Duration::from_secs(1))
            && done < self.total
        {
            return;
        }
        self.last = Some(Instant::now());
        let eta = if done > 0 && done < self.total {
            let per = self.started.elapsed().as_secs_f64() / done as f64;
            format!(", ETA {}", human((per * (self.total - done) as f64) as u64))
        } else {
            String::new()
        };
        self.ctx.progress.status(
            self.phase,
            format!("{}: {done} of {}{eta}", self.what, self.total),
        );
        self.ctx.progress.update_items(done, self.total);
    }
}

/// Seconds as `1h2m`, `3m4s` or `5s`.
pub fn human(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Fails (retryably) once the lease is revoked, the restore cancelled or the worker stopping.
fn interrupted(ctx: &TaskContext) -> Result<(), TaskError> {
    if ctx.lease.interrupt.load(Ordering::SeqCst) {
        return Err(TaskError::retryable(
            "the restore was interrupted (lease revoked, cancelled, or worker stopping)",
        ));
    }
    Ok(())
}

/// Runs a forge restore in the scratch directory `work`; see the module documentation.
pub async fn run(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    restore: &RestoreWork,
    work: &Path,
) -> Result<pb::RestoreResult, TaskError> {
    let (spec, parts) = (&restore.spec, checked_parts(restore)?);
    let provider = restore
        .target_provider
        .ok_or_else(|| TaskError::permanent("the restore names no target forge"))?;

    // 1. The snapshot's tree, as far as these parts need it.
    let tree = work.join("tree");
    let manifest =
        restore_target::read_snapshot(ctx, access, &restore.snapshot_id, &tree, &parts.dirs())
            .await?;
    interrupted(ctx)?;

    // 2. The target's forge, repository and remote.
    let forge = restore_target::target_forge(ctx, access, spec, provider)?;
    let target_repo = restore_target::ensure_target(&*forge, restore, &tree).await?;
    // The forge names the URL pushed to: a file:// one is held to the same roots.
    ctx.check_local_url(&target_repo.clone_url).await?;
    let remote = restore_target::target_remote(ctx, &*forge, spec, &target_repo.clone_url).await;

    // 3. The plan: how long it will take, and which access it grants.
    let scope = AccessScope::from(spec.access());
    let plan = announce_plan(ctx, &forge, restore, parts, &manifest, &tree, scope).await?;

    // 4-6. Refs or tags, LFS objects, the wiki.
    let mut summary: Vec<String> = Vec::new();
    let refs_pushed = push_git(ctx, restore, parts, &tree, &remote, &mut summary).await?;
    if parts.lfs {
        interrupted(ctx)?;
        let n = restore_push::push_lfs(ctx, &tree, &remote).await?;
        summary.push(format!("{n} LFS objects"));
    }
    if parts.wiki {
        interrupted(ctx)?;
        summary.push(push_wiki(ctx, &tree, &target_repo, &remote, restore).await?);
    }

    // 7. Metadata.
    if parts.metadata() {
        interrupted(ctx)?;
        let scratch = Scratch { tree: &tree, work };
        let line = metadata(
            ctx, &*forge, access, restore, parts, scope, &remote, scratch, plan,
        );
        summary.push(line.await?);
    }

    // 8. The default branch, as the source had it.
    if parts.refs {
        set_default_branch(&*forge, spec, &manifest, &target_repo).await;
    }

    let summary = summary.join("; ");
    ctx.progress.phase("done", summary.clone());
    Ok(pb::RestoreResult {
        refs_pushed,
        summary,
        ..Default::default()
    })
}

/// The parts of the restore's type, with the target it names checked.
fn checked_parts(restore: &RestoreWork) -> Result<Parts, TaskError> {
    let (spec, restore_type) = (&restore.spec, restore.restore_type());
    let parts = Parts::of(restore_type).ok_or_else(|| {
        TaskError::permanent(format!(
            "restore type {restore_type:?} is not a forge restore"
        ))
    })?;
    if spec.target_owner.is_empty() || spec.target_name.is_empty() || spec.target_api_url.is_empty()
    {
        return Err(TaskError::permanent(
            "the restore names no target repository on a forge",
        ));
    }
    Ok(parts)
}

/// Reports the `plan` phase (what is restored, how long it takes) and the `access` phase (who
/// is invited, who is left out). Returns the metadata plan.
async fn announce_plan(
    ctx: &TaskContext,
    forge: &Arc<dyn Forge>,
    restore: &RestoreWork,
    parts: Parts,
    manifest: &Manifest,
    tree: &Path,
    scope: AccessScope,
) -> Result<MetadataPlan, TaskError> {
    let spec = &restore.spec;
    let plan = if parts.metadata() {
        restore_meta::plan(forge, tree, &restore.backup_id, parts, scope).await?
    } else {
        MetadataPlan::default()
    };
    let wiki = parts.wiki && is_dir(&tree.join(manifest::WIKI_DIR)).await;
    ctx.progress.phase(
        "plan",
        format!(
            "restoring {} of backup {} into {}/{}: {} refs, {} LFS objects, wiki {}, {} items to create; estimated {}",
            restore.restore_type(),
            restore.backup_id,
            spec.target_owner,
            spec.target_name,
            if parts.refs { manifest.refs.len() } else { 0 },
            if parts.lfs { manifest.counts.lfs_objects } else { 0 },
            if wiki { "yes" } else { "no" },
            plan.creations,
            human(plan.estimate_secs + 5),
        ),
    );
    let access = restore_meta::access_plan(&**forge, tree, &spec.target_owner, parts, scope);
    if let Some(access) = access.await? {
        ctx.progress.phase("access", access.describe());
    }
    Ok(plan)
}

async fn is_dir(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir())
}

/// Pushes every ref (`full_repo`) or the tags alone (`releases_only`); adds the summary line.
/// Returns the refs pushed.
async fn push_git(
    ctx: &TaskContext,
    restore: &RestoreWork,
    parts: Parts,
    tree: &Path,
    remote: &GitRemote,
    summary: &mut Vec<String>,
) -> Result<u64, TaskError> {
    let code = tree.join(manifest::CODE_DIR);
    let remote = crate::forge::git_remote(remote);
    if parts.refs {
        interrupted(ctx)?;
        let spec = &restore.spec;
        let target = format!("{}/{}", spec.target_owner, spec.target_name);
        let (pushed, line) = restore_push::push_all_refs(ctx, &code, &remote, &target).await?;
        summary.push(line);
        Ok(pushed)
    } else if parts.tags {
        interrupted(ctx)?;
        let pushed = restore_push::push_tags(ctx, &code, &remote).await?;
        summary.push(format!("{pushed} tags pushed"));
        Ok(pushed)
    } else {
        Ok(0)
    }
}

/// Pushes the backup's wiki to the target's wiki remote, when both exist. Returns the summary
/// line. A target whose wiki was never made (GitHub makes one only when its first page is saved
/// in the web interface) gets the steps to restore it later: the summary says them, and a
/// `wiki_only` restore, which has nothing else to do, fails with them.
async fn push_wiki(
    ctx: &TaskContext,
    tree: &Path,
    target: &TargetRepo,
    remote: &GitRemote,
    restore: &RestoreWork,
) -> Result<String, TaskError> {
    let wiki = tree.join(manifest::WIKI_DIR);
    if !tokio::fs::try_exists(wiki.join("HEAD"))
        .await
        .unwrap_or(false)
    {
        return Ok("no wiki in the backup".into());
    }
    let Some(url) = &target.wiki_url else {
        return Ok("the target's forge has no wiki".into());
    };
    let wiki_remote = GitRemote {
        url: url.clone(),
        ..remote.clone()
    };
    match restore_push::push_wiki(ctx, &wiki, crate::forge::git_remote(&wiki_remote)).await? {
        WikiPush::Pushed {
            refs,
            replaced_first_page,
        } => Ok(if replaced_first_page {
            format!("wiki pushed ({refs} refs, over the first page saved to create it)")
        } else {
            format!("wiki pushed ({refs} refs)")
        }),
        WikiPush::NotCreated => {
            let repo_page = target.clone_url.trim_end_matches(".git");
            let how = format!(
                "the target's wiki does not exist yet and a push cannot create it: save any first page at {repo_page}/wiki, then run `repovault restore start {} --type wiki_only --into {}/{}`",
                restore.backup_id, restore.spec.target_owner, restore.spec.target_name
            );
            if restore.restore_type() == RestoreType::WikiOnly {
                Err(TaskError::permanent(how))
            } else {
                Ok(format!("wiki not restored: {how}"))
            }
        }
    }
}

/// Where a restore's files are: the snapshot's tree, and the scratch directory around it.
#[derive(Clone, Copy)]
struct Scratch<'a> {
    tree: &'a Path,
    work: &'a Path,
}

/// Restores the metadata with its journal loaded from storage and saved back (every second
/// while it changes, and at the end). Returns the summary line.
#[allow(clippy::too_many_arguments)]
async fn metadata(
    ctx: &Arc<TaskContext>,
    forge: &dyn Forge,
    access: &pb::RepoAccess,
    restore: &RestoreWork,
    parts: Parts,
    scope: AccessScope,
    remote: &GitRemote,
    scratch: Scratch<'_>,
    plan: MetadataPlan,
) -> Result<String, TaskError> {
    let spec = &restore.spec;
    let journal_local = scratch.work.join("journal.json");
    let journal_remote = journal_storage_path(&access.snapshot_path, &restore.restore_id);
    load_journal(ctx, &journal_remote, &journal_local).await?;
    let saver = JournalSaver::start(ctx.clone(), journal_local.clone(), journal_remote.clone());
    let branches = restore_push::branches_present(&crate::forge::git_remote(remote), parts).await;
    let report = match branches {
        Ok(branches) => {
            ctx.progress.phase(
                "metadata",
                format!(
                    "items: 0 of {}, ETA {}",
                    plan.creations,
                    human(plan.estimate_secs)
                ),
            );
            let branches = branches.into_iter().collect();
            let request =
                restore_meta::request(&restore.backup_id, parts, scope, branches, &journal_local);
            let (owner, name) = (&spec.target_owner, &spec.target_name);
            restore_meta::restore(ctx, forge, scratch.tree, owner, name, &request).await
        }
        Err(e) => Err(e),
    };
    saver.stop().await;
    save_journal(ctx, &journal_local, &journal_remote).await?;
    report
}

/// Makes the source's default branch the target's, when the backup names one and the target
/// differs. A failure is logged, not fatal: every ref is there.
async fn set_default_branch(
    forge: &dyn Forge,
    spec: &pb::RestoreSpec,
    manifest: &Manifest,
    target: &TargetRepo,
) {
    let Some(head) = manifest
        .head
        .as_deref()
        .and_then(|h| h.strip_prefix("refs/heads/"))
    else {
        return;
    };
    if target.default_branch.as_deref() == Some(head) {
        return;
    }
    let set = forge.set_default_branch(&spec.target_owner, &spec.target_name, head);
    if let Err(e) = set.await {
        tracing::warn!(error = %e, "could not set the default branch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_each_type() {
        assert!(
            Parts::of(RestoreType::FullRepo).is_some_and(|p| p.refs && p.lfs && p.wiki && p.issues)
        );
        let i = Parts::of(RestoreType::IssuesOnly).unwrap_or_default();
        assert!(i.issues && !i.refs && !i.wiki && !i.releases);
        let r = Parts::of(RestoreType::ReleasesOnly).unwrap_or_default();
        assert!(r.tags && r.releases && !r.refs && !r.issues);
        assert!(Parts::of(RestoreType::DownloadZip).is_none());
        assert_eq!(
            journal_storage_path("o/r/", &"x".parse().expect("restore id")),
            "o/r/restores/x.journal.json"
        );
        assert_eq!(human(3725), "1h2m");
        assert_eq!(human(65), "1m5s");
    }
}
