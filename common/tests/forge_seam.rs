//! The forge seam: the factory maps each provider to its implementation; plain git's
//! operations without an API say "not supported by plain git" and name themselves; GitHub's,
//! against the forge simulator, answer through the trait, and its refusals are classified by
//! the shared classification (a bad token and a missing repository are permanent).

#![allow(clippy::unwrap_used)]

mod support;
use std::path::Path;
use std::sync::Arc;

use support::{OWNER, endpoint, start};

use repovault_common::domain::Provider;
use repovault_common::forge::{
    AccessScope, Credentials, ExportMode, FailureClass, ForgeEndpoint, ForgeError, MetadataRequest,
    StaticToken, open,
};
use repovault_common::secret::Secret;

fn credentials(token: &str) -> Credentials {
    Credentials {
        tokens: Arc::new(StaticToken(Secret::new(token.to_string()))),
        gate: None,
    }
}

fn assert_unsupported<T: std::fmt::Debug>(result: Result<T, ForgeError>, operation: &str) {
    let err = result.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("not supported by plain git") && shown.contains(operation),
        "{shown}"
    );
    assert_eq!(err.class(), FailureClass::Permanent, "{shown}");
}

#[tokio::test]
async fn plain_git_has_no_api_and_says_so_by_name() {
    let forge = open(
        Provider::Git,
        &ForgeEndpoint::default(),
        credentials("t0ken"),
    )
    .unwrap();
    assert_eq!(forge.provider(), Provider::Git);
    let remote = forge.git_remote("https://git.example/r.git");
    assert_eq!(remote.url, "https://git.example/r.git");
    assert_eq!(remote.token.expose(), "t0ken");

    let tree = Path::new("/nonexistent");
    assert_unsupported(
        forge.list_org_repos("acme").await,
        "listing an organisation's repositories",
    );
    assert_unsupported(
        forge
            .export_metadata("acme", "r", tree, None, ExportMode::Full)
            .await,
        "exporting metadata",
    );
    assert_unsupported(
        forge.target_repo("acme", "r", Some(tree)).await,
        "reading or creating a target repository",
    );
    assert_unsupported(
        forge.set_default_branch("acme", "r", "main").await,
        "setting the default branch",
    );
    let request = MetadataRequest {
        backup_id: "b".parse().expect("backup id"),
        issues: true,
        releases: true,
        settings: true,
        branches_present: Default::default(),
        journal: tree.join("journal.json"),
        access: AccessScope::Direct,
    };
    assert_unsupported(forge.plan_metadata(tree, &request), "restoring metadata");
    assert_unsupported(
        forge.plan_access(tree, "acme", AccessScope::Direct).await,
        "restoring access",
    );
    assert_unsupported(
        forge
            .restore_metadata(tree, "acme", "r", &request, &|_| {})
            .await,
        "restoring metadata",
    );
    assert_unsupported(
        forge.repo_exists("acme", "r").await,
        "asking whether a repository exists",
    );
    assert_unsupported(
        forge
            .create_push_hook("acme", "r", "https://hooks.example/x", &Secret::new("s"))
            .await,
        "push webhooks",
    );
    assert_unsupported(
        forge.delete_push_hook("acme", "r", 1).await,
        "push webhooks",
    );
    // No API to ask: "the forge does not say", which the backup's check handles.
    assert_eq!(forge.commit_count("acme", "r", "abc").await.unwrap(), None);
}

#[tokio::test]
async fn github_answers_through_the_seam_and_its_refusals_are_classified() {
    let sim = start().await;
    let ep = endpoint(&sim);
    let forge = open(Provider::Github, &ep, credentials(OWNER)).unwrap();
    assert_eq!(forge.provider(), Provider::Github);
    let repos = forge.list_org_repos("acme").await.unwrap();
    assert!(repos.iter().any(|r| r.name == "widgets"), "{repos:?}");

    let target = forge.target_repo("acme", "widgets", None).await.unwrap();
    assert!(
        target.clone_url.ends_with("/acme/widgets.git"),
        "{target:?}"
    );
    assert_eq!(
        target.wiki_url.as_deref(),
        Some(target.clone_url.replace(".git", ".wiki.git").as_str())
    );

    let missing = forge.target_repo("acme", "no-such-repo", None).await;
    let err = missing.unwrap_err();
    assert_eq!(
        (err.status(), err.class()),
        (Some(404), FailureClass::Permanent)
    );

    let bad = "ghp_notAToken0000000000000000000000000";
    let refused = open(Provider::Github, &ep, credentials(bad)).unwrap();
    let err = refused.list_org_repos("acme").await.unwrap_err();
    assert_eq!(
        (err.status(), err.class()),
        (Some(401), FailureClass::Permanent)
    );
    assert!(!format!("{err} {err:?}").contains(bad));
}

#[tokio::test]
async fn github_answers_whether_a_repository_exists_and_keeps_push_hooks() {
    let sim = start().await;
    let forge = open(Provider::Github, &endpoint(&sim), credentials(OWNER)).unwrap();
    assert!(forge.repo_exists("acme", "widgets").await.unwrap());
    assert!(!forge.repo_exists("acme", "no-such-repo").await.unwrap());

    let secret = Secret::new("hook-secret");
    let url = "https://hooks.example/webhooks/github?repo=r1";
    let id = forge
        .create_push_hook("acme", "widgets", url, &secret)
        .await
        .unwrap()
        .expect("GitHub answers the hook's id");
    forge.delete_push_hook("acme", "widgets", id).await.unwrap();
    // Already gone: not an error (a retried removal).
    forge.delete_push_hook("acme", "widgets", id).await.unwrap();
    let err = forge
        .create_push_hook("acme", "no-such-repo", url, &secret)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(!format!("{err} {err:?}").contains("hook-secret"));
}
