//! Snapshots in object storage: S3 (moto), Azure Blob (Azurite) and GCS (the emulator), each a
//! real server started by the test. Every kind passes the storage conformance suite and the
//! same end-to-end run: two backups, verification, a restore into a new repository, a drill.

use std::time::Duration;

use repovault_common::domain::{RestoreTarget, RestoreType};
use repovault_common::storage::{MULTIPART_PART_SIZE, storage_conformance};
use repovault_coordinator::model::{BackupRecord, Status, VerifyStatus};
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{self, evolve, refs, rich_repo};
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::object_stores::{ObjectStore, Peer};

use super::backup_restore::restore_to_new;
use super::download_zip::curl;
use super::github_org::cli;

const WAIT: Duration = Duration::from_secs(180);

async fn conformance(peer: Peer) {
    let (store, storage) = ObjectStore::with_bucket(peer).await.unwrap();
    let op = storage.operator().unwrap();
    let gaps = storage_conformance::KnownGaps {
        ignores_conditional_create: peer == Peer::GcsEmulator,
    };
    storage_conformance::run(&op, "conformance", MULTIPART_PART_SIZE + 1, gaps)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", store.name(), store.log_text()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_storage_conformance_suite() {
    conformance(Peer::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azblob_passes_the_storage_conformance_suite() {
    conformance(Peer::Azurite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_passes_the_storage_conformance_suite() {
    conformance(Peer::GcsEmulator).await;
}

/// Two backups (the second incremental), a verification, a restore of each into a new
/// repository compared ref by ref with the source, and a drill: all on `peer`'s storage.
async fn back_up_verify_restore_and_drill(peer: Peer) {
    let (store, storage) = ObjectStore::with_bucket(peer).await.unwrap();
    let c = Cluster::start_on(1, storage.clone()).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("org/rich", &daemon.url("rich.git"))
        .await
        .unwrap();

    let first = c.backup_ok("org/rich").await.unwrap();
    let before = refs(&rich).unwrap();
    evolve(src.path(), "rich.git").unwrap();
    let second = c.backup_ok("org/rich").await.unwrap();
    assert_eq!(second.parent_snapshot_id, first.snapshot_id);
    for b in [&first, &second] {
        let v = b.verification.as_ref().expect("verified after the backup");
        assert_eq!(v.status, VerifyStatus::Verified, "{}: {v:#?}", store.name());
    }

    // The snapshot repository is in the bucket, under the organisation's and repository's ids.
    let op = storage.operator().unwrap();
    let snapshot_files = op
        .list_with(&format!("{}/{}/snapshots/", first.org_id, first.repo_id))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.metadata().is_file())
        .count();
    assert_eq!(snapshot_files, 2, "two backups, two snapshot files");

    // `backup verify` reads back every pack the snapshot references.
    let verify = cli(&c, &["backup", "verify", first.id.as_str()], &[]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    for (backup, expected, name) in [
        (&first, without_merge_refs(before.clone()), "first.git"),
        (
            &second,
            without_merge_refs(refs(&rich).unwrap()),
            "second.git",
        ),
    ] {
        let restored = restore_to_new(&c, &daemon, backup.id.as_str(), name).await;
        assert_eq!(refs(&restored).unwrap(), expected);
    }

    let drill = cli(&c, &["drill", "run", "org", "--repo", "rich"], &[]);
    assert_eq!(
        drill.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&drill.stdout),
        String::from_utf8_lossy(&drill.stderr)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_on_s3_verify_restore_and_drill() {
    back_up_verify_restore_and_drill(Peer::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_on_azblob_verify_restore_and_drill() {
    back_up_verify_restore_and_drill(Peer::Azurite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_on_gcs_verify_restore_and_drill() {
    back_up_verify_restore_and_drill(Peer::GcsEmulator).await;
}

pub(super) fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An MSP keeps one client's backups in that client's bucket: `storage add` proves the
/// credential before storing it, `org set --storage` points the organisation there, and its
/// backups, verification and restores run on that bucket while the default storage holds none
/// of them. No secret appears in any output.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_organisation_backs_up_to_its_own_storage_location() {
    let (store, _) = ObjectStore::with_bucket(Peer::Moto).await.unwrap();
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let secret = "client-a-very-secret-key";
    let env = [("CLIENT_A_KEY", "AKIACLIENTA"), ("CLIENT_A_SECRET", secret)];
    let add = |bucket: &str| {
        cli(
            &c,
            &[
                "storage",
                "add",
                "client-a",
                "--kind",
                "s3",
                "--bucket",
                bucket,
                "--region",
                "us-east-1",
                "--endpoint",
                &store.endpoint(),
                "--prefix",
                "repovault",
                "--access-key-env",
                "CLIENT_A_KEY",
                "--secret-key-env",
                "CLIENT_A_SECRET",
            ],
            &env,
        )
    };
    // A bucket that does not exist: refused, saying which step failed.
    let missing = add("no-such-bucket");
    assert_ne!(missing.status.code(), Some(0), "{}", out(&missing));
    assert!(out(&missing).contains("create"), "{}", out(&missing));
    let added = add("repovault");
    assert_eq!(added.status.code(), Some(0), "{}", out(&added));
    assert!(
        out(&added).contains("writer credential: usable"),
        "{}",
        out(&added)
    );

    let list = cli(&c, &["--output", "json", "storage", "list"], &[]);
    let locations: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = locations
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "client-a"], "{locations:#}");
    assert_eq!(
        locations[1]["writer_secrets"],
        serde_json::json!(["access_key_id", "secret_access_key"])
    );

    c.add_git_repo("acme/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    let set = cli(&c, &["org", "set", "acme", "--storage", "client-a"], &[]);
    assert_eq!(set.status.code(), Some(0), "{}", out(&set));
    let b = c.backup_ok("acme/rich").await.unwrap();
    assert_eq!(
        b.verification.as_ref().unwrap().status,
        VerifyStatus::Verified
    );

    // The snapshots are in the client's bucket under its prefix, and nowhere in the default.
    let client = store.storage("repovault").operator().unwrap();
    let config = client
        .exists(&format!("repovault/{}/{}/config", b.org_id, b.repo_id))
        .await
        .unwrap();
    assert!(config, "the snapshot repository is in the client's bucket");
    assert!(!c.storage_root().join(b.org_id.as_str()).exists());

    let verify = cli(&c, &["backup", "verify", b.id.as_str()], &[]);
    assert_eq!(verify.status.code(), Some(0), "{}", out(&verify));
    let restored = restore_to_new(&c, &daemon, b.id.as_str(), "back.git").await;
    assert_eq!(
        refs(&restored).unwrap(),
        without_merge_refs(refs(&rich).unwrap())
    );

    // Once it has backups, the organisation's location stays.
    let moved = cli(&c, &["org", "set", "acme", "--storage", "default"], &[]);
    assert_ne!(moved.status.code(), Some(0));
    assert!(
        out(&moved).contains("already has backups"),
        "{}",
        out(&moved)
    );

    let check = cli(&c, &["storage", "check", "client-a"], &[]);
    assert_eq!(check.status.code(), Some(0), "{}", out(&check));

    // Tiering: S3 moves nothing to Standard-IA before 30 days; the policy moves this
    // organisation's packs (under the location's prefix) and nothing else.
    let early = cli(&c, &["org", "set", "acme", "--tier-after-days", "10"], &[]);
    assert_eq!(early.status.code(), Some(2), "{}", out(&early));
    assert!(
        out(&early).contains("after 30 days at the earliest"),
        "{}",
        out(&early)
    );
    let tier = cli(&c, &["org", "set", "acme", "--tier-after-days", "45"], &[]);
    assert_eq!(tier.status.code(), Some(0), "{}", out(&tier));
    let lifecycle = cli(&c, &["storage", "lifecycle", "acme"], &[]);
    assert_eq!(lifecycle.status.code(), Some(0), "{}", out(&lifecycle));
    let policy: serde_json::Value = serde_json::from_slice(&lifecycle.stdout).unwrap();
    assert_eq!(
        policy["Rules"][0]["Filter"]["Prefix"],
        format!("repovault/{}/{}/data/", b.org_id, b.repo_id),
        "{policy:#}"
    );
    assert_eq!(
        policy["Rules"][0]["Transitions"][0]["Days"], 45,
        "{policy:#}"
    );
    assert_eq!(policy["Rules"].as_array().map(Vec::len), Some(1));
    let audit = cli(&c, &["--output", "json", "audit", "list"], &[]);
    for o in [&missing, &added, &list, &set, &verify, &check, &audit] {
        assert!(
            !out(o).contains(secret),
            "a secret in the output: {}",
            out(o)
        );
    }
    c.shutdown().await;
}

/// A ZIP download from Azure Blob (Azurite) is linked by a SAS repovault signs itself for the
/// lifetime asked: the link fetches the ZIP with curl straight from the container, and Azurite
/// refuses the same link altered or expired. On S3 (moto) the link is a presigned URL that
/// fetches the same way (moto does not check presigned signatures unless IAM is enforced, so
/// only the fetch is shown there).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn download_links_are_signed_by_the_storage() {
    for peer in [Peer::Azurite, Peer::Moto] {
        let (store, storage) = ObjectStore::with_bucket(peer).await.unwrap();
        let c = Cluster::start_on(1, storage).await.unwrap();
        let src = tempfile::tempdir().unwrap();
        rich_repo(src.path(), "rich.git").unwrap();
        let daemon = GitDaemon::start(src.path()).unwrap();
        c.add_git_repo("org/rich", &daemon.url("rich.git"))
            .await
            .unwrap();
        let b = c.backup_ok("org/rich").await.unwrap();
        let r = c
            .core()
            .restores
            .start_restore(
                &b.id,
                RestoreType::DownloadZip,
                RestoreTarget::Download,
                "",
                None,
            )
            .await
            .unwrap();
        let r = c.wait_restore(&r.id, WAIT).await.unwrap();
        assert_eq!(r.status, Status::Completed, "{:?}", r.error);
        let now = chrono::Utc::now().timestamp_millis();
        let (_, link) = c
            .core()
            .downloads
            .mint_download_link(&r.id, now + 3_600_000)
            .await
            .unwrap();
        assert!(
            link.url.starts_with(&store.endpoint()),
            "{}: the link points into the storage: {}",
            store.name(),
            link.url
        );
        let work = tempfile::tempdir().unwrap();
        let zip = work.path().join("d.zip");
        let (code, body) = curl(&link.url, &zip);
        assert_eq!(code, 200, "{}: {body}", store.name());
        assert_eq!(
            std::fs::metadata(&zip).unwrap().len(),
            r.artifact_bytes,
            "{}: the whole ZIP",
            store.name()
        );
        if peer == Peer::Azurite {
            assert!(link.url.contains("&sr=b&sp=r&"), "{}", link.url);
            let altered = link.url.replace("sp=r", "sp=rw");
            assert_eq!(curl(&altered, &zip).0, 403, "an altered SAS");
            let (_, expired) = c
                .core()
                .downloads
                .mint_download_link(&r.id, now - 60_000)
                .await
                .unwrap();
            assert_eq!(curl(&expired.url, &zip).0, 403, "an expired SAS");
        } else {
            assert!(link.url.contains("X-Amz-Signature="), "{}", link.url);
        }
        c.shutdown().await;
    }
}

/// The storage goes away in the middle of a backup (after the backup opened its snapshot
/// repository, while it fetches): the backup fails with an error naming the storage, and leaves
/// no snapshot that could pass for a backup. When the storage is back, the next backup succeeds
/// and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_outage_mid_backup_fails_it_cleanly_and_the_next_one_succeeds() {
    let mut store = ObjectStore::start_persistent_azurite().await.unwrap();
    store.create_bucket("repovault").await.unwrap();
    let storage = store.storage("repovault");
    let c = Cluster::start_on(1, storage.clone()).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let gate = repovault_tests::gate::GatedProxy::start(daemon.port()).unwrap();
    c.add_git_repo("org/rich", &gate.git_url("rich.git"))
        .await
        .unwrap();

    // The backup waits in its fetch behind the closed gate; then the storage stops.
    let b = c.core().backups.run_backup("org/rich").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while gate.connections() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fetch never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.stop();
    gate.open();
    let failed = c.wait_backup(&b.id, WAIT).await.unwrap();
    assert_eq!(failed.status, Status::Failed, "{failed:#?}");
    let error = failed.error.clone().unwrap_or_default();
    assert!(
        error.contains("storage"),
        "the error names the storage: {error}"
    );
    assert!(failed.snapshot_id.is_none(), "{failed:#?}");

    store.restart().await.unwrap();
    let op = storage.operator().unwrap();
    let snapshots = op
        .list_with(&format!("{}/{}/snapshots/", failed.org_id, failed.repo_id))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.metadata().is_file())
        .count();
    assert_eq!(snapshots, 0, "the failed backup wrote no snapshot");

    let next = c.backup_ok("org/rich").await.unwrap();
    assert_eq!(
        next.verification.as_ref().unwrap().status,
        VerifyStatus::Verified
    );
    c.shutdown().await;
}

/// Least privilege on Azure Blob (Azurite checks SAS permissions): the workers get a writer SAS
/// without delete (`rcwl`: `w` because block uploads and the ledger's rewrite need it, measured
/// against Azurite), the coordinator keeps the account key. Backups, verification, a restore, a
/// drill and a ZIP download all work with the writer's SAS; a delete through it is refused; and
/// a damaged pack a verification finds is still taken out of the index and moved aside (the
/// worker may not delete it, so the coordinator does, with the maintainer's key), after which
/// backups run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_with_a_writer_sas_that_cannot_delete_do_every_task() {
    use repovault_common::storage::azure_sas::{SasScope, service_sas};
    use repovault_tests::object_stores::{AZURITE_ACCOUNT, AZURITE_KEY};

    let (store, admin_storage) = ObjectStore::with_bucket(Peer::Azurite).await.unwrap();
    let c = Cluster::start(1).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let sas = service_sas(
        AZURITE_ACCOUNT,
        AZURITE_KEY,
        "repovault",
        SasScope::Container,
        "rcwl",
        now - 900,
        now + 86_400,
    )
    .unwrap();
    let env = [("WRITER_SAS", sas.as_str()), ("ACCOUNT_KEY", AZURITE_KEY)];
    let endpoint = store.endpoint();
    let added = cli(
        &c,
        &[
            "storage",
            "add",
            "client-z",
            "--kind",
            "azblob",
            "--container",
            "repovault",
            "--endpoint",
            &endpoint,
            "--account-name",
            AZURITE_ACCOUNT,
            "--secret-env",
            "sas_token=WRITER_SAS",
            "--maintainer-secret-env",
            "account_key=ACCOUNT_KEY",
        ],
        &env,
    );
    let text = out(&added);
    assert_eq!(added.status.code(), Some(0), "{text}");
    assert!(
        text.contains("delete    refused, as it should be"),
        "{text}"
    );
    assert!(text.contains("maintainer credential: usable"), "{text}");

    let (_source, first, second) = backed_up_twice_and_restored(&c, "client-z").await;
    let zip = c
        .core()
        .restores
        .start_restore(
            &second.id,
            RestoreType::DownloadZip,
            RestoreTarget::Download,
            "",
            None,
        )
        .await
        .unwrap();
    let zip = c.wait_restore(&zip.id, WAIT).await.unwrap();
    assert_eq!(zip.status, Status::Completed, "{:?}", zip.error);
    let drill = cli(&c, &["drill", "run", "acme", "--repo", "rich"], &[]);
    assert_eq!(drill.status.code(), Some(0), "{}", out(&drill));

    // The writer's SAS cannot delete what it wrote.
    let repo_dir = format!("{}/{}", first.org_id, first.repo_id);
    let mut writer = admin_storage.public_part();
    writer.options.insert("sas_token".into(), sas.clone());
    let writer = writer.operator().unwrap();
    let snapshot = format!(
        "{repo_dir}/snapshots/{}",
        first.snapshot_id.as_ref().unwrap()
    );
    let refused = writer
        .delete(&snapshot)
        .await
        .expect_err("a writer may not delete");
    assert_eq!(
        refused.kind(),
        opendal::ErrorKind::PermissionDenied,
        "{refused}"
    );
    let admin = admin_storage.operator().unwrap();
    assert!(admin.exists(&snapshot).await.unwrap());

    // A pack damaged behind repovault's back: the verification fails, and the pack leaves the
    // index and moves aside although the worker's credential cannot delete it.
    let pack = admin
        .list_with(&format!("{repo_dir}/data/"))
        .recursive(true)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.metadata().is_file())
        .expect("a pack")
        .path()
        .to_string();
    let mut bytes = admin.read(&pack).await.unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    admin.write(&pack, bytes).await.unwrap();
    let verify = cli(&c, &["backup", "verify", second.id.as_str()], &[]);
    assert_eq!(verify.status.code(), Some(5), "{}", out(&verify));
    let pack_id = pack.rsplit('/').next().unwrap();
    assert!(
        !admin.exists(&pack).await.unwrap(),
        "the damaged pack left data/"
    );
    assert!(
        admin
            .exists(&format!("{repo_dir}/damaged/data-{pack_id}"))
            .await
            .unwrap(),
        "the damaged pack is kept aside"
    );
    // The next backup is refused no more: the damaged pack is out.
    let next = c
        .core()
        .backups
        .run_backup_of_type("acme/rich", repovault_common::domain::BackupType::Full)
        .await
        .unwrap();
    let next = c.wait_backup(&next.id, WAIT).await.unwrap();
    assert_eq!(next.status, Status::Completed, "{:?}", next.error);
    // Whole: rustic_core would reuse a tree of the parent's that went with the damaged pack
    // (BackupJob::parent_whole keeps it from naming such a parent).
    assert_eq!(
        next.verification.as_ref().map(|v| v.status),
        Some(VerifyStatus::Verified),
        "{:#?}",
        next.verification
    );
    c.shutdown().await;
}

/// `storage move`: an organisation's backups go from the default storage (fs) to a client's
/// bucket (moto), every object read back there before the organisation switches and the old
/// copy goes; its old backups restore from the new place and new ones are made there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_move_takes_every_backup_to_the_new_location() {
    let (store, bucket) = ObjectStore::with_bucket(Peer::Moto).await.unwrap();
    let c = Cluster::start(1).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("acme/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    let before = refs(&rich).unwrap();
    let first = c.backup_ok("acme/rich").await.unwrap();
    evolve(src.path(), "rich.git").unwrap();
    let second = c.backup_ok("acme/rich").await.unwrap();
    let old_dir = c
        .storage_root()
        .join(first.org_id.as_str())
        .join(first.repo_id.as_str());
    assert!(old_dir.join("config").exists());

    let add = add_moto_location(&c, "client", "repovault", &store);
    assert_eq!(add.status.code(), Some(0), "{}", out(&add));

    // A copy at the destination left by an earlier, broken attempt: same size, other bytes.
    // The move reads it back, refuses, names it, and leaves the organisation where it was.
    let op = bucket.operator().unwrap();
    let pack = walk_files(&old_dir.join("data"))[0].clone();
    let rel = pack
        .strip_prefix(c.storage_root())
        .unwrap()
        .display()
        .to_string();
    let len = std::fs::metadata(&pack).unwrap().len() as usize;
    op.write(&rel, vec![0u8; len]).await.unwrap();
    let refused = cli(&c, &["storage", "move", "acme", "--to", "client"], &[]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        out(&refused).contains("reads back with SHA-256"),
        "{}",
        out(&refused)
    );
    assert!(old_dir.join("config").exists(), "nothing was deleted");
    let org = cli(&c, &["--output", "json", "org", "show", "acme"], &[]);
    assert!(
        out(&org).contains("\"storage\": \"default\""),
        "{}",
        out(&org)
    );
    op.delete(&rel).await.unwrap();

    let moved = cli(&c, &["storage", "move", "acme", "--to", "client"], &[]);
    let text = out(&moved);
    assert_eq!(moved.status.code(), Some(0), "{text}");
    assert!(
        text.contains("moved from default to client: 1 repositories"),
        "{text}"
    );
    assert!(!old_dir.exists(), "the old copy is deleted");
    assert!(
        op.exists(&format!("{}/{}/config", first.org_id, first.repo_id))
            .await
            .unwrap()
    );
    // Moving again where it is moves nothing.
    let again = cli(&c, &["storage", "move", "acme", "--to", "client"], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", out(&again));

    // The first backup restores from the new place; a new backup is made there and verifies.
    let restored = restore_to_new(&c, &daemon, first.id.as_str(), "old.git").await;
    assert_eq!(refs(&restored).unwrap(), without_merge_refs(before));
    let verify = cli(&c, &["backup", "verify", second.id.as_str()], &[]);
    assert_eq!(verify.status.code(), Some(0), "{}", out(&verify));
    let third = c.backup_ok("acme/rich").await.unwrap();
    assert_eq!(third.parent_snapshot_id, second.snapshot_id);
    assert!(
        op.exists(&format!(
            "{}/{}/snapshots/{}",
            third.org_id,
            third.repo_id,
            third.snapshot_id.as_ref().unwrap()
        ))
        .await
        .unwrap()
    );
    c.shutdown().await;
}

/// Every file under `dir`, recursively, sorted.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// 3-2-1: an organisation keeps its backups on Azure Blob (Azurite) and a second copy on S3
/// (moto). Each completed backup is copied and read back there, `backup show` says so, stock
/// restic opens the copy on its own (a copy of its files in a directory), and when the primary
/// is lost a restore `--from-copy` brings the repository back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_copy_restores_when_the_primary_is_lost() {
    let (azurite, primary) = ObjectStore::with_bucket(Peer::Azurite).await.unwrap();
    let (moto, copy) = ObjectStore::with_bucket(Peer::Moto).await.unwrap();
    let c = Cluster::start_on(1, primary.clone()).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("acme/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    let add = add_moto_location(&c, "offsite", "repovault", &moto);
    assert_eq!(add.status.code(), Some(0), "{}", out(&add));
    let set = cli(&c, &["org", "set", "acme", "--copy-to", "offsite"], &[]);
    assert_eq!(set.status.code(), Some(0), "{}", out(&set));
    assert!(out(&set).contains("second copy offsite"), "{}", out(&set));

    let first = c.backup_ok("acme/rich").await.unwrap();
    evolve(src.path(), "rich.git").unwrap();
    let second = c.backup_ok("acme/rich").await.unwrap();
    // Before the copy pass: health says the copy is pending, and a drill from the copy is
    // refused rather than failed.
    let health_copy = |c: &Cluster| {
        let h = cli(c, &["--output", "json", "health", "acme"], &[]);
        assert_eq!(h.status.code(), Some(0), "{}", out(&h));
        let doc: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
        doc["repos"][0]["copy"].clone()
    };
    assert_eq!(health_copy(&c), "pending at offsite");
    let early = cli(
        &c,
        &["drill", "run", "acme", "--repo", "acme/rich", "--from-copy"],
        &[],
    );
    assert_ne!(early.status.code(), Some(0), "{}", out(&early));
    assert!(
        out(&early).contains("no copy at offsite yet"),
        "{}",
        out(&early)
    );
    let done = c.core().second_copy.run_copies_once().await.unwrap();
    assert_eq!(done, 2, "both backups copied");
    let show = cli(&c, &["backup", "show", second.id.as_str()], &[]);
    assert!(out(&show).contains("done at offsite"), "{}", out(&show));
    // A pass with nothing new copies nothing.
    assert_eq!(c.core().second_copy.run_copies_once().await.unwrap(), 0);
    // The timeline and health show each backup's copy.
    assert_eq!(health_copy(&c), "done at offsite");
    let timeline = cli(&c, &["--output", "json", "timeline", "acme/rich"], &[]);
    let entries: serde_json::Value = serde_json::from_slice(&timeline.stdout).unwrap();
    let copies: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "backup")
        .map(|e| &e["copy"])
        .collect();
    assert_eq!(
        copies,
        ["done at offsite", "done at offsite"],
        "{entries:#}"
    );

    // Stock restic opens the copy: its files, fetched into a directory, with the org's key.
    let dir = format!("{}/{}/", first.org_id, first.repo_id);
    let copy_op = copy.operator().unwrap();
    let local = tempfile::tempdir().unwrap();
    for e in copy_op.list_with(&dir).recursive(true).await.unwrap() {
        if e.metadata().is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(&dir).unwrap();
        let to = local.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, copy_op.read(e.path()).await.unwrap().to_vec()).unwrap();
    }
    let key = local.path().join("org.key");
    let export = cli(
        &c,
        &[
            "org",
            "key",
            "export",
            "acme",
            "--to",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(export.status.code(), Some(0), "{}", out(&export));
    let listed =
        repovault_tests::cluster::restic(local.path(), &key, &["snapshots", "--json"]).unwrap();
    for b in [&first, &second] {
        let id = b.snapshot_id.as_ref().unwrap().to_string();
        assert!(listed.contains(&id), "{id} in {listed}");
    }

    // The primary is lost: every object in the Azure container goes.
    let primary_op = primary.operator().unwrap();
    primary_op.delete_with(&dir).recursive(true).await.unwrap();
    drop(azurite);
    fixtures::git(
        src.path(),
        &["init", "-q", "--bare", "-b", "main", "back.git"],
    )
    .unwrap();
    let mut req = repovault_coordinator::coordinator::RestoreRequest::new(
        second.id.clone(),
        repovault_common::domain::RestoreCombination::new(
            RestoreType::FullRepo,
            RestoreTarget::New,
        )
        .unwrap(),
    );
    req.url = daemon.url("back.git");
    req.from_copy = true;
    let r = c.core().restores.start_restore_request(req).await.unwrap();
    let r = c.wait_restore(&r.id, WAIT).await.unwrap();
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    assert_eq!(
        refs(&src.path().join("back.git")).unwrap(),
        without_merge_refs(refs(&rich).unwrap())
    );
    // A drill from the copy passes with the primary gone.
    let drill = cli(
        &c,
        &["drill", "run", "acme", "--repo", "acme/rich", "--from-copy"],
        &[],
    );
    assert_eq!(drill.status.code(), Some(0), "{}", out(&drill));
    let drills = cli(&c, &["--output", "json", "drill", "list", "acme"], &[]);
    let list: serde_json::Value = serde_json::from_slice(&drills.stdout).unwrap();
    assert_eq!(list[0]["from_copy"], true, "{list:#}");
    assert_eq!(list[0]["status"], "passed", "{list:#}");
    c.shutdown().await;
}

/// A source's refs as a restore brings them back: pull requests' `merge` refs are GitHub's to
/// make, not a repository's, and are not restored.
pub(super) fn without_merge_refs(
    refs: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    refs.into_iter()
        .filter(|(k, _)| !k.ends_with("/merge"))
        .collect()
}

/// `acme/rich` on storage location `location`: backed up twice (the second incremental, after a
/// change), each backup verified, verified again on demand, and the second restored into a new
/// repository equal to the source ref for ref. Returns the source (its daemon and directory,
/// kept alive) and the two backups.
pub(super) async fn backed_up_twice_and_restored(
    c: &Cluster,
    location: &str,
) -> ((GitDaemon, tempfile::TempDir), BackupRecord, BackupRecord) {
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("acme/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    let set = cli(c, &["org", "set", "acme", "--storage", location], &[]);
    assert_eq!(set.status.code(), Some(0), "{}", out(&set));
    let first = c.backup_ok("acme/rich").await.unwrap();
    evolve(src.path(), "rich.git").unwrap();
    let second = c.backup_ok("acme/rich").await.unwrap();
    assert_eq!(second.parent_snapshot_id, first.snapshot_id);
    for b in [&first, &second] {
        let v = b.verification.as_ref().expect("verified after the backup");
        assert_eq!(v.status, VerifyStatus::Verified, "{v:#?}");
    }
    let verify = cli(c, &["backup", "verify", second.id.as_str()], &[]);
    assert_eq!(verify.status.code(), Some(0), "{}", out(&verify));
    let restored = restore_to_new(c, &daemon, second.id.as_str(), "back.git").await;
    assert_eq!(
        refs(&restored).unwrap(),
        without_merge_refs(refs(&rich).unwrap())
    );
    ((daemon, src), first, second)
}

/// `storage add NAME` of moto's `bucket` through the CLI, its keys from variables.
pub(super) fn add_moto_location(
    c: &Cluster,
    name: &str,
    bucket: &str,
    moto: &ObjectStore,
) -> std::process::Output {
    let endpoint = moto.endpoint();
    cli(
        c,
        &[
            "storage",
            "add",
            name,
            "--kind",
            "s3",
            "--bucket",
            bucket,
            "--region",
            "us-east-1",
            "--endpoint",
            &endpoint,
            "--access-key-env",
            "K",
            "--secret-key-env",
            "S",
        ],
        &[("K", "AKIAREPOVAULT"), ("S", "repovault-location-secret")],
    )
}
