//! Tests against the real git CLI, a real `git daemon` and a fake HTTP server.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

use repovault_common::secret::Secret;

use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A `git` command isolated from the user's configuration, with a fixed identity (shared with
/// `fsck_tests`).
pub(super) fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "core.quotePath=false",
            "-c",
            "advice.nestedTag=false",
        ]);
    cmd
}

/// Runs git in `dir`, asserts success, returns stdout.
pub(super) fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub(super) fn commit_file(dir: &Path, name: &str, content: &[u8], message: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, content).expect("write file");
    git(dir, &["add", name]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// Incompressible bytes, deterministic.
pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// `git for-each-ref` of `dir` as name -> oid.
fn for_each_ref(dir: &Path) -> BTreeMap<String, String> {
    git(dir, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, o)| (n.to_owned(), o.to_owned()))
        .collect()
}

fn without_pull_merge(refs: BTreeMap<String, String>) -> BTreeMap<String, String> {
    refs.into_iter()
        .filter(|(name, _)| !(name.starts_with("refs/pull/") && name.ends_with("/merge")))
        .collect()
}

/// Builds the source repository described in the module docs, at `dir` (non-bare).
fn build_source(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"]);
    commit_file(dir, "a.txt", b"a\n", "a");
    commit_file(dir, "b.txt", b"b\n", "b");
    git(dir, &["checkout", "-q", "-b", "feature", "HEAD~1"]);
    commit_file(dir, "c.txt", b"c\n", "c");
    git(dir, &["checkout", "-q", "main"]);
    git(
        dir,
        &["merge", "-q", "--no-ff", "feature", "-m", "merge feature"],
    );
    commit_file(dir, "blob.bin", &noise(3 * 1024 * 1024, 7), "a 3 MB binary");
    git(dir, &["tag", "-a", "v1", "-m", "version 1"]);
    git(dir, &["tag", "light", "HEAD~1"]);
    git(dir, &["notes", "add", "-m", "a note", "HEAD"]);
    git(dir, &["branch", "topic/naïve-ü", "feature"]);
    git(dir, &["branch", "df", "HEAD~1"]);
    git(dir, &["branch", "gone", "HEAD~1"]);
    git(dir, &["branch", "force", "HEAD"]);
    git(dir, &["update-ref", "refs/pull/1/head", "feature"]);
    git(dir, &["update-ref", "refs/pull/1/merge", "main"]);
    git(dir, &["checkout", "-q", "--orphan", "orphan"]);
    git(dir, &["rm", "-q", "-rf", "."]);
    commit_file(dir, "orphan.txt", b"orphan\n", "orphan root");
    git(dir, &["checkout", "-q", "-f", "main"]);
}

/// A `git daemon` serving `base` on a free port, in a process group of its own: `git daemon`
/// runs `git-daemon` as a child, which forks one more per connection, so dropping kills the
/// whole group (killing `git` alone left `git-daemon` running, re-parented to init).
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = free_port();
        let child = git_cmd(base)
            .args([
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                "--export-all",
                "--enable=receive-pack",
            ])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child, port }
    }

    fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether any process of the process group `pgid` is alive (`kill -0 -- -PGID`).
fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_dropped_daemon_leaves_no_process_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(tmp.path());
    let pgid = daemon.child.id();
    // A connection makes git-daemon fork a child of its own.
    let _conn = TcpStream::connect(("127.0.0.1", daemon.port)).expect("connect");
    assert!(group_alive(pgid));
    drop(daemon);
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_alive(pgid) {
        assert!(
            Instant::now() < deadline,
            "processes of the dropped daemon's group {pgid} are still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn no_progress(_: GitProgress) {}

fn run_mirror(dir: &Path, remote: &Remote) -> Result<FetchOutcome, GitError> {
    mirror(dir, remote, &no_progress, &AtomicBool::new(false))
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

// ---------------------------------------------------------------------------------------------
// Mirror

#[test]
fn mirror_clone_fetch_prune_and_force_over_git_daemon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let srv = tmp.path().join("srv");
    let src = srv.join("src");
    build_source(&src);
    let daemon = Daemon::start(&srv);
    let remote = Remote::anonymous(daemon.url("src"));
    let dir = tmp.path().join("mirrors/src.git");

    let reports = Mutex::new(Vec::new());
    let first = mirror(
        &dir,
        &remote,
        &|p| reports.lock().expect("lock").push(p),
        &AtomicBool::new(false),
    )
    .expect("first mirror");
    assert!(first.cloned);
    assert!(first.pruned.is_empty());
    let expected = without_pull_merge(for_each_ref(&src));
    assert!(expected.contains_key("refs/heads/topic/naïve-ü"));
    assert!(expected.contains_key("refs/notes/commits"));
    assert!(expected.contains_key("refs/pull/1/head"));
    assert_eq!(first.inventory.refs, expected);
    assert_eq!(first.inventory.head.as_deref(), Some("refs/heads/main"));
    assert_eq!(first.inventory.branches, 7, "{:?}", first.inventory.refs);
    assert_eq!(first.inventory.tags, 2);
    let count: u64 = git(&dir, &["rev-list", "--all", "--count"])
        .trim()
        .parse()
        .expect("count");
    assert_eq!(count_all_commits(&dir).expect("count"), count);
    assert_eq!(
        git(&dir, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert_eq!(git(&dir, &["config", "gc.auto"]).trim(), "0");
    assert!(
        first.bytes_received > 3 * 1024 * 1024,
        "bytes_received {}",
        first.bytes_received
    );
    {
        let reports = reports.lock().expect("lock");
        assert_eq!(reports.last().map(|p| p.phase), Some("done"), "{reports:?}");
        assert!(
            reports
                .last()
                .is_some_and(|p| p.bytes == first.bytes_received)
        );
        // The pack's object count, from its header: the fetch's total, reached at the end.
        let in_pack: u64 = git(&dir, &["count-objects", "-v"])
            .lines()
            .find_map(|l| l.strip_prefix("in-pack: "))
            .expect("in-pack line")
            .parse()
            .expect("count");
        let last = reports.last().expect("a report");
        assert_eq!((last.objects, last.total_objects), (in_pack, in_pack));
        assert!(
            reports
                .iter()
                .all(|p| p.total_objects == 0 || p.total_objects == in_pack),
            "{reports:?}"
        );
    }
    // Packed refs only, no loose refs.
    assert!(dir.join("packed-refs").is_file());
    assert_eq!(
        git(
            &dir,
            &["for-each-ref", "--format=%(refname)", "refs/heads/feature"]
        )
        .trim(),
        "refs/heads/feature"
    );
    let loose: Vec<_> = walk_files(&dir.join("refs"));
    assert!(loose.is_empty(), "loose refs: {loose:?}");

    // Change the source: a new commit, a deleted branch, a force-push, df -> df/child.
    commit_file(&src, "new.txt", b"new\n", "new commit");
    git(&src, &["branch", "-D", "gone"]);
    git(&src, &["update-ref", "refs/heads/force", "orphan"]);
    git(&src, &["branch", "-D", "df"]);
    git(&src, &["branch", "df/child", "main"]);

    let second = run_mirror(&dir, &remote).expect("second mirror");
    assert!(!second.cloned);
    assert_eq!(
        second.inventory.refs,
        without_pull_merge(for_each_ref(&src))
    );
    assert_eq!(
        second.pruned,
        vec!["refs/heads/df".to_owned(), "refs/heads/gone".to_owned()]
    );
    assert!(second.bytes_received > 0);
    assert!(
        second.bytes_received * 50 < first.bytes_received,
        "second fetch {} bytes, first {}",
        second.bytes_received,
        first.bytes_received
    );
    let count: u64 = git(&dir, &["rev-list", "--all", "--count"])
        .trim()
        .parse()
        .expect("count");
    assert_eq!(count_all_commits(&dir).expect("count"), count);

    // Nothing new: no pack, nothing pruned.
    let third = run_mirror(&dir, &remote).expect("third mirror");
    assert_eq!(third.bytes_received, 0);
    assert!(third.pruned.is_empty());
    assert_eq!(third.inventory, second.inventory);

    // The mirror is healthy and can itself be cloned.
    git(
        tmp.path(),
        &[
            "--git-dir",
            dir.to_str().expect("utf-8"),
            "fsck",
            "--full",
            "--strict",
        ],
    );
    let copy = tmp.path().join("copy.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--mirror",
            &file_url(&dir),
            copy.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(for_each_ref(&copy), second.inventory.refs);
    assert_eq!(inventory(&dir).expect("inventory"), second.inventory);
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn mirror_over_file_url_and_head_follows_remote() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_source(&src);
    // The header means nothing to file://, but must never reach the disk.
    let token = Secret::new("file-token-never-on-disk");
    let remote = Remote::with_token(file_url(&src), &token);
    let header = remote.auth_header.clone().expect("header");
    let dir = tmp.path().join("m.git");
    std::fs::create_dir(&dir).expect("an existing empty directory is fine");
    let first = run_mirror(&dir, &remote).expect("mirror");
    assert!(first.cloned);
    assert_eq!(first.inventory.refs, without_pull_merge(for_each_ref(&src)));
    assert_eq!(first.inventory.head.as_deref(), Some("refs/heads/main"));

    git(&src, &["symbolic-ref", "HEAD", "refs/heads/feature"]);
    let second = run_mirror(&dir, &remote).expect("mirror again");
    assert_eq!(second.inventory.head.as_deref(), Some("refs/heads/feature"));
    assert_eq!(second.bytes_received, 0);
    let b64 = header.expose().rsplit(' ').next().expect("b64").to_owned();
    for file in walk_files(&dir) {
        let bytes = std::fs::read(&file).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&b64) && !text.contains(token.expose()) && !text.contains("extraHeader"),
            "{} holds the credentials",
            file.display()
        );
    }
    // No stray staging directories are left next to the mirror.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".repovault-clone-")),
        "{names:?}"
    );
}

#[test]
fn empty_remote_mirrors_to_empty_inventory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let srv = tmp.path().join("srv");
    std::fs::create_dir_all(&srv).expect("mkdir");
    git(&srv, &["init", "-q", "--bare", "empty.git"]);
    let daemon = Daemon::start(&srv);
    let dir = tmp.path().join("empty.git");
    let remote = Remote::anonymous(daemon.url("empty.git"));
    let first = run_mirror(&dir, &remote).expect("mirror of an empty repository");
    assert!(first.cloned);
    assert!(first.inventory.refs.is_empty());
    assert_eq!(count_all_commits(&dir).expect("count"), 0);
    assert_eq!(first.bytes_received, 0);
    let again = run_mirror(&dir, &remote).expect("second mirror of an empty repository");
    assert!(!again.cloned);
    assert!(again.inventory.refs.is_empty());

    // Same over file://.
    let dir2 = tmp.path().join("empty2.git");
    let out = run_mirror(&dir2, &Remote::anonymous(file_url(&srv.join("empty.git"))))
        .expect("file mirror");
    assert!(out.inventory.refs.is_empty());
}

#[test]
fn missing_repository_and_unreachable_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let srv = tmp.path().join("srv");
    std::fs::create_dir_all(&srv).expect("mkdir");
    let daemon = Daemon::start(&srv);
    let dir = tmp.path().join("m.git");

    let err =
        run_mirror(&dir, &Remote::anonymous(daemon.url("nope.git"))).expect_err("missing repo");
    assert!(
        matches!(err, GitError::RepositoryNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&daemon.url("nope.git")), "{err}");
    assert!(!dir.exists(), "a failed clone leaves nothing behind");

    let err = run_mirror(&dir, &Remote::anonymous(file_url(&tmp.path().join("nope"))))
        .expect_err("missing path");
    assert!(
        matches!(err, GitError::RepositoryNotFound { .. }),
        "{err:?}"
    );

    let closed = format!("git://127.0.0.1:{}/x.git", free_port());
    let err = run_mirror(&dir, &Remote::anonymous(closed.clone())).expect_err("nothing listens");
    assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&closed), "{err}");

    let err = ls_remote(&Remote::anonymous(daemon.url("nope.git"))).expect_err("missing repo");
    assert!(
        matches!(err, GitError::RepositoryNotFound { .. }),
        "{err:?}"
    );
}

#[test]
fn interrupted_clone_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    build_source(&src);
    let dir = tmp.path().join("m.git");
    let err = mirror(
        &dir,
        &Remote::anonymous(file_url(&src)),
        &no_progress,
        &AtomicBool::new(true),
    )
    .expect_err("interrupted");
    assert!(matches!(err, GitError::Interrupted { .. }), "{err:?}");
    assert!(!dir.exists());
}

// ---------------------------------------------------------------------------------------------
// Push

#[test]
fn push_mirror_into_empty_target_and_refuse_non_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let srv = tmp.path().join("srv");
    let src = srv.join("src");
    build_source(&src);
    git(&srv, &["init", "-q", "--bare", "target.git"]);
    let daemon = Daemon::start(&srv);
    let dir = tmp.path().join("m.git");
    let fetched = run_mirror(&dir, &Remote::anonymous(daemon.url("src"))).expect("mirror");

    let target = Remote::anonymous(daemon.url("target.git"));
    assert!(ls_remote(&target).expect("ls-remote").is_empty());
    let pushed = push_mirror(&dir, &target).expect("push");
    assert_eq!(pushed.refs_pushed, fetched.inventory.refs.len() as u64);
    assert_eq!(
        ls_remote(&target).expect("ls-remote"),
        fetched.inventory.refs
    );
    assert_eq!(
        for_each_ref(&srv.join("target.git")),
        fetched.inventory.refs
    );

    let err = push_mirror(&dir, &target).expect_err("non-empty target");
    assert!(matches!(err, GitError::TargetNotEmpty { .. }), "{err:?}");
    assert!(err.to_string().contains(&daemon.url("target.git")), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[test]
fn token_header_and_url_credentials() {
    let remote = Remote::with_token("https://github.com/o/r.git", &Secret::new("tok123"));
    let header = remote
        .auth_header
        .as_ref()
        .expect("header")
        .expose()
        .to_owned();
    // base64("x-access-token:tok123")
    assert_eq!(header, "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9rMTIz");
    assert!(!format!("{remote:?}").contains("eC1hY2Nlc3M"));

    let tmp = tempfile::tempdir().expect("tempdir");
    for url in [
        "https://user:hunter2@example.com/r.git",
        "https://hunter2@example.com/r.git",
    ] {
        let err =
            run_mirror(&tmp.path().join("m.git"), &Remote::anonymous(url)).expect_err("refused");
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = ls_remote(&Remote::anonymous(url)).expect_err("refused");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

/// A fake HTTP server answering every request with `status`, recording the requests.
struct FakeHttp {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeHttp {
    fn start(status: &'static str) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                log.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nWWW-Authenticate: Basic realm=\"x\"\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        FakeHttp { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/o/r.git", self.port)
    }

    fn saw_header(&self, header: &str) -> bool {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .any(|r| r.lines().any(|l| l.eq_ignore_ascii_case(header)))
    }
}

#[test]
fn http_auth_failures_are_classified_and_scrubbed() {
    let token = Secret::new("s3cr3t-t0ken-value");
    let tmp = tempfile::tempdir().expect("tempdir");

    let server = FakeHttp::start("401 Unauthorized");
    let remote = Remote::with_token(server.url(), &token);
    let header = remote
        .auth_header
        .as_ref()
        .expect("header")
        .expose()
        .to_owned();
    let b64 = header.rsplit(' ').next().expect("b64").to_owned();

    let err = run_mirror(&tmp.path().join("m.git"), &remote).expect_err("401");
    assert!(
        matches!(err, GitError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(token.expose()) && !text.contains(&b64),
        "{text}"
    );
    assert!(text.contains(&server.url()), "{text}");
    assert!(server.saw_header(&header), "gix sent the header");

    let err = ls_remote(&remote).expect_err("401 via the CLI");
    assert!(
        matches!(err, GitError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(token.expose()) && !text.contains(&b64),
        "{text}"
    );
    assert!(server.saw_header(&header), "git sent the header");

    let server = FakeHttp::start("404 Not Found");
    let err = run_mirror(
        &tmp.path().join("m.git"),
        &Remote::with_token(server.url(), &token),
    )
    .expect_err("404");
    assert!(
        matches!(err, GitError::RepositoryNotFound { .. }),
        "{err:?}"
    );
    let err = ls_remote(&Remote::with_token(server.url(), &token)).expect_err("404 via the CLI");
    assert!(
        matches!(err, GitError::RepositoryNotFound { .. }),
        "{err:?}"
    );
    assert!(!tmp.path().join("m.git").exists());
}

#[test]
fn unmapped_refs_fail_and_never_prune() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    git(&src, &["init", "-q", "-b", "main"]);
    commit_file(&src, "a.txt", b"a\n", "a");
    let remote = Remote::anonymous(file_url(&src));
    let dir = tmp.path().join("m.git");
    let first = run_mirror(&dir, &remote).expect("mirror");
    assert_eq!(first.inventory.branches, 1);

    // Only a ref the mirror refspec excludes is left at the source.
    git(&src, &["update-ref", "refs/pull/1/merge", "HEAD"]);
    git(&src, &["update-ref", "-d", "refs/heads/main"]);
    let err = run_mirror(&dir, &remote).expect_err("nothing maps");
    assert!(
        matches!(err, GitError::EmptyMapping { advertised: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        inventory(&dir).expect("inventory").refs,
        first.inventory.refs
    );
}
