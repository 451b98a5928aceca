//! Escrow agreements: an escrowed backup cannot be deleted until release; the escrow
//! key restores its repository with stock restic and opens no other repository of the same
//! organisation; purge is refused without --confirm and under escrow; disconnect and connect.

use std::process::Command;

use repovault_coordinator::error::CoreError;
use repovault_tests::cluster::{Cluster, restic};
use repovault_tests::fixtures::{git, rich_repo};
use repovault_tests::gitserver::GitDaemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn escrow_key_opens_one_repository_and_blocks_deletion_until_release() {
    let c = Cluster::start(1).await.unwrap();
    let core = c.core().clone();
    let src = tempfile::tempdir().unwrap();
    let x_src = rich_repo(src.path(), "x.git").unwrap();
    rich_repo(src.path(), "y.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let org = core
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    for n in ["x", "y"] {
        core.registry
            .add_repo(&format!("org/{n}"), &daemon.url(&format!("{n}.git")), None)
            .await
            .unwrap();
    }
    let bx = c.backup_ok("org/x").await.unwrap();
    let by = c.backup_ok("org/y").await.unwrap();

    let err = core
        .escrow
        .enable_escrow("org/x", "  ", None, "admin")
        .await;
    assert!(matches!(err, Err(CoreError::InvalidArgument(_))), "{err:?}");
    let (agreement, key) = core
        .escrow
        .enable_escrow("org/x", "ACME Ltd / Bank plc\nref ESC-42", None, "admin")
        .await
        .unwrap();
    assert!(agreement.key_id.is_some());
    assert!(
        core.escrow
            .is_escrowed(&bx, repovault_coordinator::clock::system_now_ms())
            .await
            .unwrap()
    );
    assert!(
        !core
            .escrow
            .is_escrowed(&by, repovault_coordinator::clock::system_now_ms())
            .await
            .unwrap()
    );
    // A backup completed while the agreement is active is escrowed too.
    let bx2 = c.backup_ok("org/x").await.unwrap();

    // Deleting an escrowed backup fails, with a message that says why and what to do.
    for id in [&bx.id, &bx2.id] {
        match core.maintenance.delete_backup(id).await {
            Err(CoreError::FailedPrecondition(m)) => {
                assert!(
                    m.contains("escrowed") && m.contains("escrow release"),
                    "{m}"
                );
            }
            other => panic!("deleting an escrowed backup: {other:?}"),
        }
    }
    // Purge: refused without --confirm, and under escrow.
    assert!(matches!(
        core.maintenance.purge_repo("org/x", false).await,
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        core.maintenance.purge_repo("org/x", true).await,
        Err(CoreError::FailedPrecondition(_))
    ));
    assert!(matches!(
        core.maintenance.purge_org("org", true).await,
        Err(CoreError::FailedPrecondition(_))
    ));

    // The escrow key: stock restic lists and restores org/x ...
    let agent = tempfile::tempdir().unwrap();
    let key_file = agent.path().join("escrow.key");
    std::fs::write(&key_file, key.expose()).unwrap();
    let x_repo = c
        .storage_root()
        .join(org.id.as_str())
        .join(bx.repo_id.as_str());
    let y_repo = c
        .storage_root()
        .join(org.id.as_str())
        .join(by.repo_id.as_str());
    let listed: serde_json::Value =
        serde_json::from_str(&restic(&x_repo, &key_file, &["snapshots", "--json"]).unwrap())
            .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:?}");
    let target = agent.path().join("restored");
    restic(
        &x_repo,
        &key_file,
        &[
            "restore",
            bx2.snapshot_id.as_ref().map(|s| s.as_str()).unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
    )
    .unwrap();
    let head = git(&x_src, &["rev-parse", "refs/heads/main"]).unwrap();
    let restored = git(&target.join("code.git"), &["rev-parse", "refs/heads/main"]).unwrap();
    assert_eq!(restored, head);
    // ... and opens no other repository of the organisation.
    let out = Command::new("restic")
        .arg("-r")
        .arg(&y_repo)
        .arg("--password-file")
        .arg(&key_file)
        .args(["--no-cache", "snapshots"])
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_PASSWORD_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong password"), "{stderr}");
    // The organisation key still opens org/x.
    let (_, org_key) = core.registry.export_org_key("org").await.unwrap();
    let org_key_file = agent.path().join("org.key");
    std::fs::write(&org_key_file, org_key.expose()).unwrap();
    restic(&x_repo, &org_key_file, &["snapshots"]).unwrap();

    let listed = core.escrow.list_escrows(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].1, "active");

    // Released: deletion works, for the one backup only.
    core.escrow.release_escrow("org/x", "admin").await.unwrap();
    assert!(matches!(
        core.escrow.release_escrow("org/x", "admin").await,
        Err(CoreError::FailedPrecondition(_))
    ));
    assert!(!core.escrow.list_escrows(Some("org/x")).await.unwrap()[0].1);
    core.maintenance.delete_backup(&bx.id).await.unwrap();
    assert!(core.registry.backup_record(&bx.id).await.unwrap().is_none());
    assert!(
        core.registry
            .backup_record(&bx2.id)
            .await
            .unwrap()
            .is_some()
    );
    let listed: serde_json::Value =
        serde_json::from_str(&restic(&x_repo, &org_key_file, &["snapshots", "--json"]).unwrap())
            .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:?}");

    // Disconnect and connect.
    let o = core.maintenance.disconnect_org("org").await.unwrap();
    assert!(o.disconnected);
    let o = core.maintenance.connect_org("org").await.unwrap();
    assert!(!o.disconnected && o.full_after_ms.is_some());

    // Purge org/y: its snapshot repository and records go; org/x stays.
    core.maintenance.purge_repo("org/y", true).await.unwrap();
    assert!(!y_repo.exists());
    assert!(core.registry.repo_named("org/y").await.is_err());
    assert!(core.registry.backup_record(&by.id).await.unwrap().is_none());
    assert!(x_repo.join("config").is_file());
    // Purge the organisation.
    core.maintenance.purge_org("org", true).await.unwrap();
    assert!(!c.storage_root().join(org.id.as_str()).exists());
    assert!(core.registry.org_named("org").await.is_err());
    c.shutdown().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

fn cli(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["--coordinator", &c.url()])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn escrow_deletion_purge_and_connection_through_the_cli() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "x.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.core()
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    c.core()
        .registry
        .add_repo("org/x", &daemon.url("x.git"), None)
        .await
        .unwrap();
    let b = c.backup_ok("org/x").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agreement = dir.path().join("agreement.txt");
    std::fs::write(&agreement, "ACME Ltd / Bank plc\nreference ESC-7\n").unwrap();
    let key = dir.path().join("escrow.key");

    let out = cli(
        &c,
        &[
            "escrow",
            "enable",
            "org/x",
            "--agreement-file",
            agreement.to_str().unwrap(),
            "--until",
            "2099-12-31",
            "--key-to",
            key.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2100-01-01"), "{stdout}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&key).unwrap();
    assert!(!stdout.contains(secret.trim()), "the key is not printed");
    // The key file is never overwritten.
    let again = cli(
        &c,
        &[
            "escrow",
            "enable",
            "org/x",
            "--agreement",
            "x",
            "--key-to",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(again.status.code(), Some(2), "{again:?}");

    let del = cli(&c, &["backup", "delete", b.id.as_str()]);
    assert!(!del.status.success());
    let stderr = String::from_utf8_lossy(&del.stderr);
    assert!(stderr.contains("escrowed"), "{stderr}");

    let list = cli(&c, &["--output", "json", "escrow", "list"]);
    assert!(list.status.success(), "{list:?}");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["active"], true, "{v}");

    let show = cli(&c, &["--output", "json", "backup", "show", b.id.as_str()]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["is_escrowed"], true, "{v}");

    let purge = cli(&c, &["repo", "purge", "org/x"]);
    assert_eq!(purge.status.code(), Some(2), "{purge:?}");

    assert!(cli(&c, &["escrow", "release", "org/x"]).status.success());
    let del = cli(&c, &["backup", "delete", b.id.as_str()]);
    assert!(del.status.success(), "{del:?}");

    let r = cli(
        &c,
        &[
            "org",
            "retention",
            "org",
            "--days",
            "30",
            "--keep-daily",
            "7",
        ],
    );
    assert!(r.status.success(), "{r:?}");
    let r = cli(&c, &["--output", "json", "org", "retention", "org"]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        (v["days"].as_u64(), v["keep_daily"].as_u64()),
        (Some(30), Some(7)),
        "{v}"
    );

    assert!(cli(&c, &["org", "disconnect", "org"]).status.success());
    assert!(
        c.core()
            .registry
            .org_named("org")
            .await
            .unwrap()
            .disconnected
    );
    assert!(cli(&c, &["org", "connect", "org"]).status.success());
    assert!(
        !c.core()
            .registry
            .org_named("org")
            .await
            .unwrap()
            .disconnected
    );

    let purge = cli(&c, &["org", "purge", "org", "--confirm"]);
    assert!(purge.status.success(), "{purge:?}");
    assert!(c.core().registry.org_named("org").await.is_err());
    c.shutdown().await;
}
