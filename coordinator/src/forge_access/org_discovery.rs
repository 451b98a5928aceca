//! Forge organisations: connecting one (credential checked at once), discovering its
//! repositories (now, and periodically), the forge calls made with its credential (whether a
//! repository exists, push webhooks), and the forge endpoint a lease of its repositories names.
//!
//! Every forge is reached through the forge layer's seam (`repovault_common::forge`): the
//! provider's [`ForgeKind`](repovault_common::forge::ForgeKind) checks a credential's form and
//! mints installation tokens, its [`Forge`] lists and answers; nothing here names a provider.
//! The credential is a token or an App installation. The coordinator keeps either sealed
//! (context [`SealContext::OrgCredential`]); for an App it mints installation tokens itself and
//! caches one per installation ([`crate::forge_access::installation_tokens`]). Workers never see
//! the private key.

use crate::model::RepoId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use repovault_common::forge::{
    self as forges, Credentials, Forge, ForgeCredential, ForgeEndpoint, ForgeError, StaticToken,
    check_ca_cert, validate_api_url,
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

/// Index writes per transaction when a discovery moves many names at once (well under the
/// store's 127 operations per transaction, `kv::MAX_TXN_OPS`).
const INDEX_OPS_PER_TXN: usize = 100;

/// A forge organisation to connect.
#[derive(Debug, Clone)]
pub struct NewForgeOrg {
    pub provider: Provider,
    pub name: String,
    /// `None`: the provider's default API.
    pub api_url: Option<String>,
    /// A PEM CA certificate to trust for `api_url`.
    pub ca_cert_pem: Option<String>,
    /// As the admin hands it over (in the request body, once).
    pub credential: ForgeCredential,
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

/// Whether a forge refusal means the credential or the names are wrong (the admin's input)
/// rather than the forge being unwell; asking a provider for what it does not do is the
/// admin's input too.
fn refused(e: &ForgeError) -> bool {
    matches!(e.status(), Some(401 | 403 | 404 | 422))
        || matches!(e, ForgeError::Config(_) | ForgeError::Unsupported { .. })
}

pub(crate) fn forge_error(context: String, e: ForgeError) -> CoreError {
    if refused(&e) {
        CoreError::InvalidArgument(format!("{context}: {e}"))
    } else {
        CoreError::FailedPrecondition(format!("{context}: {e}"))
    }
}

/// The organisation's forge endpoint: its own API, else its provider's default (none: empty).
pub(crate) fn endpoint(org: &OrgRecord) -> ForgeEndpoint {
    ForgeEndpoint {
        api_url: org
            .api_url
            .clone()
            .or_else(|| {
                forges::kind(org.provider)
                    .default_api_url()
                    .map(str::to_string)
            })
            .unwrap_or_default(),
        ca_cert_pem: org.ca_cert_pem.clone(),
    }
}

/// How an organisation's forge API is named in errors ("GitHub API https://...").
fn api_named(org: &OrgRecord, ep: &ForgeEndpoint) -> String {
    format!("{} API {}", forges::kind(org.provider).name(), ep.api_url)
}

/// `org`'s forge at `ep`, its requests carrying `token` (unbudgeted: the coordinator's own
/// calls are few and an admin waits on them).
fn open_forge(
    org: &OrgRecord,
    ep: &ForgeEndpoint,
    token: Secret,
) -> Result<Arc<dyn Forge>, ForgeError> {
    let credentials = Credentials {
        tokens: Arc::new(StaticToken(token)),
        gate: None,
    };
    forges::open(org.provider, ep, credentials)
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
    /// Connects a forge organisation: checks the input (the credential's form as its provider
    /// requires), proves the credential (an App mints an installation token; then the
    /// organisation's repositories are listed), stores the organisation with its credential
    /// sealed, and records that listing as its first discovery. A credential the forge refuses
    /// is refused here, with the forge's message; nothing is stored.
    pub async fn add_forge_org(&self, new: NewForgeOrg) -> CoreResult<(OrgRecord, SyncReport)> {
        let invalid = CoreError::InvalidArgument;
        validate_name("organisation", &new.name).map_err(|e| invalid(e.to_string()))?;
        let kind = forges::kind(new.provider);
        let api_url = match new.api_url.as_deref().or(kind.default_api_url()) {
            Some(u) => Some(validate_api_url(u).map_err(invalid)?),
            None => None,
        };
        let ca_cert_pem = new.ca_cert_pem.filter(|p| !p.trim().is_empty());
        if let Some(p) = &ca_cert_pem {
            check_ca_cert(p).map_err(invalid)?;
        }
        kind.check_credential(&new.credential).map_err(invalid)?;
        if self.store.org_by_name(&new.name).await?.is_some() {
            return Err(CoreError::AlreadyExists(format!(
                "organisation {:?} already exists",
                new.name
            )));
        }
        let id = ids::new_org_id();
        let credential = self.seal_credential(&id, &new.credential);
        let key =
            repovault_common::crypto::random_secret(crate::catalog::org_registry::ORG_KEY_BYTES);
        let org = OrgRecord {
            sealed_key: self.secrets.seal(SealContext::OrgKey(&id), &key),
            id,
            name: new.name.clone(),
            provider: new.provider,
            created_at_ms: self.now_ms(),
            api_url,
            ca_cert_pem,
            credential: Some(credential),
            last_sync_at_ms: None,
            disconnected: false,
            full_after_ms: None,
            retention: Default::default(),
            schedule: Default::default(),
            storage: None,
            copy_to: None,
            tier_after_days: None,
        };
        // Proves the credential before anything is stored.
        let listed = self.list_remote(&org).await?;
        self.store.create_org(&org).await?;
        tracing::info!(org = %org.name, id = %org.id, provider = %org.provider, credential = org.credential.as_ref().map_or("none", OrgCredential::kind), "forge organisation added");
        let report = self.apply_listing(&org, &listed).await?;
        let org = self.org_named(&org.name).await?;
        Ok((org, report))
    }

    pub(super) async fn org_named(&self, name: &str) -> CoreResult<OrgRecord> {
        self.store
            .org_by_name(name)
            .await?
            .ok_or_else(|| crate::error::not_found("organisation", name))
    }

    /// Discovers an organisation's repositories now. A provider without organisations to
    /// discover (plain git) is refused by its forge, as invalid input.
    pub async fn sync_org(&self, name: &str) -> CoreResult<SyncReport> {
        let org = self.org_named(name).await?;
        let listed = self.list_remote(&org).await?;
        self.apply_listing(&org, &listed).await
    }

    /// Discovers every forge organisation whose last discovery is at least `interval` old
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
        let forge = open_forge(org, &ep, token)
            .map_err(|e| CoreError::FailedPrecondition(format!("{}: {e}", api_named(org, &ep))))?;
        forge.repo_exists(owner, name).await.map_err(|e| {
            CoreError::FailedPrecondition(format!(
                "asking {} whether {owner}/{name} exists with {}'s credential: {e}",
                ep.api_url, org.name
            ))
        })
    }

    /// The push webhooks of `org`'s repository `name`, asked with `org`'s credential (fetched,
    /// and an App's installation token minted, now).
    pub(crate) async fn push_hooks(&self, org: &OrgRecord, name: &str) -> CoreResult<PushHooks> {
        let ep = endpoint(org);
        let token = self.forge_token(org).await?.unwrap_or_default();
        let forge = open_forge(org, &ep, token).map_err(|e| forge_error(api_named(org, &ep), e))?;
        Ok(PushHooks {
            forge,
            owner: org.name.clone(),
            name: name.to_string(),
        })
    }

    /// Lists the organisation's repositories on its forge, keeping what is valid.
    pub(super) async fn list_remote(&self, org: &OrgRecord) -> CoreResult<Vec<ListedRepo>> {
        let ep = endpoint(org);
        let token = self.forge_token(org).await?.unwrap_or_default();
        let forge = open_forge(org, &ep, token).map_err(|e| forge_error(api_named(org, &ep), e))?;
        let remote = match forge.list_org_repos(&org.name).await {
            Ok(r) => r,
            Err(e @ ForgeError::Unsupported { .. }) => {
                return Err(CoreError::InvalidArgument(format!(
                    "organisation {:?}: {e} (add its repositories with `repo add`)",
                    org.name
                )));
            }
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
        let mut after: HashMap<RepoId, RepoRecord> =
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
        let mut puts: HashMap<String, RepoId> = puts.into_iter().collect();
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
        let rest: Vec<(String, RepoId)> = puts.into_iter().collect();
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
    forge: Arc<dyn Forge>,
    owner: String,
    name: String,
}

impl PushHooks {
    /// Registers a hook delivering push events to `url`, signed with `secret`; the forge's
    /// hook id (`None` when its answer carries none).
    pub(crate) async fn create(
        &self,
        url: &str,
        secret: &Secret,
    ) -> Result<Option<u64>, ForgeError> {
        self.forge
            .create_push_hook(&self.owner, &self.name, url, secret)
            .await
    }

    /// Removes hook `id`; one already gone is not an error.
    pub(crate) async fn delete(&self, id: u64) -> Result<(), ForgeError> {
        self.forge
            .delete_push_hook(&self.owner, &self.name, id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use repovault_common::crypto::MasterKey;

    use super::*;
    use crate::clock::SystemClock;
    use crate::kv::MemoryKv;
    use crate::secrets::Secrets;
    use crate::store::Store;

    fn access() -> ForgeAccess {
        ForgeAccess::new(
            Store::new(Arc::new(MemoryKv::new())),
            Arc::new(Secrets::new(MasterKey::generate())),
            Arc::new(SystemClock),
        )
    }

    /// A plain git organisation as `org add --provider git` stores it.
    fn plain_git_org(name: &str) -> OrgRecord {
        OrgRecord {
            id: ids::new_org_id(),
            name: name.into(),
            provider: Provider::Git,
            created_at_ms: 0,
            sealed_key: String::new(),
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
        }
    }

    #[tokio::test]
    async fn the_seam_refuses_discovering_a_plain_git_organisation() {
        let forge = access();
        let org = plain_git_org("mirrors");
        forge.store.create_org(&org).await.expect("stored");
        let e = forge
            .sync_org("mirrors")
            .await
            .expect_err("nothing to list");
        let CoreError::InvalidArgument(m) = &e else {
            panic!("invalid input, not a failure: {e:?}");
        };
        assert!(
            m.contains("listing an organisation's repositories is not supported by plain git")
                && m.contains("repo add"),
            "{m}"
        );
        let after = forge.store.org(&org.id).await.expect("read").expect("kept");
        assert_eq!(after.last_sync_at_ms, None, "no discovery recorded");
        assert!(
            forge
                .store
                .org_repos(&org.id)
                .await
                .expect("repos")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn the_seam_refuses_connecting_a_plain_git_organisation_with_a_credential() {
        let forge = access();
        let e = forge
            .add_forge_org(NewForgeOrg {
                provider: Provider::Git,
                name: "mirrors".into(),
                api_url: None,
                ca_cert_pem: None,
                credential: ForgeCredential::Token(Secret::new("tok_SECRET")),
            })
            .await
            .expect_err("plain git has no organisation credential");
        let CoreError::InvalidArgument(m) = &e else {
            panic!("invalid input: {e:?}");
        };
        assert!(
            m.contains("plain git takes no organisation credential") && !m.contains("SECRET"),
            "{m}"
        );
        assert!(
            forge
                .store
                .org_by_name("mirrors")
                .await
                .expect("read")
                .is_none(),
            "nothing stored"
        );
    }

    #[tokio::test]
    async fn a_malformed_credential_is_refused_before_the_forge_is_asked() {
        let forge = access();
        // An unroutable API: asking it would fail as unreachable, not as invalid input.
        let e = forge
            .add_forge_org(NewForgeOrg {
                provider: Provider::Github,
                name: "acme".into(),
                api_url: Some("https://forge.invalid/api/v3".into()),
                ca_cert_pem: None,
                credential: ForgeCredential::Token(Secret::new("   ")),
            })
            .await
            .expect_err("empty token");
        assert!(
            matches!(&e, CoreError::InvalidArgument(m) if m == "the GitHub token is empty"),
            "{e:?}"
        );
        assert!(
            forge
                .store
                .org_by_name("acme")
                .await
                .expect("read")
                .is_none()
        );
    }

    #[test]
    fn due_after_the_interval() {
        let hour = Duration::from_secs(3600);
        assert!(!sync_due(0, 3_599_999, hour));
        assert!(sync_due(0, 3_600_000, hour));
        assert!(sync_due(i64::MIN, 0, hour), "no overflow");
    }
}
