//! Plain git: any git server, reached by URL. It has no API, so every operation but the git
//! remote answers [`ForgeError::Unsupported`] naming "plain git" and the operation, and the
//! commit count is "the forge does not say" (`None`), which the backup's check already
//! handles by comparing tips alone.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::Provider;
use crate::secret::Secret;

use super::ForgeError;
use super::github::access::{AccessPlan, AccessScope};
use super::github::{ExportMode, ExportReport, RemoteRepo, RestorePlan, RestoreReport};
use super::kind::{AppInstallation, ForgeCredential, ForgeKind};
use super::seam::{
    Credentials, Forge, ForgeEndpoint, GitRemote, MetadataRequest, ProgressFn, TargetRepo,
};

/// How plain git is named in its errors.
pub const PLAIN_GIT: &str = "plain git";

/// Plain git as a [`ForgeKind`]: no API, hence no default API URL, no organisation credential,
/// no App installations and no rate limit of its own.
pub struct PlainGitKind;

#[async_trait::async_trait]
impl ForgeKind for PlainGitKind {
    fn provider(&self) -> Provider {
        Provider::Git
    }

    fn name(&self) -> &'static str {
        PLAIN_GIT
    }

    fn default_api_url(&self) -> Option<&'static str> {
        None
    }

    fn check_credential(&self, _credential: &ForgeCredential) -> Result<(), String> {
        Err(format!(
            "{PLAIN_GIT} takes no organisation credential (a repository's own token is given with `repo add`)"
        ))
    }

    async fn mint_installation_token(
        &self,
        _endpoint: &ForgeEndpoint,
        _app: &AppInstallation,
    ) -> Result<(Secret, DateTime<Utc>), ForgeError> {
        unsupported("minting an App installation token")
    }

    fn minting_context(
        &self,
        _endpoint: &ForgeEndpoint,
        app: &AppInstallation,
        _e: &ForgeError,
    ) -> String {
        format!(
            "App {}, installation {} on {PLAIN_GIT}",
            app.app_id, app.installation_id
        )
    }

    fn budgeted_resource(&self, _resource: &str) -> bool {
        // No API, so no reading is of a limit of plain git's.
        false
    }

    fn open(
        &self,
        endpoint: &ForgeEndpoint,
        credentials: Credentials,
    ) -> Result<Arc<dyn Forge>, ForgeError> {
        Ok(Arc::new(PlainGit::new(endpoint, credentials)))
    }
}

/// A git server without an API; see the module documentation.
pub struct PlainGit {
    credentials: Credentials,
    ca_cert_pem: Option<String>,
}

impl PlainGit {
    /// Plain git with `credentials` (the token of its git remotes) and `endpoint`'s CA.
    pub fn new(endpoint: &ForgeEndpoint, credentials: Credentials) -> PlainGit {
        PlainGit {
            credentials,
            ca_cert_pem: endpoint.ca_cert_pem.clone(),
        }
    }
}

fn unsupported<T>(operation: &'static str) -> Result<T, ForgeError> {
    Err(ForgeError::Unsupported {
        provider: PLAIN_GIT,
        operation,
    })
}

#[async_trait::async_trait]
impl Forge for PlainGit {
    fn provider(&self) -> Provider {
        Provider::Git
    }

    async fn list_org_repos(&self, _org: &str) -> Result<Vec<RemoteRepo>, ForgeError> {
        unsupported("listing an organisation's repositories")
    }

    async fn repo_exists(&self, _owner: &str, _name: &str) -> Result<bool, ForgeError> {
        unsupported("asking whether a repository exists")
    }

    async fn create_push_hook(
        &self,
        _owner: &str,
        _name: &str,
        _url: &str,
        _secret: &Secret,
    ) -> Result<Option<u64>, ForgeError> {
        unsupported("push webhooks")
    }

    async fn delete_push_hook(
        &self,
        _owner: &str,
        _name: &str,
        _id: u64,
    ) -> Result<(), ForgeError> {
        unsupported("push webhooks")
    }

    fn git_remote(&self, url: &str) -> GitRemote {
        GitRemote::with_credentials(url, &self.credentials, self.ca_cert_pem.clone())
    }

    async fn export_metadata(
        &self,
        _owner: &str,
        _name: &str,
        _out: &Path,
        _previous: Option<&Path>,
        _mode: ExportMode,
    ) -> Result<ExportReport, ForgeError> {
        unsupported("exporting metadata")
    }

    async fn commit_count(
        &self,
        _owner: &str,
        _name: &str,
        _sha: &str,
    ) -> Result<Option<u64>, ForgeError> {
        Ok(None)
    }

    async fn target_repo(
        &self,
        _owner: &str,
        _name: &str,
        _create_from: Option<&Path>,
    ) -> Result<TargetRepo, ForgeError> {
        unsupported("reading or creating a target repository")
    }

    async fn set_default_branch(
        &self,
        _owner: &str,
        _name: &str,
        _branch: &str,
    ) -> Result<(), ForgeError> {
        unsupported("setting the default branch")
    }

    fn plan_metadata(
        &self,
        _tree: &Path,
        _request: &MetadataRequest,
    ) -> Result<RestorePlan, ForgeError> {
        unsupported("restoring metadata")
    }

    async fn plan_access(
        &self,
        _tree: &Path,
        _owner: &str,
        _scope: AccessScope,
    ) -> Result<Option<AccessPlan>, ForgeError> {
        unsupported("restoring access")
    }

    async fn restore_metadata(
        &self,
        _tree: &Path,
        _owner: &str,
        _name: &str,
        _request: &MetadataRequest,
        _progress: ProgressFn<'_>,
    ) -> Result<RestoreReport, ForgeError> {
        unsupported("restoring metadata")
    }
}
