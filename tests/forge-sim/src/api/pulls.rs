//! Pull requests as GitHub's REST API serves them: the pull requests themselves (an [`Issue`]
//! with a [`Pull`], so they share numbers, comments, labels and events with issues), their
//! commits and files, merging (a real merge commit, squash or rebase made in the bare repository
//! by the git CLI), reviews, review comments and requested reviewers. Also the seeding of pull
//! requests (see [`seed_repo`]).
//!
//! GitHub moves an open pull request's `head.sha` when its branch is pushed; the simulator
//! catches up when a pull request route is read ([`sync`]), moving `refs/pull/N/head` along.
//! Counts that need git (`commits`, `additions`, `deletions`, `changed_files`, `mergeable`) are
//! computed with the world lock released. Changes send GitHub's `pull_request`,
//! `pull_request_review` and `pull_request_review_comment` webhooks.

use std::collections::HashMap;
use std::path::Path as FsPath;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::commits::{self, paginate_lazy, render_change};
use super::issues::{
    self, State, author_association, caller_level, descending, issue_mut, number, present,
    push_event, render_issue_labels, render_milestone, repo_api, repo_html,
};
use super::{Ctx, body};
use crate::Sim;
use crate::auth::Need;
use crate::error::{ApiError, ApiResult};
use crate::gitrepo::{self, MergeMethod, Signature};
use crate::render;
use crate::seed::{PullSeed, RepoSeed};
use crate::state::{Issue, Permission, Pull, Repo, Review, ReviewComment, World};

pub fn routes() -> Router {
    const P: &str = "/repos/{owner}/{repo}/pulls/{pull_number}";
    Router::new()
        .route(
            "/repos/{owner}/{repo}/pulls",
            get(list_pulls).post(create_pull),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/comments",
            get(list_repo_review_comments),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/comments/{comment_id}",
            get(get_review_comment)
                .patch(update_review_comment)
                .delete(delete_review_comment),
        )
        .route(P, get(get_pull).patch(update_pull))
        .route(&format!("{P}/commits"), get(list_pull_commits))
        .route(&format!("{P}/files"), get(list_pull_files))
        .route(&format!("{P}/merge"), get(is_merged).put(merge_pull))
        .route(
            &format!("{P}/reviews"),
            get(list_reviews).post(create_review),
        )
        .route(&format!("{P}/reviews/{{review_id}}"), get(get_review))
        .route(
            &format!("{P}/reviews/{{review_id}}/comments"),
            get(list_comments_of_review),
        )
        .route(
            &format!("{P}/comments"),
            get(list_pull_review_comments).post(create_review_comment),
        )
        .route(
            &format!("{P}/comments/{{comment_id}}/replies"),
            axum::routing::post(reply_to_review_comment),
        )
        .route(
            &format!("{P}/requested_reviewers"),
            get(get_requested_reviewers).post(request_reviewers),
        )
}

const READ: Need = Need::read("pull_requests");

/// Opening a pull request, reviewing and commenting: read access for a user (on GitHub anyone
/// who can see a repository may), `pull_requests: write` for an installation.
const PARTICIPATE: Need = Need {
    user: Permission::Read,
    app_permission: "pull_requests",
    write: true,
};

type RepoPath = Path<(String, String)>;
type ItemPath = Path<(String, String, String)>;
type SubPath = Path<(String, String, String, String)>;

fn internal(e: anyhow::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

/// GitHub's 422 whose `errors` are plain strings (`validation-error-simple`), as it answers a
/// review of one's own pull request.
fn unprocessable(message: &str) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity");
    e.errors.push(json!(message));
    e
}

fn not_mergeable() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Pull Request is not mergeable",
    )
}

/// The pull request `number` of `repo` (an issue's number is 404 here, as on GitHub).
fn pull_in(repo: &Repo, number: u64) -> Result<(&Issue, &Pull), ApiError> {
    let i = repo.issues.get(&number).ok_or_else(ApiError::not_found)?;
    let p = i.pull.as_ref().ok_or_else(ApiError::not_found)?;
    Ok((i, p))
}

fn pull_mut(world: &mut World, rid: u64, number: u64) -> Result<&mut Pull, ApiError> {
    issue_mut(world, rid, number)?
        .pull
        .as_mut()
        .ok_or_else(ApiError::not_found)
}

/// Branch tips by branch name.
fn branch_tips(dir: &FsPath) -> Result<HashMap<String, String>, ApiError> {
    Ok(gitrepo::refs(dir)
        .map_err(internal)?
        .into_iter()
        .filter_map(|(r, s)| Some((r.strip_prefix("refs/heads/")?.to_string(), s)))
        .collect())
}

/// Brings the open pull requests of a repository up to their branches: `head.sha` follows the
/// head branch (moving `updated_at` and `refs/pull/N/head`, as a push does on GitHub) and
/// `base.sha` the base branch. Checks read access first.
pub fn sync(ctx: &Ctx, owner: &str, name: &str) -> Result<(), ApiError> {
    let git_dir = ctx.with_repo(owner, name, READ, |_, _, r| Ok(r.git_dir.clone()))?;
    let tips = branch_tips(&git_dir)?;
    let mut moved = Vec::new();
    {
        let mut world = ctx.sim.world.lock();
        let Some(id) = world.repo_id(owner, name) else {
            return Ok(());
        };
        let now = Utc::now();
        if let Some(r) = world.repos.get_mut(&id) {
            for i in r.issues.values_mut().filter(|i| i.state == "open") {
                let Some(p) = i.pull.as_mut() else {
                    continue;
                };
                if let Some(h) = tips.get(&p.head_ref)
                    && *h != p.head_sha
                {
                    p.head_sha = h.clone();
                    i.updated_at = now;
                    moved.push((i.number, h.clone()));
                }
                if let Some(b) = tips.get(&p.base_ref)
                    && *b != p.base_sha
                {
                    p.base_sha = b.clone();
                }
            }
        }
    }
    for (n, sha) in moved {
        gitrepo::update_ref(&git_dir, &format!("refs/pull/{n}/head"), &sha, None)
            .map_err(internal)?;
    }
    Ok(())
}

/// What only git knows about a pull request.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub commits: u64,
    pub additions: u64,
    pub deletions: u64,
    pub changed_files: u64,
    /// `None` once closed (GitHub stops computing it).
    pub mergeable: Option<bool>,
}

/// Counts a pull request's commits (`base..head`) and changes (`base...head`), and for an open
/// one whether it merges cleanly.
pub fn stats(dir: &FsPath, p: &Pull, open: bool) -> Stats {
    let commits = gitrepo::commits_between(dir, &p.base_sha, &p.head_sha).unwrap_or(0);
    let files =
        gitrepo::numstat(dir, &[&format!("{}...{}", p.base_sha, p.head_sha)]).unwrap_or_default();
    let mergeable = open
        .then(|| gitrepo::merge_tree(dir, None, &p.base_sha, &p.head_sha).ok())
        .flatten()
        .map(|t| t.is_some());
    Stats {
        commits,
        additions: files.iter().map(|f| f.1).sum(),
        deletions: files.iter().map(|f| f.2).sum(),
        changed_files: files.len() as u64,
        mergeable,
    }
}

/// `head` or `base` of a pull request.
fn end(sim: &Sim, world: &World, repo: &Repo, repo_json: &Value, r#ref: &str, sha: &str) -> Value {
    json!({
        "label": format!("{}:{}", repo.owner, r#ref),
        "ref": r#ref,
        "sha": sha,
        "user": render::user(sim, world, &repo.owner),
        "repo": repo_json,
    })
}

/// GitHub's `pull-request-simple` (what lists return). `repo_json` is [`render::repo`] of `repo`,
/// rendered once per response.
pub fn render_pull_simple(
    sim: &Sim,
    world: &World,
    repo: &Repo,
    repo_json: &Value,
    i: &Issue,
    p: &Pull,
) -> Value {
    let api = repo_api(sim, repo);
    let html = repo_html(sim, repo);
    let n = i.number;
    let url = format!("{api}/pulls/{n}");
    let html_url = format!("{html}/pull/{n}");
    let head_repo = p
        .head_repo
        .filter(|id| *id != repo.id)
        .and_then(|id| world.repos.get(&id));
    let head = match head_repo {
        Some(hr) => end(
            sim,
            world,
            hr,
            &render::repo(sim, world, hr, None),
            &p.head_ref,
            &p.head_sha,
        ),
        None => end(sim, world, repo, repo_json, &p.head_ref, &p.head_sha),
    };
    let assignees: Vec<Value> = i
        .assignees
        .iter()
        .map(|a| render::user(sim, world, a))
        .collect();
    let link = |href: String| json!({ "href": href });
    // `pull-request-simple` types a label's description as a string that cannot be null (unlike
    // every other label schema): no description is sent as "".
    let labels: Vec<Value> = render_issue_labels(sim, repo, i)
        .into_iter()
        .map(|mut l| {
            if l["description"].is_null() {
                l["description"] = json!("");
            }
            l
        })
        .collect();
    json!({
        "url": url,
        "id": p.id,
        "node_id": render::node_id("PullRequest", p.id),
        "html_url": html_url,
        "diff_url": format!("{html_url}.diff"),
        "patch_url": format!("{html_url}.patch"),
        "issue_url": format!("{api}/issues/{n}"),
        "commits_url": format!("{url}/commits"),
        "review_comments_url": format!("{url}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "statuses_url": format!("{api}/statuses/{}", p.head_sha),
        "number": n,
        "state": i.state,
        "locked": i.locked,
        "title": i.title,
        "user": render::user(sim, world, &i.user),
        "body": i.body,
        "labels": labels,
        "milestone": i.milestone
            .and_then(|m| repo.milestones.get(&m))
            .map(|m| render_milestone(sim, world, repo, m))
            .unwrap_or(Value::Null),
        "active_lock_reason": i.active_lock_reason,
        "created_at": render::ts(&i.created_at),
        "updated_at": render::ts(&i.updated_at),
        "closed_at": render::ts_opt(&i.closed_at),
        "merged_at": render::ts_opt(&p.merged_at),
        "merge_commit_sha": p.merge_commit_sha,
        "assignee": assignees.first().cloned().unwrap_or(Value::Null),
        "assignees": assignees,
        "requested_reviewers": p.requested_reviewers.iter().map(|l| render::user(sim, world, l)).collect::<Vec<_>>(),
        "requested_teams": [],
        "head": head,
        "base": end(sim, world, repo, repo_json, &p.base_ref, &p.base_sha),
        "_links": {
            "self": link(url.clone()),
            "html": link(html_url.clone()),
            "issue": link(format!("{api}/issues/{n}")),
            "comments": link(format!("{api}/issues/{n}/comments")),
            "review_comments": link(format!("{url}/comments")),
            "review_comment": link(format!("{api}/pulls/comments{{/number}}")),
            "commits": link(format!("{url}/commits")),
            "statuses": link(format!("{api}/statuses/{}", p.head_sha)),
        },
        "author_association": author_association(world, repo, &i.user),
        "auto_merge": null,
        "draft": p.draft,
    })
}

/// GitHub's full `pull-request`: [`render_pull_simple`] plus merge state and counts.
pub fn render_pull(
    sim: &Sim,
    world: &World,
    repo: &Repo,
    repo_json: &Value,
    i: &Issue,
    p: &Pull,
    s: &Stats,
) -> Value {
    let mut v = render_pull_simple(sim, world, repo, repo_json, i, p);
    let n = i.number;
    let comments = repo
        .comments
        .values()
        .filter(|c| c.issue_number == n)
        .count();
    let review_comments = repo
        .review_comments
        .values()
        .filter(|c| c.pull_number == n)
        .count();
    let mergeable_state = if p.merged || i.state == "closed" {
        "unknown"
    } else if p.draft {
        "draft"
    } else {
        match s.mergeable {
            Some(true) => "clean",
            Some(false) => "dirty",
            None => "unknown",
        }
    };
    let extra = json!({
        "merged": p.merged,
        "mergeable": s.mergeable,
        "rebaseable": s.mergeable,
        "mergeable_state": mergeable_state,
        "merged_by": render::user_opt(sim, world, &p.merged_by),
        "comments": comments,
        "review_comments": review_comments,
        "maintainer_can_modify": p.maintainer_can_modify,
        "commits": s.commits,
        "additions": s.additions,
        "deletions": s.deletions,
        "changed_files": s.changed_files,
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// GitHub's `pull-request-review`.
pub fn render_review(sim: &Sim, world: &World, repo: &Repo, r: &Review) -> Value {
    let html_url = format!(
        "{}/pull/{}#pullrequestreview-{}",
        repo_html(sim, repo),
        r.pull_number,
        r.id
    );
    let pr_url = format!("{}/pulls/{}", repo_api(sim, repo), r.pull_number);
    let mut v = json!({
        "id": r.id,
        "node_id": render::node_id("PullRequestReview", r.id),
        "user": render::user(sim, world, &r.user),
        "body": r.body,
        "state": r.state,
        "html_url": html_url,
        "pull_request_url": pr_url,
        "author_association": author_association(world, repo, &r.user),
        "_links": {"html": {"href": html_url}, "pull_request": {"href": pr_url}},
        "commit_id": r.commit_id,
    });
    if let Some(t) = &r.submitted_at {
        v["submitted_at"] = json!(render::ts(t));
    }
    v
}

/// GitHub's `pull-request-review-comment` (also valid as `review-comment`).
pub fn render_review_comment(sim: &Sim, world: &World, repo: &Repo, c: &ReviewComment) -> Value {
    let api = repo_api(sim, repo);
    let url = format!("{api}/pulls/comments/{}", c.id);
    let html_url = format!(
        "{}/pull/{}#discussion_r{}",
        repo_html(sim, repo),
        c.pull_number,
        c.id
    );
    let pr_url = format!("{api}/pulls/{}", c.pull_number);
    // The simulator keeps no diff positions: the line stands in for the position.
    let position = c.line.unwrap_or(1);
    let mut v = json!({
        "url": url,
        "pull_request_review_id": c.review_id,
        "id": c.id,
        "node_id": render::node_id("PullRequestReviewComment", c.id),
        "diff_hunk": c.diff_hunk,
        "path": c.path,
        "position": position,
        "original_position": position,
        "commit_id": c.commit_id,
        "original_commit_id": c.commit_id,
        "user": render::user(sim, world, &c.user),
        "body": c.body,
        "created_at": render::ts(&c.created_at),
        "updated_at": render::ts(&c.updated_at),
        "html_url": html_url,
        "pull_request_url": pr_url,
        "author_association": author_association(world, repo, &c.user),
        "_links": {
            "self": {"href": url},
            "html": {"href": html_url},
            "pull_request": {"href": pr_url},
        },
        "start_line": null,
        "original_start_line": null,
        "start_side": null,
        "line": c.line,
        "original_line": c.line,
        "side": c.side,
        "subject_type": if c.line.is_some() { "line" } else { "file" },
        "reactions": {
            "url": format!("{url}/reactions"), "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
            "confused": 0, "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0,
        },
    });
    if let Some(r) = c.in_reply_to_id {
        v["in_reply_to_id"] = json!(r);
    }
    v
}

/// A diff hunk header for a comment on `line` (the simulator does not keep the diff).
fn hunk(line: Option<u64>) -> String {
    let l = line.unwrap_or(1);
    format!("@@ -{l},1 +{l},1 @@")
}

/// Answers the full pull request `n`: reads it, computes its [`Stats`] with the lock released,
/// renders it.
fn full_response(ctx: &Ctx, owner: &str, name: &str, n: u64, status: StatusCode) -> ApiResult {
    let (git_dir, pull, open) = ctx.with_repo(owner, name, READ, |_, _, r| {
        let (i, p) = pull_in(r, n)?;
        Ok((r.git_dir.clone(), p.clone(), i.state == "open"))
    })?;
    let s = stats(&git_dir, &pull, open);
    ctx.with_repo(owner, name, READ, |sim, world, r| {
        let (i, p) = pull_in(r, n)?;
        let repo_json = render::repo(sim, world, r, None);
        let v = render_pull(sim, world, r, &repo_json, i, p, &s);
        let mut resp = (status, axum::Json(v)).into_response();
        if status == StatusCode::CREATED
            && let Ok(h) = header::HeaderValue::from_str(&format!("{}/pulls/{n}", repo_api(sim, r)))
        {
            resp.headers_mut().insert(header::LOCATION, h);
        }
        Ok(resp)
    })
}

// ---------------------------------------------------------------------------------------------
// Pull requests
// ---------------------------------------------------------------------------------------------

/// `GET /repos/{owner}/{repo}/pulls`: `state` (default open), `head` (`owner:branch`), `base`;
/// sorted by `sort` (`created`, `updated`, `popularity`, `long-running`) in `direction` (default
/// desc).
async fn list_pulls(ctx: Ctx, Path((owner, repo)): RepoPath) -> ApiResult {
    sync(&ctx, &owner, &repo)?;
    let q = ctx.query();
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        let state = q.get("state").map(String::as_str).unwrap_or("open");
        if !matches!(state, "open" | "closed" | "all") {
            return Err(ApiError::validation("PullRequest", "invalid", "state"));
        }
        let head = q.get("head").map(|h| match h.split_once(':') {
            Some((o, b)) => (Some(o.to_string()), b.to_string()),
            None => (None, h.clone()),
        });
        let base = q.get("base");
        let counts = issues::comment_counts(r);
        let mut list: Vec<(&Issue, &Pull)> = r
            .issues
            .values()
            .filter_map(|i| Some((i, i.pull.as_ref()?)))
            .filter(|(i, _)| state == "all" || i.state == state)
            .filter(|(_, p)| {
                head.as_ref().is_none_or(|(o, b)| {
                    *b == p.head_ref && o.as_ref().is_none_or(|o| o.eq_ignore_ascii_case(&r.owner))
                })
            })
            .filter(|(_, p)| base.is_none_or(|b| *b == p.base_ref))
            .collect();
        let comments = |i: &Issue| counts.get(&i.number).copied().unwrap_or(0);
        match q.get("sort").map(String::as_str) {
            Some("updated") => list.sort_by_key(|(i, _)| (i.updated_at, i.number)),
            Some("popularity") => list.sort_by_key(|(i, _)| (comments(i), i.number)),
            Some("long-running") => {
                list.sort_by_key(|(i, _)| (std::cmp::Reverse(i.created_at), i.updated_at, i.number))
            }
            _ => list.sort_by_key(|(i, _)| (i.created_at, i.number)),
        }
        if descending(&q, true) {
            list.reverse();
        }
        let repo_json = render::repo(sim, world, r, None);
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |(i, p)| {
            render_pull_simple(sim, world, r, &repo_json, i, p)
        })
    })
}

#[derive(Deserialize)]
struct CreatePull {
    title: Option<String>,
    head: String,
    base: String,
    body: Option<String>,
    maintainer_can_modify: Option<bool>,
    draft: Option<bool>,
    issue: Option<u64>,
}

/// The branch of `head` (`branch` or `owner:branch`); `None` for another owner's (forks are not
/// simulated).
fn head_branch<'a>(owner: &str, head: &'a str) -> Option<&'a str> {
    match head.split_once(':') {
        Some((o, b)) => o.eq_ignore_ascii_case(owner).then_some(b),
        None => Some(head),
    }
}

/// `POST /repos/{owner}/{repo}/pulls`: 201 with the pull request, and `refs/pull/N/head`.
/// Refused as GitHub refuses: a head or base branch that does not exist (422, `invalid` on the
/// field), nothing to merge (422 "No commits between BASE and HEAD"), an open pull request for
/// the same branches (422 "A pull request already exists for OWNER:HEAD.").
async fn create_pull(ctx: Ctx, Path((owner, repo)): RepoPath, raw: Bytes) -> ApiResult {
    let req: CreatePull = body(&raw)?;
    let title = req.title.clone().filter(|t| !t.trim().is_empty());
    if title.is_none() && req.issue.is_none() {
        return Err(ApiError::validation(
            "PullRequest",
            "missing_field",
            "title",
        ));
    }
    let (git_dir, repo_owner) = ctx.with_repo(&owner, &repo, PARTICIPATE, |_, _, r| {
        Ok((r.git_dir.clone(), r.owner.clone()))
    })?;
    let head_ref = head_branch(&repo_owner, &req.head)
        .unwrap_or_default()
        .to_string();
    let head_sha = (!head_ref.is_empty())
        .then(|| gitrepo::resolve(&git_dir, &format!("refs/heads/{head_ref}")))
        .flatten();
    let base_sha = gitrepo::resolve(&git_dir, &format!("refs/heads/{}", req.base));
    let mut errors = Vec::new();
    if head_sha.is_none() {
        errors.push(json!({"resource": "PullRequest", "field": "head", "code": "invalid"}));
    }
    if base_sha.is_none() {
        errors.push(json!({"resource": "PullRequest", "field": "base", "code": "invalid"}));
    }
    let (Some(head_sha), Some(base_sha)) = (head_sha, base_sha) else {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        e.errors = errors;
        return Err(e);
    };
    if gitrepo::commits_between(&git_dir, &base_sha, &head_sha).map_err(internal)? == 0 {
        return Err(ApiError::validation_custom(
            "PullRequest",
            &format!("No commits between {} and {}", req.base, req.head),
        ));
    }
    let (n, rid, actor) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |_, world, rid| {
        let actor = ctx.actor(world)?;
        let r = &world.repos[&rid];
        if r.issues.values().any(|i| {
            i.state == "open"
                && i.pull
                    .as_ref()
                    .is_some_and(|p| p.head_ref == head_ref && p.base_ref == req.base)
        }) {
            return Err(ApiError::validation_custom(
                "PullRequest",
                &format!("A pull request already exists for {}:{head_ref}.", r.owner),
            ));
        }
        if let Some(n) = req.issue
            && r.issues.get(&n).is_none_or(|i| i.pull.is_some())
        {
            return Err(ApiError::validation("PullRequest", "invalid", "issue"));
        }
        let now = Utc::now();
        let pull = Pull {
            id: world.id(),
            head_ref: head_ref.clone(),
            head_sha: head_sha.clone(),
            head_repo: Some(rid),
            base_ref: req.base.clone(),
            base_sha: base_sha.clone(),
            draft: req.draft.unwrap_or(false),
            merged: false,
            merged_at: None,
            merged_by: None,
            merge_commit_sha: None,
            maintainer_can_modify: req.maintainer_can_modify.unwrap_or(true),
            requested_reviewers: Vec::new(),
        };
        if let Some(n) = req.issue {
            // Turning an issue into a pull request keeps its number, title and conversation.
            let i = issue_mut(world, rid, n)?;
            i.pull = Some(pull);
            i.updated_at = now;
            if let Some(b) = req.body.clone() {
                i.body = Some(b);
            }
            return Ok((n, rid, actor));
        }
        let id = world.id();
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        let n = issues::take_number(r);
        r.issues.insert(
            n,
            Issue::open(
                id,
                n,
                title.clone().unwrap_or_default(),
                req.body.clone(),
                actor.clone(),
                now,
                Some(pull),
            ),
        );
        Ok((n, rid, actor))
    })?;
    gitrepo::update_ref(&git_dir, &format!("refs/pull/{n}/head"), &head_sha, None)
        .map_err(internal)?;
    let resp = full_response(&ctx, &owner, &repo, n, StatusCode::CREATED)?;
    // No issue events are recorded by opening, so every id is past the mark.
    issues::notify_issue(
        &ctx.sim,
        rid,
        n,
        u64::MAX,
        &actor,
        vec![("opened", json!({}))],
    );
    Ok(resp)
}

/// `GET /repos/{owner}/{repo}/pulls/{pull_number}`.
async fn get_pull(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    sync(&ctx, &owner, &repo)?;
    full_response(&ctx, &owner, &repo, n, StatusCode::OK)
}

#[derive(Deserialize)]
struct UpdatePull {
    title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    body: Option<Option<String>>,
    state: Option<State>,
    base: Option<String>,
    maintainer_can_modify: Option<bool>,
}

/// `PATCH /repos/{owner}/{repo}/pulls/{pull_number}`: the author, or a writer (triage for the
/// state). A merged pull request cannot be reopened; a new base must be an existing branch.
async fn update_pull(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: UpdatePull = body(&raw)?;
    if req.title.as_ref().is_some_and(|t| t.trim().is_empty()) {
        return Err(ApiError::validation(
            "PullRequest",
            "missing_field",
            "title",
        ));
    }
    let git_dir = ctx.with_repo(&owner, &repo, READ, |_, _, r| {
        pull_in(r, n)?;
        Ok(r.git_dir.clone())
    })?;
    let new_base = match &req.base {
        None => None,
        Some(b) => Some((
            b.clone(),
            gitrepo::resolve(&git_dir, &format!("refs/heads/{b}"))
                .ok_or_else(|| ApiError::validation("PullRequest", "invalid", "base"))?,
        )),
    };
    let (rid, mark, actor, edits) =
        ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |_, world, rid| {
            let actor = ctx.actor(world)?;
            let mark = world.next_id;
            let r = &world.repos[&rid];
            let (i, p) = pull_in(r, n)?;
            let level = caller_level(world, &ctx, r);
            let author = i.user.eq_ignore_ascii_case(&actor);
            if (req.title.is_some() || req.body.is_some() || new_base.is_some())
                && !author
                && level < Permission::Write
            {
                return Err(ApiError::forbidden(
                    "Must have push access to this repository.",
                ));
            }
            if req.state.is_some() && !author && level < Permission::Triage {
                return Err(ApiError::forbidden(
                    "Must have triage access to this repository.",
                ));
            }
            if req.state == Some(State::Open) && p.merged {
                return Err(ApiError::validation_custom(
                    "PullRequest",
                    "state cannot be changed. The pull request has already been merged.",
                ));
            }
            let now = Utc::now();
            if let Some(t) = &req.title {
                issues::apply_title(world, rid, n, t, &actor, now)?;
            }
            if let Some(s) = req.state {
                issues::apply_state(world, rid, n, s.as_str(), None, &actor, now)?;
            }
            // What the `edited` webhook reports as `changes`.
            let mut changes = serde_json::Map::new();
            let i = issue_mut(world, rid, n)?;
            if let Some(b) = req.body
                && i.body != b
            {
                let from = std::mem::replace(&mut i.body, b);
                changes.insert("body".into(), json!({ "from": from }));
            }
            i.updated_at = now;
            let p = pull_mut(world, rid, n)?;
            if let Some((b, sha)) = new_base
                && p.base_ref != b
            {
                let from = std::mem::replace(&mut p.base_ref, b);
                p.base_sha = sha;
                changes.insert("base".into(), json!({ "ref": { "from": from } }));
            }
            if let Some(m) = req.maintainer_can_modify {
                p.maintainer_can_modify = m;
            }
            let edits: Vec<(&str, Value)> = if changes.is_empty() {
                Vec::new()
            } else {
                vec![("edited", json!({ "changes": changes }))]
            };
            Ok((rid, mark, actor, edits))
        })?;
    let resp = full_response(&ctx, &owner, &repo, n, StatusCode::OK)?;
    issues::notify_issue(&ctx.sim, rid, n, mark, &actor, edits);
    Ok(resp)
}

/// `GET .../pulls/{pull_number}/commits`: oldest first, as GitHub lists them (at most 250).
async fn list_pull_commits(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    sync(&ctx, &owner, &repo)?;
    let (git_dir, p) = ctx.with_repo(&owner, &repo, READ, |_, _, r| {
        Ok((r.git_dir.clone(), pull_in(r, n)?.1.clone()))
    })?;
    let list = commits::log(
        &git_dir,
        &[
            "--reverse",
            "--max-count=250",
            &format!("{}..{}", p.base_sha, p.head_sha),
        ],
    )
    .map_err(internal)?;
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |c| {
            commits::render_commit(sim, world, r, c)
        })
    })
}

/// `GET .../pulls/{pull_number}/files`: the changes from the merge base to the head.
async fn list_pull_files(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    sync(&ctx, &owner, &repo)?;
    let (git_dir, p) = ctx.with_repo(&owner, &repo, READ, |_, _, r| {
        Ok((r.git_dir.clone(), pull_in(r, n)?.1.clone()))
    })?;
    let base = gitrepo::run(&git_dir, &["merge-base", &p.base_sha, &p.head_sha])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| p.base_sha.clone());
    let changes = gitrepo::changes(&git_dir, &base, &p.head_sha).map_err(internal)?;
    ctx.with_repo(&owner, &repo, READ, |sim, _, r| {
        paginate_lazy(&sim.api_base, &ctx.uri, &changes, |c| {
            render_change(sim, r, &p.head_sha, c)
        })
    })
}

/// `GET .../pulls/{pull_number}/merge`: 204 when merged, else 404 without a body (GitHub's
/// description documents none for this 404).
async fn is_merged(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    ctx.with_repo(&owner, &repo, READ, |_, _, r| {
        if pull_in(r, n)?.1.merged {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Ok(StatusCode::NOT_FOUND.into_response())
        }
    })
}

#[derive(Deserialize)]
struct MergeBody {
    commit_title: Option<String>,
    commit_message: Option<String>,
    sha: Option<String>,
    merge_method: Option<Method>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Method {
    Merge,
    Squash,
    Rebase,
}

/// The name and email GitHub puts on commits it makes for `login`: the account's, or its noreply
/// address on this host.
fn signature_of(sim: &Sim, world: &World, login: &str, at: DateTime<Utc>) -> Signature {
    let host = sim
        .web_base
        .trim_start_matches("https://")
        .split(':')
        .next()
        .unwrap_or("localhost")
        .to_string();
    let a = world.account(login);
    Signature {
        name: a
            .and_then(|a| a.name.clone())
            .unwrap_or_else(|| login.to_string()),
        email: a
            .and_then(|a| a.email.clone())
            .unwrap_or_else(|| format!("{login}@users.noreply.{host}")),
        date: at,
    }
}

/// GitHub's committer on the commits its merge button makes.
fn web_committer(at: DateTime<Utc>) -> Signature {
    Signature {
        name: "GitHub".into(),
        email: "noreply@github.com".into(),
        date: at,
    }
}

/// Marks pull request `n` merged (and closed) at `at` with `merge_sha`, keeping the base as it
/// was before the merge so its commits and counts stay those of the pull request; records
/// `merged` and `closed` events.
#[allow(clippy::too_many_arguments)]
fn record_merge(
    world: &mut World,
    rid: u64,
    n: u64,
    actor: &str,
    merge_sha: &str,
    head_sha: &str,
    base_sha: &str,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let i = issue_mut(world, rid, n)?;
    i.state = "closed".into();
    i.closed_at = Some(at);
    i.closed_by = Some(actor.to_string());
    i.updated_at = at;
    let p = i.pull.as_mut().ok_or_else(ApiError::not_found)?;
    p.merged = true;
    p.merged_at = Some(at);
    p.merged_by = Some(actor.to_string());
    p.merge_commit_sha = Some(merge_sha.to_string());
    p.head_sha = head_sha.to_string();
    p.base_sha = base_sha.to_string();
    p.requested_reviewers.clear();
    push_event(
        world,
        rid,
        n,
        actor,
        "merged",
        json!({}),
        Some(merge_sha.to_string()),
        at,
    );
    push_event(world, rid, n, actor, "closed", json!({}), None, at);
    if let Some(r) = world.repos.get_mut(&rid) {
        r.pushed_at = at;
    }
    Ok(())
}

/// The commit message GitHub writes for `method` unless the request gives one.
fn merge_message(
    method: MergeMethod,
    owner: &str,
    i: &Issue,
    p: &Pull,
    title: Option<String>,
    message: Option<String>,
) -> String {
    let (title, message) = match method {
        MergeMethod::Merge => (
            title.unwrap_or_else(|| {
                format!(
                    "Merge pull request #{} from {owner}/{}",
                    i.number, p.head_ref
                )
            }),
            message.unwrap_or_else(|| i.title.clone()),
        ),
        _ => (
            title.unwrap_or_else(|| format!("{} (#{})", i.title, i.number)),
            message.unwrap_or_default(),
        ),
    };
    if message.is_empty() {
        title
    } else {
        format!("{title}\n\n{message}")
    }
}

/// `PUT .../pulls/{pull_number}/merge`: makes the merge commit (or squash, or rebase) in the bare
/// repository, moves the base branch, and marks the pull request merged and closed. 405 "Pull
/// Request is not mergeable" when it is merged or closed already or conflicts; 409 when `sha` is
/// not the head (or the base moved meanwhile).
async fn merge_pull(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: MergeBody = body(&raw)?;
    let need = Need::write("contents");
    ctx.with_repo(&owner, &repo, need, |_, _, r| pull_in(r, n).map(drop))?;
    sync(&ctx, &owner, &repo)?;
    let now = Utc::now();
    let method = match req.merge_method.unwrap_or(Method::Merge) {
        Method::Merge => MergeMethod::Merge,
        Method::Squash => MergeMethod::Squash,
        Method::Rebase => MergeMethod::Rebase,
    };
    let (git_dir, actor, message, author, p) =
        ctx.with_repo(&owner, &repo, need, |sim, world, r| {
            let (i, p) = pull_in(r, n)?;
            if p.merged || i.state != "open" {
                return Err(not_mergeable());
            }
            if p.draft {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Pull Request is still a draft",
                ));
            }
            let actor = ctx.actor(world)?;
            let message = merge_message(
                method,
                &r.owner,
                i,
                p,
                req.commit_title.clone(),
                req.commit_message.clone(),
            );
            let author = signature_of(sim, world, &actor, now);
            Ok((r.git_dir.clone(), actor, message, author, p.clone()))
        })?;
    let tips = branch_tips(&git_dir)?;
    let head = tips.get(&p.head_ref).cloned().unwrap_or(p.head_sha.clone());
    let Some(base) = tips.get(&p.base_ref).cloned() else {
        return Err(not_mergeable());
    };
    if req.sha.as_ref().is_some_and(|s| *s != head) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Head branch was modified. Review and try the merge again.",
        ));
    }
    let merged = gitrepo::merge(
        &git_dir,
        &base,
        &head,
        method,
        &message,
        &author,
        &web_committer(now),
    )
    .map_err(internal)?
    .ok_or_else(not_mergeable)?;
    if gitrepo::update_ref(
        &git_dir,
        &format!("refs/heads/{}", p.base_ref),
        &merged,
        Some(&base),
    )
    .is_err()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Base branch was modified. Review and try the merge again.",
        ));
    }
    let (rid, mark) = ctx.with_repo_mut(&owner, &repo, need, |_, world, rid| {
        let mark = world.next_id;
        record_merge(world, rid, n, &actor, &merged, &head, &base, now)?;
        Ok((rid, mark))
    })?;
    issues::notify_issue(&ctx.sim, rid, n, mark, &actor, Vec::new());
    Ok(axum::Json(json!({
        "sha": merged,
        "merged": true,
        "message": "Pull Request successfully merged",
    }))
    .into_response())
}

/// A payload about pull request `n` with its `pull_request` object (GitHub's simple form, which
/// needs no git) and `fields` (`review`, `comment`, ...), if anyone listens to the review
/// events. For `pull_request_review` and `pull_request_review_comment`.
fn pull_payload(
    sim: &Sim,
    world: &World,
    rid: u64,
    n: u64,
    action: &str,
    actor: &str,
    fields: Value,
) -> Option<Value> {
    let event = if fields.get("review").is_some() {
        "pull_request_review"
    } else {
        "pull_request_review_comment"
    };
    if !issues::has_targets(world, rid, event) {
        return None;
    }
    let r = world.repos.get(&rid)?;
    let (i, p) = pull_in(r, n).ok()?;
    let repo_json = render::repo(sim, world, r, None);
    let pr = render_pull_simple(sim, world, r, &repo_json, i, p);
    Some(issues::payload(
        sim,
        world,
        r,
        action,
        ("pull_request", pr),
        actor,
        fields,
    ))
}

// ---------------------------------------------------------------------------------------------
// Reviews
// ---------------------------------------------------------------------------------------------

/// `GET .../pulls/{pull_number}/reviews`: oldest first; pending reviews only for their author.
async fn list_reviews(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        pull_in(r, n)?;
        let me = ctx.caller.actor(world).unwrap_or_default();
        let list: Vec<&Review> = r
            .reviews
            .values()
            .filter(|rv| rv.pull_number == n)
            .filter(|rv| rv.state != "PENDING" || rv.user.eq_ignore_ascii_case(&me))
            .collect();
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |rv| {
            render_review(sim, world, r, rv)
        })
    })
}

/// The review `id` of pull request `n`.
fn review_in(r: &Repo, n: u64, id: &str) -> Result<u64, ApiError> {
    pull_in(r, n)?;
    let id = number(id)?;
    r.reviews
        .get(&id)
        .filter(|rv| rv.pull_number == n)
        .map(|_| id)
        .ok_or_else(ApiError::not_found)
}

/// `GET .../pulls/{pull_number}/reviews/{review_id}`.
async fn get_review(ctx: Ctx, Path((owner, repo, n, id)): SubPath) -> ApiResult {
    let n = number(&n)?;
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        let id = review_in(r, n, &id)?;
        Ok(axum::Json(render_review(sim, world, r, &r.reviews[&id])).into_response())
    })
}

/// `GET .../pulls/{pull_number}/reviews/{review_id}/comments`.
async fn list_comments_of_review(ctx: Ctx, Path((owner, repo, n, id)): SubPath) -> ApiResult {
    let n = number(&n)?;
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        let id = review_in(r, n, &id)?;
        let list: Vec<&ReviewComment> = r
            .review_comments
            .values()
            .filter(|c| c.review_id == Some(id))
            .collect();
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |c| {
            render_review_comment(sim, world, r, c)
        })
    })
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum ReviewEvent {
    Approve,
    RequestChanges,
    Comment,
}

#[derive(Deserialize)]
struct DraftComment {
    path: String,
    position: Option<u64>,
    line: Option<u64>,
    side: Option<String>,
    body: String,
}

#[derive(Deserialize)]
struct CreateReview {
    commit_id: Option<String>,
    body: Option<String>,
    event: Option<ReviewEvent>,
    comments: Option<Vec<DraftComment>>,
}

/// `POST .../pulls/{pull_number}/reviews`: 200 with the review (`PENDING` without `event`).
/// The author of a pull request can neither approve it nor request changes on it (422 with
/// GitHub's messages). A submitted review takes its author off the requested reviewers.
async fn create_review(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: CreateReview = body(&raw)?;
    sync(&ctx, &owner, &repo)?;
    let (resp, rid, hook) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |sim, world, rid| {
        let actor = ctx.actor(world)?;
        let r = &world.repos[&rid];
        let (i, p) = pull_in(r, n)?;
        if i.user.eq_ignore_ascii_case(&actor) {
            match req.event {
                Some(ReviewEvent::Approve) => {
                    return Err(unprocessable("Can not approve your own pull request"));
                }
                Some(ReviewEvent::RequestChanges) => {
                    return Err(unprocessable(
                        "Can not request changes on your own pull request",
                    ));
                }
                _ => {}
            }
        }
        if req.event.is_none()
            && r.reviews.values().any(|rv| {
                rv.pull_number == n && rv.state == "PENDING" && rv.user.eq_ignore_ascii_case(&actor)
            })
        {
            return Err(unprocessable(
                "User can only have one pending review per pull request",
            ));
        }
        let commit_id = req.commit_id.clone().unwrap_or_else(|| p.head_sha.clone());
        let state = match req.event {
            Some(ReviewEvent::Approve) => "APPROVED",
            Some(ReviewEvent::RequestChanges) => "CHANGES_REQUESTED",
            Some(ReviewEvent::Comment) => "COMMENTED",
            None => "PENDING",
        };
        let now = Utc::now();
        let id = world.id();
        let mut comments = Vec::new();
        for c in req.comments.unwrap_or_default() {
            let line = c.line.or(c.position);
            comments.push(ReviewComment {
                id: world.id(),
                pull_number: n,
                review_id: Some(id),
                in_reply_to_id: None,
                user: actor.clone(),
                body: c.body,
                path: c.path,
                line,
                side: c.side.unwrap_or_else(|| "RIGHT".into()),
                commit_id: commit_id.clone(),
                diff_hunk: hunk(line),
                created_at: now,
                updated_at: now,
            });
        }
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        r.reviews.insert(
            id,
            Review {
                id,
                pull_number: n,
                user: actor.clone(),
                body: req.body.unwrap_or_default(),
                state: state.into(),
                commit_id,
                submitted_at: (state != "PENDING").then_some(now),
            },
        );
        for c in comments {
            r.review_comments.insert(c.id, c);
        }
        if state != "PENDING" {
            let i = issue_mut(world, rid, n)?;
            i.updated_at = now;
            if let Some(p) = i.pull.as_mut() {
                p.requested_reviewers
                    .retain(|l| !l.eq_ignore_ascii_case(&actor));
            }
        }
        let r = &world.repos[&rid];
        let v = render_review(sim, world, r, &r.reviews[&id]);
        let hook = (state != "PENDING")
            .then(|| {
                pull_payload(
                    sim,
                    world,
                    rid,
                    n,
                    "submitted",
                    &actor,
                    json!({"review": v}),
                )
            })
            .flatten();
        Ok((axum::Json(v).into_response(), rid, hook))
    })?;
    issues::emit_all(
        &ctx.sim,
        rid,
        "pull_request_review",
        hook.into_iter().collect(),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Review comments
// ---------------------------------------------------------------------------------------------

/// Review comments in GitHub's list order: by id, or with `sort` (`created`, `updated`) in
/// `direction` (default asc); `since` keeps those updated at or after it.
fn sorted_review_comments<'r>(
    q: &std::collections::BTreeMap<String, String>,
    list: impl Iterator<Item = &'r ReviewComment>,
) -> Result<Vec<&'r ReviewComment>, ApiError> {
    let since = issues::since(q)?;
    let mut list: Vec<&ReviewComment> = list
        .filter(|c| issues::at_or_after(&c.updated_at, &since))
        .collect();
    if let Some(sort) = q.get("sort") {
        if sort == "updated" {
            list.sort_by_key(|c| (c.updated_at, c.id));
        } else {
            list.sort_by_key(|c| (c.created_at, c.id));
        }
        if descending(q, false) {
            list.reverse();
        }
    }
    Ok(list)
}

/// `GET /repos/{owner}/{repo}/pulls/comments`: every review comment of the repository.
async fn list_repo_review_comments(ctx: Ctx, Path((owner, repo)): RepoPath) -> ApiResult {
    let q = ctx.query();
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        let list = sorted_review_comments(&q, r.review_comments.values())?;
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |c| {
            render_review_comment(sim, world, r, c)
        })
    })
}

/// `GET /repos/{owner}/{repo}/pulls/comments/{comment_id}`.
async fn get_review_comment(ctx: Ctx, Path((owner, repo, id)): ItemPath) -> ApiResult {
    let id = number(&id)?;
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        let c = r.review_comments.get(&id).ok_or_else(ApiError::not_found)?;
        Ok(axum::Json(render_review_comment(sim, world, r, c)).into_response())
    })
}

/// `GET .../pulls/{pull_number}/comments`.
async fn list_pull_review_comments(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    let q = ctx.query();
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        pull_in(r, n)?;
        let list = sorted_review_comments(
            &q,
            r.review_comments.values().filter(|c| c.pull_number == n),
        )?;
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |c| {
            render_review_comment(sim, world, r, c)
        })
    })
}

#[derive(Deserialize)]
struct CreateReviewComment {
    body: String,
    commit_id: String,
    path: String,
    position: Option<u64>,
    side: Option<String>,
    line: Option<u64>,
    in_reply_to: Option<u64>,
    subject_type: Option<String>,
}

/// `POST .../pulls/{pull_number}/comments`: 201. Like GitHub, a comment outside a review gets a
/// one-comment `COMMENTED` review; `in_reply_to` replies in another comment's thread (its path,
/// line and commit). A `commit_id` that is not in the repository is 422; a comment needs a
/// `line` (or `position`) unless `subject_type` is `file`.
async fn create_review_comment(
    ctx: Ctx,
    Path((owner, repo, n)): ItemPath,
    raw: Bytes,
) -> ApiResult {
    let n = number(&n)?;
    let req: CreateReviewComment = body(&raw)?;
    if req.body.trim().is_empty() {
        return Err(ApiError::validation(
            "PullRequestReviewComment",
            "missing_field",
            "body",
        ));
    }
    let git_dir = ctx.with_repo(&owner, &repo, PARTICIPATE, |_, _, r| {
        pull_in(r, n)?;
        Ok(r.git_dir.clone())
    })?;
    let line = req.line.or(req.position);
    if req.in_reply_to.is_none() {
        if line.is_none() && req.subject_type.as_deref() != Some("file") {
            return Err(ApiError::validation(
                "PullRequestReviewComment",
                "missing_field",
                "line",
            ));
        }
        if gitrepo::resolve(&git_dir, &req.commit_id).is_none() {
            return Err(ApiError::validation_custom(
                "PullRequestReviewComment",
                "commit_id is not part of the pull request",
            ));
        }
    }
    let (resp, rid, hook) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |sim, world, rid| {
        let actor = ctx.actor(world)?;
        let r = &world.repos[&rid];
        pull_in(r, n)?;
        let thread = match req.in_reply_to {
            Some(parent) => {
                let c = r
                    .review_comments
                    .get(&parent)
                    .filter(|c| c.pull_number == n)
                    .ok_or_else(ApiError::not_found)?;
                (c.path.clone(), c.line, c.side.clone(), c.commit_id.clone())
            }
            None => (
                req.path.clone(),
                line,
                req.side.clone().unwrap_or_else(|| "RIGHT".into()),
                req.commit_id.clone(),
            ),
        };
        let id = add_review_comment(
            world,
            rid,
            n,
            actor.clone(),
            req.body,
            req.in_reply_to,
            thread,
        )?;
        let (resp, hook) = created_review_comment(sim, world, rid, id, &actor)?;
        Ok((resp, rid, hook))
    })?;
    issues::emit_all(
        &ctx.sim,
        rid,
        "pull_request_review_comment",
        hook.into_iter().collect(),
    );
    Ok(resp)
}

#[derive(Deserialize)]
struct ReviewCommentBody {
    body: String,
}

/// `POST .../pulls/{pull_number}/comments/{comment_id}/replies`: 201; a reply in the thread of
/// comment `comment_id` (its path, line and commit), in a one-comment `COMMENTED` review.
async fn reply_to_review_comment(
    ctx: Ctx,
    Path((owner, repo, n, parent)): SubPath,
    raw: Bytes,
) -> ApiResult {
    let n = number(&n)?;
    let parent = number(&parent)?;
    let req: ReviewCommentBody = body(&raw)?;
    if req.body.trim().is_empty() {
        return Err(ApiError::validation(
            "PullRequestReviewComment",
            "missing_field",
            "body",
        ));
    }
    let (resp, rid, hook) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |sim, world, rid| {
        let actor = ctx.actor(world)?;
        let r = &world.repos[&rid];
        pull_in(r, n)?;
        let c = r
            .review_comments
            .get(&parent)
            .filter(|c| c.pull_number == n)
            .ok_or_else(ApiError::not_found)?;
        let thread = (c.path.clone(), c.line, c.side.clone(), c.commit_id.clone());
        let id = add_review_comment(world, rid, n, actor.clone(), req.body, Some(parent), thread)?;
        let (resp, hook) = created_review_comment(sim, world, rid, id, &actor)?;
        Ok((resp, rid, hook))
    })?;
    issues::emit_all(
        &ctx.sim,
        rid,
        "pull_request_review_comment",
        hook.into_iter().collect(),
    );
    Ok(resp)
}

/// Adds a review comment in a new one-comment `COMMENTED` review (what GitHub makes for a
/// comment outside a review) and sets the pull request's `updated_at`. Returns its id.
fn add_review_comment(
    world: &mut World,
    rid: u64,
    n: u64,
    actor: String,
    body: String,
    in_reply_to: Option<u64>,
    (path, line, side, commit_id): (String, Option<u64>, String, String),
) -> Result<u64, ApiError> {
    let now = Utc::now();
    let review_id = world.id();
    let id = world.id();
    let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
    r.reviews.insert(
        review_id,
        Review {
            id: review_id,
            pull_number: n,
            user: actor.clone(),
            body: String::new(),
            state: "COMMENTED".into(),
            commit_id: commit_id.clone(),
            submitted_at: Some(now),
        },
    );
    r.review_comments.insert(
        id,
        ReviewComment {
            id,
            pull_number: n,
            review_id: Some(review_id),
            in_reply_to_id: in_reply_to,
            user: actor,
            body,
            path,
            line,
            side,
            commit_id,
            diff_hunk: hunk(line),
            created_at: now,
            updated_at: now,
        },
    );
    issue_mut(world, rid, n)?.updated_at = now;
    Ok(id)
}

/// 201 with review comment `id` and its `Location`.
fn created_review_comment(
    sim: &Sim,
    world: &World,
    rid: u64,
    id: u64,
    actor: &str,
) -> Result<(Response, Option<Value>), ApiError> {
    let r = &world.repos[&rid];
    let c = r.review_comments.get(&id).ok_or_else(ApiError::not_found)?;
    let v = render_review_comment(sim, world, r, c);
    let hook = pull_payload(
        sim,
        world,
        rid,
        c.pull_number,
        "created",
        actor,
        json!({ "comment": v }),
    );
    let mut resp = (StatusCode::CREATED, axum::Json(v)).into_response();
    if let Ok(h) =
        header::HeaderValue::from_str(&format!("{}/pulls/comments/{id}", repo_api(sim, r)))
    {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    Ok((resp, hook))
}

/// Checks that the caller may edit or delete review comment `id`: its author, or a writer.
/// Returns the actor.
fn may_edit_review_comment(
    ctx: &Ctx,
    world: &World,
    r: &Repo,
    id: u64,
) -> Result<String, ApiError> {
    let c = r.review_comments.get(&id).ok_or_else(ApiError::not_found)?;
    let actor = ctx.actor(world)?;
    if !c.user.eq_ignore_ascii_case(&actor) && caller_level(world, ctx, r) < Permission::Write {
        return Err(ApiError::forbidden(
            "Must have push access to this repository.",
        ));
    }
    Ok(actor)
}

/// `PATCH /repos/{owner}/{repo}/pulls/comments/{comment_id}`: the author or a writer; sets the
/// comment's and the pull request's `updated_at`.
async fn update_review_comment(
    ctx: Ctx,
    Path((owner, repo, id)): ItemPath,
    raw: Bytes,
) -> ApiResult {
    let id = number(&id)?;
    let req: ReviewCommentBody = body(&raw)?;
    if req.body.trim().is_empty() {
        return Err(ApiError::validation(
            "PullRequestReviewComment",
            "missing_field",
            "body",
        ));
    }
    let (resp, rid, hook) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |sim, world, rid| {
        let actor = may_edit_review_comment(&ctx, world, &world.repos[&rid], id)?;
        let now = Utc::now();
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        let c = r
            .review_comments
            .get_mut(&id)
            .ok_or_else(ApiError::not_found)?;
        let from = std::mem::replace(&mut c.body, req.body);
        c.updated_at = now;
        let n = c.pull_number;
        if let Some(i) = r.issues.get_mut(&n) {
            i.updated_at = now;
        }
        let r = &world.repos[&rid];
        let v = render_review_comment(sim, world, r, &r.review_comments[&id]);
        let fields = json!({"comment": v, "changes": {"body": {"from": from}}});
        let hook = pull_payload(sim, world, rid, n, "edited", &actor, fields);
        Ok((axum::Json(v).into_response(), rid, hook))
    })?;
    issues::emit_all(
        &ctx.sim,
        rid,
        "pull_request_review_comment",
        hook.into_iter().collect(),
    );
    Ok(resp)
}

/// `DELETE /repos/{owner}/{repo}/pulls/comments/{comment_id}`: 204.
async fn delete_review_comment(ctx: Ctx, Path((owner, repo, id)): ItemPath) -> ApiResult {
    let id = number(&id)?;
    let (rid, hook) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |sim, world, rid| {
        let actor = may_edit_review_comment(&ctx, world, &world.repos[&rid], id)?;
        let r = &world.repos[&rid];
        let c = &r.review_comments[&id];
        let v = render_review_comment(sim, world, r, c);
        let hook = pull_payload(
            sim,
            world,
            rid,
            c.pull_number,
            "deleted",
            &actor,
            json!({"comment": v}),
        );
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        if let Some(c) = r.review_comments.remove(&id)
            && let Some(i) = r.issues.get_mut(&c.pull_number)
        {
            i.updated_at = Utc::now();
        }
        Ok((rid, hook))
    })?;
    issues::emit_all(
        &ctx.sim,
        rid,
        "pull_request_review_comment",
        hook.into_iter().collect(),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Requested reviewers
// ---------------------------------------------------------------------------------------------

/// `GET .../pulls/{pull_number}/requested_reviewers`: users (teams are not simulated).
async fn get_requested_reviewers(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    ctx.with_repo(&owner, &repo, READ, |sim, world, r| {
        let (_, p) = pull_in(r, n)?;
        let users: Vec<Value> = p
            .requested_reviewers
            .iter()
            .map(|l| render::user(sim, world, l))
            .collect();
        Ok(axum::Json(json!({"users": users, "teams": []})).into_response())
    })
}

#[derive(Deserialize)]
struct RequestReviewers {
    #[serde(default)]
    reviewers: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    team_reviewers: Vec<String>,
}

/// `POST .../pulls/{pull_number}/requested_reviewers`: 201 with the pull request. Reviewers must
/// be collaborators (triage or more, or organisation members) and not the author, as GitHub
/// requires; records `review_requested` events. The refusal is a 422 without a body: GitHub's
/// description documents none for it.
async fn request_reviewers(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: RequestReviewers = body(&raw)?;
    let need = Need::triage("pull_requests");
    let done = ctx.with_repo_mut(&owner, &repo, need, |sim, world, rid| {
        let actor = ctx.actor(world)?;
        let mark = world.next_id;
        let r = &world.repos[&rid];
        let (i, _) = pull_in(r, n)?;
        let mut logins = Vec::new();
        for l in &req.reviewers {
            let member = world
                .org(&r.owner)
                .is_some_and(|o| o.members.keys().any(|m| m.eq_ignore_ascii_case(l)));
            match world.account(l) {
                _ if i.user.eq_ignore_ascii_case(l) => return Ok(None),
                Some(a) if member || world.user_permission(&a.login, r) >= Permission::Triage => {
                    logins.push(a.login.clone())
                }
                _ => return Ok(None),
            }
        }
        let now = Utc::now();
        for l in logins {
            let p = pull_mut(world, rid, n)?;
            if p.requested_reviewers.contains(&l) {
                continue;
            }
            p.requested_reviewers.push(l.clone());
            push_event(
                world,
                rid,
                n,
                &actor,
                "review_requested",
                json!({"review_requester": actor, "requested_reviewer": l}),
                None,
                now,
            );
        }
        issue_mut(world, rid, n)?.updated_at = now;
        let r = &world.repos[&rid];
        let (i, p) = pull_in(r, n)?;
        let repo_json = render::repo(sim, world, r, None);
        let v = render_pull_simple(sim, world, r, &repo_json, i, p);
        Ok(Some((v, rid, mark, actor)))
    })?;
    let Some((v, rid, mark, actor)) = done else {
        return Ok(StatusCode::UNPROCESSABLE_ENTITY.into_response());
    };
    issues::notify_issue(&ctx.sim, rid, n, mark, &actor, Vec::new());
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Seeding
// ---------------------------------------------------------------------------------------------

/// Seeds the repository's pull requests in seed order (numbers continue after the issues unless
/// a pull request gives its own): each with its conversation comments, reviews and their
/// comments, and `refs/pull/N/head`. `merged: true` merges the head into the base with a real
/// merge commit (dated at the pull request's last activity) and moves the base branch.
pub fn seed_repo(sim: &Sim, rid: u64, seed: &RepoSeed) -> anyhow::Result<()> {
    if seed.pulls.is_empty() {
        return Ok(());
    }
    let (git_dir, default_branch) = {
        let world = sim.world.lock();
        let r = world.repos.get(&rid).context("repository vanished")?;
        (r.git_dir.clone(), r.default_branch.clone())
    };
    for (k, p) in seed.pulls.iter().enumerate() {
        seed_pull(sim, rid, &git_dir, &default_branch, p)
            .with_context(|| format!("pull request {k} ({:?})", p.title))?;
    }
    Ok(())
}

/// Seeds one pull request (see [`seed_repo`]).
fn seed_pull(
    sim: &Sim,
    rid: u64,
    git_dir: &FsPath,
    default_branch: &str,
    s: &PullSeed,
) -> anyhow::Result<()> {
    let base = s.base.clone().unwrap_or_else(|| default_branch.to_string());
    let head_sha = gitrepo::resolve(git_dir, &format!("refs/heads/{}", s.head))
        .with_context(|| format!("head branch {:?} does not exist", s.head))?;
    let base_sha = gitrepo::resolve(git_dir, &format!("refs/heads/{base}"))
        .with_context(|| format!("base branch {base:?} does not exist"))?;
    let now = Utc::now();
    let created_at = s.created_at.unwrap_or(now);
    // The last activity: comments may be dated after the pull request was opened.
    let last = s
        .comments
        .iter()
        .filter_map(|c| c.created_at)
        .fold(created_at, DateTime::max);
    let (first, user, owner, author) = {
        let world = sim.world.lock();
        let first = issues::first_user(&world)?;
        let user = issues::seed_login(&world, &s.user, &first)?;
        let owner = world.repos[&rid].owner.clone();
        let author = signature_of(sim, &world, &first, last);
        (first, user, owner, author)
    };
    let merge_sha = if s.merged {
        let message = format!("Merge pull request from {owner}/{}\n\n{}", s.head, s.title);
        let sha = gitrepo::merge(
            git_dir,
            &base_sha,
            &head_sha,
            MergeMethod::Merge,
            &message,
            &author,
            &web_committer(last),
        )?
        .with_context(|| format!("{} does not merge cleanly into {base}", s.head))?;
        gitrepo::update_ref(
            git_dir,
            &format!("refs/heads/{base}"),
            &sha,
            Some(&base_sha),
        )?;
        Some(sha)
    } else {
        None
    };
    let closed = match s.state.as_deref() {
        None | Some("open") => s.merged,
        Some("closed") => true,
        Some(other) => bail!("state {other:?} (open or closed)"),
    };

    let number = {
        let mut world = sim.world.lock();
        let labels = issues::seed_labels(&mut world, rid, &s.labels);
        let milestone = issues::seed_milestone(&world, rid, &s.milestone)?;
        let assignees = s
            .assignees
            .iter()
            .map(|a| issues::seed_login(&world, &Some(a.clone()), &first))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let issue_id = world.id();
        let pull_id = world.id();
        let r = world.repos.get_mut(&rid).context("repository vanished")?;
        let number = issues::claim_number(r, s.number)?;
        r.issues.insert(
            number,
            Issue {
                labels,
                milestone,
                assignees,
                ..Issue::open(
                    issue_id,
                    number,
                    s.title.clone(),
                    s.body.clone(),
                    user.clone(),
                    created_at,
                    Some(Pull {
                        id: pull_id,
                        head_ref: s.head.clone(),
                        head_sha: head_sha.clone(),
                        head_repo: Some(rid),
                        base_ref: base.clone(),
                        base_sha: base_sha.clone(),
                        draft: s.draft,
                        merged: false,
                        merged_at: None,
                        merged_by: None,
                        merge_commit_sha: None,
                        maintainer_can_modify: true,
                        requested_reviewers: Vec::new(),
                    }),
                )
            },
        );
        r.version += 1;
        issues::seed_comments(&mut world, rid, number, &s.comments, 0, &first)?;
        for (k, rv) in s.reviews.iter().enumerate() {
            let state = match rv.state.to_ascii_uppercase().as_str() {
                "APPROVED" | "APPROVE" => "APPROVED",
                "CHANGES_REQUESTED" | "REQUEST_CHANGES" => "CHANGES_REQUESTED",
                "COMMENTED" | "COMMENT" => "COMMENTED",
                other => {
                    bail!("review {k}: state {other:?} (APPROVED, CHANGES_REQUESTED or COMMENTED)")
                }
            };
            let reviewer = issues::seed_login(&world, &rv.user, &first)?;
            let review_id = world.id();
            let mut comments = Vec::new();
            for c in &rv.comments {
                comments.push(ReviewComment {
                    id: world.id(),
                    pull_number: number,
                    review_id: Some(review_id),
                    in_reply_to_id: None,
                    user: issues::seed_login(&world, &c.user, &reviewer)?,
                    body: c.body.clone(),
                    path: c.path.clone(),
                    line: c.line,
                    side: "RIGHT".into(),
                    commit_id: head_sha.clone(),
                    diff_hunk: hunk(c.line),
                    created_at: last,
                    updated_at: last,
                });
            }
            let r = world.repos.get_mut(&rid).context("repository vanished")?;
            r.reviews.insert(
                review_id,
                Review {
                    id: review_id,
                    pull_number: number,
                    user: reviewer,
                    body: rv.body.clone().unwrap_or_default(),
                    state: state.into(),
                    commit_id: head_sha.clone(),
                    submitted_at: Some(last),
                },
            );
            for c in comments {
                r.review_comments.insert(c.id, c);
            }
        }
        let err = |e: ApiError| anyhow::anyhow!("{}", e.message);
        if let Some(sha) = &merge_sha {
            record_merge(
                &mut world, rid, number, &first, sha, &head_sha, &base_sha, last,
            )
            .map_err(err)?;
        } else if closed {
            let i = issue_mut(&mut world, rid, number).map_err(err)?;
            i.state = "closed".into();
            i.closed_at = Some(last);
            i.closed_by = Some(user.clone());
            i.updated_at = last;
            push_event(
                &mut world,
                rid,
                number,
                &user,
                "closed",
                json!({}),
                None,
                last,
            );
        } else {
            issue_mut(&mut world, rid, number).map_err(err)?.updated_at = last;
        }
        number
    };
    gitrepo::update_ref(
        git_dir,
        &format!("refs/pull/{number}/head"),
        &head_sha,
        None,
    )?;
    Ok(())
}
