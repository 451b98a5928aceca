//! Independent restore (escrow): with only the exported organisation key and the stock
//! `restic` tool (Debian package `restic`), a backup is listed and restored, and `git clone`
//! works on the restored mirror. No repovault code touches the data after the backup: the
//! README's escrow steps, run literally.

use std::process::Command;

use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{git, rich_repo};
use repovault_tests::gitserver::GitDaemon;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// `restic` with nothing but the repository path and the key file, as an escrow holder runs it.
fn restic(repo: &std::path::Path, key_file: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(key_file)
        .arg("--no-cache")
        .args(args)
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("restic is installed (apt-get install restic)");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_restic_and_git_restore_a_backup_without_repovault() {
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
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
    let b = c.backup_ok("org/rich").await.unwrap();
    // Nothing changes at the source: the second backup's snapshot repeats the first's tree,
    // and restic opens it as any other.
    let repeated = c.backup_ok("org/rich").await.unwrap();
    assert_eq!(repeated.added_bytes, 0, "{repeated:#?}");
    let head = git(&rich, &["rev-parse", "HEAD"]).unwrap();

    // 1. Export the organisation key (the escrow copy), and find the repository's directory.
    let escrow = tempfile::tempdir().unwrap();
    let key_file = escrow.path().join("org.key");
    let out = Command::new(BIN)
        .args([
            "--coordinator",
            &c.url(),
            "--output",
            "json",
            "org",
            "key",
            "export",
            "org",
        ])
        .arg("--to")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let org_id = exported["org_id"].as_str().unwrap();
    // `<storage>/<org-id>/<repo-id>/`: one restic repository per source repository.
    let repo = c.storage_root().join(org_id).join(b.repo_id.as_str());
    assert!(
        repo.join("config").is_file(),
        "a restic repository at {}",
        repo.display()
    );

    // 2. List the snapshots with stock restic: the backup is there, tagged with its id.
    let listed: serde_json::Value =
        serde_json::from_str(&restic(&repo, &key_file, &["snapshots", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (snapshot, backup) in listed.iter().zip([&b, &repeated]) {
        assert_eq!(
            snapshot["id"].as_str(),
            backup.snapshot_id.as_ref().map(|s| s.as_str())
        );
        let backup_tag = format!("backup={}", backup.id);
        assert!(
            snapshot["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == backup_tag.as_str()),
            "{listed:?}"
        );
    }
    assert_eq!(listed[0]["tree"], listed[1]["tree"], "{listed:?}");

    // 3. Restore the latest snapshot.
    let target = escrow.path().join("restored");
    restic(
        &repo,
        &key_file,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    // The snapshot's tree lands at the target's top: code.git/, manifest.json, and (GitHub)
    // wiki.git/, lfs/, meta/, releases/, attachments/.
    let mirror = target.join("code.git");
    let top: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        mirror.join("HEAD").is_file(),
        "the bare mirror at {}: {top:?}",
        mirror.display()
    );
    assert!(target.join("manifest.json").is_file());
    // The worker's record of its own checks of the mirror is no part of the backup.
    assert!(
        !mirror.join("repovault-fsck.json").exists() && !mirror.join("repovault-fsck.ids").exists()
    );

    // 4. `git clone` the restored mirror: the source's head commit is there.
    git(
        escrow.path(),
        &["clone", "-q", mirror.to_str().unwrap(), "clone"],
    )
    .unwrap();
    let log = git(&escrow.path().join("clone"), &["log", "--format=%H", "-1"]).unwrap();
    assert_eq!(log.trim(), head);
    git(&mirror, &["fsck", "--no-progress"]).unwrap();
}
