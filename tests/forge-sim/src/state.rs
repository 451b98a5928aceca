//! The simulator's world: users, organisations, repositories and everything GitHub keeps for
//! them, plus credentials (tokens, apps, installations).
//!
//! One `World` sits behind one mutex ([`crate::Sim::world`]). Handlers take the lock, read or
//! change, and drop it before any I/O (git processes, webhook deliveries), so a request never
//! observes a half-applied change.
//!
//! Ids come from one counter (`World::next_id`), as on GitHub where ids of different kinds never
//! need to be told apart by value. Issue and pull request numbers share one counter per
//! repository, as on GitHub.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// What kind of account a login names (`type` in GitHub's `simple-user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    User,
    Organization,
    Bot,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "User",
            AccountKind::Organization => "Organization",
            AccountKind::Bot => "Bot",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: u64,
    pub login: String,
    pub kind: AccountKind,
    pub name: Option<String>,
    pub email: Option<String>,
    pub site_admin: bool,
    pub created_at: DateTime<Utc>,
}

/// An organisation member's role (`admin` owners can do everything on every repository).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrgRole {
    Member,
    Admin,
}

#[derive(Debug, Clone)]
pub struct Org {
    pub login: String,
    pub description: Option<String>,
    pub members: BTreeMap<String, OrgRole>,
    /// `read`, `write`, `admin` or `none`: what members get on every repository.
    pub default_repository_permission: Permission,
    pub teams: BTreeMap<String, Team>,
    pub hooks: BTreeMap<u64, Hook>,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub privacy: String,
    pub members: BTreeSet<String>,
}

/// Repository permission levels, ordered so that `>=` answers "may this principal do X".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    pub fn parse(s: &str) -> Option<Permission> {
        Some(match s {
            "none" => Permission::None,
            "read" | "pull" => Permission::Read,
            "triage" => Permission::Triage,
            "write" | "push" => Permission::Write,
            "maintain" => Permission::Maintain,
            "admin" => Permission::Admin,
            _ => return None,
        })
    }

    /// GitHub's name in `permission` fields (`pull`/`push` are the legacy spellings).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Triage => "triage",
            Permission::Write => "write",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        }
    }
}

/// A webhook on a repository or an organisation. `secret` is write-only: GitHub never returns it.
#[derive(Debug, Clone)]
pub struct Hook {
    pub id: u64,
    pub name: String,
    pub active: bool,
    pub events: Vec<String>,
    pub url: String,
    pub content_type: String,
    pub insecure_ssl: String,
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Deliveries attempted, for tests: (event, HTTP status or 0 when the connection failed).
    pub deliveries: Vec<(String, u16)>,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub archived: bool,
    pub disabled: bool,
    /// Deleted after it was listed: every route answers 404.
    pub deleted: bool,
    /// Blocked for legal reasons: every route answers 451.
    pub blocked: bool,
    pub description: Option<String>,
    pub homepage: Option<String>,
    pub default_branch: String,
    pub has_issues: bool,
    pub has_projects: bool,
    pub has_wiki: bool,
    pub has_discussions: bool,
    pub topics: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub pushed_at: DateTime<Utc>,
    /// The bare repository that git smart HTTP serves.
    pub git_dir: PathBuf,
    /// `<name>.wiki.git`; created on the first wiki page, as GitHub does.
    pub wiki_dir: PathBuf,
    /// Issue and pull request numbers share one sequence.
    pub next_number: u64,
    pub issues: BTreeMap<u64, Issue>,
    /// Issue and pull request conversation comments, by id.
    pub comments: BTreeMap<u64, Comment>,
    pub reviews: BTreeMap<u64, Review>,
    pub review_comments: BTreeMap<u64, ReviewComment>,
    /// Issue events (closed, labeled, ...), by id, oldest first.
    pub events: BTreeMap<u64, IssueEvent>,
    pub releases: BTreeMap<u64, Release>,
    /// Labels by name (GitHub matches label names case-insensitively; the key is the name as
    /// created, lookups go through [`Repo::label`]).
    pub labels: BTreeMap<String, Label>,
    pub milestones: BTreeMap<u64, Milestone>,
    pub workflows: BTreeMap<u64, Workflow>,
    /// Branch protection as GitHub returns it, by branch name.
    pub protections: BTreeMap<String, Value>,
    pub rulesets: BTreeMap<u64, Value>,
    pub hooks: BTreeMap<u64, Hook>,
    pub deploy_keys: BTreeMap<u64, DeployKey>,
    pub collaborators: BTreeMap<String, Permission>,
    /// Team slug → permission.
    pub teams: BTreeMap<String, Permission>,
    /// LFS objects by oid (sha256 hex); the bytes live in `lfs_dir`.
    pub lfs: BTreeMap<String, u64>,
    pub lfs_dir: PathBuf,
    /// Monotonic change counter: bumps on every write to the repository, so ETags of list
    /// responses change when anything under the repository changes.
    pub version: u64,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn label(&self, name: &str) -> Option<&Label> {
        self.labels
            .values()
            .find(|l| l.name.eq_ignore_ascii_case(name))
    }

    pub fn visibility(&self) -> &'static str {
        if self.private { "private" } else { "public" }
    }
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub user: String,
    /// `open` or `closed`.
    pub state: String,
    /// `completed`, `not_planned`, `reopened` or none.
    pub state_reason: Option<String>,
    pub locked: bool,
    pub active_lock_reason: Option<String>,
    pub labels: Vec<String>,
    pub milestone: Option<u64>,
    pub assignees: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    /// Present when this number is a pull request.
    pub pull: Option<Pull>,
}

impl Issue {
    /// A new open issue (or pull request, with `pull`), unlocked, without labels, milestone or
    /// assignees, created and updated at `at`.
    pub fn open(
        id: u64,
        number: u64,
        title: String,
        body: Option<String>,
        user: String,
        at: DateTime<Utc>,
        pull: Option<Pull>,
    ) -> Issue {
        Issue {
            id,
            number,
            title,
            body,
            user,
            state: "open".into(),
            state_reason: None,
            locked: false,
            active_lock_reason: None,
            labels: Vec::new(),
            milestone: None,
            assignees: Vec::new(),
            created_at: at,
            updated_at: at,
            closed_at: None,
            closed_by: None,
            pull,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub id: u64,
    pub head_ref: String,
    pub head_sha: String,
    /// `owner/name` of the head repository (the same repository unless from a fork).
    pub head_repo: Option<u64>,
    pub base_ref: String,
    pub base_sha: String,
    pub draft: bool,
    pub merged: bool,
    pub merged_at: Option<DateTime<Utc>>,
    pub merged_by: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub maintainer_can_modify: bool,
    pub requested_reviewers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue_number: u64,
    pub user: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Review {
    pub id: u64,
    pub pull_number: u64,
    pub user: String,
    pub body: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `PENDING`, `DISMISSED`.
    pub state: String,
    pub commit_id: String,
    pub submitted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ReviewComment {
    pub id: u64,
    pub pull_number: u64,
    pub review_id: Option<u64>,
    pub in_reply_to_id: Option<u64>,
    pub user: String,
    pub body: String,
    pub path: String,
    pub line: Option<u64>,
    pub side: String,
    pub commit_id: String,
    pub diff_hunk: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct IssueEvent {
    pub id: u64,
    pub issue_number: u64,
    pub actor: String,
    /// `closed`, `reopened`, `labeled`, `unlabeled`, `milestoned`, `assigned`, `locked`,
    /// `merged`, `renamed`, `referenced`, ...
    pub event: String,
    pub commit_id: Option<String>,
    /// Extra fields of the event (`label`, `milestone`, `rename`, `assignee`...), merged into
    /// the rendered event.
    pub extra: serde_json::Map<String, Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub id: u64,
    pub tag_name: String,
    pub target_commitish: String,
    pub name: Option<String>,
    pub body: Option<String>,
    pub draft: bool,
    pub prerelease: bool,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub assets: BTreeMap<u64, Asset>,
}

#[derive(Debug, Clone)]
pub struct Asset {
    pub id: u64,
    pub name: String,
    pub label: Option<String>,
    pub content_type: String,
    pub uploader: String,
    pub data: bytes::Bytes,
    pub download_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub id: u64,
    pub name: String,
    /// Six hex digits, without `#`.
    pub color: String,
    pub description: Option<String>,
    pub default: bool,
}

#[derive(Debug, Clone)]
pub struct Milestone {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub description: Option<String>,
    pub state: String,
    pub creator: String,
    pub due_on: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: u64,
    pub name: String,
    /// `.github/workflows/ci.yml`.
    pub path: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct DeployKey {
    pub id: u64,
    pub key: String,
    pub title: String,
    pub read_only: bool,
    pub created_at: DateTime<Utc>,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(String),
    /// A GitHub App installation token.
    Installation(u64),
    /// A GitHub App authenticated by its JWT (only `/app/...` routes accept it).
    App(u64),
}

#[derive(Debug, Clone)]
pub struct Token {
    pub principal: Principal,
    pub expires_at: Option<DateTime<Utc>>,
    /// For installation tokens: the repositories (ids) and permissions it was minted with, which
    /// may be narrower than the installation's.
    pub repositories: Option<BTreeSet<u64>>,
    pub permissions: Option<BTreeMap<String, String>>,
    /// For a fine-grained personal access token: the one account (organisation or user) whose
    /// repositories it reaches, as GitHub scopes those tokens; `repositories` and `permissions`
    /// then narrow it further. `None` for classic and installation tokens.
    pub resource_owner: Option<String>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub owner: String,
    /// PEM of the public key the app's JWTs are verified with.
    pub public_key_pem: String,
    /// Where the app's webhook deliveries go, and their secret.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub events: Vec<String>,
    pub permissions: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Installation {
    pub id: u64,
    pub app_id: u64,
    /// The organisation (or user) it is installed on.
    pub account: String,
    /// `None`: all repositories of the account; else the selected repository ids.
    pub repositories: Option<BTreeSet<u64>>,
    /// e.g. `contents: read`, `issues: write`, `administration: read`, `metadata: read`.
    pub permissions: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// Everything the simulator holds.
#[derive(Debug, Default)]
pub struct World {
    pub next_id: u64,
    pub accounts: BTreeMap<String, Account>,
    pub orgs: BTreeMap<String, Org>,
    pub repos: BTreeMap<u64, Repo>,
    /// Old `owner/name` (lowercase) → repository id, for 301s after a rename.
    pub renamed: BTreeMap<String, u64>,
    pub tokens: BTreeMap<String, Token>,
    pub apps: BTreeMap<u64, App>,
    pub installations: BTreeMap<u64, Installation>,
    /// Pending invitations to collaborate on a repository, by id.
    pub repo_invitations: BTreeMap<u64, RepoInvitation>,
    /// Files uploaded into issue and pull request bodies, by their UUID (lowercase).
    pub attachments: BTreeMap<String, Attachment>,
}

/// A file uploaded into an issue or pull request body ([`crate::attachments`]). It belongs to
/// the repository it was uploaded in, whose readers alone may fetch it when it is private.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub uuid: String,
    pub repo: u64,
    /// `None`: GitHub's `/user-attachments/assets/UUID` form; `Some(id)`: the older
    /// `/OWNER/REPO/assets/ID/UUID` form (`ID` is the uploader's account id on GitHub).
    pub repo_asset_id: Option<u64>,
    pub content_type: String,
    pub data: bytes::Bytes,
}

/// An invitation to collaborate on a repository, pending until the invitee accepts it.
#[derive(Debug, Clone)]
pub struct RepoInvitation {
    pub id: u64,
    pub repo: u64,
    pub invitee: String,
    pub inviter: String,
    pub permission: Permission,
    pub created_at: DateTime<Utc>,
}

impl World {
    pub fn new() -> World {
        World {
            // Ids start high enough to look like GitHub's and never collide with small numbers
            // a test may use for issue numbers.
            next_id: 1_000_000,
            ..World::default()
        }
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The live (not deleted) repository named `owner/name`, case-insensitively as GitHub
    /// resolves names.
    pub fn repo_id(&self, owner: &str, name: &str) -> Option<u64> {
        self.repos
            .values()
            .find(|r| {
                !r.deleted
                    && r.owner.eq_ignore_ascii_case(owner)
                    && r.name.eq_ignore_ascii_case(name)
            })
            .map(|r| r.id)
    }

    pub fn account(&self, login: &str) -> Option<&Account> {
        self.accounts
            .values()
            .find(|a| a.login.eq_ignore_ascii_case(login))
    }

    pub fn org(&self, login: &str) -> Option<&Org> {
        self.orgs
            .values()
            .find(|o| o.login.eq_ignore_ascii_case(login))
    }

    pub fn org_mut(&mut self, login: &str) -> Option<&mut Org> {
        self.orgs
            .values_mut()
            .find(|o| o.login.eq_ignore_ascii_case(login))
    }

    /// A user's effective permission on a repository: organisation owners are admins, members get
    /// the organisation's default, collaborators and teams add theirs; the highest wins.
    pub fn user_permission(&self, login: &str, repo: &Repo) -> Permission {
        if repo.owner.eq_ignore_ascii_case(login) {
            return Permission::Admin;
        }
        if self.account(login).is_some_and(|a| a.site_admin) {
            return Permission::Admin;
        }
        let mut best = if repo.private {
            Permission::None
        } else {
            Permission::Read
        };
        if let Some(org) = self.org(&repo.owner) {
            match org.members.get(login) {
                Some(OrgRole::Admin) => return Permission::Admin,
                Some(OrgRole::Member) => best = best.max(org.default_repository_permission),
                None => {}
            }
            for (slug, perm) in &repo.teams {
                if org
                    .teams
                    .get(slug)
                    .is_some_and(|t| t.members.contains(login))
                {
                    best = best.max(*perm);
                }
            }
        }
        if let Some(p) = repo.collaborators.get(login) {
            best = best.max(*p);
        }
        best
    }
}
