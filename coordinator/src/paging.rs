//! Keyset paging of every admin list: a [`Page`] (how many items, and after which sort key) and
//! [`cut`], which takes one page out of a sequence already in the list's order.
//!
//! Why keyset and not offsets: a page is "the items after the last one you saw", named by that
//! item's sort key, so an item added or removed between two calls neither repeats an item nor
//! skips one of those still to come (with an offset, one removal before the cursor would skip
//! an item). Every list has one total order: its sort key ends with an id (or a name unique in
//! its scope), so no two items share a key.
//!
//! This module is pure: the gRPC edge (`service/paged.rs`) decodes the wire's page size and
//! token into a [`Page`] and encodes the next token; the components take a [`Page`] and either
//! seek in the store (organisations, repositories, audit entries: the key-value range starts
//! after the cursor, so a page reads only its own records) or build the whole list and [`cut`]
//! it (where the list is assembled from several sources; each such place says so).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Items in a page when the request names no size: large enough that most lists fit in one
/// call, small enough that a page of the largest item (a backup with its components and
/// verification, about 1 KiB) stays far below gRPC's 4 MiB default message limit.
pub const DEFAULT_PAGE_SIZE: usize = 500;

/// The most items a page holds; a larger request is clamped to it (not refused), so a client
/// asking for "as many as you allow" gets exactly that.
pub const MAX_PAGE_SIZE: usize = 5000;

/// One component of a sort key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyPart {
    Int(i64),
    Text(String),
}

impl From<i64> for KeyPart {
    fn from(v: i64) -> Self {
        KeyPart::Int(v)
    }
}
impl From<&str> for KeyPart {
    fn from(v: &str) -> Self {
        KeyPart::Text(v.to_string())
    }
}
impl From<String> for KeyPart {
    fn from(v: String) -> Self {
        KeyPart::Text(v)
    }
}

/// The sort key of one item: its parts compared in order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SortKey(pub Vec<KeyPart>);

impl SortKey {
    pub fn new(parts: impl IntoIterator<Item = KeyPart>) -> Self {
        SortKey(parts.into_iter().collect())
    }

    /// The text at `i`, when that part is text.
    pub fn text(&self, i: usize) -> Option<&str> {
        match self.0.get(i) {
            Some(KeyPart::Text(s)) => Some(s),
            _ => None,
        }
    }
}

/// Which way a list runs through its sort keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest key first (names, oldest first).
    Ascending,
    /// Largest key first (newest first: creation time, then id, both descending).
    Descending,
}

impl Order {
    /// Whether `key` comes strictly after `cursor` in this order.
    pub fn is_after(self, key: &SortKey, cursor: &SortKey) -> bool {
        matches!(
            (self, key.cmp(cursor)),
            (Order::Ascending, Ordering::Greater) | (Order::Descending, Ordering::Less)
        )
    }

    /// Sorts `items` in this order by `key`.
    pub fn sort<T>(self, items: &mut [T], key: impl Fn(&T) -> SortKey) {
        // Each key computed once: keys are small vectors, so comparing them is cheap and
        // making them is not.
        match self {
            Order::Ascending => items.sort_by_cached_key(key),
            Order::Descending => items.sort_by_cached_key(|t| std::cmp::Reverse(key(t))),
        }
    }
}

/// One page asked for: at most `size` items, those after `after` (from the start when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    size: usize,
    after: Option<SortKey>,
}

impl Page {
    /// `size` items (0: [`DEFAULT_PAGE_SIZE`]; above [`MAX_PAGE_SIZE`]: clamped to it) after
    /// `after`.
    pub fn new(size: usize, after: Option<SortKey>) -> Self {
        let size = match size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        Page { size, after }
    }

    /// The first page of the default size.
    pub fn first() -> Self {
        Page::new(0, None)
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The sort key of the last item already returned; `None` for the first page.
    pub fn after(&self) -> Option<&SortKey> {
        self.after.as_ref()
    }

    /// Whether this is the first page (its summaries are computed over the whole list).
    pub fn is_first(&self) -> bool {
        self.after.is_none()
    }
}

/// One page of items, each with its sort key (the next page's token names the last one kept),
/// and whether more items follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<(SortKey, T)>,
    pub more: bool,
}

impl<T> Paged<T> {
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Paged<U> {
        Paged {
            items: self.items.into_iter().map(|(k, t)| (k, f(t))).collect(),
            more: self.more,
        }
    }

    /// The items without their keys.
    pub fn into_items(self) -> Vec<T> {
        self.items.into_iter().map(|(_, t)| t).collect()
    }
}

/// The page of `items` (in `order` by `key`): the items after the page's cursor, at most the
/// page's size, and whether any remain after them. `items` must already be sorted in `order`.
pub fn cut<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> SortKey,
    order: Order,
    page: &Page,
) -> Paged<T> {
    let mut out = Vec::with_capacity(page.size.min(1024));
    let mut more = false;
    for item in items {
        let k = key(&item);
        if page.after.as_ref().is_some_and(|c| !order.is_after(&k, c)) {
            continue;
        }
        if out.len() == page.size {
            more = true;
            break;
        }
        out.push((k, item));
    }
    Paged { items: out, more }
}

/// [`cut`] of a list that is built whole (not read in order from an index): sorted first, so
/// the page does not depend on how its sources happened to order it.
pub fn sort_and_cut<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> SortKey,
    order: Order,
    page: &Page,
) -> Paged<T> {
    order.sort(&mut items, &key);
    cut(items, key, order, page)
}

/// Takes from a sequence of already-cut items (at most `page.size() + 1`, the extra one telling
/// whether more follow), as a store seek returns them.
pub fn from_seek<T>(mut items: Vec<(SortKey, T)>, page: &Page) -> Paged<T> {
    let more = items.len() > page.size;
    items.truncate(page.size);
    Paged { items, more }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: &i64) -> SortKey {
        SortKey::new([KeyPart::Int(*i)])
    }

    fn ints(p: &Paged<i64>) -> Vec<i64> {
        p.items.iter().map(|(_, v)| *v).collect()
    }

    #[test]
    fn sizes_default_and_clamp() {
        assert_eq!(Page::new(0, None).size(), DEFAULT_PAGE_SIZE);
        assert_eq!(Page::new(7, None).size(), 7);
        assert_eq!(Page::new(MAX_PAGE_SIZE + 1, None).size(), MAX_PAGE_SIZE);
    }

    #[test]
    fn pages_follow_each_other_in_either_order() {
        let asc: Vec<i64> = (1..=7).collect();
        let p1 = cut(asc.clone(), key, Order::Ascending, &Page::new(3, None));
        assert_eq!((ints(&p1), p1.more), (vec![1, 2, 3], true));
        let p3 = cut(asc, key, Order::Ascending, &Page::new(3, Some(key(&6))));
        assert_eq!((ints(&p3), p3.more), (vec![7], false));

        let desc: Vec<i64> = (1..=7).rev().collect();
        let p2 = cut(desc, key, Order::Descending, &Page::new(3, Some(key(&5))));
        assert_eq!((ints(&p2), p2.more), (vec![4, 3, 2], true));
    }

    /// The cursor is a key, not a position: items added before it or removed after the first
    /// page shift nothing still to come.
    #[test]
    fn a_cursor_survives_inserts_and_removals() {
        let page = Page::new(2, Some(key(&4)));
        let changed = vec![0, 1, 2, 3, 5, 6, 8];
        let p = cut(changed, key, Order::Ascending, &page);
        assert_eq!((ints(&p), p.more), (vec![5, 6], true));
    }

    #[test]
    fn an_exactly_full_last_page_says_no_more() {
        let p = cut(vec![1, 2], key, Order::Ascending, &Page::new(2, None));
        assert_eq!((ints(&p), p.more), (vec![1, 2], false));
        let s = from_seek(
            vec![(key(&1), 1), (key(&2), 2), (key(&3), 3)],
            &Page::new(2, None),
        );
        assert_eq!((ints(&s), s.more), (vec![1, 2], true));
    }
}
