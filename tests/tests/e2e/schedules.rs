//! Schedules and on-push backups against the forge simulator, driven by an injected clock:
//! a scheduled slot runs once, also across a coordinator restart; `repo set --on-push`
//! registers a signed push webhook; ten real pushes (the simulator delivers GitHub's signed
//! webhooks to the coordinator's HTTP port) give one backup, started within the delay of the
//! first; unsigned and wrongly signed deliveries are refused with 401.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use repovault_coordinator::clock::ManualClock;
use repovault_coordinator::model::{BackupRecord, Status};
use repovault_tests::cluster::Cluster;

use super::github_org::{add_acme_org, cli, sim};

const HOUR: Duration = Duration::from_secs(3600);

fn ok(c: &Cluster, args: &[&str]) -> String {
    let out = cli(c, args, &[]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A start of an hour two days ahead of the real clock: whatever the materialiser loop does
/// with the real clock before a test injects its own, it cannot take a later slot.
fn base_hour() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    (now / 3_600_000 + 48) * 3_600_000
}

async fn backups(c: &Cluster, repo: &str, trigger: &str) -> Vec<BackupRecord> {
    let mut v: Vec<BackupRecord> = c
        .core()
        .registry
        .list_backups(Some(repo))
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.trigger.as_str() == trigger)
        .collect();
    v.sort_by_key(|b| b.created_at_ms);
    v
}

async fn settle(c: &Cluster, b: &[BackupRecord]) {
    for b in b {
        let done = c
            .wait_backup(&b.id, Duration::from_secs(180))
            .await
            .unwrap();
        assert_eq!(done.status, Status::Completed, "{:?}", done.error);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_slot_runs_once_across_a_restart() {
    let sim = sim().await;
    let ready = sim.ready();
    let mut c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, ready, &ready.token);
    let clock = Arc::new(ManualClock::new(base_hour() + 59 * 60_000));
    c.core().schedules.set_clock(clock.clone());
    // Organisation settings, shown by `org show`.
    let out = ok(
        &c,
        &[
            "org",
            "set",
            "acme",
            "--schedule",
            "daily",
            "--timezone",
            "Europe/Berlin",
            "--full-every-days",
            "3",
        ],
    );
    assert!(
        out.contains("daily (Europe/Berlin), full every 3 days"),
        "{out}"
    );
    let show = ok(&c, &["org", "show", "acme"]);
    assert!(
        show.contains("daily (Europe/Berlin), full every 3 days"),
        "{show}"
    );
    let bad = cli(
        &c,
        &["org", "set", "acme", "--timezone", "Mars/Olympus"],
        &[],
    );
    assert!(!bad.status.success());
    ok(&c, &["org", "set", "acme", "--schedule", "none"]);
    // The organisation stays unscheduled; one repository gets its own hourly schedule (read
    // in the organisation's time zone).
    ok(&c, &["repo", "set", "acme/docs", "--schedule", "hourly"]);
    let list = ok(&c, &["repo", "list", "acme"]);
    assert!(list.contains("hourly (Europe/Berlin) (own)"), "{list}");

    let r = c.core().schedules.materialise_schedules().await.unwrap();
    assert_eq!(r.enqueued, 1, "{r:?}");
    assert_eq!(
        c.core()
            .schedules
            .materialise_schedules()
            .await
            .unwrap()
            .enqueued,
        0
    );
    let first = backups(&c, "acme/docs", "schedule").await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].backup_type,
        repovault_common::domain::BackupType::Full
    );
    settle(&c, &first).await;

    // A restart within the same slot: nothing runs again.
    c.restart_coordinator().await.unwrap();
    c.core().schedules.set_clock(clock.clone());
    assert_eq!(
        c.core()
            .schedules
            .materialise_schedules()
            .await
            .unwrap()
            .enqueued,
        0
    );
    assert_eq!(backups(&c, "acme/docs", "schedule").await.len(), 1);

    // The next slot: one more, incremental (a full one ran within 7 days).
    clock.advance(HOUR);
    assert_eq!(
        c.core()
            .schedules
            .materialise_schedules()
            .await
            .unwrap()
            .enqueued,
        1
    );
    let all = backups(&c, "acme/docs", "schedule").await;
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1].backup_type,
        repovault_common::domain::BackupType::Incremental
    );
    settle(&c, &all).await;

    // Down across two slots: only the latest missed one runs, once.
    c.restart_coordinator().await.unwrap();
    clock.advance(2 * HOUR);
    c.core().schedules.set_clock(clock.clone());
    c.core().schedules.materialise_schedules().await.unwrap();
    c.core().schedules.materialise_schedules().await.unwrap();
    assert_eq!(backups(&c, "acme/docs", "schedule").await.len(), 3);
    c.stop_workers().await;
}

/// Clones `repo` from the simulator into `dir` (the token in the environment only).
fn git(ready: &forge_sim::Ready, dir: &Path, args: &[&str]) {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", ready.token));
    let ca = format!("http.sslCAInfo={}", ready.ca_cert.display());
    let out = Command::new("git")
        .args([
            "-c",
            &ca,
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_SSL_CAINFO")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {basic}"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sim_deliveries(ready: &forge_sim::Ready) -> u64 {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ready.ca_cert)
        .arg(format!("{}/_sim/stats", ready.git_url))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.pointer("/counters/webhook_deliveries")
        .or_else(|| v.pointer("/webhook_deliveries"))
        .and_then(|n| n.as_u64())
        .unwrap_or(0)
}

/// The coordinator's answer to the last delivery of the hook pointing at `hook_url`, as the
/// simulator reports it (`last_response.code`).
fn last_hook_code(ready: &forge_sim::Ready, hook_url: &str) -> Option<u64> {
    let hooks = super::github_org::curl(
        "GET",
        &format!("{}/repos/acme/docs/hooks", ready.api_url),
        Some(&ready.token),
        &ready.ca_cert,
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&hooks).ok()?;
    v.as_array()?
        .iter()
        .find(|h| h.pointer("/config/url").and_then(|u| u.as_str()) == Some(hook_url))?
        .pointer("/last_response/code")?
        .as_u64()
}

/// POSTs a delivery to the coordinator's webhook endpoint; returns the HTTP status.
fn post_hook(url: &str, signature: Option<&str>, body: &str) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "X-GitHub-Event: push",
        ]);
    if let Some(s) = signature {
        cmd.args(["-H", &format!("X-Hub-Signature-256: {s}")]);
    }
    let out = cmd.args(["-d", body, url]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_ten_signed_pushes_gives_one_backup() {
    let sim = sim().await;
    let ready = sim.ready();
    let c = Cluster::start_with_http(1).await.unwrap();
    add_acme_org(&c, ready, &ready.token);
    let t0 = base_hour();
    let clock = Arc::new(ManualClock::new(t0));
    c.core().schedules.set_clock(clock.clone());
    let delay = Duration::from_secs(120);
    c.core().schedules.set_push_delay(delay);

    let pinged = sim_deliveries(ready);
    let out = ok(&c, &["repo", "set", "acme/docs", "--on-push"]);
    assert!(out.contains("backed up on push"), "{out}");
    // The hook is on the simulator's repository, pointing at the coordinator.
    let hooks = super::github_org::curl(
        "GET",
        &format!("{}/repos/acme/docs/hooks", ready.api_url),
        Some(&ready.token),
        &ready.ca_cert,
        "",
    );
    let repo_id = c.core().registry.repo_named("acme/docs").await.unwrap().id;
    let hook_url = format!(
        "http://{}/webhooks/github?repo={repo_id}",
        c.http_addr().unwrap()
    );
    assert!(hooks.contains(&hook_url), "{hooks}");

    // Unsigned and wrongly signed deliveries: 401.
    let forge_id = c
        .core()
        .registry
        .repo_named("acme/docs")
        .await
        .unwrap()
        .forge_id
        .unwrap();
    let body = format!(
        r#"{{"ref":"refs/heads/main","repository":{{"id":{forge_id},"default_branch":"main"}}}}"#
    );
    let body = body.as_str();
    assert_eq!(post_hook(&hook_url, None, body), "401");
    let bare = format!("http://{}/webhooks/github", c.http_addr().unwrap());
    let signed = repovault_coordinator::schedule::webhook_bursts::sign(b"guess", body.as_bytes());
    assert_eq!(post_hook(&bare, Some(&signed), body), "401");
    assert_eq!(
        post_hook(&hook_url, Some(&format!("sha256={}", "0".repeat(64))), body),
        "401"
    );

    // Ten pushes, 10 s apart on the injected clock, each delivered by the simulator.
    let work = tempfile::tempdir().unwrap();
    git(
        ready,
        work.path(),
        &[
            "clone",
            "-q",
            &format!("{}/acme/docs.git", ready.git_url),
            "docs",
        ],
    );
    let repo_dir = work.path().join("docs");
    // GitHub pings a new hook; the ping is verified (the secret is stored first) and ignored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sim_deliveries(ready) <= pinged {
        assert!(tokio::time::Instant::now() < deadline, "no ping");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last_hook_code(ready, &hook_url), Some(204));
    let before = sim_deliveries(ready);
    for i in 0..10u64 {
        std::fs::write(repo_dir.join("push.txt"), format!("push {i}\n")).unwrap();
        git(ready, &repo_dir, &["add", "push.txt"]);
        git(ready, &repo_dir, &["commit", "-qm", &format!("push {i}")]);
        git(ready, &repo_dir, &["push", "-q", "origin", "HEAD"]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while sim_deliveries(ready) < before + i + 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "push {i} not delivered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if i == 0 {
            assert_eq!(c.core().schedules.open_bursts(), 1);
        }
        clock.advance(Duration::from_secs(10));
    }
    assert_eq!(last_hook_code(ready, &hook_url), Some(202));
    // 100 s after the first push: nothing started yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(backups(&c, "acme/docs", "push").await.is_empty());
    // At the delay, the loop starts one backup for the whole burst.
    clock.set(t0 + 120_000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let started = loop {
        let b = backups(&c, "acme/docs", "push").await;
        if !b.is_empty() {
            break b;
        }
        assert!(tokio::time::Instant::now() < deadline, "no push backup");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(backups(&c, "acme/docs", "push").await.len(), 1);
    assert_eq!(c.core().schedules.open_bursts(), 0);
    settle(&c, &started).await;
}
