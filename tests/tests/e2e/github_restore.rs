//! GitHub restores against the forge simulator, compared with the source: a full restore of
//! acme/widgets into a new repository (refs and objects identical, pull refs under
//! `refs/repovault/pull/*`; issues, pull requests, comments, releases, assets, labels,
//! milestones; wiki pages), of acme/lfs-data (LFS objects); `original` with an existing name
//! refused; every invalid type/target combination refused by the CLI (exit 2, naming the valid
//! ones); `issues_only` into an existing repository; a restore whose worker stops mid-way
//! completes after re-lease without a duplicate; `restore cancel`; access restored as narrowly
//! as it was held (only the direct collaborator by default, team grants when asked).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use repovault_coordinator::model::{BackupRecord, RestoreRecord, Status};
use repovault_tests::cluster::Cluster;
use serde_json::Value;

use super::github_org::{add_acme_org, add_github_org, cli, curl, sim};

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

async fn backup(c: &Cluster, repo: &str) -> BackupRecord {
    let b = c
        .core()
        .backups
        .run_backup(&format!("acme/{repo}"))
        .await
        .unwrap();
    let b = c
        .wait_backup(&b.id, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        b.status,
        Status::Completed,
        "backup of {repo}: {:?}",
        b.error
    );
    b
}

/// A git command against the simulator: its CA trusted, the token in the environment only
/// (never in argv or a config file), a fixed identity for commits, no user configuration.
fn sim_git(ready: &forge_sim::Ready) -> Command {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", ready.token));
    let mut cmd = Command::new("git");
    cmd.args(["-c", &format!("http.sslCAInfo={}", ready.ca_cert.display())])
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
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com");
    cmd
}

/// Every ref of `url` (git ls-remote): name → id.
fn ls_remote(ready: &forge_sim::Ready, url: &str) -> BTreeMap<String, String> {
    let out = sim_git(ready).args(["ls-remote", url]).output().unwrap();
    assert!(
        out.status.success(),
        "ls-remote {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, n)| n.starts_with("refs/") && !n.ends_with("^{}"))
        .map(|(id, n)| (n.to_string(), id.to_string()))
        .collect()
}

/// A git command against the simulator in `dir`; panics unless it succeeds.
fn git_with_token(ready: &forge_sim::Ready, args: &[&str], dir: &std::path::Path) {
    let out = sim_git(ready).args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A REST GET of the simulator as JSON.
/// The test reads the forge as `rev` (an organisation member with read access), not with the
/// restore's own credential: a secondary limit the simulator imposes on that credential would
/// otherwise blind the test too.
const OBSERVER: &str = "ghp_acmeReviewer0000000000000000000000";

fn get(ready: &forge_sim::Ready, path: &str) -> Value {
    let url = format!("{}{path}", ready.api_url);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert"])
        .arg(&ready.ca_cert)
        .args(["-H", "@-", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "authorization: Bearer {OBSERVER}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "curl {url}");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn list(ready: &forge_sim::Ready, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    get(ready, &format!("{path}{sep}per_page=100"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn str_of<'v>(v: &'v Value, f: &str) -> &'v str {
    v.get(f).and_then(Value::as_str).unwrap_or("")
}

/// Sorted titles (or names) of a listing's items.
fn titles(items: &[Value], field: &str) -> Vec<String> {
    let mut t: Vec<String> = items.iter().map(|v| str_of(v, field).to_string()).collect();
    t.sort();
    t
}

fn comments_of(ready: &forge_sim::Ready, repo: &str, issues: &[Value]) -> usize {
    issues
        .iter()
        .filter_map(|i| i.get("number").and_then(Value::as_u64))
        .map(|n| list(ready, &format!("/repos/acme/{repo}/issues/{n}/comments")).len())
        .sum()
}

/// Who has access to `acme/NAME`, read with the owner's token: its direct collaborators (the
/// owner aside), the logins invited, and its team grants as `SLUG PERMISSION`.
fn access_of(ready: &forge_sim::Ready, name: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let get = |path: &str| -> Value {
        let body = curl(
            "GET",
            &format!("{}{path}", ready.api_url),
            Some(&ready.token),
            &ready.ca_cert,
            "",
        );
        serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
    };
    let me = str_of(&get("/user"), "login").to_string();
    let get = |path: &str| -> Vec<Value> {
        get(&format!("/repos/acme/{name}{path}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut direct: Vec<String> = get("/collaborators?affiliation=direct")
        .iter()
        .map(|c| str_of(c, "login").to_string())
        .filter(|l| *l != me)
        .collect();
    direct.sort();
    let mut invited: Vec<String> = get("/invitations")
        .iter()
        .map(|i| str_of(&i["invitee"], "login").to_string())
        .collect();
    invited.sort();
    let mut teams: Vec<String> = get("/teams")
        .iter()
        .map(|t| format!("{} {}", str_of(t, "slug"), str_of(t, "permission")))
        .collect();
    teams.sort();
    (direct, invited, teams)
}

/// Starts a restore through the CLI (and `--wait` when asked); returns its id.
fn start(c: &Cluster, args: &[&str], wait: bool) -> (String, std::process::Output) {
    let mut full = vec!["--output", "json", "restore", "start"];
    full.extend_from_slice(args);
    if wait {
        full.push("--wait");
    }
    let out = cli(c, &full, &[]);
    let id = serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    (id, out)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Creates the empty repository `acme/NAME` on the simulator and restores backup `backup`'s
/// issues into it (`issues_only --into`), waiting for the restore to complete.
async fn issues_into_new_repository(
    c: &Cluster,
    ready: &forge_sim::Ready,
    backup: &str,
    name: &str,
) -> RestoreRecord {
    curl(
        "POST",
        &format!("{}/orgs/acme/repos", ready.api_url),
        Some(&ready.token),
        &ready.ca_cert,
        &format!(r#"{{"name":"{name}"}}"#),
    );
    let into = format!("acme/{name}");
    let (id, out) = start(c, &[backup, "--type", "issues_only", "--into", &into], true);
    assert!(out.status.success(), "issues_only: {}", stderr(&out));
    let r = wait_restore(c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    r
}

async fn wait_restore(c: &Cluster, id: &str) -> RestoreRecord {
    c.wait_restore(id, Duration::from_secs(240)).await.unwrap()
}

/// A `wiki_only` restore of `docs` into acme/docs-copy, waited for.
async fn wiki_only_into_docs_copy(c: &Cluster, docs: &BackupRecord) -> RestoreRecord {
    let (id, out) = start(
        c,
        &[
            docs.id.as_str(),
            "--type",
            "wiki_only",
            "--into",
            "acme/docs-copy",
        ],
        true,
    );
    assert!(!id.is_empty(), "wiki_only not queued: {}", stderr(&out));
    wait_restore(c, &id).await
}

/// Starts a `full_repo` restore of `backup_id` into a new `acme/NAME` whose first comment is
/// refused with a secondary limit of `retry_after_secs`, and returns its id once the restore is
/// in its metadata phase (an issue exists in the target).
async fn restore_held_in_metadata(
    c: &Cluster,
    ready: &forge_sim::Ready,
    backup_id: &str,
    name: &str,
    retry_after_secs: u64,
) -> String {
    curl(
        "PATCH",
        &format!("{}/_sim/options", ready.git_url),
        None,
        &ready.ca_cert,
        &format!(
            r#"{{"failures":[{{"method":"POST","path_contains":"/repos/acme/{name}/issues/","status":403,"count":1,"retry_after_secs":{retry_after_secs}}}]}}"#
        ),
    );
    let (id, out) = start(
        c,
        &[
            backup_id,
            "--type",
            "full_repo",
            "--target",
            "new",
            "--org",
            "acme",
            "--name",
            name,
        ],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let started = until(Duration::from_secs(120), || {
        !list(ready, &format!("/repos/acme/{name}/issues?state=all")).is_empty()
    })
    .await;
    assert!(started, "the restore never reached its metadata phase");
    id
}

/// Waits until `cond` holds (checked every 200 ms), at most `limit`.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn github_restore_full_repo_round_trips_and_refuses_what_it_must() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);
    let b = backup(&c, "widgets").await;

    // Full restore into a new repository of the same organisation.
    let (id, out) = start(
        &c,
        &[
            b.id.as_str(),
            "--type",
            "full_repo",
            "--target",
            "new",
            "--org",
            "acme",
            "--name",
            "widgets-copy",
        ],
        true,
    );
    assert!(
        out.status.success(),
        "restore: {}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    assert_eq!(r.target_repo.as_deref(), Some("acme/widgets-copy"));

    // Refs and objects: every ref at the same id; refs/pull/N/head under refs/repovault/pull.
    let src = ls_remote(&ready, &format!("{}/acme/widgets.git", ready.git_url));
    let dst = ls_remote(&ready, &format!("{}/acme/widgets-copy.git", ready.git_url));
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (name, id) in &src {
        match name.strip_prefix("refs/pull/") {
            Some(rest) if rest.ends_with("/merge") => {}
            Some(rest) => {
                want.insert(format!("refs/repovault/pull/{rest}"), id.clone());
            }
            None => {
                want.insert(name.clone(), id.clone());
            }
        }
    }
    assert!(
        want.keys().any(|k| k.starts_with("refs/repovault/pull/")),
        "{src:?}"
    );
    // The target's own refs/pull/* belong to the pull requests the restore created there.
    let dst_own: BTreeMap<String, String> = dst
        .iter()
        .filter(|(n, _)| !n.starts_with("refs/pull/"))
        .map(|(n, id)| (n.clone(), id.clone()))
        .collect();
    assert_eq!(dst_own, want, "refs of the restored repository");

    // Metadata: issues and pulls (the restore makes them all issues or pulls), comments,
    // labels, milestones, releases with assets.
    let s_issues = list(&ready, "/repos/acme/widgets/issues?state=all");
    let d_issues = list(&ready, "/repos/acme/widgets-copy/issues?state=all");
    assert_eq!(
        titles(&d_issues, "title"),
        titles(&s_issues, "title"),
        "issue and pull titles"
    );
    let open = |v: &[Value]| v.iter().filter(|i| str_of(i, "state") == "open").count();
    assert_eq!(open(&d_issues), open(&s_issues), "open items");
    let s_pulls = list(&ready, "/repos/acme/widgets/pulls?state=all");
    let d_pulls = list(&ready, "/repos/acme/widgets-copy/pulls?state=all");
    assert!(
        d_pulls.len() <= s_pulls.len() && !s_pulls.is_empty(),
        "pulls: {} of {}",
        d_pulls.len(),
        s_pulls.len()
    );
    assert!(
        comments_of(&ready, "widgets-copy", &d_issues) >= comments_of(&ready, "widgets", &s_issues),
        "comments (reviews come back as comments)"
    );
    assert_eq!(
        titles(&list(&ready, "/repos/acme/widgets-copy/labels"), "name"),
        titles(&list(&ready, "/repos/acme/widgets/labels"), "name"),
        "labels"
    );
    assert_eq!(
        titles(
            &list(&ready, "/repos/acme/widgets-copy/milestones?state=all"),
            "title"
        ),
        titles(
            &list(&ready, "/repos/acme/widgets/milestones?state=all"),
            "title"
        ),
        "milestones"
    );
    let s_rel = list(&ready, "/repos/acme/widgets/releases");
    let d_rel = list(&ready, "/repos/acme/widgets-copy/releases");
    assert_eq!(
        titles(&d_rel, "tag_name"),
        titles(&s_rel, "tag_name"),
        "releases"
    );
    let assets = |v: &[Value]| -> usize {
        v.iter()
            .map(|r| {
                r.get("assets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            })
            .sum()
    };
    assert_eq!(assets(&d_rel), assets(&s_rel), "release assets");

    // Access: by default only the direct collaborator (`outsider`) is invited; dev
    // and rev (team core) and the owner (the organisation) are granted nothing, and no team
    // grant is made. The summary says who and why.
    let summary = r.summary.clone().unwrap_or_default();
    assert!(
        summary.contains("access (--access direct): invite outsider (triage)"),
        "{summary}"
    );
    let access = access_of(&ready, "widgets-copy");
    assert_eq!(
        access,
        (vec![], vec!["outsider".into()], vec![]),
        "{summary}"
    );
    // Asked for team access: team core (acme has it) gets its grant as a team grant.
    let (id, out) = start(
        &c,
        &[
            b.id.as_str(),
            "--type",
            "full_repo",
            "--target",
            "original",
            "--name",
            "widgets-teams",
            "--access",
            "teams",
        ],
        true,
    );
    assert!(
        out.status.success(),
        "restore --access teams: {}",
        stderr(&out)
    );
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    let summary = r.summary.clone().unwrap_or_default();
    assert!(summary.contains("grant team core push"), "{summary}");
    assert_eq!(
        access_of(&ready, "widgets-teams"),
        (vec![], vec!["outsider".into()], vec!["core push".into()]),
        "{summary}"
    );
    // A wider access where none is restored: refused (exit 2), not ignored.
    let out = cli(
        &c,
        &[
            "restore",
            "start",
            b.id.as_str(),
            "--type",
            "issues_only",
            "--into",
            "acme/widgets-copy",
            "--access",
            "all",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--access all is for full_repo"),
        "{}",
        stderr(&out)
    );

    // Wiki (acme/docs has one): the same commits, so the same pages.
    let docs = backup(&c, "docs").await;
    let (id, out) = start(
        &c,
        &[
            docs.id.as_str(),
            "--type",
            "full_repo",
            "--target",
            "original",
            "--name",
            "docs-copy",
        ],
        true,
    );
    assert!(out.status.success(), "docs restore: {}", stderr(&out));
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    // As on GitHub, a new repository has no wiki until its first page is saved in the web
    // interface, and a push cannot make one: the restore completes and says how to finish.
    let summary = r.summary.clone().unwrap_or_default();
    let wiki_step = "--type wiki_only --into acme/docs-copy";
    assert!(
        summary.contains("wiki not restored")
            && summary.contains("/acme/docs-copy/wiki")
            && summary.contains(wiki_step),
        "{summary}"
    );
    // A wiki_only restore before the first page exists has nothing it can do: it fails, saying
    // the same.
    let r = wiki_only_into_docs_copy(&c, &docs).await;
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.error.as_deref().unwrap_or("").contains(wiki_step),
        "{:?}",
        r.error
    );
    // The first page saved, a wiki_only restore into the existing repository replaces it: the
    // wiki then equals the source's, ref for ref.
    curl(
        "POST",
        &format!("{}/_sim/repos/acme/docs-copy/wiki", ready.git_url),
        None,
        &ready.ca_cert,
        "",
    );
    let d_wiki = |ready: &forge_sim::Ready| {
        ls_remote(ready, &format!("{}/acme/docs-copy.wiki.git", ready.git_url))
    };
    let s_wiki = ls_remote(&ready, &format!("{}/acme/docs.wiki.git", ready.git_url));
    assert!(!s_wiki.is_empty());
    assert_ne!(
        d_wiki(&ready),
        s_wiki,
        "the first page is not the source's wiki"
    );
    let r = wiki_only_into_docs_copy(&c, &docs).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    assert!(
        r.summary
            .as_deref()
            .unwrap_or("")
            .contains("over the first page"),
        "{:?}",
        r.summary
    );
    assert_eq!(d_wiki(&ready), s_wiki, "wiki");
    // A wiki with pages of its own (the source's own wiki, plus a page the restore does not
    // know) is refused, and left as it was.
    let extra = tempfile::tempdir().unwrap();
    let work = extra.path().join("w");
    let wiki_url = format!("{}/acme/docs-copy.wiki.git", ready.git_url);
    git_with_token(&ready, &["clone", "-q", &wiki_url, "w"], extra.path());
    std::fs::write(work.join("Extra.md"), "Written at the target.\n").unwrap();
    git_with_token(&ready, &["add", "Extra.md"], &work);
    git_with_token(
        &ready,
        &["commit", "-qm", "A page of the target's own"],
        &work,
    );
    git_with_token(&ready, &["push", "-q", "origin", "HEAD"], &work);
    let before = d_wiki(&ready);
    let r = wiki_only_into_docs_copy(&c, &docs).await;
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("already has pages of its own"),
        "{:?}",
        r.error
    );
    assert_eq!(
        d_wiki(&ready),
        before,
        "a refused wiki restore changed the wiki"
    );

    // `original` with an existing name is refused, and nothing is queued.
    let (_, out) = start(
        &c,
        &[
            b.id.as_str(),
            "--type",
            "full_repo",
            "--target",
            "original",
            "--name",
            "widgets",
        ],
        false,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // Every invalid type/target combination: exit 2, naming the valid ones.
    let valid: &[(&str, &[&str])] = &[
        ("full_repo", &["new", "original", "download"]),
        ("issues_only", &["existing"]),
        ("wiki_only", &["existing"]),
        ("releases_only", &["existing"]),
        ("download_zip", &["download"]),
    ];
    for (t, targets) in valid {
        for target in ["new", "original", "download", "existing"] {
            if targets.contains(&target) {
                continue;
            }
            let out = cli(
                &c,
                &[
                    "restore",
                    "start",
                    b.id.as_str(),
                    "--type",
                    t,
                    "--target",
                    target,
                    "--name",
                    "x",
                ],
                &[],
            );
            assert_eq!(
                out.status.code(),
                Some(2),
                "{t} to {target}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("full_repo to new|original|download")
                    && stderr(&out).contains("download_zip to download"),
                "{t} to {target}: {}",
                stderr(&out)
            );
        }
    }
    // The coordinator refuses them too (for clients other than the CLI).
    let e = c
        .core()
        .restores
        .start_restore(
            &b.id,
            repovault_common::domain::RestoreType::IssuesOnly,
            repovault_common::domain::RestoreTarget::New,
            "",
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("valid: full_repo to new|original|download"),
        "{e}"
    );

    // issues_only into an existing (empty) repository: appended.
    issues_into_new_repository(&c, &ready, b.id.as_str(), "widgets-issues").await;
    let i_issues = list(&ready, "/repos/acme/widgets-issues/issues?state=all");
    assert_eq!(titles(&i_issues, "title"), titles(&s_issues, "title"));
    assert!(
        ls_remote(
            &ready,
            &format!("{}/acme/widgets-issues.git", ready.git_url)
        )
        .is_empty()
    );

    // releases_only into the same repository: the tags the releases need, then the releases.
    let (id, out) = start(
        &c,
        &[
            b.id.as_str(),
            "--type",
            "releases_only",
            "--into",
            "acme/widgets-issues",
        ],
        true,
    );
    assert!(out.status.success(), "releases_only: {}", stderr(&out));
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    let tags = |refs: BTreeMap<String, String>| -> BTreeMap<String, String> {
        refs.into_iter()
            .filter(|(n, _)| n.starts_with("refs/tags/"))
            .collect()
    };
    assert_eq!(
        tags(ls_remote(
            &ready,
            &format!("{}/acme/widgets-issues.git", ready.git_url)
        )),
        tags(src.clone()),
        "tags"
    );
    let r_rel = list(&ready, "/repos/acme/widgets-issues/releases");
    assert_eq!(
        titles(&r_rel, "tag_name"),
        titles(&s_rel, "tag_name"),
        "releases"
    );
    assert_eq!(assets(&r_rel), assets(&s_rel), "release assets");

    // LFS objects: acme/lfs-data restored whole; the target's LFS server has every object.
    let lfs = backup(&c, "lfs-data").await;
    let (id, out) = start(
        &c,
        &[
            lfs.id.as_str(),
            "--type",
            "full_repo",
            "--target",
            "original",
            "--name",
            "lfs-data-copy",
        ],
        true,
    );
    assert!(out.status.success(), "lfs restore: {}", stderr(&out));
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    let summary = r.summary.clone().unwrap_or_default();
    assert!(
        summary.contains(&format!("{} LFS objects", lfs.counts.lfs_objects))
            && lfs.counts.lfs_objects > 0,
        "{summary}"
    );
    // Listing: newest first.
    let out = cli(&c, &["--output", "json", "restore", "list"], &[]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed.first().map(|v| str_of(v, "id").to_string()),
        Some(id)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn github_restore_survives_a_worker_death_and_can_be_cancelled() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    // Worker processes, so the first can die for real (SIGKILL: no drain, no release); a short
    // heartbeat, so its lease expires in seconds.
    let c = Cluster::start_with(0, "1s").await.unwrap();
    let mut first = c.spawn_worker_process(BIN, "restore-w1").unwrap();
    add_acme_org(&c, &ready, &ready.token);
    let b = backup(&c, "widgets").await;

    // The first comment on the target waits out a secondary limit for 30 s: the restore is then
    // in its metadata phase with issue #1 created, and its worker stops.
    let id = restore_held_in_metadata(&c, &ready, b.id.as_str(), "widgets-relay", 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = c.spawn_worker_process(BIN, "restore-w2").unwrap();
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    let s = titles(
        &list(&ready, "/repos/acme/widgets/issues?state=all"),
        "title",
    );
    let d = titles(
        &list(&ready, "/repos/acme/widgets-relay/issues?state=all"),
        "title",
    );
    assert_eq!(d, s, "no item created twice after the re-lease");
    let task = c
        .core()
        .queue
        .task_status(&r.task_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        task.lease.attempt >= 2,
        "re-leased: attempt {}",
        task.lease.attempt
    );
    let journal = c
        .storage_root()
        .join(r.org_id.as_str())
        .join(r.repo_id.as_str())
        .join(format!("restores/{id}.journal.json"));
    assert!(journal.is_file(), "{}", journal.display());

    // Cancel: a restore held in its metadata phase by a long secondary limit.
    let id = restore_held_in_metadata(&c, &ready, b.id.as_str(), "widgets-cancel", 120).await;
    let out = cli(&c, &["restore", "cancel", &id], &[]);
    assert!(out.status.success(), "cancel: {}", stderr(&out));
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.error.as_deref().unwrap_or("").contains("cancelled"),
        "{:?}",
        r.error
    );
    // A finished restore cannot be cancelled.
    let out = cli(&c, &["restore", "cancel", &id], &[]);
    assert!(!out.status.success());
    let _ = second.kill();
    let _ = second.wait();
    c.shutdown().await;
}

/// A restore into another organisation with that organisation's own credential
/// (`--credential-org`; without it, the repovault organisation named like the target owner is
/// used): acme and globex each hold a fine-grained token that reaches its own organisation only,
/// as GitHub scopes them. Into globex with acme's credential the restore is refused by the forge
/// and creates nothing; with globex's it completes, every branch and tag at the source's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_into_another_organisation_uses_that_organisations_credential() {
    const ACME_TOKEN: &str = "github_pat_acmeOwner_000000000000000000000000000000000000";
    const GLOBEX_TOKEN: &str = "github_pat_globexOwner_0000000000000000000000000000000000";
    let sim = sim().await;
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, &ready, ACME_TOKEN);
    add_github_org(&c, &ready, "globex", GLOBEX_TOKEN);
    let b = backup(&c, "widgets").await;
    let target = format!("{}/globex/widgets.git", ready.git_url);
    let exists = |ready: &forge_sim::Ready| {
        curl(
            "GET",
            &format!("{}/repos/globex/widgets", ready.api_url),
            Some(&ready.token),
            &ready.ca_cert,
            "",
        )
        .contains("\"full_name\"")
    };

    // acme's credential does not reach globex: refused by the forge, nothing created.
    let (id, _) = start(
        &c,
        &[
            b.id.as_str(),
            "--type",
            "full_repo",
            "--target",
            "new",
            "--org",
            "globex",
            "--name",
            "widgets",
            "--credential-org",
            "acme",
        ],
        true,
    );
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Failed, "{:?}", r.summary);
    assert!(!exists(&ready), "a refused restore created the repository");

    let (id, out) = start(
        &c,
        &[
            b.id.as_str(),
            "--type",
            "full_repo",
            "--target",
            "new",
            "--org",
            "globex",
            "--name",
            "widgets",
            "--credential-org",
            "globex",
        ],
        true,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = wait_restore(&c, &id).await;
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    assert_eq!(r.target_repo.as_deref(), Some("globex/widgets"));
    let src = ls_remote(&ready, &format!("{}/acme/widgets.git", ready.git_url));
    let dst = ls_remote(&ready, &target);
    for (name, id) in src
        .iter()
        .filter(|(n, _)| n.starts_with("refs/heads/") || n.starts_with("refs/tags/"))
    {
        assert_eq!(dst.get(name), Some(id), "{name}");
    }
}

/// A restore of 300 items (100 issues with two comments each) into an existing repository meets
/// no secondary limit of the simulator, which holds it to GitHub's documented content-creation
/// limits (80 a minute, 500 an hour): the writes leave evenly paced, never in a burst. It takes
/// the pace's own time (72 a minute), about four and a half minutes, waiting rather than working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_of_300_items_meets_no_secondary_limit() {
    use forge_sim::seed::{CommitSeed, GenerateSeed, RepoSeed, Seed};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("forge-sim/seeds/acme.toml");
    let mut seed = Seed::from_file(&path).unwrap();
    let acme = seed.orgs.iter_mut().find(|o| o.login == "acme").unwrap();
    acme.repos.push(RepoSeed {
        name: "bulk".into(),
        commits: vec![CommitSeed {
            message: "Initial commit".into(),
            files: [("README.md".to_string(), Some("Bulk\n".to_string()))].into(),
            ..Default::default()
        }],
        generate: Some(GenerateSeed {
            issues: 100,
            comments_each: 2,
            closed_every: 0,
        }),
        ..Default::default()
    });
    let sim = forge_sim::ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let ready = sim.ready().clone();
    let c = Cluster::start(1).await.unwrap();
    add_acme_org(&c, &ready, &ready.token);
    let b = backup(&c, "bulk").await;
    assert_eq!((b.counts.issues, b.counts.comments), (100, 200));
    let before = sim.stats();
    let r = issues_into_new_repository(&c, &ready, b.id.as_str(), "bulk-copy").await;
    let after = sim.stats();
    assert_eq!(
        after.secondary_refusals - before.secondary_refusals,
        0,
        "the restore met secondary limits: {:?}",
        r.summary
    );
    let issues = list(&ready, "/repos/acme/bulk-copy/issues?state=all");
    assert_eq!(issues.len(), 100, "{:?}", r.summary);
    assert_eq!(comments_of(&ready, "bulk-copy", &issues), 200);
}
