//! GitHub's count of the commits reachable from a commit, to compare with a mirror's
//! (issue 7: a backup holds the history GitHub shows).
//!
//! GitHub has no count endpoint; the list of commits (`GET /repos/{owner}/{repo}/commits?sha=`)
//! walks every parent like `git rev-list`, so its length is the count. Ideally one request at
//! `per_page=1` reads it from the `Link: rel="last"` page number, but [`Page`] exposes only the
//! `next` link, so the count is found from `page` probes at `per_page=100`: the last non-empty
//! page `L` with `n` items gives `(L - 1) * 100 + n`. Galloping then bisecting needs one request
//! for up to 100 commits and about `2 * log2(count / 100)` for more (about 12 for 5,000). Every
//! probe goes through [`GitHubClient::get_json`]: the rate gate admits it and the token goes
//! only to the API's origin.

use serde_json::Value;

use super::client::{GitHubClient, PER_PAGE, Page};
use super::error::ForgeError;

/// The number of commits reachable from `sha` (a commit id, or a branch or tag name) in
/// `owner/repo`, as `git rev-list --count SHA` on GitHub's copy.
///
/// - `Some(0)` for an empty repository (GitHub answers 409 "Git Repository is empty.") or an
///   empty first page;
/// - `None` when the answers do not let us tell: a body that is not a list, or pages that
///   contradict each other (a branch name moved between two probes; a commit id cannot);
/// - an error for any other failure (404 for an unknown repository, 422 for an unknown `sha`,
///   transport errors after the client's retries).
pub async fn commit_count(
    client: &GitHubClient,
    owner: &str,
    repo: &str,
    sha: &str,
) -> Result<Option<u64>, ForgeError> {
    let per_page = u64::from(PER_PAGE);
    let path = |page: u64| {
        format!(
            "/repos/{}/{}/commits?sha={}&per_page={per_page}&page={page}",
            encode(owner),
            encode(repo),
            encode(sha)
        )
    };
    let probe = async |page: u64| -> Result<Option<Probe>, ForgeError> {
        match client.get_json(&path(page), None).await {
            Ok(answer) => Ok(Probe::of(&answer, per_page)),
            // GitHub's answer for a repository without commits.
            Err(e) if e.status() == Some(409) => Ok(Some(Probe::Empty)),
            Err(e) => Err(e),
        }
    };
    let count = |page: u64, items: u64| (page - 1) * per_page + items;

    // The first page settles every repository of up to `per_page` commits.
    let Some(first) = probe(1).await? else {
        return Ok(None);
    };
    match first {
        Probe::Empty => return Ok(Some(0)),
        Probe::Last(items) => return Ok(Some(count(1, items))),
        Probe::More => {}
    }
    // `lo` is a page known to be full with more after it; `hi` one known to be empty.
    let mut lo = 1u64;
    let mut hi = None;
    while hi.is_none() {
        let page = lo.saturating_mul(2);
        if page == lo {
            return Ok(None);
        }
        match probe(page).await? {
            None => return Ok(None),
            Some(Probe::Empty) => hi = Some(page),
            Some(Probe::Last(items)) => return Ok(Some(count(page, items))),
            Some(Probe::More) => lo = page,
        }
    }
    let Some(mut hi) = hi else { return Ok(None) };
    while hi - lo > 1 {
        let page = lo + (hi - lo) / 2;
        match probe(page).await? {
            None => return Ok(None),
            Some(Probe::Empty) => hi = page,
            Some(Probe::Last(items)) => return Ok(Some(count(page, items))),
            Some(Probe::More) => lo = page,
        }
    }
    // A full page with a next page, followed by an empty one: the history changed under us.
    Ok(None)
}

/// What one page says about where the list ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// No items: the list ends before this page.
    Empty,
    /// The list's last page, with this many items.
    Last(u64),
    /// A full page with a next one.
    More,
}

impl Probe {
    /// `None` when the answer is not a list, or is a short page that claims a next one.
    fn of(page: &Page, per_page: u64) -> Option<Probe> {
        let items = match &page.body {
            None => 0,
            Some(Value::Array(items)) => items.len() as u64,
            Some(_) => return None,
        };
        match (items, page.next.is_some()) {
            (0, _) => Some(Probe::Empty),
            (n, false) => Some(Probe::Last(n)),
            (n, true) if n == per_page => Some(Probe::More),
            _ => None,
        }
    }
}

/// `segment` percent-encoded for a path segment or a query value.
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: Option<Value>, next: bool) -> Page {
        Page {
            status: 200,
            body,
            etag: None,
            next: next.then(|| "https://api.example/next".to_string()),
            rate: None,
            date: None,
        }
    }

    #[test]
    fn probes_classify_pages() {
        let items = |n: usize| Some(Value::Array(vec![Value::Null; n]));
        assert_eq!(Probe::of(&page(None, false), 3), Some(Probe::Empty));
        assert_eq!(Probe::of(&page(items(0), false), 3), Some(Probe::Empty));
        assert_eq!(Probe::of(&page(items(2), false), 3), Some(Probe::Last(2)));
        assert_eq!(Probe::of(&page(items(3), false), 3), Some(Probe::Last(3)));
        assert_eq!(Probe::of(&page(items(3), true), 3), Some(Probe::More));
        assert_eq!(Probe::of(&page(items(2), true), 3), None);
        assert_eq!(
            Probe::of(&page(Some(serde_json::json!({"message": "x"})), false), 3),
            None
        );
    }
}
