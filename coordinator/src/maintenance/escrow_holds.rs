//! Escrow agreements. An agreement covers one repository; while it is active (not
//! released, not past its `until`), every finished backup of the repository is escrowed:
//! the ones that existed when it was enabled and every one completed since. The flag is derived
//! from the agreement records rather than written into each backup, because catalog objects are
//! create-only (an outcome never changes) and a release must clear it everywhere at once.
//!
//! Enabling adds a restic key to the repository's snapshot repository alone (its master key
//! under a new random password; the organisation key stays) and hands the password back once,
//! for the escrow agent. It is never stored nor logged.

use crate::model::RepoId;
use std::sync::Arc;

use repovault_common::crypto::random_secret;
use repovault_common::secret::Secret;

use crate::admin_roles::Role;
use crate::error::{CoreError, CoreResult};
use crate::maintenance::retention::RetentionPolicy;
use crate::model::{BackupRecord, EscrowRecord, OrgRecord, Status};
use crate::store::Batch;

use crate::catalog::catalog_objects::Catalog;
use crate::catalog::org_registry::Registry;
use crate::clock::Clock;
use crate::maintenance::maintenance_runs::{Maintenance, first_line};
use crate::store::Store;

/// Bytes of an escrow key: 256 bits, hex-encoded as the restic password (as organisation keys).
const ESCROW_KEY_BYTES: usize = 32;
/// An agreement's text (parties, reference) is a record field, not a document store.
const MAX_AGREEMENT_BYTES: usize = 16 * 1024;

/// Escrow agreements, retention changes and the admin calls that delete: each checks the agreements before it asks maintenance to remove anything.
pub struct Escrow {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) maintenance: Arc<Maintenance>,
}

impl Escrow {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        registry: Arc<Registry>,
        catalog: Arc<Catalog>,
        maintenance: Arc<Maintenance>,
    ) -> Self {
        Self {
            store,
            clock,
            registry,
            catalog,
            maintenance,
        }
    }

    /// Whether a backup is escrowed at `now_ms` (for listings: `is_escrowed`).
    pub async fn is_escrowed(&self, b: &BackupRecord, now_ms: i64) -> CoreResult<bool> {
        Ok(b.status == Status::Completed
            && self
                .store
                .active_escrow(&b.repo_id, now_ms)
                .await?
                .is_some())
    }

    /// Whether each backup is escrowed now (`out[i]` is `records[i]`), reading each
    /// repository's agreements once.
    pub async fn escrowed(&self, records: &[BackupRecord]) -> CoreResult<Vec<bool>> {
        let now = self.clock.now_ms();
        let mut active: std::collections::HashMap<&RepoId, bool> = Default::default();
        let mut out = Vec::with_capacity(records.len());
        for b in records {
            let a = match active.get(&b.repo_id) {
                Some(a) => *a,
                None => {
                    let a = self.store.active_escrow(&b.repo_id, now).await?.is_some();
                    active.insert(&b.repo_id, a);
                    a
                }
            };
            out.push(a && b.status == Status::Completed);
        }
        Ok(out)
    }

    /// `escrow enable`: records the agreement and adds a restic key for this repository alone.
    /// Returns the agreement and the new key's password (to be written for the agent, 0600).
    pub async fn enable_escrow(
        self: &Arc<Self>,
        full_name: &str,
        agreement: &str,
        until_ms: Option<i64>,
        created_by: &str,
    ) -> CoreResult<(EscrowRecord, Secret)> {
        let agreement = agreement.trim();
        if agreement.is_empty() {
            return Err(CoreError::InvalidArgument(
                "the agreement (parties and reference) must not be empty".into(),
            ));
        }
        if agreement.len() > MAX_AGREEMENT_BYTES {
            return Err(CoreError::InvalidArgument(format!(
                "the agreement is {} bytes; at most {MAX_AGREEMENT_BYTES}",
                agreement.len()
            )));
        }
        let now = self.clock.now_ms();
        if until_ms.is_some_and(|u| u <= now) {
            return Err(CoreError::InvalidArgument("--until is in the past".into()));
        }
        let repo = self.registry.repo_named(full_name).await?;
        let Some(sr) = self.catalog.open_repo(&repo.id).await? else {
            return Err(CoreError::FailedPrecondition(format!(
                "{full_name} has no snapshot repository yet: back it up once before escrow"
            )));
        };
        let password = random_secret(ESCROW_KEY_BYTES);
        let pw = password.clone();
        let key_id = tokio::task::spawn_blocking(move || sr.add_key(&pw))
            .await
            .map_err(|e| CoreError::Internal(format!("adding the escrow key panicked: {e}")))?
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        let record = EscrowRecord {
            id: format!("esc-{}", &random_secret(8).expose()[..12]),
            org_id: repo.org_id.clone(),
            repo_id: repo.id.clone(),
            repo_full_name: repo.full_name(),
            agreement: agreement.to_string(),
            created_by: created_by.to_string(),
            created_at_ms: now,
            until_ms,
            released_at_ms: None,
            released_by: None,
            key_id: Some(key_id),
        };
        let mut batch = Batch::default();
        batch.escrow(&record);
        self.store.apply(batch).await?;
        tracing::info!(repo = %record.repo_full_name, escrow = %record.id, agreement = %first_line(&record.agreement), "escrow enabled, key added");
        Ok((record, password))
    }

    /// `escrow release`: ends every active agreement of the repository now. The escrow key stays
    /// in the snapshot repository (the agent keeps the access it was given).
    pub async fn release_escrow(
        &self,
        full_name: &str,
        released_by: &str,
    ) -> CoreResult<Vec<EscrowRecord>> {
        let repo = self.registry.repo_named(full_name).await?;
        let now = self.clock.now_ms();
        let mut released = Vec::new();
        let mut batch = Batch::default();
        for mut e in self.store.escrows(Some(&repo.id)).await? {
            if e.window().is_active(now) {
                e.released_at_ms = Some(now);
                e.released_by = Some(released_by.to_string());
                batch.escrow(&e);
                released.push(e);
            }
        }
        if released.is_empty() {
            return Err(CoreError::FailedPrecondition(format!(
                "{full_name} has no active escrow agreement"
            )));
        }
        self.store.apply(batch).await?;
        tracing::info!(repo = %repo.full_name(), agreements = released.len(), "escrow released");
        Ok(released)
    }

    /// Every agreement (of one repository when named), newest first, with whether it is active.
    pub async fn list_escrows(
        &self,
        full_name: Option<&str>,
    ) -> CoreResult<Vec<(EscrowRecord, bool)>> {
        let repo_id = match full_name {
            Some(n) if !n.is_empty() => Some(self.registry.repo_named(n).await?.id),
            _ => None,
        };
        let now = self.clock.now_ms();
        let mut out: Vec<(EscrowRecord, bool)> = self
            .store
            .escrows(repo_id.as_ref())
            .await?
            .into_iter()
            .map(|e| {
                let active = e.window().is_active(now);
                (e, active)
            })
            .collect();
        out.sort_by(|(a, _), (b, _)| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }
}

/// Parses `--until`: an RFC 3339 time, or a date `YYYY-MM-DD` meaning the end of that day (UTC).
/// Empty: `None` (until released).
pub fn parse_until(s: &str) -> CoreResult<Option<i64>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.timestamp_millis()));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        CoreError::InvalidArgument(format!(
            "--until {s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"
        ))
    })?;
    let next = d
        .succ_opt()
        .and_then(|n| n.and_hms_opt(0, 0, 0))
        .ok_or_else(|| CoreError::InvalidArgument(format!("--until {s:?} is out of range")))?;
    Ok(Some(next.and_utc().timestamp_millis()))
}

/// A policy change as it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionChange {
    pub old: RetentionPolicy,
    pub new: RetentionPolicy,
    /// Existing backups the new policy drops that the old one kept (removed by the next
    /// retention run).
    pub removes: u64,
}

impl Escrow {
    /// How many existing backups of `org` changing its policy to `new` would remove at
    /// `now_ms`: those the new policy drops and the current one keeps, by the retention
    /// planner over every repository's history. No I/O when `new` keeps all the current one
    /// keeps.
    pub async fn backups_removed_by(
        &self,
        org: &OrgRecord,
        new: &RetentionPolicy,
        now_ms: i64,
    ) -> CoreResult<u64> {
        if new.keeps_all_of(&org.retention) {
            return Ok(0);
        }
        let mut n = 0;
        for repo in self.store.org_repos(&org.id).await? {
            let history = self.maintenance.repo_history(&repo).await?;
            let old = self
                .maintenance
                .plan_under(&repo, org, &history, &org.retention, now_ms)
                .await?;
            let new = self
                .maintenance
                .plan_under(&repo, org, &history, new, now_ms)
                .await?;
            n += crate::maintenance::retention::newly_dropped(&old, &new).len() as u64;
        }
        Ok(n)
    }

    /// `org retention ORG ...` as a caller with `role`. A change that would remove existing
    /// backups now (shortening: see [`Coordinator::backups_removed_by`]) needs the admin role and
    /// `confirm`, and the refusal says how many would go: retention removes backups as surely
    /// as `backup delete`, which is the admin's. Lengthening, or shortening that removes
    /// nothing, stays the operator's.
    pub async fn change_retention(
        &self,
        name: &str,
        new: RetentionPolicy,
        role: Role,
        confirm: bool,
    ) -> CoreResult<RetentionChange> {
        let org = self.registry.org_named(name).await?;
        let removes = self
            .backups_removed_by(&org, &new, self.clock.now_ms())
            .await?;
        if removes > 0 {
            let what = format!(
                "the retention policy {} would remove {removes} existing backups of {} now (the current policy, {}, keeps them)",
                new.describe(),
                org.name,
                org.retention.describe()
            );
            if role < Role::Admin {
                return Err(CoreError::PermissionDenied(format!(
                    "{what}: shortening retention needs the admin role (the caller has the {role} role)"
                )));
            }
            if !confirm {
                return Err(CoreError::InvalidArgument(format!(
                    "{what}: repeat with --confirm to remove them"
                )));
            }
        }
        let old = org.retention.clone();
        let org = self.maintenance.set_retention(name, new).await?;
        tracing::info!(org = %org.name, old = %old.describe(), new = %org.retention.describe(), removes, "retention policy set");
        Ok(RetentionChange {
            old,
            new: org.retention,
            removes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_a_date_or_a_time() {
        assert_eq!(parse_until("").expect("parses"), None);
        // 2027-01-31 means until the end of that day.
        assert_eq!(
            parse_until("2027-01-31").expect("parses"),
            Some(
                chrono::DateTime::parse_from_rfc3339("2027-02-01T00:00:00Z")
                    .expect("parses")
                    .timestamp_millis()
            )
        );
        assert_eq!(
            parse_until("2027-01-31T12:00:00+01:00").expect("parses"),
            Some(1_801_393_200_000)
        );
        assert!(parse_until("next tuesday").is_err());
        assert!(parse_until("2027-02-30").is_err());
    }
}
