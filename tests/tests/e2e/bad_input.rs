//! Bad input ends in a clear error, and other tasks go on.

use std::time::Duration;

use repovault_common::secret::Secret;
use repovault_coordinator::error::CoreError;
use repovault_coordinator::model::Status;
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures::{empty_repo, refs, rich_repo};
use repovault_tests::gitserver::{GitDaemon, GitHttp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_clearly_and_other_tasks_go_on() {
    let c = Cluster::start(2).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    rich_repo(src.path(), "ok.git").unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let http = GitHttp::start(src.path(), Some("right-token-123")).unwrap();
    let core = c.core();
    core.registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();

    // Refused at once, naming the problem.
    let e = core
        .registry
        .add_repo("org/a", "not a url", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CoreError::InvalidArgument(_)) && e.to_string().contains("not a url"),
        "{e}"
    );
    let e = core
        .registry
        .add_repo(
            "org/a",
            "https://x-access-token:ghp_SECRET@github.com/o/r",
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("credentials"), "{e}");
    assert!(!e.to_string().contains("ghp_SECRET"));
    let e = core
        .registry
        .add_repo("org/a", "ftp://host/r", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ftp"), "{e}");
    // A credential in the query is refused like user-info, never echoed nor stored.
    for url in [
        "https://host/r.git?token=tok_SECRET",
        "https://host/r.git?ref=main&Access_Token=tok_SECRET",
        "https://host/r.git?private_token=tok_SECRET",
    ] {
        let e = core
            .registry
            .add_repo("org/a", url, None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, CoreError::InvalidArgument(_)) && e.to_string().contains("credential"),
            "{url}: {e}"
        );
        assert!(!e.to_string().contains("tok_SECRET"), "{e}");
    }
    // ssh is not supported (yet), which is what the message says, with what to use instead.
    for url in ["ssh://git@host/x.git", "git@host:x.git"] {
        let e = core
            .registry
            .add_repo("org/a", url, None)
            .await
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("ssh") && m.contains("not supported") && m.contains("https://"),
            "{url}: {m}"
        );
        assert!(!m.contains("carries credentials"), "{url}: {m}");
    }
    assert!(
        core.registry.list_repos(None).await.unwrap().is_empty(),
        "nothing stored"
    );
    let e = core
        .registry
        .add_repo("nope/a", &daemon.url("ok.git"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::NotFound { .. }), "{e}");
    let e = core.backups.run_backup("org/unknown").await.unwrap_err();
    assert!(
        matches!(e, CoreError::NotFound { .. }) && e.to_string().contains("org/unknown"),
        "{e}"
    );
    let e = core
        .registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::AlreadyExists(_)), "{e}");

    // Accepted without contacting the source; fails at backup time, permanently, with a reason.
    core.registry
        .add_repo("org/missing", &daemon.url("does-not-exist.git"), None)
        .await
        .unwrap();
    core.registry
        .add_repo(
            "org/wrong-token",
            &http.url("ok.git"),
            Some(Secret::new("wrong-token-456")),
        )
        .await
        .unwrap();
    core.registry
        .add_repo(
            "org/ok",
            &http.url("ok.git"),
            Some(Secret::new("right-token-123")),
        )
        .await
        .unwrap();
    let missing = core.backups.run_backup("org/missing").await.unwrap();
    let wrong = core.backups.run_backup("org/wrong-token").await.unwrap();
    let ok = core.backups.run_backup("org/ok").await.unwrap();
    let missing = c
        .wait_backup(&missing.id, Duration::from_secs(60))
        .await
        .unwrap();
    let wrong = c
        .wait_backup(&wrong.id, Duration::from_secs(60))
        .await
        .unwrap();
    let ok = c
        .wait_backup(&ok.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(ok.status, Status::Completed, "{:?}", ok.error);
    assert_eq!(missing.status, Status::Failed);
    let err = missing.error.unwrap_or_default();
    assert!(
        err.contains("not found") && err.contains("does-not-exist.git"),
        "{err}"
    );
    assert_eq!(missing.attempt, 1, "a missing repository is not retried");
    assert_eq!(wrong.status, Status::Failed);
    let err = wrong.error.unwrap_or_default();
    assert!(err.contains("authentication"), "{err}");
    assert!(
        !err.contains("wrong-token-456"),
        "the token never appears in errors"
    );
    // A failed backup is in the catalog with its reason, and left no snapshot behind.
    let listed = core
        .registry
        .list_backups(Some("org/missing"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, Status::Failed);
    assert!(listed[0].snapshot_id.is_none());

    // A manual retry after a failure runs again (no collapse onto the failed task)...
    let retry = core.backups.run_backup("org/missing").await.unwrap();
    assert_ne!(retry.id, missing.id);
    // ...while two triggers of a pending backup collapse.
    let again = core.backups.run_backup("org/missing").await.unwrap();
    assert_eq!(again.id, retry.id);

    // Restores of a failed backup and of an unknown one are refused.
    let e = core
        .restores
        .start_restore(
            &missing.id,
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::Download,
            "",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::FailedPrecondition(_)), "{e}");
    let e = core
        .restores
        .start_restore(
            &"r000000000000-nope".parse().unwrap(),
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::Download,
            "",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::NotFound { .. }), "{e}");
    let e = core
        .restores
        .start_restore(
            &ok.id,
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::New,
            "https://u:p@host/x",
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("credentials"), "{e}");
    let e = core
        .restores
        .start_restore(
            &ok.id,
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::New,
            "https://host/x.git?access_token=tok_SECRET",
            None,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("credential") && !e.to_string().contains("tok_SECRET"),
        "{e}"
    );

    // No secret reached storage or the store in plaintext.
    let mut hits = Vec::new();
    for entry in walk(&c.data_dir()) {
        if let Ok(bytes) = std::fs::read(&entry)
            && bytes
                .windows(b"right-token-123".len())
                .any(|w| w == b"right-token-123")
        {
            hits.push(entry);
        }
    }
    assert!(hits.is_empty(), "token in plaintext in {hits:?}");
    c.shutdown().await;
}

/// file:// sources and targets work under an allowed root and nowhere else: not outside it,
/// not through a link out of it, never in the worker's own directories (even under a root);
/// refused before git runs, permanently, naming the path and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_urls_only_under_an_allowed_root_and_never_the_workers_own_directories() {
    let mut c = Cluster::start(0).await.unwrap();
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let rich = rich_repo(allowed.path(), "ok.git").unwrap();
    rich_repo(outside.path(), "other.git").unwrap();
    empty_repo(allowed.path(), "target.git").unwrap();
    empty_repo(outside.path(), "target.git").unwrap();
    // The cluster's directory (store, storage, every worker's cache) is under an allowed root
    // too: still refused.
    c.allow_local_root(allowed.path());
    let own = c.dir.path().to_path_buf();
    c.allow_local_root(&own);
    c.add_worker().await.unwrap();
    let core = c.core().clone();
    core.registry
        .add_org("org", repovault_common::domain::Provider::Git)
        .await
        .unwrap();
    let file = |p: &std::path::Path| format!("file://{}", p.display());

    core.registry
        .add_repo("org/ok", &file(&rich), None)
        .await
        .unwrap();
    let ok = c.backup_ok("org/ok").await.unwrap();

    let failed = |name: &'static str, url: String| {
        let core = core.clone();
        let c = &c;
        async move {
            core.registry.add_repo(name, &url, None).await.unwrap();
            let b = core.backups.run_backup(name).await.unwrap();
            let b = c.wait_backup(&b.id, Duration::from_secs(60)).await.unwrap();
            assert_eq!(b.status, Status::Failed, "{name}: {url}");
            assert_eq!(b.attempt, 1, "{name}: a refusal is permanent");
            b.error.unwrap_or_default()
        }
    };
    let other = outside.path().join("other.git");
    let err = failed("org/outside", file(&other)).await;
    assert!(
        err.contains(&other.display().to_string()) && err.contains("--allow-local-root"),
        "{err}"
    );
    // The worker's cache entry of org/ok, by its path and through a link from an allowed root.
    let cache = c.dir.path().join("cache-0");
    let mirror = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("code.git"))
        .find(|p| p.is_dir())
        .expect("org/ok's mirror in the cache");
    let err = failed("org/steal", file(&mirror)).await;
    assert!(err.contains("own directories"), "{err}");
    let link = allowed.path().join("link.git");
    std::os::unix::fs::symlink(&mirror, &link).unwrap();
    let err = failed("org/linked", file(&link)).await;
    assert!(err.contains("own directories"), "{err}");
    // `..` out of the root (both temporary directories share a parent).
    let dots = format!(
        "file://{}/../{}/other.git",
        allowed.path().display(),
        outside.path().file_name().unwrap().to_string_lossy()
    );
    let err = failed("org/dots", dots).await;
    assert!(err.contains("not under a root"), "{err}");

    // Restores: into an allowed root they push; outside, nothing is pushed.
    let r = core
        .restores
        .start_restore(
            &ok.id,
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::New,
            &file(&allowed.path().join("target.git")),
            None,
        )
        .await
        .unwrap();
    let r = c
        .wait_restore(&r.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Completed, "{:?}", r.error);
    assert!(!refs(&allowed.path().join("target.git")).unwrap().is_empty());
    let target = outside.path().join("target.git");
    let r = core
        .restores
        .start_restore(
            &ok.id,
            repovault_common::domain::RestoreType::FullRepo,
            repovault_common::domain::RestoreTarget::New,
            &file(&target),
            None,
        )
        .await
        .unwrap();
    let r = c
        .wait_restore(&r.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Failed);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains(&target.display().to_string()) && err.contains("--allow-local-root"),
        "{err}"
    );
    assert!(
        refs(&target).unwrap().is_empty(),
        "nothing pushed outside the roots"
    );
    c.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
