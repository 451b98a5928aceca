//! The CLI as an admin drives it: JSON documents, exit codes, tokens from the environment,
//! downloads; and worker processes that drain on SIGTERM and exit when idle.

use std::process::{Command, Output};
use std::time::Duration;

use repovault_coordinator::model::Status;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{self, refs, rich_repo};
use repovault_tests::gitserver::{GitDaemon, GitHttp};

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

fn cli(c: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--coordinator")
        .arg(c.url())
        .args(args)
        .env("SECRET_TOKEN_VAR", "cli-token-789")
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_prints_json_documents_and_meaningful_exit_codes() {
    let c = Cluster::start(2).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let http = GitHttp::start(src.path(), Some("cli-token-789")).unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();

    let org = json(&cli(&c, &["--output", "json", "org", "add", "acme"]));
    assert_eq!(org["name"], "acme");
    let repo = json(&cli(
        &c,
        &[
            "--output",
            "json",
            "repo",
            "add",
            "acme/web",
            "--url",
            &http.url("rich.git"),
            "--token-env",
            "SECRET_TOKEN_VAR",
        ],
    ));
    assert_eq!(repo["full_name"], "acme/web");
    assert_eq!(repo["has_token"], true);
    let list = json(&cli(&c, &["--output", "json", "repo", "list"]));
    assert_eq!(list.as_array().unwrap().len(), 1);

    let b = json(&cli(
        &c,
        &["--output", "json", "backup", "run", "acme/web", "--wait"],
    ));
    assert_eq!(b["status"], "completed", "{b}");
    for key in [
        "id",
        "repo",
        "type",
        "trigger",
        "status",
        "error",
        "created_at",
        "finished_at",
        "size_bytes",
        "added_bytes",
    ] {
        assert!(b.get(key).is_some(), "backup record lacks {key}: {b}");
    }
    assert_eq!(b["type"], "full");
    assert_eq!(b["trigger"], "manual");
    assert_eq!(b["counts"]["tags"], 2);
    assert!(b["counts"]["commits"].as_u64().unwrap() > 3);
    assert!(b["counts"]["branches"].as_u64().unwrap() >= 5);
    let id = b["id"].as_str().unwrap().to_string();

    let listed = json(&cli(
        &c,
        &["--output", "json", "backup", "list", "acme/web"],
    ));
    assert_eq!(listed.as_array().unwrap()[0]["id"], id.as_str());
    let shown = json(&cli(&c, &["--output", "json", "backup", "show", &id]));
    assert_eq!(shown["id"], id.as_str());

    // Download to a directory on the CLI's machine: the bare repository, every ref.
    let dest = src.path().join("downloaded.git");
    let r = json(&cli(
        &c,
        &[
            "--output",
            "json",
            "restore",
            "start",
            &id,
            "--type",
            "full_repo",
            "--target",
            "download",
            "--path",
            dest.to_str().unwrap(),
            "--wait",
        ],
    ));
    assert_eq!(r["status"], "completed", "{r}");
    let expected: std::collections::BTreeMap<_, _> = refs(&rich)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.ends_with("/merge"))
        .collect();
    assert_eq!(refs(&dest).unwrap(), expected);
    fixtures::git(&dest, &["fsck", "--full"]).unwrap();

    // Restore into a new repository over git://.
    fixtures::git(
        src.path(),
        &["init", "-q", "--bare", "-b", "main", "new.git"],
    )
    .unwrap();
    let r = json(&cli(
        &c,
        &[
            "--output",
            "json",
            "restore",
            "start",
            &id,
            "--type",
            "full_repo",
            "--target",
            "new",
            "--url",
            &daemon.url("new.git"),
            "--wait",
        ],
    ));
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(refs(&src.path().join("new.git")).unwrap(), expected);

    // The organisation key, 0600.
    let key = src.path().join("acme.key");
    assert!(
        cli(
            &c,
            &[
                "org",
                "key",
                "export",
                "acme",
                "--to",
                key.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        cli(
            &c,
            &[
                "org",
                "key",
                "export",
                "acme",
                "--to",
                key.to_str().unwrap()
            ]
        )
        .status
        .code(),
        Some(2),
        "never overwrites a key file"
    );

    // Exit codes.
    assert_eq!(
        cli(&c, &["backup", "show", "rzzzzzzzzzzz-nope"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        cli(&c, &["repo", "list", "nosuchorg"]).status.code(),
        Some(3)
    );
    let o = cli(
        &c,
        &["repo", "add", "acme/x", "--url", "https://u:hunter2@host/x"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("hunter2"));
    assert_eq!(
        cli(
            &c,
            &[
                "repo",
                "add",
                "acme/y",
                "--url",
                "https://host/y",
                "--token-env",
                "UNSET_VARIABLE_XYZ"
            ]
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(cli(&c, &["backup", "frobnicate"]).status.code(), Some(2));
    let unreachable = Command::new(BIN)
        .args(["--coordinator", "http://127.0.0.1:1", "workers"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("unreachable"));
    assert!(
        cli(
            &c,
            &["repo", "add", "acme/gone", "--url", &daemon.url("gone.git")]
        )
        .status
        .success()
    );
    let failed = cli(
        &c,
        &["--output", "json", "backup", "run", "acme/gone", "--wait"],
    );
    assert_eq!(failed.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(doc["status"], "failed");
    assert!(
        doc["error"].as_str().unwrap().contains("not found"),
        "{doc}"
    );
    // Tables work too.
    let t = cli(&c, &["backup", "list"]);
    assert!(String::from_utf8_lossy(&t.stdout).contains("acme/web"));
    c.shutdown().await;
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_process_worker_drains_on_sigterm_and_exits_when_idle() {
    let c = Cluster::start(0).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    fixtures::big_repo(src.path(), "big.git", 4000, 150).unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/big", &daemon.url("big.git"), None)
        .await
        .unwrap();

    // Drain: SIGTERM while a backup runs; the backup still completes on this worker, then it exits 0.
    let mut w = Kill(c.spawn_worker_process(BIN, "drainer").unwrap());
    let b = c.core().backups.run_backup("org/big").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Running on the worker, not merely leased: its progress shows a working phase.
        let phase = c
            .core()
            .queue
            .progress
            .latest(b.task_id.as_str())
            .map(|p| p.phase)
            .unwrap_or_default();
        if ["open", "fetch", "snapshot"].contains(&phase.as_str()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never leased");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &w.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let done = c.wait_backup(&b.id, Duration::from_secs(120)).await;
    let done = done.unwrap_or_else(|e| panic!("{e}; worker log:\n{}", c.process_log("drainer")));
    assert_eq!(done.status, Status::Completed, "{:?}", done.error);
    assert_eq!(done.attempt, 1, "finished within the grace, not re-run");
    let status = tokio::task::block_in_place(|| wait_exit(&mut w.0, Duration::from_secs(30)))
        .expect("worker exits after draining");
    assert!(status.success());
    assert!(c.process_log("drainer").contains("draining"));

    // Burst pool: exits by itself when idle.
    let mut idle = Kill(
        c.spawn_worker_process_with(BIN, "idler", &["--exit-when-idle", "2s"])
            .unwrap(),
    );
    let status = tokio::task::block_in_place(|| wait_exit(&mut idle.0, Duration::from_secs(30)))
        .expect("idle worker exits");
    assert!(status.success());
    c.shutdown().await;
}

/// Invalid input exits 2 with a message that says what is wrong, before anything is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_input_exits_2_before_any_work() {
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(cli(&c, &["org", "add", "acme"]).status.success());
    let web = daemon.url("rich.git");
    assert!(
        cli(&c, &["repo", "add", "acme/web", "--url", &web])
            .status
            .success()
    );

    // On-push backups on a plain git organisation: invalid input, not a failure.
    let o = cli(&c, &["repo", "set", "acme/web", "--on-push"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("need a forge organisation"),
        "{}",
        stderr(&o)
    );

    // ssh: not supported, and what to use instead.
    let o = cli(
        &c,
        &["repo", "add", "acme/ssh", "--url", "ssh://git@host/x.git"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not supported") && stderr(&o).contains("https://"),
        "{}",
        stderr(&o)
    );

    // Negative days and counts name the range instead of "unexpected argument '-1'".
    for (args, range) in [
        (&["org", "retention", "acme", "--days", "-1"][..], "0..="),
        (
            &["org", "retention", "acme", "--keep-last", "-3"][..],
            "0..=",
        ),
        (
            &["org", "set", "acme", "--full-every-days", "-1"][..],
            "1..=366",
        ),
        (&["audit", "list", "--limit", "-1"][..], "1..="),
    ] {
        let o = cli(&c, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("-1") || stderr(&o).contains("-3"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(range), "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("unexpected argument"),
            "{}",
            stderr(&o)
        );
    }

    // A download --path that is a symbolic link, or under one, is refused before the restore
    // is queued (it used to fail only at the end, after the whole restore).
    let b = json(&cli(
        &c,
        &["--output", "json", "backup", "run", "acme/web", "--wait"],
    ));
    let id = b["id"].as_str().unwrap().to_string();
    let real = src.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = src.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for (path, what) in [
        (link.clone(), "is a symbolic link"),
        (link.join("inside.git"), "under the symbolic link"),
    ] {
        let o = cli(
            &c,
            &[
                "restore",
                "start",
                &id,
                "--type",
                "full_repo",
                "--target",
                "download",
                "--path",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            path.display(),
            stderr(&o)
        );
        assert!(stderr(&o).contains(what), "{}", stderr(&o));
    }
    let restores = json(&cli(&c, &["--output", "json", "restore", "list"]));
    assert_eq!(restores.as_array().unwrap().len(), 0, "nothing was queued");
    c.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every entry under `dir` (itself included) whose mode gives group or other any permission.
fn not_private(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.permissions().mode() & 0o077 != 0 {
            out.push(format!(
                "{} {:o}",
                p.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    out
}

/// `repovault standalone` as a user starts it (under umask 022): what it writes is private,
/// and file:// sources are allowed only under `--allow-local-root`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_writes_private_files_and_reads_only_allowed_local_roots() {
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (src, data) = (base.path().join("src"), base.path().join("data"));
    std::fs::create_dir(&src).unwrap();
    let rich = rich_repo(&src, "rich.git").unwrap();
    let other = rich_repo(outside.path(), "other.git").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(base.path().join("standalone.log")).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("standalone")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &listen, "--http-listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .args([
            "--workers",
            "1",
            "--heartbeat",
            "500ms",
            "--allow-local-root",
        ])
        .arg(base.path())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let url = format!("http://{listen}");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("--coordinator")
            .arg(&url)
            .args(args)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let o = run(&["--output", "json", "workers"]);
        if o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .ok()
                .and_then(|v| v.as_array().map(|a| !a.is_empty()))
                == Some(true)
        {
            break;
        }
        let log = std::fs::read_to_string(base.path().join("standalone.log")).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline && child.0.try_wait().unwrap().is_none(),
            "standalone did not come up:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    assert!(run(&["org", "add", "acme"]).status.success());
    let file = |p: &std::path::Path| format!("file://{}", p.display());
    assert!(
        run(&["repo", "add", "acme/ok", "--url", &file(&rich)])
            .status
            .success()
    );
    let o = run(&["--output", "json", "backup", "run", "acme/ok", "--wait"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        run(&["repo", "add", "acme/other", "--url", &file(&other)])
            .status
            .success()
    );
    let o = run(&["--output", "json", "backup", "run", "acme/other", "--wait"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let err = doc["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&other.display().to_string()) && err.contains("--allow-local-root"),
        "{doc}"
    );
    // The data directory is under the allowed root, and still refused: every worker's cache.
    let cache = data.join("cache").join("worker-0");
    assert!(
        run(&["repo", "add", "acme/cache", "--url", &file(&cache)])
            .status
            .success()
    );
    let o = run(&["--output", "json", "backup", "run", "acme/cache", "--wait"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        doc["error"]
            .as_str()
            .unwrap_or_default()
            .contains("own directories"),
        "{doc}"
    );

    // Private: the store, the keys, the storage and the cache, every file and directory.
    let mut leaks = Vec::new();
    for p in ["state.redb", "master.key", "join.token", "storage", "cache"] {
        leaks.extend(not_private(&data.join(p)));
    }
    assert!(leaks.is_empty(), "readable by group or others: {leaks:#?}");
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::block_in_place(|| wait_exit(&mut child.0, Duration::from_secs(30)));
    assert!(
        status.is_some_and(|s| s.success()),
        "standalone stops on SIGTERM"
    );
}

/// `repovault coordinator --config FILE --check` validates without writing anything: the
/// effective configuration (with an environment override applied) on stdout, what a start would
/// create on stderr, exit 0; a bad value exits 2 naming the key, or the variable it came from.
#[test]
fn a_configuration_is_checked_without_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("coordinator.toml");
    std::fs::write(
        &file,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["coordinator", "--config"])
        .arg(&file)
        .arg("--check")
        .env("REPOVAULT_RETENTION_KEEP_DELETE", "30h")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("keep_delete = \"30h\""), "{stdout}");
    assert!(
        stderr.contains("master.key") && stderr.contains("valid"),
        "{stderr}"
    );
    assert!(!data.exists(), "a check creates nothing");

    let out = std::process::Command::new(BIN)
        .args(["coordinator", "--config"])
        .arg(&file)
        .arg("--check")
        .env("REPOVAULT_MAX_ATTEMPTS", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REPOVAULT_MAX_ATTEMPTS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.exists());
}

/// Completions and man pages come from the binary's own command definition: the bash script
/// completes every top-level command, and `man --dir` writes a page per command that man(1)
/// reads (`.TH` header, the command's own description).
#[test]
fn completions_and_man_pages_are_generated_from_the_binary() {
    let out = std::process::Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "standalone",
        "org",
        "repo",
        "backup",
        "restore",
        "completions",
    ] {
        assert!(
            script.contains(cmd),
            "{cmd} missing from the bash completion"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = std::fs::read_to_string(dir.path().join("repovault.1")).unwrap();
    assert!(top.starts_with(".ie") || top.contains(".TH"), "{top}");
    let add = std::fs::read_to_string(dir.path().join("repovault-org-add.1")).unwrap();
    assert!(add.contains(".TH REPOVAULT-ORG-ADD"), "{add}");
    assert!(add.contains("token"), "the page documents the flags: {add}");
}
