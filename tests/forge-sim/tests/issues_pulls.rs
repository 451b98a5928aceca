//! Issues, pull requests and commits of the simulator over real HTTPS: pagination of long lists
//! with GitHub's `Link`, `since`, GitHub's refusals (pull requests without a branch or without
//! commits, reviews of one's own pull request, bodies that do not match the schema, merging
//! twice), a real merge commit in the bare repository, the commit count read from the `Link` of
//! `per_page=1`, and every answer held to GitHub's OpenAPI description.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use reqwest::Method;
use serde_json::{Value, json};

const OWNER: &str = "ghp_ipOwner000000000000000000000000000";
const DEV: &str = "ghp_ipDev00000000000000000000000000000";
const REV: &str = "ghp_ipRev00000000000000000000000000000";

const SEED: &str = r#"
[options]
record_exchanges = true

[[users]]
login = "owner"
tokens = ["ghp_ipOwner000000000000000000000000000"]
[[users]]
login = "dev"
email = "dev@acme.example"
tokens = ["ghp_ipDev00000000000000000000000000000"]
[[users]]
login = "rev"
tokens = ["ghp_ipRev00000000000000000000000000000"]

[[orgs]]
login = "acme"
[orgs.members]
dev = "member"
rev = "member"

# 120 issues, one of them with 130 comments.
[[orgs.repos]]
name = "big"
[[orgs.repos.issues]]
title = "Long thread"
generate_comments = 130
[orgs.repos.generate]
issues = 119
closed_every = 10

# Three old issues, for `since`.
[[orgs.repos]]
name = "old"
[[orgs.repos.issues]]
title = "Old one"
created_at = "2020-01-01T00:00:00Z"
[[orgs.repos.issues.comments]]
body = "an old comment"
created_at = "2020-01-02T00:00:00Z"
[[orgs.repos.issues]]
title = "Old two"
created_at = "2020-01-01T00:00:00Z"
[[orgs.repos.issues]]
title = "Old three"
created_at = "2020-01-01T00:00:00Z"
[[orgs.repos.issues.comments]]
body = "another old comment"
created_at = "2020-01-03T00:00:00Z"

# History: main (3 commits), feature (2 ahead), conflict (changes README as main does later),
# done (merged by the seed).
[[orgs.repos]]
name = "code"
[[orgs.repos.commits]]
message = "first"
author = "dev"
date = "2024-01-01T00:00:00Z"
files = { "README.md" = "hello\n" }
[[orgs.repos.commits]]
message = "feature one"
branch = "feature"
date = "2024-01-02T00:00:00Z"
files = { "feature.txt" = "one\n" }
[[orgs.repos.commits]]
message = "feature two"
branch = "feature"
date = "2024-01-03T00:00:00Z"
files = { "feature.txt" = "one\ntwo\n" }
[[orgs.repos.commits]]
message = "conflicting"
branch = "conflict"
date = "2024-01-04T00:00:00Z"
files = { "README.md" = "conflict\n" }
[[orgs.repos.commits]]
message = "done work"
branch = "done"
date = "2024-01-04T12:00:00Z"
files = { "done.txt" = "done\n" }
[[orgs.repos.commits]]
message = "second"
date = "2024-01-05T00:00:00Z"
files = { "README.md" = "hello again\n" }
[[orgs.repos.commits]]
message = "third"
date = "2024-01-06T00:00:00Z"
files = { "docs/a.md" = "a\n" }
[[orgs.repos.tags]]
name = "v1.0.0"
message = "Release 1.0.0"
[[orgs.repos.labels]]
name = "bug"
color = "d73a4a"
[[orgs.repos.milestones]]
title = "v1"
[[orgs.repos.pulls]]
title = "Seeded and merged"
user = "dev"
head = "done"
merged = true
labels = ["bug"]
milestone = "v1"
[[orgs.repos.pulls.comments]]
body = "looks fine"
user = "rev"
[[orgs.repos.pulls.reviews]]
user = "rev"
state = "APPROVED"
body = "ship it"
[[orgs.repos.pulls.reviews.comments]]
path = "done.txt"
line = 1
body = "nice line"

[[orgs.repos]]
name = "empty"
"#;

struct T {
    sim: ForgeSim,
    http: reqwest::Client,
}

struct Resp {
    status: u16,
    link: String,
    body: Value,
}

impl T {
    async fn start() -> T {
        let seed: Seed = toml::from_str(SEED).unwrap();
        let sim = ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let ca = std::fs::read(&sim.ready().ca_cert).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .user_agent("forge-sim-issues-pulls")
            .build()
            .unwrap();
        T { sim, http }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.sim.ready().api_url)
        };
        let mut rb = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = r.bytes().await.unwrap();
        Resp {
            status,
            link,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, OWNER, None).await
    }

    /// Every item of a list, following `rel="next"`.
    async fn all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(p) = next.take() {
            let r = self.get(&p).await;
            assert_eq!(r.status, 200, "{p}: {}", r.body);
            out.extend(r.body.as_array().unwrap().iter().cloned());
            next = rel(&r.link, "next");
        }
        out
    }

    fn git_dir(&self, repo: &str) -> PathBuf {
        let world = self.sim.sim().world.lock();
        let id = world.repo_id("acme", repo).unwrap();
        world.repos[&id].git_dir.clone()
    }

    fn git(&self, repo: &str, args: &[&str]) -> String {
        forge_sim::gitrepo::run(&self.git_dir(repo), args)
            .unwrap()
            .trim()
            .to_string()
    }

    /// Every recorded exchange checked against GitHub's description.
    fn assert_schema_conformance(&self) {
        let exchanges = self.sim.sim().stats.exchanges.lock().clone();
        assert!(!exchanges.is_empty());
        let mut errors = Vec::new();
        for x in &exchanges {
            if let Err(e) = forge_sim::openapi::validate_response(
                &x.method,
                &x.route,
                x.status,
                x.response.as_ref(),
            ) {
                errors.push(format!("{} {} → {}: {e:?}", x.method, x.path, x.status));
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

/// The URL of `rel="NAME"` in a `Link` header.
fn rel(link: &str, name: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, r) = part.split_once(';')?;
        r.contains(&format!("rel=\"{name}\"")).then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// The `page` of a URL.
fn page_of(url: &str) -> u64 {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "page")
        .unwrap()
        .1
        .parse()
        .unwrap()
}

#[tokio::test]
async fn long_lists_paginate_with_link() {
    let t = T::start().await;
    let r = t.get("/repos/acme/big/issues?state=all&per_page=100").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().unwrap().len(), 100);
    assert_eq!(page_of(&rel(&r.link, "last").unwrap()), 2, "{}", r.link);
    assert_eq!(page_of(&rel(&r.link, "next").unwrap()), 2);
    let all = t.all("/repos/acme/big/issues?state=all&per_page=100").await;
    let mut numbers: Vec<u64> = all.iter().map(|i| i["number"].as_u64().unwrap()).collect();
    // Newest first by default, as GitHub lists them.
    assert_eq!(numbers.first(), Some(&120));
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=120).collect::<Vec<u64>>());
    // Every tenth generated issue is closed; the default state is open.
    let open = t.all("/repos/acme/big/issues?per_page=100").await;
    assert_eq!(open.len(), 120 - 11);
    assert!(open.iter().all(|i| i["state"] == "open"));
    let closed = t.all("/repos/acme/big/issues?state=closed").await;
    assert_eq!(closed.len(), 11);
    assert!(closed.iter().all(|i| i["closed_at"].is_string()));

    // 130 comments on #1: two pages of 100, the issue counts them.
    let r = t
        .get("/repos/acme/big/issues/1/comments?per_page=100")
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 100);
    assert_eq!(page_of(&rel(&r.link, "last").unwrap()), 2);
    let comments = t
        .all("/repos/acme/big/issues/1/comments?per_page=100")
        .await;
    assert_eq!(comments.len(), 130);
    let ids: Vec<u64> = comments.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(
        t.get("/repos/acme/big/issues/1").await.body["comments"],
        130
    );
    // Past the last page: empty, with prev and first.
    let r = t
        .get("/repos/acme/big/issues/1/comments?per_page=100&page=3")
        .await;
    assert_eq!(r.body, json!([]));
    assert!(rel(&r.link, "prev").is_some() && rel(&r.link, "next").is_none());
    t.assert_schema_conformance();
}

#[tokio::test]
async fn seeding_generates_many_issues_and_comments() {
    let t = T::start().await;
    let sim = t.sim.sim();
    let id = forge_sim::seeding::create_repo(sim, "acme", "timed", false, "main").unwrap();
    let seed = forge_sim::seed::RepoSeed {
        name: "timed".into(),
        issues: vec![forge_sim::seed::IssueSeed {
            title: "Long".into(),
            generate_comments: 130,
            ..Default::default()
        }],
        generate: Some(forge_sim::seed::GenerateSeed {
            issues: 119,
            comments_each: 2,
            closed_every: 0,
        }),
        ..Default::default()
    };
    // Speed belongs in benchmarks; the README gives the seed's start time.
    forge_sim::api::issues::seed_repo(sim, id, &seed).unwrap();
    let world = sim.world.lock();
    let r = &world.repos[&id];
    assert_eq!(r.issues.len(), 120);
    assert_eq!(r.comments.len(), 130 + 119 * 2);
}

#[tokio::test]
async fn since_finds_what_changed() {
    let t = T::start().await;
    let since = "2021-01-01T00:00:00Z";
    let r = t
        .get(&format!("/repos/acme/old/issues?state=all&since={since}"))
        .await;
    assert_eq!(r.body, json!([]), "nothing changed since 2021");

    // A title change and a new comment each move an issue's updated_at.
    let r = t
        .call(
            Method::PATCH,
            "/repos/acme/old/issues/2",
            OWNER,
            Some(json!({"title": "Old two, renamed"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = t
        .call(
            Method::POST,
            "/repos/acme/old/issues/3/comments",
            DEV,
            Some(json!({"body": "a new comment"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let new_comment = r.body["id"].as_u64().unwrap();

    let changed = t
        .all(&format!("/repos/acme/old/issues?state=all&since={since}"))
        .await;
    let mut numbers: Vec<u64> = changed
        .iter()
        .map(|i| i["number"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![2, 3]);
    let comments = t
        .all(&format!("/repos/acme/old/issues/comments?since={since}"))
        .await;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["id"].as_u64(), Some(new_comment));
    let on3 = t
        .all(&format!("/repos/acme/old/issues/3/comments?since={since}"))
        .await;
    assert_eq!(on3.len(), 1);
    let all_on3 = t.all("/repos/acme/old/issues/3/comments").await;
    assert_eq!(all_on3.len(), 2);
    // `since` of the timestamp GitHub shows finds the item itself.
    let updated = changed[0]["updated_at"].as_str().unwrap().to_string();
    let again = t
        .all(&format!("/repos/acme/old/issues?state=all&since={updated}"))
        .await;
    assert!(!again.is_empty());
    // The rename is an event; the timeline merges events and comments in time order.
    let events = t.all("/repos/acme/old/issues/2/events").await;
    assert_eq!(events[0]["event"], "renamed");
    assert_eq!(events[0]["rename"]["from"], "Old two");
    let timeline = t.all("/repos/acme/old/issues/3/timeline").await;
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["commented", "commented"]);
    assert_eq!(timeline[1]["body"], "a new comment");
    t.assert_schema_conformance();
}

#[tokio::test]
async fn refusals_are_githubs() {
    let t = T::start().await;
    let pulls = "/repos/acme/code/pulls";
    let post = |path: &'static str, token: &'static str, body: Value| {
        let t = &t;
        async move { t.call(Method::POST, path, token, Some(body)).await }
    };

    let r = post(
        pulls,
        DEV,
        json!({"title": "x", "head": "nope", "base": "main"}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["message"], "Validation Failed");
    assert_eq!(
        r.body["errors"],
        json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}])
    );
    let r = post(
        pulls,
        DEV,
        json!({"title": "x", "head": "feature", "base": "nope"}),
    )
    .await;
    assert_eq!(
        r.body["errors"],
        json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}])
    );
    // `done` is merged into main by the seed: nothing left to merge.
    let r = post(
        pulls,
        DEV,
        json!({"title": "x", "head": "done", "base": "main"}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["errors"],
        json!([{"resource": "PullRequest", "code": "custom", "message": "No commits between main and done"}])
    );

    let r = post(
        pulls,
        DEV,
        json!({"title": "Feature", "head": "acme:feature", "base": "main"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let n = r.body["number"].as_u64().unwrap();
    let again = post(
        pulls,
        DEV,
        json!({"title": "Again", "head": "feature", "base": "main"}),
    )
    .await;
    assert_eq!(again.status, 422);
    assert_eq!(
        again.body["errors"][0]["message"],
        "A pull request already exists for acme:feature."
    );
    let reviews = format!("{pulls}/{n}/reviews");
    for (event, message) in [
        ("APPROVE", "Can not approve your own pull request"),
        (
            "REQUEST_CHANGES",
            "Can not request changes on your own pull request",
        ),
    ] {
        let r = t
            .call(
                Method::POST,
                &reviews,
                DEV,
                Some(json!({"event": event, "body": "mine"})),
            )
            .await;
        assert_eq!(r.status, 422, "{event}");
        assert_eq!(r.body["errors"], json!([message]), "{event}");
    }
    assert_eq!(
        t.all(&reviews).await.len(),
        0,
        "refused reviews leave nothing"
    );

    // Bodies that do not match the schema.
    let issues = "/repos/acme/code/issues";
    let r = post(issues, DEV, json!({"body": "no title"})).await;
    assert_eq!(r.status, 422);
    assert!(
        r.body["message"].as_str().unwrap().contains("title"),
        "{}",
        r.body
    );
    let r = post(issues, DEV, json!({"title": ["not", "a", "string"]})).await;
    assert_eq!(r.status, 422);
    let r = post(issues, DEV, json!({"title": "ok", "labels": "bug"})).await;
    assert_eq!(r.status, 422);
    let r = t
        .call(
            Method::PATCH,
            "/repos/acme/code/issues/1",
            OWNER,
            Some(json!({"state": "gone"})),
        )
        .await;
    assert_eq!(r.status, 422);
    // A pull request's number is an issue too; an issue's number is no pull request.
    let r = post(issues, DEV, json!({"title": "Just an issue"})).await;
    assert_eq!(r.status, 201);
    let issue = r.body["number"].as_u64().unwrap();
    assert_eq!(t.get(&format!("{pulls}/{issue}")).await.status, 404);
    let as_issue = t.get(&format!("{issues}/{n}")).await;
    assert_eq!(as_issue.status, 200);
    assert!(as_issue.body["pull_request"]["url"].is_string());
    // The seeded pull request is merged already.
    let r = t
        .call(Method::PUT, &format!("{pulls}/1/merge"), OWNER, None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["message"], "Pull Request is not mergeable");
    // A pull request that conflicts cannot be merged.
    let r = post(
        pulls,
        DEV,
        json!({"title": "Conflict", "head": "conflict", "base": "main"}),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["mergeable"], false);
    assert_eq!(r.body["mergeable_state"], "dirty");
    let c = r.body["number"].as_u64().unwrap();
    let r = t
        .call(Method::PUT, &format!("{pulls}/{c}/merge"), OWNER, None)
        .await;
    assert_eq!(r.status, 405);
    // Outsiders to the repository cannot be asked for reviews; the author cannot either.
    let r = t
        .call(
            Method::POST,
            &format!("{pulls}/{n}/requested_reviewers"),
            OWNER,
            Some(json!({"reviewers": ["dev"]})),
        )
        .await;
    assert_eq!(r.status, 422);
    t.assert_schema_conformance();
}

#[tokio::test]
async fn merging_makes_a_real_merge_commit() {
    let t = T::start().await;
    let pulls = "/repos/acme/code/pulls";
    let main_before = t.git("code", &["rev-parse", "refs/heads/main"]);
    let feature = t.git("code", &["rev-parse", "refs/heads/feature"]);
    let r = t
        .call(
            Method::POST,
            pulls,
            DEV,
            Some(json!({"title": "Feature", "head": "feature", "base": "main", "body": "two commits"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let n = r.body["number"].as_u64().unwrap();
    assert_eq!(n, 2, "numbers continue after the seeded pull request");
    assert_eq!(r.body["head"]["sha"], feature.as_str());
    assert_eq!(r.body["base"]["sha"], main_before.as_str());
    assert_eq!(r.body["head"]["repo"]["full_name"], "acme/code");
    assert_eq!(r.body["commits"], 2);
    assert_eq!(r.body["changed_files"], 1);
    assert_eq!(r.body["additions"], 2);
    assert_eq!(r.body["mergeable"], true);
    assert_eq!(r.body["merged"], false);
    assert_eq!(
        t.git("code", &["rev-parse", &format!("refs/pull/{n}/head")]),
        feature
    );

    // Reviews, review comments, a reply, requested reviewers.
    let r = t
        .call(
            Method::POST,
            &format!("{pulls}/{n}/requested_reviewers"),
            DEV,
            Some(json!({"reviewers": ["rev"]})),
        )
        .await;
    assert_eq!(r.status, 403, "dev is no triager of acme/code");
    let r = t
        .call(
            Method::POST,
            &format!("{pulls}/{n}/requested_reviewers"),
            OWNER,
            Some(json!({"reviewers": ["rev"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["requested_reviewers"][0]["login"], "rev");
    let r = t
        .call(
            Method::POST,
            &format!("{pulls}/{n}/comments"),
            REV,
            Some(json!({"body": "why?", "commit_id": feature, "path": "feature.txt", "line": 2})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rc = r.body["id"].as_u64().unwrap();
    let r = t
        .call(
            Method::POST,
            &format!("{pulls}/{n}/comments/{rc}/replies"),
            DEV,
            Some(json!({"body": "because"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["in_reply_to_id"].as_u64(), Some(rc));
    assert_eq!(r.body["path"], "feature.txt");
    let r = t
        .call(
            Method::POST,
            &format!("{pulls}/{n}/comments"),
            REV,
            Some(json!({"body": "no line", "commit_id": feature, "path": "feature.txt"})),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = t
        .call(
            Method::POST,
            &format!("{pulls}/{n}/reviews"),
            REV,
            Some(json!({"event": "APPROVE", "body": "ship it", "comments": [{"path": "feature.txt", "line": 1, "body": "good"}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "APPROVED");
    let review = r.body["id"].as_u64().unwrap();
    let of_review = t
        .all(&format!("{pulls}/{n}/reviews/{review}/comments"))
        .await;
    assert_eq!(of_review.len(), 1);
    assert_eq!(t.all(&format!("{pulls}/{n}/comments")).await.len(), 3);
    assert_eq!(t.all("/repos/acme/code/pulls/comments").await.len(), 4);
    let requested = t.get(&format!("{pulls}/{n}/requested_reviewers")).await;
    assert_eq!(
        requested.body["users"],
        json!([]),
        "reviewing answers the request"
    );

    // The merge: a stale sha is refused; then a real merge commit moves main.
    let r = t
        .call(
            Method::PUT,
            &format!("{pulls}/{n}/merge"),
            OWNER,
            Some(json!({"sha": main_before})),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(t.get(&format!("{pulls}/{n}/merge")).await.status, 404);
    let r = t
        .call(
            Method::PUT,
            &format!("{pulls}/{n}/merge"),
            OWNER,
            Some(json!({"sha": feature, "merge_method": "merge"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["merged"], true);
    let sha = r.body["sha"].as_str().unwrap().to_string();
    assert_eq!(t.git("code", &["rev-parse", "refs/heads/main"]), sha);
    let parents = t.git("code", &["rev-list", "--parents", "-n", "1", &sha]);
    assert_eq!(parents, format!("{sha} {main_before} {feature}"));
    let message = t.git("code", &["log", "-1", "--format=%B", &sha]);
    assert!(message.starts_with(&format!("Merge pull request #{n} from acme/feature")));
    assert_eq!(
        t.git("code", &["show", &format!("{sha}:feature.txt")]),
        "one\ntwo"
    );
    assert_eq!(t.get(&format!("{pulls}/{n}/merge")).await.status, 204);

    let p = t.get(&format!("{pulls}/{n}")).await.body;
    assert_eq!(p["merged"], true);
    assert_eq!(p["state"], "closed");
    assert_eq!(p["merge_commit_sha"], sha.as_str());
    assert_eq!(p["merged_by"]["login"], "owner");
    assert_eq!(p["commits"], 2, "the pull request's commits stay its own");
    assert_eq!(p["mergeable"], Value::Null);
    let commits = t.all(&format!("{pulls}/{n}/commits")).await;
    let messages: Vec<&str> = commits
        .iter()
        .map(|c| c["commit"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, vec!["feature one", "feature two"]);
    let events = t.all(&format!("/repos/acme/code/issues/{n}/events")).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["review_requested", "merged", "closed"]);
    assert_eq!(events[1]["commit_id"], sha.as_str());
    let r = t
        .call(Method::PUT, &format!("{pulls}/{n}/merge"), OWNER, None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["message"], "Pull Request is not mergeable");

    // The seeded merged pull request: a real merge too, with its review and comments.
    let seeded = t.get(&format!("{pulls}/1")).await.body;
    assert_eq!(seeded["merged"], true);
    assert_eq!(seeded["user"]["login"], "dev");
    assert_eq!(seeded["labels"][0]["name"], "bug");
    assert_eq!(seeded["milestone"]["title"], "v1");
    assert_eq!(seeded["milestone"]["closed_issues"], 1);
    assert_eq!(seeded["comments"], 1);
    assert_eq!(seeded["review_comments"], 1);
    let seeded_merge = seeded["merge_commit_sha"].as_str().unwrap();
    let parents = t.git("code", &["rev-list", "--parents", "-n", "1", seeded_merge]);
    assert_eq!(parents.split(' ').count(), 3, "a merge commit: {parents}");
    let reviews = t.all(&format!("{pulls}/1/reviews")).await;
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["state"], "APPROVED");
    let all = t.all(&format!("{pulls}?state=all")).await;
    assert_eq!(all.len(), 2);
    let open = t.all(pulls).await;
    assert!(open.is_empty());
    let by_head = t.all(&format!("{pulls}?state=all&head=acme:feature")).await;
    assert_eq!(by_head.len(), 1);
    t.assert_schema_conformance();
}

#[tokio::test]
async fn commits_branches_and_tags_come_from_git() {
    let t = T::start().await;
    let c = "/repos/acme/code";
    // The commit count, read as repovault reads it: the `last` page at per_page=1.
    let count: u64 = t
        .git("code", &["rev-list", "--count", "main"])
        .parse()
        .unwrap();
    assert_eq!(
        count, 5,
        "first, second, third, done work, the seeded merge"
    );
    let r = t.get(&format!("{c}/commits?sha=main&per_page=1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(page_of(&rel(&r.link, "last").unwrap()), count, "{}", r.link);
    let tip = t.git("code", &["rev-parse", "main"]);
    assert_eq!(r.body[0]["sha"], tip.as_str());
    // The last page holds the root commit.
    let last = t.get(&rel(&r.link, "last").unwrap()).await;
    assert_eq!(last.body[0]["commit"]["message"], "first");
    assert_eq!(last.body[0]["parents"], json!([]));
    assert_eq!(last.body[0]["author"]["login"], "dev", "linked by name");
    assert_eq!(
        last.body[0]["commit"]["author"]["date"],
        "2024-01-01T00:00:00Z"
    );
    let all = t.all(&format!("{c}/commits?per_page=2")).await;
    assert_eq!(all.len() as u64, count);
    let feature = t.all(&format!("{c}/commits?sha=feature")).await;
    assert_eq!(feature.len(), 3);
    let readme = t.all(&format!("{c}/commits?path=README.md")).await;
    let messages: Vec<&str> = readme
        .iter()
        .map(|c| c["commit"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, vec!["second", "first"]);
    let since = t
        .all(&format!("{c}/commits?since=2024-01-05T00:00:00Z"))
        .await;
    assert_eq!(since.len(), 3, "second, third and the merge");
    assert_eq!(t.get(&format!("{c}/commits?sha=nope")).await.status, 404);

    // One commit, with its stats and files.
    let one = t.get(&format!("{c}/commits/feature")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["commit"]["message"], "feature two");
    assert_eq!(
        one.body["stats"],
        json!({"additions": 1, "deletions": 0, "total": 1})
    );
    assert_eq!(one.body["files"][0]["filename"], "feature.txt");
    assert_eq!(one.body["files"][0]["status"], "modified");
    let bad = t.get(&format!("{c}/commits/nope")).await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["message"], "No commit found for SHA: nope");

    // An empty repository has no commits to list.
    let r = t.get("/repos/acme/empty/commits").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["message"], "Git Repository is empty.");
    assert_eq!(t.get("/repos/acme/empty/branches").await.body, json!([]));

    // Branches (protected from the repository's protections) and tags.
    {
        let mut world = t.sim.sim().world.lock();
        let id = world.repo_id("acme", "code").unwrap();
        world
            .repos
            .get_mut(&id)
            .unwrap()
            .protections
            .insert("main".into(), json!({"url": "x", "required_status_checks": {"contexts": ["ci"], "checks": [{"context": "ci", "app_id": null}]}}));
    }
    let branches = t.all(&format!("{c}/branches")).await;
    let names: Vec<&str> = branches
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["conflict", "done", "feature", "main"]);
    let main = branches.iter().find(|b| b["name"] == "main").unwrap();
    assert_eq!(main["protected"], true);
    assert_eq!(main["commit"]["sha"], tip.as_str());
    let protected = t.all(&format!("{c}/branches?protected=true")).await;
    assert_eq!(protected.len(), 1);
    let b = t.get(&format!("{c}/branches/main")).await;
    assert_eq!(b.body["protected"], true);
    assert_eq!(b.body["protection"]["enabled"], true);
    assert_eq!(b.body["commit"]["sha"], tip.as_str());
    let b = t.get(&format!("{c}/branches/feature")).await;
    assert_eq!(b.body["protected"], false);
    assert_eq!(t.get(&format!("{c}/branches/nope")).await.status, 404);
    let tags = t.all(&format!("{c}/tags")).await;
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0]["name"], "v1.0.0");
    // An annotated tag lists the commit it points to.
    let tagged = t.git("code", &["rev-parse", "v1.0.0^{commit}"]);
    assert_eq!(tags[0]["commit"]["sha"], tagged.as_str());
    t.assert_schema_conformance();
}

#[tokio::test]
async fn labels_milestones_assignees_and_locks() {
    let t = T::start().await;
    let r = "/repos/acme/code";
    let res = t
        .call(
            Method::POST,
            &format!("{r}/labels"),
            OWNER,
            Some(json!({"name": "Needs Triage", "color": "#00FF00"})),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(res.body["color"], "00FF00");
    let dup = t
        .call(
            Method::POST,
            &format!("{r}/labels"),
            OWNER,
            Some(json!({"name": "needs triage"})),
        )
        .await;
    assert_eq!(dup.status, 422);
    assert_eq!(dup.body["errors"][0]["code"], "already_exists");
    let bad = t
        .call(
            Method::POST,
            &format!("{r}/labels"),
            OWNER,
            Some(json!({"name": "x", "color": "nope"})),
        )
        .await;
    assert_eq!(
        bad.body["errors"],
        json!([{"resource": "Label", "code": "invalid", "field": "color"}])
    );

    let ms = t
        .call(
            Method::POST,
            &format!("{r}/milestones"),
            OWNER,
            Some(json!({"title": "v2"})),
        )
        .await;
    assert_eq!(ms.status, 201);
    let ms_number = ms.body["number"].as_u64().unwrap();
    assert_eq!(ms_number, 2);

    // A reader's labels and assignees are dropped; a triager's applied (unknown labels created,
    // people without access dropped).
    let i = t
        .call(
            Method::POST,
            &format!("{r}/issues"),
            DEV,
            Some(json!({"title": "From dev", "labels": ["bug"], "assignees": ["dev"]})),
        )
        .await;
    assert_eq!(i.status, 201);
    assert_eq!(i.body["labels"], json!([]));
    let n = i.body["number"].as_u64().unwrap();
    let i = t
        .call(
            Method::PATCH,
            &format!("{r}/issues/{n}"),
            OWNER,
            Some(json!({"labels": ["bug", "brand-new"], "assignees": ["dev", "nobody-here"], "milestone": ms_number})),
        )
        .await;
    assert_eq!(i.status, 200, "{}", i.body);
    let labels: Vec<&str> = i.body["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(labels, vec!["bug", "brand-new"]);
    assert_eq!(i.body["assignees"].as_array().unwrap().len(), 1);
    assert_eq!(i.body["assignee"]["login"], "dev");
    assert_eq!(i.body["milestone"]["open_issues"], 1);
    let i = t
        .call(
            Method::POST,
            &format!("{r}/issues/{n}/labels"),
            OWNER,
            Some(json!(["Needs Triage"])),
        )
        .await;
    assert_eq!(i.body.as_array().unwrap().len(), 3);
    let i = t
        .call(
            Method::DELETE,
            &format!("{r}/issues/{n}/labels/BUG"),
            OWNER,
            None,
        )
        .await;
    assert_eq!(i.status, 200);
    assert_eq!(i.body.as_array().unwrap().len(), 2);
    // Renaming a label carries over to its issues.
    let res = t
        .call(
            Method::PATCH,
            &format!("{r}/labels/brand-new"),
            OWNER,
            Some(json!({"new_name": "renamed"})),
        )
        .await;
    assert_eq!(res.status, 200);
    let issue = t.get(&format!("{r}/issues/{n}")).await.body;
    assert!(
        issue["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "renamed")
    );
    let filtered = t
        .all(&format!("{r}/issues?labels=renamed,needs%20triage"))
        .await;
    assert_eq!(filtered.len(), 1);
    let by_milestone = t
        .all(&format!("{r}/issues?state=all&milestone={ms_number}"))
        .await;
    assert_eq!(by_milestone.len(), 1);
    let unassigned = t.all(&format!("{r}/issues?state=all&assignee=none")).await;
    assert!(unassigned.iter().all(|i| i["number"].as_u64() != Some(n)));

    // The author closes their own issue; the milestone counts it closed.
    let closed = t
        .call(
            Method::PATCH,
            &format!("{r}/issues/{n}"),
            DEV,
            Some(json!({"state": "closed", "state_reason": "not_planned"})),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert_eq!(closed.body["state_reason"], "not_planned");
    assert_eq!(closed.body["closed_by"]["login"], "dev");
    let m = t.get(&format!("{r}/milestones/{ms_number}")).await.body;
    assert_eq!(
        (m["open_issues"].as_u64(), m["closed_issues"].as_u64()),
        (Some(0), Some(1))
    );
    // Someone else's issue is not a reader's to close.
    let other = t
        .call(
            Method::POST,
            &format!("{r}/issues"),
            OWNER,
            Some(json!({"title": "Owner's"})),
        )
        .await;
    let o = other.body["number"].as_u64().unwrap();
    let r2 = t
        .call(
            Method::PATCH,
            &format!("{r}/issues/{o}"),
            DEV,
            Some(json!({"state": "closed"})),
        )
        .await;
    assert_eq!(r2.status, 403);

    // Locking: only writers comment on a locked issue.
    let l = t
        .call(
            Method::PUT,
            &format!("{r}/issues/{o}/lock"),
            OWNER,
            Some(json!({"lock_reason": "spam"})),
        )
        .await;
    assert_eq!(l.status, 204);
    let c = t
        .call(
            Method::POST,
            &format!("{r}/issues/{o}/comments"),
            DEV,
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(c.status, 403);
    let c = t
        .call(
            Method::POST,
            &format!("{r}/issues/{o}/comments"),
            OWNER,
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(c.status, 201);
    let issue = t.get(&format!("{r}/issues/{o}")).await.body;
    assert_eq!(
        (
            issue["locked"].as_bool(),
            issue["active_lock_reason"].as_str()
        ),
        (Some(true), Some("spam"))
    );
    let l = t
        .call(Method::DELETE, &format!("{r}/issues/{o}/lock"), OWNER, None)
        .await;
    assert_eq!(l.status, 204);
    let events = t.all(&format!("{r}/issues/{o}/events")).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["locked", "unlocked"]);
    let repo_events = t.all(&format!("{r}/issues/events")).await;
    assert!(repo_events.iter().all(|e| e["issue"]["number"].is_u64()));
    let timeline = t.all(&format!("{r}/issues/{n}/timeline")).await;
    assert!(timeline.iter().any(|e| e["event"] == "labeled"));
    assert!(timeline.iter().any(|e| e["event"] == "closed"));
    let ms_list = t.all(&format!("{r}/milestones?state=all")).await;
    assert_eq!(ms_list.len(), 2);
    let del = t
        .call(
            Method::DELETE,
            &format!("{r}/milestones/{ms_number}"),
            OWNER,
            None,
        )
        .await;
    assert_eq!(del.status, 204);
    assert_eq!(
        t.get(&format!("{r}/issues/{n}")).await.body["milestone"],
        Value::Null
    );
    t.assert_schema_conformance();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_send_githubs_webhooks() {
    use std::sync::{Arc, Mutex};
    // A receiver that keeps (X-GitHub-Event, payload) of every delivery.
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let event = headers["x-github-event"].to_str().unwrap().to_string();
                    let payload: Value = serde_json::from_slice(&body).unwrap();
                    sink.lock().unwrap().push((event, payload));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let seed: Seed = toml::from_str(&format!(
        r#"
[[users]]
login = "owner"
tokens = ["{OWNER}"]
[[users]]
login = "dev"
tokens = ["{DEV}"]
[[orgs]]
login = "acme"
[orgs.members]
dev = "member"
[[orgs.repos]]
name = "hooked"
[[orgs.repos.commits]]
message = "first"
files = {{ "a.txt" = "a\n" }}
[[orgs.repos.commits]]
message = "topic"
branch = "topic"
files = {{ "b.txt" = "b\n" }}
[[orgs.repos.hooks]]
url = "http://127.0.0.1:{port}/hook"
events = ["issues", "issue_comment", "pull_request", "pull_request_review", "pull_request_review_comment"]
"#
    ))
    .unwrap();
    let sim = ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let ca = std::fs::read(&sim.ready().ca_cert).unwrap();
    let t = T {
        http: reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap(),
        sim,
    };
    let r = "/repos/acme/hooked";
    let i = t
        .call(
            Method::POST,
            &format!("{r}/issues"),
            OWNER,
            Some(json!({"title": "Hooked", "labels": ["bug"]})),
        )
        .await;
    assert_eq!(i.status, 201);
    let c = t
        .call(
            Method::POST,
            &format!("{r}/issues/1/comments"),
            DEV,
            Some(json!({"body": "me too"})),
        )
        .await;
    assert_eq!(c.status, 201);
    let closed = t
        .call(
            Method::PATCH,
            &format!("{r}/issues/1"),
            OWNER,
            Some(json!({"state": "closed", "body": "new body"})),
        )
        .await;
    assert_eq!(closed.status, 200);
    let p = t
        .call(
            Method::POST,
            &format!("{r}/pulls"),
            DEV,
            Some(json!({"title": "Topic", "head": "topic", "base": "main"})),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    let rv = t
        .call(
            Method::POST,
            &format!("{r}/pulls/2/reviews"),
            OWNER,
            Some(json!({"event": "APPROVE"})),
        )
        .await;
    assert_eq!(rv.status, 200);
    let m = t
        .call(Method::PUT, &format!("{r}/pulls/2/merge"), OWNER, None)
        .await;
    assert_eq!(m.status, 200, "{}", m.body);

    let want = [
        ("issues", "opened"),
        ("issues", "labeled"),
        ("issue_comment", "created"),
        ("issues", "edited"),
        ("issues", "closed"),
        ("pull_request", "opened"),
        ("pull_request_review", "submitted"),
        ("pull_request", "closed"),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = got.lock().unwrap().len();
        if n >= want.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = got.lock().unwrap().clone();
    let mut kinds: Vec<(String, String)> = got
        .iter()
        .map(|(e, p)| (e.clone(), p["action"].as_str().unwrap().to_string()))
        .collect();
    kinds.sort();
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(e, a)| (e.to_string(), a.to_string()))
        .collect();
    want.sort();
    assert_eq!(kinds, want);
    for (event, p) in &got {
        assert_eq!(p["repository"]["full_name"], "acme/hooked", "{event}");
        assert!(p["sender"]["login"].is_string(), "{event}");
    }
    let find = |e: &str, a: &str| {
        got.iter()
            .find(|(x, p)| x == e && p["action"] == a)
            .map(|(_, p)| p.clone())
            .unwrap()
    };
    assert_eq!(find("issues", "labeled")["label"]["name"], "bug");
    assert_eq!(
        find("issues", "edited")["changes"]["body"]["from"],
        Value::Null
    );
    assert_eq!(
        find("issue_comment", "created")["comment"]["body"],
        "me too"
    );
    assert_eq!(find("pull_request", "opened")["pull_request"]["commits"], 1);
    assert_eq!(
        find("pull_request_review", "submitted")["review"]["state"],
        "APPROVED"
    );
    let merged = find("pull_request", "closed");
    assert_eq!(merged["pull_request"]["merged"], true);
    assert_eq!(merged["number"], 2);
}
