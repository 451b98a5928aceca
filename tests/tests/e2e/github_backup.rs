//! GitHub backups against the forge simulator: every count of every repository equals the seed;
//! the snapshot holds the mirror (without `refs/pull/*/merge`), the wiki, the LFS objects and
//! the metadata; an incremental backup after a change reads and rewrites only that change; one
//! repository failing (deleted after listing, blocked for legal reasons) fails only its own
//! task; a token without administration rights backs up with `settings: skipped`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use forge_sim::seed::Seed;
use repovault_common::manifest::{self, Manifest};
use repovault_coordinator::model::{BackupRecord, Status};
use repovault_tests::cluster::{Cluster, restic};

use super::github_org::{SEEDED, add_acme_org, cli, curl, sim};

fn seed() -> Seed {
    Seed::from_file(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("forge-sim/seeds/acme.toml"))
        .unwrap()
}

async fn run(c: &Cluster, repo: &str, backup_type: &str) -> BackupRecord {
    let b = c
        .core()
        .backups
        .run_backup_of_type(
            &format!("acme/{repo}"),
            backup_type.parse().expect("a backup type"),
        )
        .await
        .unwrap();
    c.wait_backup(&b.id, Duration::from_secs(180))
        .await
        .unwrap()
}

/// The snapshot tree of a backup, restored by stock restic with the exported organisation key.
async fn restore_tree(c: &Cluster, b: &BackupRecord, into: &Path) -> PathBuf {
    let key_file = c.dir.path().join("acme.key");
    if !key_file.exists() {
        let (_, key) = c.core().registry.export_org_key("acme").await.unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .unwrap();
        f.write_all(key.expose().as_bytes()).unwrap();
    }
    let repo = c
        .storage_root()
        .join(b.org_id.as_str())
        .join(b.repo_id.as_str());
    let snapshot = b.snapshot_id.clone().unwrap();
    restic(
        &repo,
        &key_file,
        &[
            "restore",
            snapshot.as_str(),
            "--target",
            &into.display().to_string(),
        ],
    )
    .unwrap();
    // restic restores under the path the tree was read from: find the manifest.
    fn find(dir: &Path) -> Option<PathBuf> {
        if dir.join(manifest::MANIFEST_FILE).is_file() {
            return Some(dir.to_path_buf());
        }
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .find_map(|p| find(&p))
    }
    find(into).unwrap_or_else(|| panic!("no manifest.json under {}", into.display()))
}

/// Every file under `root` except the git mirrors: relative path → bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == manifest::CODE_DIR || rel == manifest::WIKI_DIR {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn changed(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn assert_completed(b: &BackupRecord, repo: &str) {
    assert_eq!(
        b.status,
        Status::Completed,
        "backup of {repo}: {:?}",
        b.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_org_backup_holds_the_seed_and_an_incremental_reads_only_the_change() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let seed = seed();
    let mut c = Cluster::start(2).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);

    // Every repository, concurrently on two workers.
    let mut queued = Vec::new();
    for name in SEEDED {
        let b = c
            .core()
            .backups
            .run_backup(&format!("acme/{name}"))
            .await
            .unwrap();
        queued.push((name, b.id));
    }
    let mut full = BTreeMap::new();
    for (name, id) in queued {
        let b = c.wait_backup(&id, Duration::from_secs(180)).await.unwrap();
        assert_completed(&b, name);
        full.insert(name, b);
    }
    for name in SEEDED {
        let b = &full[name];
        let want = seed.counts("acme", name).unwrap();
        let got = &b.counts;
        let pairs = [
            ("issues", got.issues, want.issues),
            ("pulls", got.pulls, want.pulls),
            ("comments", got.comments, want.comments),
            ("reviews", got.reviews, want.reviews),
            ("releases", got.releases, want.releases),
            ("release_assets", got.release_assets, want.release_assets),
            ("labels", got.labels, want.labels),
            ("milestones", got.milestones, want.milestones),
            ("workflows", got.workflows, want.workflows),
            ("wiki_pages", got.wiki_pages, want.wiki_pages),
            ("lfs_objects", got.lfs_objects, want.lfs_objects),
        ];
        for (kind, got, want) in pairs {
            assert_eq!(got, want, "{name}: {kind}");
        }
        for component in [
            "git",
            "lfs",
            "issues",
            "pulls",
            "wiki",
            "releases",
            "attachments",
            "workflows",
            "labels",
            "milestones",
            "settings",
        ] {
            let status = b.components.get(component).unwrap_or_else(|| {
                panic!("{name}: no {component} component in {:?}", b.components)
            });
            assert_eq!(
                status.status,
                repovault_common::domain::ComponentState::Included,
                "{name}: {component}: {status:?}"
            );
        }
        if name == "empty" {
            assert_eq!(got.refs, 0, "the empty repository has no refs");
        } else {
            assert!(got.branches >= 1 && got.commits >= 1, "{name}: {got:?}");
        }
    }
    assert!(
        full["tracker"].counts.issues > 100,
        "more than one page of issues"
    );

    // The snapshot, restored by stock restic: the mirror without merge refs, the wiki, the
    // metadata sharded by number.
    let scratch = tempfile::tempdir().unwrap();
    let widgets = restore_tree(&c, &full["widgets"], &scratch.path().join("widgets")).await;
    let m = Manifest::from_json(&std::fs::read(widgets.join(manifest::MANIFEST_FILE)).unwrap())
        .unwrap();
    assert!(
        m.refs
            .keys()
            .any(|r| r.starts_with("refs/pull/") && r.ends_with("/head")),
        "pull request heads are kept: {:?}",
        m.refs.keys().collect::<Vec<_>>()
    );
    assert!(
        !m.refs.keys().any(|r| r.ends_with("/merge")),
        "merge refs are not: {:?}",
        m.refs.keys().collect::<Vec<_>>()
    );
    assert_eq!(m.export.as_ref().unwrap().mode, "full");
    let first_pull = std::fs::read_dir(widgets.join("meta/pulls/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let pull: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&first_pull).unwrap()).unwrap();
    let number = pull["pull"]["number"].as_u64().unwrap();
    assert_eq!(
        first_pull.file_name().unwrap().to_string_lossy(),
        format!("{number}.json"),
        "sharded by number"
    );
    assert!(
        m.refs.contains_key(&format!("refs/pull/{number}/head")),
        "the pull request's head ref"
    );
    let docs = restore_tree(&c, &full["docs"], &scratch.path().join("docs")).await;
    let wiki_home = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(docs.join(manifest::WIKI_DIR))
        .args(["show", "HEAD:Home.md"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&wiki_home.stdout),
        "# Welcome to the acme wiki\n"
    );

    // Browsing a backup reads the snapshot: every issue listed; one issue with all its
    // comments (more than one page of them at the source); a pull request with its reviews.
    let tracker_id = full["tracker"].id.clone();
    let list = cli(
        &c,
        &[
            "--output",
            "json",
            "backup",
            "browse",
            tracker_id.as_str(),
            "issues",
        ],
        &[],
    );
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let items: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        items.len() as u64,
        seed.counts("acme", "tracker").unwrap().issues
    );
    let long = items
        .iter()
        .find(|i| i["title"] == "The long discussion")
        .unwrap()["number"]
        .as_u64()
        .unwrap();
    let one = cli(
        &c,
        &[
            "--output",
            "json",
            "backup",
            "browse",
            tracker_id.as_str(),
            &format!("issues/{long}"),
        ],
        &[],
    );
    let doc: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(
        doc["comments"].as_array().unwrap().len(),
        131,
        "1 + 130 comments"
    );
    let thread = cli(
        &c,
        &[
            "backup",
            "browse",
            full["widgets"].id.as_str(),
            &format!("pulls/{number}"),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&thread.stdout);
    assert!(text.contains("review by"), "{text}");
    let bad = cli(&c, &["backup", "browse", tracker_id.as_str(), "wiki"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("issues/N"));

    // The LFS objects, stored as git-lfs lays them out and named by their content's hash.
    let lfs = restore_tree(&c, &full["lfs-data"], &scratch.path().join("lfs")).await;
    let objects: Vec<(String, Vec<u8>)> = files(&lfs)
        .into_iter()
        .filter(|(p, _)| p.starts_with("lfs/objects/"))
        .collect();
    assert_eq!(
        objects.len() as u64,
        seed.counts("acme", "lfs-data").unwrap().lfs_objects
    );
    for (path, bytes) in objects {
        use sha2::Digest as _;
        let oid = hex::encode(sha2::Sha256::digest(&bytes));
        assert!(
            path.ends_with(&format!("{}/{}/{oid}", &oid[..2], &oid[2..4])),
            "{path}"
        );
    }

    // One new comment on the tracker: the incremental reads and rewrites that issue only.
    let tracker_full = restore_tree(&c, &full["tracker"], &scratch.path().join("t1")).await;
    curl(
        "POST",
        &format!("{}/repos/acme/tracker/issues/3/comments", ready.api_url),
        Some(&ready.token),
        &ready.ca_cert,
        r#"{"body":"A new comment, after the full backup."}"#,
    );
    // `since` has one-second resolution: the comment must be later than the cursor's second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = sim.stats();
    let inc = run(&c, "tracker", "incremental").await;
    let after = sim.stats();
    assert_completed(&inc, "tracker");
    assert_eq!(
        inc.backup_type,
        repovault_common::domain::BackupType::Incremental
    );
    assert_eq!(inc.counts.comments, full["tracker"].counts.comments + 1);
    assert_eq!(inc.counts.issues, full["tracker"].counts.issues);
    let tracker_inc = restore_tree(&c, &inc, &scratch.path().join("t2")).await;
    let diff: Vec<String> = changed(&files(&tracker_full), &files(&tracker_inc))
        .into_iter()
        .filter(|f| f != manifest::MANIFEST_FILE)
        .collect();
    assert_eq!(
        diff,
        vec!["meta/issues/0/3.json".to_string()],
        "only the commented issue changed"
    );
    let counted = after.counted_requests - before.counted_requests;
    eprintln!(
        "incremental of tracker: {counted} counted requests, {} answered 304",
        after.not_modified - before.not_modified
    );
    assert!(
        counted < 20,
        "an incremental after one comment costs a handful of requests, not a re-read ({counted})"
    );

    // Nothing changed: an incremental costs at most 3 requests that count against the limit.
    let before = sim.stats();
    let again = run(&c, "tracker", "incremental").await;
    let after = sim.stats();
    assert_completed(&again, "tracker");
    assert_eq!(again.counts, inc.counts);
    let counted = after.counted_requests - before.counted_requests;
    assert!(
        counted <= 3,
        "unchanged incremental: {counted} counted requests"
    );

    // On a worker that never held the repository, an unchanged incremental reuses the parent's
    // commit count from the parent's manifest in the snapshot: no commit-count request.
    c.stop_workers().await;
    c.add_worker().await.unwrap();
    let commit_counts = |s: &forge_sim::stats::Counters| -> u64 {
        s.by_route
            .iter()
            .filter(|(k, _)| k.starts_with("GET ") && k.contains("/commits "))
            .map(|(_, n)| *n)
            .sum()
    };
    let before = sim.stats();
    let elsewhere = run(&c, "tracker", "incremental").await;
    let after = sim.stats();
    assert_completed(&elsewhere, "tracker");
    assert_eq!(
        commit_counts(&after) - commit_counts(&before),
        0,
        "the commit count comes from the parent's manifest: {:?}",
        after.by_route
    );

    // A full backup now restores to the same picture as the incrementals.
    let full2 = run(&c, "tracker", "full").await;
    assert_completed(&full2, "tracker");
    let tracker_full2 = restore_tree(&c, &full2, &scratch.path().join("t3")).await;
    let diff: Vec<String> = changed(&files(&tracker_inc), &files(&tracker_full2))
        .into_iter()
        .filter(|f| f != manifest::MANIFEST_FILE)
        .collect();
    assert!(diff.is_empty(), "full and incremental differ: {diff:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_repository_failing_fails_only_its_task_and_a_member_token_skips_settings() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(2).await.unwrap();
    // A member without administration rights (seeds/acme.toml: dev).
    add_acme_org(&c, &ready, "ghp_acmeDev000000000000000000000000000");
    let ca = &ready.ca_cert;
    let control = ready.api_url.trim_end_matches("/api/v3").to_string();
    curl(
        "POST",
        &format!("{control}/_sim/repos/acme/docs/delete"),
        None,
        ca,
        "{}",
    );
    curl(
        "POST",
        &format!("{control}/_sim/repos/acme/tracker/block"),
        None,
        ca,
        "{}",
    );

    let (docs, tracker, widgets) = tokio::join!(
        run(&c, "docs", "full"),
        run(&c, "tracker", "full"),
        run(&c, "widgets", "full")
    );
    assert_eq!(docs.status, Status::Failed);
    let e = docs.error.clone().unwrap_or_default();
    assert!(e.contains("acme/docs") || e.contains("docs"), "{e}");
    assert!(
        e.to_lowercase().contains("not found") || e.contains("404"),
        "deleted: {e}"
    );
    assert_eq!(tracker.status, Status::Failed);
    let e = tracker.error.clone().unwrap_or_default();
    assert!(
        e.contains("451") || e.to_lowercase().contains("unavailable"),
        "blocked: {e}"
    );
    assert!(!e.contains("ghp_"), "no token in errors: {e}");
    assert_eq!(
        (docs.attempt, tracker.attempt),
        (1, 1),
        "a missing or blocked repository is not retried: another attempt gets the same answer"
    );

    assert_completed(&widgets, "widgets");
    let settings = &widgets.components["settings"];
    assert_eq!(
        settings.status,
        repovault_common::domain::ComponentState::Skipped,
        "{settings:?}"
    );
    assert!(
        settings
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("administration"),
        "the reason names the permission: {settings:?}"
    );
    assert_eq!(
        widgets.components["issues"].status,
        repovault_common::domain::ComponentState::Included
    );
    let show = cli(&c, &["backup", "show", widgets.id.as_str()], &[]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("complete") && text.contains("no (settings not included)"),
        "{text}"
    );
    assert!(
        text.contains("settings     skipped: token lacks administration"),
        "{text}"
    );
    let list = cli(&c, &["repo", "list", "acme"], &[]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.lines().any(
            |l| l.starts_with("acme/widgets") && l.contains("completed (incomplete: settings)")
        ),
        "{text}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renamed_repository_keeps_its_history_and_backs_up_under_its_new_name() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);
    let first = run(&c, "docs", "full").await;
    assert_completed(&first, "docs");

    curl(
        "PATCH",
        &format!("{}/repos/acme/docs", ready.api_url),
        Some(&ready.token),
        &ready.ca_cert,
        r#"{"name":"handbook"}"#,
    );
    let report = c.core().forge.sync_org("acme").await.unwrap();
    assert_eq!(report.renamed.len(), 1, "{report:?}");

    let second = run(&c, "handbook", "incremental").await;
    assert_completed(&second, "handbook");
    assert_eq!(
        second.repo_id, first.repo_id,
        "the same record follows the rename"
    );
    assert_eq!(
        second.backup_type,
        repovault_common::domain::BackupType::Incremental
    );
    assert_eq!(
        second.parent_snapshot_id, first.snapshot_id,
        "the history continues from the backup made under the old name"
    );
    assert_eq!(second.counts.wiki_pages, first.counts.wiki_pages);
    assert_eq!(second.counts.commits, first.counts.commits);
    assert_eq!(
        second.components["wiki"].status,
        repovault_common::domain::ComponentState::Included
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_without_the_cache_resumes_an_incremental_from_the_parent_snapshot() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let mut c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);
    let full = run(&c, "widgets", "full").await;
    assert_completed(&full, "widgets");

    // Another worker, with an empty cache, takes the next backup.
    c.stop_workers().await;
    c.add_worker().await.unwrap();
    curl(
        "POST",
        &format!("{}/repos/acme/widgets/issues/1/comments", ready.api_url),
        Some(&ready.token),
        &ready.ca_cert,
        r#"{"body":"Seen from another worker."}"#,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = sim.stats();
    let inc = run(&c, "widgets", "incremental").await;
    let after = sim.stats();
    assert_completed(&inc, "widgets");
    assert_eq!(inc.counts.comments, full.counts.comments + 1);
    assert_eq!(inc.counts.pulls, full.counts.pulls);
    assert_eq!(inc.counts.release_assets, full.counts.release_assets);
    assert!(
        inc.bytes_received < full.bytes_received / 2,
        "the mirror came from the snapshot, not a fresh clone ({} of {} bytes)",
        inc.bytes_received,
        full.bytes_received
    );
    let counted = after.counted_requests - before.counted_requests;
    assert!(
        counted < 20,
        "an incremental, not a re-read: {counted} counted requests"
    );

    let scratch = tempfile::tempdir().unwrap();
    let a = restore_tree(&c, &full, &scratch.path().join("a")).await;
    let b = restore_tree(&c, &inc, &scratch.path().join("b")).await;
    let m = Manifest::from_json(&std::fs::read(b.join(manifest::MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(m.export.unwrap().mode, "incremental");
    let diff: Vec<String> = changed(&files(&a), &files(&b))
        .into_iter()
        .filter(|f| f != manifest::MANIFEST_FILE)
        .collect();
    assert_eq!(diff, vec!["meta/issues/0/1.json".to_string()]);
    c.shutdown().await;
}

/// The attachment path: an issue of acme/docs links two attachments in GitHub's two forms
/// (`/user-attachments/assets/UUID`, uploaded in the private secret-plans, and
/// `/OWNER/REPO/assets/ID/UUID`), which the simulator serves as GitHub does; the backup stores
/// both under `attachments/<sha256>` with a map from each URL, and its verification counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attachments_linked_from_an_issue_are_stored_by_checksum_and_verified() {
    use sha2::Digest as _;
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);
    let b = run(&c, "docs", "full").await;
    assert_completed(&b, "docs");
    let want = seed().counts("acme", "docs").unwrap().attachments;
    assert_eq!(want, 2, "the seed links two attachments from docs");
    assert_eq!(b.counts.attachments, want);
    let v = b.verification.as_ref().expect("verified at backup");
    let meta = v
        .checks
        .iter()
        .find(|ch| ch.name == "metadata_valid")
        .expect("metadata_valid ran");
    assert_eq!(
        meta.result,
        repovault_common::domain::CheckOutcome::Pass,
        "{meta:?}"
    );
    assert!(meta.detail.contains("2 attachments"), "{}", meta.detail);

    let dir = tempfile::tempdir().unwrap();
    let root = restore_tree(&c, &b, dir.path()).await;
    // The bytes the simulator's seed holds, by their SHA-256.
    let expected = [
        (
            "/user-attachments/assets/3f1c5a52-7a3e-4b8e-9c41-2d6f0b7e8a19",
            "49fbcd4506277e698ef378888a7d9d4342741a0805397565f67798f5a58a0f4c",
        ),
        (
            "/acme/docs/assets/1000001/8d2e4b6a-1c3f-4a5e-b7d9-0e1f2a3b4c5d",
            "94107a80263adac17377cdd0260ee18a83cb958c1dba8667e31e501ad25bec9d",
        ),
    ];
    let map: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("meta/attachments.json")).expect("meta/attachments.json"),
    )
    .unwrap();
    for (path, sha) in expected {
        let bytes = std::fs::read(root.join("attachments").join(sha))
            .unwrap_or_else(|e| panic!("attachments/{sha} ({path}): {e}"));
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), sha, "{path}");
        let entry = map
            .as_object()
            .and_then(|m| m.iter().find(|(url, _)| url.ends_with(path)))
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("{path} not in attachments.json: {map}"));
        assert_eq!(entry["sha256"], sha, "{path}: {entry}");
    }
}
