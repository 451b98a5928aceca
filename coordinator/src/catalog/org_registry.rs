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
use crate::paging::{self, KeyPart, Order, Page, Paged, SortKey};
use crate::secrets::Secrets;
use crate::store::{Seek, Store};

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
            storage: None,
            copy_to: None,
            tier_after_days: None,
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
    /// not yet written to the catalog), newest first. Without a repository, of every repository
    /// that has a backup ([`Store::repos_with_backups`]).
    pub async fn list_backups(&self, full_name: Option<&str>) -> CoreResult<Vec<BackupRecord>> {
        let repos = match full_name {
            Some(n) if !n.is_empty() => vec![self.repo_named(n).await?],
            _ => {
                let mut repos = Vec::new();
                for id in self.store.repos_with_backups().await? {
                    if let Some(r) = self.store.repo(&id).await? {
                        repos.push(r);
                    }
                }
                repos
            }
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

/// Paged lists (see [`crate::paging`]).
impl Registry {
    /// A page of organisations by name, read through the name index: a page decodes only its
    /// own records.
    pub async fn list_orgs_page(&self, page: &Page) -> CoreResult<Paged<OrgRecord>> {
        let seek = match page.after().and_then(|k| k.text(0)) {
            Some(name) => Seek::After(name.to_string()),
            None => Seek::Start,
        };
        let orgs = self.store.orgs_by_name(&seek, page.size() + 1).await?;
        let keyed = orgs.into_iter().map(|o| (org_key(&o), o)).collect();
        Ok(paging::from_seek(keyed, page))
    }

    /// A page of repositories (of `org` when given) by organisation name, then repository name,
    /// with their aggregates. Read through the name indexes, organisation after organisation
    /// from the cursor's, so a page of 100,000 repositories decodes only its own records.
    pub async fn list_repos_page(
        &self,
        org: Option<&str>,
        page: &Page,
    ) -> CoreResult<Paged<(RepoRecord, RepoStats)>> {
        let want = page.size() + 1;
        let cursor = page
            .after()
            .map(|k| (k.text(0).unwrap_or_default(), k.text(1).unwrap_or_default()));
        // Within the cursor's organisation, after its repository; in later ones, from the start.
        let seek_in = |org: &OrgRecord| match cursor {
            Some((o, name)) if o == org.name => Some(Seek::After(name.to_string())),
            Some((o, _)) if o > org.name.as_str() => None,
            _ => Some(Seek::Start),
        };
        let mut out: Vec<(SortKey, RepoRecord)> = Vec::new();
        match org {
            Some(o) if !o.is_empty() => {
                let org = self.org_named(o).await?;
                if let Some(seek) = seek_in(&org) {
                    let repos = self.store.repos_by_name(&org.id, &seek, want).await?;
                    out.extend(repos.into_iter().map(|r| (repo_key(&r), r)));
                }
            }
            _ => {
                let mut orgs_from = match cursor {
                    Some((o, _)) => Seek::At(o.to_string()),
                    None => Seek::Start,
                };
                'orgs: loop {
                    let orgs = self.store.orgs_by_name(&orgs_from, ORGS_PER_READ).await?;
                    for org in &orgs {
                        let Some(seek) = seek_in(org) else { continue };
                        let left = want - out.len();
                        let repos = self.store.repos_by_name(&org.id, &seek, left).await?;
                        out.extend(repos.into_iter().map(|r| (repo_key(&r), r)));
                        if out.len() >= want {
                            break 'orgs;
                        }
                    }
                    match orgs.last() {
                        Some(last) if orgs.len() == ORGS_PER_READ => {
                            orgs_from = Seek::After(last.name.clone());
                        }
                        _ => break,
                    }
                }
            }
        }
        let page_of = paging::from_seek(out, page);
        let mut items = Vec::with_capacity(page_of.items.len());
        for (k, r) in page_of.items {
            let stats = self.store.stats(&r.id).await?;
            items.push((k, (r, stats)));
        }
        Ok(Paged {
            items,
            more: page_of.more,
        })
    }

    /// A page of [`Registry::list_backups`]. The history is assembled from catalog objects and
    /// store records of each repository, which no single index orders, so the whole list is
    /// built and sorted and the page cut from it: a page costs reading the whole history (as
    /// the unpaged list did), but no response carries more than a page.
    pub async fn list_backups_page(
        &self,
        full_name: Option<&str>,
        page: &Page,
    ) -> CoreResult<Paged<BackupRecord>> {
        let all = self.list_backups(full_name).await?;
        Ok(paging::sort_and_cut(
            all,
            backup_key,
            Order::Descending,
            page,
        ))
    }
}

/// Organisations read per store range while walking them for a page of repositories.
const ORGS_PER_READ: usize = 64;

/// An organisation's sort key: its name.
pub fn org_key(o: &OrgRecord) -> SortKey {
    SortKey::new([KeyPart::from(o.name.as_str())])
}

/// A repository's sort key: its organisation's name, then its own (unique in the organisation).
pub fn repo_key(r: &RepoRecord) -> SortKey {
    SortKey::new([
        KeyPart::from(r.org_name.as_str()),
        KeyPart::from(r.name.as_str()),
    ])
}

/// A backup's sort key: creation time, then id (listed descending: newest first).
pub fn backup_key(b: &BackupRecord) -> SortKey {
    SortKey::new([KeyPart::Int(b.created_at_ms), KeyPart::from(b.id.as_str())])
}
