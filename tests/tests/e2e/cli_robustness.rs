//! The CLI where a shell or a network lets it down: a reader that closes the pipe early, a disk
//! that is full, an address that accepts and never answers, and each kind of connection failure
//! named with its own exit code. Every test runs the real binary; the coordinator is the real
//! one (`repovault standalone` as a process, or in process where roles are needed).

use std::process::{Command, Output, Stdio};

use repovault_proto::v1 as pb;
use repovault_tests::process::{ChildGuard, CoordinatorProcess};

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The CLI against `url` with `args`, its stdout the write end of a pipe whose read end is
/// already closed: its first write fails with EPIPE, as it does behind `| head -c 100` once
/// head has exited.
fn into_closed_pipe(url: &str, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(BIN)
        .arg("--coordinator")
        .arg(url)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_command_quietly_and_a_full_disk_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let coord = CoordinatorProcess::start(BIN, dir.path(), "1s")
        .await
        .unwrap();
    let mut admin = coord.admin().await.unwrap();
    // More than a pipe's buffer (64 KiB) of JSON, so `| head -c 100` closes the pipe while the
    // CLI is still writing.
    for i in 0..400 {
        admin
            .add_org(pb::AddOrgRequest {
                name: format!("organisation-number-{i:04}"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let url = coord.url();

    for args in [
        &["--output", "json", "org", "list"][..],
        &["org", "list"],
        &["--output", "json", "repo", "list"],
        &["repo", "list"],
        &["workers"],
    ] {
        let o = into_closed_pipe(&url, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}: a closed pipe is not reported");
    }

    // As a shell runs it, with pipefail: the pipeline succeeds and says nothing.
    let o = Command::new("bash")
        .args([
            "-c",
            r#"set -o pipefail; "$0" --coordinator "$1" --output json org list | head -c 100 >/dev/null"#,
            BIN,
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");

    // Any other write error is one: the command fails and says why.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(BIN)
        .args(["--coordinator", &url, "org", "list"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write the output"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// A listener that accepts every connection and never sends a byte, until the test ends.
fn silent_listener() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    format!("http://{addr}")
}

/// A plain HTTP/1.1 server that answers everything with 404, as a web server or a proxy on
/// the wrong port does.
fn http_404_server() -> String {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    format!("http://{addr}")
}

fn cli_at(url: &str, args: &[&str]) -> (Output, std::time::Duration) {
    let t = std::time::Instant::now();
    let o = Command::new(BIN)
        .arg("--coordinator")
        .arg(url)
        .args(args)
        .env_remove("REPOVAULT_TIMEOUT")
        .env_remove("REPOVAULT_ADMIN_TOKEN_FILE")
        .env_remove("REPOVAULT_CA_FILE")
        .output()
        .unwrap();
    (o, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_never_answers_times_out_with_a_clear_message() {
    let url = silent_listener();
    let (o, took) = cli_at(&url, &["--timeout", "2s", "org", "list"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no answer from") && stderr(&o).contains("within 2s"),
        "{}",
        stderr(&o)
    );
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");

    // The environment sets it too.
    let t = std::time::Instant::now();
    let o = Command::new(BIN)
        .args(["--coordinator", &url, "repo", "list"])
        .env("REPOVAULT_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("within 1s"), "{}", stderr(&o));
    assert!(t.elapsed() < std::time::Duration::from_secs(10));

    // A bad value is a usage error.
    let (o, _) = cli_at(&url, &["--timeout", "0s", "org", "list"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A coordinator that stops answering while the CLI follows a task (its process stopped with
/// SIGSTOP: the connection stays open, nothing answers) is noticed through keepalive pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_stops_answering_during_a_watch_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let coord = CoordinatorProcess::start(BIN, dir.path(), "1s")
        .await
        .unwrap();
    let url = coord.url();
    for args in [
        &["org", "add", "acme"][..],
        &["repo", "add", "acme/r", "--url", "git://127.0.0.1:1/r.git"],
    ] {
        let (o, _) = cli_at(&url, args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // No worker: the backup stays pending and the CLI waits on its WatchTask stream.
    // In a guard: killed and reaped when the test fails.
    let mut watch = ChildGuard {
        child: Command::new(BIN)
            .args(["--coordinator", &url, "--timeout", "2s"])
            .args(["backup", "run", "acme/r", "--wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        watch.child.try_wait().unwrap().is_none(),
        "the watch ended while the coordinator answered"
    );
    coord.signal("-STOP").unwrap();
    let stopped = std::time::Instant::now();
    // KEEPALIVE_INTERVAL (10 s) without traffic, then the 2 s timeout for the ping's answer.
    let status = loop {
        if let Some(s) = watch.child.try_wait().unwrap() {
            break s;
        }
        if stopped.elapsed() > std::time::Duration::from_secs(30) {
            let _ = watch.child.kill();
            coord.signal("-CONT").unwrap();
            panic!("the CLI still waits 30 s after the coordinator stopped answering");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    coord.signal("-CONT").unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut watch.child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(4), "{err}");
    assert!(err.contains("stopped answering"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_connection_failure_is_named_with_its_own_exit_code() {
    // Refused: nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (o, _) = cli_at(&format!("http://127.0.0.1:{port}"), &["org", "list"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing listens"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("transport error"), "{}", stderr(&o));

    // Not a coordinator: a plain HTTP server answering 404.
    let (o, _) = cli_at(&http_404_server(), &["org", "list"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not answer as a repovault coordinator"),
        "{}",
        stderr(&o)
    );

    // Not a coordinator: the coordinator's own HTTP (metrics) port.
    let dir = tempfile::tempdir().unwrap();
    let coord = CoordinatorProcess::start(BIN, dir.path(), "1s")
        .await
        .unwrap();
    let (o, _) = cli_at(&coord.http_url(), &["org", "list"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("repovault coordinator"),
        "{}",
        stderr(&o)
    );

    // TLS against a plaintext coordinator.
    let (o, _) = cli_at(
        &coord.url().replace("http://", "https://"),
        &["org", "list"],
    );
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("http://"), "{}", stderr(&o));

    // And `--help` lists every code.
    let (o, _) = cli_at(&coord.url(), &["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for line in [
        "4  coordinator unreachable",
        "6  TLS failed",
        "7  not a repovault coordinator",
        "8  unauthenticated",
        "9  forbidden",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}:\n{help}");
    }
}
