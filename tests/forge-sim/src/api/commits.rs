//! Commits, branches and tags read from the bare repository with the git CLI: GitHub's
//! `GET /repos/{owner}/{repo}/commits` (with `sha`, `path`, `author`, `since`, `until` and the
//! `Link` header whose `last` page is the commit count at `per_page=1`), a single commit with its
//! stats and files, branches (with `protected` from the repository's protections) and tags.
//!
//! Git runs without the world lock held: a handler reads what it needs under the lock, runs git,
//! then takes the lock again to render users.

use std::path::{Path as FsPath, PathBuf};

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Ctx;
use crate::Sim;
use crate::auth::Need;
use crate::error::{ApiError, ApiResult};
use crate::gitrepo;
use crate::render;
use crate::state::{Repo, World};

pub fn routes() -> Router {
    Router::new()
        .route("/repos/{owner}/{repo}/commits", get(list_commits))
        .route("/repos/{owner}/{repo}/commits/{ref}", get(get_commit))
        .route("/repos/{owner}/{repo}/branches", get(list_branches))
        .route("/repos/{owner}/{repo}/branches/{branch}", get(get_branch))
        .route("/repos/{owner}/{repo}/tags", get(list_tags))
}

/// One commit as `git log` describes it.
#[derive(Debug, Clone)]
pub struct GitCommit {
    pub sha: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author_name: String,
    pub author_email: String,
    pub author_date: DateTime<Utc>,
    pub committer_name: String,
    pub committer_email: String,
    pub committer_date: DateTime<Utc>,
    /// The full message without its trailing newline, as GitHub returns it.
    pub message: String,
}

/// `git log ARGS` parsed: one NUL-terminated record per commit (`-z`), fields split by US
/// (0x1f) with the message last, so a message may hold anything but NUL.
pub fn log(dir: &FsPath, args: &[&str]) -> anyhow::Result<Vec<GitCommit>> {
    let mut all = vec![
        "log",
        "-z",
        "--format=%H%x1f%T%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B",
    ];
    all.extend_from_slice(args);
    let out = gitrepo::run(dir, &all)?;
    let date = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    };
    Ok(out
        .split('\0')
        .filter(|r| !r.trim().is_empty())
        .filter_map(|r| {
            let f: Vec<&str> = r.trim_start_matches('\n').splitn(10, '\x1f').collect();
            (f.len() == 10).then(|| GitCommit {
                sha: f[0].to_string(),
                tree: f[1].to_string(),
                parents: f[2].split_whitespace().map(str::to_string).collect(),
                author_name: f[3].to_string(),
                author_email: f[4].to_string(),
                author_date: date(f[5]),
                committer_name: f[6].to_string(),
                committer_email: f[7].to_string(),
                committer_date: date(f[8]),
                message: f[9].trim_end_matches('\n').to_string(),
            })
        })
        .collect())
}

/// The account a commit's name and email belong to: an account whose email matches, GitHub's
/// noreply addresses (`LOGIN@users.noreply.HOST`, `ID+LOGIN@...`), or a login equal to the name.
/// `None` renders as `null`, as GitHub does for authors it cannot link.
fn account_for<'w>(world: &'w World, name: &str, email: &str) -> Option<&'w str> {
    if let Some(a) = world.accounts.values().find(|a| {
        a.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
    }) {
        return Some(&a.login);
    }
    if let Some((local, domain)) = email.split_once('@')
        && domain.starts_with("users.noreply.")
    {
        let login = local.split_once('+').map(|(_, l)| l).unwrap_or(local);
        if let Some(a) = world.account(login) {
            return Some(&a.login);
        }
    }
    world.account(name).map(|a| a.login.as_str())
}

/// GitHub's `commit` schema for one commit of `repo`.
pub fn render_commit(sim: &Sim, world: &World, repo: &Repo, c: &GitCommit) -> Value {
    let api = format!("{}/repos/{}/{}", sim.api_base, repo.owner, repo.name);
    let html = format!("{}/{}/{}", sim.web_base, repo.owner, repo.name);
    let person = |name: &str, email: &str| {
        account_for(world, name, email)
            .map(|l| render::user(sim, world, l))
            .unwrap_or(Value::Null)
    };
    json!({
        "sha": c.sha,
        "node_id": render::node_id("Commit", sha_number(&c.sha)),
        "url": format!("{api}/commits/{}", c.sha),
        "html_url": format!("{html}/commit/{}", c.sha),
        "comments_url": format!("{api}/commits/{}/comments", c.sha),
        "commit": {
            "author": {"name": c.author_name, "email": c.author_email, "date": render::ts(&c.author_date)},
            "committer": {"name": c.committer_name, "email": c.committer_email, "date": render::ts(&c.committer_date)},
            "message": c.message,
            "tree": {"sha": c.tree, "url": format!("{api}/git/trees/{}", c.tree)},
            "url": format!("{api}/git/commits/{}", c.sha),
            "comment_count": 0,
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
        },
        "author": person(&c.author_name, &c.author_email),
        "committer": person(&c.committer_name, &c.committer_email),
        "parents": c.parents.iter().map(|p| json!({
            "sha": p,
            "url": format!("{api}/commits/{p}"),
            "html_url": format!("{html}/commit/{p}"),
        })).collect::<Vec<_>>(),
    })
}

/// A number for [`render::node_id`] from an object id (node ids are opaque to clients).
pub fn sha_number(sha: &str) -> u64 {
    u64::from_str_radix(sha.get(..12).unwrap_or("0"), 16).unwrap_or(0)
}

/// GitHub's `diff-entry` for one changed file.
pub fn render_change(sim: &Sim, repo: &Repo, at: &str, c: &gitrepo::Change) -> Value {
    let api = format!("{}/repos/{}/{}", sim.api_base, repo.owner, repo.name);
    let html = format!("{}/{}/{}", sim.web_base, repo.owner, repo.name);
    let status = match c.status {
        'A' => "added",
        'D' => "removed",
        'R' => "renamed",
        'C' => "copied",
        'T' => "changed",
        _ => "modified",
    };
    let path = encode_path(&c.path);
    let mut v = json!({
        "sha": c.blob,
        "filename": c.path,
        "status": status,
        "additions": c.additions,
        "deletions": c.deletions,
        "changes": c.additions + c.deletions,
        "blob_url": format!("{html}/blob/{at}/{path}"),
        "raw_url": format!("{html}/raw/{at}/{path}"),
        "contents_url": format!("{api}/contents/{path}?ref={at}"),
    });
    if let Some(p) = &c.previous_path {
        v["previous_filename"] = json!(p);
    }
    v
}

/// Percent-encodes a value for one URL path segment (RFC 3986 unreserved characters kept).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// [`encode_segment`] for each segment of a slash-separated path.
fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Answers one page of `items`, rendering only that page's items (lists of issues or comments
/// can be long and each item is a large object), with the `Link` header of the whole list.
pub fn paginate_lazy<T>(
    public_base: &str,
    uri: &Uri,
    items: &[T],
    render: impl FnMut(&T) -> Value,
) -> ApiResult {
    let (page, per_page) = crate::page::page_params(&crate::page::query(uri))?;
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = start.saturating_add(per_page).min(items.len());
    let page_items = items[start..end].iter().map(render).collect();
    crate::page::paginate_counted(public_base, uri, items.len(), page_items)
}

/// What a commits handler needs from the world before it runs git.
struct RepoRef {
    git_dir: PathBuf,
    default_branch: String,
}

fn repo_ref(ctx: &Ctx, owner: &str, repo: &str) -> Result<RepoRef, ApiError> {
    ctx.with_repo(owner, repo, Need::read("contents"), |_, _, r| {
        Ok(RepoRef {
            git_dir: r.git_dir.clone(),
            default_branch: r.default_branch.clone(),
        })
    })
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

/// GitHub's answer for any commit route of a repository without commits.
fn empty_repository() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "Git Repository is empty.")
}

fn has_branches(dir: &FsPath) -> anyhow::Result<bool> {
    Ok(gitrepo::refs(dir)?
        .iter()
        .any(|(r, _)| r.starts_with("refs/heads/")))
}

/// `GET /repos/{owner}/{repo}/commits`: newest first from `sha` (a branch, tag or commit; the
/// default branch when absent), optionally only commits touching `path`, by `author` (login,
/// name or email), committed in `since`..`until`. Only the requested page is read from git; the
/// count for `Link` comes from `git rev-list --count` with the same filters.
async fn list_commits(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let rr = repo_ref(&ctx, &owner, &repo)?;
    let q = ctx.query();
    if !has_branches(&rr.git_dir).map_err(internal)? {
        return Err(empty_repository());
    }
    let rev = q
        .get("sha")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| rr.default_branch.clone());
    let Some(tip) = gitrepo::resolve(&rr.git_dir, &rev) else {
        return Err(ApiError::not_found());
    };
    let mut filters: Vec<String> = Vec::new();
    for (param, flag) in [("since", "--since"), ("until", "--until")] {
        if let Some(v) = q.get(param) {
            let t = parse_time(v).ok_or_else(|| {
                ApiError::invalid_body(format!("{param}: {v:?} is not an ISO 8601 timestamp"))
            })?;
            filters.push(format!("{flag}={}", t.timestamp()));
        }
    }
    if let Some(a) = q.get("author").filter(|a| !a.is_empty()) {
        // A login stands for the account's email when it has one (GitHub matches either).
        let pattern = {
            let world = ctx.sim.world.lock();
            world
                .account(a)
                .and_then(|acc| acc.email.clone())
                .unwrap_or_else(|| a.clone())
        };
        filters.push(format!("--author={pattern}"));
    }
    let path = q.get("path").filter(|p| !p.is_empty()).cloned();
    let (page, per_page) = crate::page::page_params(&q)?;

    let mut count_args: Vec<&str> = vec!["rev-list", "--count"];
    count_args.extend(filters.iter().map(String::as_str));
    count_args.push(&tip);
    if let Some(p) = &path {
        count_args.extend(["--", p]);
    }
    let total: usize = gitrepo::run(&rr.git_dir, &count_args)
        .map_err(internal)?
        .trim()
        .parse()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "rev-list --count"))?;
    let skip = format!("--skip={}", (page - 1).saturating_mul(per_page));
    let max = format!("--max-count={per_page}");
    let mut log_args: Vec<&str> = vec![&skip, &max];
    log_args.extend(filters.iter().map(String::as_str));
    log_args.push(&tip);
    if let Some(p) = &path {
        log_args.extend(["--", p]);
    }
    let commits = log(&rr.git_dir, &log_args).map_err(internal)?;
    let items = ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        Ok(commits
            .iter()
            .map(|c| render_commit(sim, world, r, c))
            .collect::<Vec<_>>())
    })?;
    crate::page::paginate_counted(&ctx.sim.api_base, &ctx.uri, total, items)
}

/// `GET /repos/{owner}/{repo}/commits/{ref}`: one commit with `stats` and `files` (changes
/// against its first parent). An unknown ref is 422 "No commit found for SHA: REF", as GitHub
/// answers.
async fn get_commit(
    ctx: Ctx,
    Path((owner, repo, rev)): Path<(String, String, String)>,
) -> ApiResult {
    let rr = repo_ref(&ctx, &owner, &repo)?;
    if !has_branches(&rr.git_dir).map_err(internal)? {
        return Err(empty_repository());
    }
    let Some(sha) = gitrepo::resolve(&rr.git_dir, &rev) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("No commit found for SHA: {rev}"),
        ));
    };
    let c = log(&rr.git_dir, &["-1", &sha])
        .map_err(internal)?
        .into_iter()
        .next()
        .ok_or_else(ApiError::not_found)?;
    let from = c
        .parents
        .first()
        .cloned()
        .unwrap_or_else(|| gitrepo::EMPTY_TREE.to_string());
    let changes = gitrepo::changes(&rr.git_dir, &from, &sha).map_err(internal)?;
    ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        let mut v = render_commit(sim, world, r, &c);
        let additions: u64 = changes.iter().map(|f| f.additions).sum();
        let deletions: u64 = changes.iter().map(|f| f.deletions).sum();
        v["stats"] =
            json!({"additions": additions, "deletions": deletions, "total": additions + deletions});
        v["files"] = Value::Array(
            changes
                .iter()
                .map(|f| render_change(sim, r, &sha, f))
                .collect(),
        );
        Ok(axum::Json(v).into_response())
    })
}

/// `protection` of `branch-with-protection`: the stored protection (as GitHub returns it) marked
/// enabled, or GitHub's disabled placeholder.
fn protection_of(repo: &Repo, branch: &str) -> Value {
    match repo.protections.get(branch) {
        Some(p) => {
            let mut p = p.clone();
            if let Some(o) = p.as_object_mut() {
                o.insert("enabled".into(), Value::Bool(true));
            }
            p
        }
        None => json!({
            "enabled": false,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        }),
    }
}

/// `GET /repos/{owner}/{repo}/branches`: sorted by name as GitHub lists them; `protected=true`
/// or `false` filters.
async fn list_branches(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let rr = repo_ref(&ctx, &owner, &repo)?;
    let refs = gitrepo::refs(&rr.git_dir).map_err(internal)?;
    let q = ctx.query();
    let want: Option<bool> = q.get("protected").map(|v| v == "true" || v == "1");
    let items = ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, _, r| {
        let api = format!("{}/repos/{}/{}", sim.api_base, r.owner, r.name);
        Ok(refs
            .iter()
            .filter_map(|(name, sha)| Some((name.strip_prefix("refs/heads/")?, sha)))
            .map(|(name, sha)| (name, sha, r.protections.contains_key(name)))
            .filter(|(_, _, p)| want.is_none_or(|w| w == *p))
            .map(|(name, sha, protected)| {
                json!({
                    "name": name,
                    "commit": {"sha": sha, "url": format!("{api}/commits/{sha}")},
                    "protected": protected,
                })
            })
            .collect::<Vec<_>>())
    })?;
    crate::page::paginate(&ctx.sim.api_base, &ctx.uri, items)
}

/// `GET /repos/{owner}/{repo}/branches/{branch}`: the branch with its tip commit and protection;
/// 404 "Branch not found" as GitHub answers.
async fn get_branch(
    ctx: Ctx,
    Path((owner, repo, branch)): Path<(String, String, String)>,
) -> ApiResult {
    let rr = repo_ref(&ctx, &owner, &repo)?;
    let Some(sha) = gitrepo::resolve(&rr.git_dir, &format!("refs/heads/{branch}")) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Branch not found"));
    };
    let c = log(&rr.git_dir, &["-1", &sha])
        .map_err(internal)?
        .into_iter()
        .next()
        .ok_or_else(ApiError::not_found)?;
    ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, world, r| {
        let api = format!("{}/repos/{}/{}", sim.api_base, r.owner, r.name);
        let enc = encode_segment(&branch);
        let v = json!({
            "name": branch,
            "commit": render_commit(sim, world, r, &c),
            "_links": {
                "html": format!("{}/{}/{}/tree/{enc}", sim.web_base, r.owner, r.name),
                "self": format!("{api}/branches/{enc}"),
            },
            "protected": r.protections.contains_key(&branch),
            "protection": protection_of(r, &branch),
            "protection_url": format!("{api}/branches/{enc}/protection"),
        });
        Ok(axum::Json(v).into_response())
    })
}

/// `GET /repos/{owner}/{repo}/tags`: newest version first (`git for-each-ref
/// --sort=-v:refname`), each with the commit it peels to.
async fn list_tags(ctx: Ctx, Path((owner, repo)): Path<(String, String)>) -> ApiResult {
    let rr = repo_ref(&ctx, &owner, &repo)?;
    let out = gitrepo::run(
        &rr.git_dir,
        &[
            "for-each-ref",
            "--sort=-v:refname",
            "--format=%(refname:strip=2)%00%(objectname)%00%(*objectname)",
            "refs/tags",
        ],
    )
    .map_err(internal)?;
    let items = ctx.with_repo(&owner, &repo, Need::read("contents"), |sim, _, r| {
        let api = format!("{}/repos/{}/{}", sim.api_base, r.owner, r.name);
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\0');
                let name = f.next()?;
                let object = f.next()?;
                let peeled = f.next().filter(|p| !p.is_empty()).unwrap_or(object);
                Some(json!({
                    "name": name,
                    "commit": {"sha": peeled, "url": format!("{api}/commits/{peeled}")},
                    "zipball_url": format!("{api}/zipball/refs/tags/{}", encode_segment(name)),
                    "tarball_url": format!("{api}/tarball/refs/tags/{}", encode_segment(name)),
                    "node_id": render::node_id("Ref", sha_number(object)),
                }))
            })
            .collect::<Vec<_>>())
    })?;
    crate::page::paginate(&ctx.sim.api_base, &ctx.uri, items)
}

/// An ISO 8601 timestamp as GitHub accepts in `since`/`until`: RFC 3339, or a bare date
/// (midnight UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    // An unencoded `+` in a query string arrives as a space.
    let s = &s.trim().replace(' ', "+");
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Some(t.and_utc());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}
