//! GitHub organisations: connecting one (credential checked at once), discovering its
//! repositories (now, and periodically), and the credential a lease of its repositories carries.
//!
//! The credential is a token or a GitHub App installation. The coordinator keeps either sealed
//! (context [`SealContext::OrgCredential`]); for an App it mints installation tokens itself and
//! caches one per installation ([`crate::forge_access::installation_tokens`]). Workers never see the private key.

use std::collections::HashMap;
use std::time::Duration;

use repovault_common::forge::github::{
    ForgeError, GitHubClient, GitHubEndpoint, app_jwt, list_org_repos,
};
use repovault_common::names::{validate_git_url, validate_name};
use repovault_common::secret::Secret;

use crate::error::{CoreError, CoreResult};
use crate::forge_access::discovery_plan::{
    ListedRepo, Renamed, index_changes, name_index, plan_sync,
};
use crate::forge_access::installation_tokens::InstallationKey;
use crate::ids;
use crate::model::{OrgCredential, OrgRecord, Provider, RepoRecord};
use crate::secrets::SealContext;
use crate::store::Batch;

use crate::forge_access::ForgeAccess;

/// GitHub's public API; GitHub Enterprise is `https://HOST/api/v3`.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// Index writes per transaction when a discovery moves many names at once (well under the
/// store's 128 operations per transaction).
const INDEX_OPS_PER_TXN: usize = 100;

/// A GitHub organisation to connect.
#[derive(Debug, Clone)]
pub struct NewGitHubOrg {
    pub name: String,
    /// `None`: [`DEFAULT_GITHUB_API_URL`].
    pub api_url: Option<String>,
    /// A PEM CA certificate to trust for `api_url`.
    pub ca_cert_pem: Option<String>,
    pub credential: GitHubCredential,
}

/// A credential as the admin hands it over (in the request body, once).
#[derive(Debug, Clone)]
pub enum GitHubCredential {
    Token(Secret),
    App {
        app_id: u64,
        installation_id: u64,
        private_key_pem: Secret,
    },
}

/// What one discovery did. Names are the repositories' names after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub org: String,
    pub listed: usize,
    pub added: Vec<String>,
    pub renamed: Vec<Renamed>,
    pub archived: Vec<String>,
    pub unarchived: Vec<String>,
    pub deleted: Vec<String>,
    pub restored: Vec<String>,
    pub unchanged: usize,
    pub synced_at_ms: i64,
}

/// Checks a forge API base URL: https only (GitHub and GitHub Enterprise serve their API over
/// https, and the credential travels with every request), a host, no credentials, no query.
/// Returns it without a trailing slash.
pub fn validate_api_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("API URL {raw:?} is not valid: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the API URL carries credentials; pass them with --token-env or --token-file".into(),
        );
    }
    if url.scheme() != "https" {
        return Err(format!(
            "API URL {raw:?}: only https:// is accepted (GitHub and GitHub Enterprise serve their API over https)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("API URL {raw:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("API URL {raw:?} may not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Checks that `pem` is an RSA private key (PKCS#1 or PKCS#8 PEM) that signs, as a GitHub
/// App's key must be. The error never contains the key.
pub fn check_app_private_key(pem: &Secret) -> Result<(), String> {
    app_jwt(1, pem).map(|_| ()).map_err(|_| {
        "the private key is not an RSA private key in PEM (GitHub App keys are \"-----BEGIN RSA PRIVATE KEY-----\" files)".to_string()
    })
}

/// Checks that `pem` holds at least one PEM certificate.
pub fn check_ca_cert(pem: &str) -> Result<(), String> {
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err("the CA certificate file holds no PEM certificate".into())
    }
}

/// Whether a forge refusal means the credential or the names are wrong (the admin's input)
/// rather than the forge being unwell.
fn refused(e: &ForgeError) -> bool {
    matches!(e.status(), Some(401 | 403 | 404 | 422)) || matches!(e, ForgeError::Config(_))
}

pub(crate) fn forge_error(context: String, e: ForgeError) -> CoreError {
    if refused(&e) {
        CoreError::InvalidArgument(format!("{context}: {e}"))
    } else {
        CoreError::FailedPrecondition(format!("{context}: {e}"))
    }
}

pub(crate) fn endpoint(org: &OrgRecord) -> GitHubEndpoint {
    GitHubEndpoint {
        api_url: org
            .api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_string()),
        ca_cert_pem: org.ca_cert_pem.clone(),
    }
}

pub(crate) fn installation_key(org: &OrgRecord) -> Option<InstallationKey> {
    match &org.credential {
        Some(OrgCredential::App {
            app_id,
            installation_id,
            ..
        }) => Some(InstallationKey {
            api_url: endpoint(org).api_url,
            app_id: *app_id,
            installation_id: *installation_id,
        }),
        _ => None,
    }
}

/// Whether an organisation last synced at `last_ms` is due at `now_ms`.
pub fn sync_due(last_ms: i64, now_ms: i64, interval: Duration) -> bool {
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(last_ms) >= interval_ms
}

impl ForgeAccess {
    /// Connects a GitHub organisation: checks the input, proves the credential (an App mints an
    /// installation token; then the organisation's repositories are listed), stores the
    /// organisation with its credential sealed, and records that listing as its first discovery.
    /// A credential GitHub refuses is refused here, with GitHub's message; nothing is stored.
    pub async fn add_github_org(&self, new: NewGitHubOrg) -> CoreResult<(OrgRecord, SyncReport)> {
        let invalid = CoreError::InvalidArgument;
        validate_name("organisation", &new.name).map_err(|e| invalid(e.to_string()))?;
        let api_url = validate_api_url(new.api_url.as_deref().unwrap_or(DEFAULT_GITHUB_API_URL))
            .map_err(invalid)?;
        let ca_cert_pem = new.ca_cert_pem.filter(|p| !p.trim().is_empty());
        if let Some(p) = &ca_cert_pem {
            check_ca_cert(p).map_err(invalid)?;
        }
        match &new.credential {
            GitHubCredential::Token(t) if t.expose().trim().is_empty() => {
                return Err(invalid("the GitHub token is empty".into()));
            }
            GitHubCredential::App {
                app_id,
                installation_id,
                private_key_pem,
            } => {
                if *app_id == 0 || *installation_id == 0 {
                    return Err(invalid(
                        "a GitHub App needs a non-zero app id and installation id".into(),
                    ));
                }
                check_app_private_key(private_key_pem).map_err(invalid)?;
            }
            GitHubCredential::Token(_) => {}
        }
        if self.store.org_by_name(&new.name).await?.is_some() {
            return Err(CoreError::AlreadyExists(format!(
                "organisation {:?} already exists",
                new.name
            )));
        }
        let id = ids::new_org_id();
        let context = SealContext::OrgCredential(&id);
        let credential = match &new.credential {
            GitHubCredential::Token(t) => OrgCredential::Token {
                sealed_token: self.secrets.seal(context, &Secret::new(t.expose().trim())),
            },
            GitHubCredential::App {
                app_id,
                installation_id,
                private_key_pem,
            } => OrgCredential::App {
                app_id: *app_id,
                installation_id: *installation_id,
                sealed_private_key: self.secrets.seal(context, private_key_pem),
            },
        };
        let key =
            repovault_common::crypto::random_secret(crate::catalog::org_registry::ORG_KEY_BYTES);
        let org = OrgRecord {
            sealed_key: self.secrets.seal(SealContext::OrgKey(&id), &key),
            id,
            name: new.name.clone(),
            provider: Provider::Github,
            created_at_ms: self.now_ms(),
            api_url: Some(api_url),
            ca_cert_pem,
            credential: Some(credential),
            last_sync_at_ms: None,
            disconnected: false,
            full_after_ms: None,
            retention: Default::default(),
            schedule: Default::default(),
        };
        // Proves the credential before anything is stored.
        let listed = self.list_github(&org).await?;
        self.store.create_org(&org).await?;
        tracing::info!(org = %org.name, id = %org.id, credential = org.credential.as_ref().map_or("none", OrgCredential::kind), "GitHub organisation added");
        let report = self.apply_listing(&org, &listed).await?;
        let org = self.org_named(&org.name).await?;
        Ok((org, report))
    }

    async fn org_named(&self, name: &str) -> CoreResult<OrgRecord> {
        self.store
            .org_by_name(name)
            .await?
            .ok_or_else(|| crate::error::not_found("organisation", name))
    }

    /// Discovers an organisation's repositories now.
    pub async fn sync_org(&self, name: &str) -> CoreResult<SyncReport> {
        let org = self.org_named(name).await?;
        if !org.provider.is_forge() {
            return Err(CoreError::InvalidArgument(format!(
                "organisation {name:?} has provider {:?}; only GitHub organisations are discovered (add plain git repositories with `repo add`)",
                org.provider
            )));
        }
        let listed = self.list_github(&org).await?;
        self.apply_listing(&org, &listed).await
    }

    /// Discovers every GitHub organisation whose last discovery is at least `interval` old
    /// (the periodic sync). Failures are logged per organisation and never stop the others.
    pub async fn sync_due_orgs(&self, interval: Duration) {
        let orgs = match self.store.orgs().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "periodic discovery: cannot read organisations");
                return;
            }
        };
        for org in orgs.into_iter().filter(|o| o.provider.is_forge()) {
            let last = org.last_sync_at_ms.unwrap_or(org.created_at_ms);
            if !sync_due(last, self.now_ms(), interval) {
                continue;
            }
            match self.sync_org(&org.name).await {
                Ok(r) => tracing::info!(
                    org = %r.org,
                    listed = r.listed,
                    added = r.added.len(),
                    renamed = r.renamed.len(),
                    archived = r.archived.len(),
                    deleted = r.deleted.len(),
                    "periodic discovery"
                ),
                Err(e) => tracing::warn!(org = %org.name, error = %e, "periodic discovery failed"),
            }
        }
    }

    /// Whether `owner/name` exists on `org`'s forge, asked with `org`'s credential.
    pub(crate) async fn repo_exists(
        &self,
        org: &OrgRecord,
        owner: &str,
        name: &str,
    ) -> CoreResult<bool> {
        let ep = endpoint(org);
        let token = self.forge_token(org).await?.unwrap_or_default();
        let client = GitHubClient::new(&ep, token).map_err(|e| {
            CoreError::FailedPrecondition(format!("GitHub API {}: {e}", ep.api_url))
        })?;
        match client
            .get_json(&format!("/repos/{owner}/{name}"), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(CoreError::FailedPrecondition(format!(
                "asking {} whether {owner}/{name} exists with {}'s credential: {e}",
                ep.api_url, org.name
            ))),
        }
    }

    /// The push webhooks of `org`'s repository `name`, asked with `org`'s credential (fetched,
    /// and an App's installation token minted, now).
    pub(crate) async fn push_hooks(&self, org: &OrgRecord, name: &str) -> CoreResult<PushHooks> {
        let ep = endpoint(org);
        let token = self.forge_token(org).await?.unwrap_or_default();
        let client = GitHubClient::new(&ep, token)
            .map_err(|e| forge_error(format!("GitHub API {}", ep.api_url), e))?;
        Ok(PushHooks {
            client,
            path: format!("/repos/{}/{name}/hooks", org.name),
        })
    }

    /// Lists the organisation's repositories on its forge, keeping what is valid.
    async fn list_github(&self, org: &OrgRecord) -> CoreResult<Vec<ListedRepo>> {
        let ep = endpoint(org);
        let token = self.forge_token(org).await?.unwrap_or_default();
        let client = GitHubClient::new(&ep, token)
            .map_err(|e| forge_error(format!("GitHub API {}", ep.api_url), e))?;
        let remote = match list_org_repos(&client, &org.name).await {
            Ok(r) => r,
            Err(e) => {
                if e.status() == Some(401)
                    && let Some(k) = installation_key(org)
                {
                    self.tokens.forget(&k);
                }
                return Err(forge_error(
                    format!(
                        "listing the repositories of {} at {} with its {} credential",
                        org.name,
                        ep.api_url,
                        org.credential.as_ref().map_or("(no)", OrgCredential::kind)
                    ),
                    e,
                ));
            }
        };
        let mut listed = Vec::with_capacity(remote.len());
        for r in remote {
            if let Err(e) = validate_name("repository", &r.name) {
                tracing::warn!(org = %org.name, error = %e, "skipping a listed repository");
                continue;
            }
            if let Err(e) = validate_git_url(&r.clone_url) {
                tracing::warn!(org = %org.name, repo = %r.name, error = %e, "skipping a listed repository");
                continue;
            }
            listed.push(ListedRepo {
                id: r.id,
                name: r.name,
                archived: r.archived,
                clone_url: r.clone_url,
            });
        }
        Ok(listed)
    }

    /// Plans and writes one discovery. One at a time per coordinator, so two discoveries never
    /// interleave their index changes.
    async fn apply_listing(
        &self,
        org: &OrgRecord,
        listed: &[ListedRepo],
    ) -> CoreResult<SyncReport> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let stored = self.store.org_repos(&org.id).await?;
        let plan = plan_sync(&stored, listed);
        let now = self.now_ms();
        let mut after: HashMap<String, RepoRecord> =
            stored.iter().map(|r| (r.id.clone(), r.clone())).collect();
        let mut changed: Vec<RepoRecord> = plan.updated.clone();
        for l in &plan.added {
            changed.push(RepoRecord {
                id: ids::new_repo_id(),
                org_id: org.id.clone(),
                org_name: org.name.clone(),
                name: l.name.clone(),
                url: l.clone_url.clone(),
                sealed_token: None,
                sealed_master_key: None,
                created_at_ms: now,
                forge_id: Some(l.id),
                archived: l.archived,
                deleted: false,
                schedule: None,
                on_push: None,
            });
        }
        for r in &changed {
            after.insert(r.id.clone(), r.clone());
        }
        let after_records: Vec<RepoRecord> = after.into_values().collect();
        let (puts, deletes) = index_changes(&name_index(&stored), &name_index(&after_records));
        let mut puts: HashMap<String, String> = puts.into_iter().collect();
        // Each changed record with its own index entry; then the remaining index changes.
        for r in &changed {
            let mut batch = Batch::default();
            batch.repo(r);
            if puts.get(&r.name) == Some(&r.id) {
                puts.remove(&r.name);
                batch.repo_name(&org.id, &r.name, &r.id);
            }
            self.store.apply(batch).await?;
        }
        let rest: Vec<(String, String)> = puts.into_iter().collect();
        for chunk in rest.chunks(INDEX_OPS_PER_TXN) {
            let mut batch = Batch::default();
            for (name, id) in chunk {
                batch.repo_name(&org.id, name, id);
            }
            self.store.apply(batch).await?;
        }
        for chunk in deletes.chunks(INDEX_OPS_PER_TXN) {
            let mut batch = Batch::default();
            for name in chunk {
                batch.delete_repo_name(&org.id, name);
            }
            self.store.apply(batch).await?;
        }
        let mut current = self
            .store
            .org(&org.id)
            .await?
            .ok_or_else(|| crate::error::not_found("organisation", org.name.clone()))?;
        current.last_sync_at_ms = Some(now);
        let mut batch = Batch::default();
        batch.org(&current);
        self.store.apply(batch).await?;
        let report = SyncReport {
            org: org.name.clone(),
            listed: listed.len(),
            added: plan.added.iter().map(|l| l.name.clone()).collect(),
            renamed: plan.renamed,
            archived: plan.archived,
            unarchived: plan.unarchived,
            deleted: plan.deleted,
            restored: plan.restored,
            unchanged: plan.unchanged,
            synced_at_ms: now,
        };
        tracing::info!(
            org = %report.org,
            listed = report.listed,
            added = report.added.len(),
            renamed = report.renamed.len(),
            archived = report.archived.len(),
            unarchived = report.unarchived.len(),
            deleted = report.deleted.len(),
            restored = report.restored.len(),
            "discovery applied"
        );
        Ok(report)
    }
}

/// One repository's push webhooks on its forge (`ForgeAccess::push_hooks`).
pub(crate) struct PushHooks {
    client: GitHubClient,
    path: String,
}

impl PushHooks {
    /// Registers a hook delivering push events to `url`, signed with `secret`; the forge's
    /// hook id (`None` when its answer carries none).
    pub(crate) async fn create(
        &self,
        url: &str,
        secret: &Secret,
    ) -> Result<Option<u64>, ForgeError> {
        let body = serde_json::json!({
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
        let v = self.client.post_json(&self.path, &body).await?;
        Ok(v.get("id").and_then(|v| v.as_u64()))
    }

    /// Removes hook `id`; one already gone (404) is not an error.
    pub(crate) async fn delete(&self, id: u64) -> Result<(), ForgeError> {
        match self.client.delete(&format!("{}/{id}", self.path)).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_are_https_only() {
        assert_eq!(
            validate_api_url("https://api.github.com/").expect("ok"),
            "https://api.github.com"
        );
        assert_eq!(
            validate_api_url("https://ghe.example/api/v3").expect("ok"),
            "https://ghe.example/api/v3"
        );
        let e = validate_api_url("http://ghe.example/api/v3").expect_err("http");
        assert!(e.contains("only https://"), "{e}");
        assert!(validate_api_url("not a url").is_err());
        let e = validate_api_url("https://x:ghp_secret@ghe.example/api/v3").expect_err("creds");
        assert!(!e.contains("ghp_secret"), "{e}");
        assert!(validate_api_url("https://ghe.example/api/v3?x=1").is_err());
    }

    #[test]
    fn private_keys_must_be_rsa_pem() {
        let e = check_app_private_key(&Secret::new("-----BEGIN RSA PRIVATE KEY-----\nnope\n"))
            .expect_err("garbage");
        assert!(!e.contains("nope"));
        assert!(check_app_private_key(&Secret::new("")).is_err());
    }

    #[test]
    fn due_after_the_interval() {
        let hour = Duration::from_secs(3600);
        assert!(!sync_due(0, 3_599_999, hour));
        assert!(sync_due(0, 3_600_000, hour));
        assert!(sync_due(i64::MIN, 0, hour), "no overflow");
    }
}
