//! Real git servers for tests: `git daemon` (git://, no auth) and a smart-HTTP server in the test
//! process that runs `git http-backend` as CGI (optionally behind GitHub-style token auth).
//!
//! Both serve every repository under a base directory (`url("x.git")` is `BASE/x.git`, e.g. one
//! made by [`crate::fixtures::rich_repo`]), accept anonymous pushes, and stop on `Drop`.
//! The git processes run with `GIT_CONFIG_GLOBAL=/dev/null` and `GIT_CONFIG_NOSYSTEM=1`.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// A `git daemon` serving `BASE` on a free loopback port, with push (`receive-pack`) enabled and
/// every repository exported. Killed (and reaped) on drop.
pub struct GitDaemon {
    child: Child,
    port: u16,
    base: PathBuf,
}

impl GitDaemon {
    /// Starts `git daemon --reuseaddr --listen=127.0.0.1 --port=P --base-path=BASE --export-all
    /// --enable=receive-pack` on a free port and returns once it accepts connections. If another
    /// process takes the port first, it retries with another one. `base` must exist.
    pub fn start(base: &Path) -> anyhow::Result<GitDaemon> {
        let base = base
            .canonicalize()
            .with_context(|| format!("git daemon base {}", base.display()))?;
        let mut last_err = None;
        for _ in 0..10 {
            let port = free_port()?;
            let mut child = Command::new("git")
                .arg("daemon")
                .arg("--reuseaddr")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg("--enable=receive-pack")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env_remove("GIT_DIR")
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("spawning git daemon")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if let Some(status) = child.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    last_err = Some(anyhow::anyhow!("git daemon exited ({status}): {err}"));
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    // Make sure it was our daemon that answered, not a port thief.
                    std::thread::sleep(Duration::from_millis(20));
                    if child.try_wait()?.is_none() {
                        // Its stderr is only read on failure; send it nowhere from now on.
                        drop(child.stderr.take());
                        return Ok(GitDaemon { child, port, base });
                    }
                    continue;
                }
                if Instant::now() > deadline {
                    kill_group(&mut child);
                    bail!("git daemon did not accept connections on port {port} within 10 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("git daemon did not start")))
    }

    /// `git://127.0.0.1:PORT/NAME`, the repository `BASE/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            name.trim_start_matches('/')
        )
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The (canonical) directory it serves.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Kills `child`'s process group (the daemon and the per-connection children it forked, which
/// hold its listening socket too) with SIGKILL, then reaps `child`.
fn kill_group(child: &mut Child) {
    let pgid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !killed {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn free_port() -> anyhow::Result<u16> {
    let l = StdTcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// User name GitHub expects with an installation token in HTTP Basic auth.
pub const TOKEN_USER: &str = "x-access-token";

/// One request [`GitHttp`] answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET` / `POST` ...
    pub method: String,
    /// Path and query as received, e.g. `/rich.git/info/refs?service=git-upload-pack`.
    pub uri: String,
    /// Status returned.
    pub status: u16,
    /// The `Git-Protocol` request header, e.g. `version=2`.
    pub git_protocol: Option<String>,
}

struct Shared {
    root: PathBuf,
    token: Option<String>,
    bytes: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<RequestRecord>>>,
}

/// A smart-HTTP git server on `127.0.0.1:PORT` that runs `git http-backend` (CGI) for every
/// request, with `http.receivepack` on (anonymous push allowed), `uploadpack.allowFilter` on, and
/// optionally GitHub-style token auth.
///
/// Runtime: it owns its own tokio runtime on a dedicated OS thread, so it works the same from a
/// plain `#[test]` and from inside any tokio runtime (`current_thread` or `multi_thread`), and
/// dropping it never drops a runtime inside an async context. `start` and `drop` are blocking
/// calls (both short: drop signals the thread, which aborts open connections and kills running
/// CGI processes, and joins it).
pub struct GitHttp {
    port: u16,
    token: Option<String>,
    bytes: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<RequestRecord>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GitHttp {
    /// Serves the repositories under `base` (`/NAME/...` -> `BASE/NAME`) on a free loopback port.
    /// With `token`, every request must carry HTTP Basic auth `x-access-token:TOKEN`; without
    /// it, or with another user or password, the answer is 401 with
    /// `WWW-Authenticate: Basic realm="git"`. A path that is not a repository gives 404.
    pub fn start(base: &Path, token: Option<&str>) -> anyhow::Result<GitHttp> {
        let root = base
            .canonicalize()
            .with_context(|| format!("git http base {}", base.display()))?;
        let listener = StdTcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let bytes = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            root,
            token: token.map(str::to_string),
            bytes: bytes.clone(),
            log: log.clone(),
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("git-http")
            .enable_all()
            .build()
            .context("building the git http runtime")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("git-http-{port}"))
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let app = axum::Router::new().fallback(handle).with_state(shared);
                    let serve = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    );
                    tokio::select! {
                        r = serve => { if let Err(e) = r { tracing::warn!("git http server: {e}"); } }
                        _ = rx => {}
                    }
                });
                // Aborts connection tasks; their CGI children are kill_on_drop.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .context("spawning the git http thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("git http thread died on start"),
        }
        Ok(GitHttp {
            port,
            token: token.map(str::to_string),
            bytes,
            log,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT/NAME` (no credentials).
    pub fn url(&self, name: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            name.trim_start_matches('/')
        )
    }

    /// [`url`](Self::url) with the server's token as `x-access-token:TOKEN@` credentials (the
    /// same as `url` when the server has no token).
    pub fn authed_url(&self, name: &str) -> String {
        match &self.token {
            Some(t) => format!(
                "http://{TOKEN_USER}:{t}@127.0.0.1:{}/{}",
                self.port,
                name.trim_start_matches('/')
            ),
            None => self.url(name),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Total response body bytes sent so far (all requests, all statuses).
    pub fn bytes_served(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// The requests answered so far, in order of completion of their headers.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The value of an `Authorization` header for HTTP Basic auth `user:password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {enc}")
}

fn authorized(req: &Request, token: &str) -> bool {
    let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(enc) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(enc.trim()) else {
        return false;
    };
    dec == format!("{TOKEN_USER}:{token}").as_bytes()
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (status, msg.to_string()).into_response()
}

async fn handle(
    State(st): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let git_protocol = req
        .headers()
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let record = |status: u16| RequestRecord {
        method: method.clone(),
        uri: uri.clone(),
        status,
        git_protocol: git_protocol.clone(),
    };
    if let Some(token) = &st.token
        && !authorized(&req, token)
    {
        if let Ok(mut l) = st.log.lock() {
            l.push(record(401));
        }
        let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"git\""),
        );
        return r;
    }
    match cgi(&st, peer, req).await {
        Ok((resp, status)) => {
            if let Ok(mut l) = st.log.lock() {
                l.push(record(status));
            }
            resp
        }
        Err(e) => {
            tracing::warn!("git http-backend: {e:#}");
            if let Ok(mut l) = st.log.lock() {
                l.push(record(500));
            }
            plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}\n"))
        }
    }
}

/// Runs `git http-backend` for `req` (forge-sim's CGI runner, which the simulated GitHub uses
/// too); returns the response and its status.
async fn cgi(st: &Shared, peer: SocketAddr, req: Request) -> anyhow::Result<(Response, u16)> {
    let path_info = forge_sim::git_http::percent_decode(req.uri().path());
    let backend = forge_sim::git_http::Backend {
        project_root: &st.root,
        path_info: &path_info,
        config: &[
            ("http.receivepack", "true"),
            ("uploadpack.allowFilter", "true"),
        ],
        remote_user: st.token.as_ref().map(|_| TOKEN_USER),
        remote_addr: peer,
        bytes_served: Some(st.bytes.clone()),
    };
    let resp = forge_sim::git_http::run_http_backend(backend, req).await?;
    let status = resp.status().as_u16();
    Ok((resp, status))
}

#[cfg(test)]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixtures::{self, git, git_command, head, reachable_objects, refs, rich_repo};
    use std::io::Write as _;

    fn assert_same_repo(a: &Path, b: &Path) {
        assert_eq!(refs(a).unwrap(), refs(b).unwrap());
        assert_eq!(reachable_objects(a).unwrap(), reachable_objects(b).unwrap());
    }

    /// A raw HTTP/1.1 request; returns (status, head text, body).
    fn raw_http(
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let end = find(&resp, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&resp[..end]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, resp[end + 4..].to_vec())
    }

    fn clone_mirror(url: &str, dst: &Path) -> anyhow::Result<String> {
        let parent = dst.parent().unwrap();
        git(
            parent,
            &["clone", "-q", "--mirror", url, dst.to_str().unwrap()],
        )
    }

    #[test]
    fn daemon_clone_mirror_and_push() {
        let base = tempfile::tempdir().unwrap();
        let src = rich_repo(base.path(), "rich.git").unwrap();
        fixtures::empty_repo(base.path(), "dst.git").unwrap();
        let d = GitDaemon::start(base.path()).unwrap();
        assert_eq!(
            d.url("rich.git"),
            format!("git://127.0.0.1:{}/rich.git", d.port())
        );
        let out = tempfile::tempdir().unwrap();
        let m = out.path().join("m.git");
        clone_mirror(&d.url("rich.git"), &m).unwrap();
        assert_same_repo(&src, &m);
        assert_eq!(head(&m).unwrap().as_deref(), Some("refs/heads/main"));
        // Push everything to an empty repository over git://.
        git(&src, &["push", "-q", "--mirror", &d.url("dst.git")]).unwrap();
        assert_same_repo(&src, &base.path().join("dst.git"));
        // Missing repository.
        assert!(clone_mirror(&d.url("nope.git"), &out.path().join("n.git")).is_err());
        // Two daemons at once get different ports; drop stops it.
        let d2 = GitDaemon::start(base.path()).unwrap();
        assert_ne!(d.port(), d2.port());
        // (That the port is free afterwards is not asserted: a parallel test may take it.)
        drop(d2);
    }

    /// The daemon, the `git-daemon` it runs and the child it forks per connection all end when
    /// the `GitDaemon` is dropped (a test's servers must not outlive it).
    #[test]
    fn a_dropped_daemon_leaves_no_process_behind() {
        let base = tempfile::tempdir().unwrap();
        let d = GitDaemon::start(base.path()).unwrap();
        let pgid = d.child.id();
        let alive = || {
            Command::new("kill")
                .args(["-0", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let _conn = TcpStream::connect(("127.0.0.1", d.port())).unwrap();
        assert!(alive());
        drop(d);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() {
            assert!(
                Instant::now() < deadline,
                "processes of the dropped daemon's group {pgid} are still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn http_with_token() {
        let base = tempfile::tempdir().unwrap();
        let src = rich_repo(base.path(), "rich.git").unwrap();
        fixtures::empty_repo(base.path(), "dst.git").unwrap();
        let h = GitHttp::start(base.path(), Some("s3cret")).unwrap();
        assert_eq!(
            h.url("rich.git"),
            format!("http://127.0.0.1:{}/rich.git", h.port())
        );
        let out = tempfile::tempdir().unwrap();

        // Right token: full mirror.
        let m = out.path().join("m.git");
        clone_mirror(&h.authed_url("rich.git"), &m).unwrap();
        assert_same_repo(&src, &m);
        assert_eq!(head(&m).unwrap().as_deref(), Some("refs/heads/main"));
        // git uses protocol v2 by default, so HTTP_GIT_PROTOCOL reached the backend.
        assert!(
            h.requests()
                .iter()
                .any(|r| r.git_protocol.as_deref() == Some("version=2") && r.status == 200)
        );

        // Wrong token and no token fail.
        let wrong = h
            .url("rich.git")
            .replace("http://", "http://x-access-token:nope@");
        let e = clone_mirror(&wrong, &out.path().join("w.git"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Authentication failed") || e.contains("401"),
            "{e}"
        );
        let e = clone_mirror(&h.url("rich.git"), &out.path().join("x.git"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("terminal prompts disabled")
                || e.contains("401")
                || e.contains("Authentication"),
            "{e}"
        );
        let wrong_user = h
            .url("rich.git")
            .replace("http://", "http://someone:s3cret@");
        assert!(clone_mirror(&wrong_user, &out.path().join("u.git")).is_err());

        // Raw: 401 carries the challenge; missing repository is 404 with a good token.
        let p = "/rich.git/info/refs?service=git-upload-pack";
        let (st, head_text, _) = raw_http(h.port(), "GET", p, &[], b"");
        assert_eq!(st, 401);
        assert!(
            head_text
                .to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"git\""),
            "{head_text}"
        );
        let bad = basic_auth(TOKEN_USER, "nope");
        assert_eq!(
            raw_http(h.port(), "GET", p, &[("Authorization", &bad)], b"").0,
            401
        );
        let good = basic_auth(TOKEN_USER, "s3cret");
        let (st, head_text, body) = raw_http(h.port(), "GET", p, &[("Authorization", &good)], b"");
        assert_eq!(st, 200, "{head_text}");
        assert!(
            head_text.contains("application/x-git-upload-pack-advertisement"),
            "{head_text}"
        );
        assert!(body.starts_with(b"001e# service=git-upload-pack\n"));
        let (st, _, _) = raw_http(
            h.port(),
            "GET",
            "/nope.git/info/refs?service=git-upload-pack",
            &[("Authorization", &good)],
            b"",
        );
        assert_eq!(st, 404);
        assert!(clone_mirror(&h.authed_url("nope.git"), &out.path().join("n.git")).is_err());

        // Push to an empty repository over HTTP.
        git(&src, &["push", "-q", "--mirror", &h.authed_url("dst.git")]).unwrap();
        assert_same_repo(&src, &base.path().join("dst.git"));
        drop(h);
    }

    #[test]
    fn http_without_token_push_fetch_and_bytes() {
        let base = tempfile::tempdir().unwrap();
        let src = rich_repo(base.path(), "rich.git").unwrap();
        fixtures::empty_repo(base.path(), "dst.git").unwrap();
        let h = GitHttp::start(base.path(), None).unwrap();
        assert_eq!(h.authed_url("x.git"), h.url("x.git"));
        let out = tempfile::tempdir().unwrap();
        let m = out.path().join("m.git");
        clone_mirror(&h.url("rich.git"), &m).unwrap();
        let first = h.bytes_served();
        assert!(first > fixtures::BINARY_SIZE as u64, "served {first}");
        // A second fetch with nothing new receives only the ref advertisement.
        git(&m, &["fetch", "-q"]).unwrap();
        let second = h.bytes_served() - first;
        assert!(second < 16 * 1024, "second fetch got {second} bytes");
        // After evolve, an incremental fetch gets a small pack.
        fixtures::evolve(base.path(), "rich.git").unwrap();
        let before = h.bytes_served();
        git(&m, &["fetch", "-q", "--prune"]).unwrap();
        let third = h.bytes_served() - before;
        assert!(third < 64 * 1024, "incremental fetch got {third} bytes");
        assert_same_repo(&src, &m);
        // Anonymous push over HTTP (protocol v0 and v2 clients both push with receive-pack).
        git(&src, &["push", "-q", "--mirror", &h.url("dst.git")]).unwrap();
        assert_same_repo(&src, &base.path().join("dst.git"));
    }

    #[test]
    fn http_gzip_request_body() {
        let base = tempfile::tempdir().unwrap();
        let src = rich_repo(base.path(), "rich.git").unwrap();
        let h = GitHttp::start(base.path(), None).unwrap();
        let main = refs(&src).unwrap()["refs/heads/main"].clone();
        // A protocol v0 upload-pack request: want main, done.
        let line = format!("want {main}\n");
        let mut req = format!("{:04x}{line}0000", line.len() + 4).into_bytes();
        req.extend_from_slice(b"0009done\n");
        let mut gz = Command::new("gzip")
            .args(["-c", "-n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        gz.stdin.take().unwrap().write_all(&req).unwrap();
        let gzipped = gz.wait_with_output().unwrap().stdout;
        let (st, head_text, body) = raw_http(
            h.port(),
            "POST",
            "/rich.git/git-upload-pack",
            &[
                ("Content-Type", "application/x-git-upload-pack-request"),
                ("Content-Encoding", "gzip"),
            ],
            &gzipped,
        );
        assert_eq!(st, 200, "{head_text}");
        assert!(head_text.contains("application/x-git-upload-pack-result"));
        assert!(
            body.starts_with(b"0008NAK\n"),
            "{:?}",
            String::from_utf8_lossy(&body[..body.len().min(64)])
        );
        assert!(find(&body, b"PACK").is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn http_inside_tokio_runtime() {
        let base = tempfile::tempdir().unwrap();
        let src = rich_repo(base.path(), "rich.git").unwrap();
        let h = GitHttp::start(base.path(), Some("t0k")).unwrap();
        let url = h.authed_url("rich.git");
        let out = tempfile::tempdir().unwrap();
        let m = out.path().join("m.git");
        let m2 = m.clone();
        tokio::task::spawn_blocking(move || clone_mirror(&url, &m2))
            .await
            .unwrap()
            .unwrap();
        assert_same_repo(&src, &m);
        drop(h); // must not panic inside the runtime
    }

    #[tokio::test]
    async fn http_inside_current_thread_runtime() {
        let base = tempfile::tempdir().unwrap();
        rich_repo(base.path(), "rich.git").unwrap();
        let h = GitHttp::start(base.path(), None).unwrap();
        let out = git_command(base.path())
            .args(["ls-remote", &h.url("rich.git")])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("refs/pull/1/merge"));
        drop(h);
    }
}
