//! The admin service's lists, a page at a time (`paged.rs` decodes the page fields and encodes
//! the next token; the components seek or cut, see [`crate::paging`]).

use repovault_proto::v1 as pb;
use tonic::Status;

use crate::coordinator::Coordinator;
use crate::error::CoreError;
use crate::paging::{self, KeyPart, Order, SortKey};

use super::paged::{List, Listing};
use super::{admin_escrow, convert};

/// `ListOrgs`: by name, seeking in the name index.
pub(super) async fn orgs(
    core: &Coordinator,
    r: pb::ListOrgsRequest,
) -> Result<pb::ListOrgsResponse, Status> {
    let listing = Listing::new(List::Orgs, "");
    let page = listing.page(r.page_size, &r.page_token)?;
    let found = core.registry.list_orgs_page(&page).await?;
    let (orgs, next_page_token) = listing.respond(found.map(|o| convert::org(&o)));
    Ok(pb::ListOrgsResponse {
        orgs,
        next_page_token,
    })
}

/// `ListRepos`: by organisation name, then name, seeking in the name indexes.
pub(super) async fn repos(
    core: &Coordinator,
    r: pb::ListReposRequest,
) -> Result<pb::ListReposResponse, Status> {
    let listing = Listing::new(List::Repos, &r.org);
    let page = listing.page(r.page_size, &r.page_token)?;
    let found = core.registry.list_repos_page(Some(&r.org), &page).await?;
    let mut items = Vec::with_capacity(found.items.len());
    for (k, (repo, stats)) in found.items {
        let view = core.schedules.repo_schedule_view(&repo).await?;
        items.push((
            k,
            convert::repo_with_schedule(convert::repo(&repo, &stats), view),
        ));
    }
    let (repos, next_page_token) = listing.respond(paging::Paged {
        items,
        more: found.more,
    });
    Ok(pb::ListReposResponse {
        repos,
        next_page_token,
    })
}

/// `ListBackups`: newest first, cut from the assembled history.
pub(super) async fn backups(
    core: &Coordinator,
    r: pb::ListBackupsRequest,
) -> Result<pb::ListBackupsResponse, Status> {
    let listing = Listing::new(List::Backups, &r.repo);
    let page = listing.page(r.page_size, &r.page_token)?;
    let found = core
        .registry
        .list_backups_page(Some(&r.repo), &page)
        .await?;
    let (keys, records): (Vec<SortKey>, Vec<_>) = found.items.into_iter().unzip();
    let messages = admin_escrow::backups(core, &records).await?;
    let (backups, next_page_token) = listing.respond(paging::Paged {
        items: keys.into_iter().zip(messages).collect(),
        more: found.more,
    });
    Ok(pb::ListBackupsResponse {
        backups,
        next_page_token,
    })
}

/// A newest-first sort key: creation time, then id (both descending).
pub(super) fn newest_first_key(created_at_ms: i64, id: &str) -> SortKey {
    SortKey::new([KeyPart::Int(created_at_ms), KeyPart::from(id)])
}

/// `ListRestores`: newest first. Restore records are keyed by id alone in the store, which
/// does not order them by time, so the list is read whole, sorted and cut.
pub(super) async fn restores(
    core: &Coordinator,
    r: pb::ListRestoresRequest,
    message: impl Fn(&crate::model::RestoreRecord) -> pb::Restore,
) -> Result<pb::ListRestoresResponse, Status> {
    let listing = Listing::new(List::Restores, &r.repo);
    let page = listing.page(r.page_size, &r.page_token)?;
    let list = core.restores.list_restores(Some(&r.repo)).await?;
    let found = paging::sort_and_cut(
        list,
        |x| newest_first_key(x.created_at_ms, x.id.as_str()),
        Order::Descending,
        &page,
    );
    let (restores, next_page_token) = listing.respond(found.map(|x| message(&x)));
    Ok(pb::ListRestoresResponse {
        restores,
        next_page_token,
    })
}

/// `ListDrills`: newest first. An organisation keeps only its newest drills in the store, so
/// the list is read whole, sorted and cut.
pub(super) async fn drills(
    core: &Coordinator,
    r: pb::ListDrillsRequest,
) -> Result<pb::ListDrillsResponse, Status> {
    let listing = Listing::new(List::Drills, &r.org);
    let page = listing.page(r.page_size, &r.page_token)?;
    let list = core.drills.list_drills(&r.org).await?;
    let found = paging::sort_and_cut(
        list,
        |d| newest_first_key(d.created_at_ms, d.id.as_str()),
        Order::Descending,
        &page,
    );
    let (drills, next_page_token) = listing.respond(found.map(|d| convert::drill(&d)));
    Ok(pb::ListDrillsResponse {
        drills,
        next_page_token,
    })
}

/// `ListAudit`: newest first, seeking in the log's keys (which sort newest first).
pub(super) async fn audit(
    core: &Coordinator,
    r: pb::ListAuditRequest,
) -> Result<pb::ListAuditResponse, Status> {
    let listing = Listing::new(List::Audit, "");
    // Older clients send `limit` only.
    let size = if r.page_size == 0 {
        r.limit
    } else {
        r.page_size
    };
    let page = listing.page(size, &r.page_token)?;
    let after = page.after().and_then(|k| k.text(0));
    if after.is_some_and(|k| !k.starts_with("audit/")) {
        return Err(Status::invalid_argument(
            "field page_token: not a token this list issued",
        ));
    }
    let entries = crate::audit::AuditLog::new(core.store.kv())
        .list_after(after, page.size() + 1)
        .await
        .map_err(|e| CoreError::Internal(format!("reading the audit log: {e}")))?;
    let keyed = entries
        .into_iter()
        .map(|(key, e)| {
            (
                SortKey::new([KeyPart::from(key)]),
                pb::AuditEntry {
                    at: crate::clock::format_ms(e.at_ms),
                    caller: e.caller,
                    role: e.role,
                    method: e.method,
                    outcome: e.outcome,
                    peer: e.peer,
                    detail: e.detail,
                },
            )
        })
        .collect();
    let (entries, next_page_token) = listing.respond(paging::from_seek(keyed, &page));
    Ok(pb::ListAuditResponse {
        entries,
        next_page_token,
    })
}
