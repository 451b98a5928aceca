//! The worker: session (register, heartbeat, drain), task runner and the tasks: backup and
//! restore, with gix for git and rustic_core for the snapshot repository.

pub mod cache;
pub mod commit;
pub mod coordinator_client;
pub mod forge;
pub mod git;
pub mod lfs;
pub mod local_paths;
pub mod progress;
pub mod session;
pub mod storage_operators;
pub mod tasks;
pub mod verify;
pub mod worker_metrics;
