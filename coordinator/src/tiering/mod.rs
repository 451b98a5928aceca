//! Tiering: old packs on cheaper storage that stays readable online. repovault does not move
//! objects between tiers itself; it prints the lifecycle policy the cloud applies
//! (`lifecycle_policy.rs`), from each organisation's `tier_after_days`.

pub mod lifecycle_policy;

use crate::error::{CoreError, CoreResult, not_found};
use crate::storage_locations::StorageLocations;
use crate::store::{Batch, Store};

/// The lifecycle policy of `org_name`'s location, as JSON text, and the kind it is for.
pub async fn lifecycle(
    store: &Store,
    locations: &StorageLocations,
    org_name: &str,
) -> CoreResult<(repovault_common::storage::StorageKind, String)> {
    let org = store
        .org_by_name(org_name)
        .await?
        .ok_or_else(|| not_found("organisation", org_name))?;
    let config = locations.writer_config_for(&org.id).await?;
    let root = config
        .get("prefix")
        .map(|p| format!("{}/", p.trim_matches('/')))
        .filter(|p| p != "/")
        .unwrap_or_default();
    let prefixes: Vec<String> = store
        .org_repos(&org.id)
        .await?
        .iter()
        .map(|r| format!("{root}{}/{}/data/", r.org_id, r.id))
        .collect();
    let days = org
        .tier_after_days
        .unwrap_or(lifecycle_policy::DEFAULT_TIER_AFTER_DAYS);
    let doc = lifecycle_policy::policy(config.kind, &prefixes, days).ok_or_else(|| {
        CoreError::FailedPrecondition(format!(
            "organisation {org_name}'s storage is {}, which has no lifecycle policies",
            config.kind
        ))
    })?;
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CoreError::Internal(format!("rendering the policy: {e}")))?;
    Ok((config.kind, text))
}

/// Sets how many days `org_name`'s packs stay in the standard tier, checked against the least
/// its location's kind allows.
pub async fn set_tier_after_days(
    store: &Store,
    locations: &StorageLocations,
    org_name: &str,
    days: u32,
) -> CoreResult<crate::model::OrgRecord> {
    let mut org = store
        .org_by_name(org_name)
        .await?
        .ok_or_else(|| not_found("organisation", org_name))?;
    let kind = locations.writer_config_for(&org.id).await?.kind;
    let least = lifecycle_policy::minimum_days(kind);
    if days < least {
        return Err(CoreError::InvalidArgument(format!(
            "--tier-after-days {days}: {kind} moves objects to its infrequent-access tier after {least} days at the earliest"
        )));
    }
    org.tier_after_days = Some(days);
    let mut batch = Batch::default();
    batch.org(&org);
    store.apply(batch).await?;
    Ok(org)
}
