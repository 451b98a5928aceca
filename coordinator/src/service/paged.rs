//! Paging at the gRPC edge: a list request's `page_size` and `page_token` decoded into a
//! [`Page`], and a page of messages answered with the token of the next one.
//!
//! The token is opaque to clients: hex of a small JSON document holding a format version, a
//! fingerprint of the list and its filter, and the sort key of the last item returned. The
//! fingerprint makes a token sent with another filter (or to another list) a clear
//! `INVALID_ARGUMENT` instead of a page of something else. A token is not a secret and grants
//! nothing: it only says where to continue a list the caller may read anyway.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::paging::{KeyPart, Page, Paged, SortKey};

/// The request field every refusal names.
const FIELD: &str = "page_token";

/// Bumped when the token's content changes; an older token is then refused as malformed.
const TOKEN_FORMAT: u32 = 1;

/// The most bytes of items one response carries. gRPC's default receive limit (tonic's and
/// most clients') is 4 MiB per message; 3 MiB of items leaves a mebibyte for the rest of the
/// response (a health summary, the organisations' drills) and framing. A page stops early at
/// this budget whatever its size, and says so with a next token.
pub(crate) const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// The paged lists: each its own token space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum List {
    Orgs,
    Repos,
    Backups,
    Restores,
    Escrows,
    Audit,
    HealthRows,
    Timeline,
    Drills,
    WorkerTokens,
    Queue,
}

/// The kind of one sort key part, to check a token's key has the list's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Int,
    Text,
}

impl List {
    fn name(self) -> &'static str {
        match self {
            List::Orgs => "orgs",
            List::Repos => "repos",
            List::Backups => "backups",
            List::Restores => "restores",
            List::Escrows => "escrows",
            List::Audit => "audit",
            List::HealthRows => "health",
            List::Timeline => "timeline",
            List::Drills => "drills",
            List::WorkerTokens => "worker-tokens",
            List::Queue => "queue",
        }
    }

    /// The parts of the list's sort key (see each list's request message).
    fn shape(self) -> &'static [Part] {
        use Part::{Int, Text};
        match self {
            List::Orgs | List::Audit => &[Text],
            List::Repos | List::HealthRows => &[Text, Text],
            List::Backups | List::Restores | List::Escrows | List::Drills | List::WorkerTokens => {
                &[Int, Text]
            }
            List::Timeline | List::Queue => &[Int, Int, Text],
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Token {
    v: u32,
    /// The list's and filter's fingerprint.
    f: String,
    /// The sort key of the last item returned.
    k: SortKey,
}

/// One list with its filter: decodes its requests' page fields and makes its next tokens.
pub(super) struct Listing {
    fingerprint: String,
    list: List,
}

impl Listing {
    /// `list` filtered by `filter` (the request's other fields, joined; empty when none).
    pub(super) fn new(list: List, filter: &str) -> Self {
        let mut h = Sha256::new();
        h.update(list.name().as_bytes());
        h.update([0u8]);
        h.update(filter.as_bytes());
        let digest = h.finalize();
        Listing {
            fingerprint: hex::encode(&digest[..8]),
            list,
        }
    }

    /// The page a request asks for; a token that is malformed or from another list or filter
    /// is refused naming `page_token`.
    pub(super) fn page(&self, page_size: u32, page_token: &str) -> Result<Page, Status> {
        let size = usize::try_from(page_size).unwrap_or(usize::MAX);
        if page_token.is_empty() {
            return Ok(Page::new(size, None));
        }
        let malformed = || {
            Status::invalid_argument(format!(
                "field {FIELD}: not a token this list issued (send the previous response's next_page_token unchanged, or none to start again)"
            ))
        };
        let bytes = hex::decode(page_token).map_err(|_| malformed())?;
        let token: Token = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        if token.v != TOKEN_FORMAT || !self.fits(&token.k) {
            return Err(malformed());
        }
        if token.f != self.fingerprint {
            return Err(Status::invalid_argument(format!(
                "field {FIELD}: issued for another list or filter; send the same filter as for the first page, or no token to start again"
            )));
        }
        Ok(Page::new(size, Some(token.k)))
    }

    fn fits(&self, key: &SortKey) -> bool {
        let shape = self.list.shape();
        key.0.len() == shape.len()
            && key.0.iter().zip(shape).all(|(p, s)| {
                matches!(
                    (p, s),
                    (KeyPart::Int(_), Part::Int) | (KeyPart::Text(_), Part::Text)
                )
            })
    }

    /// The token naming `key` as the last item returned.
    fn token(&self, key: SortKey) -> String {
        let token = Token {
            v: TOKEN_FORMAT,
            f: self.fingerprint.clone(),
            k: key,
        };
        // A `Token` is strings and integers: serialising it cannot fail.
        hex::encode(serde_json::to_vec(&token).unwrap_or_default())
    }

    /// The page's messages and the next page's token (empty when this is the last page). The
    /// page ends early, with a token, once its messages would pass [`MAX_PAGE_BYTES`]; it
    /// always holds at least one message when there is one.
    pub(super) fn respond<P: prost::Message>(&self, page: Paged<P>) -> (Vec<P>, String) {
        let mut out = Vec::with_capacity(page.items.len());
        let mut bytes = 0usize;
        let mut last = None;
        let mut trimmed = false;
        for (key, item) in page.items {
            // The item's bytes, its field tag and its length prefix.
            let len = item.encoded_len();
            let size = len + 1 + prost::length_delimiter_len(len);
            if !out.is_empty() && bytes + size > MAX_PAGE_BYTES {
                trimmed = true;
                break;
            }
            bytes += size;
            out.push(item);
            last = Some(key);
        }
        let next = match last {
            Some(key) if page.more || trimmed => self.token(key),
            _ => String::new(),
        };
        (out, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str) -> SortKey {
        SortKey::new([KeyPart::from(t)])
    }

    #[test]
    fn a_token_round_trips_for_its_own_filter_only() {
        let orgs = Listing::new(List::Orgs, "");
        let page = Paged {
            items: vec![(key("a"), "a".to_string()), (key("b"), "b".to_string())],
            more: true,
        };
        let (items, next) = orgs.respond(page);
        assert_eq!(items.len(), 2);
        let p = orgs.page(0, &next).expect("its own token");
        assert_eq!(p.after(), Some(&key("b")));

        let other = Listing::new(List::Escrows, "acme/x").page(0, &next);
        let e = other.expect_err("another list's token");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("page_token"), "{e:?}");
        let crafted = hex::encode(b"{\"v\":1,\"f\":\"x\",\"k\":[1]}");
        for bad in ["zz", "00", crafted.as_str()] {
            let e = orgs.page(0, bad).expect_err("malformed");
            assert!(e.message().starts_with("field page_token: "), "{e:?}");
        }
    }

    #[test]
    fn the_last_page_has_no_token_and_a_large_page_is_cut_by_bytes() {
        let l = Listing::new(List::Audit, "");
        let one = Paged {
            items: vec![(key("a"), "a".to_string())],
            more: false,
        };
        assert_eq!(l.respond(one).1, "");
        let big = "x".repeat(1024 * 1024);
        let many = Paged {
            items: (0..5).map(|i| (key(&i.to_string()), big.clone())).collect(),
            more: false,
        };
        let (items, next) = l.respond(many);
        assert_eq!(items.len(), 2, "3 MiB hold two 1 MiB items");
        assert_eq!(l.page(0, &next).expect("token").after(), Some(&key("1")));
    }
}
