//! On-push backups: registering and removing a repository's push webhook, taking deliveries
//! (signature checked with the repository's sealed secret, pushes to the default branch
//! collapsed into bursts: `webhook_bursts.rs`), and starting the backups of bursts that are due.

use crate::model::RepoId;
use crate::secrets::SealContext;

use repovault_common::crypto::random_secret;

use crate::error::{CoreError, CoreResult};
use crate::model::{OnPushHook, RepoRecord, Trigger};
use crate::schedule::webhook_bursts::{self as webhooks, Delivery};
use crate::schedule::{self, BackupKind, TypeInputs};
use crate::store::Batch;
use crate::tasks::queue_order::PRIORITY_SCHEDULED;

use crate::schedule::schedule_runs::Schedules;

/// Bytes of a generated webhook secret (256 bits, hex-encoded: 64 characters).
const WEBHOOK_SECRET_BYTES: usize = 32;

/// What a webhook delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Signature missing or wrong (401).
    Refused(String),
    /// Verified push to the default branch (202); `opened`: it opened a burst.
    Accepted { opened: bool },
    /// Verified, nothing to do (204).
    Ignored(String),
}

impl Schedules {
    /// `repo set --on-push` / `--no-on-push`: registers (or removes) a push webhook on the
    /// GitHub repository, its secret generated here and kept sealed.
    pub async fn set_repo_on_push(&self, full_name: &str, enable: bool) -> CoreResult<RepoRecord> {
        let mut repo = self.registry.repo_named(full_name).await?;
        let org = self
            .store
            .org(&repo.org_id)
            .await?
            .ok_or_else(|| crate::error::not_found("organisation", repo.org_id.clone()))?;
        // Invalid input (exit 2), not a failure: no state of the organisation makes it valid.
        if !org.provider.is_forge() {
            return Err(CoreError::InvalidArgument(format!(
                "on-push backups need a forge organisation; {:?} is {}",
                org.name, org.provider
            )));
        }
        let hooks = self.forge.push_hooks(&org, &repo.name).await?;
        if enable {
            if repo.on_push.is_some() {
                return Ok(repo);
            }
            let url = self.hook_url(&repo.id).ok_or_else(|| {
                CoreError::FailedPrecondition(
                    "on-push backups need the coordinator's HTTP port (http_listen, and http_public_url as GitHub reaches it)".into(),
                )
            })?;
            let secret = random_secret(WEBHOOK_SECRET_BYTES);
            // The secret is stored before the hook exists: GitHub pings a new hook at once,
            // and that ping must verify. Hook id 0 until the forge answers.
            let sealed_secret = self
                .secrets
                .seal(SealContext::WebhookSecret(&repo.id), &secret);
            let before = repo.clone();
            repo.on_push = Some(OnPushHook {
                hook_id: 0,
                sealed_secret: sealed_secret.clone(),
            });
            let mut batch = Batch::default();
            batch.repo(&repo);
            self.store.apply(batch).await?;
            let created = match hooks.create(&url, &secret).await {
                Ok(id) => id,
                Err(e) => {
                    let mut batch = Batch::default();
                    batch.repo(&before);
                    self.store.apply(batch).await?;
                    return Err(crate::forge_access::org_discovery::forge_error(
                        format!("creating a push webhook on {full_name}"),
                        e,
                    ));
                }
            };
            let hook_id =
                created.ok_or_else(|| CoreError::Internal("the forge's hook has no id".into()))?;
            repo.on_push = Some(OnPushHook {
                hook_id,
                sealed_secret,
            });
            tracing::info!(repo = %repo.full_name(), hook_id, "push webhook registered");
        } else {
            let Some(h) = repo.on_push.take() else {
                return Ok(repo);
            };
            match hooks.delete(h.hook_id).await {
                Ok(()) => {}
                Err(e) => {
                    return Err(crate::forge_access::org_discovery::forge_error(
                        format!("removing the push webhook of {full_name}"),
                        e,
                    ));
                }
            }
            tracing::info!(repo = %repo.full_name(), hook_id = h.hook_id, "push webhook removed");
        }
        let mut batch = Batch::default();
        batch.repo(&repo);
        self.store.apply(batch).await?;
        Ok(repo)
    }

    /// The repository a delivery is for: `repo`, the hook URL's query (repovault's id). The
    /// body is not read before its signature verifies with that repository's secret; a
    /// delivery without `repo` (an App's webhook) is refused.
    async fn webhook_repo(&self, repo_hint: Option<&str>) -> CoreResult<Option<RepoRecord>> {
        match repo_hint {
            // A hint that is not an id names no repository.
            Some(id) => match RepoId::from_wire(id, "repo") {
                Ok(id) => Ok(self.store.repo(&id).await?),
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// One webhook delivery. Never logs the body or the signature.
    pub async fn webhook_delivery(
        &self,
        repo_hint: Option<&str>,
        event: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> CoreResult<WebhookOutcome> {
        let Some(repo) = self.webhook_repo(repo_hint).await? else {
            // Unknown repositories are refused like bad signatures: nothing tells a prober
            // which repositories exist.
            return Ok(WebhookOutcome::Refused(
                "no repository with push backups".into(),
            ));
        };
        let Some(hook) = &repo.on_push else {
            return Ok(WebhookOutcome::Refused(
                "no repository with push backups".into(),
            ));
        };
        let secret = self
            .secrets
            .open(SealContext::WebhookSecret(&repo.id), &hook.sealed_secret)?;
        if let Err(e) = webhooks::verify_signature(secret.expose().as_bytes(), signature, body) {
            return Ok(WebhookOutcome::Refused(e.to_string()));
        }
        let payload: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return Ok(WebhookOutcome::Ignored("the body is not JSON".into())),
        };
        match webhooks::classify(event, &payload) {
            Delivery::Ignored(why) => Ok(WebhookOutcome::Ignored(why)),
            Delivery::Push => {
                if repo.deleted {
                    return Ok(WebhookOutcome::Ignored("the repository is deleted".into()));
                }
                let now = self.now_ms();
                let delay = self.push_delay_ms();
                let opened = self.bursts.lock().push(&repo.id, now, delay);
                metrics::counter!("repovault_webhook_pushes_total", "opened" => opened.to_string())
                    .increment(1);
                Ok(WebhookOutcome::Accepted { opened })
            }
        }
    }

    /// Starts the backups of the bursts due now (incremental, or full when the type policy
    /// says so). Returns how many were enqueued.
    pub async fn start_push_backups(&self) -> CoreResult<usize> {
        let now = self.now_ms();
        let due = self.bursts.lock().due(now);
        let mut n = 0;
        for repo_id in due {
            let Some(repo) = self.store.repo(&repo_id).await? else {
                continue;
            };
            let Some(org) = self.store.org(&repo.org_id).await? else {
                continue;
            };
            if org.disconnected || repo.deleted {
                continue;
            }
            let stats = self.store.stats(&repo.id).await?;
            let backup_type = schedule::backup_type(&TypeInputs {
                kind: BackupKind::OnPush,
                last_success_at_ms: stats.last_success_at_ms,
                last_full_at_ms: stats.last_full_at_ms,
                connected_at_ms: org.full_after_ms,
                full_every_days: org.schedule.full_every_days.unwrap_or(0),
                now_ms: now,
            });
            self.backups
                .enqueue_backup_with(
                    &repo,
                    backup_type,
                    Trigger::Push,
                    PRIORITY_SCHEDULED,
                    Batch::default(),
                )
                .await?;
            n += 1;
        }
        Ok(n)
    }
}
