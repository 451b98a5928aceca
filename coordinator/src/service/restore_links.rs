//! Restores as the admin sees them: a completed download carries its current link, signed by
//! its storage where that storage signs (`Downloads::download_link`).

use repovault_proto::v1 as pb;
use tonic::Status;

use super::{admin_lists, convert};
use crate::coordinator::Coordinator;
use crate::model::RestoreRecord;

/// A requested link lifetime in seconds (0: the default) as milliseconds, bounded 30m..=7d.
pub(super) fn link_ttl_ms(seconds: u64) -> Result<Option<i64>, Status> {
    if seconds == 0 {
        return Ok(None);
    }
    let d = repovault_common::links::check_link_ttl(std::time::Duration::from_secs(seconds))
        .map_err(Status::invalid_argument)?;
    Ok(Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// A restore with a completed download's current link.
pub(super) async fn restore_with_link(core: &Coordinator, r: &RestoreRecord) -> pb::Restore {
    let mut p = convert::restore(r);
    if let Some(link) = core.downloads.download_link(r).await {
        p.download_url = link.url;
        p.download_expires_at = repovault_common::links::format_unix(link.expires_at);
    }
    p
}

/// `ListRestores`, with each completed download's link: the page's records are kept as the
/// list converts them, so signing needs no second read of the store.
pub(super) async fn list(
    core: &Coordinator,
    req: pb::ListRestoresRequest,
) -> Result<pb::ListRestoresResponse, Status> {
    let downloads = parking_lot::Mutex::new(Vec::new());
    let mut page = admin_lists::restores(core, req, |r| {
        if r.artifact_path.is_some() && r.download.artifact_expired_at_ms.is_none() {
            downloads.lock().push(r.clone());
        }
        convert::restore(r)
    })
    .await?;
    for r in downloads.into_inner() {
        if let Some(p) = page.restores.iter_mut().find(|p| p.id == r.id.as_str()) {
            *p = restore_with_link(core, &r).await;
        }
    }
    Ok(page)
}
