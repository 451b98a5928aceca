//! A worker process's own metrics (`repovault worker --metrics-listen`): after a backup they
//! count the bytes it fetched and stored, its cache miss, the phases it went through and its
//! slots, and Prometheus's own `promtool check metrics` finds nothing to fault.

use std::time::Duration;

use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gitserver::GitDaemon;

use super::observability::http_get;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// The value of the sample `line_start` (`name{labels}`) in a scrape.
fn sample(scrape: &str, line_start: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_process_serves_its_own_metrics() {
    let c = Cluster::start(0).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("acme/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let mut worker = c
        .spawn_worker_process_with(BIN, "metered", &["--metrics-listen", &addr.to_string()])
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(180), c.backup_ok("acme/rich"))
        .await
        .unwrap()
        .unwrap();
    // The coordinator records the completion before the worker's task has let its slot go:
    // scrape until the slot is free (a few milliseconds), at most ten seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let scrape = http_get(addr, "/metrics").await;
        let body = scrape
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if sample(&body, "repovault_worker_slots_busy ") == Some(0.0)
            || tokio::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = body.as_str();
    assert!(
        sample(body, "repovault_worker_fetched_bytes_total").is_some_and(|v| v > 0.0),
        "{body}"
    );
    assert_eq!(
        sample(body, "repovault_worker_stored_bytes_total"),
        Some(b.added_bytes as f64),
        "{body}"
    );
    assert_eq!(
        sample(
            body,
            "repovault_worker_cache_lookups_total{result=\"miss\"}"
        ),
        Some(1.0),
        "a first backup finds no mirror: {body}"
    );
    assert_eq!(
        sample(body, "repovault_worker_cache_lookups_total{result=\"hit\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(
        sample(
            body,
            "repovault_worker_phase_seconds_count{phase=\"fetch\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{body}"
    );
    assert_eq!(sample(body, "repovault_worker_slots "), Some(1.0), "{body}");
    assert_eq!(
        sample(body, "repovault_worker_slots_busy "),
        Some(0.0),
        "{body}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrape.txt");
    std::fs::write(&file, body).unwrap();
    let lint = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let _ = worker.kill();
    let _ = worker.wait();
    c.shutdown().await;
}
