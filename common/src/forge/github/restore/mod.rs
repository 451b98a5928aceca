//! Restore of one repository's metadata from an export tree (see [`super::export`]) into a
//! GitHub repository: labels, milestones, issues with comments, pull requests (with
//! reviews and review comments as comments), releases with assets, and settings.
//!
//! ```ignore
//! pub fn plan(tree: &Path, opts: &RestoreOptions) -> Result<RestorePlan, ForgeError>;
//! pub fn read_access(tree: &Path) -> Result<Option<AccessDoc>, ForgeError>;
//! pub async fn plan_access(doc: &AccessDoc, target: RestoreTarget<'_>, scope: AccessScope)
//!     -> Result<AccessPlan, ForgeError>;
//! pub async fn restore_metadata(tree: &Path, target: RestoreTarget<'_>, opts: &RestoreOptions,
//!     progress: &(dyn Fn(Progress) + Sync)) -> Result<RestoreReport, ForgeError>;
//! ```
//!
//! Contracts:
//! - **Safe to repeat.** Every created issue, pull request, comment and release carries a
//!   hidden marker naming its source (`<!-- repovault:source backup=B kind=issue number=12 -->`,
//!   see [`text`]); old → new numbers and ids are journaled to [`RestoreOptions::journal`]
//!   (rewritten atomically after every creation); a run first reads the journal and lists the
//!   target's issues (pull requests included) and releases, and an issue's comments before adding
//!   any, so a run repeated after a crash (or re-leased to another worker) creates nothing twice.
//!   Labels, milestones, release assets and settings have no body: they are matched by name
//!   (hooks by URL, deploy keys by key, protection by branch). Append-only: nothing in the target
//!   is deleted or overwritten (an existing branch protection is left as it is).
//! - **Order.** Labels, milestones, then issues and pull requests in ascending original number
//!   (so an empty target gets the same numbers), then per item its comments, state and lock,
//!   then releases, then settings.
//! - **What GitHub cannot keep** (numbers, authors, times) is named in a one-paragraph header
//!   (`> Originally #12 by @dev on 2024-02-01T09:00:00Z (restored by repovault from backup
//!   B)`); `#N` cross-references are rewritten to the new numbers (bodies created before a
//!   referenced item existed are corrected once every number is known). Open/closed state,
//!   lock, labels, milestones and assignees (users that exist) are kept.
//! - **Pull requests** come back as pull requests when the head (in the same repository) and the
//!   base branch are in [`RestoreOptions::branches_present`] and GitHub accepts them; otherwise
//!   (including GitHub refusing one, e.g. a merged branch with no commits left) as issues whose
//!   header says so, listed in [`RestoreReport::converted`]. Merged ones say "merged" in the
//!   header and are closed.
//! - **Paced.** Content creation is paced under [`RestoreOptions::pace`] (GitHub's 80/min and
//!   500/h by default, less a headroom, see [`pacer`]); a limit met anyway is waited out by the client, so a
//!   limit never fails a restore.
//! - **Refusals.** A setting the target refuses (403, 404, 409, 410, 422) is skipped with
//!   GitHub's answer in [`RestoreReport::skipped`]; any other failure fails the restore, which is
//!   then safe to run again. Webhooks are created without a secret (the backup holds none) and
//!   listed in [`RestoreReport::webhooks_needing_secret`] (scheme, host and path only: a URL's
//!   query may hold a credential).
//! - **Access** is restored as narrowly as it was held ([`super::access`]): direct
//!   collaborators by default; team grants (to the target organisation's team of the same
//!   slug) and everyone else only as [`RestoreOptions::access`] says. The plan
//!   ([`plan_access`], and [`RestoreReport::access`] after) lists who is granted what and who
//!   is left out and why; a backup from before access was recorded invites nobody by default.
//! - **Off the runtime, streamed.** The export tree is read and the journal written on the
//!   blocking pool; release assets are uploaded from their files as streams, never read whole.
//! - Attachments (`attachments/`) are not uploaded: GitHub has no API for them; bodies keep
//!   their original attachment URLs.
//!
//! Layout: one restore's state is an `Engine` (this file), whose methods are the machinery
//! every phase shares: pacing the content-creating requests, counting what was created or
//! reused, progress, skips. Each phase is a file of free functions taking the engine
//! (`labels_restore`, `items`, `release_restore`, `settings_restore`, `access_restore`), run
//! in order by [`restore_metadata`]; a phase's helpers stay private to its file, so the state
//! is in one place and each phase reads on its own.

mod access_restore;
mod items;
mod journal;
mod labels_restore;
pub mod pacer;
mod release_restore;
mod settings_restore;
mod source;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::access::{AccessDoc, AccessPlan, AccessScope};
use super::blocking::blocking;
use super::rest_client::GitHubClient;
use crate::domain::BackupId;
use crate::forge::ForgeError;
use journal::Journal;
pub use pacer::Pace;
use pacer::Pacer;

/// The repository restored into (it exists; for pull requests its branches were pushed).
#[derive(Debug, Clone, Copy)]
pub struct RestoreTarget<'a> {
    pub client: &'a GitHubClient,
    pub owner: &'a str,
    pub name: &'a str,
}

/// Which parts to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    /// Issues and pull requests with their comments, reviews and review comments.
    pub issues: bool,
    /// Releases and their assets.
    pub releases: bool,
    /// Labels and milestones.
    pub labels: bool,
    /// Branch protection, rulesets, webhooks, deploy keys, and access (collaborators, team
    /// grants) as far as [`RestoreOptions::access`] allows.
    pub settings: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        issues: true,
        releases: true,
        labels: true,
        settings: true,
    };
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup restored (named in every header and marker).
    pub backup_id: BackupId,
    pub parts: Parts,
    /// Branch names that exist in the target (after the git push): decides pull request or
    /// issue, and which branch protections can be restored.
    pub branches_present: BTreeSet<String>,
    /// The journal file, kept by the caller across attempts of one restore.
    pub journal: PathBuf,
    /// Content-creation pace; `None` paces nothing (the client still waits out GitHub's
    /// refusals). Default [`Pace::GITHUB`].
    pub pace: Option<Pace>,
    /// Which access to grant (with `parts.settings`): direct collaborators by default; team
    /// grants and everyone else only when asked (see [`super::access`]).
    pub access: AccessScope,
}

/// What a restore will do, before it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// Items to create (when the target holds none yet).
    pub creations: u64,
    /// Content-creating requests (creations plus closing, locking and labelling).
    pub requests: u64,
    /// How long `requests` take at the pace (GitHub's limits when unpaced: they apply anyway).
    pub estimate: Duration,
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `labels`, `milestones`, `issues`, `comments`, `releases`, `settings`.
    pub phase: &'static str,
    /// Items done (created or found already restored) of `total` ([`RestorePlan::creations`]).
    pub done: u64,
    pub total: u64,
    /// The remaining items at the pace ([`Pace::duration_of`]).
    pub eta: Duration,
}

/// A pull request restored as an issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Converted {
    pub number: u64,
    pub new_number: u64,
    pub reason: String,
}

/// Something not restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `protection main`, `deploy_key ci`, `collaborator outsider`, `assignees of #3`, ...
    pub item: String,
    pub reason: String,
}

/// The outcome of [`restore_metadata`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Kind (`label`, `milestone`, `issue`, `pull`, `comment`, `review`, `review_comment`,
    /// `release`, `asset`, `protection`, `ruleset`, `hook`, `deploy_key`, `collaborator`,
    /// `team`) → items created by this run.
    pub created: BTreeMap<String, u64>,
    /// Kind → items found already restored (marker, journal or name) and left as they are.
    pub reused: BTreeMap<String, u64>,
    /// Original issue/pull number → its number in the target.
    pub numbers: BTreeMap<u64, u64>,
    pub converted: Vec<Converted>,
    pub skipped: Vec<Skipped>,
    /// Webhooks restored without their secret (scheme, host and path).
    pub webhooks_needing_secret: Vec<String>,
    /// The access plan acted on: what was granted (or found granted) and what was left out
    /// and why. `None` when settings were not restored or the backup holds no access.
    pub access: Option<AccessPlan>,
    /// Content-creating requests sent (POST, PATCH, PUT).
    pub content_requests: u64,
    /// HTTP requests sent in all (through the client; retries included).
    pub requests: u64,
}

impl RestoreReport {
    /// Items created by this run, all kinds.
    pub fn total_created(&self) -> u64 {
        self.created.values().sum()
    }
}

/// Counts what restoring `tree` with `opts` creates, and how long that takes. Reads files
/// only: call it where blocking is allowed.
pub fn plan(tree: &Path, opts: &RestoreOptions) -> Result<RestorePlan, ForgeError> {
    let src = source::Source::read(tree)?;
    let (creations, requests) = src.count(opts);
    Ok(RestorePlan {
        creations,
        requests,
        estimate: opts.pace.unwrap_or(Pace::GITHUB).duration_of(requests),
    })
}

/// Who had access to the backed-up repository and how, from the export tree `tree`
/// (`access.json`, or a backup made before it read as "unknown how"); `None` when the backup
/// holds neither. Reads files only: call it where blocking is allowed.
pub fn read_access(tree: &Path) -> Result<Option<AccessDoc>, ForgeError> {
    source::read_access(tree)
}

/// What restoring `doc` into `target` with `scope` grants and leaves out, before it runs: the
/// target organisation is asked which of the backup's teams it has (when `scope` restores team
/// grants). [`restore_metadata`] acts on the same plan.
pub async fn plan_access(
    doc: &AccessDoc,
    target: RestoreTarget<'_>,
    scope: AccessScope,
) -> Result<AccessPlan, ForgeError> {
    access_restore::plan_for(target.client, target.owner, doc, scope).await
}

/// Restores the metadata in `tree` (an export tree) into `target`. See the module's contracts:
/// safe to repeat (markers and the journal), append-only, paced; settings GitHub refuses are
/// skipped with the reason.
pub async fn restore_metadata(
    tree: &Path,
    target: RestoreTarget<'_>,
    opts: &RestoreOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<RestoreReport, ForgeError> {
    let start_requests = target.client.requests();
    let owned = tree.to_path_buf();
    let src = blocking(tree, move || source::Source::read(&owned)).await?;
    let (total, _) = src.count(opts);
    let journal = Journal::open(
        &opts.journal,
        opts.backup_id.as_str(),
        &format!("{}/{}", target.owner, target.name),
    )
    .await?;
    let mut engine = Engine {
        client: target.client,
        owner: target.owner,
        name: target.name,
        opts,
        journal,
        pacer: Pacer::new(opts.pace),
        report: RestoreReport::default(),
        progress,
        done: 0,
        total,
        users: BTreeMap::new(),
        labels: BTreeSet::new(),
        milestones: BTreeMap::new(),
    };
    if opts.parts.labels || opts.parts.issues {
        labels_restore::labels_and_milestones(&mut engine, &src).await?;
    }
    if opts.parts.issues {
        items::issues(&mut engine, &src).await?;
    }
    if opts.parts.releases {
        release_restore::releases(&mut engine, &src).await?;
    }
    if opts.parts.settings {
        settings_restore::settings(&mut engine, &src).await?;
    }
    engine.report.requests = target.client.requests() - start_requests;
    Ok(engine.report)
}

/// One restore's state.
pub(crate) struct Engine<'a> {
    client: &'a GitHubClient,
    owner: &'a str,
    name: &'a str,
    opts: &'a RestoreOptions,
    journal: Journal,
    pacer: Pacer,
    report: RestoreReport,
    progress: &'a (dyn Fn(Progress) + Sync),
    done: u64,
    total: u64,
    /// Login → exists (`GET /users/LOGIN`).
    users: BTreeMap<String, bool>,
    /// Label names in the target.
    labels: BTreeSet<String>,
    /// Original milestone number → the target's.
    milestones: BTreeMap<u64, u64>,
}

impl Engine<'_> {
    /// `/repos/OWNER/NAME` + `tail`.
    fn repo_path(&self, tail: &str) -> String {
        format!("/repos/{}/{}{}", self.owner, self.name, tail)
    }

    fn backup(&self) -> &str {
        self.opts.backup_id.as_str()
    }

    /// One item done (created or reused): progress.
    fn step(&mut self, phase: &'static str) {
        self.done += 1;
        let eta = self
            .opts
            .pace
            .unwrap_or(Pace::GITHUB)
            .duration_of(self.total.saturating_sub(self.done));
        (self.progress)(Progress {
            phase,
            done: self.done,
            // A target holding items the plan did not count (reused settings) may pass it.
            total: self.total.max(self.done),
            eta,
        });
    }

    fn created(&mut self, kind: &str, phase: &'static str) {
        *self.report.created.entry(kind.to_string()).or_default() += 1;
        self.step(phase);
    }

    fn reused(&mut self, kind: &str, phase: &'static str) {
        *self.report.reused.entry(kind.to_string()).or_default() += 1;
        self.step(phase);
    }

    fn skip(&mut self, item: String, reason: String) {
        self.report.skipped.push(Skipped { item, reason });
    }

    /// POST through the pacer.
    async fn post(&mut self, path: &str, body: &Value) -> Result<Value, ForgeError> {
        self.pacer.take().await;
        self.report.content_requests += 1;
        self.client.post_json(path, body).await
    }

    /// PATCH through the pacer.
    async fn patch(&mut self, path: &str, body: &Value) -> Result<Value, ForgeError> {
        self.pacer.take().await;
        self.report.content_requests += 1;
        self.client.patch_json(path, body).await
    }

    /// PUT through the pacer.
    async fn put(&mut self, path: &str, body: Option<&Value>) -> Result<Option<Value>, ForgeError> {
        self.pacer.take().await;
        self.report.content_requests += 1;
        self.client.put_json(path, body).await
    }

    /// Upload of the file at `path`, streamed, through the pacer.
    async fn upload(
        &mut self,
        url: &str,
        content_type: &str,
        path: &Path,
    ) -> Result<Value, ForgeError> {
        self.pacer.take().await;
        self.report.content_requests += 1;
        self.client.upload_file(url, content_type, path).await
    }

    /// Whether `login` is a user of the target's GitHub (cached).
    async fn user_exists(&mut self, login: &str) -> Result<bool, ForgeError> {
        if let Some(&known) = self.users.get(login) {
            return Ok(known);
        }
        let exists = match self
            .client
            .get_json(&format!("/users/{}", encode(login)), None)
            .await
        {
            Ok(_) => true,
            Err(e) if e.status() == Some(404) => false,
            Err(e) => return Err(e),
        };
        self.users.insert(login.to_string(), exists);
        Ok(exists)
    }

    /// Runs one creation; a refusal is skipped for `item`. `Ok(true)` when it was created.
    async fn attempt(
        &mut self,
        item: String,
        result: Result<Option<Value>, ForgeError>,
    ) -> Result<bool, ForgeError> {
        match result {
            Ok(_) => Ok(true),
            Err(e) if refused(&e) => {
                self.skip(item, e.to_string());
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// A [`ForgeError::Decode`] for an answer missing what GitHub documents.
fn decode(method: &str, path: &str, detail: &str) -> ForgeError {
    ForgeError::Decode {
        method: method.into(),
        path: path.into(),
        detail: detail.into(),
    }
}

/// `segment` encoded for a URL path or query.
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// A `user` object's login (`ghost` when GitHub shows none: a deleted account).
fn login(v: &Value) -> String {
    v.get("login")
        .and_then(Value::as_str)
        .unwrap_or("ghost")
        .to_string()
}

fn str_field<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get(field).and_then(Value::as_str)
}

/// Whether an error is GitHub refusing a setting (skipped with the reason) rather than a
/// failure.
fn refused(e: &ForgeError) -> bool {
    matches!(e.status(), Some(403 | 404 | 409 | 410 | 422))
}
