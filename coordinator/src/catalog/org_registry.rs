//! The registry: organisations, repositories, backup history
//! (restores: `tasks/kinds/restore_requests.rs`).

use crate::model::BackupId;
use repovault_common::crypto::random_secret;
use repovault_common::names::{parse_full_name, validate_git_url, validate_name};
use repovault_common::secret::Secret;

use crate::error::{CoreError, CoreResult, not_found};
use crate::ids;
use crate::model::{BackupRecord, OrgRecord, Provider, RepoRecord, RepoStats};
use crate::secrets::SealContext;

use std::sync::Arc;

use crate::catalog::catalog_objects::Catalog;
use crate::clock::Clock;
use crate::secrets::Secrets;
use crate::store::Store;

/// Bytes of an organisation key: 256 bits, hex-encoded as the restic password.
pub(crate) const ORG_KEY_BYTES: usize = 32;

fn invalid(e: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidArgument(e.to_string())
}

/// Organisations, repositories and their backup history: the records every feature looks up by
/// name. Owns no state of its own beyond the store's records; creating an organisation seals
/// its key with [`Secrets`].
pub struct Registry {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) catalog: Arc<Catalog>,
}

impl Registry {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        secrets: Arc<Secrets>,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            store,
            clock,
            secrets,
            catalog,
        }
    }

    /// Adds a plain git organisation (repositories added by URL). A GitHub organisation needs a
    /// credential: [`crate::forge_access::ForgeAccess::add_forge_org`].
    pub async fn add_org(&self, name: &str, provider: Provider) -> CoreResult<OrgRecord> {
        validate_name("organisation", name).map_err(invalid)?;
        if provider.is_forge() {
            return Err(CoreError::InvalidArgument(format!(
                "provider {provider} needs a credential: a token (--token-env VAR or --token-file FILE) or an App (--app-id, --private-key, --installation-id)"
            )));
        }
        let id = ids::new_org_id();
        let key = random_secret(ORG_KEY_BYTES);
        let org = OrgRecord {
            sealed_key: self.secrets.seal(SealContext::OrgKey(&id), &key),
            id,
            name: name.to_string(),
            provider,
            created_at_ms: self.clock.now_ms(),
            api_url: None,
            ca_cert_pem: None,
            credential: None,
            last_sync_at_ms: None,
            disconnected: false,
            full_after_ms: None,
            retention: Default::default(),
            schedule: Default::default(),
        };
        self.store.create_org(&org).await?;
        tracing::info!(org = %org.name, id = %org.id, "organisation added");
        Ok(org)
    }

    pub async fn org_named(&self, name: &str) -> CoreResult<OrgRecord> {
        self.store
            .org_by_name(name)
            .await?
            .ok_or_else(|| not_found("organisation", name))
    }

    pub async fn export_org_key(&self, name: &str) -> CoreResult<(OrgRecord, Secret)> {
        let org = self.org_named(name).await?;
        let key = self
            .secrets
            .open(SealContext::OrgKey(&org.id), &org.sealed_key)?;
        tracing::info!(org = %org.name, "organisation key exported");
        Ok((org, key))
    }

    /// Adds a repository. Does not contact the source: a repository missing there fails at
    /// backup time with a clear error.
    pub async fn add_repo(
        &self,
        full_name: &str,
        url: &str,
        token: Option<Secret>,
    ) -> CoreResult<RepoRecord> {
        let (org_name, name) = parse_full_name(full_name).map_err(invalid)?;
        let url = validate_git_url(url).map_err(invalid)?;
        let org = self.org_named(&org_name).await?;
        if org.provider.is_forge() {
            return Err(CoreError::InvalidArgument(format!(
                "organisation {:?} is a {} organisation: its repositories are discovered (`repovault org sync {}`), not added by URL",
                org.name, org.provider, org.name
            )));
        }
        let id = ids::new_repo_id();
        let sealed_token = token
            .filter(|t| !t.is_empty())
            .map(|t| self.secrets.seal(SealContext::RepoToken(&id), &t));
        let repo = RepoRecord {
            id,
            org_id: org.id.clone(),
            org_name: org.name.clone(),
            name,
            url: url.to_string(),
            sealed_token,
            sealed_master_key: None,
            created_at_ms: self.clock.now_ms(),
            forge_id: None,
            archived: false,
            deleted: false,
            schedule: None,
            on_push: None,
        };
        self.store.create_repo(&repo).await?;
        tracing::info!(repo = %repo.full_name(), id = %repo.id, "repository added");
        Ok(repo)
    }

    /// Replaces (or, with `None`, removes) a plain git repository's own token; the next lease
    /// carries it. A forge repository has none: its organisation's credential is changed
    /// (`org update`).
    pub async fn update_repo_token(
        &self,
        full_name: &str,
        token: Option<Secret>,
    ) -> CoreResult<RepoRecord> {
        let mut repo = self.repo_named(full_name).await?;
        let org = self.org_named(&repo.org_name).await?;
        if org.provider.is_forge() {
            return Err(CoreError::InvalidArgument(format!(
                "{full_name} is a repository of the {} organisation {:?}: it uses the organisation's credential (`repovault org update {}`)",
                org.provider, org.name, org.name
            )));
        }
        repo.sealed_token = token
            .filter(|t| !t.is_empty())
            .map(|t| self.secrets.seal(SealContext::RepoToken(&repo.id), &t));
        let mut batch = crate::store::Batch::default();
        batch.repo(&repo);
        self.store.apply(batch).await?;
        tracing::info!(repo = %repo.full_name(), token = repo.sealed_token.is_some(), "repository token replaced");
        Ok(repo)
    }

    pub async fn repo_named(&self, full_name: &str) -> CoreResult<RepoRecord> {
        let (org_name, name) = parse_full_name(full_name).map_err(invalid)?;
        let org = self.org_named(&org_name).await?;
        self.store
            .repo_by_name(&org.id, &name)
            .await?
            .ok_or_else(|| not_found("repository", full_name))
    }

    pub async fn list_repos(&self, org: Option<&str>) -> CoreResult<Vec<(RepoRecord, RepoStats)>> {
        let org_id = match org {
            Some(o) if !o.is_empty() => Some(self.org_named(o).await?.id),
            _ => None,
        };
        let mut out = Vec::new();
        for r in self.store.repos().await? {
            if org_id.as_ref().is_some_and(|id| *id != r.org_id) {
                continue;
            }
            let stats = self.store.stats(&r.id).await?;
            out.push((r, stats));
        }
        out.sort_by_key(|(r, _)| r.full_name());
        Ok(out)
    }

    /// A backup by id: the store's recent records first, then the catalog object.
    pub async fn backup_record(&self, id: &BackupId) -> CoreResult<Option<BackupRecord>> {
        let Some(repo_id) = ids::repo_id_of_backup(id) else {
            return Ok(None);
        };
        if let Some(b) = self.store.backup(&repo_id, id).await? {
            return Ok(Some(b));
        }
        let Some(repo) = self.store.repo(&repo_id).await? else {
            return Ok(None);
        };
        self.catalog.read_catalog(&repo.org_id, &repo.id, id).await
    }

    pub async fn get_backup(&self, id: &BackupId) -> CoreResult<BackupRecord> {
        self.backup_record(id)
            .await?
            .ok_or_else(|| not_found("backup", id))
    }

    /// The full history: catalog objects, plus what is still pending or running (or committed but
    /// not yet written to the catalog), newest first.
    pub async fn list_backups(&self, full_name: Option<&str>) -> CoreResult<Vec<BackupRecord>> {
        let repos = match full_name {
            Some(n) if !n.is_empty() => vec![self.repo_named(n).await?],
            _ => self.store.repos().await?,
        };
        let mut out = Vec::new();
        for r in repos {
            let mut history = self.catalog.list_catalog(&r.org_id, &r.id).await?;
            for b in self.store.recent_backups(&r.id).await? {
                if !history.iter().any(|h| h.id == b.id) {
                    history.push(b);
                }
            }
            out.extend(history);
        }
        out.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }
}
