//! GitHub organisations against the forge simulator: `org add` with a token (checked at once),
//! discovery of every repository, a rename followed (same record) and a deletion marked by
//! `org sync`; GitHub App auth, and a wrong installation refused with a clear error.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use repovault_proto::v1 as pb;
use repovault_tests::cluster::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// Every repository of `seeds/acme.toml`.
pub(crate) const SEEDED: [&str; 6] = [
    "docs",
    "empty",
    "lfs-data",
    "secret-plans",
    "tracker",
    "widgets",
];

pub(crate) async fn sim() -> ForgeSim {
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("forge-sim/seeds/acme.toml");
    let seed = Seed::from_file(&seed).unwrap();
    ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

pub(crate) fn cli(c: &Cluster, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .arg("--coordinator")
        .arg(c.url())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `org add acme` on the simulator with `token`, through the CLI (the token in the
/// environment only); panics unless it succeeds.
pub(crate) fn add_acme_org(c: &Cluster, ready: &forge_sim::Ready, token: &str) {
    add_github_org(c, ready, "acme", token);
}

/// `org add NAME` of the simulator with `token`, as [`add_acme_org`].
pub(crate) fn add_github_org(c: &Cluster, ready: &forge_sim::Ready, name: &str, token: &str) {
    let ca = ready.ca_cert.display().to_string();
    let add = cli(
        c,
        &[
            "org",
            "add",
            name,
            "--provider",
            "github",
            "--api-url",
            &ready.api_url,
            "--token-env",
            "GH_TOKEN",
            "--ca-cert",
            &ca,
        ],
        &[("GH_TOKEN", token)],
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
}

/// A simulator REST call with the token on stdin (never in curl's argv).
pub(crate) fn curl(
    method: &str,
    url: &str,
    token: Option<&str>,
    ca: &std::path::Path,
    body: &str,
) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "--cacert"]).arg(ca).args([
        "-H",
        "content-type: application/json",
        "-d",
        body,
    ]);
    if token.is_some() {
        cmd.args(["-H", "@-"]);
    }
    let mut child = cmd
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(t) = token {
        writeln!(stdin, "authorization: Bearer {t}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "curl {method} {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Leases the next task as a hand-made worker and returns the source token its lease carries.
async fn leased_source_token(c: &Cluster) -> String {
    use repovault_proto::v1::worker_service_client::WorkerServiceClient;
    let join = std::fs::read_to_string(c.join_token_file()).unwrap();
    let auth: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", join.trim()).parse().unwrap();
    let mut w = WorkerServiceClient::connect(c.url()).await.unwrap();
    let mut req = tonic::Request::new(pb::RegisterWorkerRequest {
        protocol_version: repovault_proto::PROTOCOL_VERSION,
        name: "probe".into(),
        slots: 1,
        capabilities: vec![],
        ..Default::default()
    });
    req.metadata_mut().insert("authorization", auth.clone());
    let id = w.register_worker(req).await.unwrap().into_inner().worker_id;
    let mut req = tonic::Request::new(pb::AcquireTaskRequest {
        worker_id: id,
        free_slots: 1,
        wait_ms: 10_000,
        cached_repo_ids: vec![],
    });
    req.metadata_mut().insert("authorization", auth);
    let task = w
        .acquire_task(req)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    task.repo.unwrap().source_token
}

async fn repos(c: &Cluster) -> Vec<pb::Repo> {
    let mut a = c.admin().await.unwrap();
    a.list_repos(pb::ListReposRequest {
        org: "acme".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .repos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_org_is_discovered_and_follows_renames_and_deletions() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(0).await.unwrap();
    let ca = ready.ca_cert.display().to_string();

    // A wrong token is refused at once, with GitHub's message, and nothing is stored.
    let bad = cli(
        &c,
        &[
            "org",
            "add",
            "acme",
            "--provider",
            "github",
            "--api-url",
            &ready.api_url,
            "--token-env",
            "GH_TOKEN",
            "--ca-cert",
            &ca,
        ],
        &[("GH_TOKEN", "ghp_wrong0000000000000000000000000000")],
    );
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr);
    eprintln!("wrong token: {err}");
    assert!(err.contains("Bad credentials"), "{err}");
    assert!(
        !err.contains("ghp_wrong"),
        "the token is never echoed: {err}"
    );

    let add = cli(
        &c,
        &[
            "--output",
            "json",
            "org",
            "add",
            "acme",
            "--provider",
            "github",
            "--api-url",
            &ready.api_url,
            "--token-env",
            "GH_TOKEN",
            "--ca-cert",
            &ca,
        ],
        &[("GH_TOKEN", &ready.token)],
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let org: serde_json::Value = serde_json::from_slice(&add.stdout).unwrap();
    assert_eq!(org["provider"], "github");
    assert_eq!(org["credential"], "token");
    assert_eq!(org["api_url"], ready.api_url.as_str());

    let sync = cli(&c, &["--output", "json", "org", "sync", "acme"], &[]);
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let sync: serde_json::Value = serde_json::from_slice(&sync.stdout).unwrap();
    assert_eq!(sync["listed"], 6, "{sync}");
    assert_eq!(
        sync["unchanged"], 6,
        "org add already discovered them: {sync}"
    );

    let list = repos(&c).await;
    let mut names: Vec<_> = list.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, SEEDED);
    for r in &list {
        assert!(r.forge_id > 0 && !r.deleted && !r.archived, "{r:?}");
        assert!(!r.has_token, "the organisation's credential is used");
        assert!(
            r.url.ends_with(&format!("/acme/{}.git", r.name)),
            "{}",
            r.url
        );
    }
    let tracker_id = list
        .iter()
        .find(|r| r.name == "tracker")
        .unwrap()
        .id
        .clone();

    for args in [
        &["org", "list"][..],
        &["org", "show", "acme"],
        &["--output", "json", "org", "show", "acme"],
    ] {
        let o = cli(&c, args, &[]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("token"), "{text}");
        assert!(!text.contains(&ready.token), "never the secret: {text}");
    }

    // GitHub-side: a rename and a deletion.
    let renamed = curl(
        "PATCH",
        &format!("{}/repos/acme/tracker", ready.api_url),
        Some(&ready.token),
        &ready.ca_cert,
        r#"{"name":"issue-tracker"}"#,
    );
    assert!(renamed.contains("\"issue-tracker\""), "{renamed}");
    curl(
        "POST",
        &format!("{}/_sim/repos/acme/docs/delete", ready.git_url),
        None,
        &ready.ca_cert,
        "{}",
    );

    let mut a = c.admin().await.unwrap();
    let s = a
        .sync_org(pb::SyncOrgRequest { org: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.listed, 5);
    assert!(s.added.is_empty(), "{s:?}");
    assert_eq!(s.renamed.len(), 1, "{s:?}");
    assert_eq!(
        (s.renamed[0].from.as_str(), s.renamed[0].to.as_str()),
        ("tracker", "issue-tracker")
    );
    assert_eq!(s.renamed[0].repo_id, tracker_id);
    assert_eq!(s.deleted, ["docs"]);
    assert_eq!(s.unchanged, 4);

    let list = repos(&c).await;
    let followed = list.iter().find(|r| r.name == "issue-tracker").unwrap();
    assert_eq!(
        followed.id, tracker_id,
        "same record: history and backups kept"
    );
    assert!(followed.url.ends_with("/acme/issue-tracker.git"));
    assert!(!list.iter().any(|r| r.name == "tracker"));
    let docs = list.iter().find(|r| r.name == "docs").unwrap();
    assert!(docs.deleted, "marked, kept");
    assert_eq!(list.len(), 6);

    let table = cli(&c, &["repo", "list", "acme"], &[]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("acme/docs") && l.contains("deleted")),
        "{table}"
    );
    // A deleted repository is still found by name (its backups are kept) but not backed up.
    let e = a
        .run_backup(pb::RunBackupRequest {
            repo: "acme/docs".into(),
            ..Default::default()
        })
        .await
        .expect_err("a deleted repository is not backed up");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("deleted"), "{}", e.message());
    let e = a
        .run_backup(pb::RunBackupRequest {
            repo: "acme/tracker".into(),
            ..Default::default()
        })
        .await
        .expect_err("the old name is gone");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let again = a
        .sync_org(pb::SyncOrgRequest { org: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(again.renamed.is_empty() && again.deleted.is_empty() && again.added.is_empty());
    assert_eq!(again.unchanged, 5);

    // A lease of a discovered repository carries the organisation's token.
    a.run_backup(pb::RunBackupRequest {
        repo: "acme/widgets".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(leased_source_token(&c).await, ready.token);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_github_app_installation_connects_and_a_wrong_installation_is_refused() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(0).await.unwrap();
    let ca = ready.ca_cert.display().to_string();
    let key = ready.app_private_key.clone().unwrap().display().to_string();
    let app_id = ready.app_id.unwrap().to_string();
    let installation = ready.installation_id.unwrap();

    let wrong = (installation + 1000).to_string();
    let bad = cli(
        &c,
        &[
            "org",
            "add",
            "acme",
            "--provider",
            "github",
            "--api-url",
            &ready.api_url,
            "--app-id",
            &app_id,
            "--private-key",
            &key,
            "--installation-id",
            &wrong,
            "--ca-cert",
            &ca,
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr);
    eprintln!("wrong installation: {err}");
    assert!(
        err.contains(&format!("installation {wrong}")) && err.contains("404"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    let ok = cli(
        &c,
        &[
            "--output",
            "json",
            "org",
            "add",
            "acme",
            "--provider",
            "github",
            "--api-url",
            &ready.api_url,
            "--app-id",
            &app_id,
            "--private-key",
            &key,
            "--installation-id",
            &installation.to_string(),
            "--ca-cert",
            &ca,
        ],
        &[],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let org: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(org["credential"], "app");
    assert_eq!(org["app_id"].as_u64(), ready.app_id);
    assert_eq!(org["installation_id"].as_u64(), Some(installation));

    let mut names: Vec<_> = repos(&c).await.into_iter().map(|r| r.name).collect();
    names.sort();
    assert_eq!(names, SEEDED);

    // The installation token is cached: a second discovery mints nothing new.
    let org = c.core().registry.org_named("acme").await.unwrap();
    let t1 = c.core().forge.forge_token(&org).await.unwrap().unwrap();
    let mut a = c.admin().await.unwrap();
    let s = a
        .sync_org(pb::SyncOrgRequest { org: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.unchanged, 6);
    let t2 = c.core().forge.forge_token(&org).await.unwrap().unwrap();
    assert_eq!(t1.expose(), t2.expose());

    // A lease carries the cached installation token, never the App's key.
    a.run_backup(pb::RunBackupRequest {
        repo: "acme/widgets".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let leased = leased_source_token(&c).await;
    assert_eq!(leased, t1.expose());
    assert!(!leased.contains("PRIVATE KEY"));

    // A restarted coordinator has no token cached: it mints one before leasing.
    let mut c = c;
    c.restart_coordinator().await.unwrap();
    let mut a = c.admin().await.unwrap();
    a.run_backup(pb::RunBackupRequest {
        repo: "acme/lfs-data".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let minted = leased_source_token(&c).await;
    assert!(
        !minted.is_empty() && minted != t1.expose(),
        "a fresh installation token"
    );
    c.shutdown().await;
}

/// `org update`: a rotated token replaces the organisation's credential in place. A token the
/// forge refuses is refused with nothing changed; an accepted one is proven by a listing (an
/// outside collaborator's token lists only what it can see), and the next lease carries it.
/// History and schedules stay. `repo update` does the same for a plain git repository's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_token_replaces_the_credential_and_the_next_lease_carries_it() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(0).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);
    let before = c.core().registry.org_named("acme").await.unwrap();

    let refused = cli(
        &c,
        &["org", "update", "acme", "--token-env", "GH_TOKEN"],
        &[("GH_TOKEN", "ghp_notAToken000000000000000000000000000")],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !said.contains("ghp_notAToken"),
        "the token is never echoed: {said}"
    );
    let unchanged = c.core().registry.org_named("acme").await.unwrap();
    assert_eq!(unchanged.credential, before.credential, "nothing stored");

    let outsider = "ghp_acmeOutsider0000000000000000000000";
    let ok = cli(
        &c,
        &[
            "--output",
            "json",
            "org",
            "update",
            "acme",
            "--token-env",
            "GH_TOKEN",
        ],
        &[("GH_TOKEN", outsider)],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let after = c.core().registry.org_named("acme").await.unwrap();
    assert_ne!(
        after.credential, before.credential,
        "the new credential is stored"
    );
    assert_eq!(after.id, before.id, "the same organisation, history kept");
    let mut a = c.admin().await.unwrap();
    a.run_backup(pb::RunBackupRequest {
        repo: "acme/widgets".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(leased_source_token(&c).await, outsider);

    // A forge repository has no token of its own; a plain git one does.
    let e = cli(
        &c,
        &["repo", "update", "acme/widgets", "--token-env", "T"],
        &[("T", "secret-token-value")],
    );
    assert!(!e.status.success());
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("org update"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    c.core()
        .registry
        .add_org("plain", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("plain/r", "https://git.example/r.git", None)
        .await
        .unwrap();
    let set = cli(
        &c,
        &["repo", "update", "plain/r", "--token-env", "T"],
        &[("T", "secret-token-value")],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(!String::from_utf8_lossy(&set.stdout).contains("secret-token-value"));
    let r = c.core().registry.repo_named("plain/r").await.unwrap();
    assert!(r.sealed_token.is_some());
    let removed = cli(&c, &["repo", "update", "plain/r", "--no-token"], &[]);
    assert!(removed.status.success());
    let r = c.core().registry.repo_named("plain/r").await.unwrap();
    assert!(r.sealed_token.is_none());
    c.shutdown().await;
}
