//! Forgetting snapshots and pruning the data no snapshot references.

use rustic_core::repofile::SnapshotId;

use super::{RepoError, SnapshotRepo, map_err, parse_snapshot_id};

/// What a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Packs marked earlier and deleted by this run, and their bytes.
    pub deleted_packs: u64,
    pub deleted_bytes: u64,
    /// Unused bytes marked for deletion by this run (deleted by a later run).
    pub marked_bytes: u64,
    pub repacked_packs: u64,
    /// Packs marked for deletion and still kept (too recently marked).
    pub still_marked_packs: u64,
    /// Packs no index lists, kept because younger than `keep_delete` (a later prune deletes
    /// them).
    pub young_unindexed_packs: u64,
}

impl PruneOutcome {
    /// Whether a later prune has packs to delete.
    pub fn second_phase_due(&self) -> bool {
        self.marked_bytes > 0
            || self.repacked_packs > 0
            || self.still_marked_packs > 0
            || self.young_unindexed_packs > 0
    }
}

/// The body of [`SnapshotRepo::forget`].
pub(super) fn forget(store: &SnapshotRepo, snapshot_ids: &[String]) -> Result<(), RepoError> {
    let ids = snapshot_ids
        .iter()
        .map(|s| parse_snapshot_id(s).map(SnapshotId::from))
        .collect::<Result<Vec<_>, _>>()?;
    store
        .repo
        .delete_snapshots(&ids)
        .map_err(|e| map_err(e, store.location(), "deleting snapshots"))
}

/// The body of [`SnapshotRepo::prune`]: the unindexed packs first (`unindexed.rs`), then
/// rustic_core's two-phase prune.
pub(super) fn prune(
    store: &SnapshotRepo,
    keep_delete: std::time::Duration,
) -> Result<PruneOutcome, RepoError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let unindexed = super::unindexed::remove_unindexed_packs(store, keep_delete, now_ms)?;
    let span = rustic_core::jiff::Span::new()
        .try_seconds(i64::try_from(keep_delete.as_secs()).unwrap_or(i64::MAX))
        .map_err(|e| RepoError::InvalidInput(format!("keep_delete: {e}")))?;
    let opts = rustic_core::PruneOptions::default().keep_delete(span);
    let plan = store
        .repo
        .prune_plan(&opts)
        .map_err(|e| map_err(e, store.location(), "planning a prune"))?;
    let stats = &plan.stats;
    let size = stats.size_sum();
    let outcome = PruneOutcome {
        deleted_packs: stats.packs_to_delete.remove + unindexed.deleted_packs,
        deleted_bytes: stats.size_to_delete.remove + unindexed.deleted_bytes,
        marked_bytes: size.remove + size.repackrm,
        repacked_packs: stats.packs.repack,
        still_marked_packs: stats.packs_to_delete.keep,
        young_unindexed_packs: unindexed.young_packs,
    };
    store
        .repo
        .prune(&opts, plan)
        .map_err(|e| map_err(e, store.location(), "pruning"))?;
    Ok(outcome)
}
