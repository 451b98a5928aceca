//! The seed: what the simulator holds when it starts. JSON or TOML (by file extension); every
//! part is optional. README.md beside this crate documents it with an example.
//!
//! Git history is made by the real git CLI in a scratch clone and pushed into the bare
//! repository, as a user would; issue numbers are given in seed order (pull requests and issues
//! share the sequence, issues first unless `number` says otherwise).
//!
//! Loading is all-or-nothing for the caller: an error names the seed entry it came from and the
//! simulator does not start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::Sim;
use crate::options::Options;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    pub options: Options,
    pub users: Vec<UserSeed>,
    pub orgs: Vec<OrgSeed>,
    pub apps: Vec<AppSeed>,
    /// Fine-grained personal access tokens, each reaching one organisation (or user).
    pub fine_grained_tokens: Vec<FineGrainedTokenSeed>,
}

impl Seed {
    /// Reads a seed file: `.toml` as TOML, anything else as JSON.
    pub fn from_file(path: &Path) -> anyhow::Result<Seed> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading seed {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).with_context(|| format!("parsing seed {}", path.display()))
        } else {
            serde_json::from_str(&text).with_context(|| format!("parsing seed {}", path.display()))
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserSeed {
    pub login: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub site_admin: bool,
    /// Personal access tokens of this user (one is generated for the first user when none is
    /// given anywhere).
    pub tokens: Vec<String>,
}

/// A fine-grained personal access token (GitHub's `github_pat_...`): it acts as `user`, only on
/// the repositories of `resource_owner` (see [`crate::auth`] for GitHub's rules).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineGrainedTokenSeed {
    pub token: String,
    /// The seeded user it acts as.
    pub user: String,
    /// The organisation (or user) whose repositories it reaches.
    pub resource_owner: String,
    /// Repository names of the resource owner; all of them when absent.
    pub repositories: Option<Vec<String>>,
    /// Repository and organisation permissions (`contents`, `issues`, `administration`,
    /// `members`, ...: `read` or `write`); when absent, whatever the user may do.
    pub permissions: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrgSeed {
    pub login: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// login → `admin` (owner) or `member`. The first seeded user is an owner of every
    /// organisation unless listed otherwise.
    pub members: BTreeMap<String, String>,
    /// `read` (GitHub's default), `write`, `admin` or `none`.
    pub default_repository_permission: Option<String>,
    pub teams: Vec<TeamSeed>,
    pub hooks: Vec<HookSeed>,
    pub repos: Vec<RepoSeed>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamSeed {
    pub slug: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookSeed {
    pub url: String,
    pub events: Vec<String>,
    pub secret: Option<String>,
    pub content_type: Option<String>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepoSeed {
    pub name: String,
    pub private: bool,
    pub description: Option<String>,
    pub homepage: Option<String>,
    pub default_branch: Option<String>,
    pub archived: bool,
    pub has_wiki: Option<bool>,
    pub has_issues: Option<bool>,
    pub topics: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// Commits in order, each on `branch` (default: the default branch; a new branch starts at
    /// the default branch's tip, or at `from`).
    pub commits: Vec<CommitSeed>,
    /// Lightweight or annotated tags of existing commits.
    pub tags: Vec<TagSeed>,
    /// Files stored through Git LFS: path → content; committed on the default branch as LFS
    /// pointers (with a `.gitattributes`), the objects kept by the LFS server.
    pub lfs: BTreeMap<String, String>,
    /// Wiki pages: file name (e.g. `Home.md`) → content; makes `NAME.wiki.git`.
    pub wiki: BTreeMap<String, String>,
    pub labels: Vec<LabelSeed>,
    pub milestones: Vec<MilestoneSeed>,
    pub issues: Vec<IssueSeed>,
    /// Generated issues, for pagination-sized seeds.
    pub generate: Option<GenerateSeed>,
    pub pulls: Vec<PullSeed>,
    pub releases: Vec<ReleaseSeed>,
    pub workflows: Vec<WorkflowSeed>,
    /// Branch protection by branch, in the body GitHub's `PUT .../protection` takes.
    pub protection: BTreeMap<String, Value>,
    /// Rulesets in the body GitHub's `POST .../rulesets` takes.
    pub rulesets: Vec<Value>,
    pub hooks: Vec<HookSeed>,
    pub deploy_keys: Vec<DeployKeySeed>,
    /// login → permission (`read`, `triage`, `write`, `maintain`, `admin`).
    pub collaborators: BTreeMap<String, String>,
    /// team slug → permission.
    pub teams: BTreeMap<String, String>,
    /// Files uploaded in this repository, which issue and pull request bodies (of any seeded
    /// repository) link to.
    pub attachments: Vec<AttachmentSeed>,
}

/// A file uploaded into a body ([`crate::attachments`]). Bodies of the seed link it by `url`
/// as written here; the simulator puts its own host in place of `https://github.com/` in those
/// links, as GitHub Enterprise's bodies name its own host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentSeed {
    /// `https://github.com/user-attachments/assets/UUID` or
    /// `https://github.com/OWNER/REPO/assets/ID/UUID` (OWNER/REPO: this repository).
    pub url: String,
    /// Default `application/octet-stream`.
    pub content_type: Option<String>,
    /// Text content; or `size` bytes of deterministic pseudo-random data.
    pub content: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommitSeed {
    pub message: String,
    pub branch: Option<String>,
    /// Where a new branch starts (a branch or commit); default: the default branch.
    pub from: Option<String>,
    /// path → content (written), path → null (deleted).
    pub files: BTreeMap<String, Option<String>>,
    pub author: Option<String>,
    pub date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagSeed {
    pub name: String,
    /// A branch or commit; default: the default branch.
    pub target: Option<String>,
    /// An annotated tag's message (lightweight without).
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelSeed {
    pub name: String,
    pub color: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MilestoneSeed {
    pub title: String,
    pub description: Option<String>,
    pub state: Option<String>,
    pub due_on: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommentSeed {
    pub user: Option<String>,
    pub body: String,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssueSeed {
    pub number: Option<u64>,
    pub title: String,
    pub body: Option<String>,
    pub user: Option<String>,
    /// `open` (default) or `closed`.
    pub state: Option<String>,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    /// A milestone's title.
    pub milestone: Option<String>,
    pub assignees: Vec<String>,
    pub locked: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub comments: Vec<CommentSeed>,
    /// Generated comments after `comments` (for pagination: more than 100 on one issue).
    pub generate_comments: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateSeed {
    /// This many more issues titled `Generated issue N`, each with `comments_each` comments.
    pub issues: u64,
    pub comments_each: u64,
    /// Every `closed_every`-th generated issue is closed (0: none).
    pub closed_every: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewCommentSeed {
    pub user: Option<String>,
    pub path: String,
    pub line: Option<u64>,
    pub body: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewSeed {
    pub user: Option<String>,
    /// `APPROVED`, `CHANGES_REQUESTED` or `COMMENTED`.
    pub state: String,
    pub body: Option<String>,
    pub comments: Vec<ReviewCommentSeed>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PullSeed {
    pub number: Option<u64>,
    pub title: String,
    pub body: Option<String>,
    pub user: Option<String>,
    /// The head branch (must exist: make it with `commits`).
    pub head: String,
    /// Default: the default branch.
    pub base: Option<String>,
    /// `open` (default) or `closed`.
    pub state: Option<String>,
    /// Merged pull requests are closed with `merged_at` set; the head is merged into the base
    /// with a merge commit.
    pub merged: bool,
    pub draft: bool,
    pub labels: Vec<String>,
    pub milestone: Option<String>,
    pub assignees: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub comments: Vec<CommentSeed>,
    pub reviews: Vec<ReviewSeed>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssetSeed {
    pub name: String,
    pub label: Option<String>,
    pub content_type: Option<String>,
    /// Text content; or `size` bytes of deterministic pseudo-random data.
    pub content: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReleaseSeed {
    pub tag: String,
    /// Where the tag is made if it does not exist; default: the default branch.
    pub target: Option<String>,
    pub name: Option<String>,
    pub body: Option<String>,
    pub draft: bool,
    pub prerelease: bool,
    pub user: Option<String>,
    pub assets: Vec<AssetSeed>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkflowSeed {
    pub name: String,
    /// `.github/workflows/ci.yml`; the file is committed on the default branch when `content` is
    /// given.
    pub path: String,
    pub content: Option<String>,
    /// `active` (default), `disabled_manually`, ...
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployKeySeed {
    pub title: String,
    pub key: String,
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSeed {
    pub slug: String,
    pub name: Option<String>,
    /// The account that owns the app (default: the first organisation).
    pub owner: Option<String>,
    /// Default permissions of its installations.
    pub permissions: BTreeMap<String, String>,
    pub events: Vec<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// A PEM private key file to use (PKCS#1 or PKCS#8 RSA); generated when absent.
    pub private_key_file: Option<PathBuf>,
    pub installations: Vec<InstallationSeed>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstallationSeed {
    pub account: String,
    /// Repository names; all of the account's when absent.
    pub repositories: Option<Vec<String>>,
    /// Default: the app's permissions.
    pub permissions: Option<BTreeMap<String, String>>,
}

/// What the ready line reports about the loaded seed.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub token: String,
    pub app_id: Option<u64>,
    pub installation_id: Option<u64>,
    pub app_private_key: Option<PathBuf>,
}

/// Loads `seed` into `sim` (whose world is empty).
pub fn load(sim: &Sim, seed: &Seed) -> anyhow::Result<Loaded> {
    crate::seeding::load(sim, seed)
}

/// Validates a name the way GitHub does for logins and repository names.
pub fn check_name(kind: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("{kind} {name:?}: only letters, digits, '-', '_' and '.' are allowed (1 to 100)");
    }
    Ok(())
}

/// What one seeded repository holds, by kind, counted the way a backup counts it: issues
/// without pull requests; comments are conversation comments of issues and pull requests plus
/// review comments; wiki pages are files of the wiki; LFS objects are distinct contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedCounts {
    pub issues: u64,
    pub pulls: u64,
    pub comments: u64,
    pub reviews: u64,
    pub releases: u64,
    pub release_assets: u64,
    pub labels: u64,
    pub milestones: u64,
    pub workflows: u64,
    pub wiki_pages: u64,
    pub lfs_objects: u64,
    /// Distinct seeded attachments the repository's bodies link to: `user-attachments` links
    /// wherever they were uploaded, `/OWNER/REPO/assets/` links of this repository only (a
    /// backup of one repository keeps those).
    pub attachments: u64,
}

impl Seed {
    /// The counts of `org/repo` as seeded; `None` when the seed has no such repository.
    pub fn counts(&self, org: &str, repo: &str) -> Option<SeedCounts> {
        let r = self
            .orgs
            .iter()
            .find(|o| o.login == org)?
            .repos
            .iter()
            .find(|r| r.name == repo)?;
        let mut c = SeedCounts::default();
        for issue in &r.issues {
            c.issues += 1;
            c.comments += issue.comments.len() as u64 + issue.generate_comments;
        }
        if let Some(g) = &r.generate {
            c.issues += g.issues;
            c.comments += g.issues * g.comments_each;
        }
        for pull in &r.pulls {
            c.pulls += 1;
            c.comments += pull.comments.len() as u64;
            for review in &pull.reviews {
                c.reviews += 1;
                c.comments += review.comments.len() as u64;
            }
        }
        for release in &r.releases {
            c.releases += 1;
            c.release_assets += release.assets.len() as u64;
        }
        c.labels = r.labels.len() as u64;
        c.milestones = r.milestones.len() as u64;
        c.workflows = r.workflows.len() as u64;
        c.wiki_pages = r.wiki.len() as u64;
        c.lfs_objects = r
            .lfs
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        c.attachments = crate::attachments::linked_from(self, org, r);
        Some(c)
    }
}
