//! GitHub and GitHub Enterprise, behind the forge seam: [`GitHubKind`] (what GitHub is before a
//! request: its default API, credential checks, App installation tokens, the budgeted `core`
//! limit) and [`GitHubForge`] (what it does with a credential). Code outside the forge layer
//! reaches GitHub only through those two traits.
//!
//! # The module's own API (the seam's implementations and the forge layer's tests call these)
//!
//! ```ignore
//! pub struct GitHubEndpoint { pub api_url: String, pub ca_cert_pem: Option<String> }
//! impl GitHubClient {
//!     pub fn new(endpoint: &GitHubEndpoint, token: Secret) -> Result<GitHubClient, ForgeError>;
//!     pub fn with_token_source(endpoint: &GitHubEndpoint, tokens: Arc<dyn TokenSource>)
//!         -> Result<GitHubClient, ForgeError>;
//!     pub fn with_gate(self, gate: Arc<dyn RateGate>) -> GitHubClient;
//!     pub fn with_observer(self, observer: Arc<dyn RateObserver>) -> GitHubClient;
//!     pub async fn get_json(&self, path_and_query: &str, if_none_match: Option<&str>)
//!         -> Result<Page, ForgeError>;
//!     pub async fn get_all(&self, path: &str) -> Result<Vec<serde_json::Value>, ForgeError>;
//!     pub async fn get_list(&self, path: &str, if_none_match: Option<&str>)
//!         -> Result<Listing, ForgeError>;
//!     pub async fn download(&self, url: &str, dest: &Path) -> Result<Downloaded, ForgeError>;
//!     pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ForgeError>;
//!     pub async fn patch_json(&self, path: &str, body: &Value) -> Result<Value, ForgeError>;
//!     pub async fn put_json(&self, path: &str, body: Option<&Value>)
//!         -> Result<Option<Value>, ForgeError>;
//!     pub async fn delete(&self, path: &str) -> Result<(), ForgeError>;
//!     pub async fn upload_file(&self, url: &str, content_type: &str, path: &Path)
//!         -> Result<Value, ForgeError>;
//!     pub fn requests(&self) -> u64;
//! }
//! pub async fn mint_installation_token(endpoint: &GitHubEndpoint, app_id: u64,
//!     private_key_pem: &Secret, installation_id: u64)
//!     -> Result<(Secret, chrono::DateTime<Utc>), ForgeError>;
//! pub async fn list_org_repos(client: &GitHubClient, org: &str)
//!     -> Result<Vec<RemoteRepo>, ForgeError>;
//! pub struct RemoteRepo { pub id: u64, pub name: String, pub full_name: String,
//!     pub private: bool, pub archived: bool, pub default_branch: Option<String>,
//!     pub has_wiki: bool, pub clone_url: String, pub size_kib: u64,
//!     pub pushed_at: Option<DateTime<Utc>> }
//! pub trait RateObserver: Send + Sync {
//!     fn observe(&self, snapshot: &RateSnapshot);
//!     fn pause_until(&self) -> Option<DateTime<Utc>> { None }
//!     fn limited(&self, until: DateTime<Utc>, secondary: bool) {}
//! }
//! #[async_trait] pub trait RateGate: Send + Sync {
//!     async fn admit(&self) -> Result<Admission, ForgeError>;
//!     fn observe(&self, snapshot: &RateSnapshot);
//!     async fn limited(&self, until: DateTime<Utc>, secondary: bool);
//! }
//! #[async_trait] pub trait TokenSource: Send + Sync {
//!     fn current(&self) -> Secret;
//!     async fn refresh(&self, rejected: &Secret) -> Option<Secret>;
//! }
//! pub struct RateSnapshot { pub limit: u64, pub remaining: u64, pub reset: i64,
//!     pub used: u64, pub resource: String }
//! pub async fn export_repo(client: &GitHubClient, owner: &str, name: &str, out: &Path,
//!     previous: Option<&Path>, mode: ExportMode) -> Result<ExportReport, ForgeError>;
//! pub async fn commit_count(client: &GitHubClient, owner: &str, repo: &str, sha: &str)
//!     -> Result<Option<u64>, ForgeError>;
//! pub fn plan(tree: &Path, opts: &RestoreOptions) -> Result<RestorePlan, ForgeError>;
//! pub fn read_access(tree: &Path) -> Result<Option<AccessDoc>, ForgeError>;
//! pub async fn plan_access(doc: &AccessDoc, target: RestoreTarget<'_>, scope: AccessScope)
//!     -> Result<AccessPlan, ForgeError>;
//! pub async fn restore_metadata(tree: &Path, target: RestoreTarget<'_>, opts: &RestoreOptions,
//!     progress: &(dyn Fn(Progress) + Sync)) -> Result<RestoreReport, ForgeError>;
//! ```
//!
//! Credentials: a personal token or an installation token, always a plain bearer token
//! ([`Secret`](crate::secret::Secret)); installation tokens come from
//! [`mint_installation_token`] (octocrab's own App auth is not used: it drops the token on the
//! absolute `Link` URLs of a GitHub Enterprise base).

pub mod access;
pub mod app;
mod blocking;
pub mod commits;
pub mod rest_client;

pub mod export;
mod github_forge;
mod github_kind;
mod pagination;
pub mod rate;
mod refusal;
pub mod repos;
pub mod restore;
mod token_hosts;
pub mod transfer;
mod transport;

pub use crate::forge::ForgeError;
pub use app::{app_jwt, check_app_private_key, mint_installation_token};
pub use commits::commit_count;
pub use export::{ComponentStatus, Counts, Cursors, ExportMode, ExportReport, export_repo};
pub use github_forge::GitHubForge;
pub use github_kind::{DEFAULT_API_URL, GitHubKind};
pub use rest_client::{GitHubClient, GitHubEndpoint, Listing, Page};

pub use rate::{
    Admission, RateGate, RateObserver, RateSnapshot, StaticToken, TokenSource, app_credential_id,
    token_credential_id,
};
pub use repos::{RemoteRepo, list_org_repos};
pub use restore::{
    Converted, Pace, Parts, Progress, RestoreOptions, RestorePlan, RestoreReport, RestoreTarget,
    Skipped, plan, plan_access, read_access, restore_metadata,
};
pub use transfer::Downloaded;
