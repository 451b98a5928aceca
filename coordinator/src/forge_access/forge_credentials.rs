//! The forge access component ([`ForgeAccess`]): the credentials requests to a forge carry (an
//! organisation's token, or an installation token it mints and caches), and the fleet-wide rate
//! budget as the worker service sees it: a lease's first grant, refills (with reports of what
//! workers saw, and the credential's current token), pauses for heartbeats, and giving a
//! lease's permits back when its task ends. The budget's rules are in
//! [`crate::forge_access::rate_budgets`]; discovery is `org_discovery.rs`.

use crate::model::{OrgId, RepoId};
use std::sync::Arc;

use chrono::Utc;
use repovault_common::forge::{
    self as forges, AppInstallation, ForgeCredential, app_credential_id, token_credential_id,
};
use repovault_common::secret::Secret;

use crate::error::{CoreError, CoreResult};
use crate::forge_access::rate_budgets::{Grant, Reading};
use crate::model::{OrgCredential, OrgRecord, RepoRecord};
use crate::secrets::SealContext;

use crate::clock::Clock;
use crate::forge_access::installation_tokens::TokenCache;
use crate::forge_access::org_discovery::{endpoint, forge_error, installation_key};
use crate::forge_access::rate_budgets::RateBudgets;
use crate::secrets::Secrets;
use crate::store::{Batch, Store};
use crate::tasks::lease_access::RepoAccess;
use crate::tasks::lifecycle::Lease;

/// The holder id of a lease in the budget: one per attempt, so a re-leased task is a new holder.
pub fn holder_id(tok: &Lease) -> String {
    format!("{}:{}", tok.task_id, tok.attempt)
}

/// The id of the credential requests for `repo` carry (see `RepoAccess.credential_id`): the
/// repository's own token, else its organisation's token or App installation; empty for none.
pub(crate) fn credential_id(org: &OrgRecord, repo: &RepoRecord, token: &Secret) -> String {
    match (&repo.sealed_token, &org.credential) {
        (
            None,
            Some(OrgCredential::App {
                app_id,
                installation_id,
                ..
            }),
        ) => app_credential_id(*app_id, *installation_id),
        _ if token.expose().is_empty() => String::new(),
        _ => token_credential_id(token),
    }
}

/// Access to source forges: credentials, installation tokens, the rate budget, discovery. Owns
/// its state and locks (the token cache, the budget, the one-discovery-at-a-time lock); reads
/// organisations and repositories from the store, opens their credentials with the secrets.
pub struct ForgeAccess {
    pub(crate) store: Store,
    pub(crate) secrets: Arc<Secrets>,
    clock: Arc<dyn Clock>,
    /// Installation tokens of GitHub App organisations.
    pub(crate) tokens: TokenCache,
    /// Serialises discoveries (`org_discovery.rs`).
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    /// The fleet-wide rate budget per forge credential. In memory: a new coordinator starts
    /// cautiously until workers report headers.
    rate: parking_lot::Mutex<RateBudgets>,
}

/// A lease's request for rate permits, as the worker service decoded it.
#[derive(Debug, Clone, Default)]
pub struct PermitRequest {
    /// The worker holding the lease.
    pub worker_id: String,
    /// Permits of earlier grants not yet spent (still held).
    pub unspent: u32,
    /// How many more it wants; 0: only report (with `unspent` 0, the lease gives its slot back).
    pub wanted: u32,
    /// The lowest reading seen since the last request, and the forge resource it is of.
    pub reading: Option<(String, Reading)>,
    /// The forge imposed a wait until this time (unix ms); 0: none.
    pub limited_until_ms: i64,
    /// That wait is a secondary limit, which pauses every holder of the credential.
    pub secondary: bool,
    /// The forge refused the token with this credential id.
    pub rejected_token_id: Option<String>,
}

/// The answer to a [`PermitRequest`].
#[derive(Debug, Clone)]
pub struct PermitAnswer {
    pub grant: Grant,
    /// The credential's current token (an App's installation token, minted anew near expiry).
    pub source_token: Secret,
}

/// A credential paused fleet-wide until `until_ms` (unix ms), for heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatePause {
    pub credential_id: String,
    pub until_ms: i64,
}

impl ForgeAccess {
    /// A credential sealed for organisation `id`.
    pub(super) fn seal_credential(
        &self,
        id: &OrgId,
        credential: &ForgeCredential,
    ) -> OrgCredential {
        let context = SealContext::OrgCredential(id);
        match credential {
            ForgeCredential::Token(t) => OrgCredential::Token {
                sealed_token: self.secrets.seal(context, &Secret::new(t.expose().trim())),
            },
            ForgeCredential::App(app) => OrgCredential::App {
                app_id: app.app_id,
                installation_id: app.installation_id,
                sealed_private_key: self.secrets.seal(context, &app.private_key_pem),
            },
        }
    }

    /// Replaces a forge organisation's credential (an expired or rotated token, a new App key):
    /// the new one's form is checked as its provider requires and proven by listing the
    /// organisation's repositories with it; only then is it sealed and stored, so a credential
    /// the forge refuses leaves the old one in place. The next lease carries the new one.
    /// Written under the discovery lock from a fresh read of the record, so a discovery running
    /// meanwhile cannot write the old credential back. Returns the organisation and how many
    /// repositories the forge listed.
    pub async fn update_credential(
        &self,
        name: &str,
        credential: ForgeCredential,
    ) -> CoreResult<(OrgRecord, usize)> {
        let org = self.org_named(name).await?;
        if !org.provider.is_forge() {
            return Err(CoreError::InvalidArgument(format!(
                "organisation {name:?} is plain git: it has no credential of its own (change a repository's token with `repo update ORG/NAME`)"
            )));
        }
        let kind = forges::kind(org.provider);
        kind.check_credential(&credential)
            .map_err(CoreError::InvalidArgument)?;
        let sealed = self.seal_credential(&org.id, &credential);
        let candidate = OrgRecord {
            credential: Some(sealed.clone()),
            ..org
        };
        let listed = self.list_remote(&candidate).await?;
        let _one_at_a_time = self.sync_lock.lock().await;
        let mut current = self
            .store
            .org(&candidate.id)
            .await?
            .ok_or_else(|| crate::error::not_found("organisation", name))?;
        current.credential = Some(sealed);
        let mut batch = Batch::default();
        batch.org(&current);
        self.store.apply(batch).await?;
        tracing::info!(org = %current.name, credential = current.credential.as_ref().map_or("none", OrgCredential::kind), listed = listed.len(), "organisation credential replaced");
        Ok((current, listed.len()))
    }

    /// Access reading `store`, opening with `secrets`, timing the budget on `clock`.
    pub fn new(store: Store, secrets: Arc<Secrets>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            secrets,
            clock,
            tokens: TokenCache::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            rate: Default::default(),
        }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The token requests to the organisation's forge carry: the stored token, or a cached
    /// installation token (minted when less than ten minutes remain). `None` for plain git.
    pub async fn forge_token(&self, org: &OrgRecord) -> CoreResult<Option<Secret>> {
        let context = SealContext::OrgCredential(&org.id);
        match &org.credential {
            None => Ok(None),
            Some(OrgCredential::Token { sealed_token }) => {
                Ok(Some(self.secrets.open(context, sealed_token)?))
            }
            Some(OrgCredential::App {
                app_id,
                installation_id,
                sealed_private_key,
            }) => {
                let app = AppInstallation {
                    app_id: *app_id,
                    installation_id: *installation_id,
                    private_key_pem: self.secrets.open(context, sealed_private_key)?,
                };
                let cache_key = installation_key(org).ok_or_else(|| {
                    CoreError::Internal("app credential without installation".into())
                })?;
                let ep = endpoint(org);
                let kind = forges::kind(org.provider);
                let t = self
                    .tokens
                    .get(&cache_key, Utc::now, || {
                        kind.mint_installation_token(&ep, &app)
                    })
                    .await
                    .map_err(|e| forge_error(kind.minting_context(&ep, &app, &e), e))?;
                Ok(Some(t.token))
            }
        }
    }

    /// The installation token of an App organisation when one is cached and fresh (no network).
    pub(crate) fn cached_forge_token(&self, org: &OrgRecord) -> Option<Secret> {
        let key = installation_key(org)?;
        self.tokens.peek(&key, Utc::now()).map(|t| t.token)
    }

    /// Drops the cached installation token of an App organisation (the forge refused it).
    pub(crate) fn forget_forge_token(&self, org: &OrgRecord) {
        if let Some(k) = installation_key(org) {
            self.tokens.forget(&k);
        }
    }

    /// The first grant of a new lease on a forge with a credential; `None` for a provider
    /// without an API (plain git) or no credential.
    pub(crate) fn lease_grant(&self, access: &RepoAccess, lease: &Lease) -> Option<Grant> {
        if !access.provider.is_forge() || access.credential_id.is_empty() {
            return None;
        }
        Some(
            self.rate
                .lock()
                .lease(&access.credential_id, &holder_id(lease), self.now_ms()),
        )
    }

    /// A lease's refill for a task of `org_id`'s `repo_id` (the caller checked the lease):
    /// records its report, answers a grant and the credential's current token.
    pub async fn request_permits(
        &self,
        org_id: &OrgId,
        repo_id: &RepoId,
        tok: &Lease,
        req: &PermitRequest,
    ) -> CoreResult<PermitAnswer> {
        let org = self
            .store
            .org(org_id)
            .await?
            .ok_or_else(|| crate::error::not_found("organisation", org_id))?;
        let repo = self
            .store
            .repo(repo_id)
            .await?
            .ok_or_else(|| crate::error::not_found("repository", repo_id))?;
        let mut token = self.current_token(&org, &repo).await?;
        let credential = credential_id(&org, &repo, &token);
        if req
            .rejected_token_id
            .as_ref()
            .is_some_and(|id| *id == token_credential_id(&token))
            && let Some(OrgCredential::App { .. }) = &org.credential
            && repo.sealed_token.is_none()
        {
            // The forge refused the token we would hand out: mint another (the cache keeps
            // one per installation, so concurrent refusals share one mint).
            tracing::info!(org = %org.name, credential = %credential, "installation token refused by the forge: minting a new one");
            self.forget_forge_token(&org);
            token = self.current_token(&org, &repo).await?;
        }
        let holder = holder_id(tok);
        let now = self.now_ms();
        let grant = {
            let mut rate = self.rate.lock();
            if let Some((resource, reading)) = &req.reading
                && forges::kind(org.provider).budgeted_resource(resource)
            {
                rate.report(&credential, *reading, now);
            }
            if req.limited_until_ms > 0 {
                rate.limited(&credential, req.limited_until_ms, req.secondary);
            }
            rate.request(&credential, &holder, req.unspent, req.wanted, now)
        };
        if req.secondary && req.limited_until_ms > now {
            tracing::warn!(credential = %credential, until_ms = req.limited_until_ms, "secondary rate limit: pausing the credential fleet-wide");
        }
        Ok(PermitAnswer {
            grant,
            source_token: token,
        })
    }

    /// The pauses in force, for heartbeats.
    pub fn rate_pauses(&self) -> Vec<RatePause> {
        self.rate
            .lock()
            .pauses(self.now_ms())
            .into_iter()
            .map(|(credential_id, until_ms)| RatePause {
                credential_id,
                until_ms,
            })
            .collect()
    }

    /// The lease's task ended: its unspent permits go back to the budget.
    pub fn release_permits(&self, lease: &Lease) {
        self.rate.lock().release(&holder_id(lease));
    }

    /// The token requests for `repo` carry now: its own, or its organisation's (an App's
    /// installation token minted when it nears expiry).
    async fn current_token(&self, org: &OrgRecord, repo: &RepoRecord) -> CoreResult<Secret> {
        match &repo.sealed_token {
            Some(s) => self.secrets.open(SealContext::RepoToken(&repo.id), s),
            None => match &org.credential {
                Some(OrgCredential::Token { sealed_token }) => self
                    .secrets
                    .open(SealContext::OrgCredential(&org.id), sealed_token),
                _ => Ok(self.forge_token(org).await?.unwrap_or_default()),
            },
        }
    }
}
