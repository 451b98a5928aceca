//! How many items a list command shows. The coordinator answers lists a page at a time; the
//! CLI follows the pages until it has shown `--limit` items, or every item with `--all`.

use clap::Args;

/// Items a list shows without `--limit` or `--all`: a screenful many times over, yet a bound
/// that keeps an accidental `repo list` of 100,000 repositories short.
pub const DEFAULT_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Copy, Args)]
pub struct PageArgs {
    /// Show at most N items (asked page by page). When more exist, a note on stderr says how
    /// many were shown.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_LIMIT,
        conflicts_with = "all",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(u32::MAX))
    )]
    pub limit: u32,
    /// Show every item, however many pages that takes.
    #[arg(long)]
    pub all: bool,
}

impl Default for PageArgs {
    fn default() -> Self {
        PageArgs {
            limit: DEFAULT_LIMIT,
            all: false,
        }
    }
}

impl PageArgs {
    /// The most items to show; `None` for `--all`.
    pub fn max(&self) -> Option<usize> {
        (!self.all).then(|| usize::try_from(self.limit).unwrap_or(usize::MAX))
    }
}
