//! One builder arm per storage kind, and the request policy every remote kind shares.
//!
//! Remote operators never read credentials from the process environment, profile files or
//! instance metadata (`disable_config_load`, `disable_ec2_metadata`, `disable_vm_metadata`): a
//! worker reaches storage only with what its lease carries, so two tasks on one worker for two
//! clients can never mix up whose credentials they use.

use std::time::Duration;

use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};

use super::{MEMORY_STORES, StorageConfig, StorageError, StorageKind, TMP_DIR};

/// Bound of one request that moves no body (stat, list page, delete, the completion of a
/// multipart upload). opendal's own default; a metadata call that has not answered in a minute
/// is a stalled connection, not a slow service.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound of one read or write of a body chunk that makes no progress. S3 itself drops a
/// connection that sends no data for about 20 s (its `RequestTimeout` error); 30 s leaves room
/// for a loaded client without waiting on a dead peer for long.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// Retries of a request that failed transiently (opendal marks throttling, 5xx and connection
/// errors temporary), with exponential backoff and full jitter from [`RETRY_MIN_DELAY`] to
/// [`RETRY_MAX_DELAY`]: about 30 s in all, which outlasts the throttling bursts (S3's 503
/// SlowDown, Azure's 503 ServerBusy) both vendors tell clients to back off from, while a storage
/// that is down fails the task within a minute instead of holding its lease.
pub const RETRY_MAX_TIMES: usize = 4;
const RETRY_MIN_DELAY: Duration = Duration::from_millis(500);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(16);

/// Objects larger than this are uploaded in parts (S3 multipart upload, Azure blocks, GCS
/// resumable upload) instead of one PUT, so a transient failure retries one part instead of the
/// whole object. Restic data packs are mostly far smaller; large ones come from big files.
pub const MULTIPART_THRESHOLD: usize = 32 * 1024 * 1024;

/// Size of one part of a multipart upload: above S3's 5 MiB minimum, a multiple of GCS's
/// 256 KiB resumable chunk, and with S3's 10,000-part ceiling it allows objects up to 156 GiB.
pub const MULTIPART_PART_SIZE: usize = 16 * 1024 * 1024;

/// Parts of one object in flight at once.
pub const MULTIPART_CONCURRENCY: usize = 4;

/// Refuses credential combinations the kind cannot use, naming the options involved.
pub(super) fn validate_credentials(c: &StorageConfig) -> Result<(), StorageError> {
    let invalid = |why: &str| Err(StorageError::Invalid(c.kind, why.to_string()));
    for flag in ["anonymous", "virtual_host_style"] {
        if let Some(v) = c.get(flag)
            && v != "true"
            && v != "false"
        {
            return invalid(&format!(
                "option {flag:?} is \"true\" or \"false\", not {v:?}"
            ));
        }
    }
    match c.kind {
        StorageKind::Fs | StorageKind::Memory => Ok(()),
        StorageKind::S3 => match (c.get("access_key_id"), c.get("secret_access_key")) {
            (Some(_), Some(_)) => Ok(()),
            (None, None) => invalid(
                "options access_key_id and secret_access_key are required (credentials are \
                     never taken from the environment or instance metadata)",
            ),
            _ => invalid("options access_key_id and secret_access_key go together"),
        },
        StorageKind::Azblob => match (c.get("account_key"), c.get("sas_token")) {
            (Some(_), Some(_)) => invalid("give option account_key or sas_token, not both"),
            (None, None) => invalid("option account_key or sas_token is required"),
            _ => Ok(()),
        },
        StorageKind::Gcs => {
            let given = ["credential", "token"]
                .into_iter()
                .filter(|o| c.get(o).is_some())
                .count()
                + usize::from(c.get("anonymous") == Some("true"));
            match given {
                1 => Ok(()),
                0 => invalid("option credential, token or anonymous = \"true\" is required"),
                _ => invalid("give one of options credential, token and anonymous"),
            }
        }
    }
}

/// The operator of a validated configuration.
pub(super) fn build(c: &StorageConfig) -> Result<Operator, StorageError> {
    let op = match c.kind {
        StorageKind::Fs => return fs(c),
        StorageKind::Memory => return memory(c),
        StorageKind::S3 => s3(c)?,
        StorageKind::Azblob => azblob(c)?,
        StorageKind::Gcs => gcs(c)?,
    };
    // The timeout goes inside the retry so that each attempt is timed out, not the whole series.
    Ok(op
        .layer(
            TimeoutLayer::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_io_timeout(TRANSFER_TIMEOUT),
        )
        .layer(
            RetryLayer::new()
                .with_jitter()
                .with_max_times(RETRY_MAX_TIMES)
                .with_min_delay(RETRY_MIN_DELAY)
                .with_max_delay(RETRY_MAX_DELAY),
        ))
}

/// The object-store root: `/` or `/<prefix>/`.
fn root(c: &StorageConfig) -> String {
    match c.get("prefix").map(|p| p.trim_matches('/')) {
        Some(p) if !p.is_empty() => format!("/{p}/"),
        _ => "/".to_string(),
    }
}

fn fs(c: &StorageConfig) -> Result<Operator, StorageError> {
    let root = c.option("root")?;
    // opendal's fs service writes in place unless given an `atomic_write_dir`; with one, writes
    // land in a temporary file and are renamed into place, so a crash never leaves a truncated
    // object under its final name.
    let tmp = format!("{}/{TMP_DIR}", root.trim_end_matches('/'));
    let builder = opendal::services::Fs::default()
        .root(root)
        .atomic_write_dir(&tmp);
    Ok(Operator::new(builder)?)
}

fn memory(c: &StorageConfig) -> Result<Operator, StorageError> {
    let name = c.option("name")?;
    let mut stores = MEMORY_STORES.lock();
    let slot = stores
        .get_mut(name)
        .ok_or_else(|| StorageError::MemoryNotInProcess(name.to_string()))?;
    if let Some(op) = slot {
        return Ok(op.clone());
    }
    let op = Operator::new(opendal::services::Memory::default())?;
    *slot = Some(op.clone());
    Ok(op)
}

fn s3(c: &StorageConfig) -> Result<Operator, StorageError> {
    let mut b = opendal::services::S3::default()
        .root(&root(c))
        .bucket(c.option("bucket")?)
        .region(c.option("region")?)
        .disable_config_load()
        .disable_ec2_metadata();
    if let Some(endpoint) = c.get("endpoint") {
        b = b.endpoint(endpoint);
    }
    if let (Some(id), Some(secret)) = (c.get("access_key_id"), c.get("secret_access_key")) {
        b = b.access_key_id(id).secret_access_key(secret);
    }
    if let Some(token) = c.get("session_token") {
        b = b.session_token(token);
    }
    if c.get("virtual_host_style") == Some("true") {
        b = b.enable_virtual_host_style();
    }
    Ok(Operator::new(b)?)
}

fn azblob(c: &StorageConfig) -> Result<Operator, StorageError> {
    let mut b = opendal::services::Azblob::default()
        .root(&root(c))
        .container(c.option("container")?)
        .endpoint(c.option("endpoint")?)
        .account_name(c.option("account_name")?);
    if let Some(key) = c.get("account_key") {
        b = b.account_key(key);
    }
    if let Some(sas) = c.get("sas_token") {
        b = b.sas_token(sas.trim_start_matches('?'));
    }
    Ok(Operator::new(b)?)
}

fn gcs(c: &StorageConfig) -> Result<Operator, StorageError> {
    let mut b = opendal::services::Gcs::default()
        .root(&root(c))
        .bucket(c.option("bucket")?)
        .disable_config_load()
        .disable_vm_metadata();
    if let Some(endpoint) = c.get("endpoint") {
        b = b.endpoint(endpoint);
    }
    if let Some(credential) = c.get("credential") {
        b = b.credential(credential);
    }
    if let Some(token) = c.get("token") {
        b = b.token(token.to_string());
    }
    if c.get("anonymous") == Some("true") {
        b = b.skip_signature();
    }
    Ok(Operator::new(b)?)
}
