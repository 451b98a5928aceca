//! Releases and their assets: list, read (by id, by tag, the latest), create (making the tag with
//! the git CLI when it is missing), update, delete; assets listed, read as JSON or downloaded as
//! bytes (`Accept: application/octet-stream`: a 302 to a pre-signed URL of the download host,
//! [`crate::objects`]; or `browser_download_url` through [`browser_download`]), renamed,
//! deleted, and uploaded on the uploads host
//! (`POST /api/uploads/repos/OWNER/REPO/releases/ID/assets?name=&label=`).
//!
//! As on GitHub: drafts (and their assets) exist only for callers with push access; the latest
//! release is the newest published non-prerelease; a duplicate tag name or asset name is 422
//! `already_exists`; asset names with characters GitHub does not keep are renamed (`a b.zip` →
//! `a.b.zip`); deleting a release keeps its tag. Changes send `release` webhook events.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Ctx, body};
use crate::Sim;
use crate::auth::{self, Need};
use crate::error::{ApiError, ApiResult};
use crate::gitrepo;
use crate::page::paginate;
use crate::render;
use crate::seed::RepoSeed;
use crate::state::{AccountKind, Asset, Release, Repo, World};
use crate::webhooks;

/// Largest asset accepted (GitHub's limit is 2 GiB per file).
const MAX_ASSET: usize = 2 << 30;

pub fn routes() -> Router {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/releases",
            get(list_releases).post(create_release),
        )
        .route("/repos/{owner}/{repo}/releases/latest", get(latest_release))
        .route(
            "/repos/{owner}/{repo}/releases/tags/{*tag}",
            get(release_by_tag),
        )
        .route(
            "/repos/{owner}/{repo}/releases/{release_id}",
            get(get_release)
                .patch(update_release)
                .delete(delete_release),
        )
        .route(
            "/repos/{owner}/{repo}/releases/{release_id}/assets",
            get(list_assets),
        )
        .route(
            "/repos/{owner}/{repo}/releases/assets/{asset_id}",
            get(get_asset).patch(update_asset).delete(delete_asset),
        )
        .route(
            "/uploads/repos/{owner}/{repo}/releases/{release_id}/assets",
            post(upload_asset),
        )
}

/// `release` as GitHub renders it. Drafts have no tag yet, so their web URLs use
/// `untagged-ID` as GitHub's do.
pub fn render_release(sim: &Sim, world: &World, repo: &Repo, rel: &Release) -> Value {
    let api = format!("{}/repos/{}/{}", sim.api_base, repo.owner, repo.name);
    let web = format!("{}/{}/{}", sim.web_base, repo.owner, repo.name);
    let assets: Vec<Value> = rel
        .assets
        .values()
        .map(|a| render_asset(sim, world, repo, rel, a))
        .collect();
    json!({
        "url": format!("{api}/releases/{}", rel.id),
        "assets_url": format!("{api}/releases/{}/assets", rel.id),
        "upload_url": format!(
            "{}/repos/{}/{}/releases/{}/assets{{?name,label}}",
            sim.uploads_base, repo.owner, repo.name, rel.id
        ),
        "html_url": format!("{web}/releases/tag/{}", web_tag(rel)),
        "id": rel.id,
        "node_id": render::node_id("Release", rel.id),
        "author": render::user(sim, world, &rel.author),
        "tag_name": rel.tag_name,
        "target_commitish": rel.target_commitish,
        "name": rel.name,
        "body": rel.body,
        "draft": rel.draft,
        "prerelease": rel.prerelease,
        "immutable": false,
        "created_at": render::ts(&rel.created_at),
        "published_at": render::ts_opt(&rel.published_at),
        "updated_at": render::ts(&rel.published_at.unwrap_or(rel.created_at)),
        "assets": assets,
        "tarball_url": format!("{api}/tarball/{}", rel.tag_name),
        "zipball_url": format!("{api}/zipball/{}", rel.tag_name),
    })
}

/// `release-asset`.
pub fn render_asset(sim: &Sim, world: &World, repo: &Repo, rel: &Release, a: &Asset) -> Value {
    json!({
        "url": format!("{}/repos/{}/{}/releases/assets/{}", sim.api_base, repo.owner, repo.name, a.id),
        "browser_download_url": browser_download_url(sim, repo, rel, &a.name),
        "id": a.id,
        "node_id": render::node_id("ReleaseAsset", a.id),
        "name": a.name,
        "label": a.label,
        "state": "uploaded",
        "content_type": a.content_type,
        "size": a.data.len(),
        "digest": format!("sha256:{}", hex::encode(Sha256::digest(&a.data))),
        "download_count": a.download_count,
        "created_at": render::ts(&a.created_at),
        "updated_at": render::ts(&a.updated_at),
        "uploader": render::user(sim, world, &a.uploader),
    })
}

/// `https://HOST/OWNER/REPO/releases/download/TAG/NAME`, served by [`browser_download`].
pub fn browser_download_url(sim: &Sim, repo: &Repo, rel: &Release, name: &str) -> String {
    let enc = |s: &str| {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "{}/{}/{}/releases/download/{}/{}",
        sim.web_base,
        repo.owner,
        repo.name,
        web_tag(rel)
            .split('/')
            .map(enc)
            .collect::<Vec<_>>()
            .join("/"),
        enc(name)
    )
}

fn web_tag(rel: &Release) -> String {
    if rel.draft {
        format!("untagged-{}", rel.id)
    } else {
        rel.tag_name.clone()
    }
}

/// The `release` event payloads for `actions` (GitHub sends `created`, then for a published
/// release `published` and `released` or `prereleased`; `edited`; `deleted`).
fn release_events(
    sim: &Sim,
    world: &World,
    repo: &Repo,
    rel: &Release,
    actor: &str,
    actions: &[&str],
) -> Vec<Value> {
    let release = render_release(sim, world, repo, rel);
    let repository = render::repo(sim, world, repo, None);
    let sender = render::user(sim, world, actor);
    actions
        .iter()
        .map(|a| {
            json!({
                "action": a,
                "release": release,
                "repository": repository,
                "sender": sender,
            })
        })
        .collect()
}

/// The actions publishing `rel` sends.
fn publish_actions(rel: &Release) -> [&'static str; 2] {
    [
        "published",
        if rel.prerelease {
            "prereleased"
        } else {
            "released"
        },
    ]
}

/// Sends the payloads (after the world lock is released: delivery takes it).
fn emit_all(sim: &std::sync::Arc<Sim>, repo: u64, payloads: Vec<Value>) {
    for p in payloads {
        webhooks::emit(sim, repo, "release", p);
    }
}

/// May the caller see drafts (push access)?
fn sees_drafts(world: &World, ctx: &Ctx, repo: &Repo) -> bool {
    auth::check(world, &ctx.caller, repo, Need::write("contents")).is_ok()
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn json_status(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// Newest first, as GitHub lists releases.
fn newest_first(repo: &Repo) -> Vec<&Release> {
    let mut rels: Vec<&Release> = repo.releases.values().collect();
    rels.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    rels
}

async fn list_releases(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let items = ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        let drafts = sees_drafts(world, &ctx, r);
        Ok(newest_first(r)
            .into_iter()
            .filter(|rel| drafts || !rel.draft)
            .map(|rel| render_release(sim, world, r, rel))
            .collect::<Vec<_>>())
    })?;
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

async fn latest_release(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        let rel = r
            .releases
            .values()
            .filter(|rel| !rel.draft && !rel.prerelease)
            .max_by_key(|rel| (rel.created_at, rel.id))
            .ok_or_else(ApiError::not_found)?;
        Ok(axum::Json(render_release(sim, world, r, rel)).into_response())
    })
}

async fn release_by_tag(
    ctx: Ctx,
    Path((owner, repo, tag)): Path<(String, String, String)>,
) -> ApiResult {
    ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        let rel = r
            .releases
            .values()
            .find(|rel| !rel.draft && rel.tag_name == tag)
            .ok_or_else(ApiError::not_found)?;
        Ok(axum::Json(render_release(sim, world, r, rel)).into_response())
    })
}

async fn get_release(
    ctx: Ctx,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult {
    let id = parse_id(&id)?;
    ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        let rel = visible_release(world, &ctx, r, id)?;
        Ok(axum::Json(render_release(sim, world, r, rel)).into_response())
    })
}

fn visible_release<'a>(
    world: &World,
    ctx: &Ctx,
    repo: &'a Repo,
    id: u64,
) -> Result<&'a Release, ApiError> {
    repo.releases
        .get(&id)
        .filter(|rel| !rel.draft || sees_drafts(world, ctx, repo))
        .ok_or_else(ApiError::not_found)
}

#[derive(Deserialize)]
struct CreateRelease {
    tag_name: String,
    target_commitish: Option<String>,
    name: Option<String>,
    body: Option<String>,
    draft: Option<bool>,
    prerelease: Option<bool>,
    generate_release_notes: Option<bool>,
}

#[derive(Deserialize, Default)]
struct UpdateRelease {
    tag_name: Option<String>,
    target_commitish: Option<String>,
    name: Option<String>,
    body: Option<String>,
    draft: Option<bool>,
    prerelease: Option<bool>,
}

/// What a release's tag needs from git, read under the lock and used after it is dropped.
struct GitSide {
    git_dir: std::path::PathBuf,
    default_branch: String,
}

/// Makes `refs/tags/TAG` at `target` (a branch, tag or commit) unless the tag exists. Runs git:
/// call without the world lock.
fn ensure_tag(g: &GitSide, tag: &str, target: Option<&str>) -> Result<(), ApiError> {
    if gitrepo::resolve(&g.git_dir, &format!("refs/tags/{tag}")).is_some() {
        return Ok(());
    }
    if gitrepo::run(
        &g.git_dir,
        &["check-ref-format", &format!("refs/tags/{tag}")],
    )
    .is_err()
    {
        return Err(ApiError::validation("Release", "invalid", "tag_name"));
    }
    let target = target.unwrap_or(&g.default_branch);
    let Some(sha) = gitrepo::resolve(&g.git_dir, target) else {
        let empty = gitrepo::refs(&g.git_dir).map_err(internal)?.is_empty();
        return Err(if empty {
            ApiError::validation_custom("Release", "Repository is empty.")
        } else {
            ApiError::validation("Release", "invalid", "target_commitish")
        });
    };
    if let Err(e) = gitrepo::run(&g.git_dir, &["tag", tag, &sha]) {
        // A concurrent request may have made the same tag; only a still-missing tag is an error.
        if gitrepo::resolve(&g.git_dir, &format!("refs/tags/{tag}")).is_none() {
            return Err(internal(format!("{e:#}")));
        }
    }
    Ok(())
}

fn duplicate_tag(repo: &Repo, tag: &str, except: Option<u64>) -> Result<(), ApiError> {
    if repo
        .releases
        .values()
        .any(|r| r.tag_name == tag && Some(r.id) != except)
    {
        return Err(ApiError::validation(
            "Release",
            "already_exists",
            "tag_name",
        ));
    }
    Ok(())
}

/// `POST /repos/{owner}/{repo}/releases`: push access; the tag is made at `target_commitish`
/// (default: the default branch) when it is missing and the release is published, not a draft.
async fn create_release(
    ctx: Ctx,
    Path((owner, repo)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: CreateRelease = body(&raw)?;
    if req.tag_name.trim().is_empty() {
        return Err(ApiError::validation("Release", "missing_field", "tag_name"));
    }
    let draft = req.draft.unwrap_or(false);
    let g = ctx.with_repo(&owner, &repo, Need::write("contents"), |_, _, r| {
        duplicate_tag(r, &req.tag_name, None)?;
        Ok(GitSide {
            git_dir: r.git_dir.clone(),
            default_branch: r.default_branch.clone(),
        })
    })?;
    if !draft {
        ensure_tag(&g, &req.tag_name, req.target_commitish.as_deref())?;
    }
    let body_text = match (req.body, req.generate_release_notes) {
        (Some(b), _) => Some(b),
        (None, Some(true)) => Some(format!(
            "**Full Changelog**: {}/{owner}/{repo}/commits/{}",
            ctx.sim.web_base, req.tag_name
        )),
        (None, _) => None,
    };
    let (resp, repo_id, events) =
        ctx.with_repo_mut(&owner, &repo, Need::write("contents"), |sim, world, id| {
            duplicate_tag(&world.repos[&id], &req.tag_name, None)?;
            let author = ctx.actor(world)?;
            let rid = world.id();
            let now = Utc::now();
            let rel = Release {
                id: rid,
                tag_name: req.tag_name.clone(),
                target_commitish: req
                    .target_commitish
                    .clone()
                    .unwrap_or_else(|| g.default_branch.clone()),
                name: req.name.clone(),
                body: body_text.clone(),
                draft,
                prerelease: req.prerelease.unwrap_or(false),
                author,
                created_at: now,
                published_at: (!draft).then_some(now),
                assets: Default::default(),
            };
            let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
            r.releases.insert(rid, rel);
            let r = &world.repos[&id];
            let rel = &r.releases[&rid];
            let v = render_release(sim, world, r, rel);
            let mut actions = vec!["created"];
            if !rel.draft {
                actions.extend(publish_actions(rel));
            }
            let events = release_events(sim, world, r, rel, &rel.author, &actions);
            Ok((json_status(StatusCode::CREATED, v), id, events))
        })?;
    emit_all(&ctx.sim, repo_id, events);
    Ok(resp)
}

/// `PATCH /repos/{owner}/{repo}/releases/{release_id}`: publishing a draft makes its tag.
async fn update_release(
    ctx: Ctx,
    Path((owner, repo, id)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let rid = parse_id(&id)?;
    let req: UpdateRelease = body(&raw)?;
    let (g, tag, target, draft) =
        ctx.with_repo(&owner, &repo, Need::write("contents"), |_, _, r| {
            let rel = r.releases.get(&rid).ok_or_else(ApiError::not_found)?;
            let tag = req.tag_name.clone().unwrap_or_else(|| rel.tag_name.clone());
            if tag.trim().is_empty() {
                return Err(ApiError::validation("Release", "missing_field", "tag_name"));
            }
            duplicate_tag(r, &tag, Some(rid))?;
            let target = req
                .target_commitish
                .clone()
                .unwrap_or_else(|| rel.target_commitish.clone());
            Ok((
                GitSide {
                    git_dir: r.git_dir.clone(),
                    default_branch: r.default_branch.clone(),
                },
                tag,
                target,
                req.draft.unwrap_or(rel.draft),
            ))
        })?;
    if !draft {
        ensure_tag(&g, &tag, Some(&target))?;
    }
    let (resp, repo_id, events) =
        ctx.with_repo_mut(&owner, &repo, Need::write("contents"), |sim, world, id| {
            duplicate_tag(&world.repos[&id], &tag, Some(rid))?;
            let actor = ctx.actor(world)?;
            let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
            let rel = r.releases.get_mut(&rid).ok_or_else(ApiError::not_found)?;
            rel.tag_name = tag.clone();
            rel.target_commitish = target.clone();
            if let Some(n) = &req.name {
                rel.name = Some(n.clone());
            }
            if let Some(b) = &req.body {
                rel.body = Some(b.clone());
            }
            if let Some(p) = req.prerelease {
                rel.prerelease = p;
            }
            let published = rel.draft && !draft;
            if published {
                rel.published_at = Some(Utc::now());
            }
            if draft {
                rel.published_at = None;
            }
            rel.draft = draft;
            let r = &world.repos[&id];
            let rel = &r.releases[&rid];
            let mut actions = vec!["edited"];
            if published {
                actions.extend(publish_actions(rel));
            }
            let events = release_events(sim, world, r, rel, &actor, &actions);
            Ok((
                axum::Json(render_release(sim, world, r, rel)).into_response(),
                id,
                events,
            ))
        })?;
    emit_all(&ctx.sim, repo_id, events);
    Ok(resp)
}

async fn delete_release(
    ctx: Ctx,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult {
    let rid = parse_id(&id)?;
    let (repo_id, events) =
        ctx.with_repo_mut(&owner, &repo, Need::write("contents"), |sim, world, id| {
            let actor = ctx.actor(world)?;
            let r = &world.repos[&id];
            let rel = r.releases.get(&rid).ok_or_else(ApiError::not_found)?;
            let events = release_events(sim, world, r, rel, &actor, &["deleted"]);
            if let Some(r) = world.repos.get_mut(&id) {
                r.releases.remove(&rid);
            }
            Ok((id, events))
        })?;
    emit_all(&ctx.sim, repo_id, events);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_assets(
    ctx: Ctx,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult {
    let rid = parse_id(&id)?;
    let items = ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        let rel = visible_release(world, &ctx, r, rid)?;
        Ok(rel
            .assets
            .values()
            .map(|a| render_asset(sim, world, r, rel, a))
            .collect::<Vec<_>>())
    })?;
    paginate(&ctx.sim.api_base, &ctx.uri, items)
}

/// The release holding asset `asset_id`, if the caller may see it.
fn find_asset<'a>(
    world: &World,
    ctx: &Ctx,
    repo: &'a Repo,
    asset_id: u64,
) -> Result<&'a Release, ApiError> {
    repo.releases
        .values()
        .find(|rel| rel.assets.contains_key(&asset_id))
        .filter(|rel| !rel.draft || sees_drafts(world, ctx, repo))
        .ok_or_else(ApiError::not_found)
}

fn wants_bytes(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/octet-stream"))
}

/// The asset's bytes as a download (`content-disposition: attachment`).
pub(crate) fn bytes_response(a: &Asset) -> Response {
    let mut resp = Response::new(Body::from(a.data.clone()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let disposition = format!(
        "attachment; filename={}",
        a.name.replace(|c: char| c == '"' || c.is_control(), "_")
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// `GET /repos/{owner}/{repo}/releases/assets/{asset_id}`: JSON, or with
/// `Accept: application/octet-stream` a 302 to a pre-signed, expiring URL of the download host
/// ([`crate::objects`]) that serves without a token, as GitHub redirects to its storage.
async fn get_asset(
    ctx: Ctx,
    headers: HeaderMap,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult {
    let aid = parse_id(&id)?;
    let world = ctx.sim.world.lock();
    let id = ctx.repo_id(&world, &owner, &repo, Need::read("contents"))?;
    let r = &world.repos[&id];
    let rid = find_asset(&world, &ctx, r, aid)?.id;
    if wants_bytes(&headers) {
        // GitHub answers 302 to its storage (its description documents the 302 beside the
        // JSON 200); the download host counts the download.
        let url = crate::objects::presign(&ctx.sim, &format!("release-assets/{id}/{aid}"))?;
        let mut resp = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&url) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(resp);
    }
    let rel = &r.releases[&rid];
    Ok(axum::Json(render_asset(&ctx.sim, &world, r, rel, &rel.assets[&aid])).into_response())
}

/// `state` (also in GitHub's body) is ignored: every asset here is `uploaded`.
#[derive(Deserialize, Default)]
struct UpdateAsset {
    name: Option<String>,
    label: Option<String>,
}

async fn update_asset(
    ctx: Ctx,
    Path((owner, repo, id)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let aid = parse_id(&id)?;
    let req: UpdateAsset = body(&raw)?;
    let new_name = match &req.name {
        Some(n) => Some(
            clean_asset_name(n)
                .ok_or_else(|| ApiError::validation("ReleaseAsset", "invalid", "name"))?,
        ),
        None => None,
    };
    ctx.with_repo_mut(&owner, &repo, Need::write("contents"), |sim, world, id| {
        let rid = find_asset(world, &ctx, &world.repos[&id], aid)?.id;
        let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
        let rel = r.releases.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        if let Some(n) = &new_name
            && rel.assets.values().any(|a| a.id != aid && &a.name == n)
        {
            return Err(ApiError::validation(
                "ReleaseAsset",
                "already_exists",
                "name",
            ));
        }
        let a = rel.assets.get_mut(&aid).ok_or_else(ApiError::not_found)?;
        if let Some(n) = new_name {
            a.name = n;
        }
        if let Some(l) = req.label {
            a.label = Some(l);
        }
        a.updated_at = Utc::now();
        let r = &world.repos[&id];
        let rel = &r.releases[&rid];
        Ok(axum::Json(render_asset(sim, world, r, rel, &rel.assets[&aid])).into_response())
    })
}

async fn delete_asset(
    ctx: Ctx,
    Path((owner, repo, id)): Path<(String, String, String)>,
) -> ApiResult {
    let aid = parse_id(&id)?;
    ctx.with_repo_mut(&owner, &repo, Need::write("contents"), |_, world, id| {
        let rid = find_asset(world, &ctx, &world.repos[&id], aid)?.id;
        let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
        if let Some(rel) = r.releases.get_mut(&rid) {
            rel.assets.remove(&aid);
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

/// GitHub's renaming of uploaded file names: characters other than letters, digits, `-`, `_`,
/// `.` and `+` become `.`, runs of dots collapse, and leading or trailing dots go. `None` when
/// nothing is left.
pub fn clean_asset_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.') {
            c
        } else {
            '.'
        };
        if !(c == '.' && out.ends_with('.')) {
            out.push(c);
        }
    }
    let out = out.trim_matches('.');
    (!out.is_empty()).then(|| out.to_string())
}

/// `POST /uploads/repos/{owner}/{repo}/releases/{release_id}/assets?name=&label=` (the uploads
/// host): the body is the file, `Content-Type` its media type. Refusals carry a `request_id`,
/// as the uploads host's do.
async fn upload_asset(
    ctx: Ctx,
    headers: HeaderMap,
    path: Path<(String, String, String)>,
    raw: Body,
) -> ApiResult {
    upload_asset_inner(ctx, headers, path, raw)
        .await
        .map_err(|mut e| {
            let b: [u8; 14] = rand::random();
            let h = hex::encode_upper(b);
            let id = format!(
                "{}:{}:{}:{}:{}",
                &h[0..4],
                &h[4..9],
                &h[9..16],
                &h[16..23],
                &h[23..28]
            );
            e.extra.insert("request_id".into(), Value::String(id));
            e
        })
}

async fn upload_asset_inner(
    ctx: Ctx,
    headers: HeaderMap,
    Path((owner, repo, id)): Path<(String, String, String)>,
    raw: Body,
) -> ApiResult {
    let rid = parse_id(&id)?;
    let q = ctx.query();
    let name = q
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::validation("ReleaseAsset", "missing_field", "name"))?;
    let name = clean_asset_name(name)
        .ok_or_else(|| ApiError::validation("ReleaseAsset", "invalid", "name"))?;
    let label = q.get("label").filter(|l| !l.is_empty()).cloned();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("application/octet-stream")
        .to_string();
    // Permission first, so a refused caller's upload is not read.
    ctx.with_repo(&owner, &repo, Need::write("contents"), |_, _, r| {
        r.releases
            .get(&rid)
            .map(|_| ())
            .ok_or_else(ApiError::not_found)
    })?;
    let data = axum::body::to_bytes(raw, MAX_ASSET)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("reading the upload: {e}")))?;
    ctx.with_repo_mut(&owner, &repo, Need::write("contents"), |sim, world, id| {
        let uploader = ctx.actor(world)?;
        let aid = world.id();
        let r = world.repos.get_mut(&id).ok_or_else(ApiError::not_found)?;
        let rel = r.releases.get_mut(&rid).ok_or_else(ApiError::not_found)?;
        if rel.assets.values().any(|a| a.name == name) {
            return Err(ApiError::validation(
                "ReleaseAsset",
                "already_exists",
                "name",
            ));
        }
        let now = Utc::now();
        rel.assets.insert(
            aid,
            Asset {
                id: aid,
                name: name.clone(),
                label: label.clone(),
                content_type: content_type.clone(),
                uploader,
                data,
                download_count: 0,
                created_at: now,
                updated_at: now,
            },
        );
        let r = &world.repos[&id];
        let rel = &r.releases[&rid];
        Ok(json_status(
            StatusCode::CREATED,
            render_asset(sim, world, r, rel, &rel.assets[&aid]),
        ))
    })
}

/// Serves `browser_download_url` (`GET /OWNER/REPO/releases/download/TAG/NAME`, outside the REST
/// API): the asset's bytes to anyone who may read the repository's contents (a token in
/// `Authorization` for a private one), 404 otherwise. A download counts in `download_count`.
pub fn browser_download(sim: &Sim, peer: SocketAddr, req: &Request) -> Response {
    match browser_download_inner(sim, peer, req) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn browser_download_inner(sim: &Sim, peer: SocketAddr, req: &Request) -> ApiResult {
    let path = req.uri().path();
    let (repo_part, rest) = path
        .split_once("/releases/download/")
        .ok_or_else(ApiError::not_found)?;
    let mut it = repo_part.trim_start_matches('/').splitn(2, '/');
    let (Some(owner), Some(name)) = (it.next(), it.next()) else {
        return Err(ApiError::not_found());
    };
    let (tag, file) = rest.rsplit_once('/').ok_or_else(ApiError::not_found)?;
    let (tag, file) = (percent_decode(tag), percent_decode(file));
    let mut world = sim.world.lock();
    let caller = auth::authenticate(&world, req.headers(), &peer.ip().to_string())?;
    let id = world.repo_id(owner, name).ok_or_else(ApiError::not_found)?;
    let repo = &world.repos[&id];
    if repo.blocked {
        return Err(ApiError::blocked());
    }
    // Anything but "may read" is answered as GitHub's web host answers it: not found.
    auth::check(&world, &caller, repo, Need::read("contents"))
        .map_err(|_| ApiError::not_found())?;
    let drafts = auth::check(&world, &caller, repo, Need::write("contents")).is_ok();
    let (rid, aid) = repo
        .releases
        .values()
        .filter(|rel| web_tag(rel) == tag && (drafts || !rel.draft))
        .find_map(|rel| {
            rel.assets
                .values()
                .find(|a| a.name == file)
                .map(|a| (rel.id, a.id))
        })
        .ok_or_else(ApiError::not_found)?;
    let a = world
        .repos
        .get_mut(&id)
        .and_then(|r| r.releases.get_mut(&rid))
        .and_then(|rel| rel.assets.get_mut(&aid))
        .ok_or_else(ApiError::not_found)?;
    a.download_count += 1;
    Ok(bytes_response(a))
}

/// `%XX` escapes decoded (a malformed escape is kept as it is).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `size` bytes that depend only on `name` (splitmix64 seeded by the name's SHA-256), so a
/// seeded asset's content and digest are the same on every run.
pub fn pseudo_random_bytes(name: &str, size: u64) -> Bytes {
    let h = Sha256::digest(name.as_bytes());
    let mut seed = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let take = (size - out.len()).min(8);
        out.extend_from_slice(&z.to_le_bytes()[..take]);
    }
    Bytes::from(out)
}

/// Seeds the repository's releases in order (so the last one seeded is the newest): each
/// published release's missing tag is made at `target` (default: the default branch) with the
/// git CLI; drafts get no tag, as on GitHub. Assets hold `content`, or `size` pseudo-random
/// bytes.
pub fn seed_repo(sim: &Sim, repo: u64, seed: &RepoSeed) -> anyhow::Result<()> {
    if seed.releases.is_empty() {
        return Ok(());
    }
    let (g, first_user) = {
        let world = sim.world.lock();
        let r = world.repos.get(&repo).context("repository vanished")?;
        let first_user = world
            .accounts
            .values()
            .filter(|a| a.kind == AccountKind::User)
            .min_by_key(|a| a.id)
            .map(|a| a.login.clone())
            .unwrap_or_else(|| "ghost".into());
        (
            GitSide {
                git_dir: r.git_dir.clone(),
                default_branch: r.default_branch.clone(),
            },
            first_user,
        )
    };
    let base = Utc::now() - chrono::Duration::seconds(seed.releases.len() as i64 + 1);
    for (i, rs) in seed.releases.iter().enumerate() {
        if rs.tag.is_empty() {
            anyhow::bail!("release {i}: `tag` is required");
        }
        if !rs.draft {
            ensure_tag(&g, &rs.tag, rs.target.as_deref())
                .map_err(|e| anyhow::anyhow!("release {}: tag: {}", rs.tag, e.message))?;
        }
        let mut world = sim.world.lock();
        let rid = world.id();
        // One second apart, so that "newest first" and "latest" follow seed order.
        let at = base + chrono::Duration::seconds(i as i64);
        let author = rs.user.clone().unwrap_or_else(|| first_user.clone());
        let mut assets = std::collections::BTreeMap::new();
        for a in &rs.assets {
            let name = clean_asset_name(&a.name)
                .with_context(|| format!("release {}: asset name {:?}", rs.tag, a.name))?;
            let data = match (&a.content, a.size) {
                (Some(text), _) => Bytes::from(text.clone().into_bytes()),
                (None, Some(n)) => pseudo_random_bytes(&format!("{}/{}", rs.tag, name), n),
                (None, None) => Bytes::new(),
            };
            let aid = world.id();
            assets.insert(
                aid,
                Asset {
                    id: aid,
                    name,
                    label: a.label.clone(),
                    content_type: a
                        .content_type
                        .clone()
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    uploader: author.clone(),
                    data,
                    download_count: 0,
                    created_at: at,
                    updated_at: at,
                },
            );
        }
        let r = world.repos.get_mut(&repo).context("repository vanished")?;
        if r.releases.values().any(|x| x.tag_name == rs.tag) {
            anyhow::bail!("release {}: seeded twice", rs.tag);
        }
        r.releases.insert(
            rid,
            Release {
                id: rid,
                tag_name: rs.tag.clone(),
                target_commitish: rs
                    .target
                    .clone()
                    .unwrap_or_else(|| g.default_branch.clone()),
                name: rs.name.clone(),
                body: rs.body.clone(),
                draft: rs.draft,
                prerelease: rs.prerelease,
                author: author.clone(),
                created_at: at,
                published_at: (!rs.draft).then_some(at),
                assets,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_are_cleaned_as_github_does() {
        assert_eq!(
            clean_asset_name("my file (1).zip").unwrap(),
            "my.file.1.zip"
        );
        assert_eq!(
            clean_asset_name("a+b-c_d.tar.gz").unwrap(),
            "a+b-c_d.tar.gz"
        );
        assert_eq!(clean_asset_name(".hidden.").unwrap(), "hidden");
        assert_eq!(clean_asset_name(" ()"), None);
    }

    #[test]
    fn pseudo_random_bytes_are_deterministic() {
        let a = pseudo_random_bytes("v1/x.bin", 1001);
        assert_eq!(a.len(), 1001);
        assert_eq!(a, pseudo_random_bytes("v1/x.bin", 1001));
        assert_ne!(a, pseudo_random_bytes("v1/y.bin", 1001));
    }
}
