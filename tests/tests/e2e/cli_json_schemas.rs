//! Every command's `--output json` document against its JSON Schema in `cli/schemas/`: the real
//! commands run against a real coordinator (`repovault standalone` as a process), a real worker
//! process and the GitHub simulator (for a forge organisation), and each output is validated;
//! every schema in the folder is checked against at least one command's real output. The
//! schemas hold the convention for absent values: a present string is never empty and an absent
//! one is `null`, and numbers that exist only for some records are `null` where absent, so a
//! `""` or a `0` standing for "absent" fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_sim::ForgeSim;
use forge_sim::seed::Seed;
use repovault_tests::fixtures;
use repovault_tests::process::CoordinatorProcess;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// The schemas' base URI, as their `$id`s say.
const BASE: &str = "https://schemas.repovault.invalid/cli/";

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/schemas")
}

fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Schemas {
    defs: serde_json::Value,
    validated: BTreeSet<String>,
}

impl Schemas {
    fn load() -> Self {
        let defs = read_json(&schemas_dir().join("defs.json"));
        assert_eq!(defs["$id"], format!("{BASE}defs.json"));
        Schemas {
            defs,
            validated: BTreeSet::new(),
        }
    }

    /// Validates `doc` (the output of `what`) against `cli/schemas/NAME.json`.
    fn check(&mut self, name: &str, what: &str, doc: &serde_json::Value) {
        let schema = read_json(&schemas_dir().join(format!("{name}.json")));
        assert_eq!(schema["$id"], format!("{BASE}{name}.json"));
        let defs = jsonschema::Resource::from_contents(self.defs.clone()).unwrap();
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .with_resource(format!("{BASE}defs.json"), defs)
            .build(&schema)
            .unwrap_or_else(|e| panic!("schema {name}: {e}"));
        let errors: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "`{what}` does not match {name}.json:\n{}\n{doc:#}",
            errors.join("\n")
        );
        self.validated.insert(name.to_string());
    }
}

struct Cli {
    url: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["--coordinator", &self.url, "-o", "json"])
            .args(args)
            .env_remove("REPOVAULT_OUTPUT")
            .output()
            .unwrap()
    }

    /// Runs `args` with `-o json`, expects success and one JSON document.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not one JSON document ({e}): {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commands_json_output_matches_its_schema() {
    let mut s = Schemas::load();
    // Every schema is a valid draft 2020-12 schema.
    for entry in std::fs::read_dir(schemas_dir()).unwrap() {
        let p = entry.unwrap().path();
        let doc = read_json(&p);
        assert_eq!(
            doc["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            p.display()
        );
        assert!(
            jsonschema::draft202012::meta::is_valid(&doc),
            "{} is not a valid schema",
            p.display()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    fixtures::rich_repo(src.path(), "r.git").unwrap();
    let coord = CoordinatorProcess::start(BIN, dir.path(), "1s")
        .await
        .unwrap();
    let src_root = src.path().to_str().unwrap();
    let worker = coord
        .spawn_worker("w1", &["--allow-local-root", src_root])
        .unwrap();
    let cli = Cli { url: coord.url() };
    let repo_url = format!("file://{}", src.path().join("r.git").display());
    let out = tempfile::tempdir().unwrap();
    let file = |name: &str| out.path().join(name).to_str().unwrap().to_string();

    s.check("org-add", "org add", &cli.json(&["org", "add", "acme"]));
    s.check(
        "repo-add",
        "repo add",
        &cli.json(&["repo", "add", "acme/r", "--url", &repo_url]),
    );
    let first = cli.json(&["backup", "run", "acme/r", "--wait"]);
    s.check("backup-run", "backup run --wait", &first);
    assert_eq!(first["status"], "completed", "{first:#}");
    let first_id = first["id"].as_str().unwrap().to_string();
    let queued = cli.json(&["backup", "run", "acme/r", "--type", "incremental"]);
    s.check("backup-run", "backup run", &queued);
    // A queued backup has no sizes or counts yet: null, not 0.
    if queued["status"] == "pending" {
        assert!(queued["size_bytes"].is_null(), "{queued:#}");
        assert!(queued["counts"].is_null(), "{queued:#}");
        assert!(queued["finished_at"].is_null(), "{queued:#}");
    }
    let b = cli.json(&["backup", "run", "acme/r", "--wait"]);
    s.check("backup-run", "backup run --wait", &b);
    let id = b["id"].as_str().unwrap().to_string();

    s.check("org-list", "org list", &cli.json(&["org", "list"]));
    let org = cli.json(&["org", "show", "acme"]);
    s.check("org-show", "org show", &org);
    // A plain git organisation: no API URL, no App: null, not "" or 0.
    assert!(org["org"]["api_url"].is_null(), "{org:#}");
    assert!(org["org"]["app_id"].is_null(), "{org:#}");
    s.check(
        "org-set",
        "org set",
        &cli.json(&["org", "set", "acme", "--schedule", "daily"]),
    );
    let second = tempfile::tempdir().unwrap();
    let added = cli.json(&[
        "storage",
        "add",
        "second",
        "--kind",
        "fs",
        "--root",
        second.path().to_str().unwrap(),
    ]);
    s.check("storage-add", "storage add", &added);
    s.check(
        "org-set",
        "org set --storage",
        &cli.json(&["org", "set", "acme", "--storage", "default"]),
    );
    let locations = cli.json(&["storage", "list"]);
    s.check("storage-list", "storage list", &locations);
    // The default location was made by the coordinator, not added: no time, null.
    assert!(locations[0]["created_at"].is_null(), "{locations:#}");
    s.check(
        "storage-show",
        "storage show",
        &cli.json(&["storage", "show", "second"]),
    );
    s.check(
        "storage-check",
        "storage check",
        &cli.json(&["storage", "check", "default"]),
    );
    let moved = cli.json(&["storage", "move", "acme", "--to", "second"]);
    s.check("storage-move", "storage move", &moved);
    assert_eq!(moved["org"]["storage"], "second", "{moved:#}");
    s.check(
        "org-retention",
        "org retention",
        &cli.json(&["org", "retention", "acme"]),
    );
    s.check(
        "org-retention",
        "org retention --keep-last",
        &cli.json(&["org", "retention", "acme", "--keep-last", "10"]),
    );
    s.check(
        "org-connect",
        "org disconnect",
        &cli.json(&["org", "disconnect", "acme"]),
    );
    s.check(
        "org-connect",
        "org connect",
        &cli.json(&["org", "connect", "acme"]),
    );
    s.check(
        "org-key-export",
        "org key export",
        &cli.json(&["org", "key", "export", "acme", "--to", &file("org.key")]),
    );
    s.check("repo-list", "repo list", &cli.json(&["repo", "list"]));
    s.check(
        "repo-set",
        "repo set",
        &cli.json(&["repo", "set", "acme/r", "--schedule", "weekly"]),
    );
    s.check(
        "repo-update",
        "repo update --no-token",
        &cli.json(&["repo", "update", "acme/r", "--no-token"]),
    );

    s.check("backup-list", "backup list", &cli.json(&["backup", "list"]));
    s.check(
        "backup-show",
        "backup show",
        &cli.json(&["backup", "show", &id]),
    );
    s.check(
        "backup-verify",
        "backup verify",
        &cli.json(&["backup", "verify", &id]),
    );
    s.check(
        "backup-verify",
        "backup verify --detach",
        &cli.json(&["backup", "verify", &id, "--detach"]),
    );
    s.check(
        "backup-browse",
        "backup browse",
        &cli.json(&["backup", "browse", &id, "issues"]),
    );

    let r = cli.json(&[
        "restore",
        "start",
        &id,
        "--type",
        "full_repo",
        "--target",
        "download",
        "--path",
        &file("restored.git"),
    ]);
    s.check("restore-start", "restore start --path", &r);
    let zip = cli.json(&[
        "restore",
        "start",
        &id,
        "--type",
        "download_zip",
        "--target",
        "download",
        "--wait",
    ]);
    s.check("restore-start", "restore start download_zip --wait", &zip);
    assert!(zip["refs_pushed"].is_null(), "nothing is pushed: {zip:#}");
    let zip_id = zip["id"].as_str().unwrap().to_string();
    s.check(
        "restore-list",
        "restore list",
        &cli.json(&["restore", "list"]),
    );
    s.check(
        "restore-show",
        "restore show",
        &cli.json(&["restore", "show", &zip_id]),
    );
    s.check(
        "restore-watch",
        "restore watch",
        &cli.json(&["restore", "watch", &zip_id]),
    );
    s.check(
        "restore-link",
        "restore link",
        &cli.json(&["restore", "link", &zip_id, "--expires", "1h"]),
    );
    s.check(
        "backup-download",
        "backup download",
        &cli.json(&["backup", "download", &id, "--to", &file("backup.zip")]),
    );

    let workers = cli.json(&["workers"]);
    s.check("workers", "workers", &workers);
    // The worker joined with the configured token: pool bootstrap, no token id.
    assert_eq!(workers[0]["pool"], "bootstrap", "{workers:#}");
    assert!(workers[0]["token_id"].is_null(), "{workers:#}");
    s.check("workers", "workers list", &cli.json(&["workers", "list"]));
    let created = cli.json(&[
        "workers",
        "token",
        "create",
        "--pool",
        "burst",
        "--expires-in",
        "90d",
    ]);
    s.check("workers-token-create", "workers token create", &created);
    assert!(created["token"]["revoked_at"].is_null(), "{created:#}");
    let token_id = created["token"]["id"].as_str().unwrap().to_string();
    s.check(
        "workers-token-create",
        "workers token create (no expiry)",
        &cli.json(&["workers", "token", "create", "--pool", "night"]),
    );
    s.check(
        "workers-token-list",
        "workers token list",
        &cli.json(&["workers", "token", "list"]),
    );
    let revoked = cli.json(&["workers", "token", "revoke", &token_id]);
    s.check("workers-token-revoke", "workers token revoke", &revoked);
    assert_eq!(revoked["token"]["state"], "revoked", "{revoked:#}");
    let burst = cli.json(&["workers", "token", "list", "--pool", "burst"]);
    s.check("workers-token-list", "workers token list --pool", &burst);
    assert_eq!(burst.as_array().map(Vec::len), Some(1), "{burst:#}");
    assert_eq!(burst[0]["revoked_by"], "local", "{burst:#}");
    s.check("queue", "queue", &cli.json(&["queue"]));
    s.check("health", "health", &cli.json(&["health"]));
    s.check("timeline", "timeline", &cli.json(&["timeline", "acme/r"]));
    s.check("audit-list", "audit list", &cli.json(&["audit", "list"]));
    s.check(
        "drill-run",
        "drill run",
        &cli.json(&["drill", "run", "acme"]),
    );
    s.check(
        "drill-run",
        "drill run --detach",
        &cli.json(&["drill", "run", "acme", "--detach"]),
    );
    s.check(
        "drill-list",
        "drill list",
        &cli.json(&["drill", "list", "acme"]),
    );

    s.check(
        "escrow-enable",
        "escrow enable",
        &cli.json(&[
            "escrow",
            "enable",
            "acme/r",
            "--agreement",
            "Acme and its customer, ref 42",
            "--key-to",
            &file("escrow.key"),
        ]),
    );
    s.check("escrow-list", "escrow list", &cli.json(&["escrow", "list"]));
    s.check(
        "escrow-release",
        "escrow release",
        &cli.json(&["escrow", "release", "acme/r"]),
    );
    s.check(
        "admin-rebuild-catalog",
        "admin rebuild-catalog",
        &cli.json(&["admin", "rebuild-catalog"]),
    );
    // A pending restore cancelled: the worker is stopped (SIGSTOP) so that it stays pending.
    worker.signal("-STOP").unwrap();
    let pending = cli.json(&[
        "restore",
        "start",
        &id,
        "--type",
        "download_zip",
        "--target",
        "download",
    ]);
    let pending_id = pending["id"].as_str().unwrap().to_string();
    let cancelled = cli.json(&["restore", "cancel", &pending_id]);
    worker.signal("-CONT").unwrap();
    s.check("restore-cancel", "restore cancel", &cancelled);

    // A task that runs (a scheduled backup, the detached drill) holds deletes and purges back,
    // and the cancelled restore's worker, continued, may still be writing its artifact under
    // the repository's prefix (a cancel revokes the lease; the worker stops at its next
    // heartbeat): wait until the queue is empty and no worker runs anything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let queue = cli.json(&["queue"]);
        let workers = cli.json(&["workers"]);
        let busy = workers
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["running"].as_u64().unwrap_or(0) > 0));
        if queue.as_array().is_some_and(Vec::is_empty) && !busy {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tasks still queued: {queue:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    s.check(
        "backup-delete",
        "backup delete",
        &cli.json(&["backup", "delete", &first_id]),
    );
    s.check(
        "repo-purge",
        "repo purge",
        &cli.json(&["repo", "purge", "acme/r", "--confirm"]),
    );
    s.check(
        "org-purge",
        "org purge",
        &cli.json(&["org", "purge", "acme", "--confirm"]),
    );

    // A GitHub organisation (the simulator, whose organisation is also acme, added again after
    // the purge): a token credential, discovery.
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("forge-sim/seeds/acme.toml");
    let sim = ForgeSim::start(
        &Seed::from_file(&seed).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    let ready = sim.ready().clone();
    let o = Command::new(BIN)
        .args([
            "--coordinator",
            &coord.url(),
            "-o",
            "json",
            "org",
            "add",
            "acme",
        ])
        .args(["--provider", "github", "--api-url", &ready.api_url])
        .args(["--token-env", "GH_TOKEN", "--ca-cert"])
        .arg(&ready.ca_cert)
        .env("GH_TOKEN", &ready.token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gh: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    s.check("org-add", "org add --provider github", &gh);
    assert_eq!(gh["credential"], "token", "{gh:#}");
    assert!(gh["app_id"].is_null(), "a token has no App id: {gh:#}");
    s.check("org-sync", "org sync", &cli.json(&["org", "sync", "acme"]));
    let o = Command::new(BIN)
        .args([
            "--coordinator",
            &coord.url(),
            "-o",
            "json",
            "org",
            "update",
            "acme",
        ])
        .args(["--token-env", "GH_TOKEN"])
        .env("GH_TOKEN", &ready.token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.check(
        "org-update",
        "org update",
        &serde_json::from_slice(&o.stdout).unwrap(),
    );

    // REPOVAULT_OUTPUT sets the format as -o does.
    let o = Command::new(BIN)
        .args(["--coordinator", &coord.url(), "org", "list"])
        .env("REPOVAULT_OUTPUT", "json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");
    assert_eq!(listed[0]["provider"], "github", "{listed:#}");

    // Every schema was checked against real output, or is named with the reason it is not.
    let all: BTreeSet<String> = std::fs::read_dir(schemas_dir())
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            p.file_stem().unwrap().to_str().unwrap().to_string()
        })
        .filter(|n| n != "defs")
        .collect();
    assert_eq!(all, s.validated, "schemas and the commands run differ");
}
