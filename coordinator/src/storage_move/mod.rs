//! `repovault storage move ORG --to NAME`: an organisation's backups move to another storage
//! location, proven there before anything is deleted here.
//!
//! The move claims every repository of the organisation for maintenance (no backup, restore,
//! verification or drill of them is leased meanwhile; a running one makes the move refuse, to be
//! retried), copies each repository's prefix (`mirror.rs`, in the order `mirror_plan.rs` gives,
//! streaming), reads back every object at the destination and checks it, and only then points
//! the organisation at the new location and deletes the old copy. Interrupted anywhere before
//! the switch, the organisation still uses the old location, complete; running the move again
//! copies only what is missing and verifies everything again. A failure to delete the old copy
//! after the switch is reported and loses nothing.

pub mod mirror;
pub mod mirror_plan;

use std::sync::Arc;

use crate::error::{CoreError, CoreResult, not_found};
use crate::maintenance::maintenance_runs::Maintenance;
use crate::model::OrgRecord;
use crate::storage_locations::{DEFAULT_LOCATION, StorageLocations};
use crate::store::{Batch, Store};

/// The move component: no state of its own beyond what it is given.
pub struct StorageMove {
    locations: Arc<StorageLocations>,
    store: Store,
    maintenance: Arc<Maintenance>,
}

/// What a move did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveReport {
    pub from: String,
    pub repos: u64,
    pub copied: u64,
    pub bytes: u64,
    pub verified: u64,
    /// Set when the old copy could not be deleted (the move itself succeeded).
    pub cleanup_error: Option<String>,
}

impl StorageMove {
    pub fn new(
        locations: Arc<StorageLocations>,
        store: Store,
        maintenance: Arc<Maintenance>,
    ) -> Self {
        Self {
            locations,
            store,
            maintenance,
        }
    }

    /// Moves `org_name`'s backups to location `to` (see the module). Returns the organisation
    /// as stored afterwards and what was done; an organisation already there moves nothing.
    pub async fn move_org(&self, org_name: &str, to: &str) -> CoreResult<(OrgRecord, MoveReport)> {
        let org = self
            .store
            .org_by_name(org_name)
            .await?
            .ok_or_else(|| not_found("organisation", org_name))?;
        let from = org
            .storage
            .clone()
            .unwrap_or_else(|| DEFAULT_LOCATION.into());
        let mut report = MoveReport {
            from: from.clone(),
            ..Default::default()
        };
        if from == to {
            return Ok((org, report));
        }
        let dst = self.locations.named_operator(to).await?;
        let src = self.locations.operator(&org).await?;
        let repos = self.store.org_repos(&org.id).await?;
        let mut claims = Vec::with_capacity(repos.len());
        for r in &repos {
            let claim = self.maintenance.claim(&r.id).await.ok_or_else(|| {
                CoreError::FailedPrecondition(format!(
                    "a task of {} is running: move again when it has finished",
                    r.full_name()
                ))
            })?;
            claims.push(claim);
        }
        for r in &repos {
            let prefix = format!("{}/{}/", r.org_id, r.id);
            let m = mirror::mirror(&src, &dst, &prefix, mirror::Mirror::Everything).await.map_err(|e| {
                CoreError::Storage(format!(
                    "moving {} to {to}: {e} (nothing was deleted; the organisation still uses {from}; move again to resume)",
                    r.full_name()
                ))
            })?;
            tracing::info!(repo = %r.full_name(), to, copied = m.copied, bytes = m.bytes, verified = m.verified, "repository copied and verified");
            report.repos += 1;
            report.copied += m.copied;
            report.bytes += m.bytes;
            report.verified += m.verified;
        }
        let mut moved = org.clone();
        moved.storage = (to != DEFAULT_LOCATION).then(|| to.to_string());
        let mut batch = Batch::default();
        batch.org(&moved);
        self.store.apply(batch).await?;
        tracing::info!(org = %moved.name, from = %from, to, repos = report.repos, "organisation moved to another storage location");
        let mut failures = Vec::new();
        for r in &repos {
            let prefix = format!("{}/{}/", r.org_id, r.id);
            match src.delete_with(&prefix).recursive(true).await {
                Ok(()) => {}
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
                Err(e) => failures.push(format!("{prefix}: {e}")),
            }
        }
        if !failures.is_empty() {
            let why = failures.join("; ");
            tracing::warn!(org = %moved.name, from = %from, error = %why, "the old copy could not be deleted");
            report.cleanup_error = Some(why);
        }
        drop(claims);
        Ok((moved, report))
    }
}
