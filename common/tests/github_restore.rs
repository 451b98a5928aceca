//! Restore of GitHub metadata against the forge simulator (seed acme.toml): export a
//! repository, push its git mirror to a new repository, restore the metadata into it, export
//! that, and compare; then restore again (with and without the journal) and check that nothing
//! is created twice.

#![allow(clippy::unwrap_used)]

mod support;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use support::{OWNER, seed_path};

use base64::Engine as _;
use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use repovault_common::forge::github::restore::text;
use repovault_common::forge::github::{
    ExportMode, GitHubClient, GitHubEndpoint, Parts, Progress, RestoreOptions, RestoreReport,
    RestoreTarget, export_repo, plan, restore_metadata,
};
use repovault_common::secret::Secret;
use serde_json::{Value, json};

/// The simulator with GitHub's content-creation limits raised: the restores here create a few
/// hundred items, which GitHub's 80/min would stretch to minutes (pacing is tested apart).
async fn start() -> ForgeSim {
    let seed = Seed::from_file(&seed_path()).unwrap();
    let sim = ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    {
        let mut o = sim.sim().options.write();
        o.content_per_minute = 1_000_000;
        o.content_per_hour = 1_000_000;
    }
    sim
}

fn client(sim: &ForgeSim) -> GitHubClient {
    let endpoint = GitHubEndpoint {
        api_url: sim.ready().api_url.clone(),
        ca_cert_pem: Some(std::fs::read_to_string(&sim.ready().ca_cert).unwrap()),
    };
    GitHubClient::new(&endpoint, Secret::new(OWNER)).unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

async fn export(c: &GitHubClient, repo: &str, out: &Path) {
    let report = export_repo(c, "acme", repo, out, None, ExportMode::Full)
        .await
        .unwrap();
    for (component, status) in &report.components {
        assert_eq!(
            status.status,
            repovault_common::domain::ComponentState::Included,
            "{repo} {component}: {status:?}"
        );
    }
}

/// Runs git with the simulator's CA and the owner's token in the environment (never in
/// arguments), on a blocking thread: the simulator runs in this test's runtime.
async fn git(sim: &ForgeSim, args: Vec<String>) -> String {
    let ca = sim.ready().ca_cert.clone();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{OWNER}"));
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("git");
        // The environment's GIT_SSL_CAINFO and the like would override the configuration.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
        let out = cmd
            .args(&args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "http.sslCAInfo")
            .env("GIT_CONFIG_VALUE_0", &ca)
            .env("GIT_CONFIG_KEY_1", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_1", format!("Authorization: Basic {auth}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// Creates `acme/<dst>`, pushes `acme/<src>`'s mirror into it (`refs/pull/*` under
/// `refs/repovault/pull/*`, as GitHub refuses them) and answers its branches.
async fn new_repo_with_git(
    sim: &ForgeSim,
    c: &GitHubClient,
    src: &str,
    dst: &str,
    tmp: &Path,
) -> BTreeSet<String> {
    c.post_json("/orgs/acme/repos", &json!({ "name": dst }))
        .await
        .unwrap();
    let git_url = &sim.ready().git_url;
    let mirror = tmp.join(format!("{src}.git"));
    let m = mirror.to_string_lossy().into_owned();
    git(
        sim,
        vec![
            "clone".into(),
            "--mirror".into(),
            format!("{git_url}/acme/{src}.git"),
            m.clone(),
        ],
    )
    .await;
    git(
        sim,
        vec![
            "-C".into(),
            m.clone(),
            "push".into(),
            format!("{git_url}/acme/{dst}.git"),
            "+refs/heads/*:refs/heads/*".into(),
            "+refs/tags/*:refs/tags/*".into(),
            "+refs/pull/*:refs/repovault/pull/*".into(),
        ],
    )
    .await;
    git(
        sim,
        vec![
            "-C".into(),
            m,
            "for-each-ref".into(),
            "--format=%(refname:short)".into(),
            "refs/heads".into(),
        ],
    )
    .await
    .lines()
    .map(str::to_string)
    .collect()
}

fn options(backup: &str, branches: BTreeSet<String>, journal: PathBuf) -> RestoreOptions {
    RestoreOptions {
        backup_id: backup.parse().expect("backup id"),
        parts: Parts::ALL,
        branches_present: branches,
        journal,
        pace: None,
        access: Default::default(),
    }
}

async fn restore(
    c: &GitHubClient,
    tree: &Path,
    name: &str,
    opts: &RestoreOptions,
) -> (RestoreReport, Vec<Progress>) {
    let seen = Mutex::new(Vec::new());
    let report = restore_metadata(
        tree,
        RestoreTarget {
            client: c,
            owner: "acme",
            name,
        },
        opts,
        &|p| seen.lock().unwrap().push(p),
    )
    .await
    .unwrap();
    (report, seen.into_inner().unwrap())
}

/// Every issue and pull document of an export tree, by number: (is pull, document).
fn items(tree: &Path) -> BTreeMap<u64, (bool, Value)> {
    let mut out = BTreeMap::new();
    for (dir, pull) in [("issues", false), ("pulls", true)] {
        let root = tree.join("meta").join(dir);
        let Ok(shards) = std::fs::read_dir(&root) else {
            continue;
        };
        for shard in shards {
            for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                let doc = read_json(&f.unwrap().path());
                let main = &doc[if pull { "pull" } else { "issue" }];
                out.insert(main["number"].as_u64().unwrap(), (pull, doc));
            }
        }
    }
    out
}

fn main_of((pull, doc): &(bool, Value)) -> &Value {
    &doc[if *pull { "pull" } else { "issue" }]
}

fn names(v: &Value, list: &str, field: &str) -> BTreeSet<String> {
    v[list]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x[field].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn body(v: &Value) -> String {
    v["body"].as_str().unwrap_or("").to_string()
}

/// Comments, reviews and review comments of a document.
fn comment_count((pull, doc): &(bool, Value)) -> usize {
    let n = |f: &str| doc[f].as_array().map_or(0, Vec::len);
    if *pull {
        n("comments") + n("reviews") + n("review_comments")
    } else {
        n("comments")
    }
}

/// Release tag → asset name → bytes.
fn assets(tree: &Path) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let dir = tree.join("meta/releases");
    let Ok(files) = std::fs::read_dir(&dir) else {
        return out;
    };
    for f in files {
        let r = read_json(&f.unwrap().path());
        let id = r["id"].as_u64().unwrap();
        let mut files = BTreeMap::new();
        for a in r["assets"].as_array().unwrap() {
            let name = a["name"].as_str().unwrap();
            let bytes = std::fs::read(tree.join(format!("releases/{id}/{name}"))).unwrap();
            files.insert(name.to_string(), bytes);
        }
        out.insert(r["tag_name"].as_str().unwrap().to_string(), files);
    }
    out
}

/// Compares a restored repository's export with the source's, item by item.
fn compare(src: &Path, restored: &Path, report: &RestoreReport, skip_new: &BTreeSet<u64>) {
    let (a, b) = (items(src), items(restored));
    assert_eq!(
        b.len(),
        a.len() + skip_new.len(),
        "same number of issues and pulls"
    );
    let converted: BTreeSet<u64> = report.converted.iter().map(|c| c.number).collect();
    for (n, item) in &a {
        let new = report.numbers[n];
        let got = &b[&new];
        let (m, g) = (main_of(item), main_of(got));
        assert_eq!(got.0, item.0 && !converted.contains(n), "#{n} kind");
        assert_eq!(g["title"], m["title"], "#{n} title");
        assert_eq!(
            text::strip(&body(g)),
            text::rewrite_refs(&body(m), &report.numbers),
            "#{n} body"
        );
        let marker = text::parse_marker(&body(g)).unwrap();
        assert_eq!(marker.key, *n);
        assert_eq!(g["state"], m["state"], "#{n} state");
        assert_eq!(g["locked"], m["locked"], "#{n} locked");
        assert_eq!(
            names(g, "labels", "name"),
            names(m, "labels", "name"),
            "#{n} labels"
        );
        assert_eq!(
            names(g, "assignees", "login"),
            names(m, "assignees", "login"),
            "#{n} assignees"
        );
        assert_eq!(g["milestone"]["title"], m["milestone"]["title"], "#{n}");
        let comments = got.1["comments"].as_array().unwrap();
        assert_eq!(comments.len(), comment_count(item), "#{n} comments");
        // Conversation comments keep their bodies beyond the header.
        let originals: BTreeSet<String> = item.1["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| text::rewrite_refs(&body(c), &report.numbers))
            .collect();
        let restored: BTreeSet<String> = comments.iter().map(|c| text::strip(&body(c))).collect();
        assert!(originals.is_subset(&restored), "#{n} comment bodies");
        if m["merged_at"].is_string() {
            assert!(body(g).lines().next().unwrap().contains("merged"), "#{n}");
        }
    }
    assert_eq!(assets(src), assets(restored), "releases and asset bytes");
    let labels = |t: &Path| {
        names(
            &json!({"l": read_json(&t.join("meta/labels.json"))}),
            "l",
            "name",
        )
    };
    assert!(labels(src).is_subset(&labels(restored)));
    let milestones = |t: &Path| {
        read_json(&t.join("meta/milestones.json"))
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["title"].to_string(), m["state"].to_string()))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(milestones(src), milestones(restored));
}

#[tokio::test]
async fn widgets_round_trip_and_repeat() {
    let sim = start().await;
    let c = client(&sim);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    export(&c, "widgets", &src).await;
    // A cross-reference to rewrite: the target already holds one issue, so numbers shift.
    let first = src.join("meta/issues/0/1.json");
    let mut doc = read_json(&first);
    doc["issue"]["body"] = json!("Every Tuesday. See #2 and #7, not acme/other#2.");
    std::fs::write(&first, serde_json::to_vec(&doc).unwrap()).unwrap();

    let branches = new_repo_with_git(&sim, &c, "widgets", "widgets-restored", tmp.path()).await;
    assert!(branches.contains("feature/faster"), "{branches:?}");
    let pre = c
        .post_json(
            "/repos/acme/widgets-restored/issues",
            &json!({"title": "Already here"}),
        )
        .await
        .unwrap();
    let pre = pre["number"].as_u64().unwrap();

    sim.sim().options.write().record_exchanges = true;
    let opts = options("B1", branches, tmp.path().join("journal.json"));
    let p = plan(&src, &opts).unwrap();
    println!("plan: {p:?}");
    assert!(p.creations > 20 && p.requests >= p.creations);
    let (report, progress) = restore(&c, &src, "widgets-restored", &opts).await;
    println!("first: {report:#?}");
    assert!(!progress.is_empty());
    assert_eq!(
        progress.last().unwrap().done,
        report.total_created() + report.reused.values().sum::<u64>()
    );

    // Numbers shift by one; references follow.
    assert_eq!(report.numbers[&1], 2);
    assert_eq!(report.numbers[&7], 8);
    // The merged pull request's branch has no commits left over main: GitHub refuses it as a
    // pull request, so it comes back as an issue that says so.
    assert_eq!(report.converted.len(), 1, "{:?}", report.converted);
    assert_eq!(report.converted[0].number, 7);
    assert!(
        report.converted[0].reason.contains("No commits between"),
        "{:?}",
        report.converted
    );
    assert!(report.created["pull"] == 3 && report.created["review"] == 4);
    assert_eq!(
        report.webhooks_needing_secret,
        vec!["https://127.0.0.1:9/widgets-hook"]
    );
    assert!(report.created.contains_key("protection"), "{report:?}");
    assert!(report.created.contains_key("ruleset"), "{report:?}");

    let out = tmp.path().join("restored");
    export(&c, "widgets-restored", &out).await;
    compare(&src, &out, &report, &BTreeSet::from([pre]));
    let restored_first = read_json(&out.join("meta/issues/0/2.json"));
    let b = body(&restored_first["issue"]);
    assert!(
        b.starts_with("> Originally #1 by @dev on 2024-02-01T09:00:00Z"),
        "{b}"
    );
    assert!(b.contains("See #3 and #8, not acme/other#2."), "{b}");
    assert!(
        b.ends_with("<!-- repovault:source backup=B1 kind=issue number=1 -->"),
        "{b}"
    );
    // Settings: protection and ruleset as in the source; the hook has no secret.
    let prot = read_json(&out.join("meta/settings/branch_protection.json"));
    let src_prot = read_json(&src.join("meta/settings/branch_protection.json"));
    for f in ["required_linear_history", "enforce_admins"] {
        assert_eq!(
            prot["main"][f]["enabled"], src_prot["main"][f]["enabled"],
            "{f}"
        );
    }
    assert_eq!(
        prot["main"]["required_status_checks"]["contexts"],
        src_prot["main"]["required_status_checks"]["contexts"]
    );

    // Every request the restore sent is one GitHub's OpenAPI description documents, with a
    // body valid against it.
    let exchanges = sim.sim().stats.exchanges.lock().clone();
    sim.sim().options.write().record_exchanges = false;
    let mut invalid = Vec::new();
    for x in &exchanges {
        if x.method != "GET" && x.route.starts_with("(no route)") {
            invalid.push(format!("{} {}: no route", x.method, x.path));
        }
        if x.status < 400
            && let Err(e) =
                forge_sim::openapi::validate_request(&x.method, &x.route, x.request.as_ref())
        {
            invalid.push(format!("{} {}: {e:?}", x.method, x.path));
        }
    }
    assert!(invalid.is_empty(), "{invalid:#?}");
    assert!(exchanges.iter().any(|x| x.route.contains("/uploads/")));

    // Again: nothing new.
    let (again, _) = restore(&c, &src, "widgets-restored", &opts).await;
    println!(
        "again: created {:?} reused {:?}",
        again.created, again.reused
    );
    assert_eq!(again.total_created(), 0, "{again:#?}");
    // Only what the target refused is tried again (the deploy key: in use by acme/widgets).
    assert_eq!(
        again.content_requests,
        again.skipped.len() as u64,
        "{again:#?}"
    );
    assert_eq!(again.skipped, report.skipped);
    assert_eq!(again.numbers, report.numbers);
    let mut expected = report.created.clone();
    for (k, v) in &report.reused {
        *expected.entry(k.clone()).or_default() += v;
    }
    assert_eq!(again.reused, expected);
    // Without the journal: the markers alone.
    std::fs::remove_file(&opts.journal).unwrap();
    let (markers_only, _) = restore(&c, &src, "widgets-restored", &opts).await;
    assert_eq!(markers_only.total_created(), 0, "{markers_only:#?}");
    assert_eq!(markers_only.numbers, report.numbers);
    let out2 = tmp.path().join("restored-2");
    export(&c, "widgets-restored", &out2).await;
    compare(&src, &out2, &report, &BTreeSet::from([pre]));
}

#[tokio::test]
async fn tracker_into_an_empty_repository_keeps_numbers() {
    let sim = start().await;
    let c = client(&sim);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    export(&c, "tracker", &src).await;
    let branches = new_repo_with_git(&sim, &c, "tracker", "tracker-restored", tmp.path()).await;
    let opts = options("B2", branches, tmp.path().join("journal.json"));
    // The first attempt dies half-way through the comments (a refusal the client does not
    // retry); the next completes it with nothing twice.
    sim.sim().options.write().failures = serde_json::from_value(json!([{
        "method": "POST", "path_contains": "/tracker-restored/issues/50/comments",
        "status": 422, "count": 1
    }]))
    .unwrap();
    let target = RestoreTarget {
        client: &c,
        owner: "acme",
        name: "tracker-restored",
    };
    let failed = restore_metadata(&src, target, &opts, &|_| {}).await;
    assert_eq!(failed.unwrap_err().status(), Some(422));
    let (report, _) = restore(&c, &src, "tracker-restored", &opts).await;
    println!(
        "tracker, second attempt: created {:?}, reused {:?}, {} requests",
        report.created, report.reused, report.requests
    );
    assert_eq!(report.reused["issue"], 111);
    assert!(report.reused["comment"] >= 49 && report.created["comment"] >= 62);
    assert!(report.numbers.iter().all(|(old, new)| old == new));
    let out = tmp.path().join("restored");
    export(&c, "tracker-restored", &out).await;
    compare(&src, &out, &report, &BTreeSet::new());

    // The journal lost: the markers alone.
    std::fs::remove_file(&opts.journal).unwrap();
    let (again, _) = restore(&c, &src, "tracker-restored", &opts).await;
    assert_eq!(again.total_created(), 0, "{:?}", again.created);
}

#[tokio::test]
async fn a_content_limit_is_waited_out() {
    let sim = start().await;
    let c = client(&sim);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    export(&c, "widgets", &src).await;
    c.post_json("/orgs/acme/repos", &json!({ "name": "labels-only" }))
        .await
        .unwrap();
    // GitHub's secondary limit on the first two label creations (403 with retry-after).
    sim.sim().options.write().failures = serde_json::from_value(json!([{
        "method": "POST", "path_contains": "/labels-only/labels", "status": 403, "count": 2,
        "retry_after_secs": 1
    }]))
    .unwrap();
    let mut opts = options("B3", BTreeSet::new(), tmp.path().join("j.json"));
    opts.parts = Parts {
        issues: false,
        releases: false,
        labels: true,
        settings: false,
    };
    let (report, _) = restore(&c, &src, "labels-only", &opts).await;
    assert_eq!(report.created["label"], 3);
    assert_eq!(report.created["milestone"], 2);
}
