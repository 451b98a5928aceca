//! Forge restores (GitHub): a backup into a repository of a forge, whole or in part.
//!
//! Contract of [`run`]:
//! - `full_repo` to `new`/`original`: the target repository (`spec.target_owner/target_name`)
//!   is created when `spec.create_target` and it does not exist (`POST /orgs/{owner}/repos`),
//!   else it must exist. Every ref of the backup is pushed, never forced; `refs/pull/*` (which
//!   GitHub refuses) go to `refs/repovault/pull/*`. A target that already holds refs is accepted
//!   only when each of them (but GitHub's own `refs/pull/*`, of pull requests an earlier attempt
//!   created) is one of ours at the same id (an earlier attempt of this restore); anything else
//!   is refused (never mix histories). Then the LFS objects (batch API upload),
//!   the wiki (pushed to `NAME.wiki.git`), the metadata (the restore engine), and the default
//!   branch.
//! - `issues_only`: the metadata without releases; `releases_only`: the tags the releases need
//!   (pushed without force; a tag already there at another id is left alone) and the releases;
//!   `wiki_only`: the wiki, pushed only when the target's wiki is empty or holds exactly an
//!   earlier attempt's refs. All three are append-only into an existing repository.
//! - Metadata is created idempotently: the engine matches its markers in the target and keeps a
//!   journal (old → new numbers), which lives in storage at
//!   `<org-id>/<repo-id>/restores/<restore-id>.journal.json` (loaded at the start, saved every
//!   second while it changes and at the end), so a re-leased restore creates nothing twice.
//! - Access: as `spec.access` says, direct collaborators only by default. Before
//!   anything is pushed, the `access` phase lists who will be invited and which team grants
//!   made, and who is left out and why; the summary repeats it.
//! - Progress: phases `plan` (with the estimated duration), `access`, `push`, `lfs`, `wiki`,
//!   `metadata`, each with items done of total and an ETA.
//!
//! Secrets: the token travels only in headers (git through the environment); messages name
//! URLs without credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use repovault_common::domain::RestoreType;
use repovault_common::forge::github::access::AccessScope;
use repovault_common::forge::github::{ForgeError, GitHubClient, GitHubEndpoint};
use repovault_common::manifest::{self, Manifest};
use repovault_common::repo::{RepoError, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::git::{self, GitError, Remote};

use super::leased::RestoreWork;
use super::{TaskContext, TaskError, blocking};

/// The namespace the backup's `refs/pull/*` are pushed under (GitHub refuses `refs/pull/*`).
pub const PULL_REFS_NAMESPACE: &str = "refs/repovault/pull/";

/// How often the journal is saved to storage while it changes.
const JOURNAL_SAVE_EVERY: Duration = Duration::from_secs(1);

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

/// Where the journal of `restore_id` lives in storage, beside the snapshot repository.
pub fn journal_storage_path(snapshot_path: &str, restore_id: &str) -> String {
    format!(
        "{}/restores/{restore_id}.journal.json",
        snapshot_path.trim_end_matches('/')
    )
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
        self.ctx.progress.update(done, done, self.total);
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
        self.ctx.progress.phase(
            self.phase,
            format!("{}: {done} of {}{eta}", self.what, self.total),
        );
        self.ctx.progress.update(done, done, self.total);
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

fn interrupted(ctx: &TaskContext) -> Result<(), TaskError> {
    if ctx.lease.interrupt.load(Ordering::SeqCst) {
        return Err(TaskError::retryable(
            "the restore was interrupted (lease revoked, cancelled, or worker stopping)",
        ));
    }
    Ok(())
}

/// A forge refusal: permanent for 401/403/404/422 (the target or the credential is wrong),
/// retryable otherwise.
fn forge_failure(context: &str, e: ForgeError) -> TaskError {
    let message = format!("{context}: {e}");
    match e.status() {
        Some(401 | 403 | 404 | 410 | 422 | 451) => TaskError::permanent(message),
        _ => TaskError::retryable(message),
    }
}

/// Runs a forge restore in the scratch directory `work`; see the module documentation.
pub async fn run(
    ctx: &Arc<TaskContext>,
    access: &pb::RepoAccess,
    restore: &RestoreWork,
    work: &Path,
) -> Result<pb::RestoreResult, TaskError> {
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
    let target = format!("{}/{}", spec.target_owner, spec.target_name);

    // 1. The snapshot's tree, as far as these parts need it.
    ctx.progress.phase(
        "restore",
        format!(
            "reading snapshot {}",
            &spec.snapshot_id[..8.min(spec.snapshot_id.len())]
        ),
    );
    let repo = super::restore::open_snapshot_repo(ctx, access).await?;
    let tree = work.join("tree");
    let manifest = restore_tree(&repo, &spec.snapshot_id, &tree, &parts.dirs()).await?;
    interrupted(ctx)?;

    // 2. The target client and repository.
    let client = target_client(ctx, access, spec)?;
    let target_repo = ensure_target(&client, restore, &manifest, &tree).await?;
    let clone_url = target_repo
        .get("clone_url")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            TaskError::permanent(format!("the forge's answer for {target} has no clone_url"))
        })?;
    // The forge names the URL pushed to: a file:// one is held to the same roots.
    ctx.check_local_url(&clone_url).await?;
    let token = if spec.target_is_source_credential {
        ctx.forge.source_token().await
    } else {
        Secret::new(spec.target_token.clone())
    };
    let ca = spec.target_ca_cert_pem.clone();
    let remote = Remote::from_lease(&clone_url, token.expose()).with_ca(&ca);

    // 3. The plan: how long it will take, and which access it grants.
    let scope = AccessScope::from(spec.access());
    let metadata_plan = if parts.metadata() {
        super::restore_meta::plan(&tree, &spec.backup_id, parts, scope).await?
    } else {
        super::restore_meta::MetadataPlan::default()
    };
    let code = tree.join(manifest::CODE_DIR);
    ctx.progress.phase(
        "plan",
        format!(
            "restoring {} of backup {} into {target}: {} refs, {} LFS objects, wiki {}, {} items to create; estimated {}",
            restore_type,
            spec.backup_id,
            if parts.refs { manifest.refs.len() } else { 0 },
            if parts.lfs { manifest.counts.lfs_objects } else { 0 },
            if parts.wiki && tree.join(manifest::WIKI_DIR).is_dir() { "yes" } else { "no" },
            metadata_plan.creations,
            human(metadata_plan.estimate_secs + 5),
        ),
    );
    if let Some(plan) = super::restore_meta::access_plan(
        &tree,
        &client,
        &spec.target_owner,
        &spec.target_name,
        parts,
        scope,
    )
    .await?
    {
        ctx.progress.phase("access", plan.describe());
    }
    let mut summary: Vec<String> = Vec::new();
    let mut refs_pushed = 0;

    // 4. Refs.
    if parts.refs {
        interrupted(ctx)?;
        let (moved, local) = {
            let code = code.clone();
            blocking(move || {
                let moved = move_pull_refs(&code)?;
                Ok((moved, local_refs(&code)?))
            })
            .await?
        };
        let mut items = Items::start(ctx, "push", "refs pushed", local.len() as u64);
        let r = remote.clone();
        let (code2, target2) = (code.clone(), target.clone());
        let pushed = blocking(move || {
            let there = git::ls_remote(&r)?;
            // GitHub's own refs/pull/* there belong to pull requests an earlier attempt
            // created (they cannot be pushed anyway).
            let foreign: Vec<&String> = there
                .iter()
                .filter(|(name, _)| !name.starts_with("refs/pull/"))
                .filter(|(name, id)| local.get(*name) != Some(*id))
                .map(|(name, _)| name)
                .collect();
            if !foreign.is_empty() {
                return Err(TaskError::permanent(format!(
                    "{target2} already holds {} refs that are not this backup's (such as {}): refusing to push (a restore never mixes histories)",
                    foreign.len(),
                    foreign[0]
                )));
            }
            Ok(git::push_refs(&code2, &r, &["refs/*:refs/*"])?)
        })
        .await?;
        refs_pushed = pushed.refs_pushed;
        items.done(items.total);
        summary.push(format!(
            "{} refs pushed{}",
            pushed.refs_pushed,
            if moved > 0 {
                format!(" ({moved} pull refs under {PULL_REFS_NAMESPACE})")
            } else {
                String::new()
            }
        ));
    } else if parts.tags {
        interrupted(ctx)?;
        let tags = blocking({
            let code = code.clone();
            move || local_refs(&code)
        })
        .await?
        .into_keys()
        .filter(|r| r.starts_with("refs/tags/"))
        .count() as u64;
        let mut items = Items::start(ctx, "push", "tags pushed", tags);
        let (r, code2) = (remote.clone(), code.clone());
        let pushed = blocking(move || {
            match git::push_refs(&code2, &r, &["refs/tags/*:refs/tags/*"]) {
                Ok(p) => Ok(p.refs_pushed),
                // Append-only: a tag the target has at another id stays as it is.
                Err(GitError::RefsRejected { refs, .. }) => {
                    tracing::warn!(refs = %refs, "tags already in the target at another id were left alone");
                    Ok(0)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        refs_pushed = pushed;
        items.done(tags);
        summary.push(format!("{pushed} tags pushed"));
    }

    // 5. LFS objects.
    if parts.lfs {
        interrupted(ctx)?;
        let n = push_lfs(ctx, &tree, &clone_url, &token, &ca).await?;
        summary.push(format!("{n} LFS objects"));
    }

    // 6. The wiki.
    if parts.wiki {
        interrupted(ctx)?;
        let wiki = tree.join(manifest::WIKI_DIR);
        if wiki.join("HEAD").exists() {
            let url = match clone_url.strip_suffix(".git") {
                Some(base) => format!("{base}.wiki.git"),
                None => format!("{clone_url}.wiki.git"),
            };
            ctx.progress
                .phase("wiki", format!("pushing the wiki to {url}"));
            let r = Remote::from_lease(&url, token.expose()).with_ca(&ca);
            let pushed = blocking(move || {
                let local = local_refs(&wiki)?;
                let there = match git::ls_remote(&r) {
                    Ok(t) => t,
                    // A wiki that was never written is not there yet: the push creates it.
                    Err(GitError::RepositoryNotFound { .. }) => BTreeMap::new(),
                    Err(e) => return Err(e.into()),
                };
                if there.iter().any(|(n, id)| local.get(n) != Some(id)) {
                    return Err(TaskError::permanent(format!(
                        "the target's wiki {} already has pages of its own: a wiki restore only fills an empty wiki",
                        r.url
                    )));
                }
                Ok(git::push_refs(&wiki, &r, &["refs/*:refs/*"])?)
            })
            .await?;
            summary.push(format!("wiki pushed ({} refs)", pushed.refs_pushed));
        } else {
            summary.push("no wiki in the backup".into());
        }
    }

    // 7. Metadata.
    if parts.metadata() {
        interrupted(ctx)?;
        let journal_local = work.join("journal.json");
        let journal_remote = journal_storage_path(&access.snapshot_path, &spec.restore_id);
        load_journal(ctx, &journal_remote, &journal_local).await?;
        let saver = JournalSaver::start(ctx.clone(), journal_local.clone(), journal_remote.clone());
        let branches = branches_present(&remote, parts).await?;
        ctx.progress.phase(
            "metadata",
            format!(
                "items: 0 of {}, ETA {}",
                metadata_plan.creations,
                human(metadata_plan.estimate_secs)
            ),
        );
        let report = super::restore_meta::restore(
            ctx,
            &tree,
            &client,
            &spec.target_owner,
            &spec.target_name,
            &spec.backup_id,
            parts,
            scope,
            branches,
            &journal_local,
        )
        .await;
        saver.stop().await;
        save_journal(ctx, &journal_local, &journal_remote).await?;
        let report = report?;
        summary.push(report);
    }

    // 8. The default branch, as the source had it.
    if parts.refs
        && let Some(head) = manifest
            .head
            .as_deref()
            .and_then(|h| h.strip_prefix("refs/heads/"))
        && target_repo.get("default_branch").and_then(Value::as_str) != Some(head)
    {
        let path = format!("/repos/{}/{}", spec.target_owner, spec.target_name);
        if let Err(e) = client
            .patch_json(&path, &json!({ "default_branch": head }))
            .await
        {
            tracing::warn!(error = %e, "could not set the default branch");
        }
    }

    let summary = summary.join("; ");
    ctx.progress.phase("done", summary.clone());
    Ok(pb::RestoreResult {
        refs_pushed,
        summary,
        ..Default::default()
    })
}

/// Restores `dirs` of `snapshot_id` under `tree` (those the backup lacks are skipped) and
/// returns the manifest.
async fn restore_tree(
    repo: &Arc<SnapshotRepo>,
    snapshot_id: &str,
    tree: &Path,
    dirs: &[&'static str],
) -> Result<Manifest, TaskError> {
    let (repo, snapshot_id, tree, dirs) = (
        repo.clone(),
        snapshot_id.to_string(),
        tree.to_path_buf(),
        dirs.to_vec(),
    );
    blocking(move || {
        std::fs::create_dir_all(&tree)
            .map_err(|e| TaskError::retryable(format!("creating {}: {e}", tree.display())))?;
        let bytes = repo.read_file(&snapshot_id, manifest::MANIFEST_FILE)?;
        std::fs::write(tree.join(manifest::MANIFEST_FILE), &bytes)
            .map_err(|e| TaskError::retryable(format!("writing manifest.json: {e}")))?;
        let manifest = Manifest::from_json(&bytes)
            .map_err(|e| TaskError::permanent(format!("snapshot {snapshot_id}: {e}")))?;
        for dir in dirs {
            match repo.restore(&snapshot_id, dir, &tree.join(dir)) {
                Ok(_) | Err(RepoError::PathNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(manifest)
    })
    .await
}

/// A REST client for the target: the lease's own gated client when the target uses the
/// source's credential (its rate budget then admits every request), else one with the
/// restore's token.
fn target_client(
    ctx: &TaskContext,
    access: &pb::RepoAccess,
    spec: &pb::RestoreSpec,
) -> Result<GitHubClient, TaskError> {
    let made = if spec.target_is_source_credential && spec.target_api_url == access.api_url {
        crate::forge::github_client(ctx, access)
    } else {
        let ep = GitHubEndpoint {
            api_url: spec.target_api_url.clone(),
            ca_cert_pem: (!spec.target_ca_cert_pem.is_empty())
                .then(|| spec.target_ca_cert_pem.clone()),
        };
        GitHubClient::new(&ep, Secret::new(spec.target_token.clone()))
    };
    made.map_err(|e| TaskError::permanent(format!("GitHub client for the target: {e}")))
}

/// The target repository's document: read, or created when allowed and absent.
async fn ensure_target(
    client: &GitHubClient,
    restore: &RestoreWork,
    manifest: &Manifest,
    tree: &Path,
) -> Result<Value, TaskError> {
    let spec = &restore.spec;
    let (owner, name) = (&spec.target_owner, &spec.target_name);
    let path = format!("/repos/{owner}/{name}");
    match client.get_json(&path, None).await {
        Ok(page) => {
            return page.body.ok_or_else(|| {
                TaskError::retryable(format!("the forge answered nothing for {owner}/{name}"))
            });
        }
        Err(e) if e.status() == Some(404) && spec.create_target => {}
        Err(e) if e.status() == Some(404) => {
            return Err(TaskError::permanent(format!(
                "repository {owner}/{name} does not exist (a {} restore writes into an existing repository)",
                restore.restore_type()
            )));
        }
        Err(e) => return Err(forge_failure(&format!("reading {owner}/{name}"), e)),
    }
    // The source's description and visibility, from the backup.
    let source: Value = std::fs::read(tree.join("meta/repo.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let mut body = json!({
        "name": name,
        "private": source.get("private").and_then(Value::as_bool).unwrap_or(true),
        "has_wiki": true,
        "has_issues": true,
        "auto_init": false,
        "description": source.get("description").and_then(Value::as_str).unwrap_or(""),
    });
    if let Some(h) = source.get("homepage").and_then(Value::as_str) {
        body["homepage"] = json!(h);
    }
    tracing::info!(target = %format!("{owner}/{name}"), source = %manifest.source.repo, "creating the target repository");
    match client
        .post_json(&format!("/orgs/{owner}/repos"), &body)
        .await
    {
        Ok(v) => Ok(v),
        // Created meanwhile (an earlier attempt whose answer was lost): read it.
        Err(e) if e.status() == Some(422) => client
            .get_json(&path, None)
            .await
            .map_err(|e| forge_failure(&format!("reading {owner}/{name}"), e))?
            .body
            .ok_or_else(|| {
                TaskError::retryable(format!("the forge answered nothing for {owner}/{name}"))
            }),
        Err(e) => Err(forge_failure(&format!("creating {owner}/{name}"), e)),
    }
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

/// Every ref of the local bare repository `dir`: full name → id.
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

/// Renames `refs/pull/*` to `refs/repovault/pull/*` in the local bare repository `dir` (in
/// one transaction). Returns how many moved.
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

/// Uploads the LFS objects the mirror's pointers name and the backup holds. Returns how many
/// the target now has from us (uploaded or already there).
async fn push_lfs(
    ctx: &Arc<TaskContext>,
    tree: &Path,
    clone_url: &str,
    token: &Secret,
    ca: &str,
) -> Result<u64, TaskError> {
    let (code, store) = (tree.join(manifest::CODE_DIR), tree.join(manifest::LFS_DIR));
    let objects = {
        let (code, store) = (code.clone(), store.clone());
        blocking(move || {
            let pointers = crate::lfs::find_pointers(&code)
                .map_err(|e| TaskError::retryable(e.to_string()))?;
            // Only what the backup holds (it says which objects the source lacked).
            Ok(pointers
                .into_iter()
                .filter(|(oid, _)| {
                    oid.len() == 64 && crate::lfs::object_path(&store, oid).is_file()
                })
                .collect::<BTreeMap<String, u64>>())
        })
        .await?
    };
    if objects.is_empty() {
        return Ok(0);
    }
    let total = objects.len() as u64;
    ctx.progress
        .phase("lfs", format!("LFS objects: 0 of {total}"));
    let target = crate::lfs::LfsSource {
        repo_url: clone_url.to_string(),
        token: Some(token.clone()).filter(|t| !t.is_empty()),
        ca_cert_pem: (!ca.is_empty()).then(|| ca.to_string()),
    };
    let progress = ctx.progress.clone();
    let report = crate::lfs::upload(
        &store,
        &objects,
        &target,
        &ctx.lease.interrupt,
        move |done, bytes, total_bytes| {
            progress.update(bytes, done, total_bytes);
        },
    )
    .await
    .map_err(|e| match e {
        crate::lfs::LfsError::Interrupted => {
            TaskError::retryable("interrupted while uploading LFS objects")
        }
        e @ (crate::lfs::LfsError::Unauthorized { .. }
        | crate::lfs::LfsError::Corrupt { .. }
        | crate::lfs::LfsError::ObjectRefused { .. }) => TaskError::permanent(e.to_string()),
        e => TaskError::retryable(e.to_string()),
    })?;
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
/// branches exist), read with `git ls-remote`.
async fn branches_present(remote: &Remote, parts: Parts) -> Result<Vec<String>, TaskError> {
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

/// Copies the journal from storage to `local` (nothing when there is none yet).
async fn load_journal(ctx: &TaskContext, remote: &str, local: &Path) -> Result<(), TaskError> {
    match ctx.storage.read(remote).await {
        Ok(buf) => tokio::fs::write(local, buf.to_vec())
            .await
            .map_err(|e| TaskError::retryable(format!("writing {}: {e}", local.display()))),
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TaskError::retryable(format!(
            "reading the restore journal {remote}: {e}"
        ))),
    }
}

/// Writes `local` to storage (nothing when it does not exist), while the lease allows writes.
async fn save_journal(ctx: &TaskContext, local: &Path, remote: &str) -> Result<(), TaskError> {
    let data = match tokio::fs::read(local).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(TaskError::retryable(format!(
                "reading {}: {e}",
                local.display()
            )));
        }
    };
    ctx.lease.may_write().map_err(TaskError::retryable)?;
    ctx.storage
        .write(remote, data)
        .await
        .map(|_| ())
        .map_err(|e| TaskError::retryable(format!("saving the restore journal {remote}: {e}")))
}

/// Saves the journal to storage every [`JOURNAL_SAVE_EVERY`] while it changes.
struct JournalSaver {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl JournalSaver {
    fn start(ctx: Arc<TaskContext>, local: PathBuf, remote: String) -> JournalSaver {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut last: Option<(u64, std::time::SystemTime)> = None;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(JOURNAL_SAVE_EVERY) => {}
                    _ = stopped.changed() => return,
                }
                let now = tokio::fs::metadata(&local)
                    .await
                    .ok()
                    .and_then(|m| Some((m.len(), m.modified().ok()?)));
                if now.is_none() || now == last {
                    continue;
                }
                match save_journal(&ctx, &local, &remote).await {
                    Ok(()) => last = now,
                    Err(e) => tracing::warn!(error = %e, "could not save the restore journal"),
                }
            }
        });
        JournalSaver { stop, handle }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
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
            journal_storage_path("o/r/", "x"),
            "o/r/restores/x.journal.json"
        );
        assert_eq!(human(3725), "1h2m");
        assert_eq!(human(65), "1m5s");
    }
}
