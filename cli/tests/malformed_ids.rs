//! An id given as an argument is checked before any call: a malformed one is a usage error
//! (exit 2) naming the argument and what is wrong, and the coordinator (here an address nothing
//! listens on, which would be exit 4) is never asked.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_repovault");

/// Runs the CLI against a coordinator address nothing listens on.
fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--coordinator", "http://127.0.0.1:1"])
        .env_remove("REPOVAULT_COORDINATOR")
        .output()
        .expect("runs the CLI")
}

#[test]
fn a_malformed_id_is_refused_before_any_call() {
    let cases: &[(&[&str], &str)] = &[
        (&["backup", "show", "../x"], "backup id begins with '.'"),
        (&["backup", "delete", "r1/x"], "backup id contains '/'"),
        (&["backup", "verify", "a b"], "backup id contains ' '"),
        (
            &["backup", "browse", "r1,x", "issues"],
            "backup id contains ','",
        ),
        (
            &["backup", "download", "r1/x", "--to", "/nonexistent/x.zip"],
            "backup id contains '/'",
        ),
        (
            &[
                "restore",
                "start",
                "r1/x",
                "--type",
                "full_repo",
                "--target",
                "download",
                "--path",
                "/nonexistent/x",
            ],
            "backup id contains '/'",
        ),
        (&["restore", "show", "s1/../x"], "restore id contains '/'"),
        (&["restore", "watch", "-"], "restore id begins with '-'"),
        (&["restore", "cancel", "s1;x"], "restore id contains ';'"),
        (&["restore", "link", "s1/x"], "restore id contains '/'"),
        (
            &["drill", "run", "acme", "--backup", "../x"],
            "backup id begins with '.'",
        ),
    ];
    for (args, want) in cases {
        let out = cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("unreachable"),
            "{args:?} called the coordinator: {stderr}"
        );
    }
    // An empty id too.
    let out = cli(&["backup", "show", ""]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backup id is empty"), "{stderr}");
}

#[test]
fn a_well_formed_id_reaches_the_coordinator() {
    // Well formed, so the CLI calls the coordinator, which is unreachable here (exit 4).
    let out = cli(&["backup", "show", "rk2j9x0a1b2c-lq3k9x2fab1"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
