//! The GitHub provider against the forge simulator (tests/forge-sim, seed acme.toml).

#![allow(clippy::unwrap_used)]

mod support;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use support::{DEV, OWNER, endpoint, seed_path, start};

use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use repovault_common::forge::github::{
    Counts, ExportMode, ExportReport, GitHubClient, RateObserver, RateSnapshot, export_repo,
    list_org_repos, mint_installation_token,
};
use repovault_common::secret::Secret;

fn client(sim: &ForgeSim, token: &str) -> GitHubClient {
    GitHubClient::new(&endpoint(sim), Secret::new(token)).unwrap()
}

/// The seed's repositories of `acme`, by name.
fn seeded_repo_names() -> Vec<String> {
    let text = std::fs::read_to_string(seed_path()).unwrap();
    let seed: toml::Value = toml::from_str(&text).unwrap();
    let mut names: Vec<String> = seed["orgs"][0]["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn list_org_repos_returns_every_seeded_repo() {
    let sim = start().await;
    let c = client(&sim, OWNER);
    let repos = list_org_repos(&c, "acme").await.unwrap();
    let mut names: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, seeded_repo_names());
    let widgets = repos.iter().find(|r| r.name == "widgets").unwrap();
    assert_eq!(widgets.full_name, "acme/widgets");
    assert_eq!(widgets.default_branch.as_deref(), Some("main"));
    assert!(repos.iter().any(|r| r.private && r.name == "secret-plans"));
    // Debug output never shows the token.
    assert!(!format!("{c:?}").contains(OWNER));
    // A member sees them too (default_repository_permission = read).
    let dev = list_org_repos(&client(&sim, DEV), "acme").await.unwrap();
    assert_eq!(dev.len(), repos.len());
}

#[tokio::test]
async fn installation_token_lists_repos() {
    let sim = start().await;
    let ready = sim.ready();
    let key =
        Secret::new(std::fs::read_to_string(ready.app_private_key.as_ref().unwrap()).unwrap());
    let (token, expires) = mint_installation_token(
        &endpoint(&sim),
        ready.app_id.unwrap(),
        &key,
        ready.installation_id.unwrap(),
    )
    .await
    .unwrap();
    assert!(expires > chrono::Utc::now());
    let c = GitHubClient::new(&endpoint(&sim), token).unwrap();
    let repos = list_org_repos(&c, "acme").await.unwrap();
    let mut names: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, seeded_repo_names());
}

/// The counts seeds/acme.toml gives `repo` (the simulator's own reading of its seed).
fn seeded_counts(repo: &str) -> Counts {
    let seed = Seed::from_file(&seed_path()).unwrap();
    let c = seed.counts("acme", repo).unwrap();
    Counts {
        issues: c.issues,
        pulls: c.pulls,
        comments: c.comments,
        reviews: c.reviews,
        releases: c.releases,
        release_assets: c.release_assets,
        labels: c.labels,
        milestones: c.milestones,
        workflows: c.workflows,
        attachments: 0,
    }
}

/// Every file of a tree: relative path → (bytes, mtime).
fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, SystemTime)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
                out.insert(rel, (std::fs::read(&path).unwrap(), mtime));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The files that differ (content or mtime) or exist in only one tree.
fn differences(a: &Path, b: &Path) -> Vec<String> {
    let (a, b) = (snapshot(a), snapshot(b));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Requests per route between two stats readings.
fn print_routes(before: &forge_sim::stats::Counters, after: &forge_sim::stats::Counters) {
    for (route, n) in &after.by_route {
        let d = n - before.by_route.get(route).copied().unwrap_or(0);
        if d > 0 {
            println!("  {d:3} {route}");
        }
    }
}

async fn full(c: &GitHubClient, repo: &str, out: &Path) -> ExportReport {
    export_repo(c, "acme", repo, out, None, ExportMode::Full)
        .await
        .unwrap()
}

fn assert_all_included(report: &ExportReport) {
    for (component, status) in &report.components {
        assert_eq!(
            status.status,
            repovault_common::domain::ComponentState::Included,
            "{component}: {status:?}"
        );
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn full_export_matches_the_seed_and_is_deterministic() {
    let sim = start().await;
    let c = client(&sim, OWNER);
    let tmp = tempfile::tempdir().unwrap();
    for repo in ["widgets", "tracker"] {
        let first = tmp.path().join(format!("{repo}-1"));
        let report = full(&c, repo, &first).await;
        println!(
            "{repo}: full export, {} requests, {:?}",
            report.requests, report.counts
        );
        assert_all_included(&report);
        assert_eq!(report.counts, seeded_counts(repo), "{repo}");

        // Byte- and mtime-identical on a second full export of unchanged data.
        let second = tmp.path().join(format!("{repo}-2"));
        let again = full(&c, repo, &second).await;
        assert_eq!(again.counts, report.counts);
        assert_eq!(differences(&first, &second), Vec::<String>::new(), "{repo}");
    }

    // Sharded: number / 100. tracker has 111 issues; issue 1 has more than 100 comments.
    let tracker = tmp.path().join("tracker-1");
    assert!(tracker.join("meta/issues/0/1.json").is_file());
    assert!(tracker.join("meta/issues/1/111.json").is_file());
    assert!(!tracker.join("meta/issues/111.json").exists());
    let long = read_json(&tracker.join("meta/issues/0/1.json"));
    assert_eq!(long["comments"].as_array().unwrap().len(), 131);
    assert_eq!(long["issue"]["title"], "The long discussion");

    let widgets = tmp.path().join("widgets-1");
    // Pull documents hold reviews and review comments; releases their asset bytes.
    let pull = read_json(&widgets.join("meta/pulls/0/6.json"));
    assert_eq!(pull["reviews"].as_array().unwrap().len(), 2);
    assert_eq!(pull["review_comments"].as_array().unwrap().len(), 2);
    let releases = snapshot(&widgets.join("releases"));
    let sizes: Vec<usize> = releases.values().map(|(b, _)| b.len()).collect();
    assert_eq!(releases.len(), 3, "{:?}", releases.keys());
    assert!(sizes.contains(&4096) && sizes.contains(&10000), "{sizes:?}");
    // Settings, and hooks without their secret.
    for doc in [
        "branch_protection",
        "rulesets",
        "hooks",
        "deploy_keys",
        "collaborators",
        "teams",
    ] {
        assert!(
            widgets.join(format!("meta/settings/{doc}.json")).is_file(),
            "{doc}"
        );
    }
    let hooks = std::fs::read_to_string(widgets.join("meta/settings/hooks.json")).unwrap();
    assert!(!hooks.contains("widgets-hook-secret"));
    assert!(!hooks.contains("\"secret\""), "{hooks}");
    let protection = read_json(&widgets.join("meta/settings/branch_protection.json"));
    assert!(protection.get("main").is_some(), "{protection}");
    // Item documents carry the item's updated_at as mtime.
    let mtime = std::fs::metadata(widgets.join("meta/issues/0/4.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(mtime < SystemTime::now() - Duration::from_secs(3600));
}

#[tokio::test]
async fn incremental_export_rewrites_only_what_changed() {
    let sim = start().await;
    let c = client(&sim, OWNER);
    let tmp = tempfile::tempdir().unwrap();
    // `since` has GitHub's one-second resolution: let the seeding's second pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let base = tmp.path().join("base");
    let report = full(&c, "tracker", &base).await;
    assert_all_included(&report);
    assert!(report.cursors.since.contains_key("issues"));

    // Nothing changed: an incremental export is identical to the previous tree.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = sim.stats();
    let same = tmp.path().join("same");
    let unchanged = export_repo(
        &c,
        "acme",
        "tracker",
        &same,
        Some(&base),
        ExportMode::Incremental {
            cursors: report.cursors.clone(),
        },
    )
    .await
    .unwrap();
    let after = sim.stats();
    let counted = after.counted_requests - before.counted_requests;
    println!(
        "unchanged incremental: {} requests, {counted} counted, {} not modified",
        unchanged.requests,
        after.not_modified - before.not_modified
    );
    print_routes(&before, &after);
    assert_all_included(&unchanged);
    assert_eq!(differences(&base, &same), Vec::<String>::new());
    // The three since-lists (issues, issue comments, review comments), all empty; everything
    // else is a conditional request answered 304, which does not count.
    assert!(counted <= 3, "{counted}");

    // One new comment on issue 5.
    c.post_json(
        "/repos/acme/tracker/issues/5/comments",
        &serde_json::json!({ "body": "A new comment." }),
    )
    .await
    .unwrap();
    let before = sim.stats();
    let next = tmp.path().join("next");
    let changed = export_repo(
        &c,
        "acme",
        "tracker",
        &next,
        Some(&same),
        ExportMode::Incremental {
            cursors: unchanged.cursors.clone(),
        },
    )
    .await
    .unwrap();
    let after = sim.stats();
    let counted = after.counted_requests - before.counted_requests;
    let not_modified = after.not_modified - before.not_modified;
    println!(
        "incremental after one comment: {} requests, {counted} counted, {not_modified} not modified",
        changed.requests
    );
    assert_all_included(&changed);
    assert_eq!(
        differences(&same, &next),
        vec!["meta/issues/0/5.json".to_string()]
    );
    let mut expected = seeded_counts("tracker");
    expected.comments += 1;
    assert_eq!(changed.counts, expected);
    // Bound: 3 since-lists + the changed issue's comments and events = 5 counted requests;
    // the repository, labels, milestones, releases, workflows and settings answer 304.
    assert!(counted <= 5, "{counted}");
    assert!(not_modified >= 8, "{not_modified}");
    let doc = read_json(&next.join("meta/issues/0/5.json"));
    assert!(
        doc["comments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["body"] == "A new comment.")
    );

    // Incremental and full give the same picture.
    let again = tmp.path().join("full-again");
    full(&c, "tracker", &again).await;
    assert_eq!(differences(&next, &again), Vec::<String>::new());
}

#[tokio::test]
async fn attachments_are_fetched_by_reference_or_recorded_with_the_error() {
    let sim = start().await;
    let c = client(&sim, OWNER);
    let missing = format!(
        "{}/user-attachments/assets/0000-missing",
        sim.ready().git_url
    );
    c.post_json(
        "/repos/acme/widgets/issues/2/comments",
        &serde_json::json!({ "body": format!("Screenshot: ![shot]({missing}).") }),
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let report = full(&c, "widgets", tmp.path()).await;
    let status = &report.components["attachments"];
    assert_eq!(
        status.status,
        repovault_common::domain::ComponentState::Included
    );
    assert!(
        status.reason.as_deref().unwrap().contains("1 attachment"),
        "{status:?}"
    );
    let index = read_json(&tmp.path().join("meta/attachments.json"));
    assert!(
        index[&missing]["error"].as_str().unwrap().contains("404"),
        "{index}"
    );
    assert_eq!(report.counts.attachments, 0);
}

struct Observer {
    seen: std::sync::Mutex<Vec<RateSnapshot>>,
    /// A fleet-wide pause, as the coordinator would set it.
    pause: chrono::DateTime<chrono::Utc>,
}

impl RateObserver for Observer {
    fn observe(&self, snapshot: &RateSnapshot) {
        self.seen.lock().unwrap().push(snapshot.clone());
    }
    fn pause_until(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        Some(self.pause)
    }
}

#[tokio::test]
async fn rate_snapshots_reach_the_observer_and_errors_hide_the_token() {
    let sim = start().await;
    let observer = Arc::new(Observer {
        seen: Default::default(),
        pause: chrono::Utc::now() + chrono::Duration::milliseconds(300),
    });
    let c = client(&sim, OWNER).with_observer(observer.clone());
    let started = Instant::now();
    list_org_repos(&c, "acme").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let seen = observer.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert_eq!(seen[0].limit, 5000);
    assert!(seen[0].remaining < 5000);

    let bad = "ghp_notAToken0000000000000000000000000";
    let err = list_org_repos(&client(&sim, bad), "acme")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(bad), "{shown}");
    assert!(shown.contains("/orgs/acme/repos"), "{shown}");
}

#[tokio::test]
async fn member_without_admin_skips_settings() {
    let sim = start().await;
    let c = client(&sim, DEV);
    let tmp = tempfile::tempdir().unwrap();
    let report = full(&c, "widgets", tmp.path()).await;
    println!("{:#?}", report.components);
    let settings = &report.components["settings"];
    assert_eq!(
        settings.status,
        repovault_common::domain::ComponentState::Skipped
    );
    let reason = settings.reason.as_deref().unwrap();
    assert!(reason.contains("administration: read"), "{reason}");
    assert!(reason.contains("/repos/acme/widgets/hooks"), "{reason}");
    for (component, status) in &report.components {
        if component != "settings" {
            assert_eq!(
                status.status,
                repovault_common::domain::ComponentState::Included,
                "{component}: {status:?}"
            );
        }
    }
    assert_eq!(report.counts, seeded_counts("widgets"));
}

#[tokio::test]
async fn installation_token_exports() {
    let sim = start().await;
    let ready = sim.ready();
    let key =
        Secret::new(std::fs::read_to_string(ready.app_private_key.as_ref().unwrap()).unwrap());
    let (token, _) = mint_installation_token(
        &endpoint(&sim),
        ready.app_id.unwrap(),
        &key,
        ready.installation_id.unwrap(),
    )
    .await
    .unwrap();
    let c = GitHubClient::new(&endpoint(&sim), token).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for repo in ["widgets", "tracker"] {
        let report = full(&c, repo, &tmp.path().join(repo)).await;
        println!("{repo}: {:#?}", report.components);
        // The seed's app has administration: read but not repository_hooks: only the hooks
        // are refused (403 "Resource not accessible by integration").
        for (component, status) in &report.components {
            if component == "settings"
                && status.status == repovault_common::domain::ComponentState::Skipped
            {
                let reason = status.reason.as_deref().unwrap();
                assert!(reason.contains("repository_hooks"), "{reason}");
                assert_eq!(reason.matches("answered").count(), 1, "{reason}");
            } else {
                assert_eq!(
                    status.status,
                    repovault_common::domain::ComponentState::Included,
                    "{component}: {status:?}"
                );
            }
        }
        assert_eq!(report.counts, seeded_counts(repo), "{repo}");
    }
}

#[tokio::test]
async fn secondary_limit_waits_and_succeeds() {
    let sim = start().await;
    let ready = sim.ready();
    let ca = std::fs::read(&ready.ca_cert).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let r = http
        .patch(format!("{}/_sim/options", ready.git_url))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({
                "failures": [{ "path_contains": "/issues", "status": 403, "count": 1, "retry_after_secs": 1 }]
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let c = client(&sim, OWNER);
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let report = full(&c, "widgets", tmp.path()).await;
    let took = started.elapsed();
    println!("export with a secondary limit took {took:?}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_all_included(&report);
    assert_eq!(report.counts, seeded_counts("widgets"));
    assert!(sim.stats().secondary_refusals + sim.stats().injected_failures >= 1);
}

#[tokio::test]
async fn server_errors_are_retried_and_one_failed_component_stops_nothing_else() {
    let sim = start().await;
    let ready = sim.ready();
    let ca = std::fs::read(&ready.ca_cert).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    // Two 502s on labels (retried: 1 s + 2 s), releases always 500 (fails after 3 retries).
    let r = http
        .patch(format!("{}/_sim/options", ready.git_url))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({ "failures": [
                { "path_contains": "/labels", "status": 502, "count": 2 },
                { "path_contains": "/releases", "status": 500, "count": 0 },
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let c = client(&sim, OWNER);
    let tmp = tempfile::tempdir().unwrap();
    let report = full(&c, "widgets", tmp.path()).await;
    println!("{:#?}", report.components);
    let releases = &report.components["releases"];
    assert_eq!(
        releases.status,
        repovault_common::domain::ComponentState::Failed
    );
    assert!(
        releases.reason.as_deref().unwrap().contains("500"),
        "{releases:?}"
    );
    for (component, status) in &report.components {
        if component != "releases" {
            assert_eq!(
                status.status,
                repovault_common::domain::ComponentState::Included,
                "{component}: {status:?}"
            );
        }
    }
    let mut expected = seeded_counts("widgets");
    expected.releases = 0;
    expected.release_assets = 0;
    assert_eq!(report.counts, expected);
}
