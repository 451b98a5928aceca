//! mTLS for workers: with `tls.client_ca_file` and `tls.require_worker_cert`, a worker without a
//! client certificate is refused (UNAUTHENTICATED, audited), one whose certificate another CA
//! signed never gets past the handshake, and a `repovault worker` process presenting one the
//! client CA signed joins and backs up; the admin CLI presents no certificate and still works.

use std::process::Command;
use std::time::Duration;

use repovault_common::grpc::ClientCertFiles;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::rich_repo;
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::pki::{make_client_pki, make_pki};

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_workers_with_a_client_certificate_join_when_required_and_the_cli_needs_none() {
    let pki = tempfile::tempdir().unwrap();
    let (mut tls, ca) = make_pki(pki.path());
    let client = make_client_pki(pki.path());
    tls.client_ca_file = Some(client.ca_file.clone());
    tls.require_worker_cert = true;
    let server_cert = tls.cert_file.clone();
    let server_key = tls.key_file.clone();
    let c = Cluster::start_tls(0, tls, ca.clone()).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "r.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("org/r", &daemon.url("r.git")).await.unwrap();

    // No client certificate: refused at registration, saying what is missing and what to do.
    let (_stop, plain) = c.spawn_worker(c.worker_config("nocert", None).unwrap());
    let ended = tokio::time::timeout(Duration::from_secs(30), plain)
        .await
        .expect("the worker without a certificate stops")
        .unwrap();
    let e = ended.expect_err("refused").to_string();
    assert!(
        e.contains("client certificate") && e.contains("--client-cert"),
        "{e}"
    );
    // A certificate the client CA did not sign (the server's own): the handshake fails, so
    // the worker never registers (it keeps retrying, as with an unreachable coordinator).
    let mut foreign = c.worker_config("foreign", None).unwrap();
    foreign.client_cert = Some(ClientCertFiles {
        cert_file: server_cert,
        key_file: server_key,
    });
    let (stop_foreign, foreign) = c.spawn_worker(foreign);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(c.core().queue.workers.list().is_empty());
    stop_foreign.cancel();
    foreign.abort();

    // A `repovault worker` process with a certificate the client CA signed: joins, backs up.
    let mut worker = c
        .spawn_worker_process_with(
            BIN,
            "certified",
            &[
                "--ca-file",
                ca.to_str().unwrap(),
                "--client-cert",
                client.cert_file.to_str().unwrap(),
                "--client-key",
                client.key_file.to_str().unwrap(),
            ],
        )
        .unwrap();
    let b = c.backup_ok("org/r").await;
    let log = c.process_log("certified");
    let b = b.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(b.snapshot_id.is_some());

    // The admin CLI presents no certificate: still served.
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(["--coordinator", &c.url(), "--ca-file", ca.to_str().unwrap()])
            .args(["-o", "json"])
            .args(args)
            .env_remove("REPOVAULT_CA_FILE")
            .env_remove("REPOVAULT_OUTPUT")
            .output()
            .unwrap()
    };
    let listed = cli(&["workers"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let workers: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(workers.as_array().map(Vec::len), Some(1), "{workers:#}");
    assert_eq!(workers[0]["name"], "certified", "{workers:#}");
    // The refusal is in the audit log, naming what was missing.
    let audit = cli(&["audit", "list"]);
    assert!(audit.status.success());
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["caller"] == "(no client certificate)"
                && e["method"] == "RegisterWorker"
                && e["outcome"].as_str().unwrap().starts_with("refused")),
        "{audit:#}"
    );
    let _ = worker.kill();
    let _ = worker.wait();
    c.shutdown().await;
}
