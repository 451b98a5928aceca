//! Download links that the storage signs itself, so a client fetches a download straight from
//! the bucket: an S3 presigned URL, a GCS V4 signed URL (with a service-account credential),
//! or an Azure SAS that repovault signs with the account key for exactly the lifetime asked
//! for (opendal's Azure presign always lasts an hour). Storage that cannot sign (fs, a GCS
//! location reached with a plain token or anonymously, an Azure location holding only a SAS)
//! gets `None`, and the coordinator serves the link itself.

use std::time::Duration;

use repovault_common::links::Link;
use repovault_common::storage::azure_sas::{SasScope, service_sas};
use repovault_common::storage::{StorageConfig, StorageKind};

use crate::error::{CoreError, CoreResult};

/// Clock skew allowed for between the coordinator and the storage: an Azure SAS is valid from
/// this long before it was signed. Azure's own guidance for SAS start times is 15 minutes.
const SAS_START_SKEW_SECS: i64 = 15 * 60;

/// A link to `path` of the storage `config`, valid until `expires_at` (unix seconds, `now`
/// being the present), or `None` when this storage does not sign links.
pub async fn sign(
    config: &StorageConfig,
    path: &str,
    now: i64,
    expires_at: i64,
) -> CoreResult<Option<Link>> {
    match config.kind {
        StorageKind::Fs | StorageKind::Memory => Ok(None),
        StorageKind::Gcs if config.get("credential").is_none() => Ok(None),
        StorageKind::S3 | StorageKind::Gcs => {
            presign(config, path, now, expires_at).await.map(Some)
        }
        StorageKind::Azblob => match config.get("account_key") {
            Some(key) => azure(config, key, path, now, expires_at).map(Some),
            None => Ok(None),
        },
    }
}

async fn presign(
    config: &StorageConfig,
    path: &str,
    now: i64,
    expires_at: i64,
) -> CoreResult<Link> {
    let op = config
        .operator()
        .map_err(|e| CoreError::Storage(e.to_string()))?;
    // A presigned URL counts its lifetime from its signing; one already expired cannot be
    // made, so a past expiry gets the shortest (a second).
    let lifetime = Duration::from_secs(u64::try_from(expires_at - now).unwrap_or(0).max(1));
    let req = op
        .presign_read(path, lifetime)
        .await
        .map_err(|e| CoreError::Storage(format!("presigning {path}: {e}")))?;
    Ok(Link {
        url: req.uri().to_string(),
        expires_at,
    })
}

fn azure(
    config: &StorageConfig,
    key: &str,
    path: &str,
    now: i64,
    expires_at: i64,
) -> CoreResult<Link> {
    let missing = |o: &str| CoreError::Storage(format!("azblob option {o} is missing"));
    let endpoint = config.get("endpoint").ok_or_else(|| missing("endpoint"))?;
    let account = config
        .get("account_name")
        .ok_or_else(|| missing("account_name"))?;
    let container = config
        .get("container")
        .ok_or_else(|| missing("container"))?;
    let blob = match config.get("prefix").map(|p| p.trim_matches('/')) {
        Some(p) if !p.is_empty() => format!("{p}/{}", path.trim_start_matches('/')),
        _ => path.trim_start_matches('/').to_string(),
    };
    let sas = service_sas(
        account,
        key,
        container,
        SasScope::Blob(&blob),
        "r",
        now - SAS_START_SKEW_SECS,
        expires_at,
    )
    .map_err(|e| CoreError::Storage(e.to_string()))?;
    let encoded: Vec<String> = blob
        .split('/')
        .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
        .collect();
    Ok(Link {
        url: format!(
            "{}/{container}/{}?{sas}",
            endpoint.trim_end_matches('/'),
            encoded.join("/")
        ),
        expires_at,
    })
}
