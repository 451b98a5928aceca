//! The snapshot format from the outside: stock `restic` reads what repovault writes with the
//! exported organisation key, and the golden snapshot of format 1 (tests/fixtures/golden) keeps
//! restoring exactly.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use repovault_common::domain::{BackupType, Trigger};
use repovault_common::manifest::{self, Counts, Manifest, ManifestSource};
use repovault_common::repo::{BackupRequest, RepoKey, RepoSpec, SnapshotRepo};
use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;
use repovault_tests::cluster::{Cluster, restic};
use repovault_tests::fixtures::{self, git, git_command, refs, rich_repo};
use repovault_tests::gitserver::GitDaemon;

const BIN: &str = env!("CARGO_BIN_EXE_repovault-test-process");

/// The fixed restic password of the golden repositories.
const GOLDEN_PASSWORD: &str = "golden-test-password";
const GOLDEN_BACKUP_ID: &str = "golden-backup-format-1";
const GOLDEN_TASK_ID: &str = "00000000-0000-4000-8000-000000000001";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/format-1")
}

/// Every directory named `name` under `dir` (depth first).
fn find_dirs(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if e.file_name() == name {
                out.push(p.clone());
            }
            find_dirs(&p, name, out);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn assert_fsck_clean(git_dir: &Path) {
    let out = git_command(git_dir)
        .args(["fsck", "--full", "--strict"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git fsck --full in {}: {}{}",
        git_dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_restic_lists_and_restores_with_exported_key() {
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
    let snapshot = b.snapshot_id.clone().unwrap();

    // The key, exported with the real CLI: mode 0600, and the key the coordinator holds.
    let key_file = c.dir.path().join("org.key");
    let out = Command::new(BIN)
        .args(["org", "key", "export", "org", "--to"])
        .arg(&key_file)
        .args(["--coordinator", &c.url()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "org key export: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let (org, key) = c.core().registry.export_org_key("org").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        key.expose()
    );
    // Exporting again to the same file is refused (keys are never overwritten).
    let again = Command::new(BIN)
        .args(["org", "key", "export", "org", "--to"])
        .arg(&key_file)
        .args(["--coordinator", &c.url()])
        .output()
        .unwrap();
    assert!(!again.status.success(), "export overwrote the key file");

    let repo = c
        .storage_root()
        .join(org.id.as_str())
        .join(b.repo_id.as_str());
    let listed: serde_json::Value =
        serde_json::from_str(&restic(&repo, &key_file, &["snapshots", "--json"]).unwrap()).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let s = &listed[0];
    assert_eq!(s["id"].as_str(), Some(snapshot.as_str()));
    let tags: Vec<&str> = s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for want in [
        format!("backup={}", b.id),
        format!("task={}", b.task_id),
        format!("attempt={}", b.attempt),
        "type=full".to_string(),
        "trigger=manual".to_string(),
    ] {
        assert!(
            tags.contains(&want.as_str()),
            "tag {want} missing: {tags:?}"
        );
    }
    assert_eq!(s["hostname"].as_str(), Some(manifest::SNAPSHOT_HOST));
    assert_eq!(
        s["paths"].as_array().unwrap(),
        &vec![serde_json::Value::from(manifest::SNAPSHOT_PATH)]
    );
    // The tag filter finds it too.
    let by_tag: serde_json::Value = serde_json::from_str(
        &restic(
            &repo,
            &key_file,
            &["snapshots", "--json", "--tag", &format!("backup={}", b.id)],
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(by_tag.as_array().unwrap().len(), 1);
    restic(&repo, &key_file, &["check"]).unwrap();

    // Restored by stock restic: a bare repository equal to the source, and the manifest.
    let target = tempfile::tempdir().unwrap();
    restic(
        &repo,
        &key_file,
        &[
            "restore",
            snapshot.as_str(),
            "--target",
            target.path().to_str().unwrap(),
        ],
    )
    .unwrap();
    let mut found = Vec::new();
    find_dirs(target.path(), manifest::CODE_DIR, &mut found);
    assert_eq!(found.len(), 1, "code.git in the restore: {found:?}");
    let code = &found[0];
    let restored_refs = refs(code).unwrap();
    let expected: BTreeMap<String, String> = refs(&rich)
        .unwrap()
        .into_iter()
        // GitHub-style merge refs are not mirrored (they are recomputed by the forge).
        .filter(|(k, _)| !(k.starts_with("refs/pull/") && k.ends_with("/merge")))
        .collect();
    assert_eq!(restored_refs, expected);
    // Every object reachable from the mirrored refs of the source, and nothing else.
    let mut args = vec!["rev-list".to_string(), "--objects".to_string()];
    args.extend(expected.values().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let want: std::collections::BTreeSet<String> = git(&rich, &args)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert_eq!(fixtures::reachable_objects(code).unwrap(), want);
    assert_fsck_clean(code);
    let m = Manifest::from_json(
        &std::fs::read(code.parent().unwrap().join(manifest::MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(m.format_version, 1);
    assert_eq!(m.backup_id.as_str(), b.id.as_str());
    assert_eq!(m.task_id.as_str(), b.task_id.as_str());
    assert_eq!(m.attempt, b.attempt);
    assert_eq!(m.refs, expected);
    assert_eq!(m.head.as_deref(), Some("refs/heads/main"));
    c.shutdown().await;
}

/// Makes a small deterministic source repository: three commits on `main`, one on `develop`,
/// an annotated tag and a note. Returns its work tree.
fn golden_source(base: &Path) -> PathBuf {
    let work = base.join("golden-src");
    git(base, &["init", "-q", "-b", "main", "golden-src"]).unwrap();
    let write = |rel: &str, text: &str| {
        let p = work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("README.md", "# golden\n\nThe format-1 golden repository.\n");
    write("src/lib.rs", "pub fn answer() -> u32 {\n    41\n}\n");
    git(&work, &["add", "-A"]).unwrap();
    git(&work, &["commit", "-q", "-m", "Initial commit"]).unwrap();
    write("src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n");
    git(&work, &["commit", "-q", "-am", "Fix the answer"]).unwrap();
    git(&work, &["tag", "-a", "v1.0", "-m", "Release 1.0"]).unwrap();
    git(
        &work,
        &["notes", "add", "-m", "Reviewed-by: golden", "HEAD"],
    )
    .unwrap();
    git(&work, &["checkout", "-q", "-b", "develop"]).unwrap();
    write("docs/notes.txt", "développement\n");
    git(&work, &["add", "-A"]).unwrap();
    git(&work, &["commit", "-q", "-m", "Start develop"]).unwrap();
    git(&work, &["checkout", "-q", "main"]).unwrap();
    write("CHANGELOG", "1.1: nothing yet\n");
    git(&work, &["add", "-A"]).unwrap();
    git(&work, &["commit", "-q", "-m", "Changelog"]).unwrap();
    work
}

/// Regenerates tests/fixtures/golden/format-1 when `REPOVAULT_REGENERATE_GOLDEN=1`; otherwise
/// does nothing. The snapshot tree is laid out exactly as a worker lays it out: `code.git/`
/// (a bare mirror) and `manifest.json`, tagged with `manifest::snapshot_tags`, recorded under
/// `manifest::SNAPSHOT_PATH`, written by the snapshot adapter the worker uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn golden_format_1_regenerate() {
    // Always generates (into a scratch directory) and checks that the generator still yields the
    // committed golden's refs; with REPOVAULT_REGENERATE_GOLDEN=1 it rewrites the golden itself.
    let regenerate = std::env::var("REPOVAULT_REGENERATE_GOLDEN").as_deref() == Ok("1");
    let scratch = tempfile::tempdir().unwrap();
    let out = if regenerate {
        golden_dir()
    } else {
        scratch.path().join("golden")
    };
    if out.exists() {
        std::fs::remove_dir_all(&out).unwrap();
    }
    std::fs::create_dir_all(&out).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let work = golden_source(tmp.path());

    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let code = tree.join(manifest::CODE_DIR);
    fixtures::run(
        git_command(tmp.path())
            .args(["clone", "-q", "--mirror", "--no-local"])
            .arg(&work)
            .arg(&code),
    )
    .unwrap();
    git(
        &code,
        &[
            "config",
            "remote.origin.url",
            "git://example.invalid/golden.git",
        ],
    )
    .unwrap();
    git(&code, &["gc", "-q"]).unwrap();
    // Sample hooks are git's templates, not the repository; keep the golden small.
    std::fs::remove_dir_all(code.join("hooks")).unwrap();
    std::fs::create_dir(code.join("hooks")).unwrap();

    let ref_map = refs(&code).unwrap();
    let count = |prefix: &str| ref_map.keys().filter(|k| k.starts_with(prefix)).count() as u64;
    let commits: u64 = git(&code, &["rev-list", "--all", "--count"])
        .unwrap()
        .parse()
        .unwrap();
    let m = Manifest {
        format_version: manifest::FORMAT_VERSION,
        backup_id: GOLDEN_BACKUP_ID.parse().unwrap(),
        backup_type: BackupType::Full,
        trigger: Trigger::Manual,
        task_id: GOLDEN_TASK_ID.parse().unwrap(),
        attempt: 1,
        created_at: "2024-01-01T00:00:00.000Z".into(),
        source: ManifestSource {
            org_id: "org_golden".parse().unwrap(),
            org: "golden".into(),
            repo_id: "repo_golden".parse().unwrap(),
            repo: "golden".into(),
            url: "git://example.invalid/golden.git".into(),
        },
        components: BTreeMap::from([(
            "code".to_string(),
            manifest::ComponentStatus {
                status: repovault_common::domain::ComponentState::Included,
                reason: None,
            },
        )]),
        refs: ref_map.clone(),
        head: fixtures::head(&code).unwrap(),
        counts: Counts {
            branches: count("refs/heads/"),
            tags: count("refs/tags/"),
            commits,
            refs: ref_map.len() as u64,
            ..Default::default()
        },
        sizes: BTreeMap::from([("code_bytes".to_string(), 0)]),
        export: None,
        source_state: None,
    };
    std::fs::write(tree.join(manifest::MANIFEST_FILE), m.to_json()).unwrap();

    let for_each_ref = git(&code, &["for-each-ref"]).unwrap();
    std::fs::write(out.join("expected-refs.txt"), format!("{for_each_ref}\n")).unwrap();
    std::fs::write(out.join("password.txt"), format!("{GOLDEN_PASSWORD}\n")).unwrap();

    let root = out.clone();
    let snapshot = tokio::task::spawn_blocking(move || {
        let spec = RepoSpec {
            operator: StorageConfig::fs(root.to_str().unwrap())
                .operator()
                .unwrap(),
            path: "repo".into(),
        };
        let password = Secret::new(GOLDEN_PASSWORD);
        let (repo, _) = SnapshotRepo::open(&spec, RepoKey::Password(&password), true).unwrap();
        let req = BackupRequest {
            host: manifest::SNAPSHOT_HOST.into(),
            label: "repo_golden".into(),
            tags: manifest::snapshot_tags(
                &GOLDEN_BACKUP_ID.parse().unwrap(),
                &GOLDEN_TASK_ID.parse().unwrap(),
                1,
                BackupType::Full,
                Trigger::Manual,
            ),
            parent: None,
            as_path: manifest::SNAPSHOT_PATH.into(),
            exclude: Vec::new(),
        };
        repo.backup(&tree, &req, &|| Ok(())).unwrap().snapshot_id
    })
    .await
    .unwrap();

    std::fs::write(
        out.join("README.md"),
        format!(
            "# Golden snapshot repository, format 1\n\n\
             A restic repository (`repo/`) holding one snapshot laid out as repovault's snapshot \
             format 1: `code.git/` (a bare mirror) and `manifest.json` at the tree root, recorded \
             under `{path}`, tagged `backup=`, `task=`, `attempt=`, `type=`, `trigger=`.\n\n\
             - password: `{GOLDEN_PASSWORD}` (also in `password.txt`)\n\
             - snapshot: `{snapshot}`\n\
             - `expected-refs.txt`: `git for-each-ref` of the backed-up `code.git`\n\n\
             The test `golden_format_1_restores_exactly` (tests/tests/e2e/restic_golden.rs) must \
             keep restoring it. Never regenerate it for a released format: a new layout gets a \
             new `format-N` directory. To regenerate (format 1 only, before release):\n\n\
             ```sh\n\
             REPOVAULT_REGENERATE_GOLDEN=1 cargo nextest run -p repovault-tests --test e2e golden_format_1_regenerate\n\
             ```\n\n\
             Stock restic reads it: `restic -r repo --password-file password.txt snapshots`.\n",
            path = manifest::SNAPSHOT_PATH
        ),
    )
    .unwrap();
    if !regenerate {
        let fresh = std::fs::read_to_string(out.join("expected-refs.txt")).unwrap();
        let committed = std::fs::read_to_string(golden_dir().join("expected-refs.txt")).unwrap();
        assert_eq!(
            fresh, committed,
            "the golden generator no longer yields the committed golden"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn golden_format_1_restores_exactly() {
    let golden = golden_dir();
    assert!(
        golden.join("repo/config").exists(),
        "{} is missing; see golden_format_1_regenerate",
        golden.display()
    );
    // Work on a copy: the test never writes into the checkout.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&golden, tmp.path());
    let expected_refs = std::fs::read_to_string(golden.join("expected-refs.txt")).unwrap();
    let password = std::fs::read_to_string(golden.join("password.txt")).unwrap();
    let password = password.trim().to_string();
    assert_eq!(password, GOLDEN_PASSWORD);

    let root = tmp.path().to_path_buf();
    let dest = tmp.path().join("restored").join(manifest::CODE_DIR);
    let d = dest.clone();
    let (info, manifest_json) = tokio::task::spawn_blocking(move || {
        let spec = RepoSpec {
            operator: StorageConfig::fs(root.to_str().unwrap())
                .operator()
                .unwrap(),
            path: "repo".into(),
        };
        let password = Secret::new(password);
        let (repo, _) = SnapshotRepo::open(&spec, RepoKey::Password(&password), false).unwrap();
        let snaps = repo.snapshots().unwrap();
        assert_eq!(snaps.len(), 1, "{snaps:?}");
        let info = snaps.into_iter().next().unwrap();
        let m = repo.read_file(&info.id, manifest::MANIFEST_FILE).unwrap();
        repo.restore(&info.id, manifest::CODE_DIR, &d).unwrap();
        repo.check(true).unwrap();
        (info, m)
    })
    .await
    .unwrap();

    assert_eq!(info.hostname, manifest::SNAPSHOT_HOST);
    assert_eq!(info.paths, vec![manifest::SNAPSHOT_PATH.to_string()]);
    let mut want_tags = manifest::snapshot_tags(
        &GOLDEN_BACKUP_ID.parse().unwrap(),
        &GOLDEN_TASK_ID.parse().unwrap(),
        1,
        BackupType::Full,
        Trigger::Manual,
    );
    want_tags.sort();
    assert_eq!(info.tags, want_tags);
    assert_eq!(
        manifest::tag_value(&info.tags, "task"),
        Some(GOLDEN_TASK_ID)
    );

    let m = Manifest::from_json(&manifest_json).unwrap();
    assert_eq!(m.format_version, 1);
    assert_eq!(m.backup_id.as_str(), GOLDEN_BACKUP_ID);
    assert_eq!(m.task_id.as_str(), GOLDEN_TASK_ID);
    assert_eq!(m.head.as_deref(), Some("refs/heads/main"));
    assert_eq!(m.counts.refs as usize, m.refs.len());

    let restored = git(&dest, &["for-each-ref"]).unwrap();
    assert_eq!(restored, expected_refs.trim_end());
    assert_eq!(
        refs(&dest).unwrap(),
        m.refs,
        "manifest refs are the restored refs"
    );
    assert_eq!(fixtures::head(&dest).unwrap(), m.head);
    assert!(m.refs.contains_key("refs/notes/commits"));
    assert!(m.refs.contains_key("refs/tags/v1.0"));
    assert_fsck_clean(&dest);

    // Stock restic reads it with the same password.
    let listed: serde_json::Value = serde_json::from_str(
        &restic(
            &tmp.path().join("repo"),
            &tmp.path().join("password.txt"),
            &["snapshots", "--json"],
        )
        .unwrap(),
    )
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"].as_str(), Some(info.id.as_str()));
}
