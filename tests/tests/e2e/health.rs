//! The operator's view: `repovault health` over a seeded mix of repositories,
//! `repovault timeline`, and the health metrics.

use std::process::{Command, Output};
use std::time::Duration;

use repovault_coordinator::model::Status;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{self, rich_repo};
use repovault_tests::gitserver::GitDaemon;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");
const WAIT: Duration = Duration::from_secs(120);

fn cli(c: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--coordinator")
        .arg(c.url())
        .args(args)
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_states_summary_timeline_and_metrics() {
    let mut c = Cluster::start_with_http(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "rich.git").unwrap();
    fixtures::empty_repo(src.path(), "empty.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let core = c.core().clone();

    core.registry
        .add_org("acme", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    core.registry
        .add_org("old", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    for (name, url) in [
        ("acme/ok", daemon.url("rich.git")),
        ("acme/fresh", daemon.url("rich.git")),
        ("acme/broken", daemon.url("does-not-exist.git")),
        ("acme/queued", daemon.url("empty.git")),
        ("old/archive", daemon.url("empty.git")),
    ] {
        core.registry.add_repo(name, &url, None).await.unwrap();
    }

    // backed_up: two backups, so the timeline has an order to check.
    let first = c.backup_ok("acme/ok").await.unwrap();
    let second = c.backup_ok("acme/ok").await.unwrap();
    // error: the source does not exist.
    let b = core.backups.run_backup("acme/broken").await.unwrap();
    let broken = c.wait_backup(&b.id, WAIT).await.unwrap();
    assert_eq!(broken.status, Status::Failed);
    // paused: backed up, then its organisation disconnected.
    c.backup_ok("old/archive").await.unwrap();
    core.maintenance.disconnect_org("old").await.unwrap();
    // pending: queued with no worker left to take it.
    c.stop_workers().await;
    let queued = core.backups.run_backup("acme/queued").await.unwrap();
    assert_eq!(
        core.registry.get_backup(&queued.id).await.unwrap().status,
        Status::Pending
    );

    let h = json(&cli(&c, &["--output", "json", "health"]));
    let states: Vec<(String, String)> = h["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["repo"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("acme/broken", "error"),
        ("acme/fresh", "never"),
        ("acme/ok", "backed_up"),
        ("acme/queued", "pending"),
        ("old/archive", "paused"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(states, want, "{h:#}");
    let broken_row = &h["repos"][0];
    assert!(
        broken_row["message"]
            .as_str()
            .unwrap()
            .contains("does-not-exist.git"),
        "{broken_row:#}"
    );
    let s = &h["summary"];
    assert_eq!(s["total"], 5, "{s:#}");
    assert_eq!(s["backed_up"], 1);
    assert_eq!(s["active"], 1);
    assert_eq!(s["never"], 1);
    assert_eq!(s["failed"], 1);
    assert_eq!(s["paused"], 1);
    assert_eq!(s["late"], 0);
    assert!(!s["last_backup_at"].as_str().unwrap().is_empty());
    // No schedules: no next run.
    assert!(s["next_run_at"].is_null(), "{s:#}");

    // One organisation only, and the table.
    let h = json(&cli(&c, &["--output", "json", "health", "old"]));
    assert_eq!(h["summary"]["total"], 1);
    assert_eq!(h["repos"][0]["state"], "paused");
    let table = cli(&c, &["health", "acme"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("REPOSITORY") && text.contains("NEXT RUN"),
        "{text}"
    );
    assert!(text.contains("not yet backed up"), "{text}");
    assert_eq!(h["summary"]["unverified"], 0, "{h:#}");

    // The timeline: both backups, oldest first, each verified with its checks.
    let t = json(&cli(&c, &["--output", "json", "timeline", "acme/ok"]));
    let ids: Vec<&str> = t
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["backup_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first.id.as_str(), second.id.as_str()], "{t:#}");
    assert_eq!(t[0]["status"], "completed");
    assert_eq!(t[0]["type"], "full");
    assert_eq!(t[0]["trigger"], "manual");
    assert_eq!(t[0]["verification"], "verified", "{t:#}");
    let checks: Vec<(&str, &str)> = t[1]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("zip_integrity", "pass"),
            ("git_fsck", "pass"),
            ("metadata_valid", "skipped"),
            ("commit_count_match", "pass"),
            ("size_match", "pass"),
        ],
        "{t:#}"
    );
    assert_eq!(h_verified(&c, "acme/ok"), "verified");
    assert_eq!(t[0]["is_escrowed"], false);
    assert_eq!(t[1]["size_jump"], false);
    assert!(t[0]["size_bytes"].as_u64().unwrap() > 0);
    let t = json(&cli(&c, &["--output", "json", "timeline", "acme/broken"]));
    assert_eq!(t[0]["status"], "failed");
    let missing = cli(&c, &["timeline", "acme/nope"]);
    assert_eq!(missing.status.code(), Some(3));

    // Metrics: the new series are present.
    let body = http_get(c.http_addr().unwrap(), "/metrics").await;
    for name in [
        "repovault_backups_total{outcome=\"completed\"}",
        "repovault_backups_total{outcome=\"failed\"}",
        "repovault_oldest_backup_age_seconds{org=\"acme\"}",
        "repovault_oldest_backup_age_seconds{org=\"old\"}",
        "repovault_repos_late",
        "repovault_repos{state=\"paused\"}",
        "repovault_queue_depth{priority=",
        "repovault_lease_expiries_total",
        // Verification.
        "repovault_repos_unverified 0",
        "repovault_verifications_total{run=\"automatic\",status=\"verified\"}",
        "repovault_readback_repos{state=\"overdue\"}",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    c.shutdown().await;
}

/// The health view's verification status of one repository.
fn h_verified(c: &Cluster, repo: &str) -> String {
    let h = json(&cli(c, &["--output", "json", "health"]));
    h["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == repo)
        .map(|r| r["verification"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}
