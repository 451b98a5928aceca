//! The path real github.com takes: an organisation added without a CA of its own, so the
//! machine's trust store decides (here `SSL_CERT_FILE` names the simulator's CA, as an
//! operator's bundle would), and the worker fetches over HTTPS with gix and a token, not with
//! the git CLI that a custom CA needs.

use std::process::Command;
use std::time::Duration;

use repovault_proto::v1 as pb;
use repovault_tests::process::CoordinatorProcess;

use super::github_org::sim;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_github_fetch_over_https_goes_through_gix_trusting_the_platform_roots() {
    let sim = sim().await;
    let ready = sim.ready().clone();
    let dir = tempfile::tempdir().unwrap();
    let env = [("SSL_CERT_FILE", ready.ca_cert.as_os_str())];
    let coord = CoordinatorProcess::start_with_env(BIN, dir.path(), "500ms", &env)
        .await
        .unwrap();
    // No --ca-cert: the coordinator proves the token against the simulator through the
    // platform's roots.
    let add = Command::new(BIN)
        .args(["--coordinator", &coord.url()])
        .args(["org", "add", "acme", "--provider", "github", "--api-url"])
        .arg(&ready.api_url)
        .args(["--token-env", "GH_TOKEN"])
        .env("GH_TOKEN", &ready.token)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&add.stderr),
        coord.log()
    );
    let _worker = coord.spawn_worker("w", &[]).unwrap();

    let mut admin = coord.admin().await.unwrap();
    let started = admin
        .run_backup(pb::RunBackupRequest {
            repo: "acme/lfs-data".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = started.backup.expect("the backup record").id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let done = loop {
        let b = admin
            .get_backup(pb::GetBackupRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .backup
            .expect("the backup record");
        let status = pb::TaskStatus::try_from(b.status).unwrap();
        if matches!(status, pb::TaskStatus::Completed | pb::TaskStatus::Failed) {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backup still {status:?}:\n{}",
            coord.worker_log("w")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = coord.worker_log("w");
    assert_eq!(
        pb::TaskStatus::try_from(done.status).unwrap(),
        pb::TaskStatus::Completed,
        "{}\n{log}",
        done.error
    );
    let fetches: Vec<&str> = log.lines().filter(|l| l.contains("fetching")).collect();
    assert!(
        !fetches.is_empty() && fetches.iter().all(|l| l.contains("gix")),
        "every fetch (code and wiki) should go through gix:\n{log}"
    );
    assert!(
        done.counts.as_ref().is_some_and(|c| c.lfs_objects > 0),
        "the LFS objects came over HTTPS too: {:?}",
        done.counts
    );
    assert!(
        !log.contains(&ready.token),
        "the token appeared in the worker's log"
    );
}
