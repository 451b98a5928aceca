//! The storage-location calls: wire fields into typed values, then `storage_locations/`.

use std::collections::BTreeMap;

use repovault_common::secret::Secret;
use repovault_common::storage::StorageConfig;
use repovault_proto::v1 as pb;

use crate::coordinator::Coordinator;
use crate::error::{CoreError, CoreResult};
use crate::storage_locations::storage_probe::ProbeReport;
use crate::storage_locations::{LocationView, Role};

pub(super) async fn add(
    core: &Coordinator,
    r: pb::AddStorageLocationRequest,
) -> CoreResult<pb::AddStorageLocationResponse> {
    let kind = r
        .kind
        .parse()
        .map_err(|e: repovault_common::storage::StorageError| {
            CoreError::InvalidArgument(e.to_string())
        })?;
    let public = StorageConfig {
        kind,
        options: r.options.into_iter().collect(),
    };
    let secrets = |m: std::collections::HashMap<String, String>| -> BTreeMap<String, Secret> {
        m.into_iter().map(|(k, v)| (k, Secret::new(v))).collect()
    };
    let maintainer = (!r.maintainer_secrets.is_empty()).then(|| secrets(r.maintainer_secrets));
    let (view, probes) = core
        .locations
        .add(&r.name, public, secrets(r.writer_secrets), maintainer)
        .await?;
    Ok(pb::AddStorageLocationResponse {
        location: Some(location(&view)),
        probes: probes.iter().map(probe).collect(),
    })
}

pub(super) async fn list(core: &Coordinator) -> CoreResult<pb::ListStorageLocationsResponse> {
    Ok(pb::ListStorageLocationsResponse {
        locations: core.locations.list().await?.iter().map(location).collect(),
    })
}

pub(super) async fn check(
    core: &Coordinator,
    r: pb::CheckStorageLocationRequest,
) -> CoreResult<pb::CheckStorageLocationResponse> {
    let reports = core.locations.check(&r.name).await?;
    Ok(pb::CheckStorageLocationResponse {
        probes: reports.iter().map(probe).collect(),
    })
}

pub(super) async fn set_org(
    core: &Coordinator,
    r: pb::SetOrgStorageRequest,
) -> CoreResult<pb::SetOrgStorageResponse> {
    let mut org = None;
    if !r.storage.is_empty() {
        org = Some(core.locations.set_org_location(&r.org, &r.storage).await?);
    }
    if let Some(copy_to) = &r.copy_to {
        let target = (copy_to != "none").then_some(copy_to.as_str());
        org = Some(core.locations.set_org_copy(&r.org, target).await?);
    }
    if let Some(days) = r.tier_after_days {
        org = Some(
            crate::tiering::set_tier_after_days(&core.store, &core.locations, &r.org, days).await?,
        );
    }
    let org = org.ok_or_else(|| {
        CoreError::InvalidArgument(
            "nothing to set: give storage, copy_to or tier_after_days".into(),
        )
    })?;
    Ok(pb::SetOrgStorageResponse {
        org: Some(super::convert::org(&org)),
    })
}

pub(super) async fn move_org(
    core: &Coordinator,
    r: pb::MoveOrgStorageRequest,
) -> CoreResult<pb::MoveOrgStorageResponse> {
    let (org, report) = core.storage_move.move_org(&r.org, &r.to).await?;
    Ok(pb::MoveOrgStorageResponse {
        org: Some(super::convert::org(&org)),
        from: report.from,
        repos: report.repos,
        objects_copied: report.copied,
        bytes_copied: report.bytes,
        objects_verified: report.verified,
        cleanup_error: report.cleanup_error.unwrap_or_default(),
    })
}

pub(super) async fn lifecycle(
    core: &Coordinator,
    r: pb::GetStorageLifecycleRequest,
) -> CoreResult<pb::GetStorageLifecycleResponse> {
    let (kind, policy_json) =
        crate::tiering::lifecycle(&core.store, &core.locations, &r.org).await?;
    Ok(pb::GetStorageLifecycleResponse {
        kind: kind.as_str().to_string(),
        policy_json,
    })
}

fn location(v: &LocationView) -> pb::StorageLocation {
    pb::StorageLocation {
        name: v.name.clone(),
        kind: v.config.kind.as_str().to_string(),
        options: v.config.options.clone().into_iter().collect(),
        writer_secrets: v.writer_secrets.clone(),
        maintainer_secrets: v.maintainer_secrets.clone(),
        orgs: v.orgs.clone(),
        created_at: v
            .created_at_ms
            .map(crate::clock::format_ms)
            .unwrap_or_default(),
    }
}

fn probe(r: &ProbeReport) -> pb::StorageProbe {
    pb::StorageProbe {
        role: match r.role {
            Role::Writer => pb::StorageRole::Writer,
            Role::Maintainer => pb::StorageRole::Maintainer,
        }
        .into(),
        usable: r.usable(),
        steps: r
            .steps
            .iter()
            .map(|s| pb::StorageProbeStep {
                name: s.name.to_string(),
                done: s.done,
                as_wanted: s.as_wanted(),
                detail: s.detail.clone(),
            })
            .collect(),
    }
}
