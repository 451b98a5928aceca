//! The admin lists page through a store of 100,000 repositories and 20,000 backups over real
//! gRPC (a tonic server on loopback and the generated client, with gRPC's default 4 MiB
//! receive limit): every item exactly once and in order, every response under 4 MiB, a token
//! reused after inserts continues where it stopped, and a bad token is refused naming
//! `page_token`. The records are written as the coordinator writes them (repository records
//! with their name index; backup records with the repository's aggregates, as a completion
//! commits them), in store batches of at most 127 operations (`kv::MAX_TXN_OPS`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use prost::Message;
use repovault_proto::v1 as pb;
use repovault_proto::v1::admin_service_client::AdminServiceClient;
use repovault_proto::v1::admin_service_server::AdminServiceServer;
use tonic::transport::Channel;

use crate::coordinator::Coordinator;
use crate::coordinator::testing::{self, tid};
use crate::model::{
    BackupRecord, BackupType, OrgRecord, Provider, RepoRecord, RepoStats, Status, Trigger,
};
use crate::store::Batch;

use super::admin::AdminApi;

/// gRPC's default message size limit, which the client below keeps.
const GRPC_LIMIT: usize = 4 * 1024 * 1024;

const ORGS: usize = 10;
const REPOS_PER_ORG: usize = 10_000;
/// Repositories with backups, per organisation, and backups of each (the store's recent
/// records: `RECENT_BACKUPS`).
const BACKED_UP_PER_ORG: usize = 200;
const BACKUPS_PER_REPO: usize = 10;

/// A server for `core`'s admin service on a loopback port, and a client of it.
async fn serve(core: Arc<Coordinator>) -> AdminServiceClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdminServiceServer::new(AdminApi { core }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn repo_record(org: &OrgRecord, name: String) -> RepoRecord {
    RepoRecord {
        id: crate::ids::new_repo_id(),
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        url: format!("https://git.example.com/{}/{name}.git", org.name),
        name,
        sealed_token: None,
        sealed_master_key: None,
        created_at_ms: 1,
        forge_id: None,
        archived: false,
        deleted: false,
        schedule: None,
        on_push: None,
    }
}

/// A finished backup of `repo` created at `at`: completed, or (every other one) failed with a
/// git error of the length real ones have, so a full page of them passes the byte budget.
fn backup_record(repo: &RepoRecord, at: i64, failed: bool) -> BackupRecord {
    let mut b = crate::tasks::kinds::new_backup(
        repo,
        BackupType::Full,
        Trigger::Schedule,
        5,
        &tid("t"),
        at,
    );
    b.finished_at_ms = Some(at + 500);
    if failed {
        b.status = Status::Failed;
        b.error = Some(format!(
            "git fetch failed: exit status 128: fatal: unable to access '{}': {}",
            repo.url,
            "The requested URL returned error: 502 (retrying later) ".repeat(20)
        ));
    } else {
        b.status = Status::Completed;
        b.snapshot_id = Some(tid(testing::SNAPSHOT));
        b.size_bytes = 1_000_000;
        b.added_bytes = 10_000;
    }
    b
}

/// Pages through `call` from the first page with `page_size`: every item, and each page's
/// encoded size (checked against the limit the client enforces too).
async fn every_page<T, F, Fut>(page_size: u32, mut call: F) -> (Vec<T>, usize)
where
    F: FnMut(u32, String) -> Fut,
    Fut: std::future::Future<Output = (Vec<T>, String, usize)>,
{
    let (mut all, mut pages, mut token) = (Vec::new(), 0, String::new());
    loop {
        let (items, next, bytes) = call(page_size, token).await;
        assert!(bytes < GRPC_LIMIT, "page {pages} is {bytes} bytes");
        assert!(!items.is_empty(), "page {pages} is empty");
        pages += 1;
        all.extend(items);
        if next.is_empty() {
            return (all, pages);
        }
        token = next;
    }
}

async fn list_repos(
    c: &mut AdminServiceClient<Channel>,
    org: &str,
    page_size: u32,
    page_token: String,
) -> Result<pb::ListReposResponse, tonic::Status> {
    c.list_repos(pb::ListReposRequest {
        org: org.into(),
        page_size,
        page_token,
    })
    .await
    .map(|r| r.into_inner())
}

async fn list_backups(
    c: &mut AdminServiceClient<Channel>,
    page_size: u32,
    page_token: String,
) -> Result<pb::ListBackupsResponse, tonic::Status> {
    c.list_backups(pb::ListBackupsRequest {
        repo: String::new(),
        page_size,
        page_token,
    })
    .await
    .map(|r| r.into_inner())
}

/// Newest first: creation time, then id, both descending.
fn newest_first(list: &mut [(i64, String)]) {
    list.sort_by(|a, b| b.cmp(a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_through_100000_repositories_and_20000_backups() {
    let dir = tempfile::tempdir().unwrap();
    let core = testing::core(dir.path()).await;
    let mut orgs = Vec::new();
    for o in 0..ORGS {
        orgs.push(
            core.registry
                .add_org(&format!("org-{o:02}"), Provider::Git)
                .await
                .unwrap(),
        );
    }
    // 100,000 repositories: record and name index, 63 repositories (126 operations) a batch.
    let mut repos: Vec<RepoRecord> = Vec::with_capacity(ORGS * REPOS_PER_ORG);
    for org in &orgs {
        for i in 0..REPOS_PER_ORG {
            repos.push(repo_record(org, format!("repo-{i:05}")));
        }
    }
    for chunk in repos.chunks(63) {
        let mut batch = Batch::default();
        for r in chunk {
            batch.repo(r).repo_name(&r.org_id, &r.name, &r.id);
        }
        core.store.apply(batch).await.unwrap();
    }
    // 20,000 backups: 10 each of 2,000 repositories with their aggregates, 11 repositories
    // (121 operations) a batch. Pairs of backups share a creation time, so the id decides.
    let backed_up: Vec<&RepoRecord> = repos
        .chunks(REPOS_PER_ORG)
        .flat_map(|org_repos| &org_repos[..BACKED_UP_PER_ORG])
        .collect();
    let base = testing::utc("2026-01-01T00:00:00Z");
    let mut expected_backups: Vec<(i64, String)> = Vec::new();
    let mut n = 0i64;
    for chunk in backed_up.chunks(11) {
        let mut batch = Batch::default();
        for r in chunk {
            let mut stats = RepoStats::default();
            for _ in 0..BACKUPS_PER_REPO {
                let b = backup_record(r, base + (n / 2) * 1000, n % 2 == 1);
                n += 1;
                stats.record(&b);
                expected_backups.push((b.created_at_ms, b.id.to_string()));
                batch.backup(&b);
            }
            batch.stats(&r.id, &stats);
        }
        core.store.apply(batch).await.unwrap();
    }
    assert_eq!(expected_backups.len(), 20_000);
    newest_first(&mut expected_backups);
    let mut c = serve(core.clone()).await;

    // Without a page size: the default page, and a token.
    let first = list_repos(&mut c, "", 0, String::new()).await.unwrap();
    assert_eq!(first.repos.len(), crate::paging::DEFAULT_PAGE_SIZE);
    assert!(!first.next_page_token.is_empty());

    // Repositories: every one exactly once, by organisation then name, at the largest size.
    let mut expected_repos: Vec<(String, String)> = repos
        .iter()
        .map(|r| (r.org_name.clone(), r.name.clone()))
        .collect();
    expected_repos.sort();
    let (listed, pages) = every_page(u32::MAX, |size, token| {
        let mut c = c.clone();
        async move {
            let r = list_repos(&mut c, "", size, token).await.unwrap();
            let bytes = r.encoded_len();
            let names = r.repos.into_iter().map(|x| (x.org, x.name)).collect();
            (names, r.next_page_token, bytes)
        }
    })
    .await;
    assert_eq!(pages, 20, "100,000 at the largest page size, 5,000");
    assert!(listed == expected_repos, "every repository once, in order");

    // One organisation's repositories.
    let (org3, _) = every_page(4000, |size, token| {
        let mut c = c.clone();
        async move {
            let r = list_repos(&mut c, "org-03", size, token).await.unwrap();
            let bytes = r.encoded_len();
            let names = r.repos.into_iter().map(|x| x.full_name).collect();
            (names, r.next_page_token, bytes)
        }
    })
    .await;
    assert_eq!(org3.len(), REPOS_PER_ORG);
    assert!(org3.iter().all(|n: &String| n.starts_with("org-03/")));

    // Backups: every one exactly once, newest first; pages end at the byte budget.
    let (listed, pages) = every_page(5000, |size, token| {
        let mut c = c.clone();
        async move {
            let r = list_backups(&mut c, size, token).await.unwrap();
            let bytes = r.encoded_len();
            let keys = r
                .backups
                .into_iter()
                .map(|b| {
                    let at = chrono::DateTime::parse_from_rfc3339(&b.created_at).unwrap();
                    (at.timestamp_millis(), b.id)
                })
                .collect();
            (keys, r.next_page_token, bytes)
        }
    })
    .await;
    assert!(
        listed == expected_backups,
        "every backup once, newest first"
    );
    assert!(
        pages > 4,
        "5,000 backups of about 800 bytes pass the page budget: {pages} pages"
    );

    // A token reused after inserts continues after its item: a repository added before the
    // cursor is not in the rest, those after it are; likewise a backup newer than the cursor
    // (before it, newest first) and an older one.
    let p1 = list_repos(&mut c, "", 1000, String::new()).await.unwrap();
    let cursor = p1
        .repos
        .last()
        .map(|r| (r.org.clone(), r.name.clone()))
        .unwrap();
    assert_eq!(cursor, ("org-00".to_string(), "repo-00999".to_string()));
    for name in [
        "org-00/aaa-before",
        "org-00/repo-00999a",
        "org-07/zzz-after",
    ] {
        core.registry
            .add_repo(name, "https://git.example.com/new.git", None)
            .await
            .unwrap();
    }
    let mut rest = Vec::new();
    let mut token = p1.next_page_token.clone();
    while !token.is_empty() {
        let r = list_repos(&mut c, "", 5000, token).await.unwrap();
        rest.extend(r.repos.into_iter().map(|x| x.full_name));
        token = r.next_page_token;
    }
    assert_eq!(rest.first().map(String::as_str), Some("org-00/repo-00999a"));
    assert_eq!(rest.len(), 100_000 - 1000 + 2);
    assert!(rest.iter().any(|n| n == "org-07/zzz-after"));
    assert!(!rest.iter().any(|n| n == "org-00/aaa-before"));

    let b1 = list_backups(&mut c, 100, String::new()).await.unwrap();
    let repo = backed_up[0];
    let newest = backup_record(repo, base + 100_000_000, false);
    let oldest = backup_record(repo, base - 1000, false);
    let mut batch = Batch::default();
    batch.backup(&newest).backup(&oldest);
    core.store.apply(batch).await.unwrap();
    let mut rest = Vec::new();
    let mut token = b1.next_page_token.clone();
    while !token.is_empty() {
        let r = list_backups(&mut c, 5000, token).await.unwrap();
        rest.extend(r.backups.into_iter().map(|b| b.id));
        token = r.next_page_token;
    }
    let mut want: Vec<String> = expected_backups[100..]
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    want.push(oldest.id.to_string());
    assert!(
        rest == want,
        "the rest of the list, with the older insert last"
    );
    assert!(!rest.contains(&newest.id.to_string()));

    // Bad tokens are refused naming the field: malformed, another list's, another filter's.
    for (token, org) in [
        ("not-a-token".to_string(), ""),
        (b1.next_page_token.clone(), ""),
        (p1.next_page_token.clone(), "org-00"),
    ] {
        let e = list_repos(&mut c, org, 10, token).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("page_token"), "{e:?}");
    }
}

/// The other lists page the same way: organisations, health rows (the summary on the first
/// page only), the timeline and the audit log, at small page sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_lists_page_too() {
    let dir = tempfile::tempdir().unwrap();
    let core = testing::core(dir.path()).await;
    for o in 0..7 {
        core.registry
            .add_org(&format!("org-{o}"), Provider::Git)
            .await
            .unwrap();
    }
    let mut repos = Vec::new();
    for i in 0..11 {
        repos.push(
            core.registry
                .add_repo(
                    &format!("org-{}/r{i:02}", i % 3),
                    "https://git.example.com/x.git",
                    None,
                )
                .await
                .unwrap(),
        );
    }
    let base = testing::utc("2026-01-01T00:00:00Z");
    for k in 0..8 {
        testing::completed_backup(&core, &repos[0], base + k * 60_000).await;
    }
    let log = crate::audit::AuditLog::new(core.store.kv());
    for k in 0..9 {
        log.append(&crate::audit::AuditEntry {
            at_ms: base + k,
            caller: "root".into(),
            role: "admin".into(),
            method: format!("Call{k}"),
            outcome: "ok".into(),
            peer: String::new(),
            detail: String::new(),
        })
        .await
        .unwrap();
    }
    let c = serve(core.clone()).await;

    let (orgs, pages) = every_page(3, |page_size, page_token| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_orgs(pb::ListOrgsRequest {
                    page_size,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            let bytes = r.encoded_len();
            (
                r.orgs.into_iter().map(|o| o.name).collect(),
                r.next_page_token,
                bytes,
            )
        }
    })
    .await;
    assert_eq!(pages, 3);
    assert_eq!(orgs, (0..7).map(|o| format!("org-{o}")).collect::<Vec<_>>());

    let health_pages = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (rows, _) = every_page(4, |page_size, page_token| {
        let mut c = c.clone();
        let first = page_token.is_empty();
        let pages = health_pages.clone();
        async move {
            let r = c
                .get_health(pb::GetHealthRequest {
                    org: String::new(),
                    page_size,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            pages.lock().unwrap().push((first, r.summary.clone()));
            let bytes = r.encoded_len();
            (
                r.repos.into_iter().map(|h| h.repo).collect(),
                r.next_page_token,
                bytes,
            )
        }
    })
    .await;
    let mut want: Vec<String> = repos.iter().map(|r| r.full_name()).collect();
    want.sort();
    assert_eq!(rows, want);
    let health_pages = health_pages.lock().unwrap().clone();
    assert_eq!(health_pages.len(), 3);
    for (first, summary) in health_pages {
        assert_eq!(summary.map(|s| s.total), first.then_some(11));
    }

    let (timeline, _) = every_page(3, |page_size, page_token| {
        let mut c = c.clone();
        let repo = repos[0].full_name();
        async move {
            let r = c
                .get_timeline(pb::GetTimelineRequest {
                    repo,
                    page_size,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            let bytes = r.encoded_len();
            (
                r.entries.into_iter().map(|e| e.at).collect(),
                r.next_page_token,
                bytes,
            )
        }
    })
    .await;
    let at: Vec<String> = (0..8)
        .map(|k| crate::clock::format_ms(base + k * 60_000))
        .collect();
    assert_eq!(timeline, at, "oldest first, each once");

    let (audit, _) = every_page(4, |page_size, page_token| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_audit(pb::ListAuditRequest {
                    page_size,
                    page_token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let bytes = r.encoded_len();
            (
                r.entries.into_iter().map(|e| e.method).collect(),
                r.next_page_token,
                bytes,
            )
        }
    })
    .await;
    let want: Vec<String> = (0..9).rev().map(|k| format!("Call{k}")).collect();
    assert_eq!(audit, want, "newest first, each once");
}
