//! Repository settings: Actions workflows, branch protection, rulesets, deploy keys and topics.
//! Webhooks are in [`super::hooks`], collaborators and teams in [`super::access`].
//!
//! Admin-only settings (protection, deploy keys; hooks too) are hidden from users without admin
//! rights: GitHub answers them 404, not 403, so a backup tool cannot tell "no access" from "no
//! such thing" ([`admin_repo`]). An installation without the app permission gets 403 "Resource
//! not accessible by integration" from [`crate::auth::check`].

use anyhow::Context as _;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Ctx, body};
use crate::Sim;
use crate::auth::Need;
use crate::error::{ApiError, ApiResult};
use crate::gitrepo;
use crate::page::{paginate, paginate_wrapped};
use crate::render;
use crate::seed::RepoSeed;
use crate::state::{DeployKey, OrgRole, Permission, Principal, Repo, Workflow, World};

pub fn routes() -> Router {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/actions/workflows",
            get(list_workflows),
        )
        .route(
            "/repos/{owner}/{repo}/actions/workflows/{workflow_id}",
            get(get_workflow),
        )
        .route(
            "/repos/{owner}/{repo}/branches/{branch}/protection",
            get(get_protection)
                .put(put_protection)
                .delete(delete_protection),
        )
        .route(
            "/repos/{owner}/{repo}/rulesets",
            get(list_rulesets).post(create_ruleset),
        )
        .route(
            "/repos/{owner}/{repo}/rulesets/{ruleset_id}",
            get(get_ruleset).put(update_ruleset).delete(delete_ruleset),
        )
        .route(
            "/repos/{owner}/{repo}/keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/repos/{owner}/{repo}/keys/{key_id}",
            get(get_key).delete(delete_key),
        )
        .route(
            "/repos/{owner}/{repo}/topics",
            get(get_topics).put(put_topics),
        )
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// [`Ctx::repo_id`] for an admin-only setting: a user who can see the repository but is not an
/// admin gets 404, as GitHub answers for hooks, deploy keys and branch protection.
pub fn admin_repo(
    ctx: &Ctx,
    world: &World,
    owner: &str,
    name: &str,
    need: Need,
) -> Result<u64, ApiError> {
    ctx.repo_id(world, owner, name, need).map_err(|e| {
        let user = matches!(ctx.caller.principal, Some(Principal::User(_)));
        if user
            && e.status == StatusCode::FORBIDDEN
            && e.message == "Must have admin rights to Repository."
        {
            ApiError::not_found()
        } else {
            e
        }
    })
}

/// Runs `f` on the repository after [`admin_repo`]'s checks (read).
fn with_admin_repo<T>(
    ctx: &Ctx,
    owner: &str,
    name: &str,
    need: Need,
    f: impl FnOnce(&Sim, &World, &Repo) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let world = ctx.sim.world.lock();
    let id = admin_repo(ctx, &world, owner, name, need)?;
    f(&ctx.sim, &world, &world.repos[&id])
}

/// Runs `f` for a change after [`admin_repo`]'s checks; bumps the repository's `version` and
/// `updated_at` when `f` succeeds.
fn with_admin_repo_mut<T>(
    ctx: &Ctx,
    owner: &str,
    name: &str,
    need: Need,
    f: impl FnOnce(&Sim, &mut World, u64) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut world = ctx.sim.world.lock();
    let id = admin_repo(ctx, &world, owner, name, need)?;
    let out = f(&ctx.sim, &mut world, id)?;
    if let Some(r) = world.repos.get_mut(&id) {
        r.version += 1;
        r.updated_at = Utc::now();
    }
    Ok(out)
}

/// Who a caller is to an organisation, for the organisation-level routes (hooks, teams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgCaller {
    /// An owner (or a site admin).
    Owner,
    Member,
    /// An installation on the organisation holding the app permission asked for.
    Installation,
    /// Anyone else, anonymous included.
    Outsider,
}

/// Classifies the caller for organisation `org` (404 when there is no such organisation). A
/// fine-grained personal access token of another organisation, or without `app_permission`, is
/// 403 ([`crate::auth::pat_reaches_org`]). An installation on the organisation without
/// `app_permission` (at `write` when `write`) is 403 "Resource not accessible by integration";
/// one on another account sees nothing (404); an app JWT is refused as [`crate::auth::check`]
/// refuses it.
pub fn org_caller(
    ctx: &Ctx,
    world: &World,
    org: &str,
    app_permission: &str,
    write: bool,
) -> Result<OrgCaller, ApiError> {
    let o = world.org(org).ok_or_else(ApiError::not_found)?;
    match &ctx.caller.principal {
        None => Ok(OrgCaller::Outsider),
        Some(Principal::User(login)) => {
            crate::auth::pat_reaches_org(&ctx.caller, &o.login, app_permission, write)?;
            if world.account(login).is_some_and(|a| a.site_admin) {
                return Ok(OrgCaller::Owner);
            }
            Ok(match o.members.get(login.as_str()) {
                Some(OrgRole::Admin) => OrgCaller::Owner,
                Some(OrgRole::Member) => OrgCaller::Member,
                None => OrgCaller::Outsider,
            })
        }
        Some(Principal::Installation(id)) => {
            let inst = world
                .installations
                .get(id)
                .ok_or_else(ApiError::bad_credentials)?;
            if !inst.account.eq_ignore_ascii_case(&o.login) {
                return Err(ApiError::not_found());
            }
            let perms = ctx
                .caller
                .token
                .as_ref()
                .and_then(|t| t.permissions.as_ref())
                .unwrap_or(&inst.permissions);
            let ok = match perms.get(app_permission).map(String::as_str) {
                Some("write") | Some("admin") => true,
                Some("read") => !write,
                _ => false,
            };
            if ok {
                Ok(OrgCaller::Installation)
            } else {
                Err(ApiError::not_accessible_by_integration())
            }
        }
        Some(Principal::App(_)) => Err(ApiError::forbidden(
            "A JSON web token cannot be used to access this resource; use an installation token",
        )),
    }
}

/// 422 "Validation Failed" with `errors` as plain strings (`validation-error-simple`), the form
/// GitHub uses for branch protection and topics.
pub fn validation_simple(message: &str) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    e.errors.push(Value::String(message.to_string()));
    e
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

/// GitHub's legacy name of a permission in team and protection objects (`pull`, `push`, ...).
pub fn legacy_permission(p: Permission) -> &'static str {
    match p {
        Permission::None => "none",
        Permission::Read => "pull",
        Permission::Triage => "triage",
        Permission::Write => "push",
        Permission::Maintain => "maintain",
        Permission::Admin => "admin",
    }
}

/// The `{pull, triage, push, maintain, admin}` flags of a permission.
pub fn permission_flags(p: Permission) -> Value {
    json!({
        "admin": p >= Permission::Admin,
        "maintain": p >= Permission::Maintain,
        "push": p >= Permission::Write,
        "triage": p >= Permission::Triage,
        "pull": p >= Permission::Read,
    })
}

/// `team` (GitHub's team summary) for `slug` of organisation `org`; `permission` is the team's
/// permission where one applies (a repository's teams), else GitHub's default `pull`.
pub fn render_team(
    sim: &Sim,
    world: &World,
    org: &str,
    slug: &str,
    permission: Option<Permission>,
) -> Option<Value> {
    let o = world.org(org)?;
    let t = o.teams.get(slug)?;
    let org_id = world.account(&o.login).map(|a| a.id).unwrap_or_default();
    let url = format!("{}/organizations/{org_id}/team/{}", sim.api_base, t.id);
    let p = permission.unwrap_or(Permission::Read);
    Some(json!({
        "id": t.id,
        "node_id": render::node_id("Team", t.id),
        "url": url,
        "html_url": format!("{}/orgs/{}/teams/{}", sim.web_base, o.login, t.slug),
        "name": t.name,
        "slug": t.slug,
        "description": t.description,
        "privacy": t.privacy,
        "notification_setting": "notifications_enabled",
        "permission": legacy_permission(p),
        "permissions": permission_flags(p),
        "members_url": format!("{url}/members{{/member}}"),
        "repositories_url": format!("{url}/repos"),
        "type": "organization",
        "organization_id": org_id,
        "parent": null,
    }))
}

/// `integration` for an app by slug (restriction lists name apps by slug).
fn render_app(sim: &Sim, world: &World, slug: &str) -> Option<Value> {
    let a = world.apps.values().find(|a| a.slug == slug)?;
    Some(json!({
        "id": a.id,
        "slug": a.slug,
        "node_id": render::node_id("Integration", a.id),
        "client_id": format!("Iv1.{:016x}", a.id),
        "owner": render::user(sim, world, &a.owner),
        "name": a.name,
        "description": null,
        "external_url": format!("{}/apps/{}", sim.web_base, a.slug),
        "html_url": format!("{}/apps/{}", sim.web_base, a.slug),
        "created_at": render::ts(&a.created_at),
        "updated_at": render::ts(&a.created_at),
        "permissions": a.permissions,
        "events": a.events,
    }))
}

// ---------------------------------------------------------------------------------------------
// Workflows

fn render_workflow(sim: &Sim, repo: &Repo, w: &Workflow) -> Value {
    let file = w.path.rsplit('/').next().unwrap_or(&w.path);
    let web = format!("{}/{}/{}", sim.web_base, repo.owner, repo.name);
    json!({
        "id": w.id,
        "node_id": render::node_id("Workflow", w.id),
        "name": w.name,
        "path": w.path,
        "state": w.state,
        "created_at": render::ts(&w.created_at),
        "updated_at": render::ts(&w.updated_at),
        "url": format!("{}/repos/{}/{}/actions/workflows/{}", sim.api_base, repo.owner, repo.name, w.id),
        "html_url": format!("{web}/blob/{}/{}", repo.default_branch, w.path),
        "badge_url": format!("{web}/workflows/{}/badge.svg", file.trim_end_matches(".yml").trim_end_matches(".yaml")),
    })
}

async fn list_workflows(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let items = ctx.with_repo(&owner, &repo, Need::read("actions"), |sim, _, r| {
        Ok(r.workflows
            .values()
            .map(|w| render_workflow(sim, r, w))
            .collect::<Vec<_>>())
    })?;
    let total = items.len();
    paginate_wrapped(
        &ctx.sim.api_base,
        &ctx.uri,
        items,
        |page| json!({"total_count": total, "workflows": page}),
    )
}

/// `workflow_id` is the id or the file name (`ci.yml`), as GitHub accepts both.
async fn get_workflow(
    ctx: Ctx,
    Path((owner, repo, wid)): Path<(String, String, String)>,
) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("actions"), |sim, _, r| {
        let w = r
            .workflows
            .values()
            .find(|w| {
                wid.parse::<u64>().is_ok_and(|id| id == w.id)
                    || w.path == wid
                    || w.path.rsplit('/').next() == Some(wid.as_str())
            })
            .ok_or_else(ApiError::not_found)?;
        Ok(axum::Json(render_workflow(sim, r, w)).into_response())
    })
}

// ---------------------------------------------------------------------------------------------
// Branch protection

#[derive(Deserialize)]
struct StatusChecks {
    strict: bool,
    contexts: Vec<String>,
    #[serde(default)]
    checks: Option<Vec<Check>>,
}

#[derive(Deserialize)]
struct Check {
    context: String,
    app_id: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ActorLists {
    users: Vec<String>,
    teams: Vec<String>,
    apps: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Reviews {
    dismissal_restrictions: Option<ActorLists>,
    dismiss_stale_reviews: bool,
    require_code_owner_reviews: bool,
    required_approving_review_count: Option<u64>,
    require_last_push_approval: bool,
    bypass_pull_request_allowances: Option<ActorLists>,
}

#[derive(Deserialize)]
struct Restrictions {
    users: Vec<String>,
    teams: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
}

#[derive(Deserialize)]
struct ProtectionBody {
    required_status_checks: Option<StatusChecks>,
    enforce_admins: Option<bool>,
    required_pull_request_reviews: Option<Reviews>,
    restrictions: Option<Restrictions>,
    #[serde(default)]
    required_linear_history: bool,
    #[serde(default)]
    allow_force_pushes: Option<bool>,
    #[serde(default)]
    allow_deletions: bool,
    #[serde(default)]
    block_creations: bool,
    #[serde(default)]
    required_conversation_resolution: bool,
    #[serde(default)]
    lock_branch: bool,
    #[serde(default)]
    allow_fork_syncing: bool,
}

/// Parses `PUT .../protection`'s body: its four keys are required (each may be null), as in
/// GitHub's description.
fn parse_protection(v: &Value) -> Result<ProtectionBody, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid_body("the body is not an object"))?;
    for k in [
        "required_status_checks",
        "enforce_admins",
        "required_pull_request_reviews",
        "restrictions",
    ] {
        if !obj.contains_key(k) {
            return Err(ApiError::invalid_body(format!("\"{k}\" wasn't supplied.")));
        }
    }
    serde_json::from_value(v.clone()).map_err(|e| ApiError::invalid_body(e.to_string()))
}

/// The protection as GitHub returns it (a shape both `protected-branch`, PUT's answer, and
/// `branch-protection`, GET's, accept). Unknown users, teams or apps are 422, as GitHub answers.
fn render_protection(
    sim: &Sim,
    world: &World,
    repo: &Repo,
    branch: &str,
    p: &ProtectionBody,
) -> Result<Value, ApiError> {
    let url = format!(
        "{}/repos/{}/{}/branches/{branch}/protection",
        sim.api_base, repo.owner, repo.name
    );
    let users = |logins: &[String]| -> Result<Vec<Value>, ApiError> {
        logins
            .iter()
            .map(|l| {
                world
                    .account(l)
                    .map(|a| render::account(sim, a))
                    .ok_or_else(|| validation_simple(&format!("User {l} could not be found")))
            })
            .collect()
    };
    let teams = |slugs: &[String]| -> Result<Vec<Value>, ApiError> {
        slugs
            .iter()
            .map(|s| {
                render_team(sim, world, &repo.owner, s, repo.teams.get(s).copied())
                    .ok_or_else(|| validation_simple(&format!("Team {s} could not be found")))
            })
            .collect()
    };
    let apps = |slugs: &[String]| -> Result<Vec<Value>, ApiError> {
        slugs
            .iter()
            .map(|s| {
                render_app(sim, world, s)
                    .ok_or_else(|| validation_simple(&format!("App {s} could not be found")))
            })
            .collect()
    };
    let enabled = |b: bool| json!({ "enabled": b });
    let mut v = json!({
        "url": url,
        "required_signatures": {"url": format!("{url}/required_signatures"), "enabled": false},
        "enforce_admins": {"url": format!("{url}/enforce_admins"), "enabled": p.enforce_admins.unwrap_or(false)},
        "required_linear_history": enabled(p.required_linear_history),
        "allow_force_pushes": enabled(p.allow_force_pushes.unwrap_or(false)),
        "allow_deletions": enabled(p.allow_deletions),
        "block_creations": enabled(p.block_creations),
        "required_conversation_resolution": enabled(p.required_conversation_resolution),
        "lock_branch": enabled(p.lock_branch),
        "allow_fork_syncing": enabled(p.allow_fork_syncing),
    });
    if let Some(c) = &p.required_status_checks {
        let checks: Vec<Value> = match &c.checks {
            Some(cs) => cs
                .iter()
                .map(|c| json!({"context": c.context, "app_id": c.app_id}))
                .collect(),
            None => c
                .contexts
                .iter()
                .map(|c| json!({"context": c, "app_id": null}))
                .collect(),
        };
        let contexts: Vec<Value> = match &c.checks {
            Some(cs) => cs.iter().map(|c| json!(c.context)).collect(),
            None => c.contexts.iter().map(|c| json!(c)).collect(),
        };
        v["required_status_checks"] = json!({
            "url": format!("{url}/required_status_checks"),
            "strict": c.strict,
            "contexts": contexts,
            "contexts_url": format!("{url}/required_status_checks/contexts"),
            "checks": checks,
        });
    }
    if let Some(r) = &p.required_pull_request_reviews {
        let count = r.required_approving_review_count.unwrap_or(1);
        if count > 6 {
            return Err(validation_simple(
                "required_approving_review_count must be between 0 and 6",
            ));
        }
        let mut rv = json!({
            "url": format!("{url}/required_pull_request_reviews"),
            "dismiss_stale_reviews": r.dismiss_stale_reviews,
            "require_code_owner_reviews": r.require_code_owner_reviews,
            "required_approving_review_count": count,
            "require_last_push_approval": r.require_last_push_approval,
        });
        if let Some(d) = &r.dismissal_restrictions {
            let du = format!("{url}/dismissal_restrictions");
            rv["dismissal_restrictions"] = json!({
                "url": du,
                "users_url": format!("{du}/users"),
                "teams_url": format!("{du}/teams"),
                "users": users(&d.users)?,
                "teams": teams(&d.teams)?,
                "apps": apps(&d.apps)?,
            });
        }
        if let Some(b) = &r.bypass_pull_request_allowances {
            rv["bypass_pull_request_allowances"] = json!({
                "users": users(&b.users)?,
                "teams": teams(&b.teams)?,
                "apps": apps(&b.apps)?,
            });
        }
        v["required_pull_request_reviews"] = rv;
    }
    if let Some(r) = &p.restrictions {
        let ru = format!("{url}/restrictions");
        v["restrictions"] = json!({
            "url": ru,
            "users_url": format!("{ru}/users"),
            "teams_url": format!("{ru}/teams"),
            "apps_url": format!("{ru}/apps"),
            "users": users(&r.users)?,
            "teams": teams(&r.teams)?,
            // This list's schema types `description` as a string, never null: leave nulls out.
            "apps": apps(&r.apps)?
                .into_iter()
                .map(|mut a| {
                    if let Some(o) = a.as_object_mut() {
                        o.retain(|_, v| !v.is_null());
                    }
                    a
                })
                .collect::<Vec<_>>(),
        });
    }
    Ok(v)
}

/// 404 "Branch not found" unless `refs/heads/BRANCH` exists (runs git: call without the lock).
fn branch_exists(git_dir: &std::path::Path, branch: &str) -> Result<(), ApiError> {
    match gitrepo::resolve(git_dir, &format!("refs/heads/{branch}")) {
        Some(_) => Ok(()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "Branch not found")),
    }
}

fn not_protected() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Branch not protected")
}

async fn get_protection(
    ctx: Ctx,
    Path((owner, repo, branch)): Path<(String, String, String)>,
) -> ApiResult {
    let git_dir = with_admin_repo(
        &ctx,
        &owner,
        &repo,
        Need::admin_read("administration"),
        |_, _, r| Ok(r.git_dir.clone()),
    )?;
    branch_exists(&git_dir, &branch)?;
    with_admin_repo(
        &ctx,
        &owner,
        &repo,
        Need::admin_read("administration"),
        |_, _, r| {
            let p = r.protections.get(&branch).ok_or_else(not_protected)?;
            Ok(axum::Json(p.clone()).into_response())
        },
    )
}

/// `PUT .../branches/{branch}/protection`: replaces the branch's protection (admin).
async fn put_protection(
    ctx: Ctx,
    Path((owner, repo, branch)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let need = Need::admin_write("administration");
    let git_dir = with_admin_repo(&ctx, &owner, &repo, need, |_, _, r| Ok(r.git_dir.clone()))?;
    let v: Value = body(&raw)?;
    let p = parse_protection(&v)?;
    branch_exists(&git_dir, &branch)?;
    with_admin_repo_mut(&ctx, &owner, &repo, need, |sim, world, id| {
        let rendered = render_protection(sim, world, &world.repos[&id], &branch, &p)?;
        let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
        r.protections.insert(branch.clone(), rendered.clone());
        Ok(axum::Json(rendered).into_response())
    })
}

async fn delete_protection(
    ctx: Ctx,
    Path((owner, repo, branch)): Path<(String, String, String)>,
) -> ApiResult {
    with_admin_repo_mut(
        &ctx,
        &owner,
        &repo,
        Need::admin_write("administration"),
        |_, world, id| {
            let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
            r.protections.remove(&branch).ok_or_else(not_protected)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Rulesets

const RULE_TYPES: &[&str] = &[
    "creation",
    "update",
    "deletion",
    "required_linear_history",
    "merge_queue",
    "required_deployments",
    "required_signatures",
    "pull_request",
    "required_status_checks",
    "non_fast_forward",
    "commit_message_pattern",
    "commit_author_email_pattern",
    "committer_email_pattern",
    "branch_name_pattern",
    "tag_name_pattern",
    "workflows",
    "code_scanning",
    "copilot_code_review",
    "file_path_restriction",
    "max_file_path_length",
    "file_extension_restriction",
    "max_file_size",
];

const ACTOR_TYPES: &[&str] = &[
    "Integration",
    "OrganizationAdmin",
    "RepositoryRole",
    "Team",
    "DeployKey",
    "User",
];

/// Checks a ruleset body (`POST` when `creating`, else `PUT`) the way GitHub's description
/// does for the fields the simulator keeps; returns the fields to store.
fn check_ruleset(v: &Value, creating: bool) -> Result<Map<String, Value>, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid_body("the body is not an object"))?;
    let mut out = Map::new();
    let str_in = |k: &str, allowed: &[&str]| -> Result<Option<String>, ApiError> {
        match obj.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if allowed.is_empty() || allowed.contains(&s.as_str()) => {
                Ok(Some(s.clone()))
            }
            Some(other) => Err(ApiError::invalid_body(format!(
                "{other} is not a valid value for \"{k}\""
            ))),
        }
    };
    if let Some(n) = str_in("name", &[])? {
        if n.trim().is_empty() {
            return Err(ApiError::validation("Ruleset", "missing_field", "name"));
        }
        out.insert("name".into(), json!(n));
    } else if creating {
        return Err(ApiError::invalid_body("\"name\" wasn't supplied."));
    }
    if let Some(e) = str_in("enforcement", &["disabled", "active", "evaluate"])? {
        out.insert("enforcement".into(), json!(e));
    } else if creating {
        return Err(ApiError::invalid_body("\"enforcement\" wasn't supplied."));
    }
    if let Some(t) = str_in("target", &["branch", "tag", "push"])? {
        out.insert("target".into(), json!(t));
    }
    if let Some(b) = obj.get("bypass_actors") {
        let list = b
            .as_array()
            .ok_or_else(|| ApiError::invalid_body("\"bypass_actors\" is not an array"))?;
        for a in list {
            let t = a.get("actor_type").and_then(Value::as_str).unwrap_or("");
            if !ACTOR_TYPES.contains(&t) {
                return Err(ApiError::invalid_body(format!(
                    "\"{t}\" is not a valid value for \"actor_type\""
                )));
            }
        }
        out.insert("bypass_actors".into(), b.clone());
    }
    if let Some(c) = obj.get("conditions") {
        if !(c.is_object() || c.is_null()) {
            return Err(ApiError::invalid_body("\"conditions\" is not an object"));
        }
        out.insert("conditions".into(), c.clone());
    }
    if let Some(r) = obj.get("rules") {
        let list = r
            .as_array()
            .ok_or_else(|| ApiError::invalid_body("\"rules\" is not an array"))?;
        for rule in list {
            let t = rule.get("type").and_then(Value::as_str).unwrap_or("");
            if !RULE_TYPES.contains(&t) {
                return Err(ApiError::invalid_body(format!(
                    "\"{t}\" is not a valid rule type"
                )));
            }
        }
        out.insert("rules".into(), r.clone());
    }
    Ok(out)
}

/// `repository-ruleset`: the stored fields plus what is derived from the repository (its
/// current name as `source`, links). `full` false gives the list's summary (no rules,
/// conditions or bypass actors, as GitHub lists them).
fn render_ruleset(sim: &Sim, repo: &Repo, id: u64, stored: &Value, full: bool) -> Value {
    let mut v = json!({
        "id": id,
        "name": stored.get("name").cloned().unwrap_or(json!("")),
        "target": stored.get("target").cloned().unwrap_or(json!("branch")),
        "source_type": "Repository",
        "source": repo.full_name(),
        "enforcement": stored.get("enforcement").cloned().unwrap_or(json!("disabled")),
        "node_id": render::node_id("RepositoryRuleset", id),
        "_links": {
            "self": {"href": format!("{}/repos/{}/{}/rulesets/{id}", sim.api_base, repo.owner, repo.name)},
            "html": {"href": format!("{}/{}/{}/rules/{id}", sim.web_base, repo.owner, repo.name)},
        },
        "created_at": stored.get("created_at").cloned().unwrap_or(Value::Null),
        "updated_at": stored.get("updated_at").cloned().unwrap_or(Value::Null),
    });
    if full {
        v["bypass_actors"] = stored.get("bypass_actors").cloned().unwrap_or(json!([]));
        v["conditions"] = stored.get("conditions").cloned().unwrap_or(Value::Null);
        v["rules"] = stored.get("rules").cloned().unwrap_or(json!([]));
    }
    v
}

/// Stores a new ruleset (checked by [`check_ruleset`]); 422 when the name is taken.
fn insert_ruleset(
    world: &mut World,
    repo: u64,
    fields: Map<String, Value>,
) -> Result<u64, ApiError> {
    let name = fields.get("name").cloned().unwrap_or(Value::Null);
    let r = world.repos.get(&repo).ok_or_else(ApiError::not_found)?;
    if r.rulesets.values().any(|s| s.get("name") == Some(&name)) {
        return Err(ApiError::validation_custom(
            "Ruleset",
            "Name must be unique",
        ));
    }
    let id = world.id();
    let now = json!(render::ts(&Utc::now()));
    let mut stored = Value::Object(fields);
    stored["created_at"] = now.clone();
    stored["updated_at"] = now;
    let r = world.repos.get_mut(&repo).ok_or_else(ApiError::not_found)?;
    r.rulesets.insert(id, stored);
    Ok(id)
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found())
}

async fn list_rulesets(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let items = ctx.with_repo(&owner, &repo, Need::read("metadata"), |sim, _, r| {
        Ok(r.rulesets
            .iter()
            .map(|(id, s)| render_ruleset(sim, r, *id, s, false))
            .collect::<Vec<_>>())
    })?;
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

async fn create_ruleset(
    ctx: Ctx,
    Path((owner, repo)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let v: Value = body(&raw)?;
    let fields = check_ruleset(&v, true)?;
    with_admin_repo_mut(
        &ctx,
        &owner,
        &repo,
        Need::admin_write("administration"),
        |sim, world, id| {
            let rid = insert_ruleset(world, id, fields)?;
            let r = &world.repos[&id];
            Ok(created(render_ruleset(
                sim,
                r,
                rid,
                &r.rulesets[&rid],
                true,
            )))
        },
    )
}

async fn get_ruleset(
    ctx: Ctx,
    Path((owner, repo, rid)): Path<(String, String, String)>,
) -> ApiResult {
    let rid = parse_id(&rid)?;
    ctx.with_repo(&owner, &repo, Need::read("metadata"), |sim, _, r| {
        let s = r.rulesets.get(&rid).ok_or_else(ApiError::not_found)?;
        Ok(axum::Json(render_ruleset(sim, r, rid, s, true)).into_response())
    })
}

async fn update_ruleset(
    ctx: Ctx,
    Path((owner, repo, rid)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let rid = parse_id(&rid)?;
    let v: Value = body(&raw)?;
    let fields = check_ruleset(&v, false)?;
    with_admin_repo_mut(
        &ctx,
        &owner,
        &repo,
        Need::admin_write("administration"),
        |sim, world, id| {
            let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
            if let Some(n) = fields.get("name")
                && r.rulesets
                    .iter()
                    .any(|(k, s)| *k != rid && s.get("name") == Some(n))
            {
                return Err(ApiError::validation_custom(
                    "Ruleset",
                    "Name must be unique",
                ));
            }
            let s = r.rulesets.get_mut(&rid).ok_or_else(ApiError::not_found)?;
            for (k, val) in fields {
                s[k] = val;
            }
            s["updated_at"] = json!(render::ts(&Utc::now()));
            let r = &world.repos[&id];
            Ok(axum::Json(render_ruleset(sim, r, rid, &r.rulesets[&rid], true)).into_response())
        },
    )
}

async fn delete_ruleset(
    ctx: Ctx,
    Path((owner, repo, rid)): Path<(String, String, String)>,
) -> ApiResult {
    let rid = parse_id(&rid)?;
    with_admin_repo_mut(
        &ctx,
        &owner,
        &repo,
        Need::admin_write("administration"),
        |_, world, id| {
            let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
            r.rulesets.remove(&rid).ok_or_else(ApiError::not_found)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Deploy keys

const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line (`TYPE BASE64 [COMMENT]`) checked as GitHub checks it: a known
/// type whose base64 blob decodes and starts with the same type name. Returns (`TYPE BASE64`,
/// comment); `None` when it is not a key.
pub fn parse_public_key(text: &str) -> Option<(String, Option<String>)> {
    let mut parts = text.split_whitespace();
    let kind = parts.next()?;
    let b64 = parts.next()?;
    let comment: Vec<&str> = parts.collect();
    if !KEY_TYPES.contains(&kind) {
        return None;
    }
    let blob = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    if blob.get(4..4 + len)? != kind.as_bytes() || blob.len() <= 4 + len {
        return None;
    }
    let comment = (!comment.is_empty()).then(|| comment.join(" "));
    Some((format!("{kind} {b64}"), comment))
}

fn render_key(sim: &Sim, repo: &Repo, k: &DeployKey) -> Value {
    json!({
        "id": k.id,
        "key": k.key,
        "url": format!("{}/repos/{}/{}/keys/{}", sim.api_base, repo.owner, repo.name, k.id),
        "title": k.title,
        "verified": true,
        "created_at": render::ts(&k.created_at),
        "read_only": k.read_only,
        "added_by": null,
        "last_used": null,
        "enabled": true,
    })
}

/// Validates and stores a deploy key: 422 "key is invalid" for anything but an OpenSSH public
/// key, 422 "key is already in use" when any repository already has it (GitHub refuses a deploy
/// key on a second repository).
fn insert_key(
    world: &mut World,
    repo: u64,
    key: &str,
    title: Option<&str>,
    read_only: bool,
) -> Result<u64, ApiError> {
    let (key, comment) = parse_public_key(key).ok_or_else(|| {
        ApiError::validation_custom(
            "PublicKey",
            "key is invalid. You must supply a key in OpenSSH public key format",
        )
    })?;
    if world
        .repos
        .values()
        .filter(|r| !r.deleted)
        .flat_map(|r| r.deploy_keys.values())
        .any(|k| k.key == key)
    {
        return Err(ApiError::validation_custom(
            "PublicKey",
            "key is already in use",
        ));
    }
    let id = world.id();
    let title = title.map(str::to_string).or(comment).unwrap_or_default();
    let r = world.repos.get_mut(&repo).ok_or_else(ApiError::not_found)?;
    r.deploy_keys.insert(
        id,
        DeployKey {
            id,
            key,
            title,
            read_only,
            created_at: Utc::now(),
        },
    );
    Ok(id)
}

async fn list_keys(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let items = with_admin_repo(
        &ctx,
        &owner,
        &repo,
        Need::admin_read("administration"),
        |sim, _, r| {
            Ok(r.deploy_keys
                .values()
                .map(|k| render_key(sim, r, k))
                .collect::<Vec<_>>())
        },
    )?;
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

#[derive(Deserialize)]
struct CreateKey {
    title: Option<String>,
    key: String,
    read_only: Option<bool>,
}

async fn create_key(
    ctx: Ctx,
    Path((owner, repo)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: CreateKey = body(&raw)?;
    with_admin_repo_mut(
        &ctx,
        &owner,
        &repo,
        Need::admin_write("administration"),
        |sim, world, id| {
            // GitHub's default is a read-write key.
            let kid = insert_key(
                world,
                id,
                &req.key,
                req.title.as_deref(),
                req.read_only.unwrap_or(false),
            )?;
            let r = &world.repos[&id];
            Ok(created(render_key(sim, r, &r.deploy_keys[&kid])))
        },
    )
}

async fn get_key(ctx: Ctx, Path((owner, repo, kid)): Path<(String, String, String)>) -> ApiResult {
    let kid = parse_id(&kid)?;
    with_admin_repo(
        &ctx,
        &owner,
        &repo,
        Need::admin_read("administration"),
        |sim, _, r| {
            let k = r.deploy_keys.get(&kid).ok_or_else(ApiError::not_found)?;
            Ok(axum::Json(render_key(sim, r, k)).into_response())
        },
    )
}

async fn delete_key(
    ctx: Ctx,
    Path((owner, repo, kid)): Path<(String, String, String)>,
) -> ApiResult {
    let kid = parse_id(&kid)?;
    with_admin_repo_mut(
        &ctx,
        &owner,
        &repo,
        Need::admin_write("administration"),
        |_, world, id| {
            let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
            r.deploy_keys.remove(&kid).ok_or_else(ApiError::not_found)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Topics

async fn get_topics(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("metadata"), |_, _, r| {
        Ok(axum::Json(json!({"names": r.topics})).into_response())
    })
}

#[derive(Deserialize)]
struct Topics {
    names: Vec<String>,
}

/// GitHub's topic rules: lowercase letters, digits and hyphens, starting with a letter or
/// digit, at most 50 characters, at most 20 topics. Names are lowercased and deduplicated.
fn check_topics(names: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim().to_lowercase();
        let ok = !n.is_empty()
            && n.len() <= 50
            && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(validation_simple(&format!(
                "{n} is not a valid topic. Topics must start with a lowercase letter or number, consist of 50 characters or less, and can include hyphens."
            )));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    if out.len() > 20 {
        return Err(validation_simple(
            "A repository cannot have more than 20 topics.",
        ));
    }
    Ok(out)
}

/// `PUT /repos/{owner}/{repo}/topics`: replaces the topics (maintainers and admins).
async fn put_topics(
    ctx: Ctx,
    Path((owner, repo)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: Topics = body(&raw)?;
    let names = check_topics(&req.names)?;
    let need = Need {
        user: Permission::Maintain,
        app_permission: "administration",
        write: true,
    };
    ctx.with_repo_mut(&owner, &repo, need, |_, world, id| {
        let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
        r.topics = names.clone();
        Ok(axum::Json(json!({"names": names})).into_response())
    })
}

// ---------------------------------------------------------------------------------------------
// Seeding

/// Seeds the repository's workflows (committing each file that has `content` on the default
/// branch, in one commit), branch protection (each branch must exist; of the four keys
/// `PUT .../protection` requires, a missing one reads as null since TOML cannot spell null),
/// rulesets and deploy keys, with the same checks the API applies.
pub fn seed_repo(sim: &Sim, repo: u64, seed: &RepoSeed) -> anyhow::Result<()> {
    let (git_dir, default_branch) = {
        let world = sim.world.lock();
        let r = world.repos.get(&repo).context("repository vanished")?;
        (r.git_dir.clone(), r.default_branch.clone())
    };
    let files: Vec<(&str, &str)> = seed
        .workflows
        .iter()
        .filter_map(|w| w.content.as_deref().map(|c| (w.path.as_str(), c)))
        .collect();
    if !files.is_empty() {
        commit_files(&git_dir, &default_branch, &files, "Add workflows")
            .context("committing workflow files")?;
    }
    for branch in seed.protection.keys() {
        if gitrepo::resolve(&git_dir, &format!("refs/heads/{branch}")).is_none() {
            anyhow::bail!("protection: branch {branch:?} does not exist");
        }
    }
    let mut world = sim.world.lock();
    let now = Utc::now();
    for w in &seed.workflows {
        if !w.path.starts_with(".github/workflows/") {
            anyhow::bail!(
                "workflow {:?}: path must be under .github/workflows/",
                w.name
            );
        }
        let state = w.state.clone().unwrap_or_else(|| "active".into());
        if ![
            "active",
            "deleted",
            "disabled_fork",
            "disabled_inactivity",
            "disabled_manually",
        ]
        .contains(&state.as_str())
        {
            anyhow::bail!("workflow {:?}: state {state:?}", w.name);
        }
        let id = world.id();
        let name = if w.name.is_empty() {
            w.path.clone()
        } else {
            w.name.clone()
        };
        let r = world.repos.get_mut(&repo).context("repository vanished")?;
        r.workflows.insert(
            id,
            Workflow {
                id,
                name,
                path: w.path.clone(),
                state,
                created_at: now,
                updated_at: now,
            },
        );
    }
    for (branch, body) in &seed.protection {
        // TOML has no null: in a seed, a missing one of the four required keys means null.
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut() {
            for k in [
                "required_status_checks",
                "enforce_admins",
                "required_pull_request_reviews",
                "restrictions",
            ] {
                o.entry(k).or_insert(Value::Null);
            }
        }
        let p = parse_protection(&body)
            .map_err(|e| anyhow::anyhow!("protection of {branch}: {}", e.message))?;
        let rendered = render_protection(sim, &world, &world.repos[&repo], branch, &p)
            .map_err(|e| anyhow::anyhow!("protection of {branch}: {:?}", e.errors))?;
        let r = world.repos.get_mut(&repo).context("repository vanished")?;
        r.protections.insert(branch.clone(), rendered);
    }
    for (i, rs) in seed.rulesets.iter().enumerate() {
        let fields =
            check_ruleset(rs, true).map_err(|e| anyhow::anyhow!("ruleset {i}: {}", e.message))?;
        insert_ruleset(&mut world, repo, fields)
            .map_err(|e| anyhow::anyhow!("ruleset {i}: {:?}", e.errors))?;
    }
    for k in &seed.deploy_keys {
        insert_key(
            &mut world,
            repo,
            &k.key,
            Some(&k.title),
            // GitHub's default, as for `POST .../keys`.
            k.read_only.unwrap_or(false),
        )
        .map_err(|e| anyhow::anyhow!("deploy key {:?}: {:?}", k.title, e.errors))?;
    }
    Ok(())
}

/// Commits `files` (path, content) on `branch` of the bare repository at `git_dir`.
fn commit_files(
    git_dir: &std::path::Path,
    branch: &str,
    files: &[(&str, &str)],
    message: &str,
) -> anyhow::Result<()> {
    let files = files
        .iter()
        .map(|(p, c)| (p.to_string(), Some(c.to_string())))
        .collect();
    crate::seeding::commit_files(git_dir, branch, files, message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An ed25519 key blob: length-prefixed type name and 32 key bytes.
    fn ed25519_key() -> String {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[7u8; 32]);
        format!(
            "ssh-ed25519 {} me@host",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    #[test]
    fn public_keys_are_checked_as_openssh_lines() {
        let (key, comment) = parse_public_key(&ed25519_key()).unwrap();
        assert!(key.starts_with("ssh-ed25519 AAAA"));
        assert!(!key.contains("me@host"));
        assert_eq!(comment.as_deref(), Some("me@host"));
        assert!(parse_public_key("ssh-ed25519 not-base64!").is_none());
        assert!(parse_public_key("hello world").is_none());
        // A blob of another type under this type's name is not a key.
        let rsa_named = ed25519_key().replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(parse_public_key(&rsa_named).is_none());
    }

    #[test]
    fn topics_follow_github_rules() {
        let ok = check_topics(&["Rust".into(), "backup-tool".into(), "rust".into()]).unwrap();
        assert_eq!(ok, vec!["rust", "backup-tool"]);
        assert!(check_topics(&["-bad".into()]).is_err());
        assert!(check_topics(&["has space".into()]).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert!(check_topics(&many).is_err());
    }
}
