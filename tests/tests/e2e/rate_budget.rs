//! The fleet-wide rate budget against the forge simulator (README, design decisions,
//! "Fleet-wide rate budget per credential"):
//! a secondary limit one worker meets pauses every lease of the credential until `retry-after`,
//! over the wire and in a running fleet; four workers sharing one token with a small primary
//! limit finish every task without one primary-limit refusal; installation tokens that expire
//! after seconds are replaced mid-backup.

use std::time::{Duration, Instant};

use forge_sim::ForgeSim;
use forge_sim::options::Failure;
use forge_sim::state::Principal;
use repovault_common::domain::Provider;
use repovault_common::forge::token_credential_id;
use repovault_common::forge::{AppInstallation, ForgeCredential};
use repovault_common::secret::Secret;
use repovault_coordinator::forge_access::org_discovery::NewForgeOrg;
use repovault_coordinator::model::Status;
use repovault_proto::v1 as pb;
use repovault_proto::v1::worker_service_client::WorkerServiceClient;
use repovault_tests::cluster::Cluster;

use super::github_org::{SEEDED, sim};

fn ca_pem(sim: &ForgeSim) -> String {
    std::fs::read_to_string(&sim.ready().ca_cert).unwrap()
}

async fn add_token_org(c: &Cluster, sim: &ForgeSim) {
    c.core()
        .forge
        .add_forge_org(NewForgeOrg {
            provider: Provider::Github,
            name: "acme".into(),
            api_url: Some(sim.ready().api_url.clone()),
            ca_cert_pem: Some(ca_pem(sim)),
            credential: ForgeCredential::Token(Secret::new(sim.ready().token.clone())),
        })
        .await
        .unwrap();
}

async fn add_app_org(c: &Cluster, sim: &ForgeSim) {
    let r = sim.ready();
    let key = std::fs::read_to_string(r.app_private_key.as_ref().unwrap()).unwrap();
    c.core()
        .forge
        .add_forge_org(NewForgeOrg {
            provider: Provider::Github,
            name: "acme".into(),
            api_url: Some(r.api_url.clone()),
            ca_cert_pem: Some(ca_pem(sim)),
            credential: ForgeCredential::App(AppInstallation {
                app_id: r.app_id.unwrap(),
                installation_id: r.installation_id.unwrap(),
                private_key_pem: Secret::new(key),
            }),
        })
        .await
        .unwrap();
}

/// Backs up `repos` of acme at once and waits for every one; panics on a failed backup, and
/// answers the wait's error (which says where the backup stands) when one does not finish.
async fn back_up_all(
    c: &Cluster,
    repos: &[&str],
    timeout: Duration,
) -> anyhow::Result<Vec<(String, i64)>> {
    let mut ids = Vec::new();
    for name in repos {
        let b = c
            .core()
            .backups
            .run_backup(&format!("acme/{name}"))
            .await
            .unwrap();
        ids.push((name.to_string(), b.id));
    }
    let mut took = Vec::new();
    for (name, id) in ids {
        let b = c.wait_backup(&id, timeout).await?;
        assert_eq!(b.status, Status::Completed, "{name}: {:?}", b.error);
        let ms = b.finished_at_ms.unwrap_or(0) - b.started_at_ms.unwrap_or(0);
        took.push((name, ms));
    }
    Ok(took)
}

/// Every request the simulator saw on its REST API, answered or refused.
fn sent(sim: &ForgeSim) -> u64 {
    let s = sim.stats();
    s.api_requests + s.primary_refusals + s.secondary_refusals
}

/// A hand-made worker on the wire.
struct Probe {
    w: WorkerServiceClient<tonic::transport::Channel>,
    auth: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    id: String,
}

impl Probe {
    async fn register(c: &Cluster) -> Probe {
        let join = std::fs::read_to_string(c.join_token_file()).unwrap();
        let auth: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", join.trim()).parse().unwrap();
        let mut p = Probe {
            w: WorkerServiceClient::connect(c.url()).await.unwrap(),
            auth,
            id: String::new(),
        };
        let req = p.req(pb::RegisterWorkerRequest {
            protocol_version: repovault_proto::PROTOCOL_VERSION,
            name: "probe".into(),
            slots: 4,
            capabilities: vec![],
            ..Default::default()
        });
        p.id =
            p.w.register_worker(req)
                .await
                .unwrap()
                .into_inner()
                .worker_id;
        p
    }

    fn req<T>(&self, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        r.metadata_mut().insert("authorization", self.auth.clone());
        r
    }

    async fn lease(&mut self) -> pb::Task {
        let req = self.req(pb::AcquireTaskRequest {
            worker_id: self.id.clone(),
            free_slots: 4,
            wait_ms: 10_000,
            cached_repo_ids: vec![],
        });
        self.w
            .acquire_task(req)
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap()
    }

    async fn permits(
        &mut self,
        task: &pb::Task,
        f: impl FnOnce(&mut pb::RequestPermitsRequest),
    ) -> pb::RequestPermitsResponse {
        let mut r = pb::RequestPermitsRequest {
            worker_id: self.id.clone(),
            lease: task.lease.clone(),
            wanted: 10,
            ..Default::default()
        };
        f(&mut r);
        let req = self.req(r);
        self.w.request_permits(req).await.unwrap().into_inner()
    }
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reported_secondary_limit_pauses_every_lease_of_the_credential_over_the_wire() {
    let sim = sim().await;
    let c = Cluster::start(0).await.unwrap();
    add_token_org(&c, &sim).await;
    for name in ["widgets", "tracker"] {
        c.core()
            .backups
            .run_backup(&format!("acme/{name}"))
            .await
            .unwrap();
    }
    let mut p = Probe::register(&c).await;
    let (a, b) = (p.lease().await, p.lease().await);
    let credential = token_credential_id(&Secret::new(sim.ready().token.clone()));
    for t in [&a, &b] {
        let access = t.repo.as_ref().unwrap();
        assert_eq!(
            access.credential_id, credential,
            "one budget for the shared token"
        );
    }
    // A new coordinator has seen no headers: nothing with the lease, then one cautious holder
    // with a small batch.
    assert_eq!(a.rate.unwrap().permits, 0, "{:?}", a.rate);
    let first = p.permits(&a, |_| {}).await.grant.unwrap();
    assert!(first.permits > 0 && first.permits <= 5, "{first:?}");
    let g = p.permits(&b, |_| {}).await.grant.unwrap();
    assert_eq!(g.permits, 0, "one holder until headers are seen: {g:?}");
    assert!(g.retry_at_ms > 0);

    // a reports what it saw (ending the caution), then a secondary limit.
    let reset = now_ms() / 1000 + 3600;
    let r = p
        .permits(&a, |r| {
            r.unspent = first.permits;
            r.reading = Some(pb::RateReading {
                limit: 5000,
                remaining: 4990,
                reset,
                resource: "core".into(),
            });
        })
        .await;
    assert_eq!(r.source_token, sim.ready().token, "the credential's token");
    let until = now_ms() + 1_500;
    p.permits(&a, |r| {
        r.wanted = 0;
        r.limited_until_ms = until;
        r.secondary = true;
    })
    .await;
    // b gets no permits, and is told until when.
    let g = p.permits(&b, |_| {}).await.grant.unwrap();
    assert_eq!(
        (g.permits, g.paused_until_ms, g.retry_at_ms),
        (0, until, until)
    );
    // Heartbeats tell every worker.
    let hb = p.req(pb::HeartbeatRequest {
        worker_id: p.id.clone(),
        held: vec![a.lease.clone().unwrap(), b.lease.clone().unwrap()],
        draining: false,
        free_slots: 2,
    });
    let pauses = p.w.heartbeat(hb).await.unwrap().into_inner().rate_pauses;
    assert_eq!(
        pauses,
        vec![pb::RatePause {
            credential_id: credential.clone(),
            until_ms: until
        }]
    );
    // No earlier than retry-after, permits again.
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(until - now_ms()).unwrap_or(0) + 50,
    ))
    .await;
    // (The probe renews its leases first: it has no heartbeat timer of its own.)
    let hb = p.req(pb::HeartbeatRequest {
        worker_id: p.id.clone(),
        held: vec![a.lease.clone().unwrap(), b.lease.clone().unwrap()],
        draining: false,
        free_slots: 2,
    });
    let renewed = p.w.heartbeat(hb).await.unwrap().into_inner();
    assert_eq!(renewed.renewed.len(), 2, "{renewed:?}");
    assert!(renewed.rate_pauses.is_empty(), "{renewed:?}");
    let g = p.permits(&b, |_| {}).await.grant.unwrap();
    assert_eq!((g.permits, g.paused_until_ms), (10, 0));

    // A lease that is not the task's current one gets nothing.
    let mut stale = a.clone();
    if let Some(l) = stale.lease.as_mut() {
        l.attempt += 7;
    }
    let req = p.req(pb::RequestPermitsRequest {
        worker_id: p.id.clone(),
        lease: stale.lease.clone(),
        wanted: 1,
        ..Default::default()
    });
    let e = p.w.request_permits(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secondary_limit_pauses_the_fleet_and_backups_resume_after_retry_after() {
    const RETRY_AFTER: u64 = 5;
    let sim = sim().await;
    let mut c = Cluster::start(0).await.unwrap();
    add_token_org(&c, &sim).await;
    // The next REST request of any backup of acme is refused with a secondary limit.
    sim.sim().options.write().failures.push(Failure {
        method: "GET".into(),
        path_contains: "/repos/acme/".into(),
        status: 403,
        count: 1,
        retry_after_secs: Some(RETRY_AFTER),
    });
    for _ in 0..4 {
        c.add_worker().await.unwrap();
    }
    let mut ids = Vec::new();
    for name in SEEDED {
        ids.push(
            c.core()
                .backups
                .run_backup(&format!("acme/{name}"))
                .await
                .unwrap()
                .id,
        );
    }
    let fleet = {
        let (c, ids) = (&c, ids.clone());
        async move {
            for id in ids {
                let b = c.wait_backup(&id, Duration::from_secs(180)).await.unwrap();
                assert_eq!(
                    b.status,
                    Status::Completed,
                    "{}: {:?}",
                    b.repo_name,
                    b.error
                );
            }
        }
    };
    let watch = async {
        // When the refusal was sent (within 20 ms)...
        while sim.stats().injected_failures == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let refused_at = Instant::now();
        // ...every worker hears of the pause within a heartbeat (500 ms) or a refill; from
        // then until retry-after, not one request leaves the fleet, though other backups are
        // still running.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let quiet_from = sent(&sim);
        let mut running = 0;
        for id in &ids {
            let b = c.core().registry.get_backup(id).await.unwrap();
            if !b.status.is_terminal() {
                running += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(RETRY_AFTER * 1000 - 2_000)).await;
        let quiet_to = sent(&sim);
        (refused_at, quiet_from, quiet_to, running)
    };
    let ((), (refused_at, quiet_from, quiet_to, running)) = tokio::join!(fleet, watch);
    let done = Instant::now();
    let stats = sim.stats();
    println!("{stats:#?}\nrunning during the pause: {running}");
    assert!(
        running >= 2,
        "only {running} backups were running during the pause"
    );
    assert_eq!(
        quiet_from, quiet_to,
        "requests were sent during the fleet-wide pause"
    );
    assert!(
        done - refused_at >= Duration::from_secs(RETRY_AFTER),
        "resumed before retry-after"
    );
    // Only leases that had a request in flight when the pause began can meet it too.
    assert!(stats.secondary_refusals <= 8, "{stats:?}");
    assert_eq!(stats.primary_refusals, 0);
    c.stop_workers().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_sharing_a_small_limit_finish_without_a_primary_refusal() {
    let sim = sim().await;
    {
        let mut o = sim.sim().options.write();
        // A small limit with a short window: the six backups take about 110 counted requests,
        // so they span about three windows of 40.
        o.rate_limit_user = 40;
        o.rate_limit_window_secs = 4;
    }
    let mut c = Cluster::start(0).await.unwrap();
    add_token_org(&c, &sim).await;
    for _ in 0..4 {
        c.add_worker().await.unwrap();
    }
    let started = Instant::now();
    let took = back_up_all(&c, &SEEDED, Duration::from_secs(300))
        .await
        .unwrap();
    let stats = sim.stats();
    println!(
        "{} requests in {:?}: {stats:#?}\n{took:?}",
        stats.counted_requests,
        started.elapsed()
    );
    assert_eq!(stats.primary_refusals, 0, "{stats:?}");
    assert_eq!(stats.secondary_refusals, 0, "{stats:?}");
    c.stop_workers().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiring_installation_tokens_are_refreshed_mid_backup() {
    const TTL_SECS: u64 = 3;
    let sim = sim().await;
    {
        let mut o = sim.sim().options.write();
        o.installation_token_ttl_secs = TTL_SECS;
        // Slow enough that one backup (about 20 requests) outlives several tokens: 6 requests
        // per 2 s window.
        o.rate_limit_installation = 6;
        o.rate_limit_window_secs = 2;
    }
    let minted = |sim: &ForgeSim| {
        sim.sim()
            .world
            .lock()
            .tokens
            .values()
            .filter(|t| matches!(t.principal, Principal::Installation(_)))
            .count()
    };
    let mut c = Cluster::start(0).await.unwrap();
    add_app_org(&c, &sim).await;
    let before = minted(&sim);
    c.add_worker().await.unwrap();
    let took = back_up_all(&c, &["tracker"], Duration::from_secs(180))
        .await
        .map_err(|e| format!("{e:#}; the simulator saw {:#?}", sim.stats()))
        .unwrap();
    let stats = sim.stats();
    let after = minted(&sim);
    println!("{took:?} minted {before} -> {after}: {stats:#?}");
    let (_, ms) = &took[0];
    assert!(
        *ms > 2 * 1000 * i64::try_from(TTL_SECS).unwrap(),
        "the backup outlived its lease's token ({ms} ms)"
    );
    assert!(after >= before + 2, "tokens replaced: {before} -> {after}");
    assert_eq!(stats.primary_refusals, 0, "{stats:?}");
    c.stop_workers().await;
    c.shutdown().await;
}
