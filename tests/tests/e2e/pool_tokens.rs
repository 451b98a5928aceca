//! Worker pools' join tokens end to end: a token made with the CLI, a worker that joins with it
//! (its pool in `workers list` and its join in the audit log), and the token revoked while the
//! worker holds a backup mid-fetch: the worker is refused, and the backup is leased again at once
//! to a worker of the configured token and completes there.

use std::process::Command;
use std::time::{Duration, Instant};

use repovault_common::secret::Secret;
use repovault_proto::v1 as pb;
use repovault_proto::v1::worker_service_client::WorkerServiceClient;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gate::GatedProxy;
use repovault_tests::gitserver::GitDaemon;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// The cluster's heartbeat: 5 s, so a lease's TTL is 16 s (3H + 1 s), and a backup leased again
/// within [`AT_ONCE`] of the revocation was re-queued by it, not by its lease expiring.
const HEARTBEAT: &str = "5s";
const AT_ONCE: Duration = Duration::from_secs(4);

fn cli(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["--coordinator", &c.url()])
        .args(args)
        .env_remove("REPOVAULT_OUTPUT")
        .output()
        .unwrap()
}

fn cli_json(c: &Cluster, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let o = cli(c, &all);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Waits up to `secs` for `f` to hold, saying `what` when it does not.
async fn until(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_tokens_worker_joins_its_pool_and_once_revoked_is_refused_and_its_task_released() {
    let mut c = Cluster::start_with(0, HEARTBEAT).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "r.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    // The source behind a closed gate: a backup stays in its fetch until the test opens it.
    let gate = GatedProxy::start(daemon.port()).unwrap();
    c.add_git_repo("org/r", &gate.git_url("r.git"))
        .await
        .unwrap();

    // A token for the pool "burst", with the CLI: the token alone on stdout.
    let made = cli(&c, &["workers", "token", "create", "--pool", "burst"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let secret = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("rvj_") && secret.len() == 68, "{secret}");
    let note = String::from_utf8_lossy(&made.stderr).to_string();
    assert!(
        note.contains("pool burst") && !note.contains(&secret),
        "{note}"
    );
    let tokens = cli_json(&c, &["workers", "token", "list", "--pool", "burst"]);
    let token_id = tokens[0]["id"].as_str().unwrap().to_string();
    assert_eq!(tokens[0]["state"], "active", "{tokens:#}");

    // A worker joins with it, and only it.
    let mut cfg = c.worker_config("burst", None).unwrap();
    cfg.join_token = Secret::new(secret.clone());
    cfg.name = "burst-1".into();
    // One slot: once it holds the backup it asks for no work, so only its heartbeat can learn
    // of the revocation.
    cfg.slots = 1;
    let (_stop_burst, burst) = c.spawn_worker(cfg);
    until(30, "the burst worker to register", async || {
        c.core().queue.workers.list().len() == 1
    })
    .await;
    let workers = cli_json(&c, &["workers", "list"]);
    assert_eq!(workers[0]["name"], "burst-1", "{workers:#}");
    assert_eq!(workers[0]["pool"], "burst", "{workers:#}");
    assert_eq!(workers[0]["token_id"], token_id.as_str(), "{workers:#}");
    let burst_id = workers[0]["id"].as_str().unwrap().to_string();
    let table = String::from_utf8(cli(&c, &["workers"]).stdout).unwrap();
    assert!(table.contains("POOL") && table.contains("burst"), "{table}");
    // Its join is in the audit log, naming the worker and its pool, never the token.
    let audit = cli_json(&c, &["audit", "list"]);
    let joins: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "RegisterWorker")
        .collect();
    assert_eq!(joins.len(), 1, "{audit:#}");
    let detail = joins[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&burst_id) && detail.contains("pool burst") && detail.contains(&token_id),
        "{detail}"
    );
    assert_eq!(joins[0]["role"], "worker");
    assert!(!audit.to_string().contains(&secret[4..]), "{audit:#}");

    // The backup is leased to the burst worker and held in its fetch.
    let b = c.core().backups.run_backup("org/r").await.unwrap();
    until(
        60,
        "the burst worker to hold the backup in its fetch",
        async || {
            let b = c.core().registry.get_backup(&b.id).await.unwrap();
            b.worker_id.as_deref() == Some(burst_id.as_str()) && gate.connections() > 0
        },
    )
    .await;
    // A worker of the configured token stands by.
    c.add_worker().await.unwrap();
    until(30, "the second worker to register", async || {
        c.core().queue.workers.list().len() == 2
    })
    .await;

    // Revoked, with the CLI: the burst worker is refused and forgotten, its lease re-queued.
    let revoked_at = Instant::now();
    let revoked = cli_json(&c, &["workers", "token", "revoke", &token_id]);
    assert_eq!(revoked["token"]["state"], "revoked", "{revoked:#}");
    assert_eq!(
        revoked["workers_refused"],
        serde_json::json!([burst_id]),
        "{revoked:#}"
    );
    assert_eq!(revoked["tasks_requeued"], 1, "{revoked:#}");
    // Leased again, to the other worker, within seconds: far below the 16 s lease TTL.
    let other = loop {
        let now = c.core().registry.get_backup(&b.id).await.unwrap();
        if now.attempt == 2 && now.worker_id.is_some() {
            break now;
        }
        assert!(
            revoked_at.elapsed() < AT_ONCE,
            "the backup was not leased again at once: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(other.worker_id.as_deref(), Some(burst_id.as_str()));
    let listed = cli_json(&c, &["workers", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["pool"], "bootstrap", "{listed:#}");

    // Its next heartbeat is refused, and the worker stops, saying why.
    let ended = tokio::time::timeout(Duration::from_secs(30), burst)
        .await
        .expect("the revoked worker stops")
        .unwrap();
    let e = ended.expect_err("refused, not a clean exit");
    assert!(e.to_string().contains("revoked"), "{e}");
    // That refusal is audited, naming the token's id and pool (never the token).
    let revoked_caller = format!("(revoked join token {token_id}, pool burst)");
    let audit = cli_json(&c, &["audit", "list"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["caller"] == revoked_caller
                && e["method"] == "Heartbeat"
                && e["outcome"].as_str().unwrap().starts_with("refused")),
        "{audit:#}"
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["method"] == "RevokeWorkerToken"
                && e["detail"].as_str().unwrap().contains(&burst_id)),
        "{audit:#}"
    );
    assert!(!audit.to_string().contains(&secret[4..]), "{audit:#}");
    // Any call with the token is refused, saying why, and never echoing it.
    let mut raw = WorkerServiceClient::connect(c.url()).await.unwrap();
    let mut join = tonic::Request::new(pb::RegisterWorkerRequest {
        protocol_version: repovault_proto::PROTOCOL_VERSION,
        name: "again".into(),
        slots: 1,
        ..Default::default()
    });
    join.metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    let refused = raw.register_worker(join).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("revoked") && refused.message().contains(&token_id),
        "{refused:?}"
    );
    assert!(!refused.message().contains(&secret[4..]));

    // The other worker completes the backup: attempt 2, one snapshot.
    gate.open();
    let done = c
        .wait_backup(&b.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        done.status,
        repovault_coordinator::model::Status::Completed,
        "{done:?}"
    );
    assert_eq!(done.attempt, 2);
    assert_eq!(done.worker_id, other.worker_id);
    c.shutdown().await;
}
