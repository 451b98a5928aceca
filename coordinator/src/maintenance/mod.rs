//! Maintenance of snapshot repositories: retention runs, forget and prune, deleting and purging
//! backups, connecting and disconnecting organisations (`maintenance_runs.rs`), and escrow
//! agreements that hold backups against retention (`escrow_holds.rs`), beside the pure retention
//! plan they act on (`retention/`: which backups a policy keeps, and why).

pub mod escrow_holds;
pub mod maintenance_runs;
pub mod retention;
