//! Readiness: whether this coordinator can do its work now. It can when its state store answers
//! and its snapshot storage lists; it cannot while either fails, and from the moment it begins
//! to stop. The gRPC health service (what load balancers and Kubernetes gRPC probes ask) and
//! `GET /readyz` report the same verdict; `GET /healthz` stays a liveness probe (the process
//! answers), because restarting a coordinator whose storage is down does not bring the storage
//! back.

use std::sync::Arc;
use std::time::Duration;

use opendal::Operator;
use repovault_common::storage::StorageConfig;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::kv::KvBackend;
use crate::periodic::FirstPass;

/// The current verdict: `None` when ready, else why not (one line, naming what failed).
#[derive(Debug, Default)]
pub struct Readiness {
    not_ready: parking_lot::RwLock<Option<String>>,
}

impl Readiness {
    /// A coordinator starts not ready until its first probe passes.
    pub fn starting() -> Self {
        Self {
            not_ready: parking_lot::RwLock::new(Some("starting".into())),
        }
    }

    /// `Ok` when ready, else why not.
    pub fn verdict(&self) -> Result<(), String> {
        match &*self.not_ready.read() {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    fn set(&self, v: Result<(), String>) -> bool {
        let new = v.err();
        let mut cur = self.not_ready.write();
        let changed = *cur != new;
        *cur = new;
        changed
    }
}

/// The gRPC services whose health follows the verdict ("" is the server as a whole).
pub const SERVICES: &[&str] = &[
    "",
    repovault_proto::v1::admin_service_server::SERVICE_NAME,
    repovault_proto::v1::worker_service_server::SERVICE_NAME,
];

/// One probe: the store answers a read; the storage's root is in place and lists.
async fn probe(
    kv: &dyn KvBackend,
    config: &StorageConfig,
    storage: &Operator,
) -> Result<(), String> {
    kv.get(b"readiness-probe")
        .await
        .map_err(|e| format!("state store: {e}"))?;
    let local = config.clone();
    tokio::task::spawn_blocking(move || local.check_local())
        .await
        .map_err(|e| format!("snapshot storage: the check panicked: {e}"))?
        .map_err(|e| format!("snapshot storage: {e}"))?;
    // The listing finds an object store that refuses its credentials or lost its bucket.
    storage
        .list_with("/")
        .limit(1)
        .await
        .map_err(|e| format!("snapshot storage: {e}"))?;
    Ok(())
}

async fn report(reporter: &HealthReporter, status: ServingStatus) {
    for s in SERVICES {
        reporter.set_service_status(*s, status).await;
    }
}

/// Probes every `every` until `stop`, publishing each change to `readiness` and the health
/// service (logged once per change, not per probe); at `stop`, reports not serving so that
/// clients move away while in-flight calls finish.
pub async fn run(
    readiness: Arc<Readiness>,
    kv: Arc<dyn KvBackend>,
    config: StorageConfig,
    storage: Operator,
    reporter: HealthReporter,
    every: Duration,
    stop: CancellationToken,
) {
    crate::periodic::every(every, FirstPass::AtStart, &stop, || async {
        let verdict = probe(kv.as_ref(), &config, &storage).await;
        if readiness.set(verdict.clone()) {
            match &verdict {
                Ok(()) => tracing::info!("ready: the state store and the snapshot storage answer"),
                Err(why) => tracing::error!(reason = %why, "not ready"),
            }
            let status = if verdict.is_ok() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            report(&reporter, status).await;
        }
    })
    .await;
    readiness.set(Err("stopping".into()));
    report(&reporter, ServingStatus::NotServing).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    #[tokio::test]
    async fn storage_that_cannot_be_listed_is_not_ready() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("storage");
        std::fs::create_dir_all(&root).expect("root");
        let config = StorageConfig::fs(root.display().to_string());
        let op = config.operator().expect("operator");
        let kv = MemoryKv::new();
        assert_eq!(probe(&kv, &config, &op).await, Ok(()));
        std::fs::remove_dir_all(&root).expect("remove");
        std::fs::write(&root, b"not a directory").expect("file");
        let e = probe(&kv, &config, &op)
            .await
            .expect_err("a file is not a storage root");
        assert!(e.contains("snapshot storage"), "{e}");
        std::fs::remove_file(&root).expect("remove");
        let e = probe(&kv, &config, &op).await.expect_err("a missing root");
        assert!(e.contains("snapshot storage"), "{e}");
        std::fs::create_dir_all(&root).expect("root");
        assert_eq!(probe(&kv, &config, &op).await, Ok(()));
    }
}
