//! forge-sim held to GitHub: every exchange against GitHub's OpenAPI description, GitHub's own
//! recorded responses replayed against the simulator's routes, and octocrab reading everything.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use reqwest::Method;
use serde_json::{Value, json};

/// Calls that answered other than expected, kept so one run reports every one of them.
struct Run {
    api: Api,
    problems: Vec<String>,
}

impl Run {
    async fn expect(
        &mut self,
        want: u16,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Resp {
        let r = self
            .api
            .call(method.clone(), path, Some(token), body.as_ref())
            .await;
        if r.status != want {
            self.problems.push(format!(
                "{method} {path}: expected {want}, got {} {}",
                r.status,
                short(&r.body)
            ));
        }
        r
    }

    async fn get(&mut self, path: &str, token: &str) -> Resp {
        self.expect(200, Method::GET, path, token, None).await
    }

    /// Every page of a list, following `Link: rel="next"`.
    async fn all(&mut self, path: &str, token: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(p) = next.take() {
            let r = self.get(&p, token).await;
            match r.body.as_array() {
                Some(a) => out.extend(a.iter().cloned()),
                None => break,
            }
            next = next_link(r.header("link"));
            pages += 1;
            assert!(pages < 100, "{path}: runaway pagination");
        }
        out
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.problems.push(what.into());
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn num(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

/// Makes commits in a scratch clone and pushes them over HTTPS with the real git CLI: `main`
/// with two commits and an annotated tag, `same` (equal to main), `topic` (one commit ahead).
async fn push_history(sim: &ForgeSim, repo: &str) -> Result<(), String> {
    let url = format!("{}/acme/{repo}.git", sim.ready().git_url);
    let ca = sim.ready().ca_cert.clone();
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let w = work.path();
        let g = |args: &[&str]| git(&ca, w, OWNER, args);
        let write =
            |name: &str, text: &str| std::fs::write(w.join(name), text).map_err(|e| e.to_string());
        g(&["init", "-q", "-b", "main"])?;
        write("README.md", "# conformance\n")?;
        g(&["add", "-A"])?;
        g(&["commit", "-q", "-m", "first"])?;
        write("a.txt", "one\ntwo\n")?;
        g(&["add", "-A"])?;
        g(&["commit", "-q", "-m", "second"])?;
        g(&["tag", "-a", "v0.1.0", "-m", "v0.1.0"])?;
        g(&["branch", "same"])?;
        g(&["checkout", "-q", "-b", "topic"])?;
        write("topic.txt", "topic line 1\ntopic line 2\n")?;
        g(&["add", "-A"])?;
        g(&["commit", "-q", "-m", "topic work"])?;
        g(&["push", "-q", &url, "main", "topic", "same", "v0.1.0"])?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_and_request_matches_the_schema() {
    let mut seed = acme_seed();
    seed.options.record_exchanges = true;
    let sim = start(&seed).await;
    let mut run = Run {
        api: Api::new(&sim),
        problems: Vec::new(),
    };
    let r = "/repos/acme/conformance";
    let post = Method::POST;
    let patch = Method::PATCH;
    let put = Method::PUT;
    let delete = Method::DELETE;

    // --- Populate, as one populates GitHub: REST for the metadata, git for the history. ---
    let repo = run
        .expect(
            201,
            post.clone(),
            "/orgs/acme/repos",
            OWNER,
            Some(json!({"name": "conformance", "description": "made by the test", "private": false, "has_wiki": true})),
        )
        .await;
    run.check(
        repo.body["full_name"] == "acme/conformance",
        "created repository has full_name acme/conformance",
    );
    if let Err(e) = push_history(&sim, "conformance").await {
        run.problems
            .push(format!("git push over HTTPS (git_http.rs): {e}"));
    }
    run.get(r, OWNER).await;
    run.expect(
        200,
        patch.clone(),
        r,
        OWNER,
        Some(json!({"description": "changed", "homepage": "https://acme.example/c"})),
    )
    .await;

    // Labels and a milestone.
    for (name, color) in [("bug", "d73a4a"), ("triage", "00ff00"), ("tmp", "cccccc")] {
        run.expect(
            201,
            post.clone(),
            &format!("{r}/labels"),
            OWNER,
            Some(json!({"name": name, "color": color, "description": format!("{name} label")})),
        )
        .await;
    }
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/labels/triage"),
        OWNER,
        Some(json!({"new_name": "needs-triage", "color": "00ff00"})),
    )
    .await;
    run.expect(204, delete.clone(), &format!("{r}/labels/tmp"), OWNER, None)
        .await;
    let ms = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/milestones"),
            OWNER,
            Some(json!({"title": "v1", "description": "first", "due_on": "2030-01-01T00:00:00Z"})),
        )
        .await;
    let ms_number = num(&ms.body, "number").max(1);
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/milestones/{ms_number}"),
        OWNER,
        Some(json!({"description": "the first"})),
    )
    .await;

    // Issues, comments, labels on issues, locking.
    let i1 = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/issues"),
            OWNER,
            Some(json!({"title": "First issue", "body": "body", "labels": ["bug"], "milestone": ms_number, "assignees": ["dev"]})),
        )
        .await;
    let i1n = num(&i1.body, "number").max(1);
    let i2 = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/issues"),
            DEV,
            Some(json!({"title": "Second issue"})),
        )
        .await;
    let i2n = num(&i2.body, "number").max(2);
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/issues/{i2n}"),
        OWNER,
        Some(json!({"state": "closed", "state_reason": "completed"})),
    )
    .await;
    run.expect(
        200,
        post.clone(),
        &format!("{r}/issues/{i1n}/labels"),
        OWNER,
        Some(json!({"labels": ["needs-triage"]})),
    )
    .await;
    run.get(&format!("{r}/issues/{i1n}/labels"), OWNER).await;
    run.expect(
        200,
        delete.clone(),
        &format!("{r}/issues/{i1n}/labels/needs-triage"),
        OWNER,
        None,
    )
    .await;
    run.expect(
        204,
        put.clone(),
        &format!("{r}/issues/{i2n}/lock"),
        OWNER,
        Some(json!({"lock_reason": "resolved"})),
    )
    .await;
    run.expect(
        204,
        delete.clone(),
        &format!("{r}/issues/{i2n}/lock"),
        OWNER,
        None,
    )
    .await;
    let before_comments = chrono::Utc::now() - chrono::Duration::seconds(2);
    let mut comment_ids = Vec::new();
    for (tok, body) in [
        (OWNER, "first comment"),
        (DEV, "second comment"),
        (REV, "third"),
    ] {
        let c = run
            .expect(
                201,
                post.clone(),
                &format!("{r}/issues/{i1n}/comments"),
                tok,
                Some(json!({"body": body})),
            )
            .await;
        comment_ids.push(num(&c.body, "id"));
    }
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/issues/comments/{}", comment_ids[0]),
        OWNER,
        Some(json!({"body": "first comment, edited"})),
    )
    .await;
    run.expect(
        204,
        delete.clone(),
        &format!("{r}/issues/comments/{}", comment_ids[2]),
        REV,
        None,
    )
    .await;

    // A pull request, reviews, review comments, a merge.
    let pr = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/pulls"),
            OWNER,
            Some(
                json!({"title": "Topic", "head": "topic", "base": "main", "body": "please merge"}),
            ),
        )
        .await;
    let prn = num(&pr.body, "number").max(3);
    let head_sha = pr.body["head"]["sha"].as_str().unwrap_or("").to_string();
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/pulls/{prn}"),
        OWNER,
        Some(json!({"body": "please merge, edited"})),
    )
    .await;
    let rc = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/pulls/{prn}/comments"),
            REV,
            Some(json!({"body": "why two lines?", "commit_id": head_sha, "path": "topic.txt", "line": 2, "side": "RIGHT"})),
        )
        .await;
    let rc_id = num(&rc.body, "id");
    run.expect(
        201,
        post.clone(),
        &format!("{r}/pulls/{prn}/comments/{rc_id}/replies"),
        OWNER,
        Some(json!({"body": "because"})),
    )
    .await;
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/pulls/comments/{rc_id}"),
        REV,
        Some(json!({"body": "why two lines? (edited)"})),
    )
    .await;
    run.expect(
        200,
        post.clone(),
        &format!("{r}/pulls/{prn}/reviews"),
        REV,
        Some(json!({"event": "COMMENT", "body": "one remark", "comments": [{"path": "topic.txt", "line": 1, "body": "first line"}]})),
    )
    .await;
    let review = run
        .expect(
            200,
            post.clone(),
            &format!("{r}/pulls/{prn}/reviews"),
            REV,
            Some(json!({"event": "APPROVE", "body": "ship it"})),
        )
        .await;
    run.check(
        review.body["state"] == "APPROVED",
        format!("an APPROVE review is APPROVED: {}", short(&review.body)),
    );
    let review_id = num(&review.body, "id");
    // Refused: approving one's own pull request; a pull request without commits.
    run.expect(
        422,
        post.clone(),
        &format!("{r}/pulls/{prn}/reviews"),
        OWNER,
        Some(json!({"event": "APPROVE"})),
    )
    .await;
    run.expect(
        422,
        post.clone(),
        &format!("{r}/pulls"),
        OWNER,
        Some(json!({"title": "Nothing", "head": "same", "base": "main"})),
    )
    .await;
    run.expect(
        404,
        Method::GET,
        &format!("{r}/pulls/{prn}/merge"),
        OWNER,
        None,
    )
    .await;
    run.expect(
        200,
        put.clone(),
        &format!("{r}/pulls/{prn}/merge"),
        OWNER,
        Some(json!({"merge_method": "merge", "commit_title": "Merge topic"})),
    )
    .await;
    run.expect(
        204,
        Method::GET,
        &format!("{r}/pulls/{prn}/merge"),
        OWNER,
        None,
    )
    .await;

    // A release with an uploaded asset.
    let rel = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/releases"),
            OWNER,
            Some(json!({"tag_name": "v0.1.0", "name": "First", "body": "notes"})),
        )
        .await;
    let rel_id = num(&rel.body, "id");
    let asset_bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let upload = format!(
        "{}/repos/acme/conformance/releases/{rel_id}/assets?name=conformance.bin&label=Binary",
        sim.ready().uploads_url
    );
    let up = run
        .api
        .raw(
            run.api
                .http
                .post(&upload)
                .bearer_auth(OWNER)
                .header("content-type", "application/octet-stream")
                .body(asset_bytes.clone()),
        )
        .await;
    run.check(
        up.status == 201,
        format!(
            "upload asset: expected 201, got {} {}",
            up.status,
            short(&up.body)
        ),
    );
    let asset_id = num(&up.body, "id");
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/releases/{rel_id}"),
        OWNER,
        Some(json!({"body": "notes, edited"})),
    )
    .await;
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/releases/assets/{asset_id}"),
        OWNER,
        Some(json!({"label": "The binary"})),
    )
    .await;
    // Downloading the asset gives its bytes back (directly or through a redirect).
    let dl = run
        .api
        .raw(
            run.api
                .http
                .get(format!("{}{r}/releases/assets/{asset_id}", run.api.base))
                .bearer_auth(OWNER)
                .header("accept", "application/octet-stream"),
        )
        .await;
    let dl = if dl.status == 302 {
        let to = dl.header("location").to_string();
        run.api.raw(run.api.http.get(&to).bearer_auth(OWNER)).await
    } else {
        dl
    };
    run.check(
        dl.status == 200 && dl.bytes == asset_bytes,
        format!(
            "asset download: status {}, {} bytes",
            dl.status,
            dl.bytes.len()
        ),
    );

    // Settings: protection, a hook, a deploy key, a collaborator, a team, topics.
    run.expect(
        200,
        put.clone(),
        &format!("{r}/branches/main/protection"),
        OWNER,
        Some(json!({
            "required_status_checks": {"strict": true, "contexts": ["ci"]},
            "enforce_admins": true,
            "required_pull_request_reviews": {"required_approving_review_count": 1},
            "restrictions": null,
        })),
    )
    .await;
    let hook = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/hooks"),
            OWNER,
            Some(json!({"name": "web", "active": true, "events": ["push"], "config": {"url": "https://127.0.0.1:9/hook", "content_type": "json", "secret": "s3cret"}})),
        )
        .await;
    let hook_id = num(&hook.body, "id");
    run.check(
        hook.body["config"]["secret"] != "s3cret",
        "a hook's secret is never returned",
    );
    run.expect(
        200,
        patch.clone(),
        &format!("{r}/hooks/{hook_id}"),
        OWNER,
        Some(json!({"events": ["push", "issues"]})),
    )
    .await;
    let key = run
        .expect(
            201,
            post.clone(),
            &format!("{r}/keys"),
            OWNER,
            Some(json!({"title": "deploy", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBe5cHIe7Gk2oU0p3Fw2x3yT9m8n1cKfJqGZpQm1A7Xb deploy@acme", "read_only": true})),
        )
        .await;
    let key_id = num(&key.body, "id");
    let collab = run
        .api
        .call(
            put.clone(),
            &format!("{r}/collaborators/outsider"),
            Some(OWNER),
            Some(&json!({"permission": "push"})),
        )
        .await;
    run.check(
        collab.status == 201 || collab.status == 204,
        format!(
            "add collaborator: expected 201 or 204, got {}",
            collab.status
        ),
    );
    run.expect(
        204,
        put.clone(),
        "/orgs/acme/teams/core/repos/acme/conformance",
        OWNER,
        Some(json!({"permission": "push"})),
    )
    .await;
    run.expect(
        200,
        put.clone(),
        &format!("{r}/topics"),
        OWNER,
        Some(json!({"names": ["conformance", "test"]})),
    )
    .await;

    // --- Read everything back. ---
    let oc = octocrab(&sim, OWNER);
    let issues = run
        .all(&format!("{r}/issues?state=all&per_page=1"), OWNER)
        .await;
    run.check(
        issues.len() == 3,
        format!("{r}: 3 issues and pull requests, got {}", issues.len()),
    );
    if let Err(e) = oc
        .issues("acme", "conformance")
        .list()
        .state(octocrab::params::State::All)
        .send()
        .await
    {
        run.problems.push(format!("octocrab issues list: {e:?}"));
    }
    run.get(&format!("{r}/issues/{i1n}"), OWNER).await;
    let comments = run
        .all(&format!("{r}/issues/{i1n}/comments?per_page=1"), OWNER)
        .await;
    run.check(
        comments.len() == 2,
        format!("issue {i1n}: 2 comments left, got {}", comments.len()),
    );
    let since = before_comments.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent = run
        .all(&format!("{r}/issues/comments?since={since}"), OWNER)
        .await;
    run.check(
        recent.len() == 2,
        format!("comments since {since}: 2, got {}", recent.len()),
    );
    run.get(&format!("{r}/issues/comments/{}", comment_ids[0]), OWNER)
        .await;
    run.all(&format!("{r}/issues/{i1n}/events"), OWNER).await;
    run.all(&format!("{r}/issues/events"), OWNER).await;
    run.all(&format!("{r}/issues/{i1n}/timeline"), OWNER).await;
    run.all(&format!("{r}/labels"), OWNER).await;
    run.get(&format!("{r}/labels/bug"), OWNER).await;
    run.all(&format!("{r}/milestones?state=all"), OWNER).await;
    run.get(&format!("{r}/milestones/{ms_number}"), OWNER).await;
    let pulls = run.all(&format!("{r}/pulls?state=all"), OWNER).await;
    run.check(
        pulls.len() == 1,
        format!("1 pull request, got {}", pulls.len()),
    );
    if let Err(e) = oc
        .pulls("acme", "conformance")
        .list()
        .state(octocrab::params::State::All)
        .send()
        .await
    {
        run.problems.push(format!("octocrab pulls list: {e:?}"));
    }
    run.get(&format!("{r}/pulls/{prn}"), OWNER).await;
    run.all(&format!("{r}/pulls/{prn}/commits"), OWNER).await;
    run.all(&format!("{r}/pulls/{prn}/files"), OWNER).await;
    let reviews = run.all(&format!("{r}/pulls/{prn}/reviews"), OWNER).await;
    // Each review comment made outside a review is a COMMENTED review of its own, on GitHub.
    run.check(
        reviews.len() == 4,
        format!(
            "4 reviews (2 submitted, 2 for single comments), got {}",
            reviews.len()
        ),
    );
    run.get(&format!("{r}/pulls/{prn}/reviews/{review_id}"), OWNER)
        .await;
    run.all(
        &format!("{r}/pulls/{prn}/reviews/{review_id}/comments"),
        OWNER,
    )
    .await;
    let rcs = run.all(&format!("{r}/pulls/{prn}/comments"), OWNER).await;
    run.check(
        rcs.len() == 3,
        format!("3 review comments, got {}", rcs.len()),
    );
    run.all(&format!("{r}/pulls/comments"), OWNER).await;
    run.get(&format!("{r}/pulls/comments/{rc_id}"), OWNER).await;
    let commits = run.all(&format!("{r}/commits?per_page=1"), OWNER).await;
    run.check(
        commits.len() == 4,
        format!("main has 4 commits after the merge, got {}", commits.len()),
    );
    run.all(&format!("{r}/commits?sha=topic"), OWNER).await;
    run.get(&format!("{r}/commits/{head_sha}"), OWNER).await;
    let branches = run.all(&format!("{r}/branches"), OWNER).await;
    run.check(
        branches.len() == 3,
        format!("3 branches, got {}", branches.len()),
    );
    run.get(&format!("{r}/branches/main"), OWNER).await;
    run.all(&format!("{r}/tags"), OWNER).await;
    run.all(&format!("{r}/releases"), OWNER).await;
    run.get(&format!("{r}/releases/{rel_id}"), OWNER).await;
    run.get(&format!("{r}/releases/latest"), OWNER).await;
    run.get(&format!("{r}/releases/tags/v0.1.0"), OWNER).await;
    run.all(&format!("{r}/releases/{rel_id}/assets"), OWNER)
        .await;
    run.get(&format!("{r}/releases/assets/{asset_id}"), OWNER)
        .await;
    run.get(&format!("{r}/branches/main/protection"), OWNER)
        .await;
    run.all(&format!("{r}/hooks"), OWNER).await;
    run.get(&format!("{r}/hooks/{hook_id}"), OWNER).await;
    run.all(&format!("{r}/keys"), OWNER).await;
    run.get(&format!("{r}/keys/{key_id}"), OWNER).await;
    run.expect(
        204,
        post.clone(),
        &format!("{r}/hooks/{hook_id}/pings"),
        OWNER,
        None,
    )
    .await;
    run.all("/orgs/acme/hooks", OWNER).await;
    // The invitation the collaborator was sent, accepted by the invitee.
    let invitations = run.all(&format!("{r}/invitations"), OWNER).await;
    run.all("/user/repository_invitations", OUTSIDER).await;
    if let Some(id) = invitations.first().and_then(|i| i["id"].as_u64()) {
        run.expect(
            204,
            patch.clone(),
            &format!("/user/repository_invitations/{id}"),
            OUTSIDER,
            None,
        )
        .await;
    }
    run.all(&format!("{r}/collaborators"), OWNER).await;
    run.get(&format!("{r}/collaborators/outsider/permission"), OWNER)
        .await;
    run.all(&format!("{r}/teams"), OWNER).await;
    access_by_affiliation(&mut run).await;
    run.all("/orgs/acme/teams", OWNER).await;
    run.get("/orgs/acme/teams/core", OWNER).await;
    run.all("/orgs/acme/teams/core/members", OWNER).await;
    run.get(&format!("{r}/topics"), OWNER).await;
    // The seeded repositories: workflows, rulesets, pagination and `since` on many issues.
    let w = "/repos/acme/widgets";
    let wf = run.get(&format!("{w}/actions/workflows"), OWNER).await;
    run.check(
        num(&wf.body, "total_count") == 2,
        format!("widgets: 2 workflows, got {}", short(&wf.body)),
    );
    if let Some(id) = wf.body["workflows"][0]["id"].as_u64() {
        run.get(&format!("{w}/actions/workflows/{id}"), OWNER).await;
    }
    let rulesets = run.all(&format!("{w}/rulesets"), OWNER).await;
    if let Some(id) = rulesets.first().and_then(|r| r["id"].as_u64()) {
        run.get(&format!("{w}/rulesets/{id}"), OWNER).await;
    }
    let tracker = run
        .all("/repos/acme/tracker/issues?state=all&per_page=100", OWNER)
        .await;
    run.check(
        tracker.len() == 111,
        format!("tracker: 111 issues, got {}", tracker.len()),
    );
    let long = run
        .all("/repos/acme/tracker/issues/1/comments?per_page=100", OWNER)
        .await;
    run.check(
        long.len() == 131,
        format!("tracker#1: 131 comments, got {}", long.len()),
    );
    let since_future = run
        .all(
            "/repos/acme/tracker/issues?state=all&since=2999-01-01T00:00:00Z",
            OWNER,
        )
        .await;
    run.check(
        since_future.is_empty(),
        format!("no issue updated after 2999, got {}", since_future.len()),
    );
    // Organisation, users, repositories with pagination, the root, the rate limit.
    run.get("/", OWNER).await;
    run.get("/rate_limit", OWNER).await;
    run.get("/user", OWNER).await;
    run.get("/users/dev", OWNER).await;
    run.get("/orgs/acme", OWNER).await;
    let repos = run.all("/orgs/acme/repos?per_page=2", OWNER).await;
    run.check(
        repos.len() == 7,
        format!("acme has 7 repositories, got {}", repos.len()),
    );
    // A conditional request: the second answer is 304 and has no body.
    let first = run.get(w, OWNER).await;
    let etag = first.header("etag").to_string();
    let again = run
        .api
        .raw(
            run.api
                .http
                .get(format!("{}{w}", run.api.base))
                .bearer_auth(OWNER)
                .header("if-none-match", &etag),
        )
        .await;
    run.check(
        again.status == 304 && again.bytes.is_empty(),
        format!("If-None-Match {etag}: expected 304, got {}", again.status),
    );
    // The GitHub App: JWT, installation, token, installation repositories.
    let app_id = sim.ready().app_id.unwrap();
    let inst_id = sim.ready().installation_id.unwrap();
    let key_pem = std::fs::read(sim.ready().app_private_key.as_ref().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iat": now - 60, "exp": now + 540, "iss": app_id.to_string()}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key_pem).unwrap(),
    )
    .unwrap();
    run.get("/app", &jwt).await;
    run.get("/app/installations", &jwt).await;
    run.get(&format!("/app/installations/{inst_id}"), &jwt)
        .await;
    run.get("/orgs/acme/installation", &jwt).await;
    let tok = run
        .expect(
            201,
            post.clone(),
            &format!("/app/installations/{inst_id}/access_tokens"),
            &jwt,
            Some(json!({"repositories": ["widgets"], "permissions": {"contents": "read", "metadata": "read"}})),
        )
        .await;
    let inst_token = tok.body["token"].as_str().unwrap_or("").to_string();
    run.get("/installation/repositories", &inst_token).await;

    // --- Refusals. ---
    run.expect(
        422,
        post.clone(),
        &format!("{r}/issues"),
        OWNER,
        Some(json!({"body": "an issue needs a title"})),
    )
    .await;
    run.expect(
        422,
        post.clone(),
        "/orgs/acme/repos",
        OWNER,
        Some(json!({"name": "conformance"})),
    )
    .await;
    run.expect(404, Method::GET, "/repos/acme/secret-plans", OUTSIDER, None)
        .await;
    run.expect(
        404,
        Method::GET,
        "/repos/acme/secret-plans/issues",
        OUTSIDER,
        None,
    )
    .await;
    run.expect(
        403,
        patch.clone(),
        w,
        DEV,
        Some(json!({"description": "not mine to change"})),
    )
    .await;
    run.expect(
        401,
        Method::GET,
        w,
        "ghp_notAToken00000000000000000000000000",
        None,
    )
    .await;

    // --- Every recorded exchange against GitHub's description. ---
    let exchanges = sim.sim().stats.exchanges.lock().clone();
    let mut failures: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut routes = BTreeSet::new();
    for x in &exchanges {
        routes.insert(format!("{} {}", x.method, x.route));
        let mut errs = Vec::new();
        if let Err(e) = forge_sim::openapi::validate_response(
            &x.method,
            &x.route,
            x.status,
            x.response.as_ref(),
        ) {
            errs.extend(e);
        }
        // Request bodies and query strings the simulator accepted (refusals are sent bad ones
        // on purpose).
        if x.status < 400
            && let Err(e) =
                forge_sim::openapi::validate_request(&x.method, &x.route, x.request.as_ref())
        {
            errs.extend(e);
        }
        if x.status < 400
            && let Err(e) = forge_sim::openapi::validate_query(&x.method, &x.route, &x.query)
        {
            errs.extend(e);
        }
        if !errs.is_empty() {
            let list = failures.entry(module_of(&x.route)).or_default();
            for e in errs {
                let line = format!("[{} {} → {}] {e}", x.method, x.path, x.status);
                if !list.contains(&line) {
                    list.push(line);
                }
            }
        }
    }
    eprintln!(
        "{} exchanges over {} routes checked against GitHub's description",
        exchanges.len(),
        routes.len()
    );
    let mut report = String::new();
    if !run.problems.is_empty() {
        report.push_str(&format!(
            "\n{} calls answered other than GitHub would:\n",
            run.problems.len()
        ));
        for p in &run.problems {
            report.push_str(&format!("  {p}\n"));
        }
    }
    for (module, list) in &failures {
        report.push_str(&format!("\n{module}: {} schema failures\n", list.len()));
        for l in list {
            report.push_str(&format!("  {l}\n"));
        }
    }
    assert!(report.is_empty(), "{report}");
}

// ------------------------------------------------------------------------------------------------

/// Fixtures whose routes the simulator does not serve, and why.
const OUT_OF_SCOPE: &[(&str, &str)] = &[
    (
        "create-file.json",
        "the contents API (writing files over REST) is not simulated: repositories are written with git",
    ),
    (
        "get-content.json",
        "the contents API is not simulated: repositories are read with git",
    ),
    ("create-status.json", "commit statuses are not simulated"),
    (
        "get-archive.json",
        "archive downloads (tarball/zipball, codeload) are not simulated: repositories are cloned",
    ),
    (
        "git-refs.json",
        "the Git database API (refs) is not simulated: refs are written with git push",
    ),
    (
        "mark-notifications-as-read.json",
        "notifications are not simulated",
    ),
    ("markdown.json", "markdown rendering is not simulated"),
    ("project-cards.json", "classic projects are not simulated"),
    ("search-issues.json", "search is not simulated"),
];

/// The organisation and repositories the fixtures were recorded against, in their state before
/// each recording.
const FIXTURE_SEED: &str = r##"
[[users]]
login = "octokit-fixture-user-a"
tokens = ["ghp_fixtureUserA0000000000000000000000"]
[[users]]
login = "octokit-fixture-user-b"
tokens = ["ghp_fixtureUserB0000000000000000000000"]

[[orgs]]
login = "octokit-fixture-org"
[orgs.members]
octokit-fixture-user-a = "admin"
[[orgs.teams]]
slug = "a-team"
description = "The A team"
members = ["octokit-fixture-user-a"]

[[orgs.repos]]
name = "hello-world"
topics = ["fixtures", "hello", "hello-world"]
[[orgs.repos.commits]]
message = "initial"
files = { "README.md" = "# hello-world" }

[[orgs.repos]]
name = "add-and-remove-repository-collaborator"
[[orgs.repos.commits]]
message = "initial"
files = { "README.md" = "x" }

[[orgs.repos]]
name = "add-labels-to-issue"
[[orgs.repos.labels]]
name = "Foo"
color = "ededed"
[[orgs.repos.labels]]
name = "bAr"
color = "ededed"
[[orgs.repos.labels]]
name = "baZ"
color = "ededed"

[[orgs.repos]]
name = "branch-protection"
[[orgs.repos.commits]]
message = "initial"
files = { "README.md" = "x" }

[[orgs.repos]]
name = "errors"

[[orgs.repos]]
name = "labels"
labels = [
  { name = "bug", color = "d73a4a", description = "Something isn't working" },
  { name = "documentation", color = "0075ca", description = "Improvements or additions to documentation" },
  { name = "duplicate", color = "cfd3d7", description = "This issue or pull request already exists" },
  { name = "enhancement", color = "a2eeef", description = "New feature or request" },
  { name = "good first issue", color = "7057ff", description = "Good for newcomers" },
  { name = "help wanted", color = "008672", description = "Extra attention is needed" },
  { name = "invalid", color = "e4e669", description = "This doesn't seem right" },
  { name = "question", color = "d876e3", description = "Further information is requested" },
  { name = "wontfix", color = "ffffff", description = "This will not be worked on" },
]

[[orgs.repos]]
name = "lock-issue"
[[orgs.repos.issues]]
title = "Issue to lock"

[[orgs.repos]]
name = "paginate-issues"
[orgs.repos.generate]
issues = 13

[[orgs.repos]]
name = "release-assets"
[[orgs.repos.commits]]
message = "initial"
files = { "README.md" = "x" }
[[orgs.repos.releases]]
tag = "v1.0.0"
name = "v1.0.0"
body = "Initial release"

[[orgs.repos]]
name = "release-assets-conflict"
[[orgs.repos.commits]]
message = "initial"
files = { "README.md" = "x" }
[[orgs.repos.releases]]
tag = "v1.0.0"
name = "v1.0.0"
body = "Initial release"
[[orgs.repos.releases.assets]]
name = "test-upload.txt"
label = "test"
content_type = "text/plain"
content = "Hello, world!\n"

[[orgs.repos]]
name = "rename-repository"
[[orgs.repos.commits]]
message = "initial"
files = { "README.md" = "x" }
"##;

const FIXTURE_TOKENS: &[(&str, &str)] = &[
    (
        "token 0000000000000000000000000000000000000001",
        "ghp_fixtureUserA0000000000000000000000",
    ),
    (
        "token 0000000000000000000000000000000000000002",
        "ghp_fixtureUserB0000000000000000000000",
    ),
];

/// Where `got` lacks a field of `recorded`, or has it with another JSON type. `null` recorded
/// matches anything; objects recurse; arrays compare their first elements.
fn shape_diff(path: &str, recorded: &Value, got: &Value, out: &mut Vec<String>) {
    match (recorded, got) {
        (Value::Null, _) => {}
        (Value::Object(r), Value::Object(g)) => {
            for (k, rv) in r {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    None => out.push(format!("{p}: missing")),
                    Some(gv) => shape_diff(&p, rv, gv, out),
                }
            }
        }
        (Value::Array(r), Value::Array(g)) => match (r.first(), g.first()) {
            (Some(rv), Some(gv)) => shape_diff(&format!("{path}[0]"), rv, gv, out),
            (Some(_), None) => out.push(format!("{path}: recorded non-empty, simulator's empty")),
            _ => {}
        },
        (r, g) => {
            let t = |v: &Value| match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            if t(r) != t(g) {
                out.push(format!("{path}: recorded {}, simulator's {}", t(r), t(g)));
            }
        }
    }
}

/// Learns the simulator's ids for the recording's: an object with `id` and a `url` ending in
/// `/KIND/ID` maps (KIND, recorded id) to the simulator's id.
fn learn_ids(recorded: &Value, got: &Value, ids: &mut BTreeMap<(String, String), String>) {
    match (recorded, got) {
        (Value::Object(r), Value::Object(g)) => {
            if let (Some(rid), Some(gid), Some(url)) = (
                r.get("id").and_then(Value::as_u64),
                g.get("id").and_then(Value::as_u64),
                r.get("url").and_then(Value::as_str),
            ) {
                let segs: Vec<&str> = url.rsplit('/').take(2).collect();
                if segs.len() == 2 && segs[0] == rid.to_string() {
                    ids.insert((segs[1].to_string(), rid.to_string()), gid.to_string());
                }
            }
            for (k, rv) in r {
                if let Some(gv) = g.get(k) {
                    learn_ids(rv, gv, ids);
                }
            }
        }
        (Value::Array(r), Value::Array(g)) => {
            for (rv, gv) in r.iter().zip(g) {
                learn_ids(rv, gv, ids);
            }
        }
        _ => {}
    }
}

/// The recorded path with the simulator's ids in place of the recording's.
fn map_path(path: &str, ids: &BTreeMap<(String, String), String>) -> String {
    let (p, q) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let segs: Vec<&str> = p.split('/').collect();
    let mut out: Vec<String> = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let prev = if i > 0 { segs[i - 1] } else { "" };
        match ids.get(&(prev.to_string(), s.to_string())) {
            Some(id) => out.push(id.clone()),
            None => out.push(s.to_string()),
        }
    }
    let p = out.join("/");
    match q {
        Some(q) => format!("{p}?{q}"),
        None => p,
    }
}

/// Who has access to acme/widgets and how, as GitHub answers it: `affiliation=direct`
/// names the direct grants (the outside collaborator), `outside` those who are not members of
/// acme, and `all` (the default) also everyone who reaches it through a team (`core`: dev, rev)
/// or the organisation (its owner); each team with its permission.
async fn access_by_affiliation(run: &mut Run) {
    let w = "/repos/acme/widgets";
    let mut logins = async |query: &str| -> BTreeSet<String> {
        run.all(&format!("{w}/collaborators{query}"), OWNER)
            .await
            .iter()
            .filter_map(|c| c["login"].as_str().map(str::to_string))
            .collect()
    };
    let direct = logins("?affiliation=direct").await;
    let outside = logins("?affiliation=outside").await;
    let all = logins("?affiliation=all").await;
    let default = logins("").await;
    let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    run.check(
        direct == names(&["outsider"]),
        format!("widgets collaborators, affiliation=direct: {direct:?}"),
    );
    run.check(
        outside == names(&["outsider"]),
        format!("widgets collaborators, affiliation=outside: {outside:?}"),
    );
    run.check(
        all == names(&["dev", "octo-admin", "outsider", "rev"]) && default == all,
        format!("widgets collaborators, affiliation=all: {all:?}, default: {default:?}"),
    );
    let teams: Vec<(String, String)> = run
        .all(&format!("{w}/teams"), OWNER)
        .await
        .iter()
        .map(|t| (t["slug"].to_string(), t["permission"].to_string()))
        .collect();
    run.check(
        teams == [("\"core\"".to_string(), "\"push\"".to_string())],
        format!("widgets teams: {teams:?}"),
    );
    let members: BTreeSet<String> = run
        .all("/orgs/acme/teams/core/members", OWNER)
        .await
        .iter()
        .filter_map(|m| m["login"].as_str().map(str::to_string))
        .collect();
    run.check(
        members == names(&["dev", "rev"]),
        format!("core members: {members:?}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_github_responses_replay() {
    let mut seed: Seed = toml::from_str(FIXTURE_SEED).unwrap();
    seed.options.record_exchanges = true;
    let sim = start(&seed).await;
    let api = Api::new(&sim);
    let dir = crate_dir().join("github/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let out_of_scope: BTreeMap<&str, &str> = OUT_OF_SCOPE.iter().copied().collect();
    for listed in out_of_scope.keys() {
        assert!(
            names.iter().any(|n| n == listed),
            "{listed} is listed as out of scope but is not in github/fixtures"
        );
    }

    let mut report = Vec::new();
    let mut failed = Vec::new();
    for name in &names {
        if let Some(why) = out_of_scope.get(name.as_str()) {
            report.push(format!("{name}: not replayed: {why}"));
            continue;
        }
        let entries: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        // `/repositories/ID` of the recording is the fixture's repository here.
        let mut ids: BTreeMap<(String, String), String> = BTreeMap::new();
        for e in &entries {
            let path = e["path"].as_str().unwrap_or("");
            if let Some(rest) = path.strip_prefix("/repos/octokit-fixture-org/") {
                let repo = rest.split(['/', '?']).next().unwrap_or("");
                let r = api
                    .get(
                        &format!("/repos/octokit-fixture-org/{repo}"),
                        "ghp_fixtureUserA0000000000000000000000",
                    )
                    .await;
                if let Some(id) = r.body["id"].as_u64() {
                    ids.insert(("repositories".into(), "1000".into()), id.to_string());
                }
                break;
            }
        }
        let mut served = 0;
        let mut problems = Vec::new();
        let mut skipped = Vec::new();
        for (n, e) in entries.iter().enumerate() {
            let method: Method = e["method"]
                .as_str()
                .unwrap()
                .to_uppercase()
                .parse()
                .unwrap();
            let rec_path = e["path"].as_str().unwrap();
            let path = map_path(rec_path, &ids);
            let uploads = e["scope"]
                .as_str()
                .unwrap_or("")
                .contains("uploads.github.com");
            let url = if uploads {
                format!("{}{path}", sim.ready().uploads_url)
            } else {
                format!("{}{path}", sim.ready().api_url)
            };
            let auth = e["reqheaders"]["authorization"].as_str().unwrap_or("");
            let token = FIXTURE_TOKENS
                .iter()
                .find(|(a, _)| *a == auth)
                .map(|(_, t)| *t)
                .unwrap_or("ghp_fixtureUserA0000000000000000000000");
            let mut rb = api
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header("accept", "application/vnd.github.v3+json");
            match &e["body"] {
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => {
                    let ct = e["reqheaders"]["content-type"]
                        .as_str()
                        .unwrap_or("application/octet-stream");
                    rb = rb.header("content-type", ct).body(s.clone());
                }
                Value::Null => {}
                b => rb = rb.json(b),
            }
            let before = sim.sim().stats.exchanges.lock().len();
            let got = api.raw(rb).await;
            let route = sim
                .sim()
                .stats
                .exchanges
                .lock()
                .get(before)
                .map(|x| x.route.clone())
                .unwrap_or_default();
            // Answered before routing (301/307 for renamed repositories) or by a route.
            let routed = !route.starts_with("(no route)");
            if !routed {
                skipped.push(format!("#{n} {method} {rec_path}"));
                continue;
            }
            served += 1;
            let want = e["status"].as_u64().unwrap_or(0) as u16;
            if got.status != want {
                problems.push(format!(
                    "#{n} {method} {rec_path}: status {} (recorded {want}) {}",
                    got.status,
                    short(&got.body)
                ));
                continue;
            }
            let recorded = &e["response"];
            if recorded.is_object() || recorded.is_array() {
                let mut diffs = Vec::new();
                shape_diff("", recorded, &got.body, &mut diffs);
                for d in diffs {
                    problems.push(format!("#{n} {method} {rec_path}: {d}"));
                }
                learn_ids(recorded, &got.body, &mut ids);
            }
        }
        let mut line = format!("{name}: {served} of {} requests served", entries.len());
        if !skipped.is_empty() {
            line.push_str(&format!("; not served: {}", skipped.join(", ")));
        }
        if served == 0 {
            problems.push("no request of it is served: list it in OUT_OF_SCOPE or serve it".into());
        }
        if problems.is_empty() {
            line.push_str("; all match");
        } else {
            line.push_str(&format!("; {} mismatches:", problems.len()));
            for p in &problems {
                line.push_str(&format!("\n    {p}"));
            }
            failed.push(name.clone());
        }
        report.push(line);
    }
    let report = report.join("\n");
    eprintln!("{report}");
    assert!(
        failed.is_empty(),
        "fixtures that do not replay: {failed:?}\n{report}"
    );
}

// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octocrab_reads_everything() {
    use octocrab::params::State;
    let seed = acme_seed();
    let sim = start(&seed).await;
    let oc = octocrab(&sim, OWNER);

    // Repositories of the organisation, two per page.
    let page = oc
        .orgs("acme")
        .list_repos()
        .per_page(2)
        .send()
        .await
        .unwrap();
    let repos = oc.all_pages(page).await.unwrap();
    let mut names: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = seed.orgs[0].repos.iter().map(|r| r.name.clone()).collect();
    want.sort();
    assert_eq!(names, want);

    for rs in &seed.orgs[0].repos {
        let name = rs.name.as_str();
        // Issues and pull requests share the issue list.
        let page = oc
            .issues("acme", name)
            .list()
            .state(State::All)
            .per_page(100)
            .send()
            .await
            .unwrap();
        let issues = oc.all_pages(page).await.unwrap();
        let generated = rs.generate.as_ref().map_or(0, |g| g.issues) as usize;
        assert_eq!(
            issues.len(),
            rs.issues.len() + rs.pulls.len() + generated,
            "{name}: issues and pull requests"
        );
        for si in &rs.issues {
            let i = issues
                .iter()
                .find(|i| i.title == si.title && i.pull_request.is_none())
                .unwrap_or_else(|| panic!("{name}: issue {:?}", si.title));
            let page = oc
                .issues("acme", name)
                .list_comments(i.number)
                .per_page(100)
                .send()
                .await
                .unwrap();
            let comments = oc.all_pages(page).await.unwrap();
            assert_eq!(
                comments.len() as u64,
                si.comments.len() as u64 + si.generate_comments,
                "{name}#{}: comments",
                i.number
            );
            for (c, sc) in comments.iter().zip(&si.comments) {
                assert_eq!(c.body.as_deref(), Some(sc.body.as_str()));
            }
            oc.issues("acme", name)
                .list_events_for_issue(i.number)
                .send()
                .await
                .unwrap();
        }
        let page = oc
            .pulls("acme", name)
            .list()
            .state(State::All)
            .per_page(100)
            .send()
            .await
            .unwrap();
        let pulls = oc.all_pages(page).await.unwrap();
        assert_eq!(pulls.len(), rs.pulls.len(), "{name}: pulls");
        for sp in &rs.pulls {
            let p = pulls
                .iter()
                .find(|p| p.title.as_deref() == Some(sp.title.as_str()))
                .unwrap_or_else(|| panic!("{name}: pull {:?}", sp.title));
            let full = oc.pulls("acme", name).get(p.number).await.unwrap();
            assert_eq!(full.merged_at.is_some(), sp.merged, "{name}#{}", p.number);
            let reviews = oc
                .pulls("acme", name)
                .list_reviews(p.number)
                .send()
                .await
                .unwrap()
                .items;
            assert_eq!(
                reviews.len(),
                sp.reviews.len(),
                "{name}#{}: reviews",
                p.number
            );
            for (r, sr) in reviews.iter().zip(&sp.reviews) {
                let state = format!("{:?}", r.state.as_ref().unwrap()).to_ascii_uppercase();
                assert_eq!(state.replace('_', ""), sr.state.replace('_', ""));
            }
            let rcs = oc
                .pulls("acme", name)
                .list_comments(Some(p.number))
                .send()
                .await
                .unwrap()
                .items;
            let want: usize = sp.reviews.iter().map(|r| r.comments.len()).sum();
            assert_eq!(rcs.len(), want, "{name}#{}: review comments", p.number);
        }
        let releases = oc
            .repos("acme", name)
            .releases()
            .list()
            .send()
            .await
            .unwrap()
            .items;
        assert_eq!(releases.len(), rs.releases.len(), "{name}: releases");
        for sr in &rs.releases {
            let r = releases.iter().find(|r| r.tag_name == sr.tag).unwrap();
            let assets = oc
                .repos("acme", name)
                .releases()
                .assets(r.id.into_inner())
                .send()
                .await
                .unwrap()
                .items;
            assert_eq!(assets.len(), sr.assets.len(), "{name} {}: assets", sr.tag);
        }
        let labels = oc
            .issues("acme", name)
            .list_labels_for_repo()
            .per_page(100)
            .send()
            .await
            .unwrap()
            .items;
        assert_eq!(labels.len(), rs.labels.len(), "{name}: labels");
        let milestones = oc
            .issues("acme", name)
            .list_milestones()
            .state(State::All)
            .send()
            .await
            .unwrap()
            .items;
        assert_eq!(milestones.len(), rs.milestones.len(), "{name}: milestones");
        let workflows = oc.workflows("acme", name).list().send().await.unwrap();
        assert_eq!(
            workflows
                .total_count
                .unwrap_or(workflows.items.len() as u64) as usize,
            rs.workflows.len(),
            "{name}: workflows"
        );
        let hooks: Vec<octocrab::models::hooks::Hook> = oc
            .get(format!("/repos/acme/{name}/hooks"), None::<&()>)
            .await
            .unwrap();
        assert_eq!(hooks.len(), rs.hooks.len(), "{name}: hooks");
        if rs.commits.is_empty() {
            continue;
        }
        let page = oc
            .repos("acme", name)
            .list_commits()
            .per_page(100)
            .send()
            .await
            .unwrap();
        let commits = oc.all_pages(page).await.unwrap();
        assert!(!commits.is_empty(), "{name}: commits");
        let branches = oc
            .repos("acme", name)
            .list_branches()
            .send()
            .await
            .unwrap()
            .items;
        let mut want: BTreeSet<String> = rs
            .commits
            .iter()
            .map(|c| c.branch.clone().unwrap_or_else(|| "main".into()))
            .collect();
        want.insert("main".into());
        let got: BTreeSet<String> = branches.iter().map(|b| b.name.clone()).collect();
        assert_eq!(got, want, "{name}: branches");
        let tags = oc
            .repos("acme", name)
            .list_tags()
            .send()
            .await
            .unwrap()
            .items;
        let mut want: BTreeSet<String> = rs.tags.iter().map(|t| t.name.clone()).collect();
        want.extend(rs.releases.iter().map(|r| r.tag.clone()));
        let got: BTreeSet<String> = tags.iter().map(|t| t.name.clone()).collect();
        assert_eq!(got, want, "{name}: tags");
    }

    // The same through the GitHub App: JWT, installation, installation token.
    let key = std::fs::read(sim.ready().app_private_key.as_ref().unwrap()).unwrap();
    let app = octocrab::Octocrab::builder()
        .base_uri(sim.ready().api_url.as_str())
        .unwrap()
        .app(
            sim.ready().app_id.unwrap().into(),
            jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap(),
        )
        .build_with_reqwest(octocrab_http(&sim))
        .unwrap();
    let installations = app.apps().installations().send().await.unwrap().items;
    assert_eq!(installations.len(), 1);
    let inst = app
        .installation(sim.ready().installation_id.unwrap().into())
        .unwrap();
    // One page: octocrab sends an installation token only to `api.github.com` or to relative
    // URIs, so it would follow GitHub Enterprise's absolute `Link` URLs anonymously (an
    // octocrab limitation, not the simulator's; personal tokens go through its auth layer).
    let repos = inst
        .orgs("acme")
        .list_repos()
        .per_page(100)
        .send()
        .await
        .unwrap()
        .items;
    let mut names: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, want, "the installation sees every repository");
    assert_eq!(
        repos.len(),
        seed.orgs[0].repos.len(),
        "installation sees every repository"
    );
    let issues = inst
        .issues("acme", "widgets")
        .list()
        .state(State::All)
        .send()
        .await
        .unwrap()
        .items;
    assert_eq!(issues.len(), 8, "widgets: 5 issues and 3 pull requests");
}
