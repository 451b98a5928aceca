//! The coordinator, composed: one value holding every component, built in dependency order. It owns
//! no state and has no behaviour of its own beyond its construction and its clock; each component
//! owns its state and lock (the queue its task table, the schedules their bursts, the reconciler
//! its sweep failures) and takes the components it needs as `Arc`s at construction, so the graph
//! has no cycles: the registry and the catalog at the bottom, the task queue above them (the task
//! kinds write through the verification ledger), the features that enqueue (backups, restores,
//! schedules, verification runs, drills) above the queue, and the views (health) on top. The gRPC
//! services and the background loops reach components through it.

#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use opendal::Operator;

use repovault_common::crypto::MasterKey;
use repovault_common::storage::StorageConfig;
use repovault_common::timing::Timing;

use crate::catalog::catalog_objects::Catalog;
use crate::clock::Clock;
use crate::error::{CoreError, CoreResult};
use crate::forge_access::ForgeAccess;

use crate::catalog::org_registry::Registry;
use crate::secrets::Secrets;
use crate::store::Store;
use crate::tasks::kinds::{Backups, Restores};
use crate::tasks::task_queue::{TaskQueue, TaskQueueParts};
use crate::verification::verify_ledger::VerifyLedger;

pub use crate::tasks::fleet::{Registration, WorkerHello};
pub use crate::tasks::kinds::RestoreRequest;
pub use crate::tasks::lifecycle::CompletionOutcome;

/// See the module documentation.
pub struct Coordinator {
    pub store: Store,
    /// The clock of leases, reaping, retention, schedules and health (`clock.rs`).
    pub clock: Arc<dyn Clock>,
    /// The default location's operator (the configured storage): readiness probes it.
    pub storage: Operator,
    pub storage_config: StorageConfig,
    /// Where each organisation's snapshots live (`storage_locations/`).
    pub locations: Arc<crate::storage_locations::StorageLocations>,
    /// Copies every completed backup to the organisation's second location (`second_copy/`).
    pub second_copy: Arc<crate::second_copy::SecondCopy>,
    /// Locks escrowed repositories' objects in storage that can (`escrow_lock/`).
    pub escrow_locks: Arc<crate::escrow_lock::EscrowLocks>,
    /// The workers the queue wants, for autoscalers (`scaling/`).
    pub scaling: Arc<crate::scaling::FleetScaling>,
    /// Moves an organisation's backups between locations (`storage_move/`).
    pub storage_move: Arc<crate::storage_move::StorageMove>,
    /// Catalog objects and snapshot repository creation (`catalog/`).
    pub catalog: Arc<Catalog>,
    /// Organisations, repositories and backup history (`catalog/org_registry.rs`).
    pub registry: Arc<Registry>,
    /// Forge credentials, installation tokens, the rate budget, discovery (`forge_access/`).
    pub forge: Arc<ForgeAccess>,
    pub timing: Timing,
    /// The task queue: active tasks, leases, workers, progress (`tasks/task_queue.rs`).
    pub queue: Arc<TaskQueue>,
    /// Worker registration, heartbeats, rate permits (`tasks/fleet.rs`).
    pub fleet: Arc<crate::tasks::fleet::Fleet>,
    /// Worker pools' join tokens and the door's memory of them (`worker_pools/`).
    pub worker_pools: Arc<crate::worker_pools::WorkerPools>,
    /// Backup requests (`tasks/kinds/backup_requests.rs`).
    pub backups: Arc<Backups>,
    /// Restore requests (`tasks/kinds/restore_requests.rs`).
    pub restores: Arc<Restores>,
    /// What verifications write, and their options (`verification/verify_ledger.rs`).
    pub ledger: Arc<VerifyLedger>,
    /// `backup verify` and the read-back rotation (`verification/verify_runs.rs`).
    pub verification: Arc<crate::verification::verify_runs::VerifyRuns>,
    /// Restore drills (`verification/drills.rs`).
    pub drills: Arc<crate::verification::drills::Drills>,
    /// Retention, prunes, deletions and purges (`maintenance/maintenance_runs.rs`).
    pub maintenance: Arc<crate::maintenance::maintenance_runs::Maintenance>,
    /// Escrow agreements and the admin calls that delete (`maintenance/escrow_holds.rs`).
    pub escrow: Arc<crate::maintenance::escrow_holds::Escrow>,
    /// The health view (`health/health_view.rs`).
    pub health: Arc<crate::health::health_view::Health>,
    /// Cancelled when the coordinator stops: long-polls and streams end, so connections close
    /// and the store is released.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Download links: their signing key and base URL (`downloads.rs`).
    pub downloads: Arc<crate::downloads::Downloads>,
    /// Scheduled and on-push backups: the clock, push bursts (`schedule/schedule_runs.rs`).
    pub schedules: Arc<crate::schedule::schedule_runs::Schedules>,
    /// Forgets uncommitted snapshots and sweeps failed writes (`catalog/reconcile.rs`).
    pub reconciler: Arc<crate::catalog::reconcile::Reconciler>,
}

/// What a [`Coordinator`] is built from (read from the configuration by `server.rs`).
pub struct CoordinatorParts {
    pub store: Store,
    /// The one clock every component reads (`clock.rs`).
    pub clock: Arc<dyn Clock>,
    pub storage_config: StorageConfig,
    pub master: MasterKey,
    pub timing: Timing,
    pub max_attempts: u32,
}

impl Coordinator {
    pub async fn new(
        parts: CoordinatorParts,
        forget_tx: tokio::sync::mpsc::UnboundedSender<crate::catalog::reconcile::ForgetRequest>,
    ) -> CoreResult<Arc<Self>> {
        let storage = parts
            .storage_config
            .operator()
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        let secrets = Arc::new(Secrets::new(parts.master.clone()));
        let locations = Arc::new(crate::storage_locations::StorageLocations::new(
            parts.storage_config.clone(),
            parts.store.clone(),
            secrets.clone(),
            parts.clock.clone(),
        ));
        let downloads = Arc::new(crate::downloads::Downloads::new(
            &parts.master,
            parts.store.clone(),
            locations.clone(),
            parts.clock.clone(),
        ));
        let catalog = Arc::new(Catalog::new(
            parts.store.clone(),
            locations.clone(),
            secrets.clone(),
        ));
        let registry = Arc::new(Registry::new(
            parts.store.clone(),
            parts.clock.clone(),
            secrets.clone(),
            catalog.clone(),
        ));
        let forge = Arc::new(ForgeAccess::new(
            parts.store.clone(),
            secrets.clone(),
            parts.clock.clone(),
        ));
        let ledger = Arc::new(VerifyLedger::new(
            parts.store.clone(),
            catalog.clone(),
            registry.clone(),
        ));
        let stopping = tokio_util::sync::CancellationToken::new();
        let queue = Arc::new(
            TaskQueue::load(TaskQueueParts {
                timing: parts.timing,
                max_attempts: parts.max_attempts,
                store: parts.store.clone(),
                clock: parts.clock.clone(),
                catalog: catalog.clone(),
                secrets: secrets.clone(),
                forge: forge.clone(),
                locations: locations.clone(),
                registry: registry.clone(),
                ledger: ledger.clone(),
                forget_tx,
                stopping: stopping.clone(),
            })
            .await?,
        );
        catalog.repair_catalog().await;
        let backups = Arc::new(Backups::new(
            queue.clone(),
            registry.clone(),
            parts.store.clone(),
        ));
        let schedules = Arc::new(crate::schedule::schedule_runs::Schedules::new(
            parts.clock.clone(),
            parts.store.clone(),
            queue.clone(),
            registry.clone(),
            backups.clone(),
            forge.clone(),
            secrets.clone(),
        ));
        let maintenance = Arc::new(crate::maintenance::maintenance_runs::Maintenance::new(
            parts.store.clone(),
            parts.clock.clone(),
            queue.clone(),
            catalog.clone(),
            registry.clone(),
            locations.clone(),
        ));
        let escrow = Arc::new(crate::maintenance::escrow_holds::Escrow::new(
            parts.store.clone(),
            parts.clock.clone(),
            registry.clone(),
            catalog.clone(),
            maintenance.clone(),
        ));
        let reconciler = Arc::new(crate::catalog::reconcile::Reconciler::new(
            parts.store.clone(),
            parts.clock.clone(),
            parts.timing,
            locations.clone(),
            catalog.clone(),
            queue.clone(),
        ));
        let drills = Arc::new(crate::verification::drills::Drills {
            queue: queue.clone(),
            registry: registry.clone(),
            store: parts.store.clone(),
            ledger: ledger.clone(),
        });
        let health = Arc::new(crate::health::health_view::Health::new(
            parts.store.clone(),
            queue.clone(),
            registry.clone(),
            schedules.clone(),
            drills.clone(),
            ledger.clone(),
            reconciler.clone(),
        ));
        let storage_move = Arc::new(crate::storage_move::StorageMove::new(
            locations.clone(),
            parts.store.clone(),
            maintenance.clone(),
        ));
        let second_copy = Arc::new(crate::second_copy::SecondCopy::new(
            parts.store.clone(),
            parts.clock.clone(),
            locations.clone(),
            catalog.clone(),
        ));
        let escrow_locks = Arc::new(crate::escrow_lock::EscrowLocks::new(
            parts.store.clone(),
            parts.clock.clone(),
            locations.clone(),
        ));
        let scaling = Arc::new(crate::scaling::FleetScaling::new(queue.clone()));
        let worker_pools = Arc::new(
            crate::worker_pools::WorkerPools::load(
                parts.store.clone(),
                parts.clock.clone(),
                queue.clone(),
                forge.clone(),
            )
            .await?,
        );
        Ok(Arc::new(Self {
            worker_pools,
            scaling,
            health,
            drills,
            reconciler,
            maintenance,
            escrow,
            downloads,
            fleet: Arc::new(crate::tasks::fleet::Fleet::new(
                queue.clone(),
                forge.clone(),
            )),
            verification: Arc::new(crate::verification::verify_runs::VerifyRuns {
                queue: queue.clone(),
                registry: registry.clone(),
                store: parts.store.clone(),
                ledger: ledger.clone(),
            }),
            backups,
            schedules,
            restores: Arc::new(Restores::new(
                queue.clone(),
                registry.clone(),
                parts.store.clone(),
                secrets.clone(),
                forge.clone(),
            )),
            clock: parts.clock,
            store: parts.store,
            storage,
            storage_config: parts.storage_config,
            storage_move,
            second_copy,
            escrow_locks,
            locations,
            forge,
            registry,
            catalog,
            timing: parts.timing,
            queue,
            ledger,
            stopping,
        }))
    }

    /// Now, on the coordinator's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
