//! gRPC over TLS: workers and the CLI reach a TLS coordinator with a private CA, and a client that
//! does not trust it is refused.

use std::process::Command;

use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::pki::make_pki;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_and_cli_use_tls_with_a_private_ca() {
    let pki = tempfile::tempdir().unwrap();
    let (tls, ca) = make_pki(pki.path());
    let c = Cluster::start_tls(1, tls, ca.clone()).await.unwrap();
    assert!(c.url().starts_with("https://"));
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/rich", &daemon.url("rich.git"), None)
        .await
        .unwrap();
    // The worker leases, heartbeats, confirms and completes over TLS.
    let b = c.backup_ok("org/rich").await.unwrap();
    assert!(b.snapshot_id.is_some());

    let bin = env!("CARGO_BIN_EXE_repovault-test-process");
    let cli = |extra: &[&str]| {
        Command::new(bin)
            .args(["--coordinator", &c.url()])
            .args(extra)
            .env_remove("REPOVAULT_CA_FILE")
            .output()
            .unwrap()
    };
    let ok = cli(&["--ca-file", ca.to_str().unwrap(), "backup", "list"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains(b.id.as_str()));
    // Without the CA the server is not trusted: a TLS failure (exit 6) that says what to do.
    let untrusted = cli(&["backup", "list"]);
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("--ca-file"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    assert_eq!(
        untrusted.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    // Plaintext against the TLS port fails too.
    let plain = Command::new(bin)
        .args([
            "--coordinator",
            &c.url().replace("https://", "http://"),
            "backup",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(
        plain.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("speaks TLS"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    // A CA file with a plaintext URL is a usage error, not silently ignored.
    let mixed = Command::new(bin)
        .args([
            "--coordinator",
            "http://127.0.0.1:1",
            "--ca-file",
            ca.to_str().unwrap(),
            "workers",
        ])
        .output()
        .unwrap();
    assert_eq!(mixed.status.code(), Some(2));
    c.shutdown().await;
}
