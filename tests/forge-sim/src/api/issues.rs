//! Issues and everything hanging off them, as GitHub's REST API serves them: issues (pull
//! requests included, as GitHub lists them), comments, events, timelines, labels, assignees,
//! locks, and the repository's labels and milestones. Also the seeding of labels, milestones and
//! issues (see [`seed_repo`]).
//!
//! Who may do what follows GitHub: anyone who can read a repository may open issues and comment
//! (an installation needs `issues: write`); the author may edit and close their own issue;
//! labels, assignees, milestones, locks and other people's issues need triage; labels and
//! milestones of the repository need write. Labels, assignees and a milestone sent by someone
//! below triage are dropped silently, as GitHub drops them.
//!
//! Every change to an issue sets its `updated_at` (so `since` finds it) and records the events
//! GitHub records (`closed`, `reopened`, `labeled`, `unlabeled`, `assigned`, `unassigned`,
//! `milestoned`, `demilestoned`, `renamed`, `locked`, `unlocked`). Changes send GitHub's
//! webhooks (`issues`, `issue_comment`; `pull_request` for a pull request's number) through
//! [`crate::webhooks::emit`] once the world lock is released; the `issues` actions are derived
//! from the events the change recorded ([`notify_issue`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use super::commits::{encode_segment, paginate_lazy, parse_time};
use super::{Ctx, body};
use crate::Sim;
use crate::auth::Need;
use crate::error::{ApiError, ApiResult};
use crate::render;
use crate::seed::{CommentSeed, IssueSeed, RepoSeed};
use crate::state::{
    AccountKind, Comment, Issue, IssueEvent, Label, Milestone, OrgRole, Permission, Principal,
    Repo, World,
};

pub fn routes() -> Router {
    const I: &str = "/repos/{owner}/{repo}/issues/{issue_number}";
    Router::new()
        .route(
            "/repos/{owner}/{repo}/issues",
            get(list_issues).post(create_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments",
            get(list_repo_comments),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            get(get_comment)
                .patch(update_comment)
                .delete(delete_comment),
        )
        .route("/repos/{owner}/{repo}/issues/events", get(list_repo_events))
        .route(
            "/repos/{owner}/{repo}/issues/events/{event_id}",
            get(get_event),
        )
        .route(I, get(get_issue).patch(update_issue))
        .route(
            &format!("{I}/lock"),
            axum::routing::put(lock).delete(unlock),
        )
        .route(
            &format!("{I}/comments"),
            get(list_comments).post(create_comment),
        )
        .route(&format!("{I}/events"), get(list_issue_events))
        .route(&format!("{I}/timeline"), get(timeline))
        .route(
            &format!("{I}/labels"),
            get(list_issue_labels)
                .post(add_issue_labels)
                .put(set_issue_labels_route)
                .delete(clear_issue_labels),
        )
        .route(&format!("{I}/labels/{{name}}"), delete(remove_issue_label))
        .route(
            &format!("{I}/assignees"),
            post(add_assignees).delete(remove_assignees),
        )
        .route(
            "/repos/{owner}/{repo}/labels",
            get(list_labels).post(create_label),
        )
        .route(
            "/repos/{owner}/{repo}/labels/{name}",
            get(get_label).patch(update_label).delete(delete_label),
        )
        .route(
            "/repos/{owner}/{repo}/milestones",
            get(list_milestones).post(create_milestone),
        )
        .route(
            "/repos/{owner}/{repo}/milestones/{milestone_number}",
            get(get_milestone)
                .patch(update_milestone)
                .delete(delete_milestone),
        )
}

/// Opening an issue or commenting: read access for a user (GitHub lets anyone who can see a
/// repository do it), `issues: write` for an installation.
pub const PARTICIPATE: Need = Need {
    user: Permission::Read,
    app_permission: "issues",
    write: true,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by the pull request routes)
// ---------------------------------------------------------------------------------------------

/// A number in a path: anything else is GitHub's 404.
pub fn number(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found())
}

/// `https://HOST/api/v3/repos/OWNER/NAME`.
pub fn repo_api(sim: &Sim, r: &Repo) -> String {
    format!("{}/repos/{}/{}", sim.api_base, r.owner, r.name)
}

/// `https://HOST/OWNER/NAME`.
pub fn repo_html(sim: &Sim, r: &Repo) -> String {
    format!("{}/{}/{}", sim.web_base, r.owner, r.name)
}

/// `since` (ISO 8601) from a query, if given; a malformed value is 422.
pub fn since(
    q: &std::collections::BTreeMap<String, String>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    match q.get("since").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            ApiError::invalid_body(format!("since: {s:?} is not an ISO 8601 timestamp"))
        }),
    }
}

/// Whether `t` is at or after `since`, at GitHub's one-second resolution.
pub fn at_or_after(t: &DateTime<Utc>, since: &Option<DateTime<Utc>>) -> bool {
    since.is_none_or(|s| {
        t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(*t)
            >= s.duration_trunc(TimeDelta::seconds(1)).unwrap_or(s)
    })
}

/// `direction` from a query: `asc` or `desc`, else `default_desc`.
pub fn descending(q: &std::collections::BTreeMap<String, String>, default_desc: bool) -> bool {
    match q.get("direction").map(String::as_str) {
        Some("asc") => false,
        Some("desc") => true,
        _ => default_desc,
    }
}

/// GitHub's `author_association` of `login` on `repo`.
pub fn author_association(world: &World, repo: &Repo, login: &str) -> &'static str {
    if repo.owner.eq_ignore_ascii_case(login) {
        return "OWNER";
    }
    if world
        .org(&repo.owner)
        .is_some_and(|o| o.members.keys().any(|m| m.eq_ignore_ascii_case(login)))
    {
        return "MEMBER";
    }
    if repo
        .collaborators
        .keys()
        .any(|c| c.eq_ignore_ascii_case(login))
    {
        return "COLLABORATOR";
    }
    "NONE"
}

/// What the caller may do beyond opening and commenting: a user's permission on the repository;
/// an installation, which got here through its app permission check, counts as a writer.
pub fn caller_level(world: &World, ctx: &Ctx, repo: &Repo) -> Permission {
    match &ctx.caller.principal {
        Some(Principal::User(l)) => world.user_permission(l, repo),
        Some(Principal::Installation(_)) => Permission::Write,
        _ => Permission::None,
    }
}

/// The first seeded user: who seeded items are by when the seed does not say.
pub fn first_user(world: &World) -> anyhow::Result<String> {
    world
        .accounts
        .values()
        .filter(|a| a.kind == AccountKind::User)
        .min_by_key(|a| a.id)
        .map(|a| a.login.clone())
        .context("no user is seeded")
}

/// A seed's login, checked against the seeded accounts (spelled as the account is).
pub fn seed_login(world: &World, login: &Option<String>, default: &str) -> anyhow::Result<String> {
    match login {
        None => Ok(default.to_string()),
        Some(l) => world
            .account(l)
            .map(|a| a.login.clone())
            .with_context(|| format!("user {l:?} is not seeded")),
    }
}

/// The next free issue or pull request number of `repo` (the two share one sequence).
pub fn take_number(repo: &mut Repo) -> u64 {
    while repo.issues.contains_key(&repo.next_number) {
        repo.next_number += 1;
    }
    let n = repo.next_number;
    repo.next_number += 1;
    n
}

/// Claims `number` when a seed gives one; it must be free.
pub fn claim_number(repo: &mut Repo, number: Option<u64>) -> anyhow::Result<u64> {
    match number {
        None => Ok(take_number(repo)),
        Some(0) => bail!("number 0 is not a valid issue number"),
        Some(n) => {
            if repo.issues.contains_key(&n) {
                bail!("number {n} is already taken");
            }
            if n >= repo.next_number {
                repo.next_number = n + 1;
            }
            Ok(n)
        }
    }
}

fn gone() -> ApiError {
    ApiError::new(StatusCode::GONE, "Issues are disabled for this repo")
}

/// Resolves the repository of an issue route and checks `need`. For an installation, a pull
/// request's number also passes with the same level of `pull_requests` (GitHub accepts either
/// permission on the issue routes of a pull request).
fn issue_repo(
    ctx: &Ctx,
    world: &World,
    owner: &str,
    name: &str,
    number: u64,
    need: Need,
) -> Result<u64, ApiError> {
    match ctx.repo_id(world, owner, name, need) {
        Ok(id) => Ok(id),
        Err(e) => {
            let is_pull = world
                .repo_id(owner, name)
                .and_then(|id| world.repos[&id].issues.get(&number))
                .is_some_and(|i| i.pull.is_some());
            if is_pull
                && need.app_permission == "issues"
                && e.status == StatusCode::FORBIDDEN
                && matches!(ctx.caller.principal, Some(Principal::Installation(_)))
            {
                let alt = Need {
                    app_permission: "pull_requests",
                    ..need
                };
                return ctx.repo_id(world, owner, name, alt).map_err(|_| e);
            }
            Err(e)
        }
    }
}

/// The issue `number` of `repo`: 404 when there is none, 410 for an issue (not a pull request)
/// of a repository whose issues are disabled.
fn issue_in(repo: &Repo, number: u64) -> Result<&Issue, ApiError> {
    let i = repo.issues.get(&number).ok_or_else(ApiError::not_found)?;
    if i.pull.is_none() && !repo.has_issues {
        return Err(gone());
    }
    Ok(i)
}

/// Issue (or pull request) `number` of repository `rid`, to change; 404 when there is none.
pub fn issue_mut(world: &mut World, rid: u64, number: u64) -> Result<&mut Issue, ApiError> {
    world
        .repos
        .get_mut(&rid)
        .and_then(|r| r.issues.get_mut(&number))
        .ok_or_else(ApiError::not_found)
}

/// Runs `f` on an issue under the world lock after the read checks.
fn read_issue<T>(
    ctx: &Ctx,
    owner: &str,
    name: &str,
    number: u64,
    f: impl FnOnce(&Sim, &World, &Repo, &Issue) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let world = ctx.sim.world.lock();
    let id = issue_repo(ctx, &world, owner, name, number, Need::read("issues"))?;
    let repo = &world.repos[&id];
    let issue = issue_in(repo, number)?;
    f(&ctx.sim, &world, repo, issue)
}

/// Webhooks a change sends once the world lock is released.
#[derive(Default)]
pub struct Hooks {
    /// `issues`/`pull_request` actions beyond the recorded issue events (`opened`, `edited`
    /// with its `changes`).
    pub actions: Vec<(&'static str, Value)>,
    /// Payloads ready to send: (event, payload).
    pub ready: Vec<(&'static str, Value)>,
}

impl Hooks {
    /// Sends them: [`notify_issue`] for issue `number`'s actions and events since `mark`, then
    /// the ready payloads.
    pub fn send(self, sim: &Arc<Sim>, rid: u64, number: u64, mark: u64, actor: &str) {
        notify_issue(sim, rid, number, mark, actor, self.actions);
        for (event, p) in self.ready {
            crate::webhooks::emit(sim, rid, event, p);
        }
    }
}

/// Runs a change to an issue under the world lock after checking `need`; `f` gets the world,
/// the repository id, the actor and the webhooks to send. The repository's `version` is bumped
/// when `f` succeeds; the webhooks go out after the lock is released.
fn write_issue<T>(
    ctx: &Ctx,
    owner: &str,
    name: &str,
    number: u64,
    need: Need,
    f: impl FnOnce(&Sim, &mut World, u64, String, &mut Hooks) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut hooks = Hooks::default();
    let (out, id, mark, actor) = {
        let mut world = ctx.sim.world.lock();
        let id = issue_repo(ctx, &world, owner, name, number, need)?;
        issue_in(&world.repos[&id], number)?;
        let actor = ctx.actor(&world)?;
        let mark = world.next_id;
        let out = f(&ctx.sim, &mut world, id, actor.clone(), &mut hooks)?;
        if let Some(r) = world.repos.get_mut(&id) {
            r.version += 1;
        }
        (out, id, mark, actor)
    };
    hooks.send(&ctx.sim, id, number, mark, &actor);
    Ok(out)
}

/// Comments per issue number.
pub fn comment_counts(repo: &Repo) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for c in repo.comments.values() {
        *m.entry(c.issue_number).or_insert(0) += 1;
    }
    m
}

fn reactions(url: &str) -> Value {
    json!({
        "url": format!("{url}/reactions"), "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
        "confused": 0, "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0,
    })
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// GitHub's `label`.
pub fn render_label(sim: &Sim, repo: &Repo, l: &Label) -> Value {
    json!({
        "id": l.id,
        "node_id": render::node_id("Label", l.id),
        "url": format!("{}/labels/{}", repo_api(sim, repo), encode_segment(&l.name)),
        "name": l.name,
        "color": l.color,
        "description": l.description,
        "default": l.default,
    })
}

/// The labels of an issue, as objects, in the order they were applied.
pub fn render_issue_labels(sim: &Sim, repo: &Repo, i: &Issue) -> Vec<Value> {
    i.labels
        .iter()
        .filter_map(|n| repo.label(n))
        .map(|l| render_label(sim, repo, l))
        .collect()
}

/// GitHub's `milestone`, with `open_issues` and `closed_issues` counted from the issues (pull
/// requests included, as GitHub counts them).
pub fn render_milestone(sim: &Sim, world: &World, repo: &Repo, m: &Milestone) -> Value {
    let (open, closed) = repo
        .issues
        .values()
        .filter(|i| i.milestone == Some(m.number))
        .fold((0u64, 0u64), |(o, c), i| {
            if i.state == "open" {
                (o + 1, c)
            } else {
                (o, c + 1)
            }
        });
    let url = format!("{}/milestones/{}", repo_api(sim, repo), m.number);
    json!({
        "url": url,
        "html_url": format!("{}/milestone/{}", repo_html(sim, repo), m.number),
        "labels_url": format!("{url}/labels"),
        "id": m.id,
        "node_id": render::node_id("Milestone", m.id),
        "number": m.number,
        "state": m.state,
        "title": m.title,
        "description": m.description,
        "creator": render::user(sim, world, &m.creator),
        "open_issues": open,
        "closed_issues": closed,
        "created_at": render::ts(&m.created_at),
        "updated_at": render::ts(&m.updated_at),
        "closed_at": render::ts_opt(&m.closed_at),
        "due_on": render::ts_opt(&m.due_on),
    })
}

/// Milestone `number` of `repo`, or `null`.
fn milestone_of(sim: &Sim, world: &World, repo: &Repo, number: Option<u64>) -> Value {
    number
        .and_then(|n| repo.milestones.get(&n))
        .map(|m| render_milestone(sim, world, repo, m))
        .unwrap_or(Value::Null)
}

/// GitHub's `issue` (a pull request's too, with its `pull_request` object). `comments` is the
/// issue's comment count.
pub fn render_issue(sim: &Sim, world: &World, repo: &Repo, i: &Issue, comments: usize) -> Value {
    let api = repo_api(sim, repo);
    let html = repo_html(sim, repo);
    let url = format!("{api}/issues/{}", i.number);
    let html_url = if i.pull.is_some() {
        format!("{html}/pull/{}", i.number)
    } else {
        format!("{html}/issues/{}", i.number)
    };
    let assignees: Vec<Value> = i
        .assignees
        .iter()
        .map(|a| render::user(sim, world, a))
        .collect();
    let mut v = json!({
        "id": i.id,
        "node_id": render::node_id("Issue", i.id),
        "url": url,
        "repository_url": api,
        "labels_url": format!("{url}/labels{{/name}}"),
        "comments_url": format!("{url}/comments"),
        "events_url": format!("{url}/events"),
        "html_url": html_url,
        "number": i.number,
        "state": i.state,
        "state_reason": i.state_reason,
        "title": i.title,
        "body": i.body,
        "user": render::user(sim, world, &i.user),
        "labels": render_issue_labels(sim, repo, i),
        "assignee": assignees.first().cloned().unwrap_or(Value::Null),
        "assignees": assignees,
        "milestone": milestone_of(sim, world, repo, i.milestone),
        "locked": i.locked,
        "active_lock_reason": i.active_lock_reason,
        "comments": comments,
        "closed_at": render::ts_opt(&i.closed_at),
        "created_at": render::ts(&i.created_at),
        "updated_at": render::ts(&i.updated_at),
        "closed_by": render::user_opt(sim, world, &i.closed_by),
        "author_association": author_association(world, repo, &i.user),
        "timeline_url": format!("{url}/timeline"),
        "performed_via_github_app": null,
        "reactions": reactions(&url),
    });
    if let Some(p) = &i.pull {
        v["pull_request"] = json!({
            "url": format!("{api}/pulls/{}", i.number),
            "html_url": format!("{html}/pull/{}", i.number),
            "diff_url": format!("{html}/pull/{}.diff", i.number),
            "patch_url": format!("{html}/pull/{}.patch", i.number),
            "merged_at": render::ts_opt(&p.merged_at),
        });
        v["draft"] = Value::Bool(p.draft);
    }
    v
}

/// GitHub's `issue-comment`.
pub fn render_comment(sim: &Sim, world: &World, repo: &Repo, c: &Comment) -> Value {
    let api = repo_api(sim, repo);
    let kind = if repo
        .issues
        .get(&c.issue_number)
        .is_some_and(|i| i.pull.is_some())
    {
        "pull"
    } else {
        "issues"
    };
    let url = format!("{api}/issues/comments/{}", c.id);
    json!({
        "id": c.id,
        "node_id": render::node_id("IssueComment", c.id),
        "url": url,
        "html_url": format!("{}/{kind}/{}#issuecomment-{}", repo_html(sim, repo), c.issue_number, c.id),
        "issue_url": format!("{api}/issues/{}", c.issue_number),
        "body": c.body,
        "user": render::user(sim, world, &c.user),
        "created_at": render::ts(&c.created_at),
        "updated_at": render::ts(&c.updated_at),
        "author_association": author_association(world, repo, &c.user),
        "performed_via_github_app": null,
        "reactions": reactions(&url),
    })
}

/// Keys of an event's `extra` that hold a login, rendered as a user.
const USER_FIELDS: &[&str] = &[
    "assignee",
    "assigner",
    "review_requester",
    "requested_reviewer",
];

/// GitHub's `issue-event` (and each variant of `issue-event-for-issue`): the common fields plus
/// the event's own (`label`, `milestone`, `rename`, `assignee`, `lock_reason`, ...).
pub fn render_event(sim: &Sim, world: &World, repo: &Repo, e: &IssueEvent) -> Value {
    let api = repo_api(sim, repo);
    let mut v = json!({
        "id": e.id,
        "node_id": render::node_id("IssueEvent", e.id),
        "url": format!("{api}/issues/events/{}", e.id),
        "actor": render::user(sim, world, &e.actor),
        "event": e.event,
        "commit_id": e.commit_id,
        "commit_url": e.commit_id.as_ref().map(|c| format!("{api}/commits/{c}")),
        "created_at": render::ts(&e.created_at),
        "performed_via_github_app": null,
    });
    for (k, val) in &e.extra {
        let val = match (USER_FIELDS.contains(&k.as_str()), val) {
            (true, Value::String(login)) => render::user(sim, world, login),
            _ => val.clone(),
        };
        v[k.as_str()] = val;
    }
    v
}

/// A pull request review as a timeline item (`timeline-reviewed-event`).
fn render_timeline_review(
    sim: &Sim,
    world: &World,
    repo: &Repo,
    r: &crate::state::Review,
) -> Value {
    let mut v = crate::api::pulls::render_review(sim, world, repo, r);
    v["event"] = json!("reviewed");
    v["state"] = json!(r.state.to_ascii_lowercase());
    v
}

// ---------------------------------------------------------------------------------------------
// Changes (with their events)
// ---------------------------------------------------------------------------------------------

/// Records an issue event.
#[allow(clippy::too_many_arguments)]
pub fn push_event(
    world: &mut World,
    rid: u64,
    number: u64,
    actor: &str,
    event: &str,
    extra: Value,
    commit_id: Option<String>,
    at: DateTime<Utc>,
) {
    let id = world.id();
    let extra = match extra {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(r) = world.repos.get_mut(&rid) {
        r.events.insert(
            id,
            IssueEvent {
                id,
                issue_number: number,
                actor: actor.to_string(),
                event: event.to_string(),
                commit_id,
                extra,
                created_at: at,
            },
        );
    }
}

/// Sets an issue's labels to `names` (matched case-insensitively; labels that do not exist yet
/// are created, as GitHub creates them), recording `labeled` and `unlabeled` events.
pub fn apply_labels(
    world: &mut World,
    rid: u64,
    number: u64,
    names: &[String],
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let mut wanted: Vec<String> = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let existing = world.repos[&rid].label(n).map(|l| l.name.clone());
        let name = match existing {
            Some(name) => name,
            None => {
                let id = world.id();
                let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
                r.labels.insert(
                    n.to_string(),
                    Label {
                        id,
                        name: n.to_string(),
                        color: "ededed".into(),
                        description: None,
                        default: false,
                    },
                );
                n.to_string()
            }
        };
        if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    let old = issue_mut(world, rid, number)?.labels.clone();
    let color = |world: &World, n: &str| {
        world.repos[&rid]
            .label(n)
            .map(|l| l.color.clone())
            .unwrap_or_else(|| "ededed".into())
    };
    for n in old.iter().filter(|n| !wanted.contains(n)) {
        let c = color(world, n);
        push_event(
            world,
            rid,
            number,
            actor,
            "unlabeled",
            json!({"label": {"name": n, "color": c}}),
            None,
            at,
        );
    }
    for n in wanted.iter().filter(|n| !old.contains(n)) {
        let c = color(world, n);
        push_event(
            world,
            rid,
            number,
            actor,
            "labeled",
            json!({"label": {"name": n, "color": c}}),
            None,
            at,
        );
    }
    let issue = issue_mut(world, rid, number)?;
    if issue.labels != wanted {
        issue.labels = wanted;
        issue.updated_at = at;
    }
    Ok(())
}

/// Whether `login` can be assigned to issue `number`: an account with triage on the repository,
/// a member of its organisation, or someone already in the conversation (GitHub's rule).
/// Returns the login as the account spells it.
fn assignable(world: &World, repo: &Repo, number: u64, login: &str) -> Option<String> {
    let a = world.account(login)?;
    if a.kind == AccountKind::Organization {
        return None;
    }
    let login = a.login.clone();
    let member = world.org(&repo.owner).is_some_and(|o| {
        o.members
            .iter()
            .any(|(m, r)| m.eq_ignore_ascii_case(&login) && *r >= OrgRole::Member)
    });
    let participant = repo
        .issues
        .get(&number)
        .is_some_and(|i| i.user.eq_ignore_ascii_case(&login))
        || repo
            .comments
            .values()
            .any(|c| c.issue_number == number && c.user.eq_ignore_ascii_case(&login));
    (world.user_permission(&login, repo) >= Permission::Triage || member || participant)
        .then_some(login)
}

/// Sets an issue's assignees to those of `logins` that can be assigned (others are dropped
/// silently, as GitHub drops them; at most 10), recording `assigned` and `unassigned` events.
pub fn apply_assignees(
    world: &mut World,
    rid: u64,
    number: u64,
    logins: &[String],
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let mut wanted: Vec<String> = Vec::new();
    for l in logins {
        if let Some(l) = assignable(world, &world.repos[&rid], number, l)
            && !wanted.contains(&l)
            && wanted.len() < 10
        {
            wanted.push(l);
        }
    }
    let old = issue_mut(world, rid, number)?.assignees.clone();
    for l in old.iter().filter(|l| !wanted.contains(l)) {
        push_event(
            world,
            rid,
            number,
            actor,
            "unassigned",
            json!({"assignee": l, "assigner": actor}),
            None,
            at,
        );
    }
    for l in wanted.iter().filter(|l| !old.contains(l)) {
        push_event(
            world,
            rid,
            number,
            actor,
            "assigned",
            json!({"assignee": l, "assigner": actor}),
            None,
            at,
        );
    }
    let issue = issue_mut(world, rid, number)?;
    if issue.assignees != wanted {
        issue.assignees = wanted;
        issue.updated_at = at;
    }
    Ok(())
}

/// Sets (or clears) an issue's milestone, recording `milestoned`/`demilestoned`. An unknown
/// milestone is 422.
pub fn apply_milestone(
    world: &mut World,
    rid: u64,
    number: u64,
    milestone: Option<u64>,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let title = |world: &World, n: u64| {
        world.repos[&rid]
            .milestones
            .get(&n)
            .map(|m| m.title.clone())
    };
    if let Some(n) = milestone
        && title(world, n).is_none()
    {
        return Err(ApiError::validation("Issue", "invalid", "milestone"));
    }
    let old = issue_mut(world, rid, number)?.milestone;
    if old == milestone {
        return Ok(());
    }
    if let Some(o) = old
        && let Some(t) = title(world, o)
    {
        push_event(
            world,
            rid,
            number,
            actor,
            "demilestoned",
            json!({"milestone": {"title": t}}),
            None,
            at,
        );
    }
    if let Some(n) = milestone
        && let Some(t) = title(world, n)
    {
        push_event(
            world,
            rid,
            number,
            actor,
            "milestoned",
            json!({"milestone": {"title": t}}),
            None,
            at,
        );
    }
    let issue = issue_mut(world, rid, number)?;
    issue.milestone = milestone;
    issue.updated_at = at;
    Ok(())
}

/// Closes or reopens an issue: `closed_at`/`closed_by` and `state_reason` (`completed` unless
/// given; `reopened` on reopening) as GitHub sets them, with a `closed` or `reopened` event.
/// Returns whether the state changed.
pub fn apply_state(
    world: &mut World,
    rid: u64,
    number: u64,
    state: &str,
    reason: Option<String>,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let issue = issue_mut(world, rid, number)?;
    if issue.state == state {
        if state == "closed"
            && let Some(r) = reason
        {
            issue.state_reason = Some(r);
            issue.updated_at = at;
        }
        return Ok(false);
    }
    issue.state = state.to_string();
    issue.updated_at = at;
    if state == "closed" {
        issue.closed_at = Some(at);
        issue.closed_by = Some(actor.to_string());
        issue.state_reason = Some(reason.unwrap_or_else(|| "completed".into()));
    } else {
        issue.closed_at = None;
        issue.closed_by = None;
        issue.state_reason = Some("reopened".into());
    }
    let event = if state == "closed" {
        "closed"
    } else {
        "reopened"
    };
    push_event(world, rid, number, actor, event, json!({}), None, at);
    Ok(true)
}

/// Renames an issue, with a `renamed` event.
pub fn apply_title(
    world: &mut World,
    rid: u64,
    number: u64,
    title: &str,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let issue = issue_mut(world, rid, number)?;
    if issue.title == title {
        return Ok(());
    }
    let from = std::mem::replace(&mut issue.title, title.to_string());
    issue.updated_at = at;
    push_event(
        world,
        rid,
        number,
        actor,
        "renamed",
        json!({"rename": {"from": from, "to": title}}),
        None,
        at,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

/// Whether any webhook of repository `rid` listens to `event` (so payloads are only rendered
/// when someone will receive them).
pub fn has_targets(world: &World, rid: u64, event: &str) -> bool {
    world
        .repos
        .get(&rid)
        .is_some_and(|r| !crate::webhooks::targets(world, r, event).is_empty())
}

/// `{action, KEY: object, repository, sender, organization}` plus `fields`: the payload of GitHub's issue and
/// pull request webhooks.
pub fn payload(
    sim: &Sim,
    world: &World,
    repo: &Repo,
    action: &str,
    (key, object): (&str, Value),
    actor: &str,
    fields: Value,
) -> Value {
    let mut v = json!({
        "action": action,
        key: object,
        "repository": render::repo(sim, world, repo, None),
        "sender": render::user(sim, world, actor),
    });
    if world.org(&repo.owner).is_some() {
        v["organization"] = render::user(sim, world, &repo.owner);
    }
    if let (Some(o), Value::Object(f)) = (v.as_object_mut(), fields) {
        o.extend(f);
    }
    v
}

/// Sends the `issues` (or, for a pull request, `pull_request`) webhooks of a change to issue
/// `number`: the `extra` actions first (`opened`, `edited` with its `changes`), then one per
/// issue event recorded since `mark` (the world's `next_id` before the change): `closed`,
/// `reopened`, `labeled`, `assigned`, `milestoned`, `locked`, a rename as `edited`, ... Call it
/// with the world lock released: delivery takes it, and a pull request's counts need git.
pub fn notify_issue(
    sim: &Arc<Sim>,
    rid: u64,
    number: u64,
    mark: u64,
    actor: &str,
    extra: Vec<(&str, Value)>,
) {
    let (event, pull) = {
        let world = sim.world.lock();
        let Some(r) = world.repos.get(&rid) else {
            return;
        };
        let Some(i) = r.issues.get(&number) else {
            return;
        };
        let event = if i.pull.is_some() {
            "pull_request"
        } else {
            "issues"
        };
        if !has_targets(&world, rid, event) {
            return;
        }
        let pull = i
            .pull
            .clone()
            .map(|p| (r.git_dir.clone(), p, i.state == "open"));
        (event, pull)
    };
    let stats = pull.map(|(dir, p, open)| crate::api::pulls::stats(&dir, &p, open));
    let payloads: Vec<Value> = {
        let world = sim.world.lock();
        let Some(r) = world.repos.get(&rid) else {
            return;
        };
        let Some(i) = r.issues.get(&number) else {
            return;
        };
        let (key, object) = match (&i.pull, &stats) {
            (Some(p), Some(st)) => {
                let repo_json = render::repo(sim, &world, r, None);
                let v = crate::api::pulls::render_pull(sim, &world, r, &repo_json, i, p, st);
                ("pull_request", v)
            }
            _ => {
                let count = r
                    .comments
                    .values()
                    .filter(|c| c.issue_number == number)
                    .count();
                ("issue", render_issue(sim, &world, r, i, count))
            }
        };
        let mut actions: Vec<(String, Value)> =
            extra.into_iter().map(|(a, f)| (a.to_string(), f)).collect();
        for e in r
            .events
            .range(mark.saturating_add(1)..)
            .map(|(_, e)| e)
            .filter(|e| e.issue_number == number)
        {
            let user_of = |k: &str| {
                e.extra
                    .get(k)
                    .and_then(Value::as_str)
                    .map(|l| render::user(sim, &world, l))
                    .unwrap_or(Value::Null)
            };
            let fields = match e.event.as_str() {
                "closed" | "reopened" | "locked" | "unlocked" => json!({}),
                "labeled" | "unlabeled" => {
                    let name = e.extra["label"]["name"].as_str().unwrap_or_default();
                    let label = r
                        .label(name)
                        .map(|l| render_label(sim, r, l))
                        .unwrap_or_else(|| e.extra["label"].clone());
                    json!({ "label": label })
                }
                "assigned" | "unassigned" => json!({ "assignee": user_of("assignee") }),
                "milestoned" | "demilestoned" => {
                    let title = e.extra["milestone"]["title"].as_str().unwrap_or_default();
                    let m = r
                        .milestones
                        .values()
                        .find(|m| m.title == title)
                        .map(|m| render_milestone(sim, &world, r, m))
                        .unwrap_or_else(|| e.extra["milestone"].clone());
                    json!({ "milestone": m })
                }
                "review_requested" => {
                    json!({ "requested_reviewer": user_of("requested_reviewer") })
                }
                "renamed" => {
                    let from = e.extra["rename"]["from"].clone();
                    actions.push((
                        "edited".into(),
                        json!({"changes": {"title": {"from": from}}}),
                    ));
                    continue;
                }
                _ => continue,
            };
            actions.push((e.event.clone(), fields));
        }
        actions
            .into_iter()
            .map(|(action, mut fields)| {
                if key == "pull_request" {
                    fields["number"] = json!(number);
                }
                payload(
                    sim,
                    &world,
                    r,
                    &action,
                    (key, object.clone()),
                    actor,
                    fields,
                )
            })
            .collect()
    };
    for p in payloads {
        crate::webhooks::emit(sim, rid, event, p);
    }
}

/// Sends payloads built under the lock as `event`, once the lock is released.
pub fn emit_all(sim: &Arc<Sim>, rid: u64, event: &str, payloads: Vec<Value>) {
    for p in payloads {
        crate::webhooks::emit(sim, rid, event, p);
    }
}

/// An `issue_comment` payload for comment `id` (rendered before a deletion takes it), if anyone
/// listens.
fn comment_payload(
    sim: &Sim,
    world: &World,
    rid: u64,
    id: u64,
    action: &str,
    actor: &str,
    changes: Option<Value>,
) -> Option<Value> {
    if !has_targets(world, rid, "issue_comment") {
        return None;
    }
    let r = world.repos.get(&rid)?;
    let c = r.comments.get(&id)?;
    let i = r.issues.get(&c.issue_number)?;
    let count = r
        .comments
        .values()
        .filter(|x| x.issue_number == i.number)
        .count();
    let mut fields = json!({"comment": render_comment(sim, world, r, c)});
    if let Some(ch) = changes {
        fields["changes"] = ch;
    }
    Some(payload(
        sim,
        world,
        r,
        action,
        ("issue", render_issue(sim, world, r, i, count)),
        actor,
        fields,
    ))
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A title: GitHub's schema allows a string or an integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum Title {
    Text(String),
    Number(i64),
}

impl Title {
    fn into_string(self) -> String {
        match self {
            Title::Text(s) => s,
            Title::Number(n) => n.to_string(),
        }
    }
}

/// A milestone by number (GitHub's schema allows the number as a string too).
#[derive(Deserialize)]
#[serde(untagged)]
enum MilestoneRef {
    Number(u64),
    Text(String),
}

impl MilestoneRef {
    fn number(&self) -> Result<u64, ApiError> {
        match self {
            MilestoneRef::Number(n) => Ok(*n),
            MilestoneRef::Text(s) => s
                .parse()
                .map_err(|_| ApiError::validation("Issue", "invalid", "milestone")),
        }
    }
}

/// A label by name or as `{"name": ...}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelRef {
    Name(String),
    Object { name: String },
}

impl LabelRef {
    fn name(self) -> String {
        match self {
            LabelRef::Name(n) | LabelRef::Object { name: n } => n,
        }
    }
}

/// An assignee by login or as `{"login": ...}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LoginRef {
    Login(String),
    Object { login: String },
}

impl LoginRef {
    fn login(self) -> String {
        match self {
            LoginRef::Login(l) | LoginRef::Object { login: l } => l,
        }
    }
}

#[derive(Deserialize)]
struct CreateIssue {
    title: Title,
    body: Option<String>,
    assignee: Option<String>,
    milestone: Option<MilestoneRef>,
    labels: Option<Vec<LabelRef>>,
    assignees: Option<Vec<String>>,
}

/// `open` or `closed` in a request body.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Closed => "closed",
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum StateReason {
    Completed,
    NotPlanned,
    Duplicate,
    Reopened,
}

impl StateReason {
    fn as_str(self) -> &'static str {
        match self {
            StateReason::Completed => "completed",
            StateReason::NotPlanned => "not_planned",
            StateReason::Duplicate => "duplicate",
            StateReason::Reopened => "reopened",
        }
    }
}

#[derive(Deserialize)]
struct UpdateIssue {
    title: Option<Title>,
    #[serde(default, deserialize_with = "present")]
    body: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<String>>,
    state: Option<State>,
    #[serde(default, deserialize_with = "present")]
    state_reason: Option<Option<StateReason>>,
    #[serde(default, deserialize_with = "present")]
    milestone: Option<Option<MilestoneRef>>,
    labels: Option<Vec<LabelRef>>,
    assignees: Option<Vec<LoginRef>>,
}

#[derive(Deserialize)]
struct CommentBody {
    body: String,
}

// ---------------------------------------------------------------------------------------------
// Issues
// ---------------------------------------------------------------------------------------------

type RepoPath = Path<(String, String)>;
type ItemPath = Path<(String, String, String)>;

/// 201 with `v` and its `Location`.
fn created(location: &str, v: Value) -> Response {
    let mut resp = (StatusCode::CREATED, axum::Json(v)).into_response();
    if let Ok(h) = header::HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    resp
}

/// `GET /repos/{owner}/{repo}/issues`: issues and pull requests (as GitHub lists them), filtered
/// by `state` (default open), `labels` (all of them), `milestone` (`*`, `none` or a number),
/// `assignee` (`*`, `none` or a login), `creator` and `since` (updated at or after); sorted by
/// `sort` (`created`, `updated`, `comments`) in `direction` (default desc).
async fn list_issues(ctx: Ctx, Path((owner, repo)): RepoPath) -> ApiResult {
    let q = ctx.query();
    let since = since(&q)?;
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, world, r| {
        if !r.has_issues {
            return Err(gone());
        }
        let state = q.get("state").map(String::as_str).unwrap_or("open");
        if !matches!(state, "open" | "closed" | "all") {
            return Err(ApiError::validation("Issue", "invalid", "state"));
        }
        let labels: Vec<&str> = q
            .get("labels")
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let milestone = q.get("milestone").map(String::as_str);
        let milestone_number = match milestone {
            None | Some("*") | Some("none") => None,
            Some(m) => Some(
                m.parse::<u64>()
                    .map_err(|_| ApiError::validation("Issue", "invalid", "milestone"))?,
            ),
        };
        let assignee = q.get("assignee").map(String::as_str);
        let creator = q.get("creator").map(String::as_str);
        let counts = comment_counts(r);
        let mut list: Vec<&Issue> = r
            .issues
            .values()
            .filter(|i| state == "all" || i.state == state)
            .filter(|i| {
                labels
                    .iter()
                    .all(|l| i.labels.iter().any(|n| n.eq_ignore_ascii_case(l)))
            })
            .filter(|i| match milestone {
                None => true,
                Some("*") => i.milestone.is_some(),
                Some("none") => i.milestone.is_none(),
                Some(_) => i.milestone == milestone_number,
            })
            .filter(|i| match assignee {
                None => true,
                Some("*") => !i.assignees.is_empty(),
                Some("none") => i.assignees.is_empty(),
                Some(a) => i.assignees.iter().any(|x| x.eq_ignore_ascii_case(a)),
            })
            .filter(|i| creator.is_none_or(|c| i.user.eq_ignore_ascii_case(c)))
            .filter(|i| at_or_after(&i.updated_at, &since))
            .collect();
        match q.get("sort").map(String::as_str) {
            Some("updated") => list.sort_by_key(|i| (i.updated_at, i.number)),
            Some("comments") => {
                list.sort_by_key(|i| (counts.get(&i.number).copied().unwrap_or(0), i.number))
            }
            _ => list.sort_by_key(|i| (i.created_at, i.number)),
        }
        if descending(&q, true) {
            list.reverse();
        }
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |i| {
            render_issue(
                sim,
                world,
                r,
                i,
                counts.get(&i.number).copied().unwrap_or(0),
            )
        })
    })
}

/// `POST /repos/{owner}/{repo}/issues`: 201 with the issue. Labels, assignees and a milestone
/// are applied only for callers with triage (others' are dropped, as GitHub drops them).
async fn create_issue(ctx: Ctx, Path((owner, repo)): RepoPath, raw: Bytes) -> ApiResult {
    let req: CreateIssue = body(&raw)?;
    let title = req.title.into_string();
    if title.trim().is_empty() {
        return Err(ApiError::validation("Issue", "missing_field", "title"));
    }
    let milestone = req
        .milestone
        .as_ref()
        .map(MilestoneRef::number)
        .transpose()?;
    let mut world = ctx.sim.world.lock();
    let rid = ctx.repo_id(&world, &owner, &repo, PARTICIPATE)?;
    if !world.repos[&rid].has_issues {
        return Err(gone());
    }
    let actor = ctx.actor(&world)?;
    let triage = caller_level(&world, &ctx, &world.repos[&rid]) >= Permission::Triage;
    if triage
        && let Some(m) = milestone
        && !world.repos[&rid].milestones.contains_key(&m)
    {
        return Err(ApiError::validation("Issue", "invalid", "milestone"));
    }
    let now = Utc::now();
    let mark = world.next_id;
    let id = world.id();
    let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
    let number = take_number(r);
    r.issues.insert(
        number,
        Issue::open(id, number, title, req.body, actor.clone(), now, None),
    );
    r.version += 1;
    if triage {
        let labels: Vec<String> = req
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(LabelRef::name)
            .collect();
        apply_labels(&mut world, rid, number, &labels, &actor, now)?;
        let mut assignees = req.assignees.unwrap_or_default();
        if assignees.is_empty()
            && let Some(a) = req.assignee
        {
            assignees.push(a);
        }
        apply_assignees(&mut world, rid, number, &assignees, &actor, now)?;
        apply_milestone(&mut world, rid, number, milestone, &actor, now)?;
    }
    let r = &world.repos[&rid];
    let v = render_issue(&ctx.sim, &world, r, &r.issues[&number], 0);
    let resp = created(&format!("{}/issues/{number}", repo_api(&ctx.sim, r)), v);
    drop(world);
    notify_issue(
        &ctx.sim,
        rid,
        number,
        mark,
        &actor,
        vec![("opened", json!({}))],
    );
    Ok(resp)
}

/// `GET /repos/{owner}/{repo}/issues/{issue_number}`: also a pull request's number, as on GitHub.
async fn get_issue(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    read_issue(&ctx, &owner, &repo, n, |sim, world, r, i| {
        let count = r.comments.values().filter(|c| c.issue_number == n).count();
        Ok(axum::Json(render_issue(sim, world, r, i, count)).into_response())
    })
}

/// `PATCH /repos/{owner}/{repo}/issues/{issue_number}`. The author may change the title, body
/// and state of their own issue; others need write for title and body, triage for the state.
/// Labels, assignees and milestone need triage and are dropped silently without it.
async fn update_issue(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: UpdateIssue = body(&raw)?;
    let title = req.title.map(Title::into_string);
    if title.as_ref().is_some_and(|t| t.trim().is_empty()) {
        return Err(ApiError::validation("Issue", "missing_field", "title"));
    }
    let milestone = match &req.milestone {
        None => None,
        Some(None) => Some(None),
        Some(Some(m)) => Some(Some(m.number()?)),
    };
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        PARTICIPATE,
        |sim, world, rid, actor, hooks| {
            let r = &world.repos[&rid];
            let level = caller_level(world, &ctx, r);
            let author = r.issues[&n].user.eq_ignore_ascii_case(&actor);
            if (title.is_some() || req.body.is_some()) && !author && level < Permission::Write {
                return Err(ApiError::forbidden(
                    "Must have push access to this repository.",
                ));
            }
            if (req.state.is_some() || req.state_reason.is_some())
                && !author
                && level < Permission::Triage
            {
                return Err(ApiError::forbidden(
                    "Must have triage access to this repository.",
                ));
            }
            let triage = level >= Permission::Triage;
            let now = Utc::now();
            if let Some(t) = &title {
                apply_title(world, rid, n, t, &actor, now)?;
            }
            if let Some(b) = req.body {
                let i = issue_mut(world, rid, n)?;
                if i.body != b {
                    let from = std::mem::replace(&mut i.body, b);
                    hooks
                        .actions
                        .push(("edited", json!({"changes": {"body": {"from": from}}})));
                }
            }
            let reason = req.state_reason.flatten().map(|r| r.as_str().to_string());
            match req.state {
                Some(s) => {
                    let reason = if s == State::Closed { reason } else { None };
                    apply_state(world, rid, n, s.as_str(), reason, &actor, now)?;
                }
                None => {
                    if let Some(r) = reason
                        && issue_mut(world, rid, n)?.state == "closed"
                    {
                        issue_mut(world, rid, n)?.state_reason = Some(r);
                    }
                }
            }
            if triage {
                if let Some(m) = milestone {
                    apply_milestone(world, rid, n, m, &actor, now)?;
                }
                if let Some(labels) = req.labels {
                    let labels: Vec<String> = labels.into_iter().map(LabelRef::name).collect();
                    apply_labels(world, rid, n, &labels, &actor, now)?;
                }
                let assignees = match (req.assignees, req.assignee) {
                    (Some(a), _) => Some(a.into_iter().map(LoginRef::login).collect()),
                    (None, Some(a)) => Some(a.into_iter().collect::<Vec<String>>()),
                    (None, None) => None,
                };
                if let Some(a) = assignees {
                    apply_assignees(world, rid, n, &a, &actor, now)?;
                }
            }
            issue_mut(world, rid, n)?.updated_at = now;
            let r = &world.repos[&rid];
            let count = r.comments.values().filter(|c| c.issue_number == n).count();
            Ok(axum::Json(render_issue(sim, world, r, &r.issues[&n], count)).into_response())
        },
    )
}

#[derive(Deserialize)]
struct LockBody {
    lock_reason: Option<LockReason>,
}

#[derive(Deserialize, Clone, Copy)]
enum LockReason {
    #[serde(rename = "off-topic")]
    OffTopic,
    #[serde(rename = "too heated")]
    TooHeated,
    #[serde(rename = "resolved")]
    Resolved,
    #[serde(rename = "spam")]
    Spam,
}

impl LockReason {
    fn as_str(self) -> &'static str {
        match self {
            LockReason::OffTopic => "off-topic",
            LockReason::TooHeated => "too heated",
            LockReason::Resolved => "resolved",
            LockReason::Spam => "spam",
        }
    }
}

/// `PUT .../issues/{issue_number}/lock`: 204, with a `locked` event.
async fn lock(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: LockBody = body(&raw)?;
    let reason = req.lock_reason.map(|r| r.as_str().to_string());
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |_, world, rid, actor, _hooks| {
            let now = Utc::now();
            let i = issue_mut(world, rid, n)?;
            i.locked = true;
            i.active_lock_reason = reason.clone();
            i.updated_at = now;
            push_event(
                world,
                rid,
                n,
                &actor,
                "locked",
                json!({"lock_reason": reason}),
                None,
                now,
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
}

/// `DELETE .../issues/{issue_number}/lock`: 204, with an `unlocked` event.
async fn unlock(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |_, world, rid, actor, _hooks| {
            let now = Utc::now();
            let i = issue_mut(world, rid, n)?;
            if !i.locked {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            i.locked = false;
            i.active_lock_reason = None;
            i.updated_at = now;
            push_event(
                world,
                rid,
                n,
                &actor,
                "unlocked",
                json!({"lock_reason": null}),
                None,
                now,
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Comments
// ---------------------------------------------------------------------------------------------

/// `GET .../issues/{issue_number}/comments`: oldest first; `since` keeps those updated at or
/// after it.
async fn list_comments(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    let since = since(&ctx.query())?;
    read_issue(&ctx, &owner, &repo, n, |sim, world, r, _| {
        let list: Vec<&Comment> = r
            .comments
            .values()
            .filter(|c| c.issue_number == n && at_or_after(&c.updated_at, &since))
            .collect();
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |c| {
            render_comment(sim, world, r, c)
        })
    })
}

/// `POST .../issues/{issue_number}/comments`: 201; sets the issue's `updated_at`. A locked
/// issue takes comments only from writers, as on GitHub.
async fn create_comment(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: CommentBody = body(&raw)?;
    if req.body.trim().is_empty() {
        return Err(ApiError::validation(
            "IssueComment",
            "missing_field",
            "body",
        ));
    }
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        PARTICIPATE,
        |sim, world, rid, actor, hooks| {
            let r = &world.repos[&rid];
            if r.issues[&n].locked && caller_level(world, &ctx, r) < Permission::Write {
                return Err(ApiError::forbidden(
                    "Unable to create comment because issue is locked.",
                ));
            }
            let now = Utc::now();
            let id = world.id();
            let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
            r.comments.insert(
                id,
                Comment {
                    id,
                    issue_number: n,
                    user: actor.clone(),
                    body: req.body,
                    created_at: now,
                    updated_at: now,
                },
            );
            issue_mut(world, rid, n)?.updated_at = now;
            if let Some(p) = comment_payload(sim, world, rid, id, "created", &actor, None) {
                hooks.ready.push(("issue_comment", p));
            }
            let r = &world.repos[&rid];
            let v = render_comment(sim, world, r, &r.comments[&id]);
            Ok(created(
                &format!("{}/issues/comments/{id}", repo_api(sim, r)),
                v,
            ))
        },
    )
}

/// `GET /repos/{owner}/{repo}/issues/comments`: every issue and pull request comment, by id
/// (`sort=created|updated` with `direction`, default ascending), `since` as above.
async fn list_repo_comments(ctx: Ctx, Path((owner, repo)): RepoPath) -> ApiResult {
    let q = ctx.query();
    let since = since(&q)?;
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, world, r| {
        let mut list: Vec<&Comment> = r
            .comments
            .values()
            .filter(|c| at_or_after(&c.updated_at, &since))
            .collect();
        if let Some(sort) = q.get("sort") {
            if sort == "updated" {
                list.sort_by_key(|c| (c.updated_at, c.id));
            } else {
                list.sort_by_key(|c| (c.created_at, c.id));
            }
            if descending(&q, false) {
                list.reverse();
            }
        }
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |c| {
            render_comment(sim, world, r, c)
        })
    })
}

/// The comment `id` of `r` and its issue's number.
fn comment_in(r: &Repo, id: &str) -> Result<(u64, u64), ApiError> {
    let id = number(id)?;
    let c = r.comments.get(&id).ok_or_else(ApiError::not_found)?;
    Ok((id, c.issue_number))
}

/// `GET /repos/{owner}/{repo}/issues/comments/{comment_id}`.
async fn get_comment(ctx: Ctx, Path((owner, repo, id)): ItemPath) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, world, r| {
        let (id, _) = comment_in(r, &id)?;
        Ok(axum::Json(render_comment(sim, world, r, &r.comments[&id])).into_response())
    })
}

/// Checks that the caller may edit or delete comment `id`: its author, or a writer.
fn may_edit_comment(ctx: &Ctx, world: &World, r: &Repo, id: u64) -> Result<String, ApiError> {
    let actor = ctx.actor(world)?;
    let author = r.comments[&id].user.eq_ignore_ascii_case(&actor);
    if !author && caller_level(world, ctx, r) < Permission::Write {
        return Err(ApiError::forbidden(
            "Must have push access to this repository.",
        ));
    }
    Ok(actor)
}

/// `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`: the author or a writer; sets the
/// comment's and its issue's `updated_at`.
async fn update_comment(ctx: Ctx, Path((owner, repo, id)): ItemPath, raw: Bytes) -> ApiResult {
    let req: CommentBody = body(&raw)?;
    if req.body.trim().is_empty() {
        return Err(ApiError::validation(
            "IssueComment",
            "missing_field",
            "body",
        ));
    }
    let (resp, rid, hook) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |sim, world, rid| {
        let (id, n) = comment_in(&world.repos[&rid], &id)?;
        let actor = may_edit_comment(&ctx, world, &world.repos[&rid], id)?;
        let now = Utc::now();
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        let mut from = String::new();
        if let Some(c) = r.comments.get_mut(&id) {
            from = std::mem::replace(&mut c.body, req.body);
            c.updated_at = now;
        }
        if let Some(i) = r.issues.get_mut(&n) {
            i.updated_at = now;
        }
        let changes = json!({"body": {"from": from}});
        let hook = comment_payload(sim, world, rid, id, "edited", &actor, Some(changes));
        let r = &world.repos[&rid];
        let v = render_comment(sim, world, r, &r.comments[&id]);
        Ok((axum::Json(v).into_response(), rid, hook))
    })?;
    emit_all(&ctx.sim, rid, "issue_comment", hook.into_iter().collect());
    Ok(resp)
}

/// `DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}`: 204.
async fn delete_comment(ctx: Ctx, Path((owner, repo, id)): ItemPath) -> ApiResult {
    let (rid, hook) = ctx.with_repo_mut(&owner, &repo, PARTICIPATE, |sim, world, rid| {
        let (id, n) = comment_in(&world.repos[&rid], &id)?;
        let actor = may_edit_comment(&ctx, world, &world.repos[&rid], id)?;
        let hook = comment_payload(sim, world, rid, id, "deleted", &actor, None);
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        r.comments.remove(&id);
        if let Some(i) = r.issues.get_mut(&n) {
            i.updated_at = Utc::now();
        }
        Ok((rid, hook))
    })?;
    emit_all(&ctx.sim, rid, "issue_comment", hook.into_iter().collect());
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Events and timeline
// ---------------------------------------------------------------------------------------------

/// `GET .../issues/{issue_number}/events`: oldest first.
async fn list_issue_events(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    read_issue(&ctx, &owner, &repo, n, |sim, world, r, _| {
        let list: Vec<&IssueEvent> = r.events.values().filter(|e| e.issue_number == n).collect();
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |e| {
            render_event(sim, world, r, e)
        })
    })
}

/// `GET /repos/{owner}/{repo}/issues/events`: every issue event of the repository, newest
/// first, each with its `issue`.
async fn list_repo_events(ctx: Ctx, Path((owner, repo)): RepoPath) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, world, r| {
        let counts = comment_counts(r);
        let list: Vec<&IssueEvent> = r.events.values().rev().collect();
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |e| {
            event_with_issue(sim, world, r, e, &counts)
        })
    })
}

/// An event with its `issue`, as the repository-wide event routes return it.
fn event_with_issue(
    sim: &Sim,
    world: &World,
    r: &Repo,
    e: &IssueEvent,
    counts: &HashMap<u64, usize>,
) -> Value {
    let mut v = render_event(sim, world, r, e);
    if let Some(i) = r.issues.get(&e.issue_number) {
        v["issue"] = render_issue(
            sim,
            world,
            r,
            i,
            counts.get(&i.number).copied().unwrap_or(0),
        );
    }
    v
}

/// `GET /repos/{owner}/{repo}/issues/events/{event_id}`.
async fn get_event(ctx: Ctx, Path((owner, repo, id)): ItemPath) -> ApiResult {
    let id = number(&id)?;
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, world, r| {
        let e = r.events.get(&id).ok_or_else(ApiError::not_found)?;
        let counts = comment_counts(r);
        Ok(axum::Json(event_with_issue(sim, world, r, e, &counts)).into_response())
    })
}

/// `GET .../issues/{issue_number}/timeline`: the issue's events, comments (`commented`) and, for
/// a pull request, submitted reviews (`reviewed`), in time order.
async fn timeline(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    read_issue(&ctx, &owner, &repo, n, |sim, world, r, _| {
        let mut items: Vec<(DateTime<Utc>, u64, Value)> = Vec::new();
        for e in r.events.values().filter(|e| e.issue_number == n) {
            items.push((e.created_at, e.id, render_event(sim, world, r, e)));
        }
        for c in r.comments.values().filter(|c| c.issue_number == n) {
            let mut v = render_comment(sim, world, r, c);
            v["event"] = json!("commented");
            v["actor"] = render::user(sim, world, &c.user);
            items.push((c.created_at, c.id, v));
        }
        for rv in r.reviews.values().filter(|rv| rv.pull_number == n) {
            if let Some(at) = rv.submitted_at {
                items.push((at, rv.id, render_timeline_review(sim, world, r, rv)));
            }
        }
        items.sort_by_key(|(t, id, _)| (*t, *id));
        let values: Vec<Value> = items.into_iter().map(|(_, _, v)| v).collect();
        crate::page::paginate(&sim.api_base, &ctx.uri, values)
    })
}

// ---------------------------------------------------------------------------------------------
// An issue's labels and assignees
// ---------------------------------------------------------------------------------------------

/// Label names from the bodies GitHub accepts: `{"labels": [...]}`, a bare array, or one string;
/// each a name or `{"name": ...}`.
fn label_names(raw: &Bytes) -> Result<Vec<String>, ApiError> {
    let v: Value = body(raw)?;
    let items = match v {
        Value::Object(mut o) => match o.remove("labels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(s @ Value::String(_)) => vec![s],
            Some(_) => return Err(ApiError::invalid_body("labels: expected an array")),
        },
        Value::Array(a) => a,
        s @ Value::String(_) => vec![s],
        _ => return Err(ApiError::invalid_body("expected labels")),
    };
    items
        .into_iter()
        .map(|x| match x {
            Value::String(s) => Ok(s),
            Value::Object(o) => o
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::invalid_body("labels: an object needs a name")),
            _ => Err(ApiError::invalid_body("labels: expected names")),
        })
        .collect()
}

fn labels_response(sim: &Sim, world: &World, rid: u64, n: u64, status: StatusCode) -> Response {
    let r = &world.repos[&rid];
    let v = r
        .issues
        .get(&n)
        .map(|i| render_issue_labels(sim, r, i))
        .unwrap_or_default();
    (status, axum::Json(Value::Array(v))).into_response()
}

/// `GET .../issues/{issue_number}/labels`.
async fn list_issue_labels(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    read_issue(&ctx, &owner, &repo, n, |sim, _, r, i| {
        crate::page::paginate(&sim.api_base, &ctx.uri, render_issue_labels(sim, r, i))
    })
}

/// `POST .../issues/{issue_number}/labels`: adds labels (creating unknown ones); 200 with all
/// of the issue's labels.
async fn add_issue_labels(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let add = label_names(&raw)?;
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |sim, world, rid, actor, _hooks| {
            let mut all = world.repos[&rid].issues[&n].labels.clone();
            all.extend(add);
            apply_labels(world, rid, n, &all, &actor, Utc::now())?;
            Ok(labels_response(sim, world, rid, n, StatusCode::OK))
        },
    )
}

/// `PUT .../issues/{issue_number}/labels`: replaces the labels.
async fn set_issue_labels_route(
    ctx: Ctx,
    Path((owner, repo, n)): ItemPath,
    raw: Bytes,
) -> ApiResult {
    let n = number(&n)?;
    let names = label_names(&raw)?;
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |sim, world, rid, actor, _hooks| {
            apply_labels(world, rid, n, &names, &actor, Utc::now())?;
            Ok(labels_response(sim, world, rid, n, StatusCode::OK))
        },
    )
}

/// `DELETE .../issues/{issue_number}/labels`: 204.
async fn clear_issue_labels(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |_, world, rid, actor, _hooks| {
            apply_labels(world, rid, n, &[], &actor, Utc::now())?;
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
}

/// `DELETE .../issues/{issue_number}/labels/{name}`: 200 with the remaining labels; 404 "Label
/// does not exist" when the issue does not have it, as GitHub answers.
async fn remove_issue_label(
    ctx: Ctx,
    Path((owner, repo, n, name)): Path<(String, String, String, String)>,
) -> ApiResult {
    let n = number(&n)?;
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |sim, world, rid, actor, _hooks| {
            let current = world.repos[&rid].issues[&n].labels.clone();
            if !current.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
                return Err(ApiError::new(StatusCode::NOT_FOUND, "Label does not exist"));
            }
            let rest: Vec<String> = current
                .into_iter()
                .filter(|l| !l.eq_ignore_ascii_case(&name))
                .collect();
            apply_labels(world, rid, n, &rest, &actor, Utc::now())?;
            Ok(labels_response(sim, world, rid, n, StatusCode::OK))
        },
    )
}

#[derive(Deserialize)]
struct AssigneesBody {
    #[serde(default)]
    assignees: Vec<LoginRef>,
}

/// `POST .../issues/{issue_number}/assignees`: 201 with the issue; logins that cannot be
/// assigned are dropped silently.
async fn add_assignees(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: AssigneesBody = body(&raw)?;
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |sim, world, rid, actor, _hooks| {
            let mut all = world.repos[&rid].issues[&n].assignees.clone();
            all.extend(req.assignees.into_iter().map(LoginRef::login));
            apply_assignees(world, rid, n, &all, &actor, Utc::now())?;
            let r = &world.repos[&rid];
            let count = r.comments.values().filter(|c| c.issue_number == n).count();
            let v = render_issue(sim, world, r, &r.issues[&n], count);
            Ok((StatusCode::CREATED, axum::Json(v)).into_response())
        },
    )
}

/// `DELETE .../issues/{issue_number}/assignees`: 200 with the issue.
async fn remove_assignees(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: AssigneesBody = body(&raw)?;
    write_issue(
        &ctx,
        &owner,
        &repo,
        n,
        Need::triage("issues"),
        |sim, world, rid, actor, _hooks| {
            let remove: Vec<String> = req.assignees.into_iter().map(LoginRef::login).collect();
            let rest: Vec<String> = world.repos[&rid].issues[&n]
                .assignees
                .iter()
                .filter(|a| !remove.iter().any(|x| x.eq_ignore_ascii_case(a)))
                .cloned()
                .collect();
            apply_assignees(world, rid, n, &rest, &actor, Utc::now())?;
            let r = &world.repos[&rid];
            let count = r.comments.values().filter(|c| c.issue_number == n).count();
            Ok(axum::Json(render_issue(sim, world, r, &r.issues[&n], count)).into_response())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Repository labels
// ---------------------------------------------------------------------------------------------

/// A label color: six hex digits, a leading `#` tolerated.
fn color(c: &str) -> Result<String, ApiError> {
    let c = c.trim_start_matches('#');
    if c.len() == 6 && c.chars().all(|x| x.is_ascii_hexdigit()) {
        // GitHub keeps the color as written (`BADA55` stays upper case).
        Ok(c.to_string())
    } else {
        Err(ApiError::validation("Label", "invalid", "color"))
    }
}

/// `GET /repos/{owner}/{repo}/labels`: by name, case-insensitively, as GitHub sorts them.
async fn list_labels(ctx: Ctx, Path((owner, repo)): RepoPath) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, _, r| {
        let mut list: Vec<&Label> = r.labels.values().collect();
        list.sort_by_key(|l| (l.name.to_lowercase(), l.id));
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |l| render_label(sim, r, l))
    })
}

#[derive(Deserialize)]
struct CreateLabel {
    name: String,
    color: Option<String>,
    description: Option<String>,
}

/// `POST /repos/{owner}/{repo}/labels`: 201; a name taken (case-insensitively) is 422
/// `already_exists`.
async fn create_label(ctx: Ctx, Path((owner, repo)): RepoPath, raw: Bytes) -> ApiResult {
    let req: CreateLabel = body(&raw)?;
    let name = req.name.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::validation("Label", "missing_field", "name"));
    }
    let color = req.color.as_deref().map(color).transpose()?;
    ctx.with_repo_mut(&owner, &repo, Need::write("issues"), |sim, world, rid| {
        if world.repos[&rid].label(&name).is_some() {
            return Err(ApiError::validation("Label", "already_exists", "name"));
        }
        let id = world.id();
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        let l = Label {
            id,
            name: name.clone(),
            color: color.unwrap_or_else(|| "ededed".into()),
            description: req.description,
            default: false,
        };
        let v = render_label(sim, r, &l);
        r.labels.insert(name.clone(), l);
        Ok(created(
            &format!("{}/labels/{}", repo_api(sim, r), encode_segment(&name)),
            v,
        ))
    })
}

/// `GET /repos/{owner}/{repo}/labels/{name}`.
async fn get_label(ctx: Ctx, Path((owner, repo, name)): ItemPath) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, _, r| {
        let l = r.label(&name).ok_or_else(ApiError::not_found)?;
        Ok(axum::Json(render_label(sim, r, l)).into_response())
    })
}

#[derive(Deserialize)]
struct UpdateLabel {
    new_name: Option<String>,
    color: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
}

/// `PATCH /repos/{owner}/{repo}/labels/{name}`: a rename carries over to the issues that have
/// the label.
async fn update_label(ctx: Ctx, Path((owner, repo, name)): ItemPath, raw: Bytes) -> ApiResult {
    let req: UpdateLabel = body(&raw)?;
    let color = req.color.as_deref().map(color).transpose()?;
    ctx.with_repo_mut(&owner, &repo, Need::write("issues"), |sim, world, rid| {
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        let key = r
            .labels
            .iter()
            .find(|(_, l)| l.name.eq_ignore_ascii_case(&name))
            .map(|(k, _)| k.clone())
            .ok_or_else(ApiError::not_found)?;
        let mut l = r.labels.remove(&key).ok_or_else(ApiError::not_found)?;
        let old = l.name.clone();
        if let Some(new) = req
            .new_name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
        {
            if !new.eq_ignore_ascii_case(&old) && r.label(&new).is_some() {
                r.labels.insert(key, l);
                return Err(ApiError::validation("Label", "already_exists", "name"));
            }
            l.name = new;
        }
        if let Some(c) = color {
            l.color = c;
        }
        if let Some(d) = req.description {
            l.description = d;
        }
        if l.name != old {
            for i in r.issues.values_mut() {
                for n in i.labels.iter_mut().filter(|n| **n == old) {
                    *n = l.name.clone();
                }
            }
        }
        let v = render_label(sim, r, &l);
        r.labels.insert(l.name.clone(), l);
        Ok(axum::Json(v).into_response())
    })
}

/// `DELETE /repos/{owner}/{repo}/labels/{name}`: 204; the label leaves every issue.
async fn delete_label(ctx: Ctx, Path((owner, repo, name)): ItemPath) -> ApiResult {
    ctx.with_repo_mut(&owner, &repo, Need::write("issues"), |_, world, rid| {
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        let (key, label) = r
            .labels
            .iter()
            .find(|(_, l)| l.name.eq_ignore_ascii_case(&name))
            .map(|(k, l)| (k.clone(), l.name.clone()))
            .ok_or_else(ApiError::not_found)?;
        r.labels.remove(&key);
        for i in r.issues.values_mut() {
            i.labels.retain(|n| *n != label);
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

// ---------------------------------------------------------------------------------------------
// Milestones (kept by number in `Repo::milestones`; `Issue::milestone` is that number)
// ---------------------------------------------------------------------------------------------

/// `GET /repos/{owner}/{repo}/milestones`: `state` (default open), `sort` (`due_on`, default,
/// or `completeness`), `direction` (default asc).
async fn list_milestones(ctx: Ctx, Path((owner, repo)): RepoPath) -> ApiResult {
    let q = ctx.query();
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, world, r| {
        let state = q.get("state").map(String::as_str).unwrap_or("open");
        let mut list: Vec<&Milestone> = r
            .milestones
            .values()
            .filter(|m| state == "all" || m.state == state)
            .collect();
        if q.get("sort").map(String::as_str) == Some("completeness") {
            let done = |m: &Milestone| {
                let (mut open, mut closed) = (0u64, 0u64);
                for i in r.issues.values().filter(|i| i.milestone == Some(m.number)) {
                    if i.state == "open" {
                        open += 1;
                    } else {
                        closed += 1;
                    }
                }
                // Per mille complete, so the key is an integer.
                (closed * 1000).checked_div(open + closed).unwrap_or(0)
            };
            list.sort_by_key(|m| (done(m), m.number));
        } else {
            // No due date sorts last, as GitHub lists them.
            list.sort_by_key(|m| (m.due_on.is_none(), m.due_on, m.number));
        }
        if descending(&q, false) {
            list.reverse();
        }
        paginate_lazy(&sim.api_base, &ctx.uri, &list, |m| {
            render_milestone(sim, world, r, m)
        })
    })
}

#[derive(Deserialize)]
struct CreateMilestone {
    title: String,
    state: Option<State>,
    description: Option<String>,
    due_on: Option<String>,
}

fn due_on(s: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_time(s).ok_or_else(|| ApiError::validation("Milestone", "invalid", "due_on"))
}

/// `POST /repos/{owner}/{repo}/milestones`: 201; a title taken is 422 `already_exists`.
async fn create_milestone(ctx: Ctx, Path((owner, repo)): RepoPath, raw: Bytes) -> ApiResult {
    let req: CreateMilestone = body(&raw)?;
    if req.title.trim().is_empty() {
        return Err(ApiError::validation("Milestone", "missing_field", "title"));
    }
    let due = req.due_on.as_deref().map(due_on).transpose()?;
    ctx.with_repo_mut(&owner, &repo, Need::write("issues"), |sim, world, rid| {
        let actor = ctx.actor(world)?;
        if world.repos[&rid]
            .milestones
            .values()
            .any(|m| m.title == req.title)
        {
            return Err(ApiError::validation("Milestone", "already_exists", "title"));
        }
        let id = world.id();
        let now = Utc::now();
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        let number = r.milestones.keys().max().copied().unwrap_or(0) + 1;
        let closed = req.state == Some(State::Closed);
        r.milestones.insert(
            number,
            Milestone {
                id,
                number,
                title: req.title,
                description: req.description,
                state: if closed { "closed" } else { "open" }.into(),
                creator: actor,
                due_on: due,
                created_at: now,
                updated_at: now,
                closed_at: closed.then_some(now),
            },
        );
        let r = &world.repos[&rid];
        let v = render_milestone(sim, world, r, &r.milestones[&number]);
        Ok(created(
            &format!("{}/milestones/{number}", repo_api(sim, r)),
            v,
        ))
    })
}

/// `GET /repos/{owner}/{repo}/milestones/{milestone_number}`.
async fn get_milestone(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    ctx.with_repo(&owner, &repo, Need::read("issues"), |sim, world, r| {
        let m = r.milestones.get(&n).ok_or_else(ApiError::not_found)?;
        Ok(axum::Json(render_milestone(sim, world, r, m)).into_response())
    })
}

#[derive(Deserialize)]
struct UpdateMilestone {
    title: Option<String>,
    state: Option<State>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    due_on: Option<Option<String>>,
}

/// `PATCH /repos/{owner}/{repo}/milestones/{milestone_number}`.
async fn update_milestone(ctx: Ctx, Path((owner, repo, n)): ItemPath, raw: Bytes) -> ApiResult {
    let n = number(&n)?;
    let req: UpdateMilestone = body(&raw)?;
    let due = match &req.due_on {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(Some(due_on(s)?)),
    };
    ctx.with_repo_mut(&owner, &repo, Need::write("issues"), |sim, world, rid| {
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        if let Some(t) = &req.title
            && r.milestones
                .values()
                .any(|m| m.number != n && m.title == *t)
        {
            return Err(ApiError::validation("Milestone", "already_exists", "title"));
        }
        let m = r.milestones.get_mut(&n).ok_or_else(ApiError::not_found)?;
        let now = Utc::now();
        if let Some(t) = req.title.filter(|t| !t.trim().is_empty()) {
            m.title = t;
        }
        if let Some(d) = req.description {
            m.description = d;
        }
        if let Some(d) = due {
            m.due_on = d;
        }
        if let Some(s) = req.state
            && m.state != s.as_str()
        {
            m.state = s.as_str().into();
            m.closed_at = (s == State::Closed).then_some(now);
        }
        m.updated_at = now;
        let r = &world.repos[&rid];
        Ok(axum::Json(render_milestone(sim, world, r, &r.milestones[&n])).into_response())
    })
}

/// `DELETE /repos/{owner}/{repo}/milestones/{milestone_number}`: 204; its issues keep no
/// milestone.
async fn delete_milestone(ctx: Ctx, Path((owner, repo, n)): ItemPath) -> ApiResult {
    let n = number(&n)?;
    ctx.with_repo_mut(&owner, &repo, Need::write("issues"), |_, world, rid| {
        let r = world.repos.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        r.milestones.remove(&n).ok_or_else(ApiError::not_found)?;
        for i in r.issues.values_mut().filter(|i| i.milestone == Some(n)) {
            i.milestone = None;
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

// ---------------------------------------------------------------------------------------------
// Seeding
// ---------------------------------------------------------------------------------------------

/// Adds a seed's comments (then `generate` more) to issue `number`, each at its `created_at` or
/// the issue's creation time, and moves the issue's `updated_at` to the latest.
pub fn seed_comments(
    world: &mut World,
    rid: u64,
    number: u64,
    comments: &[CommentSeed],
    generate: u64,
    default_user: &str,
) -> anyhow::Result<()> {
    let created = world.repos[&rid]
        .issues
        .get(&number)
        .map(|i| i.created_at)
        .context("issue vanished")?;
    let mut latest = created;
    for (k, c) in comments.iter().enumerate() {
        let user =
            seed_login(world, &c.user, default_user).with_context(|| format!("comment {k}"))?;
        let at = c.created_at.unwrap_or(created);
        latest = latest.max(at);
        let id = world.id();
        if let Some(r) = world.repos.get_mut(&rid) {
            r.comments.insert(
                id,
                Comment {
                    id,
                    issue_number: number,
                    user,
                    body: c.body.clone(),
                    created_at: at,
                    updated_at: at,
                },
            );
        }
    }
    for k in 1..=generate {
        let id = world.id();
        if let Some(r) = world.repos.get_mut(&rid) {
            r.comments.insert(
                id,
                Comment {
                    id,
                    issue_number: number,
                    user: default_user.to_string(),
                    body: format!("Generated comment {k} on #{number}"),
                    created_at: created,
                    updated_at: created,
                },
            );
        }
    }
    if let Some(i) = world
        .repos
        .get_mut(&rid)
        .and_then(|r| r.issues.get_mut(&number))
    {
        i.updated_at = i.updated_at.max(latest);
    }
    Ok(())
}

/// Labels of a seed entry: the repository's (matched case-insensitively) or new ones.
pub fn seed_labels(world: &mut World, rid: u64, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let existing = world.repos[&rid].label(n).map(|l| l.name.clone());
        let name = match existing {
            Some(name) => name,
            None => {
                let id = world.id();
                if let Some(r) = world.repos.get_mut(&rid) {
                    r.labels.insert(
                        n.clone(),
                        Label {
                            id,
                            name: n.clone(),
                            color: "ededed".into(),
                            description: None,
                            default: false,
                        },
                    );
                }
                n.clone()
            }
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A seed's milestone title as the milestone's number.
pub fn seed_milestone(
    world: &World,
    rid: u64,
    title: &Option<String>,
) -> anyhow::Result<Option<u64>> {
    match title {
        None => Ok(None),
        Some(t) => world.repos[&rid]
            .milestones
            .values()
            .find(|m| m.title == *t)
            .map(|m| Some(m.number))
            .with_context(|| format!("milestone {t:?} is not seeded")),
    }
}

/// How long before the simulator starts the seeded items that name no time were made, as an
/// organisation's existing issues were made before anyone backs them up. Not the start itself:
/// a client's `since` cursor has whole seconds (GitHub's `Date`), so items stamped in the
/// second a backup began would all count as changed during that backup (an export then read
/// every seeded issue again, one by one; a test with a small rate limit timed out on it).
const SEEDED_BEFORE: chrono::Duration = chrono::Duration::minutes(1);

/// Seeds the repository's labels, milestones and issues (with comments, then the generated
/// ones), directly in the world under one lock. Numbers follow the seed's order unless an issue
/// gives its own; a closed issue gets a `closed` event at its `closed_at`.
pub fn seed_repo(sim: &Sim, rid: u64, seed: &RepoSeed) -> anyhow::Result<()> {
    let mut world = sim.world.lock();
    let first = first_user(&world)?;
    let now = Utc::now() - SEEDED_BEFORE;
    for l in &seed.labels {
        let c = match &l.color {
            Some(c) => color(c).map_err(|_| anyhow::anyhow!("label {:?}: color {c:?}", l.name))?,
            None => "ededed".into(),
        };
        if world.repos[&rid].label(&l.name).is_some() {
            bail!("label {:?} is seeded twice", l.name);
        }
        let id = world.id();
        let r = world.repos.get_mut(&rid).context("repository vanished")?;
        r.labels.insert(
            l.name.clone(),
            Label {
                id,
                name: l.name.clone(),
                color: c,
                description: l.description.clone(),
                default: false,
            },
        );
    }
    for m in &seed.milestones {
        let id = world.id();
        let r = world.repos.get_mut(&rid).context("repository vanished")?;
        if r.milestones.values().any(|x| x.title == m.title) {
            bail!("milestone {:?} is seeded twice", m.title);
        }
        let number = r.milestones.keys().max().copied().unwrap_or(0) + 1;
        let closed = m.state.as_deref() == Some("closed");
        r.milestones.insert(
            number,
            Milestone {
                id,
                number,
                title: m.title.clone(),
                description: m.description.clone(),
                state: if closed { "closed" } else { "open" }.into(),
                creator: first.clone(),
                due_on: m.due_on,
                created_at: now,
                updated_at: now,
                closed_at: closed.then_some(now),
            },
        );
    }
    for (k, s) in seed.issues.iter().enumerate() {
        seed_issue(&mut world, rid, s, &first, now)
            .with_context(|| format!("issue {k} ({:?})", s.title))?;
    }
    if let Some(g) = &seed.generate {
        for k in 1..=g.issues {
            let s = IssueSeed {
                title: format!("Generated issue {k}"),
                body: Some(format!("Body of generated issue {k}.")),
                state: (g.closed_every > 0 && k % g.closed_every == 0).then(|| "closed".into()),
                generate_comments: g.comments_each,
                ..IssueSeed::default()
            };
            seed_issue(&mut world, rid, &s, &first, now)
                .with_context(|| format!("generated issue {k}"))?;
        }
    }
    if let Some(r) = world.repos.get_mut(&rid) {
        r.version += 1;
    }
    Ok(())
}

/// Seeds one issue (its number, comments, lock and closing); returns its number.
fn seed_issue(
    world: &mut World,
    rid: u64,
    s: &IssueSeed,
    first: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let user = seed_login(world, &s.user, first)?;
    let labels = seed_labels(world, rid, &s.labels);
    let milestone = seed_milestone(world, rid, &s.milestone)?;
    let assignees = s
        .assignees
        .iter()
        .map(|a| seed_login(world, &Some(a.clone()), first))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let closed = match s.state.as_deref() {
        None | Some("open") => false,
        Some("closed") => true,
        Some(other) => bail!("state {other:?} (open or closed)"),
    };
    let created_at = s.created_at.unwrap_or(now);
    let id = world.id();
    let r = world.repos.get_mut(&rid).context("repository vanished")?;
    let number = claim_number(r, s.number)?;
    r.issues.insert(
        number,
        Issue {
            locked: s.locked,
            labels,
            milestone,
            assignees,
            ..Issue::open(
                id,
                number,
                s.title.clone(),
                s.body.clone(),
                user.clone(),
                created_at,
                None,
            )
        },
    );
    seed_comments(world, rid, number, &s.comments, s.generate_comments, first)?;
    if s.locked {
        push_event(
            world,
            rid,
            number,
            &user,
            "locked",
            json!({"lock_reason": null}),
            None,
            created_at,
        );
    }
    if closed {
        let i = issue_mut(world, rid, number).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let at = s.closed_at.unwrap_or(i.updated_at);
        i.state = "closed".into();
        i.state_reason = Some(s.state_reason.clone().unwrap_or_else(|| "completed".into()));
        i.closed_at = Some(at);
        i.closed_by = Some(user.clone());
        i.updated_at = i.updated_at.max(at);
        push_event(world, rid, number, &user, "closed", json!({}), None, at);
    }
    Ok(number)
}
