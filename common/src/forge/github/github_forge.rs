//! GitHub behind the forge seam: [`GitHubForge`] implements [`Forge`] with what this module
//! already does (the REST client, the export, the restore engine), so callers hold an
//! `Arc<dyn Forge>` and never a [`GitHubClient`].

use std::path::Path;

use serde_json::{Value, json};

use crate::domain::Provider;
use crate::forge::ForgeError;
use crate::forge::seam::{
    Credentials, Forge, ForgeEndpoint, GitRemote, MetadataRequest, ProgressFn, TargetRepo,
};
use crate::secret::Secret;

use super::access::{AccessPlan, AccessScope};
use super::rest_client::GitHubClient;
use super::restore::{self as engine, Pace, RestoreOptions, RestoreTarget};
use super::{ExportMode, ExportReport, RemoteRepo, RestorePlan, RestoreReport};

/// GitHub or GitHub Enterprise at one endpoint, with one credential.
pub struct GitHubForge {
    client: GitHubClient,
    credentials: Credentials,
    ca_cert_pem: Option<String>,
}

impl GitHubForge {
    /// A forge for `endpoint` whose requests carry `credentials`' token and are admitted by
    /// its gate, when it has one.
    pub fn new(endpoint: &ForgeEndpoint, credentials: Credentials) -> Result<Self, ForgeError> {
        let client = GitHubClient::with_token_source(endpoint, credentials.tokens.clone())?;
        let client = match &credentials.gate {
            Some(gate) => client.with_gate(gate.clone()),
            None => client,
        };
        Ok(GitHubForge {
            client,
            credentials,
            ca_cert_pem: endpoint.ca_cert_pem.clone(),
        })
    }

    /// The engine's options for `request`, at GitHub's content-creation pace.
    fn options(request: &MetadataRequest) -> RestoreOptions {
        RestoreOptions {
            backup_id: request.backup_id.clone(),
            parts: engine::Parts {
                issues: request.issues,
                releases: request.releases,
                // Issues name labels and milestones: they come with them.
                labels: request.issues,
                settings: request.settings,
            },
            branches_present: request.branches_present.clone(),
            journal: request.journal.clone(),
            pace: Some(Pace::GITHUB),
            access: request.access,
        }
    }

    async fn read_repo(&self, owner: &str, name: &str) -> Result<TargetRepo, ForgeError> {
        let path = format!("/repos/{owner}/{name}");
        let body = self.client.get_json(&path, None).await?.body;
        target_of(&path, body.as_ref())
    }

    async fn create_repo(
        &self,
        owner: &str,
        name: &str,
        tree: &Path,
    ) -> Result<TargetRepo, ForgeError> {
        let body = creation_body(name, &source_repo(tree).await);
        tracing::info!(target = %format!("{owner}/{name}"), "creating the target repository");
        let path = format!("/orgs/{owner}/repos");
        match self.client.post_json(&path, &body).await {
            Ok(created) => target_of(&path, Some(&created)),
            // Created meanwhile (an earlier attempt whose answer was lost): read it.
            Err(e) if e.status() == Some(422) => self.read_repo(owner, name).await,
            Err(e) => Err(e),
        }
    }
}

/// The source's repository document in the export tree (`meta/repo.json`); `Null` when the
/// backup lacks it or it is not JSON (the target is then created private, undescribed).
async fn source_repo(tree: &Path) -> Value {
    tokio::fs::read(tree.join("meta/repo.json"))
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// `POST /orgs/{owner}/repos`'s body: the source's description and visibility.
fn creation_body(name: &str, source: &Value) -> Value {
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
    body
}

/// The target as GitHub's repository document describes it (its wiki beside it:
/// `NAME.wiki.git`).
fn target_of(path: &str, doc: Option<&Value>) -> Result<TargetRepo, ForgeError> {
    let field = |f: &str| doc.and_then(|d| d.get(f)).and_then(Value::as_str);
    let clone_url = field("clone_url").ok_or_else(|| ForgeError::Decode {
        method: "GET".into(),
        path: path.to_string(),
        detail: "the repository has no clone_url".into(),
    })?;
    let wiki_url = match clone_url.strip_suffix(".git") {
        Some(base) => format!("{base}.wiki.git"),
        None => format!("{clone_url}.wiki.git"),
    };
    Ok(TargetRepo {
        clone_url: clone_url.to_string(),
        default_branch: field("default_branch").map(str::to_string),
        wiki_url: Some(wiki_url),
    })
}

#[async_trait::async_trait]
impl Forge for GitHubForge {
    fn provider(&self) -> Provider {
        Provider::Github
    }

    async fn list_org_repos(&self, org: &str) -> Result<Vec<RemoteRepo>, ForgeError> {
        super::list_org_repos(&self.client, org).await
    }

    async fn repo_exists(&self, owner: &str, name: &str) -> Result<bool, ForgeError> {
        match self
            .client
            .get_json(&format!("/repos/{owner}/{name}"), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_push_hook(
        &self,
        owner: &str,
        name: &str,
        url: &str,
        secret: &Secret,
    ) -> Result<Option<u64>, ForgeError> {
        let body = json!({
            "name": "web",
            "active": true,
            "events": ["push"],
            "config": {
                "url": url,
                "content_type": "json",
                "secret": secret.expose(),
                "insecure_ssl": "0",
            },
        });
        let hook = self
            .client
            .post_json(&format!("/repos/{owner}/{name}/hooks"), &body)
            .await?;
        Ok(hook.get("id").and_then(Value::as_u64))
    }

    async fn delete_push_hook(&self, owner: &str, name: &str, id: u64) -> Result<(), ForgeError> {
        match self
            .client
            .delete(&format!("/repos/{owner}/{name}/hooks/{id}"))
            .await
        {
            Err(e) if e.status() == Some(404) => Ok(()),
            r => r,
        }
    }

    fn git_remote(&self, url: &str) -> GitRemote {
        GitRemote::with_credentials(url, &self.credentials, self.ca_cert_pem.clone())
    }

    async fn export_metadata(
        &self,
        owner: &str,
        name: &str,
        out: &Path,
        previous: Option<&Path>,
        mode: ExportMode,
    ) -> Result<ExportReport, ForgeError> {
        super::export_repo(&self.client, owner, name, out, previous, mode).await
    }

    async fn commit_count(
        &self,
        owner: &str,
        name: &str,
        sha: &str,
    ) -> Result<Option<u64>, ForgeError> {
        super::commit_count(&self.client, owner, name, sha).await
    }

    async fn target_repo(
        &self,
        owner: &str,
        name: &str,
        create_from: Option<&Path>,
    ) -> Result<TargetRepo, ForgeError> {
        match (self.read_repo(owner, name).await, create_from) {
            (Err(e), Some(tree)) if e.status() == Some(404) => {
                self.create_repo(owner, name, tree).await
            }
            (read, _) => read,
        }
    }

    async fn set_default_branch(
        &self,
        owner: &str,
        name: &str,
        branch: &str,
    ) -> Result<(), ForgeError> {
        let path = format!("/repos/{owner}/{name}");
        let body = json!({ "default_branch": branch });
        self.client.patch_json(&path, &body).await.map(|_| ())
    }

    fn plan_metadata(
        &self,
        tree: &Path,
        request: &MetadataRequest,
    ) -> Result<RestorePlan, ForgeError> {
        engine::plan(tree, &Self::options(request))
    }

    async fn plan_access(
        &self,
        tree: &Path,
        owner: &str,
        scope: AccessScope,
    ) -> Result<Option<AccessPlan>, ForgeError> {
        let owned = tree.to_path_buf();
        let doc = super::blocking::blocking(tree, move || engine::read_access(&owned)).await?;
        let Some(doc) = doc else {
            return Ok(None);
        };
        let target = RestoreTarget {
            client: &self.client,
            owner,
            name: "",
        };
        engine::plan_access(&doc, target, scope).await.map(Some)
    }

    async fn restore_metadata(
        &self,
        tree: &Path,
        owner: &str,
        name: &str,
        request: &MetadataRequest,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreReport, ForgeError> {
        let target = RestoreTarget {
            client: &self.client,
            owner,
            name,
        };
        engine::restore_metadata(tree, target, &Self::options(request), progress).await
    }
}
