//! The task queue and its leases: the pure parts (which task goes next and its ready index,
//! the lease state machine, the worker registry, progress fan-out) beside the shell that runs them against the
//! store (`lifecycle.rs`, `requeue.rs`), the worker fleet's heartbeats and re-registration (`fleet.rs`), and
//! the task kinds (`kinds/`).

mod active_tasks;
pub mod fleet;
pub mod kinds;
pub mod lease_access;
mod lease_choice;
pub mod lease_state;
pub mod lifecycle;
pub mod queue_order;
pub mod requeue;
pub mod task_history;
pub mod task_progress;
pub mod task_queue;
pub mod worker_registry;
