//! The CLI where a shell or a network lets it down: a reader that closes the pipe early, a disk
//! that is full, an address that accepts and never answers, and each kind of connection failure
//! named with its own exit code. Every test runs the real binary; the coordinator is the real
//! one (`repovault standalone` as a process, or in process where roles are needed).

use std::process::{Command, Output, Stdio};

use repovault_proto::v1 as pb;
use repovault_tests::process::CoordinatorProcess;

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
