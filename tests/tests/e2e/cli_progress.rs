//! The CLI's progress where a person watches it: a backup and a download followed on a terminal
//! (a pseudo-terminal made by util-linux `script`) draw a bar with a percentage and a rate; the
//! same commands with stderr piped print phase lines and no terminal control sequences. The
//! coordinator is `repovault standalone` as a process with one worker process, the repository
//! big enough that its fetch and snapshot last a few of the coordinator's progress events.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use repovault_tests::fixtures;
use repovault_tests::process::CoordinatorProcess;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// `s` quoted for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The CLI against `url` with `args`, its stdin, stdout and stderr a pseudo-terminal of 160
/// columns; what the terminal received (stdout and stderr interleaved, control sequences
/// included).
fn on_terminal(url: &str, args: &[&str]) -> Output {
    let cli = std::iter::once(BIN)
        .chain(["--coordinator", url])
        .chain(args.iter().copied())
        .map(sh_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command"])
        .arg(format!("stty cols 160 rows 40; exec {cli}"))
        .arg("/dev/null")
        .env("TERM", "xterm-256color")
        // Held open until the command ends: `script` forwards its stdin's end to the terminal.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script (Debian bsdutils) runs");
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut screen = Vec::new();
    stdout
        .read_to_end(&mut screen)
        .expect("reading the terminal");
    let mut out = child.wait_with_output().expect("script ends");
    drop(stdin);
    out.stdout = screen;
    out
}

/// The CLI with stdout and stderr piped.
fn piped(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--coordinator", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the CLI runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The frames a terminal drew: the pieces between carriage returns and line feeds.
fn frames(screen: &str) -> Vec<&str> {
    screen
        .split(['\r', '\n'])
        .filter(|f| !f.is_empty())
        .collect()
}

/// `frame` shows a percentage (`42%`) and a rate (`12.5 MiB/s`, `3,000.0000/s`).
fn bar_with_rate(frame: &str) -> bool {
    let percent = frame
        .match_indices('%')
        .any(|(i, _)| i > 0 && frame.as_bytes()[i - 1].is_ascii_digit());
    percent && frame.contains("/s")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_progress_bar_and_a_pipe_gets_phase_lines() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    // Some 150,000 objects in a pack of tens of MiB: the fetch indexes for seconds.
    let big = fixtures::big_repo(src.path(), "big.git", 20_000, 300).unwrap();
    let coord = CoordinatorProcess::start(BIN, dir.path(), "1s")
        .await
        .unwrap();
    let _worker = coord
        .spawn_worker("w1", &["--allow-local-root", src.path().to_str().unwrap()])
        .unwrap();
    let url = coord.url();
    ok(&piped(&url, &["org", "add", "acme"]), "org add");
    let repo_url = format!("file://{}", big.display());
    ok(
        &piped(&url, &["repo", "add", "acme/big", "--url", &repo_url]),
        "repo add",
    );

    // On a terminal: the fetch's objects of the pack's count, the snapshot's bytes of the
    // entry's size, each as a bar with its percentage and rate.
    let run = on_terminal(&url, &["backup", "run", "acme/big", "--wait"]);
    ok(&run, "backup run on a terminal");
    let screen = text(&run.stdout);
    let bars: Vec<&str> = frames(&screen)
        .into_iter()
        .filter(|f| bar_with_rate(f))
        .collect();
    assert!(
        bars.iter().any(|f| f.contains(": fetch")),
        "no bar of the fetch with a percentage and a rate:\n{screen}"
    );
    assert!(
        bars.iter()
            .any(|f| f.contains(": snapshot") && f.contains("B/s")),
        "no bar of the snapshot with a percentage and a byte rate:\n{screen}"
    );
    assert!(screen.contains("completed"), "{screen}");

    // Piped: the phase lines as ever, nothing drawn.
    let again = piped(&url, &["backup", "run", "acme/big", "--wait"]);
    ok(&again, "backup run piped");
    let lines = text(&again.stderr);
    for phase in ["fetch", "snapshot"] {
        assert!(
            lines.lines().any(|l| l.contains(&format!(": {phase} "))),
            "no {phase} line:\n{lines}"
        );
    }
    assert!(
        !lines.contains('\x1b') && !lines.contains('\r'),
        "control sequences on a pipe: {lines:?}"
    );
    assert!(
        !lines.lines().any(bar_with_rate),
        "a bar on a pipe:\n{lines}"
    );

    // The CLI's own download: a bar of the artifact's bytes on a terminal. The backup is the
    // one the phase lines name (`backup ID: fetch ...`).
    let id = lines
        .lines()
        .find_map(|l| {
            l.strip_prefix("backup ")?
                .split_once(": ")
                .map(|(id, _)| id)
        })
        .expect("a phase line naming the backup")
        .to_string();
    let dest = src.path().join("downloaded.git");
    let restore = on_terminal(
        &url,
        &[
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
    );
    ok(&restore, "restore to a download on a terminal");
    let screen = text(&restore.stdout);
    assert!(
        frames(&screen)
            .iter()
            .any(|f| f.contains(": download") && bar_with_rate(f)),
        "no bar of the download:\n{screen}"
    );
    assert!(Path::new(&dest).join("HEAD").is_file(), "{screen}");
}
