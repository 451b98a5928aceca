//! The state store on a real etcd: the key-value conformance suite every backend passes, keys
//! kept inside their namespace, and a coordinator that backs up, restarts and restores with
//! all of its state in etcd.

use std::sync::Arc;
use std::time::Duration;

use repovault_coordinator::config::CoordinatorConfig;
use repovault_coordinator::kv::{EtcdKv, GroupCommitKv, KvBackend, kv_conformance};
use repovault_coordinator::model::{Status, VerifyStatus};
use repovault_tests::cluster::Cluster;
use repovault_tests::etcd_peer::{EtcdPeer, EtcdPeerOptions};
use repovault_tests::fixtures::{refs, rich_repo};
use repovault_tests::gitserver::GitDaemon;
use repovault_tests::pki::make_pki;

use super::backup_restore::restore_to_new;
use super::object_storage::without_merge_refs;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_passes_the_kv_conformance_suite_inside_its_namespace() {
    let etcd = EtcdPeer::start().await.unwrap();
    let kv = etcd.kv("repovault-a/").await.unwrap();
    // A neighbour's key under another namespace: the suite clears its own namespaces, and no
    // delete or range may reach outside.
    let neighbour = etcd.kv("repovault-b/").await.unwrap();
    neighbour.put(b"conformance/x", b"keep").await.unwrap();
    kv_conformance::run_all(kv.clone()).await;
    // Rerunnable against the same (persistent) store, and the same through the group
    // committer the typed store writes through, also with every key's reads cached.
    kv_conformance::run_all(Arc::new(GroupCommitKv::new(kv.clone()))).await;
    kv_conformance::run_all(Arc::new(GroupCommitKv::with_read_cache(
        kv.clone(),
        vec![Vec::new()],
    )))
    .await;
    assert_eq!(
        neighbour
            .get(b"conformance/x")
            .await
            .unwrap()
            .map(|k| k.value),
        Some(b"keep".to_vec())
    );
    assert_eq!(kv.get(b"conformance/x").await.unwrap(), None);
    assert!(kv.delete_prefix(b"").await.unwrap() > 0);
    assert!(
        neighbour.get(b"conformance/x").await.unwrap().is_some(),
        "clearing one namespace leaves the other"
    );
}

/// `[store] kind = "etcd"` from a configuration file opens the etcd store; without endpoints,
/// or with none answering, start-up is refused naming what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_configuration_opens_an_etcd_store_or_says_why_not() {
    let etcd = EtcdPeer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coordinator.toml");
    let config = |store: &str| -> CoordinatorConfig {
        std::fs::write(
            &file,
            format!(
                "data_dir = {:?}\n[store]\n{store}\n",
                dir.path().join("data")
            ),
        )
        .unwrap();
        CoordinatorConfig::load(&file).unwrap()
    };
    let settings = config(&format!(
        "kind = \"etcd\"\nendpoints = [\"{}\"]\nnamespace = \"cfg/\"",
        etcd.endpoint()
    ))
    .resolve()
    .await
    .unwrap();
    assert_eq!(settings.kv.name(), "etcd");
    settings.kv.put(b"k", b"v").await.unwrap();
    let direct = etcd.kv("cfg/").await.unwrap();
    assert_eq!(
        direct.get(b"k").await.unwrap().map(|k| k.value),
        Some(b"v".to_vec())
    );

    let missing = config("kind = \"etcd\"").resolve().await.unwrap_err();
    assert!(
        missing.to_string().contains("REPOVAULT_STORE_ENDPOINTS"),
        "{missing}"
    );
    // A port nothing listens on: bound, then released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = free.local_addr().unwrap().to_string();
    drop(free);
    let unreachable = config(&format!("kind = \"etcd\"\nendpoints = [\"{dead}\"]"))
        .resolve()
        .await
        .unwrap_err();
    assert!(
        unreachable.to_string().contains(&dead),
        "names the endpoint: {unreachable}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_on_etcd_backs_up_restarts_and_restores() {
    let etcd = EtcdPeer::start().await.unwrap();
    let kv = etcd.kv("repovault/").await.unwrap();
    let mut c = Cluster::start_on_store(1, kv.clone()).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    let rich = rich_repo(src.path(), "rich.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    c.add_git_repo("acme/rich", &daemon.url("rich.git"))
        .await
        .unwrap();
    let b = c.backup_ok("acme/rich").await.unwrap();
    assert_eq!(
        b.verification.as_ref().map(|v| v.status),
        Some(VerifyStatus::Verified)
    );
    // The records are etcd's: the repository's key is there, under the namespace.
    let repos = kv
        .range(repovault_coordinator::kv::KeyRange::prefix("repo/"), None)
        .await
        .unwrap();
    assert_eq!(repos.len(), 1, "{repos:?}");

    // A restarted coordinator reads everything back from etcd.
    c.restart_coordinator().await.unwrap();
    let again = c.core().registry.get_backup(&b.id).await.unwrap();
    assert_eq!(again.status, Status::Completed);
    let restored = restore_to_new(&c, &daemon, b.id.as_str(), "back.git").await;
    assert_eq!(
        refs(&restored).unwrap(),
        without_merge_refs(refs(&rich).unwrap())
    );
    let second = tokio::time::timeout(Duration::from_secs(120), c.backup_ok("acme/rich"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.parent_snapshot_id, b.snapshot_id);
    c.shutdown().await;
}

/// etcd over TLS with its user authentication on: the store connects with the CA and a
/// password (read from `password_file`, as the configuration gives it), passes the suite, and
/// renews its token when etcd lets it lapse; a wrong password, or plaintext towards TLS, is
/// refused at connection, naming what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_over_tls_with_authentication() {
    let pki = tempfile::tempdir().unwrap();
    let (files, ca) = make_pki(pki.path());
    let etcd = EtcdPeer::start_with(EtcdPeerOptions {
        tls: Some((files, ca.clone())),
        auth_token_ttl_secs: Some(2),
    })
    .await
    .unwrap();
    etcd.enable_auth("etcd-root-secret").unwrap();

    let kv = EtcdKv::connect_with(
        &etcd
            .options("secured/", Some(("root", "etcd-root-secret")))
            .unwrap(),
    )
    .await
    .unwrap();
    let kv: Arc<dyn KvBackend> = Arc::new(kv);
    kv_conformance::run_all(kv.clone()).await;
    // Past the token's lifetime unused: the next call gets a new token and succeeds.
    kv.put(b"k", b"before").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        kv.get(b"k").await.unwrap().map(|k| k.value),
        Some(b"before".to_vec())
    );

    let wrong = EtcdKv::connect_with(&etcd.options("secured/", Some(("root", "guess"))).unwrap())
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(
        wrong.to_string().contains("authentication failed"),
        "{wrong}"
    );
    assert!(
        !wrong.to_string().contains("guess"),
        "no password in {wrong}"
    );
    let anonymous = EtcdKv::connect_with(&etcd.options("secured/", None).unwrap())
        .await
        .err()
        .expect("no user is refused");
    assert!(anonymous.to_string().contains("user name"), "{anonymous}");
    let plaintext = EtcdKv::connect(&[format!("http://{}", etcd.endpoint())], "secured/")
        .await
        .err()
        .expect("plaintext towards TLS is refused");
    assert!(
        plaintext.to_string().contains(&etcd.endpoint()),
        "{plaintext}"
    );

    // From a configuration file: the password from its file, the CA from its.
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("etcd.password");
    std::fs::write(&password, "etcd-root-secret\n").unwrap();
    let file = dir.path().join("coordinator.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\n[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nusername = \"root\"\npassword_file = {:?}\nca_file = {:?}\n",
            dir.path().join("data"),
            etcd.endpoint(),
            password,
            ca
        ),
    )
    .unwrap();
    let settings = CoordinatorConfig::load(&file)
        .unwrap()
        .resolve()
        .await
        .unwrap();
    assert_eq!(settings.kv.name(), "etcd");
    settings.kv.put(b"from-config", b"1").await.unwrap();
}
