//! Roles on the admin API: a viewer reads but triggers nothing, an operator triggers backups
//! and restores but exports no key and deletes nothing, an admin does everything; an unknown or
//! missing token is unauthenticated; every change (and every refused one) is in the audit log.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

use repovault_common::secret::Secret;
use repovault_coordinator::admin_roles::{NamedToken, Role};
use repovault_tests::cluster::Cluster;
use repovault_tests::fixtures;
use repovault_tests::gitserver::GitDaemon;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

fn token(name: &str, role: Role) -> NamedToken {
    NamedToken {
        name: name.into(),
        role,
        token: Secret::new(format!("{name}-token-0123456789abcdef")),
    }
}

/// The CLI with `token` in a 0600 file (never an argument).
fn as_caller(c: &Cluster, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--coordinator").arg(c.url());
    if let Some(t) = token {
        let path = c
            .dir
            .path()
            .join(format!("{}.token", &t[..t.find('-').unwrap_or(0)]));
        std::fs::write(&path, t).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        cmd.arg("--admin-token-file").arg(&path);
    }
    cmd.args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_role_does_what_it_may_and_the_audit_log_says_who_did_what() {
    let tokens = vec![
        token("ann", Role::Viewer),
        token("ops", Role::Operator),
        token("root", Role::Admin),
    ];
    let (viewer, operator, admin) = (
        tokens[0].token.expose().to_string(),
        tokens[1].token.expose().to_string(),
        tokens[2].token.expose().to_string(),
    );
    let c = Cluster::start_with_admin_tokens(1, tokens).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    fixtures::big_repo(src.path(), "r.git", 3, 3).unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let url = daemon.url("r.git");

    // No token, or an unknown one: unauthenticated (exit 8), for reads too; a role that does
    // not allow the call: forbidden (exit 9).
    let o = as_caller(&c, None, &["org", "list"]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs an admin token"),
        "{}",
        stderr(&o)
    );
    let o = as_caller(&c, Some("eve-token-0000000000000000"), &["org", "list"]);
    assert_eq!(o.status.code(), Some(8));
    assert!(stderr(&o).contains("not known"), "{}", stderr(&o));

    // The admin sets up; the operator backs up; the viewer only reads.
    let o = as_caller(&c, Some(&admin), &["org", "add", "org"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_caller(
        &c,
        Some(&operator),
        &["repo", "add", "org/r", "--url", &url],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_caller(&c, Some(&viewer), &["backup", "run", "org/r"]);
    assert_eq!(o.status.code(), Some(9));
    assert!(
        stderr(&o).contains("RunBackup needs the operator role"),
        "{}",
        stderr(&o)
    );
    let o = as_caller(&c, Some(&operator), &["backup", "run", "org/r", "--wait"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_caller(&c, Some(&viewer), &["backup", "list", "org/r"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Key export is the admin's alone.
    let key = c.dir.path().join("org.key");
    let key_arg = key.display().to_string();
    let o = as_caller(
        &c,
        Some(&operator),
        &["org", "key", "export", "org", "--to", &key_arg],
    );
    assert_eq!(o.status.code(), Some(9));
    assert!(
        stderr(&o).contains("needs the admin role"),
        "{}",
        stderr(&o)
    );
    assert!(!key.exists(), "nothing written on a refusal");
    let o = as_caller(
        &c,
        Some(&admin),
        &["org", "key", "export", "org", "--to", &key_arg],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // An escrowed backup cannot be deleted, whoever asks: the viewer and the operator lack the
    // role, the admin meets the escrow.
    let o = as_caller(
        &c,
        Some(&viewer),
        &["--output", "json", "backup", "list", "org/r"],
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let backup_id = list[0]["id"].as_str().unwrap().to_string();
    let escrow_key = c.dir.path().join("escrow.key").display().to_string();
    let o = as_caller(
        &c,
        Some(&admin),
        &[
            "escrow",
            "enable",
            "org/r",
            "--agreement",
            "Acme and Agent, ref 7",
            "--key-to",
            &escrow_key,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for t in [&viewer, &operator] {
        let o = as_caller(&c, Some(t), &["backup", "delete", &backup_id]);
        assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("needs the admin role"),
            "{}",
            stderr(&o)
        );
    }
    let o = as_caller(&c, Some(&admin), &["backup", "delete", &backup_id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("escrow"), "{}", stderr(&o));
    let o = as_caller(&c, Some(&viewer), &["--output", "json", "escrow", "list"]);
    let agreements = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        agreements.contains("\"root\""),
        "escrow names who enabled it: {agreements}"
    );

    // The audit log: who did what, refusals included; reads are not logged; no token in it.
    let o = as_caller(&c, Some(&viewer), &["--output", "json", "audit", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["caller"].as_str().unwrap().to_string(),
                e["method"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |caller: &str, method: &str, outcome: &str| {
        seen.iter()
            .any(|(c, m, o)| c == caller && m == method && o.starts_with(outcome))
    };
    assert!(has("root", "AddOrg", "ok"), "{seen:?}");
    assert!(has("ops", "AddRepo", "ok"), "{seen:?}");
    assert!(has("ann", "RunBackup", "refused"), "{seen:?}");
    assert!(has("ops", "RunBackup", "ok"), "{seen:?}");
    assert!(has("ops", "ExportOrgKey", "refused"), "{seen:?}");
    assert!(has("root", "ExportOrgKey", "ok"), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|(_, m, o)| (m == "ListBackups" || m == "ListOrgs") && o == "ok"),
        "reads are not audited: {seen:?}"
    );
    assert!(has("root", "EnableEscrow", "ok"), "{seen:?}");
    assert!(has("root", "DeleteBackup", "failed"), "{seen:?}");
    assert!(has("ops", "DeleteBackup", "refused"), "{seen:?}");
    assert_eq!(
        seen.first().map(|s| s.1.as_str()),
        Some("DeleteBackup"),
        "newest first"
    );
    assert!(!text.contains("-token-"), "no token in the audit log");
    c.shutdown().await;
}

/// Refused calls leave a trace: a wrong admin token and a worker registering with a wrong join
/// token are each in the audit log with the caller's address and the method, never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_tokens_are_audited_with_the_callers_address_and_never_the_token() {
    use repovault_proto::v1 as pb;
    use repovault_proto::v1::worker_service_client::WorkerServiceClient;

    let tokens = vec![token("root", Role::Admin)];
    let admin = tokens[0].token.expose().to_string();
    let c = Cluster::start_with_admin_tokens(0, tokens).await.unwrap();

    // A guessed admin token.
    let guess = "eve-token-guessed-4242424242";
    let o = as_caller(&c, Some(guess), &["org", "list"]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    // A worker with a wrong join token.
    let wrong_join = "wrong-join-token-5151515151";
    let mut w = WorkerServiceClient::connect(c.url()).await.unwrap();
    let mut req = tonic::Request::new(pb::RegisterWorkerRequest {
        protocol_version: repovault_proto::PROTOCOL_VERSION,
        name: "intruder".into(),
        slots: 1,
        ..Default::default()
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {wrong_join}").parse().unwrap(),
    );
    let err = w.register_worker(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(!err.message().contains(wrong_join));

    let o = as_caller(&c, Some(&admin), &["--output", "json", "audit", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let refused = |method: &str| {
        entries
            .iter()
            .find(|e| {
                e["method"] == method && e["outcome"].as_str().unwrap().starts_with("refused")
            })
            .unwrap_or_else(|| panic!("no refused {method} in {text}"))
    };
    let listing = refused("ListOrgs");
    assert_eq!(listing["caller"], "(unknown token)", "{listing}");
    assert!(
        listing["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{listing}"
    );
    let register = refused("RegisterWorker");
    assert!(
        register["outcome"].as_str().unwrap().contains("join token"),
        "{register}"
    );
    assert!(
        register["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{register}"
    );
    assert!(
        !text.contains(guess) && !text.contains(wrong_join),
        "{text}"
    );
    assert!(
        !text.contains("-token-"),
        "no token in the audit log: {text}"
    );
    c.shutdown().await;
}

/// The number before " existing backups" in a refusal.
fn backups_named(text: &str) -> u64 {
    let end = text
        .find(" existing backups")
        .unwrap_or_else(|| panic!("no count in {text}"));
    let start = text[..end].rfind(' ').map_or(0, |i| i + 1);
    text[start..end].parse().unwrap()
}

/// Shortening retention so that existing backups would go is the admin's, with --confirm, and
/// the refusals say how many; the audit keeps the old and the new policy. Reading the policy is
/// any role's and is not audited; lengthening stays the operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shortening_retention_that_removes_backups_needs_the_admin_and_confirm() {
    use repovault_coordinator::maintenance::maintenance_runs::MaintenanceOptions;

    let tokens = vec![
        token("ann", Role::Viewer),
        token("ops", Role::Operator),
        token("root", Role::Admin),
    ];
    let (viewer, operator, admin) = (
        tokens[0].token.expose().to_string(),
        tokens[1].token.expose().to_string(),
        tokens[2].token.expose().to_string(),
    );
    let c = Cluster::start_with_admin_tokens(1, tokens).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    fixtures::big_repo(src.path(), "r.git", 2, 2).unwrap();
    let daemon = GitDaemon::start(src.path()).unwrap();
    let url = daemon.url("r.git");
    let o = as_caller(&c, Some(&admin), &["org", "add", "org"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_caller(
        &c,
        Some(&operator),
        &["repo", "add", "org/r", "--url", &url],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for _ in 0..4 {
        let o = as_caller(&c, Some(&operator), &["backup", "run", "org/r", "--wait"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let days = |o: &Output| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["days"].as_u64().unwrap()
    };
    let read = |token: &str| {
        as_caller(
            &c,
            Some(token),
            &["--output", "json", "org", "retention", "org"],
        )
    };

    // The operator: refused, told how many would go.
    let o = as_caller(
        &c,
        Some(&operator),
        &["org", "retention", "org", "--days", "0"],
    );
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs the admin role"),
        "{}",
        stderr(&o)
    );
    let n = backups_named(&stderr(&o));
    assert!(n >= 1, "{}", stderr(&o));
    // The admin without --confirm: refused, told how many.
    let o = as_caller(
        &c,
        Some(&admin),
        &["org", "retention", "org", "--days", "0"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--confirm"), "{}", stderr(&o));
    assert_eq!(backups_named(&stderr(&o)), n);
    // Nothing changed; the viewer reads the policy.
    let o = read(&viewer);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(days(&o), 90);
    // The admin with --confirm.
    let o = as_caller(
        &c,
        Some(&admin),
        &["org", "retention", "org", "--days", "0", "--confirm"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = read(&viewer);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(days(&o), 0);
    // The count was the truth: the next retention run removes exactly that many.
    let r = c
        .core()
        .maintenance
        .run_retention_once(
            repovault_coordinator::clock::system_now_ms(),
            &MaintenanceOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.backups_removed, n, "{r:?}");
    // Lengthening stays the operator's.
    let o = as_caller(
        &c,
        Some(&operator),
        &["org", "retention", "org", "--days", "30"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = as_caller(&c, Some(&viewer), &["--output", "json", "audit", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let retention: Vec<(String, String, String)> = entries
        .iter()
        .filter(|e| e["method"].as_str().unwrap().ends_with("Retention"))
        .map(|e| {
            (
                e["caller"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // Newest first: the operator's lengthening, the admin's change, the two refusals; the
    // viewer's reads are not there.
    assert_eq!(retention.len(), 4, "{retention:?}");
    assert_eq!(retention[0].0, "ops");
    assert_eq!(retention[0].1, "ok");
    assert_eq!(retention[0].2, "days 0 -> days 30", "{retention:?}");
    assert_eq!(retention[1].0, "root");
    assert_eq!(retention[1].1, "ok");
    assert_eq!(
        retention[1].2,
        format!("days 90 -> days 0 ({n} existing backups to be removed)")
    );
    assert!(retention[2].1.starts_with("failed"), "{retention:?}");
    assert!(retention[3].1.starts_with("failed"), "{retention:?}");
    assert!(!retention.iter().any(|(who, _, _)| who == "ann"));
    c.shutdown().await;
}
