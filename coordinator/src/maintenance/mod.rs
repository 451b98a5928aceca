//! Maintenance of snapshot repositories: retention runs, forget and prune
//! (`maintenance_runs.rs`); deleting backups on request, purging repositories and
//! organisations, disconnecting and reconnecting organisations (`purge_runs.rs`); escrow
//! agreements that hold backups against retention (`escrow_holds.rs`); beside the pure
//! retention plan they act on (`retention/`: which backups a policy keeps, and why).

pub mod escrow_holds;
pub mod maintenance_runs;
pub mod purge_runs;
pub mod retention;
