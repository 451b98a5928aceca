//! git smart HTTP at `https://HOST/OWNER/REPO.git/...` and `https://HOST/OWNER/REPO.wiki.git/...`,
//! answered by the real `git http-backend` run as CGI ([`run_http_backend`], which repovault's
//! own test git server uses too).
//!
//! Access is GitHub's: HTTP Basic with a token as the password (`x-access-token:TOKEN`,
//! `USER:TOKEN`) or as the user (`TOKEN:x-oauth-basic`); a public repository is readable
//! anonymously; an anonymous request for a private or unknown repository is 401 with
//! `WWW-Authenticate: Basic realm="GitHub"` (so git asks its credential helper); fetching needs
//! `contents: read`, pushing (`service=git-receive-pack`, the advertisement and the POST) needs
//! `contents: write`; a deleted repository is 404, a blocked one 451, an archived one refuses
//! pushes (403). Git requests do not count against the REST rate limits.
//!
//! Repositories are found by `owner/name` in the [`crate::state::World`] (case-insensitively; a
//! renamed repository answers under its new name and its old one), never by their path on disk.
//!
//! A wiki (`.wiki.git`) exists once its first page was saved in the web interface: until then
//! fetch and push alike answer 404 "Repository not found.", as GitHub's do (git shows
//! "repository '...' not found"). A seed's `wiki` pages make one, and so does
//! `POST /_sim/repos/OWNER/REPO/wiki` ([`create_wiki`], the web interface's first page).
//!
//! After a push that changed refs, the repository's `pushed_at` and `version` move and `push`
//! webhooks go out ([`crate::webhooks::on_push`]), one event per changed branch or tag.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use anyhow::{Context as _, bail};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::Sim;
use crate::auth::{self, Caller, Need};
use crate::gitrepo;
use crate::seed::RepoSeed;

// ---------------------------------------------------------------------------------------------
// The CGI runner.

/// What [`run_http_backend`] needs besides the request.
pub struct Backend<'a> {
    /// `GIT_PROJECT_ROOT`: the directory the repository in `path_info` is found under.
    pub project_root: &'a Path,
    /// `PATH_INFO` (percent-decoded, starting with `/`): the repository under the root followed by
    /// the service path, e.g. `/x.git/info/refs`.
    pub path_info: &'a [u8],
    /// Extra git configuration given to `git http-backend` (`GIT_CONFIG_COUNT`/`KEY_n`/
    /// `VALUE_n`), e.g. `("http.receivepack", "true")`.
    pub config: &'a [(&'a str, &'a str)],
    /// `REMOTE_USER` (with `AUTH_TYPE=Basic`) of an authenticated request.
    pub remote_user: Option<&'a str>,
    /// `REMOTE_ADDR` and `REMOTE_PORT`.
    pub remote_addr: SocketAddr,
    /// Counts the response body bytes as they are sent (all statuses).
    pub bytes_served: Option<Arc<AtomicU64>>,
}

/// Runs `git http-backend` (CGI/1.1) for `req` and returns its response, whose body streams the
/// backend's output. The request body is read whole first (so `CONTENT_LENGTH` is exact even for
/// chunked pushes); `Content-Encoding: gzip` bodies are passed through for http-backend to
/// inflate. Every request header but `Authorization` reaches the backend as `HTTP_*` (so
/// `Git-Protocol: version=2` works). The backend runs with `GIT_CONFIG_GLOBAL=/dev/null` and
/// `GIT_CONFIG_NOSYSTEM=1`, with `GIT_HTTP_EXPORT_ALL`, and is killed if the response is dropped.
pub async fn run_http_backend(b: Backend<'_>, req: Request) -> anyhow::Result<Response> {
    use std::os::unix::ffi::OsStrExt as _;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .context("reading request body")?;
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", b.config.len().to_string())
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_PROTOCOL")
        .env_remove("REMOTE_USER")
        .env_remove("AUTH_TYPE")
        .env("GIT_PROJECT_ROOT", b.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "forge-sim")
        .env("PATH_INFO", std::ffi::OsStr::from_bytes(b.path_info))
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", b.remote_addr.ip().to_string())
        .env("REMOTE_PORT", b.remote_addr.port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (i, (k, v)) in b.config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
            .env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    if let Some(ct) = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(user) = b.remote_user {
        cmd.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    // Every other header as HTTP_*: HTTP_CONTENT_ENCODING (gzip'd bodies are inflated by
    // http-backend itself), HTTP_GIT_PROTOCOL (protocol v2), ...
    for (name, value) in &parts.headers {
        if name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || name == header::AUTHORIZATION
        {
            continue;
        }
        if let Ok(v) = value.to_str() {
            let var = format!(
                "HTTP_{}",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            );
            cmd.env(var, v);
        }
    }
    let mut child = cmd.spawn().context("spawning git http-backend")?;
    let mut stdin = child.stdin.take().context("http-backend stdin")?;
    tokio::spawn(async move {
        // http-backend may stop reading early on errors; a broken pipe is fine then.
        let _ = stdin.write_all(&body).await;
    });
    if let Some(mut stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            if !s.is_empty() {
                tracing::debug!("git http-backend stderr: {}", s.trim_end());
            }
        });
    }
    let mut stdout = child.stdout.take().context("http-backend stdout")?;

    // The CGI headers.
    let mut head = Vec::with_capacity(1024);
    let (header_end, body_start) = loop {
        if let Some(p) = find(&head, b"\r\n\r\n") {
            break (p, p + 4);
        }
        if let Some(p) = find(&head, b"\n\n") {
            break (p, p + 2);
        }
        let mut chunk = [0u8; 4096];
        let n = stdout.read(&mut chunk).await?;
        if n == 0 {
            let status = child.wait().await?;
            bail!(
                "git http-backend ended ({status}) without complete CGI headers: {:?}",
                String::from_utf8_lossy(&head)
            );
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > 64 * 1024 {
            bail!("CGI headers too long");
        }
    };
    let mut builder = Response::builder();
    let mut status = 200u16;
    let text = String::from_utf8_lossy(&head[..header_end]).into_owned();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .context("bad CGI Status")?;
        } else if let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            builder = builder.header(name, value);
        }
    }
    builder = builder.status(status);
    let prefix = Bytes::copy_from_slice(&head[body_start..]);

    struct BodyState {
        prefix: Option<Bytes>,
        stdout: tokio::process::ChildStdout,
        child: tokio::process::Child,
        counter: Option<Arc<AtomicU64>>,
    }
    let state = BodyState {
        prefix: Some(prefix),
        stdout,
        child,
        counter: b.bytes_served,
    };
    let stream = futures::stream::unfold(Some(state), |s| async move {
        let mut s = s?;
        if let Some(p) = s.prefix.take()
            && !p.is_empty()
        {
            if let Some(c) = &s.counter {
                c.fetch_add(p.len() as u64, Ordering::SeqCst);
            }
            return Some((Ok::<Bytes, std::io::Error>(p), Some(s)));
        }
        let mut buf = vec![0u8; 64 * 1024];
        match s.stdout.read(&mut buf).await {
            Ok(0) => {
                // The process has finished its work (a push has updated its refs) once it is
                // reaped, before the body ends.
                let _ = s.child.wait().await;
                None
            }
            Ok(n) => {
                buf.truncate(n);
                if let Some(c) = &s.counter {
                    c.fetch_add(n as u64, Ordering::SeqCst);
                }
                Some((Ok(Bytes::from(buf)), Some(s)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    builder
        .body(Body::from_stream(stream))
        .context("building response")
}

/// Decodes `%XX` escapes of a URL path (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Paths and access, shared with LFS.

/// `/OWNER/NAME.git/REST` split up (`NAME` may end in `.wiki`: see [`resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPath {
    pub owner: String,
    /// What stands before `.git`, e.g. `widgets` or `widgets.wiki`.
    pub name: String,
    /// From the `/` after `.git` on, e.g. `/info/refs`.
    pub rest: String,
}

/// Splits a (percent-decoded) request path `/OWNER/NAME.git/REST`.
pub fn parse_path(path: &str) -> Option<GitPath> {
    let (owner, tail) = path.strip_prefix('/')?.split_once('/')?;
    let idx = tail.find(".git/")?;
    let name = &tail[..idx];
    if owner.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    Some(GitPath {
        owner: owner.to_string(),
        name: name.to_string(),
        rest: tail[idx + 4..].to_string(),
    })
}

/// A repository (or its wiki) a git or LFS request may use.
#[derive(Debug, Clone)]
pub struct Access {
    pub repo_id: u64,
    pub wiki: bool,
    /// The bare repository to serve (`Repo::git_dir` or `Repo::wiki_dir`).
    pub dir: PathBuf,
    /// The repository's current `owner/name`.
    pub owner: String,
    pub name: String,
    pub caller: Caller,
    /// The value of the request's `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Why a git or LFS request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 with `WWW-Authenticate: Basic realm="GitHub"`.
    Unauthorized(String),
    NotFound,
    Forbidden(String),
    /// 451.
    Blocked,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Blocked => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Unauthorized(m) | Refusal::Forbidden(m) => m.clone(),
            Refusal::NotFound => "Repository not found.".into(),
            Refusal::Blocked => "Repository access blocked".into(),
        }
    }

    /// As git smart HTTP answers it: plain text.
    pub fn into_git_response(self) -> Response {
        let mut resp = (
            self.status(),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message()),
        )
            .into_response();
        if matches!(self, Refusal::Unauthorized(_)) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"GitHub\""),
            );
        }
        resp
    }
}

const BAD_CREDENTIALS: &str =
    "Invalid username or token. Password authentication is not supported for Git operations.";

/// Authenticates a git or LFS request and finds the repository (`wiki`: its wiki) it may use for
/// `need`, with GitHub's answers (see the module documentation). `name` is what stood before
/// `.git`: `NAME.wiki` names the wiki of `NAME` when that repository exists. The wiki's
/// directory need not exist.
pub fn resolve(
    sim: &Sim,
    headers: &HeaderMap,
    peer: &str,
    owner: &str,
    name: &str,
    allow_wiki: bool,
    need: Need,
) -> Result<Access, Refusal> {
    let world = sim.world.lock();
    let caller = auth::authenticate(&world, headers, peer)
        .map_err(|_| Refusal::Unauthorized(BAD_CREDENTIALS.into()))?;
    let live = |n: &str| {
        world.repo_id(owner, n).or_else(|| {
            world
                .renamed
                .get(&format!("{owner}/{n}").to_ascii_lowercase())
                .copied()
                .filter(|id| world.repos.get(id).is_some_and(|r| !r.deleted))
        })
    };
    let wiki_of = name
        .strip_suffix(".wiki")
        .filter(|_| allow_wiki)
        .and_then(&live);
    let (id, wiki) = match (wiki_of, live(name)) {
        (Some(id), _) => (id, true),
        (None, Some(id)) => (id, false),
        (None, None) => {
            let deleted = world.repos.values().any(|r| {
                r.deleted
                    && r.owner.eq_ignore_ascii_case(owner)
                    && r.name.eq_ignore_ascii_case(name)
            });
            if caller.principal.is_none() && !deleted {
                return Err(Refusal::Unauthorized("Authentication required.".into()));
            }
            return Err(Refusal::NotFound);
        }
    };
    let repo = &world.repos[&id];
    if repo.blocked {
        return Err(Refusal::Blocked);
    }
    if let Err(e) = auth::check(&world, &caller, repo, need) {
        let who = caller.actor(&world).unwrap_or_else(|| "anonymous".into());
        return Err(match e.status.as_u16() {
            404 if caller.principal.is_none() => {
                Refusal::Unauthorized("Authentication required.".into())
            }
            404 => Refusal::NotFound,
            401 => Refusal::Unauthorized("Authentication required.".into()),
            _ => Refusal::Forbidden(format!(
                "Permission to {}/{}.git denied to {who}.",
                repo.owner, repo.name
            )),
        });
    }
    if repo.disabled {
        return Err(Refusal::Forbidden(format!(
            "Repository `{}/{}` has been disabled.",
            repo.owner, repo.name
        )));
    }
    if need.write && repo.archived {
        return Err(Refusal::Forbidden(
            "This repository was archived so it is read-only.".into(),
        ));
    }
    if wiki && !repo.has_wiki {
        return Err(Refusal::NotFound);
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Access {
        repo_id: id,
        wiki,
        dir: if wiki {
            repo.wiki_dir.clone()
        } else {
            repo.git_dir.clone()
        },
        owner: repo.owner.clone(),
        name: repo.name.clone(),
        caller,
        authorization,
    })
}

// ---------------------------------------------------------------------------------------------
// The handler.

/// Pushes into one repository run one at a time, so that the refs before and after a push
/// describe that push alone.
static PUSH_LOCKS: LazyLock<parking_lot::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

fn push_lock(dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    PUSH_LOCKS
        .lock()
        .entry(dir.to_path_buf())
        .or_default()
        .clone()
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// Answers one git smart HTTP request (`/OWNER/REPO.git/...`, `/OWNER/REPO.wiki.git/...`).
pub async fn handle(sim: Arc<Sim>, peer: SocketAddr, req: Request) -> Response {
    let decoded = String::from_utf8_lossy(&percent_decode(req.uri().path())).into_owned();
    let Some(p) = parse_path(&decoded) else {
        return Refusal::NotFound.into_git_response();
    };
    let query = req.uri().query().unwrap_or("");
    let receive = match (req.method(), p.rest.as_str()) {
        (&Method::GET, "/info/refs") => query.split('&').any(|kv| kv == "service=git-receive-pack"),
        (&Method::POST, "/git-receive-pack") => true,
        _ => false,
    };
    let need = if receive {
        Need::write("contents")
    } else {
        Need::read("contents")
    };
    let access = match resolve(
        &sim,
        req.headers(),
        &peer.ip().to_string(),
        &p.owner,
        &p.name,
        true,
        need,
    ) {
        Ok(a) => a,
        Err(r) => return r.into_git_response(),
    };
    if !access.dir.join("HEAD").exists() {
        // A wiki nobody made yet (see the module documentation), fetched or pushed to.
        return Refusal::NotFound.into_git_response();
    }
    let push_post = receive && req.method() == Method::POST;
    let lock = push_lock(&access.dir);
    let guard = if push_post {
        Some(lock.lock().await)
    } else {
        None
    };
    let before = if push_post {
        match refs_of(&access.dir).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("refs of {}: {e:#}", access.dir.display());
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "could not read refs");
            }
        }
    } else {
        None
    };
    let (Some(root), Some(dir_name)) = (access.dir.parent(), access.dir.file_name()) else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad repository directory",
        );
    };
    let mut path_info = b"/".to_vec();
    path_info.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(dir_name));
    path_info.extend_from_slice(p.rest.as_bytes());
    let remote_user = access
        .caller
        .actor(&sim.world.lock())
        .unwrap_or_else(|| "anonymous".into());
    let backend = Backend {
        project_root: root,
        path_info: &path_info,
        config: &[
            ("http.receivepack", if receive { "true" } else { "false" }),
            ("http.getanyfile", "false"),
            ("http.uploadarch", "false"),
            ("uploadpack.allowFilter", "true"),
            ("receive.hideRefs", "refs/pull"),
        ],
        remote_user: access
            .caller
            .principal
            .as_ref()
            .map(|_| remote_user.as_str()),
        remote_addr: peer,
        bytes_served: None,
    };
    let resp = match run_http_backend(backend, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("git http-backend: {e:#}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed");
        }
    };
    let Some(before) = before else {
        return resp;
    };
    // A push: let it finish (the body ends once receive-pack is done), then see what changed.
    let (parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("git receive-pack output: {e}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "git receive-pack failed");
        }
    };
    match refs_of(&access.dir).await {
        Ok(after) if after != before => {
            if !access.wiki {
                let mut world = sim.world.lock();
                if let Some(r) = world.repos.get_mut(&access.repo_id) {
                    r.pushed_at = chrono::Utc::now();
                    r.version += 1;
                }
            }
            drop(guard);
            if !access.wiki {
                crate::webhooks::on_push(&sim, access.repo_id, &access.caller, before, after);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("refs of {}: {e:#}", access.dir.display()),
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn refs_of(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || gitrepo::refs(&dir)).await?
}

// ---------------------------------------------------------------------------------------------
// Seeding.

/// Makes the seeded repository's wiki (`NAME.wiki.git`, default branch `master` as GitHub's
/// wikis have) with one commit holding the seed's `wiki` pages, when there are any.
pub fn seed_wiki(sim: &Sim, repo: u64, seed: &RepoSeed) -> anyhow::Result<()> {
    if seed.wiki.is_empty() {
        return Ok(());
    }
    let wiki_dir = sim
        .world
        .lock()
        .repos
        .get(&repo)
        .map(|r| r.wiki_dir.clone())
        .context("no such repository")?;
    make_wiki(&wiki_dir, &seed.wiki, "Initial wiki")
}

/// Blocking: makes a wiki at `wiki_dir` with one commit holding `pages` (file name → content).
fn make_wiki(
    wiki_dir: &Path,
    pages: &std::collections::BTreeMap<String, String>,
    message: &str,
) -> anyhow::Result<()> {
    gitrepo::init_bare(wiki_dir, "master")?;
    let mut files = std::collections::BTreeMap::new();
    for (page, content) in pages {
        if page.contains("..") || page.starts_with('/') {
            bail!("wiki page {page:?}: not a relative path");
        }
        files.insert(page.clone(), Some(content.clone()));
    }
    crate::seeding::commit_files(wiki_dir, "master", files, message)
}

/// Blocking: what saving a wiki's first page in GitHub's web interface does: the wiki of
/// `owner/name` is made with `Home.md` holding GitHub's default text ("Welcome to the NAME
/// wiki!"). Returns false when the wiki already existed (nothing is changed then).
pub fn create_wiki(sim: &Sim, owner: &str, name: &str) -> anyhow::Result<bool> {
    let (wiki_dir, name) = {
        let world = sim.world.lock();
        let id = world
            .repo_id(owner, name)
            .with_context(|| format!("no repository {owner}/{name}"))?;
        let r = &world.repos[&id];
        (r.wiki_dir.clone(), r.name.clone())
    };
    if wiki_dir.join("HEAD").exists() {
        return Ok(false);
    }
    let home = std::collections::BTreeMap::from([(
        "Home.md".to_string(),
        format!("Welcome to the {name} wiki!\n"),
    )]);
    make_wiki(&wiki_dir, &home, "Initial Home page")?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/acme/widgets.git/info/refs"),
            Some(GitPath {
                owner: "acme".into(),
                name: "widgets".into(),
                rest: "/info/refs".into()
            })
        );
        assert_eq!(
            parse_path("/acme/widgets.wiki.git/git-upload-pack")
                .unwrap()
                .name,
            "widgets.wiki"
        );
        assert_eq!(
            parse_path("/acme/w.git/info/lfs/objects/batch")
                .unwrap()
                .rest,
            "/info/lfs/objects/batch"
        );
        assert_eq!(parse_path("/acme.git/info/refs"), None);
        assert_eq!(parse_path("/a/b/c.git/info/refs"), None);
        assert_eq!(percent_decode("/a%20b%zz"), b"/a b%zz".to_vec());
    }
}
