//! Restores as the admin sees them: a completed download carries its current link, signed by
//! its storage where that storage signs (`Downloads::download_link`).

use repovault_proto::v1 as pb;
use tonic::Status;

use super::{admin_lists, convert};
use crate::coordinator::Coordinator;
use crate::model::RestoreRecord;
use repovault_common::domain::RestoreCombination;

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

/// `StartRestore`: the wire request as a typed one; the restore as the admin sees it.
pub(super) async fn start(
    core: &Coordinator,
    r: pb::StartRestoreRequest,
) -> Result<pb::StartRestoreResponse, Status> {
    let restore = core
        .restores
        .start_restore_request(crate::coordinator::RestoreRequest {
            access: r.access().into(),
            combination: RestoreCombination::new(
                convert::enum_field(r.r#type, "type")?,
                convert::enum_field(r.target, "target")?,
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
            backup_id: convert::id_field(&r.backup_id, "backup_id")?,
            url: r.url,
            token: super::admin::token(&r.token),
            org: r.org,
            name: r.name,
            credential_org: r.credential_org,
            into: r.into,
            link_ttl_ms: link_ttl_ms(r.link_expires_seconds)?,
            from_copy: r.from_copy,
        })
        .await?;
    Ok(pb::StartRestoreResponse {
        restore: Some(restore_with_link(core, &restore).await),
    })
}
