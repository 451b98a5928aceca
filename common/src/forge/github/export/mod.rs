//! Export of one repository's metadata into a directory tree: the `meta/`, `releases/` and
//! `attachments/` parts of a snapshot ([`crate::manifest`]).
//!
//! Layout under `out`:
//!
//! ```text
//! meta/repo.json
//! meta/issues/<number / 100>/<number>.json   {"issue", "comments", "events"}
//! meta/pulls/<number / 100>/<number>.json    {"pull", "comments", "reviews", "review_comments"}
//! meta/releases/<id>.json                    the release (with its assets' metadata)
//! releases/<id>/<asset name>                 asset bytes (streamed in: see export_store::Tree::download)
//! meta/labels.json, meta/milestones.json, meta/workflows.json
//! meta/settings/{branch_protection,rulesets,hooks,deploy_keys}.json
//! meta/settings/{collaborators,collaborators_direct,collaborators_outside,teams}.json
//! meta/settings/access.json                  who has access and how (forge::github::access)
//! meta/attachments.json                      url → {sha256, size} or {error}
//! attachments/<sha256>                       attachment bytes
//! ```
//!
//! Every JSON file has sorted keys; item files carry the item's latest `updated_at` as mtime,
//! aggregate files a fixed epoch ([`export_store::AGGREGATE_MTIME_SECS`]); so re-exporting unchanged
//! data gives byte- and mtime-identical files (one changed issue changes one small tree node).
//!
//! Each component (`issues`, `pulls`, `releases`, `attachments`, `workflows`, `labels`,
//! `milestones`, `settings`) ends `included`, `skipped` (GitHub refused: 403/404/410, with the
//! permission the token lacks) or `failed` (with the error); one component's failure never
//! stops the others. Only the repository itself being unreadable (`GET /repos/O/R` failing)
//! fails the whole export.

mod attachments;
mod counts;
mod issues;
mod lists;
pub(crate) mod release_export;
/// Where a release asset is stored: `releases/<release id>/<asset_file_name(name)>`.
pub use release_export::file_name as asset_file_name;
pub mod export_store;
mod settings_export;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::blocking::blocking;
use super::rest_client::GitHubClient;
use crate::domain::ComponentState;
use crate::forge::ForgeError;
use export_store::{Conditional, Tree};

/// How much to re-read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportMode {
    /// Everything re-read without cursors or ETags.
    Full,
    /// Only what changed since `cursors` (from the previous export's [`ExportReport::cursors`]);
    /// unchanged documents are carried over from `previous`. Without a previous tree this is a
    /// full export.
    Incremental { cursors: Cursors },
}

/// Where an incremental export resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors {
    /// Kind (`issues`: issues, pull requests, their comments and review comments) → the
    /// server's time (RFC 3339, from the `Date` of the export's first answer; our clock only if
    /// GitHub sent none) when the export that wrote them began. Absent when issues or pulls
    /// failed, so the next incremental re-reads them whole.
    pub since: BTreeMap<String, String>,
    /// What a document was read from (`labels`, `settings/hooks`, ...) → its ETag.
    pub etags: BTreeMap<String, String>,
}

/// One component's outcome: the snapshot manifest's own type, so the export's statuses are
/// recorded as they are.
pub use crate::manifest::ComponentStatus;

/// What the exported tree holds (the whole tree, carried-over documents included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Issues, without pull requests.
    pub issues: u64,
    pub pulls: u64,
    /// Conversation comments of issues and pull requests, and review comments.
    pub comments: u64,
    pub reviews: u64,
    pub releases: u64,
    pub release_assets: u64,
    pub labels: u64,
    pub milestones: u64,
    pub workflows: u64,
    /// Attachments fetched (bytes held).
    pub attachments: u64,
}

/// The outcome of [`export_repo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReport {
    pub components: BTreeMap<String, ComponentStatus>,
    pub counts: Counts,
    /// For the next incremental export.
    pub cursors: Cursors,
    /// HTTP requests sent by this export (through `client`; retries included).
    pub requests: u64,
}

/// What one component export needs.
pub(crate) struct Ctx<'a> {
    pub client: &'a GitHubClient,
    pub owner: &'a str,
    pub name: &'a str,
    pub tree: Tree,
    pub cond: Conditional,
    /// Carry-over is possible (incremental mode and a previous tree).
    pub incremental: bool,
    pub cursors_in: Cursors,
    /// The server's time when this export began (RFC 3339): the next `since` cursor.
    pub started: Option<String>,
}

impl Ctx<'_> {
    /// `/repos/OWNER/NAME` + `tail`.
    pub fn repo_path(&self, tail: &str) -> String {
        format!("/repos/{}/{}{}", self.owner, self.name, tail)
    }

    /// A document that is one GET (`list`: a whole list), conditionally: carried over from the
    /// previous tree on 304, else `shape`d and written with the aggregate mtime.
    pub async fn aggregate(
        &mut self,
        key: &str,
        rel: &str,
        path: &str,
        list: bool,
        shape: fn(serde_json::Value) -> serde_json::Value,
    ) -> Result<(), ForgeError> {
        if self.tree.previous_file(rel).await.is_none() {
            self.cond.forget(key);
        }
        let fetched = if list {
            match self.cond.list(self.client, key, path).await? {
                export_store::Fetched::Fresh(items) => {
                    export_store::Fetched::Fresh(serde_json::Value::Array(items))
                }
                export_store::Fetched::Unchanged => export_store::Fetched::Unchanged,
            }
        } else {
            self.cond.get(self.client, key, path).await?
        };
        match fetched {
            export_store::Fetched::Fresh(v) => {
                self.tree
                    .write_json(rel, shape(v), export_store::aggregate_mtime())
                    .await?;
            }
            export_store::Fetched::Unchanged => {
                self.tree.carry_over(rel).await?;
            }
        }
        Ok(())
    }
}

/// The outcome of one component, as a status.
pub(crate) fn classify(result: Result<(), ForgeError>, permission: &str) -> ComponentStatus {
    match result {
        Ok(()) => ComponentStatus::included(None),
        Err(e) => match refusal(&e, permission) {
            Some(reason) => ComponentStatus::skipped(reason),
            None => ComponentStatus::failed(e.to_string()),
        },
    }
}

/// "token lacks PERMISSION (GET PATH answered STATUS)" when `e` is GitHub refusing access.
pub(crate) fn refusal(e: &ForgeError, permission: &str) -> Option<String> {
    match e {
        ForgeError::Status {
            method,
            path,
            status: status @ (401 | 403 | 404 | 410),
            message,
            ..
        } => Some(format!(
            "token lacks {permission} ({method} {path} answered {status}: {message})"
        )),
        _ => None,
    }
}

/// Exports `owner/name` into `out` (created if missing; should be empty). `previous` is the
/// previous backup's export tree, used by [`ExportMode::Incremental`] to carry over unchanged
/// documents. Fails only when the repository itself cannot be read; every component's own
/// failure is reported in [`ExportReport::components`].
pub async fn export_repo(
    client: &GitHubClient,
    owner: &str,
    name: &str,
    out: &Path,
    previous: Option<&Path>,
    mode: ExportMode,
) -> Result<ExportReport, ForgeError> {
    let start_requests = client.requests();
    tokio::fs::create_dir_all(out)
        .await
        .map_err(|e| ForgeError::io(out, e))?;
    let (incremental, cursors_in) = match (mode, previous) {
        (ExportMode::Incremental { cursors }, Some(_)) => (true, cursors),
        _ => (false, Cursors::default()),
    };
    let mut ctx = Ctx {
        client,
        owner,
        name,
        tree: Tree {
            out: out.to_path_buf(),
            previous: previous.filter(|_| incremental).map(Path::to_path_buf),
        },
        cond: Conditional {
            old: if incremental {
                cursors_in.etags.clone()
            } else {
                BTreeMap::new()
            },
            new: BTreeMap::new(),
        },
        incremental,
        cursors_in,
        started: None,
    };

    // The repository itself: its failure (404, 451, ...) fails the export. The answer's `Date`
    // is the server's time at the start: the next `since` cursor.
    let started: DateTime<Utc> = lists::repo(&mut ctx).await?;
    ctx.started = Some(started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));

    let mut components = BTreeMap::new();
    let (issues_status, pulls_status) = issues::export(&mut ctx).await;
    components.insert("issues".to_string(), issues_status);
    components.insert("pulls".to_string(), pulls_status);
    components.insert(
        "releases".to_string(),
        release_export::export(&mut ctx).await,
    );
    for (component, status) in lists::export(&mut ctx).await {
        components.insert(component.to_string(), status);
    }
    components.insert(
        "settings".to_string(),
        settings_export::export(&mut ctx).await,
    );
    components.insert(
        "attachments".to_string(),
        attachments::export(&mut ctx).await,
    );

    // Downloads are renamed into place once whole; what an interrupted one left goes now.
    ctx.tree.remove_partial().await?;
    let tree = out.to_path_buf();
    let counts = blocking(out, move || Ok(counts::count(&tree))).await?;
    let mut since = BTreeMap::new();
    if components["issues"].status != ComponentState::Failed
        && components["pulls"].status != ComponentState::Failed
    {
        since.insert(
            "issues".to_string(),
            ctx.started.clone().unwrap_or_default(),
        );
    }
    Ok(ExportReport {
        components,
        counts,
        cursors: Cursors {
            since,
            etags: ctx.cond.new,
        },
        requests: client.requests() - start_requests,
    })
}
