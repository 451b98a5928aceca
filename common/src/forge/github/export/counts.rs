//! [`Counts`] of an export tree, read from the documents themselves (so carried-over documents
//! count exactly like re-read ones).

use std::path::Path;

use serde_json::Value;

use super::Counts;

fn read(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn len(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_array).map_or(0, |a| a.len() as u64)
}

/// Every `*.json` under `dir`, recursively.
fn documents(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(documents(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.extend(read(&path));
        }
    }
    out
}

/// Blocking: the counts of the tree at `out`.
pub(crate) fn count(out: &Path) -> Counts {
    let meta = out.join("meta");
    let mut c = Counts::default();
    for doc in documents(&meta.join("issues")) {
        c.issues += 1;
        c.comments += len(doc.get("comments"));
    }
    for doc in documents(&meta.join("pulls")) {
        c.pulls += 1;
        c.comments += len(doc.get("comments")) + len(doc.get("review_comments"));
        c.reviews += len(doc.get("reviews"));
    }
    for doc in documents(&meta.join("releases")) {
        c.releases += 1;
        c.release_assets += len(doc.get("assets"));
    }
    c.labels = len(read(&meta.join("labels.json")).as_ref());
    c.milestones = len(read(&meta.join("milestones.json")).as_ref());
    c.workflows = len(read(&meta.join("workflows.json")).as_ref());
    c.attachments = read(&meta.join("attachments.json"))
        .and_then(|v| v.as_object().cloned())
        .map_or(0, |m| {
            m.values().filter(|e| e.get("sha256").is_some()).count() as u64
        });
    c
}
