//! The CLI follows a list's pages: `--limit N` shows N items (with a note on stderr when more
//! exist), `--all` shows every item across pages, and JSON output stays one array.

use std::process::{Command, Output};

use repovault_common::domain::Provider;
use repovault_common::domain::{BackupType, Trigger};
use repovault_coordinator::coordinator::Coordinator;
use repovault_coordinator::model::RepoRecord;
use repovault_coordinator::store::Batch;
use repovault_tests::cluster::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// More than two of the CLI's pages (1000 items each).
const REPOS: usize = 2345;

fn cli(c: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--coordinator")
        .arg(c.url())
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The table's rows (without the header line).
fn rows(o: &Output) -> Vec<String> {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o).lines().skip(1).map(str::to_string).collect()
}

/// `REPOS` repositories of organisation acme, named r00000 on, written as `repo add` writes
/// them (record and name index), 63 a transaction (126 of the store's 127 operations).
async fn seed_repos(core: &Coordinator) -> Vec<RepoRecord> {
    let org = core.registry.add_org("acme", Provider::Git).await.unwrap();
    let repos: Vec<RepoRecord> = (0..REPOS)
        .map(|i| RepoRecord {
            id: repovault_coordinator::ids::new_repo_id(),
            org_id: org.id.clone(),
            org_name: org.name.clone(),
            name: format!("r{i:05}"),
            url: format!("https://git.example.com/r{i:05}.git"),
            sealed_token: None,
            sealed_master_key: None,
            created_at_ms: 1,
            forge_id: None,
            archived: false,
            deleted: false,
            schedule: None,
            on_push: None,
        })
        .collect();
    for chunk in repos.chunks(63) {
        let mut batch = Batch::default();
        for r in chunk {
            batch.repo(r).repo_name(&r.org_id, &r.name, &r.id);
        }
        core.store.apply(batch).await.unwrap();
    }
    repos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_commands_follow_pages_with_limit_and_all() {
    let c = Cluster::start(0).await.unwrap();
    let core = c.core();
    seed_repos(core).await;
    let all_names: Vec<String> = (0..REPOS).map(|i| format!("acme/r{i:05}")).collect();

    // The default: the first 1000, and a note saying how to see more.
    let o = cli(&c, &["repo", "list"]);
    let shown = rows(&o);
    assert_eq!(shown.len(), 1000);
    assert!(shown[0].starts_with("acme/r00000 "), "{}", shown[0]);
    assert!(
        stderr(&o).contains("showing the first 1000 repositories")
            && stderr(&o).contains("--all")
            && stderr(&o).contains("--limit"),
        "{}",
        stderr(&o)
    );

    let o = cli(&c, &["repo", "list", "acme", "--limit", "5"]);
    let shown = rows(&o);
    assert_eq!(shown.len(), 5);
    assert!(shown[4].starts_with("acme/r00004 "), "{}", shown[4]);
    assert!(stderr(&o).contains("showing the first 5"), "{}", stderr(&o));

    // --all: every repository once, in order, across three pages; nothing left to note.
    let o = cli(&c, &["repo", "list", "--all"]);
    let shown: Vec<String> = rows(&o)
        .iter()
        .map(|r| r.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(shown, all_names);
    assert!(!stderr(&o).contains("showing"), "{}", stderr(&o));

    // JSON stays one array: of every item with --all, of N with --limit (no note).
    let o = cli(&c, &["--output", "json", "repo", "list", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["full_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, all_names);
    let o = cli(&c, &["--output", "json", "repo", "list", "--limit", "3"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 3);
    assert!(!stderr(&o).contains("showing"), "{}", stderr(&o));

    // A list with fewer items than the limit shows them all, without a note.
    let o = cli(&c, &["org", "list", "--limit", "5"]);
    assert_eq!(rows(&o).len(), 1);
    assert!(!stderr(&o).contains("showing"), "{}", stderr(&o));

    // --all and --limit together are a usage error; so is --limit 0.
    for args in [
        &["repo", "list", "--all", "--limit", "5"][..],
        &["backup", "list", "--limit", "0"][..],
    ] {
        let o = cli(&c, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

/// `queue` follows the queue's pages: with no worker every backup stays queued, more than two
/// pages of them, in the order leases take them (highest effective priority first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_is_listed_page_by_page_in_lease_order() {
    let c = Cluster::start(0).await.unwrap();
    let core = c.core();
    let repos = seed_repos(core).await;
    // Every third a manual backup (priority 8), the others scheduled (4); enqueued 100 at a
    // time, so their writes share the committer's transactions.
    for (chunk_no, chunk) in repos.chunks(100).enumerate() {
        let enqueues = chunk.iter().enumerate().map(|(i, r)| {
            let (trigger, priority) = if (chunk_no * 100 + i) % 3 == 0 {
                (Trigger::Manual, 8)
            } else {
                (Trigger::Schedule, 4)
            };
            core.backups
                .enqueue_backup(r, BackupType::Full, trigger, priority)
        });
        for done in futures::future::join_all(enqueues).await {
            done.unwrap();
        }
    }

    let o = cli(&c, &["queue"]);
    let first_page = rows(&o);
    assert_eq!(first_page.len(), 1000);
    assert!(
        stderr(&o).contains("showing the first 1000 tasks"),
        "{}",
        stderr(&o)
    );

    let o = cli(&c, &["--output", "json", "queue", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = doc.as_array().unwrap();
    assert_eq!(
        entries.len(),
        REPOS,
        "every queued task, across three pages"
    );
    let ids: std::collections::HashSet<&str> = entries
        .iter()
        .map(|e| e["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), REPOS, "no task shown twice");
    let effective: Vec<u64> = entries
        .iter()
        .map(|e| e["effective_priority"].as_u64().unwrap())
        .collect();
    assert!(
        effective.windows(2).all(|w| w[0] >= w[1]),
        "highest effective priority first across pages"
    );
    assert!(effective[0] > effective[REPOS - 1], "two priorities queued");
    // The table's first page is the start of the same order.
    let first_ids: Vec<&str> = first_page
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    let all_ids: Vec<&str> = entries[..1000]
        .iter()
        .map(|e| e["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(first_ids, all_ids);

    // A token from another list is refused, naming the field.
    let mut admin = c.admin().await.unwrap();
    let backups = admin
        .list_backups(repovault_proto::v1::ListBackupsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!backups.next_page_token.is_empty());
    let refused = admin
        .get_queue(repovault_proto::v1::GetQueueRequest {
            page_size: 10,
            page_token: backups.next_page_token,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("page_token"),
        "{}",
        refused.message()
    );
}
