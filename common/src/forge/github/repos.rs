//! Discovery: an organisation's repositories.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rest_client::GitHubClient;
use crate::forge::ForgeError;

/// A repository as the organisation lists it. `id` is GitHub's stable id: a rename keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRepo {
    pub id: u64,
    pub name: String,
    /// `OWNER/NAME`.
    pub full_name: String,
    pub private: bool,
    pub archived: bool,
    /// `None` for an empty repository that reports none.
    pub default_branch: Option<String>,
    pub has_wiki: bool,
    /// HTTPS clone URL (no credentials).
    pub clone_url: String,
    /// GitHub's `size`, in KiB.
    pub size_kib: u64,
    /// Last push; `None` when never pushed.
    pub pushed_at: Option<DateTime<Utc>>,
}

impl RemoteRepo {
    /// From one item of GitHub's repository list.
    pub fn from_json(v: &Value) -> Option<RemoteRepo> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let b = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        Some(RemoteRepo {
            id: v.get("id")?.as_u64()?,
            name: s("name")?,
            full_name: s("full_name")?,
            private: b("private"),
            archived: b("archived"),
            default_branch: s("default_branch"),
            has_wiki: b("has_wiki"),
            clone_url: s("clone_url")?,
            size_kib: v.get("size").and_then(Value::as_u64).unwrap_or(0),
            pushed_at: s("pushed_at")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
    }
}

/// Every repository of `org` the credential can see (`GET /orgs/{org}/repos?type=all`, all
/// pages), in GitHub's order.
pub async fn list_org_repos(
    client: &GitHubClient,
    org: &str,
) -> Result<Vec<RemoteRepo>, ForgeError> {
    let path = format!("/orgs/{org}/repos?type=all");
    let items = client.get_all(&path).await?;
    items
        .iter()
        .map(|v| {
            RemoteRepo::from_json(v).ok_or_else(|| ForgeError::Decode {
                method: "GET".into(),
                path: path.clone(),
                detail: format!(
                    "a repository without id, name, full_name or clone_url: {}",
                    v.get("full_name").unwrap_or(&Value::Null)
                ),
            })
        })
        .collect()
}
