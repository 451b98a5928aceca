//! The export tree read back (see [`crate::forge::github::export`] for its layout). Missing
//! documents read as empty: a backup whose component was skipped restores what it has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::RestoreOptions;
use crate::forge::ForgeError;
use crate::forge::github::access::{self, AccessDoc};

/// An issue or a pull request document.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub number: u64,
    pub pull: bool,
    /// `{"issue", "comments", "events"}` or `{"pull", "comments", "reviews", "review_comments"}`.
    pub doc: Value,
}

impl Item {
    /// The issue or pull object.
    pub fn main(&self) -> &Value {
        &self.doc[if self.pull { "pull" } else { "issue" }]
    }

    pub fn kind(&self) -> &'static str {
        if self.pull { "pull" } else { "issue" }
    }

    fn list(&self, field: &str) -> &[Value] {
        self.doc
            .get(field)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn comments(&self) -> &[Value] {
        self.list("comments")
    }

    /// Submitted reviews (a `PENDING` one is its author's unsent draft).
    pub fn reviews(&self) -> impl Iterator<Item = &Value> {
        self.list("reviews")
            .iter()
            .filter(|r| r.get("state").and_then(Value::as_str) != Some("PENDING"))
    }

    pub fn review_comments(&self) -> &[Value] {
        self.list("review_comments")
    }

    /// Comments, reviews and review comments.
    pub fn comment_count(&self) -> u64 {
        (self.comments().len() + self.reviews().count() + self.review_comments().len()) as u64
    }

    pub fn closed(&self) -> bool {
        self.main().get("state").and_then(Value::as_str) == Some("closed")
    }

    pub fn locked(&self) -> bool {
        self.main().get("locked").and_then(Value::as_bool) == Some(true)
    }

    pub fn has_meta(&self) -> bool {
        let m = self.main();
        let non_empty = |f: &str| {
            m.get(f)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        };
        non_empty("labels")
            || non_empty("assignees")
            || m.get("milestone").is_some_and(|v| !v.is_null())
    }
}

/// A release document and where its asset bytes are.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub id: u64,
    pub doc: Value,
    pub dir: PathBuf,
}

impl Release {
    pub fn assets(&self) -> &[Value] {
        self.doc
            .get("assets")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// The settings documents restored as they are (access has its own document).
const SETTINGS_DOCS: [&str; 4] = ["branch_protection", "rulesets", "hooks", "deploy_keys"];

#[derive(Debug, Default)]
pub(crate) struct Source {
    pub labels: Vec<Value>,
    pub milestones: Vec<Value>,
    /// Issues and pull requests in ascending number.
    pub items: Vec<Item>,
    /// In ascending id (creation order).
    pub releases: Vec<Release>,
    /// `meta/settings/<doc>.json` by doc name (protection, rulesets, hooks, deploy keys).
    pub settings: BTreeMap<String, Value>,
    /// Who had access and how ([`read_access`]).
    pub access: Option<AccessDoc>,
}

fn read_json(path: &Path) -> Result<Option<Value>, ForgeError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ForgeError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ForgeError::io(path, e)),
    }
}

fn array(v: Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

/// Every `*.json` under `dir` (one level of shards).
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, ForgeError> {
    let mut out = Vec::new();
    let shards = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ForgeError::io(dir, e)),
    };
    for shard in shards {
        let shard = shard.map_err(|e| ForgeError::io(dir, e))?.path();
        if !shard.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&shard).map_err(|e| ForgeError::io(&shard, e))? {
            let file = file.map_err(|e| ForgeError::io(&shard, e))?.path();
            if file.extension().is_some_and(|e| e == "json") {
                out.push(file);
            }
        }
    }
    Ok(out)
}

/// Who had access and how, from the export tree `tree`: `meta/settings/access.json`, or for a
/// backup made before it, its `collaborators.json` (`affiliation=all`) and `teams.json` read as
/// [`AccessDoc::legacy`] (everyone "unknown how"). `None` when the backup has neither.
pub(crate) fn read_access(tree: &Path) -> Result<Option<AccessDoc>, ForgeError> {
    let settings = tree.join("meta").join("settings");
    let path = settings.join("access.json");
    Ok(match read_json(&path)? {
        Some(v) => Some(serde_json::from_value(v).map_err(|e| {
            ForgeError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?),
        None => {
            let collaborators = read_json(&settings.join("collaborators.json"))?;
            let teams = read_json(&settings.join("teams.json"))?;
            (collaborators.is_some() || teams.is_some())
                .then(|| AccessDoc::legacy(&array(collaborators), &array(teams)))
        }
    })
}

impl Source {
    /// Blocking: reads every document of the export tree `tree` (call it on the blocking pool).
    pub fn read(tree: &Path) -> Result<Source, ForgeError> {
        let meta = tree.join("meta");
        let mut src = Source {
            labels: array(read_json(&meta.join("labels.json"))?),
            milestones: array(read_json(&meta.join("milestones.json"))?),
            ..Source::default()
        };
        for (dir, pull) in [("issues", false), ("pulls", true)] {
            for file in json_files(&meta.join(dir))? {
                let Some(doc) = read_json(&file)? else {
                    continue;
                };
                let main = &doc[if pull { "pull" } else { "issue" }];
                let Some(number) = main.get("number").and_then(Value::as_u64) else {
                    continue;
                };
                src.items.push(Item { number, pull, doc });
            }
        }
        src.items.sort_by_key(|i| i.number);
        let releases_dir = meta.join("releases");
        if releases_dir.is_dir() {
            for entry in
                std::fs::read_dir(&releases_dir).map_err(|e| ForgeError::io(&releases_dir, e))?
            {
                let path = entry.map_err(|e| ForgeError::io(&releases_dir, e))?.path();
                let Some(doc) = read_json(&path)? else {
                    continue;
                };
                let Some(id) = doc.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                src.releases.push(Release {
                    id,
                    dir: tree.join("releases").join(id.to_string()),
                    doc,
                });
            }
        }
        src.releases.sort_by_key(|r| r.id);
        let settings = meta.join("settings");
        for doc in SETTINGS_DOCS {
            if let Some(v) = read_json(&settings.join(format!("{doc}.json")))? {
                src.settings.insert(doc.to_string(), v);
            }
        }
        src.access = read_access(tree)?;
        Ok(src)
    }

    /// Settings items of `doc` (objects are keyed maps, arrays lists).
    pub fn setting_count(&self, doc: &str) -> u64 {
        match self.settings.get(doc) {
            Some(Value::Array(a)) => a.len() as u64,
            Some(Value::Object(m)) => m.len() as u64,
            _ => 0,
        }
    }

    /// (creations, content requests) restoring this with `opts` into an empty target.
    pub fn count(&self, opts: &RestoreOptions) -> (u64, u64) {
        let mut creations = 0u64;
        let mut extra = 0u64;
        if opts.parts.labels {
            creations += (self.labels.len() + self.milestones.len()) as u64;
        }
        if opts.parts.issues {
            for item in &self.items {
                creations += 1 + item.comment_count();
                extra += u64::from(item.closed()) + u64::from(item.locked());
                extra += u64::from(item.pull && item.has_meta());
            }
        }
        if opts.parts.releases {
            for r in &self.releases {
                creations += 1 + r.assets().len() as u64;
            }
        }
        if opts.parts.settings {
            for doc in SETTINGS_DOCS {
                creations += self.setting_count(doc);
            }
            if let Some(doc) = &self.access {
                creations += access::plan(doc, opts.access, "", None).grants.len() as u64;
            }
        }
        (creations, creations + extra)
    }
}
