//! Maintenance of snapshot repositories: retention runs, forget and prune, deleting and purging
//! backups, connecting and disconnecting organisations (`maintenance_runs.rs`), and escrow
//! agreements that hold backups against retention (`escrow_holds.rs`). The pure retention plan
//! is `crate::retention`.

pub mod escrow_holds;
pub mod maintenance_runs;
