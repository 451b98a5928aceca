//! Who has access: repository collaborators (list, check, add, remove, permission level) and
//! invitations, a repository's teams, and organisation teams (list, read, create, members,
//! repository grants).
//!
//! Access is computed as GitHub documents it for collaborators: organisation owners are admins,
//! members get the organisation's default permission, teams and direct grants add theirs, and
//! the highest wins. Adding an organisation member as a collaborator grants access at once (204);
//! anyone else gets an invitation (201) that grants it when accepted
//! (`/user/repository_invitations`), as on GitHub.

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::settings::{OrgCaller, admin_repo, org_caller, permission_flags, render_team};
use super::{Ctx, body};
use crate::Sim;
use crate::auth::Need;
use crate::error::{ApiError, ApiResult};
use crate::page::paginate;
use crate::render;
use crate::state::{OrgRole, Permission, Principal, Repo, RepoInvitation, Team, World};

pub fn routes() -> Router {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/collaborators",
            get(list_collaborators),
        )
        .route(
            "/repos/{owner}/{repo}/collaborators/{username}",
            get(check_collaborator)
                .put(add_collaborator)
                .delete(remove_collaborator),
        )
        .route(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            get(collaborator_permission),
        )
        .route(
            "/repos/{owner}/{repo}/invitations",
            get(list_repo_invitations),
        )
        .route(
            "/repos/{owner}/{repo}/invitations/{invitation_id}",
            axum::routing::patch(update_repo_invitation).delete(delete_repo_invitation),
        )
        .route("/user/repository_invitations", get(list_user_invitations))
        .route(
            "/user/repository_invitations/{invitation_id}",
            axum::routing::patch(accept_invitation).delete(decline_invitation),
        )
        .route("/repos/{owner}/{repo}/teams", get(list_repo_teams))
        .route("/orgs/{org}/teams", get(list_org_teams).post(create_team))
        .route("/orgs/{org}/teams/{team_slug}", get(get_team))
        .route(
            "/orgs/{org}/teams/{team_slug}/members",
            get(list_team_members),
        )
        .route(
            "/orgs/{org}/teams/{team_slug}/repos/{owner}/{repo}",
            get(check_team_repo)
                .put(put_team_repo)
                .delete(delete_team_repo),
        )
}

/// Listing or checking collaborators takes push access (GitHub's rule); an installation needs
/// `metadata` only.
const SEE_COLLABORATORS: Need = Need {
    user: Permission::Write,
    app_permission: "metadata",
    write: false,
};

/// What `login` is granted on `repo` (owner, organisation role and default, teams, direct),
/// without the read access everyone has to a public repository.
pub fn granted(world: &World, login: &str, repo: &Repo) -> Permission {
    if repo.owner.eq_ignore_ascii_case(login) {
        return Permission::Admin;
    }
    let mut best = Permission::None;
    if let Some(org) = world.org(&repo.owner) {
        match org.members.get(login) {
            Some(OrgRole::Admin) => return Permission::Admin,
            Some(OrgRole::Member) => best = org.default_repository_permission,
            None => {}
        }
        for (slug, p) in &repo.teams {
            if org
                .teams
                .get(slug)
                .is_some_and(|t| t.members.contains(login))
            {
                best = best.max(*p);
            }
        }
    }
    if let Some(p) = repo.collaborators.get(login) {
        best = best.max(*p);
    }
    best
}

/// `collaborator`: the user with `permissions` and `role_name`.
fn render_collaborator(sim: &Sim, world: &World, login: &str, p: Permission) -> Value {
    let mut v = render::user(sim, world, login);
    v["permissions"] = permission_flags(p);
    v["role_name"] = json!(p.as_str());
    v
}

/// GitHub's legacy level in `.../permission`: maintain reads as write, triage as read.
fn legacy_level(p: Permission) -> &'static str {
    match p {
        Permission::Admin => "admin",
        Permission::Maintain | Permission::Write => "write",
        Permission::Triage | Permission::Read => "read",
        Permission::None => "none",
    }
}

/// `GET /repos/{owner}/{repo}/collaborators`: `affiliation` is `all` (default), `direct` or
/// `outside`; `permission` keeps those whose highest role is that one.
async fn list_collaborators(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let q = ctx.query();
    let affiliation = q.get("affiliation").map(String::as_str).unwrap_or("all");
    if !matches!(affiliation, "all" | "direct" | "outside") {
        return Err(ApiError::validation(
            "Collaborator",
            "invalid",
            "affiliation",
        ));
    }
    let want = match q.get("permission") {
        Some(p) => Some(
            Permission::parse(p)
                .ok_or_else(|| ApiError::validation("Collaborator", "invalid", "permission"))?,
        ),
        None => None,
    };
    let items = ctx.with_repo(&owner, &repo, SEE_COLLABORATORS, |sim, world, r| {
        let org = world.org(&r.owner);
        let is_member = |l: &str| org.is_some_and(|o| o.members.contains_key(l));
        let mut logins: BTreeSet<String> = r.collaborators.keys().cloned().collect();
        if affiliation == "all" {
            if let Some(o) = org {
                logins.extend(o.members.keys().cloned());
                for slug in r.teams.keys() {
                    if let Some(t) = o.teams.get(slug) {
                        logins.extend(t.members.iter().cloned());
                    }
                }
            } else {
                logins.insert(r.owner.clone());
            }
        }
        let mut found: Vec<(u64, Value)> = logins
            .iter()
            .filter(|l| affiliation != "outside" || !is_member(l))
            .filter_map(|l| {
                let a = world.account(l)?;
                let p = granted(world, l, r);
                let keep = p > Permission::None && want.is_none_or(|w| w == p);
                keep.then(|| (a.id, render_collaborator(sim, world, l, p)))
            })
            .collect();
        found.sort_by_key(|(id, _)| *id);
        Ok(found.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
    })?;
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

async fn check_collaborator(
    ctx: Ctx,
    Path((owner, repo, username)): Path<(String, String, String)>,
) -> ApiResult {
    ctx.with_repo(&owner, &repo, SEE_COLLABORATORS, |_, world, r| {
        let a = world.account(&username).ok_or_else(ApiError::not_found)?;
        if granted(world, &a.login, r) > Permission::None {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(ApiError::not_found())
        }
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AddCollaborator {
    permission: Option<String>,
}

/// `PUT /repos/{owner}/{repo}/collaborators/{username}`: admin; `permission` defaults to
/// `push`. As on GitHub, an organisation member or an existing collaborator gets the grant at
/// once (204); anyone else is invited (201 with the invitation, which they accept through
/// `PATCH /user/repository_invitations/{id}`); inviting again updates the pending invitation.
async fn add_collaborator(
    ctx: Ctx,
    Path((owner, repo, username)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: AddCollaborator = body(&raw)?;
    let p = match req.permission.as_deref() {
        None => Permission::Write,
        Some(s) => Permission::parse(s)
            .filter(|p| *p != Permission::None)
            .ok_or_else(|| ApiError::validation("Collaborator", "invalid", "permission"))?,
    };
    ctx.with_repo_mut(
        &owner,
        &repo,
        Need::admin_write("administration"),
        |sim, world, id| {
            let login = world
                .account(&username)
                .filter(|a| a.kind != crate::state::AccountKind::Organization)
                .map(|a| a.login.clone())
                .ok_or_else(ApiError::not_found)?;
            let inviter = ctx.actor(world)?;
            let r = &world.repos[&id];
            if r.owner.eq_ignore_ascii_case(&login) {
                return Err(ApiError::validation_custom(
                    "Repository",
                    "Repository owner cannot be a collaborator",
                ));
            }
            let member = world
                .org(&r.owner)
                .is_some_and(|o| o.members.contains_key(&login));
            if member || r.collaborators.contains_key(&login) {
                let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
                r.collaborators.insert(login, p);
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            let pending = world
                .repo_invitations
                .values()
                .find(|i| i.repo == id && i.invitee == login)
                .map(|i| i.id);
            let iid = match pending {
                Some(iid) => iid,
                None => {
                    let iid = world.id();
                    world.repo_invitations.insert(
                        iid,
                        RepoInvitation {
                            id: iid,
                            repo: id,
                            invitee: login,
                            inviter,
                            permission: p,
                            created_at: Utc::now(),
                        },
                    );
                    iid
                }
            };
            if let Some(i) = world.repo_invitations.get_mut(&iid) {
                i.permission = p;
            }
            let v = render_invitation(sim, world, &world.repo_invitations[&iid]);
            let mut resp = (StatusCode::CREATED, axum::Json(v)).into_response();
            let location = format!("{}/user/repository_invitations/{iid}", sim.api_base);
            if let Ok(h) = axum::http::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(axum::http::header::LOCATION, h);
            }
            Ok(resp)
        },
    )
}

/// `repository-invitation`.
fn render_invitation(sim: &Sim, world: &World, i: &RepoInvitation) -> Value {
    let repo = world
        .repos
        .get(&i.repo)
        .map(|r| render::repo(sim, world, r, None))
        .unwrap_or(Value::Null);
    let html = world
        .repos
        .get(&i.repo)
        .map(|r| format!("{}/{}/{}/invitations", sim.web_base, r.owner, r.name))
        .unwrap_or_default();
    json!({
        "id": i.id,
        "node_id": render::node_id("RepositoryInvitation", i.id),
        "repository": repo,
        "invitee": render::user(sim, world, &i.invitee),
        "inviter": render::user(sim, world, &i.inviter),
        "permissions": i.permission.as_str(),
        "created_at": render::ts(&i.created_at),
        "expired": false,
        "url": format!("{}/user/repository_invitations/{}", sim.api_base, i.id),
        "html_url": html,
    })
}

/// Invitations of live repositories, oldest first.
fn invitations(world: &World, keep: impl Fn(&RepoInvitation) -> bool) -> Vec<&RepoInvitation> {
    world
        .repo_invitations
        .values()
        .filter(|i| world.repos.get(&i.repo).is_some_and(|r| !r.deleted))
        .filter(|i| keep(i))
        .collect()
}

/// `GET /repos/{owner}/{repo}/invitations` (admins; others are told there is nothing here).
async fn list_repo_invitations(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let items = {
        let world = ctx.sim.world.lock();
        let id = admin_repo(
            &ctx,
            &world,
            &owner,
            &repo,
            Need::admin_read("administration"),
        )?;
        invitations(&world, |i| i.repo == id)
            .into_iter()
            .map(|i| render_invitation(&ctx.sim, &world, i))
            .collect::<Vec<_>>()
    };
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateInvitation {
    permissions: Option<String>,
}

async fn update_repo_invitation(
    ctx: Ctx,
    Path((owner, repo, iid)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let iid: u64 = iid.parse().map_err(|_| ApiError::not_found())?;
    let req: UpdateInvitation = body(&raw)?;
    let p = match req.permissions.as_deref() {
        None => None,
        Some(s) => Some(
            Permission::parse(s)
                .filter(|p| *p != Permission::None)
                .ok_or_else(|| {
                    ApiError::validation("RepositoryInvitation", "invalid", "permissions")
                })?,
        ),
    };
    let mut world = ctx.sim.world.lock();
    let id = admin_repo(
        &ctx,
        &world,
        &owner,
        &repo,
        Need::admin_write("administration"),
    )?;
    let i = world
        .repo_invitations
        .get_mut(&iid)
        .filter(|i| i.repo == id)
        .ok_or_else(ApiError::not_found)?;
    if let Some(p) = p {
        i.permission = p;
    }
    let v = render_invitation(&ctx.sim, &world, &world.repo_invitations[&iid]);
    Ok(axum::Json(v).into_response())
}

async fn delete_repo_invitation(
    ctx: Ctx,
    Path((owner, repo, iid)): Path<(String, String, String)>,
) -> ApiResult {
    let iid: u64 = iid.parse().map_err(|_| ApiError::not_found())?;
    let mut world = ctx.sim.world.lock();
    let id = admin_repo(
        &ctx,
        &world,
        &owner,
        &repo,
        Need::admin_write("administration"),
    )?;
    if world
        .repo_invitations
        .get(&iid)
        .is_some_and(|i| i.repo == id)
    {
        world.repo_invitations.remove(&iid);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The signed-in user (invitations are a user's own business: apps and the anonymous get 404).
fn invitee(ctx: &Ctx) -> Result<String, ApiError> {
    match &ctx.caller.principal {
        Some(Principal::User(l)) => Ok(l.clone()),
        None => Err(ApiError::requires_auth()),
        Some(_) => Err(ApiError::forbidden(
            "Resource not accessible by integration",
        )),
    }
}

async fn list_user_invitations(ctx: Ctx) -> ApiResult {
    let login = invitee(&ctx)?;
    let items = {
        let world = ctx.sim.world.lock();
        invitations(&world, |i| i.invitee.eq_ignore_ascii_case(&login))
            .into_iter()
            .map(|i| render_invitation(&ctx.sim, &world, i))
            .collect::<Vec<_>>()
    };
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

/// `PATCH /user/repository_invitations/{invitation_id}`: the invitee accepts and becomes a
/// collaborator with the invited permission.
async fn accept_invitation(ctx: Ctx, Path(iid): Path<String>) -> ApiResult {
    let login = invitee(&ctx)?;
    let iid: u64 = iid.parse().map_err(|_| ApiError::not_found())?;
    let mut world = ctx.sim.world.lock();
    let i = invitations(&world, |i| {
        i.id == iid && i.invitee.eq_ignore_ascii_case(&login)
    })
    .first()
    .map(|i| (*i).clone())
    .ok_or_else(ApiError::not_found)?;
    world.repo_invitations.remove(&iid);
    let r = world
        .repos
        .get_mut(&i.repo)
        .ok_or_else(ApiError::not_found)?;
    r.collaborators.insert(i.invitee, i.permission);
    r.version += 1;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn decline_invitation(ctx: Ctx, Path(iid): Path<String>) -> ApiResult {
    let login = invitee(&ctx)?;
    let iid: u64 = iid.parse().map_err(|_| ApiError::not_found())?;
    let mut world = ctx.sim.world.lock();
    let found = invitations(&world, |i| {
        i.id == iid && i.invitee.eq_ignore_ascii_case(&login)
    })
    .first()
    .map(|i| i.id)
    .ok_or_else(ApiError::not_found)?;
    world.repo_invitations.remove(&found);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE .../collaborators/{username}`: admins, or the collaborator removing themself.
async fn remove_collaborator(
    ctx: Ctx,
    Path((owner, repo, username)): Path<(String, String, String)>,
) -> ApiResult {
    let own = ctx
        .caller
        .login()
        .is_some_and(|l| l.eq_ignore_ascii_case(&username));
    let need = if own {
        Need::read("metadata")
    } else {
        Need::admin_write("administration")
    };
    ctx.with_repo_mut(&owner, &repo, need, |_, world, id| {
        let login = world
            .account(&username)
            .map(|a| a.login.clone())
            .ok_or_else(ApiError::not_found)?;
        let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
        r.collaborators.remove(&login);
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

/// `GET .../collaborators/{username}/permission`: the user's effective access (read on a public
/// repository for anyone), as `permission` (legacy level) and `role_name`.
async fn collaborator_permission(
    ctx: Ctx,
    Path((owner, repo, username)): Path<(String, String, String)>,
) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("metadata"), |sim, world, r| {
        let a = world.account(&username).ok_or_else(ApiError::not_found)?;
        let p = world.user_permission(&a.login, r);
        Ok(axum::Json(json!({
            "permission": legacy_level(p),
            "role_name": p.as_str(),
            "user": render_collaborator(sim, world, &a.login, p),
        }))
        .into_response())
    })
}

// ---------------------------------------------------------------------------------------------
// Teams

async fn list_repo_teams(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let items = ctx.with_repo(&owner, &repo, Need::read("metadata"), |sim, world, r| {
        Ok(r.teams
            .iter()
            .filter_map(|(slug, p)| render_team(sim, world, &r.owner, slug, Some(*p)))
            .collect::<Vec<_>>())
    })?;
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

/// May the caller see `team`? Owners and installations with `members` see every team, members
/// the closed ones and the secret ones they belong to.
fn sees_team(ctx: &Ctx, who: OrgCaller, team: &Team) -> bool {
    match who {
        OrgCaller::Owner | OrgCaller::Installation => true,
        OrgCaller::Member => {
            team.privacy != "secret" || ctx.caller.login().is_some_and(|l| team.members.contains(l))
        }
        OrgCaller::Outsider => false,
    }
}

/// `team-full`.
fn render_team_full(sim: &Sim, world: &World, org: &str, t: &Team) -> Value {
    let Some(mut v) = render_team(sim, world, org, &t.slug, None) else {
        return Value::Null;
    };
    let repos = world
        .repos
        .values()
        .filter(|r| {
            !r.deleted && r.owner.eq_ignore_ascii_case(org) && r.teams.contains_key(&t.slug)
        })
        .count();
    let created = world
        .account(org)
        .map(|a| a.created_at)
        .unwrap_or_else(Utc::now);
    v["members_count"] = json!(t.members.len());
    v["repos_count"] = json!(repos);
    v["created_at"] = json!(render::ts(&created));
    v["updated_at"] = json!(render::ts(&created));
    let mut organization = render::org(sim, world, org);
    // `team-organization` types several of these as non-null strings; empty ones are left out
    // rather than sent as null (description and archived_at are required, nullable).
    if let Some(o) = organization.as_object_mut() {
        o.retain(|k, v| !v.is_null() || k == "description" || k == "archived_at");
    }
    v["organization"] = organization;
    v
}

fn outsider(org: &str) -> ApiError {
    ApiError::forbidden(format!("You must be a member of {org} to see its teams."))
}

async fn list_org_teams(ctx: Ctx, Path(org): Path<String>) -> ApiResult {
    let items = {
        let world = ctx.sim.world.lock();
        let who = org_caller(&ctx, &world, &org, "members", false)?;
        if who == OrgCaller::Outsider {
            return Err(outsider(&org));
        }
        let o = world.org(&org).ok_or_else(ApiError::not_found)?;
        o.teams
            .values()
            .filter(|t| sees_team(&ctx, who, t))
            .filter_map(|t| render_team(&ctx.sim, &world, &o.login, &t.slug, None))
            .collect::<Vec<_>>()
    };
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

/// The team `slug` of `org` if the caller may see it (404 otherwise, as GitHub hides teams).
fn visible_team<'a>(
    ctx: &Ctx,
    world: &'a World,
    org: &str,
    slug: &str,
) -> Result<(&'a str, &'a Team), ApiError> {
    let who = org_caller(ctx, world, org, "members", false)?;
    let o = world.org(org).ok_or_else(ApiError::not_found)?;
    let t = o
        .teams
        .values()
        .find(|t| t.slug.eq_ignore_ascii_case(slug))
        .filter(|t| sees_team(ctx, who, t))
        .ok_or_else(ApiError::not_found)?;
    Ok((o.login.as_str(), t))
}

async fn get_team(ctx: Ctx, Path((org, slug)): Path<(String, String)>) -> ApiResult {
    let world = ctx.sim.world.lock();
    let (login, t) = visible_team(&ctx, &world, &org, &slug)?;
    Ok(axum::Json(render_team_full(&ctx.sim, &world, login, t)).into_response())
}

async fn list_team_members(ctx: Ctx, Path((org, slug)): Path<(String, String)>) -> ApiResult {
    let role = ctx
        .query()
        .get("role")
        .cloned()
        .unwrap_or_else(|| "all".into());
    if !matches!(role.as_str(), "all" | "member" | "maintainer") {
        return Err(ApiError::validation("Team", "invalid", "role"));
    }
    let items = {
        let world = ctx.sim.world.lock();
        let (_, t) = visible_team(&ctx, &world, &org, &slug)?;
        // The simulator keeps no team maintainers: everyone is a plain member.
        let mut members: Vec<(u64, Value)> = if role == "maintainer" {
            Vec::new()
        } else {
            t.members
                .iter()
                .filter_map(|l| {
                    world
                        .account(l)
                        .map(|a| (a.id, render::account(&ctx.sim, a)))
                })
                .collect()
        };
        members.sort_by_key(|(id, _)| *id);
        members.into_iter().map(|(_, v)| v).collect::<Vec<_>>()
    };
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

#[derive(Deserialize)]
struct CreateTeam {
    name: String,
    description: Option<String>,
    #[serde(default)]
    maintainers: Vec<String>,
    #[serde(default)]
    repo_names: Vec<String>,
    privacy: Option<String>,
    permission: Option<String>,
}

/// GitHub's team slug: lowercase, runs of anything but letters and digits become one `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// `POST /orgs/{org}/teams`: organisation members (and installations with `members: write`)
/// create teams; the creator joins it. `repo_names` (`org/repo` or `repo`) get `permission`
/// (`pull` by default).
async fn create_team(ctx: Ctx, Path(org): Path<String>, raw: Bytes) -> ApiResult {
    let req: CreateTeam = body(&raw)?;
    let mut world = ctx.sim.world.lock();
    let who = org_caller(&ctx, &world, &org, "members", true)?;
    if who == OrgCaller::Outsider {
        return Err(ApiError::forbidden(format!(
            "You must be a member of {org} to create a team."
        )));
    }
    let slug = slugify(&req.name);
    if slug.is_empty() {
        return Err(ApiError::validation("Team", "invalid", "name"));
    }
    let privacy = req.privacy.clone().unwrap_or_else(|| "secret".into());
    if !matches!(privacy.as_str(), "secret" | "closed") {
        return Err(ApiError::validation("Team", "invalid", "privacy"));
    }
    let perm = match req.permission.as_deref() {
        None | Some("pull") => Permission::Read,
        Some("push") => Permission::Write,
        Some(_) => return Err(ApiError::validation("Team", "invalid", "permission")),
    };
    let login = world
        .org(&org)
        .map(|o| o.login.clone())
        .ok_or_else(ApiError::not_found)?;
    let o = world.org(&login).ok_or_else(ApiError::not_found)?;
    if o.teams
        .values()
        .any(|t| t.slug == slug || t.name.eq_ignore_ascii_case(&req.name))
    {
        return Err(ApiError::validation_custom(
            "Team",
            "Name must be unique for this org",
        ));
    }
    let mut members: BTreeSet<String> = BTreeSet::new();
    if let (Some(Principal::User(l)), OrgCaller::Owner | OrgCaller::Member) =
        (&ctx.caller.principal, who)
    {
        members.insert(l.clone());
    }
    for m in &req.maintainers {
        let a = world
            .account(m)
            .filter(|a| o.members.contains_key(&a.login))
            .ok_or_else(|| {
                ApiError::validation_custom("Team", &format!("{m} is not a member of {login}"))
            })?;
        members.insert(a.login.clone());
    }
    let mut repos = Vec::new();
    for n in &req.repo_names {
        let (ro, rn) = n.split_once('/').unwrap_or((login.as_str(), n.as_str()));
        if !ro.eq_ignore_ascii_case(&login) {
            return Err(ApiError::validation("Team", "invalid", "repo_names"));
        }
        let id = world
            .repo_id(ro, rn)
            .ok_or_else(|| ApiError::validation("Team", "invalid", "repo_names"))?;
        repos.push(id);
    }
    let id = world.id();
    let team = Team {
        id,
        slug: slug.clone(),
        name: req.name.clone(),
        description: req.description.clone(),
        privacy,
        members,
    };
    world
        .org_mut(&login)
        .ok_or_else(ApiError::not_found)?
        .teams
        .insert(slug.clone(), team.clone());
    for rid in repos {
        if let Some(r) = world.repos.get_mut(&rid) {
            r.teams.insert(slug.clone(), perm);
            r.version += 1;
        }
    }
    let v = render_team_full(&ctx.sim, &world, &login, &team);
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// Resolves the team and the repository for `.../teams/{team_slug}/repos/{owner}/{repo}`: the
/// repository must belong to the organisation.
fn team_and_repo(
    ctx: &Ctx,
    world: &World,
    org: &str,
    slug: &str,
    owner: &str,
    repo: &str,
    need: Need,
) -> Result<(String, u64), ApiError> {
    let (_, t) = visible_team(ctx, world, org, slug)?;
    let id = ctx.repo_id(world, owner, repo, need)?;
    if !world.repos[&id].owner.eq_ignore_ascii_case(org) {
        return Err(ApiError::validation_custom(
            "Team",
            "Repository must be owned by the organization",
        ));
    }
    Ok((t.slug.clone(), id))
}

/// `GET /orgs/{org}/teams/{team_slug}/repos/{owner}/{repo}`: 204 when the team has access
/// (GitHub's default answer), 404 when not.
async fn check_team_repo(
    ctx: Ctx,
    Path((org, slug, owner, repo)): Path<(String, String, String, String)>,
) -> ApiResult {
    let world = ctx.sim.world.lock();
    let (slug, id) = team_and_repo(
        &ctx,
        &world,
        &org,
        &slug,
        &owner,
        &repo,
        Need::read("metadata"),
    )
    .map_err(|e| {
        if e.status == StatusCode::UNPROCESSABLE_ENTITY {
            ApiError::not_found()
        } else {
            e
        }
    })?;
    if world.repos[&id].teams.contains_key(&slug) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TeamRepo {
    permission: Option<String>,
}

/// `PUT /orgs/{org}/teams/{team_slug}/repos/{owner}/{repo}`: repository admins grant a team
/// `permission` (`push` by default).
async fn put_team_repo(
    ctx: Ctx,
    Path((org, slug, owner, repo)): Path<(String, String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: TeamRepo = body(&raw)?;
    let p = match req.permission.as_deref() {
        None => Permission::Write,
        Some(s) => Permission::parse(s)
            .filter(|p| *p != Permission::None)
            .ok_or_else(|| ApiError::validation("Team", "invalid", "permission"))?,
    };
    let mut world = ctx.sim.world.lock();
    let (slug, id) = team_and_repo(
        &ctx,
        &world,
        &org,
        &slug,
        &owner,
        &repo,
        Need::admin_write("administration"),
    )?;
    let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
    r.teams.insert(slug, p);
    r.version += 1;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_team_repo(
    ctx: Ctx,
    Path((org, slug, owner, repo)): Path<(String, String, String, String)>,
) -> ApiResult {
    let mut world = ctx.sim.world.lock();
    let (slug, id) = team_and_repo(
        &ctx,
        &world,
        &org,
        &slug,
        &owner,
        &repo,
        Need::admin_write("administration"),
    )?;
    let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
    r.teams.remove(&slug);
    r.version += 1;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_slugs_follow_github() {
        assert_eq!(slugify("A-Team"), "a-team");
        assert_eq!(slugify("Release  Managers!"), "release-managers");
        assert_eq!(slugify("  x  "), "x");
    }
}
