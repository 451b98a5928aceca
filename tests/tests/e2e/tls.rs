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

/// With `[tls]`, the HTTP port is HTTPS too (webhooks, download links and probes cross networks
/// as gRPC does), and `metrics_listen` moves `/metrics` to a listener of its own, also over TLS,
/// off the port that may face the internet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_http_port_is_https_and_metrics_can_have_their_own() {
    // As the binaries do at start: tonic's TLS takes the process's provider.
    repovault_common::tls::install_crypto_provider();
    let pki = tempfile::tempdir().unwrap();
    let (files, ca) = make_pki(pki.path());
    let dir = tempfile::tempdir().unwrap();
    let mut settings = repovault_cli::standalone_settings(
        &dir.path().join("data"),
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
        repovault_tests::cluster::TEST_HEARTBEAT,
    )
    .await
    .unwrap();
    settings.tls = Some(files.load().unwrap());
    settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let h = repovault_coordinator::server::start(settings)
        .await
        .unwrap();
    let http = h.http_addr.unwrap();
    let metrics = h.metrics_addr.unwrap();
    let curl = |url: String| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg(&url)
            .output()
            .unwrap()
    };
    let healthz = curl(format!("https://localhost:{}/healthz", http.port()));
    assert!(healthz.status.success(), "{healthz:?}");
    assert_eq!(String::from_utf8_lossy(&healthz.stdout), "ok\n");
    let plain = curl(format!("http://127.0.0.1:{}/healthz", http.port()));
    assert!(
        !plain.status.success(),
        "plaintext is not served: {plain:?}"
    );
    let moved = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg(format!("https://localhost:{}/metrics", http.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&moved.stdout), "404");
    let scraped = curl(format!("https://localhost:{}/metrics", metrics.port()));
    assert!(scraped.status.success(), "{scraped:?}");
    assert!(
        String::from_utf8_lossy(&scraped.stdout).contains("repovault_desired_workers"),
        "{}",
        String::from_utf8_lossy(&scraped.stdout)
    );
    h.shutdown().await;
}
