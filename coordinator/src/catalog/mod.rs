//! The catalog: organisations and repositories (`org_registry.rs`), the snapshot repositories
//! the coordinator creates (`snapshot_repos.rs`), the create-only catalog objects of backup
//! outcomes (`catalog_objects.rs`), browsing a backup's metadata (`browse.rs`), and the reconciler
//! that forgets uncommitted snapshots and sweeps failed writes (`reconcile.rs`,
//! `temporaries.rs`).

pub mod browse;
pub mod catalog_objects;
pub mod org_registry;
pub mod reconcile;
pub mod snapshot_repos;
pub mod temporaries;
