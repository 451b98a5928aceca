//! Following a list's pages: the coordinator answers at most a page per call (and never more
//! than a few MiB), so a list command calls again with each `next_page_token` until it has
//! shown `--limit` items, or every item with `--all`. Each call is an ordinary request, with
//! the CLI's timeout and error handling.

use crate::admin_client::{Admin, CliError};
use crate::args::{OutputFormat, PageArgs};
use crate::output::{errln, is_json};

/// The most items the CLI asks for in one call: its default `--limit`, so a default listing is
/// one call, while `--all` over a large list is many short calls (each bounded by `--timeout`)
/// rather than a few long ones. Below the coordinator's maximum page size, 5000.
const PAGE_SIZE: usize = crate::args::DEFAULT_LIMIT as usize;

/// The items a list command shows, and whether the coordinator holds more than were shown.
pub(crate) struct Shown<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// Calls `call(client, page_size, page_token)` page after page, from the first, until
/// `args` has enough items or the list ends. `call` answers a page's items and its
/// `next_page_token` (empty on the last page).
pub(crate) async fn follow<T>(
    c: &mut Admin,
    args: PageArgs,
    mut call: impl AsyncFnMut(&mut Admin, u32, String) -> Result<(Vec<T>, String), CliError>,
) -> Result<Shown<T>, CliError> {
    let max = args.max();
    let mut items: Vec<T> = Vec::new();
    let mut token = String::new();
    loop {
        let left = max.map_or(PAGE_SIZE, |m| m.saturating_sub(items.len()));
        let size = u32::try_from(left.min(PAGE_SIZE)).unwrap_or(u32::MAX);
        let (page, next) = call(c, size, token).await?;
        let got_none = page.is_empty();
        items.extend(page);
        if let Some(m) = max
            && items.len() >= m
        {
            let more = items.len() > m || !next.is_empty();
            items.truncate(m);
            return Ok(Shown { items, more });
        }
        // An empty page with a token would be a coordinator fault; stop rather than loop.
        if next.is_empty() || got_none {
            return Ok(Shown { items, more: false });
        }
        token = next;
    }
}

/// For table output: says on stderr that more `what` exist than the `shown` ones, and how to
/// see them. JSON output stays one array of what was shown.
pub(crate) fn note_more(out: OutputFormat, shown: usize, more: bool, what: &str) {
    if more && !is_json(out) {
        errln!(
            "showing the first {shown} {what}; more exist: use --all to show every one, or --limit N for more"
        );
    }
}
