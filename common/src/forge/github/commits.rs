//! GitHub's count of the commits reachable from a commit, to compare with a mirror's
//! (the `commit_count_match` check: a backup holds the history GitHub shows).
//!
//! GitHub has no count endpoint; the list of commits (`GET /repos/{owner}/{repo}/commits?sha=`)
//! walks every parent like `git rev-list`, so at `per_page=1` its number of pages is the count:
//! the `page` of the `Link: rel="last"` URL, in one request. The request goes through
//! [`GitHubClient::get_json`]: the rate gate admits it and the token goes only to the API's
//! origin.

use serde_json::Value;

use super::rest_client::{GitHubClient, Page};
use crate::forge::ForgeError;

/// The number of commits reachable from `sha` (a commit id, or a branch or tag name) in
/// `owner/repo`, as `git rev-list --count SHA` on GitHub's copy.
///
/// - `Some(0)` for an empty repository (GitHub answers 409 "Git Repository is empty.") or an
///   empty list;
/// - `None` when the answer does not let us tell: a body that is not a list, or a `last` link
///   without a page number;
/// - an error for any other failure (404 for an unknown repository, 422 for an unknown `sha`,
///   transport errors after the client's retries).
pub async fn commit_count(
    client: &GitHubClient,
    owner: &str,
    repo: &str,
    sha: &str,
) -> Result<Option<u64>, ForgeError> {
    let path = format!(
        "/repos/{}/{}/commits?sha={}&per_page=1",
        encode(owner),
        encode(repo),
        encode(sha)
    );
    match client.get_json(&path, None).await {
        Ok(page) => Ok(count_of(&page)),
        // GitHub's answer for a repository without commits.
        Err(e) if e.status() == Some(409) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// The count a `per_page=1` page gives: the last page's number when there are more pages,
/// else the items on this one (0 or 1).
fn count_of(page: &Page) -> Option<u64> {
    let items = match &page.body {
        None => 0,
        Some(Value::Array(items)) => items.len() as u64,
        Some(_) => return None,
    };
    match &page.last {
        Some(url) => page_number(url),
        None if page.next.is_some() => None,
        None => Some(items),
    }
}

/// The `page` query parameter of a URL.
fn page_number(url: &str) -> Option<u64> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

/// `segment` percent-encoded for a path segment or a query value.
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: Option<usize>, next: bool, last: Option<&str>) -> Page {
        Page {
            status: 200,
            body: items.map(|n| Value::Array(vec![Value::Null; n])),
            etag: None,
            next: next.then(|| "https://api.example/next".to_string()),
            last: last.map(str::to_string),
            rate: None,
            date: None,
        }
    }

    #[test]
    fn the_last_page_number_is_the_count() {
        let last = "https://api.github.com/repositories/1/commits?sha=abc&per_page=1&page=1234";
        assert_eq!(count_of(&page(Some(1), true, Some(last))), Some(1234));
        // One commit: no Link header at all.
        assert_eq!(count_of(&page(Some(1), false, None)), Some(1));
        assert_eq!(count_of(&page(Some(0), false, None)), Some(0));
        assert_eq!(count_of(&page(None, false, None)), Some(0));
        // A next page without a last one, or a last URL without a page: cannot tell.
        assert_eq!(count_of(&page(Some(1), true, None)), None);
        assert_eq!(
            count_of(&page(
                Some(1),
                true,
                Some("https://api.github.com/x?per_page=1")
            )),
            None
        );
        let not_a_list = Page {
            body: Some(serde_json::json!({"message": "x"})),
            ..page(None, false, None)
        };
        assert_eq!(count_of(&not_a_list), None);
    }
}
