//! Organisations, users and repositories: read, list, create, update (rename, archive), delete;
//! `/rate_limit`.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{Ctx, body};
use crate::auth::Need;
use crate::error::{ApiError, ApiResult};
use crate::page::paginate;
use crate::render;
use crate::state::{OrgRole, Principal};

pub fn routes() -> Router {
    Router::new()
        .route("/", get(root))
        .route("/rate_limit", get(rate_limit))
        .route("/user", get(authenticated_user))
        .route("/users/{username}", get(get_user))
        .route("/orgs/{org}", get(get_org))
        .route(
            "/orgs/{org}/repos",
            get(list_org_repos).post(create_org_repo),
        )
        .route(
            "/repos/{owner}/{repo}",
            get(get_repo).patch(update_repo).delete(delete_repo),
        )
}

/// `GET /`: the hypermedia root, with every URL GitHub lists.
async fn root(ctx: Ctx) -> ApiResult {
    let a = &ctx.sim.api_base;
    let w = &ctx.sim.web_base;
    Ok(axum::Json(json!({
        "current_user_url": format!("{a}/user"),
        "current_user_authorizations_html_url": format!("{w}/settings/connections/applications{{/client_id}}"),
        "authorizations_url": format!("{a}/authorizations"),
        "code_search_url": format!("{a}/search/code?q={{query}}{{&page,per_page,sort,order}}"),
        "commit_search_url": format!("{a}/search/commits?q={{query}}{{&page,per_page,sort,order}}"),
        "emails_url": format!("{a}/user/emails"),
        "emojis_url": format!("{a}/emojis"),
        "events_url": format!("{a}/events"),
        "feeds_url": format!("{a}/feeds"),
        "followers_url": format!("{a}/user/followers"),
        "following_url": format!("{a}/user/following{{/target}}"),
        "gists_url": format!("{a}/gists{{/gist_id}}"),
        "hub_url": format!("{a}/hub"),
        "issue_search_url": format!("{a}/search/issues?q={{query}}{{&page,per_page,sort,order}}"),
        "issues_url": format!("{a}/issues"),
        "keys_url": format!("{a}/user/keys"),
        "label_search_url": format!("{a}/search/labels?q={{query}}&repository_id={{repository_id}}{{&page,per_page}}"),
        "notifications_url": format!("{a}/notifications"),
        "organization_url": format!("{a}/orgs/{{org}}"),
        "organization_repositories_url": format!("{a}/orgs/{{org}}/repos{{?type,page,per_page,sort}}"),
        "organization_teams_url": format!("{a}/orgs/{{org}}/teams"),
        "public_gists_url": format!("{a}/gists/public"),
        "rate_limit_url": format!("{a}/rate_limit"),
        "repository_url": format!("{a}/repos/{{owner}}/{{repo}}"),
        "repository_search_url": format!("{a}/search/repositories?q={{query}}{{&page,per_page,sort,order}}"),
        "current_user_repositories_url": format!("{a}/user/repos{{?type,page,per_page,sort}}"),
        "starred_url": format!("{a}/user/starred{{/owner}}{{/repo}}"),
        "starred_gists_url": format!("{a}/gists/starred"),
        "topic_search_url": format!("{a}/search/topics?q={{query}}{{&page,per_page}}"),
        "user_url": format!("{a}/users/{{user}}"),
        "user_organizations_url": format!("{a}/user/orgs"),
        "user_repositories_url": format!("{a}/users/{{user}}/repos{{?type,page,per_page,sort}}"),
        "user_search_url": format!("{a}/search/users?q={{query}}{{&page,per_page,sort,order}}"),
    }))
    .into_response())
}

async fn rate_limit(ctx: Ctx) -> ApiResult {
    let limit = ctx.sim.limit_for(&ctx.caller);
    let opts = ctx.sim.options.read().clone();
    let q = ctx.sim.limits.lock().peek(
        &ctx.caller.limit_key,
        limit,
        crate::server::unix_now(),
        &opts,
    );
    let core = json!({"limit": q.limit, "remaining": q.remaining, "reset": q.reset, "used": q.used, "resource": "core"});
    let search =
        json!({"limit": 30, "remaining": 30, "reset": q.reset, "used": 0, "resource": "search"});
    let graphql = json!({"limit": q.limit, "remaining": q.limit, "reset": q.reset, "used": 0, "resource": "graphql"});
    Ok(axum::Json(json!({
        "resources": {"core": core, "search": search, "graphql": graphql},
        "rate": core,
    }))
    .into_response())
}

async fn authenticated_user(ctx: Ctx) -> ApiResult {
    let world = ctx.sim.world.lock();
    let login = ctx
        .caller
        .login()
        .ok_or_else(|| match ctx.caller.principal {
            None => ApiError::requires_auth(),
            Some(_) => ApiError::not_accessible_by_integration(),
        })?;
    let a = world.account(login).ok_or_else(ApiError::not_found)?;
    let mut v = render::account(&ctx.sim, a);
    // `private-user` adds the profile fields to `simple-user`.
    let extra = json!({
        "name": a.name, "company": null, "blog": "", "location": null, "email": a.email,
        "hireable": null, "bio": null, "twitter_username": null, "public_repos": 0,
        "public_gists": 0, "followers": 0, "following": 0,
        "created_at": render::ts(&a.created_at), "updated_at": render::ts(&a.created_at),
        "private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0,
        "disk_usage": 0, "collaborators": 0, "two_factor_authentication": false,
        "plan": {"name": "pro", "space": 976562499, "private_repos": 9999, "collaborators": 0},
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Ok(axum::Json(v).into_response())
}

async fn get_user(ctx: Ctx, Path(username): Path<String>) -> ApiResult {
    let world = ctx.sim.world.lock();
    let a = world.account(&username).ok_or_else(ApiError::not_found)?;
    let mut v = render::account(&ctx.sim, a);
    let extra = json!({
        "name": a.name, "company": null, "blog": "", "location": null, "email": a.email,
        "hireable": null, "bio": null, "public_repos": 0, "public_gists": 0,
        "followers": 0, "following": 0,
        "created_at": render::ts(&a.created_at), "updated_at": render::ts(&a.created_at),
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Ok(axum::Json(v).into_response())
}

async fn get_org(ctx: Ctx, Path(org): Path<String>) -> ApiResult {
    let world = ctx.sim.world.lock();
    world.org(&org).ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(render::org(&ctx.sim, &world, &org)).into_response())
}

/// `GET /orgs/{org}/repos`: the repositories the caller can see, sorted by `full_name` as
/// GitHub's default for this list (`sort=created` is honoured too), filtered by `type`.
async fn list_org_repos(ctx: Ctx, Path(org): Path<String>) -> ApiResult {
    let world = ctx.sim.world.lock();
    world.org(&org).ok_or_else(ApiError::not_found)?;
    let q = ctx.query();
    let kind = q.get("type").map(String::as_str).unwrap_or("all");
    let mut repos: Vec<_> = world
        .repos
        .values()
        .filter(|r| !r.deleted && r.owner.eq_ignore_ascii_case(&org))
        .filter(|r| crate::auth::check(&world, &ctx.caller, r, Need::read("metadata")).is_ok())
        .filter(|r| match kind {
            "public" => !r.private,
            "private" => r.private,
            _ => true,
        })
        .collect();
    match q.get("sort").map(String::as_str) {
        Some("created") => repos.sort_by_key(|r| (r.created_at, r.id)),
        Some("updated") => repos.sort_by_key(|r| std::cmp::Reverse(r.updated_at)),
        Some("pushed") => repos.sort_by_key(|r| std::cmp::Reverse(r.pushed_at)),
        _ => repos.sort_by_key(|r| r.full_name().to_ascii_lowercase()),
    }
    let items = repos
        .into_iter()
        .map(|r| {
            let perm = caller_permission(&world, &ctx, r);
            render::repo(&ctx.sim, &world, r, perm)
        })
        .collect();
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

fn caller_permission(
    world: &crate::state::World,
    ctx: &Ctx,
    r: &crate::state::Repo,
) -> Option<crate::state::Permission> {
    use crate::state::Permission as P;
    match &ctx.caller.principal {
        Some(Principal::User(l)) => Some(world.user_permission(l, r)),
        Some(Principal::Installation(_)) => Some(P::Read),
        _ => None,
    }
}

#[derive(Deserialize)]
struct CreateRepo {
    name: String,
    description: Option<String>,
    homepage: Option<String>,
    private: Option<bool>,
    visibility: Option<String>,
    has_issues: Option<bool>,
    has_projects: Option<bool>,
    has_wiki: Option<bool>,
    auto_init: Option<bool>,
}

/// `POST /orgs/{org}/repos`: organisation owners (and installations with `administration:
/// write`) create repositories; 422 "name already exists on this account" as GitHub answers.
async fn create_org_repo(ctx: Ctx, Path(org): Path<String>, raw: Bytes) -> ApiResult {
    let req: CreateRepo = body(&raw)?;
    if req.name.is_empty()
        || !req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::validation("Repository", "custom", "name"));
    }
    {
        let world = ctx.sim.world.lock();
        let o = world.org(&org).ok_or_else(ApiError::not_found)?;
        match &ctx.caller.principal {
            Some(Principal::User(l)) => {
                crate::auth::pat_reaches_org(&ctx.caller, &o.login, "administration", true)?;
                if o.members.get(l) != Some(&OrgRole::Admin)
                    && !world.account(l).is_some_and(|a| a.site_admin)
                {
                    return Err(ApiError::forbidden(
                        "You need admin access to the organization before adding a repository to it.",
                    ));
                }
            }
            Some(Principal::Installation(id)) => {
                let inst = world
                    .installations
                    .get(id)
                    .ok_or_else(ApiError::bad_credentials)?;
                let perms = ctx
                    .caller
                    .token
                    .as_ref()
                    .and_then(|t| t.permissions.as_ref())
                    .unwrap_or(&inst.permissions);
                if !inst.account.eq_ignore_ascii_case(&org)
                    || perms.get("administration").map(String::as_str) != Some("write")
                {
                    return Err(ApiError::not_accessible_by_integration());
                }
            }
            _ => return Err(ApiError::requires_auth()),
        }
        if world.repo_id(&org, &req.name).is_some() {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Repository creation failed.",
            );
            e.errors.push(json!({"resource": "Repository", "code": "custom", "field": "name", "message": "name already exists on this account"}));
            return Err(e);
        }
    }
    let private = req.private.unwrap_or(matches!(
        req.visibility.as_deref(),
        Some("private") | Some("internal")
    ));
    let id = crate::seeding::create_repo(&ctx.sim, &org, &req.name, private, "main")
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    if req.auto_init == Some(true) {
        let git_dir = ctx.sim.world.lock().repos[&id].git_dir.clone();
        let seed = crate::seed::RepoSeed {
            name: req.name.clone(),
            commits: vec![crate::seed::CommitSeed {
                message: "Initial commit".into(),
                files: [("README.md".to_string(), Some(format!("# {}\n", req.name)))].into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        crate::seeding::write_history_pub(&git_dir, "main", &seed)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    }
    let mut world = ctx.sim.world.lock();
    let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
    r.description = req.description;
    r.homepage = req.homepage;
    r.has_issues = req.has_issues.unwrap_or(true);
    r.has_projects = req.has_projects.unwrap_or(true);
    r.has_wiki = req.has_wiki.unwrap_or(true);
    let r = &world.repos[&id];
    let perm = caller_permission(&world, &ctx, r);
    let v = render::repo(&ctx.sim, &world, r, perm);
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

async fn get_repo(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("metadata"), |sim, world, r| {
        let perm = caller_permission(world, &ctx, r);
        Ok(axum::Json(render::repo(sim, world, r, perm)).into_response())
    })
}

#[derive(Deserialize)]
struct UpdateRepo {
    name: Option<String>,
    description: Option<String>,
    homepage: Option<String>,
    private: Option<bool>,
    visibility: Option<String>,
    has_issues: Option<bool>,
    has_projects: Option<bool>,
    has_wiki: Option<bool>,
    default_branch: Option<String>,
    archived: Option<bool>,
}

/// `PATCH /repos/{owner}/{repo}`: admin only. A new `name` renames the repository; the old name
/// then answers 301 (see [`crate::server`]).
async fn update_repo(
    ctx: Ctx,
    Path((owner, repo)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: UpdateRepo = body(&raw)?;
    let need = Need::admin_write("administration");
    // Unarchiving is the one write an archived repository accepts.
    let id = {
        let world = ctx.sim.world.lock();
        let id = world
            .repo_id(&owner, &repo)
            .ok_or_else(ApiError::not_found)?;
        crate::auth::check(&world, &ctx.caller, &world.repos[&id], need)?;
        id
    };
    let mut world = ctx.sim.world.lock();
    if let Some(new) = &req.name
        && !new.eq_ignore_ascii_case(&repo)
        && world.repo_id(&owner, new).is_some()
    {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        e.errors.push(json!({"resource": "Repository", "code": "custom", "field": "name", "message": "name already exists on this account"}));
        return Err(e);
    }
    if let Some(b) = &req.default_branch {
        let git_dir = world.repos[&id].git_dir.clone();
        if crate::gitrepo::resolve(&git_dir, &format!("refs/heads/{b}")).is_none() {
            return Err(ApiError::validation(
                "Repository",
                "invalid",
                "default_branch",
            ));
        }
    }
    let old_full = world.repos[&id].full_name().to_ascii_lowercase();
    let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
    let mut renamed = false;
    if let Some(new) = req.name
        && new != r.name
    {
        r.name = new;
        renamed = true;
    }
    if let Some(d) = req.description {
        r.description = Some(d);
    }
    if let Some(h) = req.homepage {
        r.homepage = Some(h);
    }
    if let Some(p) = req.private {
        r.private = p;
    }
    if let Some(v) = req.visibility {
        r.private = v != "public";
    }
    if let Some(v) = req.has_issues {
        r.has_issues = v;
    }
    if let Some(v) = req.has_projects {
        r.has_projects = v;
    }
    if let Some(v) = req.has_wiki {
        r.has_wiki = v;
    }
    if let Some(b) = req.default_branch {
        r.default_branch = b;
    }
    if let Some(a) = req.archived {
        r.archived = a;
    }
    r.version += 1;
    r.updated_at = chrono::Utc::now();
    if renamed {
        world.renamed.insert(old_full, id);
    }
    let r = &world.repos[&id];
    let perm = caller_permission(&world, &ctx, r);
    Ok(axum::Json(render::repo(&ctx.sim, &world, r, perm)).into_response())
}

async fn delete_repo(
    ctx: Ctx,
    Path((owner, repo)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut world = ctx.sim.world.lock();
    let id = ctx.repo_id(&world, &owner, &repo, Need::admin_write("administration"))?;
    if let Some(r) = world.repos.get_mut(&id) {
        r.deleted = true;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
