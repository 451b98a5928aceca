//! The forge seam: one trait, [`Forge`], for what a source provider does with a credential, and
//! one factory, [`open`], that has the provider's [`ForgeKind`](super::ForgeKind) open it.
//!
//! Callers (the worker's backup and restore tasks, the coordinator's discovery, restore checks
//! and webhooks) hold an `Arc<dyn Forge>` and never name a provider's own client: a second forge
//! is one module implementing [`Forge`] and [`ForgeKind`](super::ForgeKind) and one arm in
//! [`kind`](super::kind). The trait holds only what callers use:
//! - discovery: [`Forge::list_org_repos`], [`Forge::repo_exists`];
//! - push webhooks: [`Forge::create_push_hook`], [`Forge::delete_push_hook`];
//! - git: [`Forge::git_remote`], the authenticated remote (the token travels in a header, never
//!   in the URL);
//! - backup: [`Forge::export_metadata`] into an export tree, [`Forge::commit_count`];
//! - restore: [`Forge::target_repo`] (read, or create), [`Forge::set_default_branch`],
//!   [`Forge::plan_metadata`], [`Forge::plan_access`], [`Forge::restore_metadata`].
//!
//! Credentials come in once, at [`open`] ([`Credentials`]: whose token each request carries,
//! and the fleet's rate budget that admits it); a credential's stable id for the budget is
//! [`super::token_credential_id`].
//!
//! A provider without an API (plain git) answers [`ForgeError::Unsupported`] naming itself and
//! the operation; its failures, like every forge's, are classified by
//! [`ForgeError::class`](super::ForgeError::class).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::{BackupId, Provider};
use crate::secret::Secret;

use super::ForgeError;
use super::github::access::{AccessPlan, AccessScope};
use super::github::{
    ExportMode, ExportReport, Progress, RateGate, RemoteRepo, RestorePlan, RestoreReport,
    TokenSource,
};

/// Where a forge's API is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForgeEndpoint {
    /// REST base: `https://api.github.com` or `https://HOST/api/v3` for GitHub; empty for
    /// plain git (no API).
    pub api_url: String,
    /// A CA certificate (PEM) to trust instead of the system's roots (`--ca-cert`).
    pub ca_cert_pem: Option<String>,
}

/// The credential a forge's requests carry.
#[derive(Clone)]
pub struct Credentials {
    /// The token of every request (and of every git remote), asked afresh each time: an
    /// installation token may be replaced mid-task.
    pub tokens: Arc<dyn TokenSource>,
    /// The fleet's rate budget that admits every API request; `None`: unbudgeted (a restore
    /// target's own token, the CLI).
    pub gate: Option<Arc<dyn RateGate>>,
}

/// An authenticated git remote: the token goes in an `Authorization` header built by the git
/// layer, never into the URL, a process argument or git config.
#[derive(Debug, Clone)]
pub struct GitRemote {
    pub url: String,
    pub token: Secret,
    /// A CA certificate (PEM) to trust, when the forge has its own.
    pub ca_cert_pem: Option<String>,
}

impl GitRemote {
    /// The remote at `url` with the credentials' current token (every forge authenticates git
    /// with the same token as its API).
    pub fn with_credentials(
        url: &str,
        credentials: &Credentials,
        ca_cert_pem: Option<String>,
    ) -> Self {
        Self {
            url: url.to_string(),
            token: credentials.tokens.current(),
            ca_cert_pem,
        }
    }
}

/// A restore's target repository, as the forge describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRepo {
    /// Where git pushes to.
    pub clone_url: String,
    /// The branch the forge shows first, when it has one.
    pub default_branch: Option<String>,
    /// Where the repository's wiki is pushed, when the forge has wikis.
    pub wiki_url: Option<String>,
}

/// What a metadata restore restores, and where it keeps its journal.
#[derive(Debug, Clone)]
pub struct MetadataRequest {
    /// The backup restored (named in every header and marker the forge writes).
    pub backup_id: BackupId,
    /// Issues (with pulls, labels, milestones, attachments), releases, settings.
    pub issues: bool,
    pub releases: bool,
    pub settings: bool,
    /// Branch names the target has (after the git push): decides pull request or issue.
    pub branches_present: BTreeSet<String>,
    /// The journal file, kept by the caller across attempts of one restore.
    pub journal: PathBuf,
    /// Which access to grant (with `settings`).
    pub access: AccessScope,
}

/// The progress callback of [`Forge::restore_metadata`].
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Sync);

/// What a source provider does; see the module documentation.
#[async_trait::async_trait]
pub trait Forge: Send + Sync {
    /// Which provider this is.
    fn provider(&self) -> Provider;

    /// Every repository of organisation `org` the credential can see.
    async fn list_org_repos(&self, org: &str) -> Result<Vec<RemoteRepo>, ForgeError>;

    /// Whether `owner/name` exists, as the credential sees it.
    async fn repo_exists(&self, owner: &str, name: &str) -> Result<bool, ForgeError>;

    /// Registers a webhook on `owner/name` delivering its push events to `url`, signed with
    /// `secret`; answers the forge's id of the hook (`None` when its answer carries none).
    async fn create_push_hook(
        &self,
        owner: &str,
        name: &str,
        url: &str,
        secret: &Secret,
    ) -> Result<Option<u64>, ForgeError>;

    /// Removes webhook `id` of `owner/name`; one already gone is not an error.
    async fn delete_push_hook(&self, owner: &str, name: &str, id: u64) -> Result<(), ForgeError>;

    /// The authenticated git remote for `url` (a clone URL the forge or the lease named).
    fn git_remote(&self, url: &str) -> GitRemote;

    /// Exports `owner/name`'s metadata into the export tree `out`; `previous` is the previous
    /// backup's tree an incremental `mode` carries unchanged documents over from.
    async fn export_metadata(
        &self,
        owner: &str,
        name: &str,
        out: &Path,
        previous: Option<&Path>,
        mode: ExportMode,
    ) -> Result<ExportReport, ForgeError>;

    /// The number of commits reachable from `sha` as the forge counts them; `None` when the
    /// forge does not say.
    async fn commit_count(
        &self,
        owner: &str,
        name: &str,
        sha: &str,
    ) -> Result<Option<u64>, ForgeError>;

    /// The restore target `owner/name`: read, or, when absent and `create_from` names the
    /// backup's export tree, created with the source's description and visibility (a creation
    /// an earlier attempt made is read back). Absent and not to be created: a 404
    /// [`ForgeError::Status`].
    async fn target_repo(
        &self,
        owner: &str,
        name: &str,
        create_from: Option<&Path>,
    ) -> Result<TargetRepo, ForgeError>;

    /// Makes `branch` the default branch of `owner/name`.
    async fn set_default_branch(
        &self,
        owner: &str,
        name: &str,
        branch: &str,
    ) -> Result<(), ForgeError>;

    /// What restoring the export tree `tree` creates and how long that takes at the forge's
    /// pace. Blocking (reads files): call it on the blocking pool.
    fn plan_metadata(
        &self,
        tree: &Path,
        request: &MetadataRequest,
    ) -> Result<RestorePlan, ForgeError>;

    /// What restoring the access recorded in `tree` into `owner` grants and leaves out; `None`
    /// when the backup holds no access record.
    async fn plan_access(
        &self,
        tree: &Path,
        owner: &str,
        scope: AccessScope,
    ) -> Result<Option<AccessPlan>, ForgeError>;

    /// Restores the metadata of `tree` into `owner/name`: safe to repeat (markers and the
    /// journal), append-only, paced as the forge requires.
    async fn restore_metadata(
        &self,
        tree: &Path,
        owner: &str,
        name: &str,
        request: &MetadataRequest,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreReport, ForgeError>;
}

/// The forge of `provider` at `endpoint`, with `credentials` (its [`kind`](super::kind) opens
/// it).
pub fn open(
    provider: Provider,
    endpoint: &ForgeEndpoint,
    credentials: Credentials,
) -> Result<Arc<dyn Forge>, ForgeError> {
    super::kind(provider).open(endpoint, credentials)
}
