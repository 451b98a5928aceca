//! A restore into another organisation must not widen access: the source repository
//! has one direct collaborator, two teams with access (one of which the target organisation also
//! has, by slug) and an organisation member whose only access is the organisation's base
//! permission. Restored by default, only the direct collaborator is invited.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use repovault_common::forge::github::access::{AccessDoc, AccessPlan, AccessScope, GrantKind, Via};
use repovault_common::forge::github::{
    ExportMode, GitHubClient, GitHubEndpoint, Parts, RestoreOptions, RestoreReport, RestoreTarget,
    export_repo, plan_access, read_access, restore_metadata,
};
use repovault_common::secret::Secret;
use serde_json::json;

const OWNER: &str = "ghp_accessOwner000000000000000000000000";

/// Two organisations: `src` (base permission read; teams core and ops; `src/app` with the direct
/// collaborator `contractor`, team grants core=write and ops=read) and `dst` (a team `core` of
/// its own, no `ops`). `member` reaches `src/app` only through the base permission.
const SEED: &str = r#"
[[users]]
login = "owner"
tokens = ["ghp_accessOwner000000000000000000000000"]

[[users]]
login = "contractor"

[[users]]
login = "teammate"

[[users]]
login = "opsmate"

[[users]]
login = "member"

[[orgs]]
login = "src"
default_repository_permission = "read"
[orgs.members]
teammate = "member"
opsmate = "member"
member = "member"

[[orgs.teams]]
slug = "core"
name = "Core"
members = ["teammate"]

[[orgs.teams]]
slug = "ops"
name = "Ops"
members = ["opsmate"]

[[orgs.repos]]
name = "app"
[[orgs.repos.commits]]
message = "Initial commit"
files = { "README.md" = "app\n" }
[orgs.repos.collaborators]
contractor = "write"
[orgs.repos.teams]
core = "write"
ops = "read"

[[orgs]]
login = "dst"
default_repository_permission = "none"

[[orgs.teams]]
slug = "core"
name = "Core"
"#;

async fn start(tmp: &Path) -> ForgeSim {
    let path = tmp.join("seed.toml");
    std::fs::write(&path, SEED).unwrap();
    let seed = Seed::from_file(&path).unwrap();
    ForgeSim::start(&seed, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

fn client(sim: &ForgeSim) -> GitHubClient {
    let endpoint = GitHubEndpoint {
        api_url: sim.ready().api_url.clone(),
        ca_cert_pem: Some(std::fs::read_to_string(&sim.ready().ca_cert).unwrap()),
    };
    GitHubClient::new(&endpoint, Secret::new(OWNER)).unwrap()
}

fn settings_only() -> Parts {
    Parts {
        issues: false,
        releases: false,
        labels: false,
        settings: true,
    }
}

/// Logins invited to `repo` (pending invitations).
async fn invited(c: &GitHubClient, repo: &str) -> BTreeSet<String> {
    c.get_all(&format!("/repos/{repo}/invitations"))
        .await
        .unwrap()
        .iter()
        .filter_map(|i| i["invitee"]["login"].as_str().map(str::to_string))
        .collect()
}

/// Team slug → permission on `repo`.
async fn team_grants(c: &GitHubClient, repo: &str) -> Vec<(String, String)> {
    c.get_all(&format!("/repos/{repo}/teams"))
        .await
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["slug"].as_str().unwrap_or("").to_string(),
                t["permission"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn options(tmp: &Path, name: &str, access: AccessScope) -> RestoreOptions {
    RestoreOptions {
        backup_id: "B1".parse().expect("backup id"),
        parts: settings_only(),
        branches_present: BTreeSet::new(),
        journal: tmp.join(format!("journal-{name}.json")),
        pace: None,
        access,
    }
}

fn target<'a>(c: &'a GitHubClient, name: &'a str) -> RestoreTarget<'a> {
    RestoreTarget {
        client: c,
        owner: "dst",
        name,
    }
}

/// The plan of restoring `tree` into a new `dst/NAME` (created here), then the restore itself.
async fn plan_then_restore(
    c: &GitHubClient,
    tree: &Path,
    name: &str,
    opts: &RestoreOptions,
) -> (AccessPlan, RestoreReport) {
    c.post_json("/orgs/dst/repos", &json!({ "name": name }))
        .await
        .unwrap();
    let doc = read_access(tree).unwrap().unwrap();
    let plan = plan_access(&doc, target(c, name), opts.access)
        .await
        .unwrap();
    println!("{name}: {}", plan.describe());
    let report = restore(c, tree, name, opts).await;
    (plan, report)
}

async fn restore(
    c: &GitHubClient,
    tree: &Path,
    name: &str,
    opts: &RestoreOptions,
) -> RestoreReport {
    restore_metadata(
        tree,
        RestoreTarget {
            client: c,
            owner: "dst",
            name,
        },
        opts,
        &|_| {},
    )
    .await
    .unwrap()
}

/// (kind, name, permission) of a plan's grants, in order.
fn grants(p: &AccessPlan) -> Vec<(GrantKind, &str, &str)> {
    p.grants
        .iter()
        .map(|g| (g.kind, g.name.as_str(), g.permission.as_str()))
        .collect()
}

/// Who a plan leaves out, for the reason containing `why`.
fn left_out<'p>(p: &'p AccessPlan, why: &str) -> Vec<&'p str> {
    p.left_out
        .iter()
        .filter(|l| l.reason.contains(why))
        .flat_map(|l| l.who.iter().map(String::as_str))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_restore_into_another_organisation_invites_only_direct_collaborators() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = start(tmp.path()).await;
    let c = client(&sim);
    sim.sim().options.write().record_exchanges = true;
    let tree = tmp.path().join("tree");
    let report = export_repo(&c, "src", "app", &tree, None, ExportMode::Full)
        .await
        .unwrap();
    assert_eq!(
        report.components["settings"].status,
        repovault_common::domain::ComponentState::Included,
        "{report:?}"
    );
    assert_eq!(report.components["settings"].reason, None, "{report:?}");

    // The backup says how each person reaches src/app.
    let doc: AccessDoc =
        serde_json::from_slice(&std::fs::read(tree.join("meta/settings/access.json")).unwrap())
            .unwrap();
    let how: Vec<(&str, &[Via], bool, &str)> = doc
        .people
        .iter()
        .map(|p| {
            (
                p.login.as_str(),
                p.via.as_slice(),
                p.outside,
                p.role.as_str(),
            )
        })
        .collect();
    assert_eq!(
        how,
        [
            ("contractor", &[Via::Direct][..], true, "write"),
            ("member", &[Via::Organisation][..], false, "read"),
            ("opsmate", &[Via::Team][..], false, "read"),
            ("owner", &[Via::Organisation][..], false, "admin"),
            ("teammate", &[Via::Team][..], false, "write"),
        ]
    );
    let teams: Vec<(&str, &str, Option<Vec<String>>)> = doc
        .teams
        .iter()
        .map(|t| (t.slug.as_str(), t.permission.as_str(), t.members.clone()))
        .collect();
    assert_eq!(
        teams,
        [
            ("core", "push", Some(vec!["teammate".to_string()])),
            ("ops", "pull", Some(vec!["opsmate".to_string()])),
        ]
    );

    // By default: the direct collaborator alone, invited with their role; nothing else.
    let opts = options(tmp.path(), "app", AccessScope::Direct);
    let (plan, report) = plan_then_restore(&c, &tree, "app", &opts).await;
    assert_eq!(
        grants(&plan),
        [(GrantKind::Collaborator, "contractor", "push")]
    );
    assert_eq!(
        left_out(&plan, "not restored by default"),
        ["team core", "team ops"]
    );
    assert_eq!(left_out(&plan, "via the organisation"), ["member", "owner"]);
    assert_eq!(left_out(&plan, "via team"), ["opsmate", "teammate"]);
    assert_eq!(
        invited(&c, "dst/app").await,
        set(&["contractor"]),
        "only the direct collaborator"
    );
    assert_eq!(
        team_grants(&c, "dst/app").await,
        Vec::<(String, String)>::new()
    );
    assert_eq!(
        report.access.as_ref(),
        Some(&plan),
        "the restore acts on the plan"
    );
    assert_eq!(report.created.get("collaborator"), Some(&1));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    // Again: nothing new.
    let again = restore(&c, &tree, "app", &opts).await;
    assert_eq!(again.total_created(), 0, "{again:#?}");
    assert_eq!(again.reused.get("collaborator"), Some(&1));

    // Asked for team access: the team dst has is granted as a team grant, the one it lacks is
    // left out saying so; its members and the organisation's are still not invited.
    let opts = options(tmp.path(), "app-teams", AccessScope::Teams);
    let (plan, report) = plan_then_restore(&c, &tree, "app-teams", &opts).await;
    assert_eq!(
        grants(&plan),
        [
            (GrantKind::Team, "core", "push"),
            (GrantKind::Collaborator, "contractor", "push")
        ]
    );
    assert_eq!(left_out(&plan, "dst has no team ops"), ["team ops"]);
    assert_eq!(left_out(&plan, "restored as a team grant"), ["teammate"]);
    assert_eq!(left_out(&plan, "via team ops (not restored)"), ["opsmate"]);
    assert_eq!(left_out(&plan, "via the organisation"), ["member", "owner"]);
    let line = plan.describe();
    assert!(
        line.contains("grant team core push") && line.contains("invite contractor (push)"),
        "{line}"
    );
    assert_eq!(
        team_grants(&c, "dst/app-teams").await,
        [("core".to_string(), "push".to_string())]
    );
    assert_eq!(invited(&c, "dst/app-teams").await, set(&["contractor"]));
    assert_eq!(report.access.as_ref(), Some(&plan));

    // Every request the backup and the restores sent is one GitHub's description documents,
    // with a valid body and query (`affiliation=direct|outside|all`).
    let exchanges = sim.sim().stats.exchanges.lock().clone();
    sim.sim().options.write().record_exchanges = false;
    let mut invalid = Vec::new();
    for x in &exchanges {
        if x.route.starts_with("(no route)") {
            invalid.push(format!("{} {}: no route", x.method, x.path));
        }
        if x.status >= 400 {
            continue;
        }
        if let Err(e) =
            forge_sim::openapi::validate_request(&x.method, &x.route, x.request.as_ref())
        {
            invalid.push(format!("{} {}: {e:?}", x.method, x.path));
        }
        if let Err(e) = forge_sim::openapi::validate_query(&x.method, &x.route, &x.query) {
            invalid.push(format!("{} {}?{}: {e:?}", x.method, x.path, x.query));
        }
    }
    let affiliations: BTreeSet<&str> = exchanges
        .iter()
        .filter(|x| x.route == "/repos/{owner}/{repo}/collaborators")
        .filter_map(|x| x.query.split('&').find(|p| p.starts_with("affiliation=")))
        .collect();
    assert_eq!(
        affiliations,
        BTreeSet::from([
            "affiliation=all",
            "affiliation=direct",
            "affiliation=outside"
        ]),
        "the backup asks for each affiliation"
    );
    assert!(invalid.is_empty(), "{invalid:#?}");
    assert!(
        exchanges.iter().any(|x| x.method == "PUT"
            && x.route == "/orgs/{org}/teams/{team_slug}/repos/{owner}/{repo}"),
        "a team grant was restored"
    );
}

#[tokio::test]
async fn a_backup_that_did_not_record_how_invites_nobody_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = start(tmp.path()).await;
    let c = client(&sim);
    let tree = tmp.path().join("tree");
    export_repo(&c, "src", "app", &tree, None, ExportMode::Full)
        .await
        .unwrap();
    // The shape of a backup made before access was recorded: collaborators with
    // affiliation=all, and teams.
    for doc in ["access", "collaborators_direct", "collaborators_outside"] {
        std::fs::remove_file(tree.join(format!("meta/settings/{doc}.json"))).unwrap();
    }

    let opts = options(tmp.path(), "old", AccessScope::Direct);
    let (plan, report) = plan_then_restore(&c, &tree, "old", &opts).await;
    assert!(plan.grants.is_empty(), "{plan:?}");
    assert_eq!(
        left_out(&plan, "unknown how"),
        ["contractor", "member", "opsmate", "owner", "teammate"]
    );
    assert!(
        plan.describe().contains("--access all"),
        "{}",
        plan.describe()
    );
    assert!(invited(&c, "dst/old").await.is_empty());
    assert_eq!(report.total_created(), 0, "{report:#?}");

    // Told to: everyone is invited (but the restoring user, who has access already), and the
    // team dst has gets its grant.
    let opts = options(tmp.path(), "old-all", AccessScope::All);
    let (plan, _) = plan_then_restore(&c, &tree, "old-all", &opts).await;
    assert_eq!(plan.grants.len(), 6, "{plan:?}");
    assert_eq!(
        invited(&c, "dst/old-all").await,
        set(&["contractor", "member", "opsmate", "teammate"])
    );
    assert_eq!(
        team_grants(&c, "dst/old-all").await,
        [("core".to_string(), "push".to_string())]
    );
}
