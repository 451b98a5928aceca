//! GitHub Apps: `GET /app`, installations, and installation access tokens (minted with the app's
//! JWT; they expire after `installation_token_ttl_secs` and may be narrowed to some repositories
//! and permissions, never widened).

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ctx, body};
use crate::error::{ApiError, ApiResult};
use crate::page::paginate;
use crate::render;
use crate::state::{Installation, Principal, Token, World};

pub fn routes() -> Router {
    Router::new()
        .route("/app", get(get_app))
        .route("/app/installations", get(list_installations))
        .route(
            "/app/installations/{installation_id}",
            get(get_installation),
        )
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(create_token),
        )
        .route("/orgs/{org}/installation", get(org_installation))
        .route("/installation/repositories", get(installation_repositories))
}

fn app_id(ctx: &Ctx) -> Result<u64, ApiError> {
    match ctx.caller.principal {
        Some(Principal::App(id)) => Ok(id),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )),
    }
}

fn render_app(ctx: &Ctx, world: &World, id: u64) -> Value {
    let Some(a) = world.apps.get(&id) else {
        return Value::Null;
    };
    json!({
        "id": a.id,
        "slug": a.slug,
        "node_id": render::node_id("Integration", a.id),
        "client_id": format!("Iv1.{:016x}", a.id),
        "owner": render::user(&ctx.sim, world, &a.owner),
        "name": a.name,
        "description": null,
        "external_url": format!("{}/apps/{}", ctx.sim.web_base, a.slug),
        "html_url": format!("{}/apps/{}", ctx.sim.web_base, a.slug),
        "created_at": render::ts(&a.created_at),
        "updated_at": render::ts(&a.created_at),
        "permissions": a.permissions,
        "events": a.events,
        "installations_count": world.installations.values().filter(|i| i.app_id == id).count(),
    })
}

/// An installation's `account`. GitHub's description of `GET /app/installations` asks the
/// account to be both a `simple-user` and an `enterprise` (`allOf`), so the enterprise fields
/// (`name`, `slug`, `created_at`, `updated_at`, ...) are added to the user's.
fn render_account(ctx: &Ctx, world: &World, login: &str) -> Value {
    let mut v = render::user(&ctx.sim, world, login);
    if let (Some(o), Some(a)) = (v.as_object_mut(), world.account(login)) {
        o.insert(
            "name".into(),
            json!(a.name.clone().unwrap_or_else(|| a.login.clone())),
        );
        o.insert("slug".into(), json!(a.login.to_ascii_lowercase()));
        o.insert("description".into(), Value::Null);
        o.insert("website_url".into(), Value::Null);
        o.insert("created_at".into(), json!(render::ts(&a.created_at)));
        o.insert("updated_at".into(), json!(render::ts(&a.created_at)));
    }
    v
}

fn render_installation(ctx: &Ctx, world: &World, i: &Installation) -> Value {
    let app = world.apps.get(&i.app_id);
    json!({
        "id": i.id,
        "account": render_account(ctx, world, &i.account),
        "repository_selection": if i.repositories.is_some() { "selected" } else { "all" },
        "access_tokens_url": format!("{}/app/installations/{}/access_tokens", ctx.sim.api_base, i.id),
        "repositories_url": format!("{}/installation/repositories", ctx.sim.api_base),
        "html_url": format!("{}/organizations/{}/settings/installations/{}", ctx.sim.web_base, i.account, i.id),
        "app_id": i.app_id,
        "app_slug": app.map(|a| a.slug.clone()),
        "target_id": world.account(&i.account).map(|a| a.id),
        "target_type": "Organization",
        "permissions": i.permissions,
        "events": app.map(|a| a.events.clone()).unwrap_or_default(),
        "created_at": render::ts(&i.created_at),
        "updated_at": render::ts(&i.created_at),
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    })
}

async fn get_app(ctx: Ctx) -> ApiResult {
    let id = app_id(&ctx)?;
    let world = ctx.sim.world.lock();
    Ok(axum::Json(render_app(&ctx, &world, id)).into_response())
}

async fn list_installations(ctx: Ctx) -> ApiResult {
    let id = app_id(&ctx)?;
    let world = ctx.sim.world.lock();
    let items = world
        .installations
        .values()
        .filter(|i| i.app_id == id)
        .map(|i| render_installation(&ctx, &world, i))
        .collect();
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

async fn get_installation(ctx: Ctx, Path(installation_id): Path<u64>) -> ApiResult {
    let id = app_id(&ctx)?;
    let world = ctx.sim.world.lock();
    let i = world
        .installations
        .get(&installation_id)
        .filter(|i| i.app_id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(render_installation(&ctx, &world, i)).into_response())
}

async fn org_installation(ctx: Ctx, Path(org): Path<String>) -> ApiResult {
    let id = app_id(&ctx)?;
    let world = ctx.sim.world.lock();
    let i = world
        .installations
        .values()
        .find(|i| i.app_id == id && i.account.eq_ignore_ascii_case(&org))
        .ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(render_installation(&ctx, &world, i)).into_response())
}

#[derive(Deserialize, Default)]
struct TokenRequest {
    repositories: Option<Vec<String>>,
    repository_ids: Option<Vec<u64>>,
    permissions: Option<BTreeMap<String, String>>,
}

fn level(s: &str) -> u8 {
    match s {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    }
}

/// `POST /app/installations/{installation_id}/access_tokens`.
async fn create_token(ctx: Ctx, Path(installation_id): Path<u64>, raw: Bytes) -> ApiResult {
    let id = app_id(&ctx)?;
    let req: TokenRequest = body(&raw)?;
    let ttl = ctx.sim.options.read().installation_token_ttl_secs;
    let mut world = ctx.sim.world.lock();
    let inst = world
        .installations
        .get(&installation_id)
        .filter(|i| i.app_id == id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    let mut repositories: Option<BTreeSet<u64>> = None;
    if req.repositories.is_some() || req.repository_ids.is_some() {
        let mut set = BTreeSet::new();
        for name in req.repositories.iter().flatten() {
            let rid = world
                .repo_id(&inst.account, name)
                .filter(|rid| inst.repositories.as_ref().is_none_or(|r| r.contains(rid)))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                    )
                })?;
            set.insert(rid);
        }
        for rid in req.repository_ids.iter().flatten() {
            if !world.repos.contains_key(rid)
                || inst.repositories.as_ref().is_some_and(|r| !r.contains(rid))
            {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "There is at least one repository that does not exist or is not accessible to the parent installation.",
                ));
            }
            set.insert(*rid);
        }
        repositories = Some(set);
    }
    if let Some(p) = &req.permissions {
        for (k, v) in p {
            let have = inst.permissions.get(k).map(|s| level(s)).unwrap_or(0);
            if level(v) > have {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "The permissions requested are not granted to this installation. ({k}: {v})"
                    ),
                ));
            }
        }
    }
    let token = crate::seeding::new_token("ghs");
    let expires_at = Utc::now() + chrono::Duration::seconds(ttl as i64);
    let permissions = req
        .permissions
        .clone()
        .unwrap_or_else(|| inst.permissions.clone());
    world.tokens.insert(
        token.clone(),
        Token {
            principal: Principal::Installation(installation_id),
            expires_at: Some(expires_at),
            repositories: repositories.clone(),
            permissions: Some(permissions.clone()),
            resource_owner: None,
        },
    );
    let mut v = json!({
        "token": token,
        "expires_at": render::ts(&expires_at),
        "permissions": permissions,
        "repository_selection": if repositories.is_some() || inst.repositories.is_some() { "selected" } else { "all" },
    });
    if let Some(set) = &repositories {
        let repos: Vec<Value> = set
            .iter()
            .filter_map(|rid| world.repos.get(rid))
            .map(|r| render::repo(&ctx.sim, &world, r, None))
            .collect();
        v["repositories"] = Value::Array(repos);
    }
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// `GET /installation/repositories` (installation token): `{"total_count", "repositories"}`.
async fn installation_repositories(ctx: Ctx) -> ApiResult {
    let Some(Principal::Installation(iid)) = ctx.caller.principal.clone() else {
        return Err(ApiError::forbidden(
            "This endpoint can only be accessed with an installation token",
        ));
    };
    let world = ctx.sim.world.lock();
    let inst = world
        .installations
        .get(&iid)
        .ok_or_else(ApiError::bad_credentials)?;
    let token_repos = ctx
        .caller
        .token
        .as_ref()
        .and_then(|t| t.repositories.clone());
    let repos: Vec<Value> = world
        .repos
        .values()
        .filter(|r| !r.deleted && r.owner.eq_ignore_ascii_case(&inst.account))
        .filter(|r| inst.repositories.as_ref().is_none_or(|s| s.contains(&r.id)))
        .filter(|r| token_repos.as_ref().is_none_or(|s| s.contains(&r.id)))
        .map(|r| render::repo(&ctx.sim, &world, r, None))
        .collect();
    let total = repos.len();
    let selection = if inst.repositories.is_some() {
        "selected"
    } else {
        "all"
    };
    crate::page::paginate_wrapped(
        &ctx.sim.api_base,
        &ctx.uri,
        repos,
        |page| json!({"total_count": total, "repository_selection": selection, "repositories": page}),
    )
}
