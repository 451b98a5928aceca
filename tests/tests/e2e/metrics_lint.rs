//! The coordinator's `/metrics` as Prometheus's own linter reads it (`promtool check metrics`,
//! Debian's `prometheus` package): every family described, counters present at 0 from start-up,
//! the build and process families, and the duration and byte histograms once a backup ran.

use std::io::Write;
use std::process::{Command, Stdio};

use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gitserver::GitDaemon;

/// The body of a `GET` on the coordinator's HTTP port.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.is_empty());
    body
}

/// What `promtool check metrics` says of `body` (empty when it finds nothing).
fn promtool(body: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.success(), said.trim().is_empty(), "{said}");
    said
}

/// The value of the sample `series` (name and labels as exposed), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_from_start_up_and_after_a_backup() {
    let c = Cluster::start_with_http(1).await.unwrap();
    let http = c.http_addr().unwrap();

    let fresh = scrape(http).await;
    assert_eq!(
        promtool(&fresh),
        "",
        "a fresh coordinator's metrics lint clean"
    );
    for counter in [
        "repovault_backups_total{outcome=\"failed\"}",
        "repovault_lease_expiries_total",
        "repovault_tasks_finished_total{kind=\"backup\",outcome=\"failed\"}",
        "repovault_retention_backups_removed_total",
        "repovault_verifications_total{run=\"automatic\",status=\"failed\"}",
        "repovault_webhook_deliveries_total{code=\"401\"}",
    ] {
        assert_eq!(
            sample(&fresh, counter),
            Some(0.0),
            "{counter} at 0:\n{fresh}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &fresh,
            &format!("repovault_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0),
        "{fresh}"
    );
    assert!(
        sample(&fresh, "process_resident_memory_bytes").is_some_and(|v| v > 0.0),
        "{fresh}"
    );
    assert!(fresh.contains("# HELP repovault_queue_depth "), "{fresh}");

    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("org/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    let b = c.backup_ok("org/rich").await.unwrap();

    let after = scrape(http).await;
    assert_eq!(promtool(&after), "", "metrics after a backup lint clean");
    assert_eq!(
        sample(
            &after,
            "repovault_task_duration_seconds_count{kind=\"backup\",outcome=\"completed\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "repovault_task_bytes_sum{kind=\"backup\",what=\"added\"}"
        ),
        Some(b.added_bytes as f64),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "repovault_task_bytes_count{kind=\"backup\",what=\"received\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{after}"
    );
    c.shutdown().await;
}
