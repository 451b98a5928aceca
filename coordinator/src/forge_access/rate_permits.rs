//! The fleet-wide rate budget as the worker service sees it: a lease's first grant, refills
//! (with reports of what workers saw, and the credential's current token), pauses for
//! heartbeats, and giving a lease's permits back when its task ends. The rules are in
//! [`crate::forge_access::rate_budgets`]; this is the glue to leases, organisations and tokens.

use repovault_common::forge::github::{app_credential_id, token_credential_id};
use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;

use crate::error::{CoreError, CoreResult, not_found};
use crate::forge_access::rate_budgets::{Grant, Reading};
use crate::model::{OrgCredential, OrgRecord, Provider, RepoRecord};
use crate::secrets::SealContext;

use crate::core::Core;
use crate::tasks::lifecycle::check_holder;

/// The holder id of a lease in the budget: one per attempt, so a re-leased task is a new holder.
pub fn holder_id(tok: &pb::LeaseToken) -> String {
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

fn to_proto(g: Grant) -> pb::RateGrant {
    pb::RateGrant {
        permits: g.permits,
        paused_until_ms: g.paused_until_ms,
        retry_at_ms: g.retry_at_ms,
    }
}

impl Core {
    /// The first grant of a new lease on a forge with a credential; `None` for plain git or no
    /// credential.
    pub(crate) fn lease_grant(
        &self,
        access: &pb::RepoAccess,
        lease: &pb::LeaseToken,
    ) -> Option<pb::RateGrant> {
        if access.provider == i32::from(Provider::Git) || access.credential_id.is_empty() {
            return None;
        }
        let g = self
            .rate
            .lock()
            .lease(&access.credential_id, &holder_id(lease), self.now_ms());
        Some(to_proto(g))
    }

    /// A lease's refill: records its report, answers a grant and the credential's current token.
    /// Refused (FAILED_PRECONDITION) unless the lease is the task's current, unexpired attempt.
    pub async fn request_permits(
        &self,
        req: &pb::RequestPermitsRequest,
    ) -> CoreResult<pb::RequestPermitsResponse> {
        let tok = req.lease.clone().unwrap_or_default();
        let (org_id, repo_id) = {
            let q = self.queue.lock().await;
            let t = q.active.get(&tok.task_id).ok_or_else(|| {
                CoreError::FailedPrecondition(format!(
                    "lease of task {} attempt {} is stale: the task is no longer active",
                    tok.task_id, tok.attempt
                ))
            })?;
            check_holder(t, &req.worker_id, &tok)?;
            t.lease.check(tok.attempt, self.now_ms())?;
            (t.org_id.clone(), t.repo_id.clone())
        };
        let org = self
            .store
            .org(&org_id)
            .await?
            .ok_or_else(|| not_found("organisation", org_id.clone()))?;
        let repo = self
            .store
            .repo(&repo_id)
            .await?
            .ok_or_else(|| not_found("repository", repo_id.clone()))?;
        let mut token = self.current_token(&org, &repo).await?;
        let credential = credential_id(&org, &repo, &token);
        if !req.rejected_token_id.is_empty()
            && req.rejected_token_id == token_credential_id(&token)
            && let Some(OrgCredential::App { .. }) = &org.credential
            && repo.sealed_token.is_none()
        {
            // The forge refused the token we would hand out: mint another (the cache keeps
            // one per installation, so concurrent refusals share one mint).
            tracing::info!(org = %org.name, credential = %credential, "installation token refused by the forge: minting a new one");
            self.forget_forge_token(&org);
            token = self.current_token(&org, &repo).await?;
        }
        let holder = holder_id(&tok);
        let now = self.now_ms();
        let grant = {
            let mut rate = self.rate.lock();
            if let Some(r) = &req.reading
                && (r.resource.is_empty() || r.resource == "core")
            {
                rate.report(
                    &credential,
                    Reading {
                        limit: r.limit,
                        remaining: r.remaining,
                        reset_s: r.reset,
                    },
                    now,
                );
            }
            if req.limited_until_ms > 0 {
                rate.limited(&credential, req.limited_until_ms, req.secondary);
            }
            rate.request(&credential, &holder, req.unspent, req.wanted, now)
        };
        if req.secondary && req.limited_until_ms > now {
            tracing::warn!(credential = %credential, until_ms = req.limited_until_ms, "secondary rate limit: pausing the credential fleet-wide");
        }
        Ok(pb::RequestPermitsResponse {
            grant: Some(to_proto(grant)),
            source_token: token.expose().to_string(),
        })
    }

    /// The pauses in force, for heartbeats.
    pub fn rate_pauses(&self) -> Vec<pb::RatePause> {
        self.rate
            .lock()
            .pauses(self.now_ms())
            .into_iter()
            .map(|(credential_id, until_ms)| pb::RatePause {
                credential_id,
                until_ms,
            })
            .collect()
    }

    /// The lease's task ended: its unspent permits go back to the budget.
    pub fn release_permits(&self, lease: &pb::LeaseToken) {
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
