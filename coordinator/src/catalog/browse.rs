//! Reading the metadata inside a backup (`repovault backup browse`): straight from the snapshot
//! in storage, so it shows what a restore would restore, not what the catalog believes.

use crate::model::BackupId;
use std::sync::Arc;

use serde_json::Value;

use repovault_common::repo::RepoError;

use crate::catalog::org_registry::Registry;
use crate::catalog::snapshot_repos::snapshot_call;
use crate::error::{CoreError, CoreResult, not_found};
use crate::model::Status;

/// What `browse` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowsePath {
    /// `issues`, `pulls` or `releases`: the listing of that kind.
    List(&'static str),
    /// `issues/N` or `pulls/N`.
    Item(&'static str, u64),
}

impl BrowsePath {
    /// Parses `issues`, `pulls`, `releases`, `issues/N`, `pulls/N`.
    pub fn parse(s: &str) -> Result<BrowsePath, String> {
        let kind = |k: &str| match k {
            "issues" => Some("issues"),
            "pulls" => Some("pulls"),
            "releases" => Some("releases"),
            _ => None,
        };
        let bad = || {
            format!("browse path {s:?} is not one of: issues, pulls, releases, issues/N, pulls/N")
        };
        match s.trim_matches('/').split_once('/') {
            None => kind(s.trim_matches('/'))
                .map(BrowsePath::List)
                .ok_or_else(bad),
            Some((k, n)) => {
                let k = kind(k).filter(|k| *k != "releases").ok_or_else(bad)?;
                let n: u64 = n.parse().map_err(|_| bad())?;
                Ok(BrowsePath::Item(k, n))
            }
        }
    }
}

/// One listing row of a backup's exported documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowseItem {
    /// The or pull request's number; a release's id.
    pub number: u64,
    pub title: String,
    /// `open`, `closed`, `merged`; for a release `draft`, `prerelease` or `published`.
    pub state: String,
    pub author: String,
    pub updated_at: String,
    /// Comments and review comments.
    pub comments: u64,
    /// A pull request's reviews; a release's assets.
    pub reviews_or_assets: u64,
}

/// What `browse` found: a listing, or one stored document as it was exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Browsed {
    pub items: Vec<BrowseItem>,
    pub document_json: String,
}

impl Registry {
    /// The listing or the item `path` names in backup `id`. The backup must be completed.
    pub async fn browse_backup(self: &Arc<Self>, id: &BackupId, path: &str) -> CoreResult<Browsed> {
        let what = BrowsePath::parse(path).map_err(CoreError::InvalidArgument)?;
        let b = self
            .backup_record(id)
            .await?
            .ok_or_else(|| not_found("backup", id))?;
        let snapshot = match (&b.status, &b.snapshot_id) {
            (Status::Completed, Some(s)) => s.clone(),
            _ => {
                return Err(CoreError::FailedPrecondition(format!(
                    "backup {id} is {}: only a completed backup can be browsed",
                    b.status.as_str()
                )));
            }
        };
        let repo = self.catalog.open_repo(&b.repo_id).await?.ok_or_else(|| {
            CoreError::FailedPrecondition(format!("the snapshot repository of backup {id} is gone"))
        })?;
        match what {
            BrowsePath::List(kind) => {
                let dir = format!("meta/{kind}");
                let files =
                    match snapshot_call(move || repo.read_files(snapshot.as_str(), &dir)).await? {
                        Ok(f) => f,
                        // A backup of plain git, or of a repository without any: nothing to list.
                        Err(RepoError::PathNotFound { .. }) => Vec::new(),
                        Err(e) => return Err(CoreError::Storage(e.to_string())),
                    };
                let mut items = Vec::with_capacity(files.len());
                for (name, bytes) in files {
                    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
                        CoreError::Internal(format!("meta/{kind}/{name} in backup {id}: {e}"))
                    })?;
                    items.push(item(kind, &doc));
                }
                items.sort_by_key(|i| i.number);
                Ok(Browsed {
                    items,
                    document_json: String::new(),
                })
            }
            BrowsePath::Item(kind, n) => {
                let file = format!("meta/{kind}/{}/{n}.json", n / 100);
                let bytes =
                    match snapshot_call(move || repo.read_file(snapshot.as_str(), &file)).await? {
                        Ok(b) => b,
                        Err(RepoError::PathNotFound { .. }) => {
                            return Err(not_found(
                                if kind == "issues" {
                                    "issue"
                                } else {
                                    "pull request"
                                },
                                format!("{n} in backup {id}"),
                            ));
                        }
                        Err(e) => return Err(CoreError::Storage(e.to_string())),
                    };
                Ok(Browsed {
                    items: vec![],
                    document_json: String::from_utf8_lossy(&bytes).into_owned(),
                })
            }
        }
    }
}

/// One listing row of an exported document (`{"issue": ..}`, `{"pull": ..}` or a release).
fn item(kind: &str, doc: &Value) -> BrowseItem {
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let len = |k: &str| doc.get(k).and_then(Value::as_array).map_or(0, Vec::len) as u64;
    match kind {
        "releases" => BrowseItem {
            number: doc.get("id").and_then(Value::as_u64).unwrap_or(0),
            title: match str_of(doc, "name") {
                n if n.is_empty() => str_of(doc, "tag_name"),
                n => n,
            },
            state: if doc.get("draft").and_then(Value::as_bool) == Some(true) {
                "draft"
            } else if doc.get("prerelease").and_then(Value::as_bool) == Some(true) {
                "prerelease"
            } else {
                "published"
            }
            .into(),
            author: doc
                .get("author")
                .map(|a| str_of(a, "login"))
                .unwrap_or_default(),
            updated_at: str_of(doc, "published_at"),
            comments: 0,
            reviews_or_assets: doc
                .get("assets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as u64,
        },
        _ => {
            let key = if kind == "pulls" { "pull" } else { "issue" };
            let it = doc.get(key).unwrap_or(&Value::Null);
            let merged = it.get("merged_at").is_some_and(|m| !m.is_null());
            BrowseItem {
                number: it.get("number").and_then(Value::as_u64).unwrap_or(0),
                title: str_of(it, "title"),
                state: if merged {
                    "merged".into()
                } else {
                    str_of(it, "state")
                },
                author: it
                    .get("user")
                    .map(|u| str_of(u, "login"))
                    .unwrap_or_default(),
                updated_at: str_of(it, "updated_at"),
                comments: len("comments") + len("review_comments"),
                reviews_or_assets: len("reviews"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_bad_ones_name_the_valid_forms() {
        assert_eq!(BrowsePath::parse("issues"), Ok(BrowsePath::List("issues")));
        assert_eq!(BrowsePath::parse("pulls/"), Ok(BrowsePath::List("pulls")));
        assert_eq!(
            BrowsePath::parse("issues/12"),
            Ok(BrowsePath::Item("issues", 12))
        );
        for bad in ["wiki", "issues/x", "releases/3", "", "pulls/-1"] {
            let e = BrowsePath::parse(bad).unwrap_err();
            assert!(e.contains("issues/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_merged_pull_lists_as_merged_with_its_reviews() {
        let doc = serde_json::json!({
            "pull": {"number": 7, "title": "Fix", "state": "closed",
                     "merged_at": "2026-01-01T00:00:00Z", "user": {"login": "dev"},
                     "updated_at": "2026-01-02T00:00:00Z"},
            "comments": [{}, {}], "reviews": [{}], "review_comments": [{}]
        });
        let i = item("pulls", &doc);
        assert_eq!(
            (
                i.number,
                i.state.as_str(),
                i.author.as_str(),
                i.comments,
                i.reviews_or_assets
            ),
            (7, "merged", "dev", 3, 1)
        );
    }
}
