//! Repository and organisation webhooks: list, read, create, update, delete, ping.
//!
//! A hook's secret is write-only: responses show `"secret": "********"` when one is set, never
//! the secret itself. Creating a hook sends it a `ping`, as GitHub does; `POST .../pings` sends
//! another. Deliveries go through [`crate::webhooks::deliver`] in the background and show up in
//! the hook's `last_response`.
//!
//! Repository hooks are for repository admins (others get 404, as on GitHub) and installations
//! with `repository_hooks`; organisation hooks for organisation owners and installations with
//! `organization_hooks`.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::settings::{OrgCaller, admin_repo, org_caller};
use crate::Sim;
use crate::auth::Need;
use crate::error::{ApiError, ApiResult};
use crate::page::paginate;
use crate::render;
use crate::state::{Hook, World};
use crate::webhooks::{self, Target};

pub fn routes() -> Router {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/hooks",
            get(list_repo_hooks).post(create_repo_hook),
        )
        .route(
            "/repos/{owner}/{repo}/hooks/{hook_id}",
            get(get_repo_hook)
                .patch(update_repo_hook)
                .delete(delete_repo_hook),
        )
        .route(
            "/repos/{owner}/{repo}/hooks/{hook_id}/pings",
            post(ping_repo_hook),
        )
        .route(
            "/orgs/{org}/hooks",
            get(list_org_hooks).post(create_org_hook),
        )
        .route(
            "/orgs/{org}/hooks/{hook_id}",
            get(get_org_hook)
                .patch(update_org_hook)
                .delete(delete_org_hook),
        )
        .route("/orgs/{org}/hooks/{hook_id}/pings", post(ping_org_hook))
}

const READ: Need = Need::admin_read("repository_hooks");
const WRITE: Need = Need::admin_write("repository_hooks");

/// `config` with the secret masked.
fn config(h: &Hook) -> Value {
    let mut c = json!({
        "url": h.url,
        "content_type": h.content_type,
        "insecure_ssl": h.insecure_ssl,
    });
    if h.secret.as_ref().is_some_and(|s| !s.is_empty()) {
        c["secret"] = json!("********");
    }
    c
}

/// `hook-response` from the last delivery (`unused` before any).
fn last_response(h: &Hook) -> Value {
    match h.deliveries.last() {
        None => json!({"code": null, "status": "unused", "message": null}),
        Some((_, 0)) => {
            json!({"code": null, "status": "failed", "message": "failed to connect to host"})
        }
        Some((_, code)) if (200..300).contains(code) => {
            json!({"code": code, "status": "active", "message": "OK"})
        }
        Some((_, code)) => {
            json!({"code": code, "status": "failed", "message": format!("Invalid HTTP Response: {code}")})
        }
    }
}

/// `hook` (a repository's).
pub fn render_repo_hook(sim: &Sim, owner: &str, repo: &str, h: &Hook) -> Value {
    let url = format!("{}/repos/{owner}/{repo}/hooks/{}", sim.api_base, h.id);
    json!({
        "type": "Repository",
        "id": h.id,
        "name": h.name,
        "active": h.active,
        "events": h.events,
        "config": config(h),
        "updated_at": render::ts(&h.updated_at),
        "created_at": render::ts(&h.created_at),
        "url": url,
        "test_url": format!("{url}/test"),
        "ping_url": format!("{url}/pings"),
        "deliveries_url": format!("{url}/deliveries"),
        "last_response": last_response(h),
    })
}

/// `org-hook`.
pub fn render_org_hook(sim: &Sim, org: &str, h: &Hook) -> Value {
    let url = format!("{}/orgs/{org}/hooks/{}", sim.api_base, h.id);
    json!({
        "type": "Organization",
        "id": h.id,
        "name": h.name,
        "active": h.active,
        "events": h.events,
        "config": config(h),
        "updated_at": render::ts(&h.updated_at),
        "created_at": render::ts(&h.created_at),
        "url": url,
        "ping_url": format!("{url}/pings"),
        "deliveries_url": format!("{url}/deliveries"),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HookConfig {
    url: Option<String>,
    content_type: Option<String>,
    secret: Option<String>,
    /// `"0"`/`"1"`, or the number.
    insecure_ssl: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HookBody {
    name: Option<String>,
    config: Option<HookConfig>,
    events: Option<Vec<String>>,
    add_events: Option<Vec<String>>,
    remove_events: Option<Vec<String>>,
    active: Option<bool>,
}

fn hook_error(message: &str) -> ApiError {
    ApiError::validation_custom("Hook", message)
}

fn parse_body(raw: &Bytes) -> Result<HookBody, ApiError> {
    super::body(raw)
}

/// Applies `b` to `h` (a new hook when `creating`): GitHub's checks on the URL, content type,
/// `insecure_ssl` and the hook name (only `web` exists).
fn apply(h: &mut Hook, b: HookBody, creating: bool) -> Result<(), ApiError> {
    if let Some(n) = &b.name
        && n != "web"
    {
        return Err(hook_error(&format!("Name {n} is not a valid hook name")));
    }
    if let Some(c) = b.config {
        if let Some(u) = c.url {
            let ok = url::Url::parse(&u)
                .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
            if !ok {
                return Err(hook_error("Config url is not a valid URL"));
            }
            h.url = u;
        }
        if let Some(t) = c.content_type {
            if t != "json" && t != "form" {
                return Err(hook_error("Config content_type must be json or form"));
            }
            h.content_type = t;
        }
        if let Some(s) = c.secret {
            h.secret = (!s.is_empty()).then_some(s);
        }
        if let Some(i) = c.insecure_ssl {
            h.insecure_ssl = match i {
                Value::String(s) if s == "0" || s == "1" => s,
                Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => n.to_string(),
                _ => return Err(hook_error("Config insecure_ssl must be 0 or 1")),
            };
        }
    }
    if creating && h.url.is_empty() {
        return Err(hook_error("Config must contain URL for webhooks"));
    }
    if let Some(e) = b.events {
        h.events = e;
    }
    if let Some(add) = b.add_events {
        for e in add {
            if !h.events.contains(&e) {
                h.events.push(e);
            }
        }
    }
    if let Some(rm) = b.remove_events {
        h.events.retain(|e| !rm.contains(e));
    }
    if h.events.is_empty() || h.events.iter().any(|e| e.is_empty()) {
        return Err(hook_error("Events must not be empty"));
    }
    if let Some(a) = b.active {
        h.active = a;
    }
    h.updated_at = Utc::now();
    Ok(())
}

fn new_hook(world: &mut World) -> Hook {
    let now = Utc::now();
    Hook {
        id: world.id(),
        name: "web".into(),
        active: true,
        events: vec!["push".into()],
        url: String::new(),
        // GitHub's default for hooks made through the API.
        content_type: "form".into(),
        insecure_ssl: "0".into(),
        secret: None,
        created_at: now,
        updated_at: now,
        deliveries: Vec::new(),
    }
}

/// GitHub refuses a second hook with the same URL and an overlapping event.
fn duplicate<'a>(
    mut others: impl Iterator<Item = &'a Hook>,
    h: &Hook,
    scope: &str,
) -> Result<(), ApiError> {
    if others
        .any(|o| o.id != h.id && o.url == h.url && o.events.iter().any(|e| h.events.contains(e)))
    {
        return Err(hook_error(&format!("Hook already exists on this {scope}")));
    }
    Ok(())
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found())
}

/// Sends a `ping` in the background (GitHub answers the request before delivering).
fn spawn_ping(sim: &std::sync::Arc<Sim>, target: Target, payload: Value) {
    let sim = sim.clone();
    tokio::spawn(async move {
        webhooks::deliver(&sim, &target, "ping", &payload).await;
    });
}

const ZEN: &str = "Design for failure.";

// ---------------------------------------------------------------------------------------------
// Repository hooks

async fn list_repo_hooks(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let items = {
        let world = ctx.sim.world.lock();
        let id = admin_repo(&ctx, &world, &owner, &repo, READ)?;
        let r = &world.repos[&id];
        r.hooks
            .values()
            .map(|h| render_repo_hook(&ctx.sim, &r.owner, &r.name, h))
            .collect::<Vec<_>>()
    };
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

/// Pings repository hook `hid` (payload rendered under the lock, delivered after).
fn ping_repo(ctx: &Ctx, world: &World, repo_id: u64, hid: u64) -> Result<(), ApiError> {
    let r = &world.repos[&repo_id];
    let h = r.hooks.get(&hid).ok_or_else(ApiError::not_found)?;
    let sender = ctx
        .caller
        .actor(world)
        .map(|a| render::user(&ctx.sim, world, &a))
        .unwrap_or(Value::Null);
    let payload = json!({
        "zen": ZEN,
        "hook_id": h.id,
        "hook": render_repo_hook(&ctx.sim, &r.owner, &r.name, h),
        "repository": render::repo(&ctx.sim, world, r, None),
        "sender": sender,
    });
    spawn_ping(&ctx.sim, Target::repo_hook(repo_id, h), payload);
    Ok(())
}

async fn create_repo_hook(
    ctx: Ctx,
    Path((owner, repo)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let mut world = ctx.sim.world.lock();
    let id = admin_repo(&ctx, &world, &owner, &repo, WRITE)?;
    let b = parse_body(&raw)?;
    let mut h = new_hook(&mut world);
    apply(&mut h, b, true)?;
    duplicate(world.repos[&id].hooks.values(), &h, "repository")?;
    let hid = h.id;
    let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
    r.hooks.insert(hid, h);
    r.version += 1;
    let r = &world.repos[&id];
    let v = render_repo_hook(&ctx.sim, &r.owner, &r.name, &r.hooks[&hid]);
    ping_repo(&ctx, &world, id, hid)?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

async fn get_repo_hook(
    ctx: Ctx,
    Path((owner, repo, hid)): Path<(String, String, String)>,
) -> ApiResult {
    let hid = parse_id(&hid)?;
    let world = ctx.sim.world.lock();
    let id = admin_repo(&ctx, &world, &owner, &repo, READ)?;
    let r = &world.repos[&id];
    let h = r.hooks.get(&hid).ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(render_repo_hook(&ctx.sim, &r.owner, &r.name, h)).into_response())
}

async fn update_repo_hook(
    ctx: Ctx,
    Path((owner, repo, hid)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let hid = parse_id(&hid)?;
    let mut world = ctx.sim.world.lock();
    let id = admin_repo(&ctx, &world, &owner, &repo, WRITE)?;
    let b = parse_body(&raw)?;
    let mut h = world.repos[&id]
        .hooks
        .get(&hid)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    apply(&mut h, b, false)?;
    duplicate(world.repos[&id].hooks.values(), &h, "repository")?;
    let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
    r.hooks.insert(hid, h);
    r.version += 1;
    let r = &world.repos[&id];
    Ok(axum::Json(render_repo_hook(
        &ctx.sim,
        &r.owner,
        &r.name,
        &r.hooks[&hid],
    ))
    .into_response())
}

async fn delete_repo_hook(
    ctx: Ctx,
    Path((owner, repo, hid)): Path<(String, String, String)>,
) -> ApiResult {
    let hid = parse_id(&hid)?;
    let mut world = ctx.sim.world.lock();
    let id = admin_repo(&ctx, &world, &owner, &repo, WRITE)?;
    let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
    r.hooks.remove(&hid).ok_or_else(ApiError::not_found)?;
    r.version += 1;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ping_repo_hook(
    ctx: Ctx,
    Path((owner, repo, hid)): Path<(String, String, String)>,
) -> ApiResult {
    let hid = parse_id(&hid)?;
    let world = ctx.sim.world.lock();
    let id = admin_repo(&ctx, &world, &owner, &repo, WRITE)?;
    ping_repo(&ctx, &world, id, hid)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Organisation hooks

/// The organisation's login as seeded, after checking the caller owns it (or is an installation
/// with `organization_hooks`).
fn org_owner(ctx: &Ctx, world: &World, org: &str, write: bool) -> Result<String, ApiError> {
    match org_caller(ctx, world, org, "organization_hooks", write)? {
        OrgCaller::Owner | OrgCaller::Installation => Ok(world
            .org(org)
            .map(|o| o.login.clone())
            .unwrap_or_else(|| org.to_string())),
        // Non-owners are told the hooks do not exist, as GitHub answers them.
        OrgCaller::Member | OrgCaller::Outsider => Err(ApiError::not_found()),
    }
}

fn org_hooks_mut<'a>(
    world: &'a mut World,
    org: &str,
) -> Result<&'a mut std::collections::BTreeMap<u64, Hook>, ApiError> {
    world
        .org_mut(org)
        .map(|o| &mut o.hooks)
        .ok_or_else(ApiError::not_found)
}

fn ping_org(ctx: &Ctx, world: &World, org: &str, hid: u64) -> Result<(), ApiError> {
    let o = world.org(org).ok_or_else(ApiError::not_found)?;
    let h = o.hooks.get(&hid).ok_or_else(ApiError::not_found)?;
    let sender = ctx
        .caller
        .actor(world)
        .map(|a| render::user(&ctx.sim, world, &a))
        .unwrap_or(Value::Null);
    let payload = json!({
        "zen": ZEN,
        "hook_id": h.id,
        "hook": render_org_hook(&ctx.sim, org, h),
        "organization": render::user(&ctx.sim, world, org),
        "sender": sender,
    });
    spawn_ping(&ctx.sim, Target::org_hook(org, h), payload);
    Ok(())
}

async fn list_org_hooks(ctx: Ctx, Path(org): Path<String>) -> ApiResult {
    let items = {
        let world = ctx.sim.world.lock();
        let login = org_owner(&ctx, &world, &org, false)?;
        world
            .org(&login)
            .map(|o| {
                o.hooks
                    .values()
                    .map(|h| render_org_hook(&ctx.sim, &login, h))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

async fn create_org_hook(ctx: Ctx, Path(org): Path<String>, raw: Bytes) -> ApiResult {
    let mut world = ctx.sim.world.lock();
    let login = org_owner(&ctx, &world, &org, true)?;
    let b = parse_body(&raw)?;
    // GitHub's description makes `name` and `config.url` required here.
    if b.name.is_none() {
        return Err(ApiError::invalid_body("\"name\" wasn't supplied."));
    }
    if b.config.as_ref().is_none_or(|c| c.url.is_none()) {
        return Err(ApiError::invalid_body(
            "\"config\" wasn't supplied with \"url\".",
        ));
    }
    let mut h = new_hook(&mut world);
    apply(&mut h, b, true)?;
    let hooks = org_hooks_mut(&mut world, &login)?;
    duplicate(hooks.values(), &h, "organization")?;
    let hid = h.id;
    hooks.insert(hid, h.clone());
    let v = render_org_hook(&ctx.sim, &login, &h);
    ping_org(&ctx, &world, &login, hid)?;
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

async fn get_org_hook(ctx: Ctx, Path((org, hid)): Path<(String, String)>) -> ApiResult {
    let hid = parse_id(&hid)?;
    let world = ctx.sim.world.lock();
    let login = org_owner(&ctx, &world, &org, false)?;
    let h = world
        .org(&login)
        .and_then(|o| o.hooks.get(&hid))
        .ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(render_org_hook(&ctx.sim, &login, h)).into_response())
}

async fn update_org_hook(
    ctx: Ctx,
    Path((org, hid)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let hid = parse_id(&hid)?;
    let mut world = ctx.sim.world.lock();
    let login = org_owner(&ctx, &world, &org, true)?;
    let b = parse_body(&raw)?;
    let hooks = org_hooks_mut(&mut world, &login)?;
    let mut h = hooks.get(&hid).cloned().ok_or_else(ApiError::not_found)?;
    apply(&mut h, b, false)?;
    duplicate(hooks.values(), &h, "organization")?;
    hooks.insert(hid, h.clone());
    Ok(axum::Json(render_org_hook(&ctx.sim, &login, &h)).into_response())
}

async fn delete_org_hook(ctx: Ctx, Path((org, hid)): Path<(String, String)>) -> ApiResult {
    let hid = parse_id(&hid)?;
    let mut world = ctx.sim.world.lock();
    let login = org_owner(&ctx, &world, &org, true)?;
    org_hooks_mut(&mut world, &login)?
        .remove(&hid)
        .ok_or_else(ApiError::not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ping_org_hook(
    ctx: Ctx,
    Path((org, hid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let hid = parse_id(&hid)?;
    let world = ctx.sim.world.lock();
    let login = org_owner(&ctx, &world, &org, true)?;
    ping_org(&ctx, &world, &login, hid)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
