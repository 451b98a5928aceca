//! `metadata_valid`: every metadata document of a backup parses and has the fields its kind
//! needs, every release asset and attachment it names is present with its size, the manifest's
//! counts equal what the documents hold, and no component the repository has was left out.
//!
//! Unlike the export's own counting (which skips what it cannot read), this reads strictly:
//! one unreadable document is a failure naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use repovault_common::domain::ComponentState;
use repovault_common::manifest::{Counts, Manifest};

use super::{Check, METADATA_VALID};

/// At most this many problems are named; the rest are counted.
const SHOWN: usize = 10;

/// Sizes of the files under `releases/` and `attachments/`, by path relative to the snapshot
/// root (`releases/<id>/<name>`): from a local walk or from the snapshot's listing, so assets
/// need not be restored to be checked.
pub type Payloads = BTreeMap<String, u64>;

/// What the documents under `tree/meta` hold, read strictly.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reading {
    pub counts: Counts,
    pub problems: Vec<String>,
}

/// Runs `metadata_valid` on the snapshot tree at `tree` (which holds at least `meta/`).
/// Plain git sources have no metadata: the check is skipped as not applicable.
pub fn check(tree: &Path, manifest: &Manifest, payloads: &Payloads) -> Check {
    if manifest.export.is_none() && !tree.join("meta").exists() {
        return Check::skipped(
            METADATA_VALID,
            "the source is plain git: the backup holds no metadata",
            false,
        );
    }
    let reading = read(tree, payloads);
    let mut problems = reading.problems;
    problems.extend(count_mismatches(&manifest.counts, &reading.counts));
    let mut failed_components = Vec::new();
    let mut skipped_components = Vec::new();
    for (name, c) in &manifest.components {
        let why = c.reason.clone().unwrap_or_default();
        match c.status {
            ComponentState::Failed => failed_components.push(format!("{name} ({why})")),
            ComponentState::Skipped => skipped_components.push(format!("{name} ({why})")),
            ComponentState::Included => {}
        }
    }
    for f in &failed_components {
        problems.push(format!("component {f} failed at backup time"));
    }
    if !problems.is_empty() {
        return Check::fail(METADATA_VALID, summarise(&problems));
    }
    let c = &reading.counts;
    let held = format!(
        "{} issues, {} pull requests, {} comments, {} reviews, {} releases ({} assets), {} labels, {} milestones, {} workflows, {} attachments",
        c.issues,
        c.pulls,
        c.comments,
        c.reviews,
        c.releases,
        c.release_assets,
        c.labels,
        c.milestones,
        c.workflows,
        c.attachments
    );
    if !skipped_components.is_empty() {
        // A part of the repository is missing from the backup: it cannot count as verified.
        return Check::skipped(
            METADATA_VALID,
            format!(
                "not backed up: {}; the documents present are sound ({held})",
                skipped_components.join(", ")
            ),
            true,
        );
    }
    Check::pass(
        METADATA_VALID,
        format!("every document parses and matches the manifest: {held}"),
    )
}

/// The manifest's counts that differ from the documents', one line each.
pub fn count_mismatches(manifest: &Counts, docs: &Counts) -> Vec<String> {
    let pairs = [
        ("issues", manifest.issues, docs.issues),
        ("pull requests", manifest.pulls, docs.pulls),
        ("comments", manifest.comments, docs.comments),
        ("reviews", manifest.reviews, docs.reviews),
        ("releases", manifest.releases, docs.releases),
        (
            "release assets",
            manifest.release_assets,
            docs.release_assets,
        ),
        ("labels", manifest.labels, docs.labels),
        ("milestones", manifest.milestones, docs.milestones),
        ("workflows", manifest.workflows, docs.workflows),
        ("attachments", manifest.attachments, docs.attachments),
    ];
    pairs
        .iter()
        .filter(|(_, m, d)| m != d)
        .map(|(what, m, d)| format!("the manifest counts {m} {what}, the documents hold {d}"))
        .collect()
}

/// Reads every document under `tree/meta` strictly.
pub fn read(tree: &Path, payloads: &Payloads) -> Reading {
    let meta = tree.join("meta");
    let mut r = Reading::default();
    let mut problems = Vec::new();
    if let Some(v) = doc(tree, &mut problems, &meta.join("repo.json")) {
        need(&mut problems, "meta/repo.json", &v, &["id", "name"]);
    }
    for path in json_files(&meta.join("issues")) {
        let Some(v) = doc(tree, &mut problems, &path) else {
            continue;
        };
        let rel = relative(tree, &path);
        r.counts.issues += 1;
        match v.get("issue") {
            Some(issue) => {
                need(&mut problems, &rel, issue, &["number", "title", "state"]);
                number_matches(&mut problems, &rel, issue, &path);
            }
            None => problems.push(format!("{rel} has no \"issue\"")),
        }
        r.counts.comments += array(&mut problems, &rel, &v, "comments");
    }
    for path in json_files(&meta.join("pulls")) {
        let Some(v) = doc(tree, &mut problems, &path) else {
            continue;
        };
        let rel = relative(tree, &path);
        r.counts.pulls += 1;
        match v.get("pull") {
            Some(pull) => {
                need(
                    &mut problems,
                    &rel,
                    pull,
                    &["number", "title", "state", "head", "base"],
                );
                number_matches(&mut problems, &rel, pull, &path);
            }
            None => problems.push(format!("{rel} has no \"pull\"")),
        }
        r.counts.comments += array(&mut problems, &rel, &v, "comments");
        r.counts.comments += array(&mut problems, &rel, &v, "review_comments");
        r.counts.reviews += array(&mut problems, &rel, &v, "reviews");
    }
    for path in json_files(&meta.join("releases")) {
        let Some(v) = doc(tree, &mut problems, &path) else {
            continue;
        };
        let rel = relative(tree, &path);
        r.counts.releases += 1;
        need(&mut problems, &rel, &v, &["id", "tag_name"]);
        let id = v.get("id").and_then(Value::as_u64);
        if let Some(assets) = v.get("assets").and_then(Value::as_array) {
            for a in assets {
                r.counts.release_assets += 1;
                let (Some(id), Some(name), Some(size)) = (
                    id,
                    a.get("name").and_then(Value::as_str),
                    a.get("size").and_then(Value::as_u64),
                ) else {
                    problems.push(format!("{rel}: an asset has no name or size"));
                    continue;
                };
                let file = format!(
                    "releases/{id}/{}",
                    repovault_common::forge::github::export::asset_file_name(name)
                );
                match payloads.get(&file) {
                    Some(&held) if held == size => {}
                    Some(&held) => problems.push(format!(
                        "{file} holds {held} bytes, the release says {size}"
                    )),
                    None => problems.push(format!("{file} is missing (asset of {rel})")),
                }
            }
        } else {
            problems.push(format!("{rel} has no \"assets\" list"));
        }
    }
    for (file, fields, count) in [
        ("labels.json", &["name"][..], &mut r.counts.labels),
        (
            "milestones.json",
            &["number", "title"][..],
            &mut r.counts.milestones,
        ),
        (
            "workflows.json",
            &["id", "path"][..],
            &mut r.counts.workflows,
        ),
    ] {
        let path = meta.join(file);
        if !path.exists() {
            continue;
        }
        let Some(v) = doc(tree, &mut problems, &path) else {
            continue;
        };
        let rel = format!("meta/{file}");
        match v.as_array() {
            Some(items) => {
                *count = items.len() as u64;
                for item in items {
                    need(&mut problems, &rel, item, fields);
                }
            }
            None => problems.push(format!("{rel} is not a list")),
        }
    }
    for path in json_files(&meta.join("settings")) {
        // Settings documents are GitHub's answers as they came; parsing is what can be asked.
        let _ = doc(tree, &mut problems, &path);
    }
    let attachments = meta.join("attachments.json");
    if attachments.exists()
        && let Some(v) = doc(tree, &mut problems, &attachments)
    {
        match v.as_object() {
            Some(map) => {
                for (url, entry) in map {
                    let Some(sha) = entry.get("sha256").and_then(Value::as_str) else {
                        // Recorded as not downloadable (with its error): not an attachment held.
                        continue;
                    };
                    r.counts.attachments += 1;
                    let file = format!("attachments/{sha}");
                    let size = entry.get("size").and_then(Value::as_u64);
                    match (payloads.get(&file), size) {
                        (Some(held), Some(size)) if *held != size => problems.push(format!(
                            "{file} holds {held} bytes, meta/attachments.json says {size} ({url})"
                        )),
                        (Some(_), _) => {}
                        (None, _) => problems.push(format!("{file} is missing ({url})")),
                    }
                }
            }
            None => problems.push("meta/attachments.json is not an object".into()),
        }
    }
    r.problems = problems;
    r
}

/// Reads and parses one document; a failure is a problem naming it.
fn doc(tree: &Path, problems: &mut Vec<String>, path: &Path) -> Option<Value> {
    let rel = relative(tree, path);
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("{rel} does not parse: {e}"));
                None
            }
        },
        Err(e) => {
            problems.push(format!("{rel} cannot be read: {e}"));
            None
        }
    }
}

fn relative(tree: &Path, path: &Path) -> String {
    path.strip_prefix(tree)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The `fields` `v` lacks (or has as null), as problems.
fn need(problems: &mut Vec<String>, rel: &str, v: &Value, fields: &[&str]) {
    let missing: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| v.get(f).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("{rel} lacks {}", missing.join(", ")));
    }
}

/// The item's number equals its file name (`<n>.json`): a document under another number's
/// name would restore as the wrong item.
fn number_matches(problems: &mut Vec<String>, rel: &str, item: &Value, path: &Path) {
    let named = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<u64>().ok());
    let number = item.get("number").and_then(Value::as_u64);
    if let (Some(n), Some(f)) = (number, named)
        && n != f
    {
        problems.push(format!("{rel} holds number {n}"));
    }
}

/// The length of the list `key` (a problem when absent or not a list).
fn array(problems: &mut Vec<String>, rel: &str, v: &Value, key: &str) -> u64 {
    match v.get(key).and_then(Value::as_array) {
        Some(a) => a.len() as u64,
        None => {
            problems.push(format!("{rel} has no \"{key}\" list"));
            0
        }
    }
}

/// Every `*.json` under `dir`, recursively, sorted (so messages are stable).
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The first [`SHOWN`] problems, one per line, and how many more.
pub fn summarise(problems: &[String]) -> String {
    let mut s = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if problems.len() > SHOWN {
        s.push_str(&format!("\n... and {} more", problems.len() - SHOWN));
    }
    s
}

/// Sizes of the files a snapshot holds under `releases/` and `attachments/` (read from its
/// listing, nothing restored). `Err` names the directory that could not be listed.
pub fn stored_payloads(
    repo: &repovault_common::repo::SnapshotRepo,
    snapshot_id: &str,
) -> Result<Payloads, (&'static str, repovault_common::repo::RepoError)> {
    use repovault_common::repo::RepoError;
    let mut payloads = Payloads::new();
    for dir in PAYLOAD_DIRS {
        match repo.list_files(snapshot_id, dir) {
            Ok(files) => payloads.extend(files.into_iter().map(|(p, s)| (format!("{dir}/{p}"), s))),
            Err(RepoError::PathNotFound { .. }) => {}
            Err(e) => return Err((dir, e)),
        }
    }
    Ok(payloads)
}

/// Where the files metadata documents name are stored.
pub const PAYLOAD_DIRS: [&str; 2] = ["releases", "attachments"];

/// Sizes of every file under `dirs` (relative to `tree`) on disk.
pub fn local_payloads(tree: &Path, dirs: &[&str]) -> Payloads {
    let mut out = Payloads::new();
    for d in dirs {
        let mut stack = vec![tree.join(d)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                match e.metadata() {
                    Ok(m) if m.is_dir() => stack.push(p),
                    Ok(m) => {
                        out.insert(relative(tree, &p).replace('\\', "/"), m.len());
                    }
                    Err(_) => {}
                }
            }
        }
    }
    out
}
