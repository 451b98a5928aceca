//! `backup download` and `restore link`: ZIP downloads behind links that expire.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use repovault_common::domain::{BackupId, RestoreId, RestoreTarget, RestoreType, TaskStatus};
use repovault_proto::v1 as pb;

use crate::admin_client::{Admin, CliError};
use crate::args::OutputFormat;
use crate::exit;
use crate::output::errln;
use crate::output::{self, fields, is_json};
use crate::output::{spelled, value};

use super::restore_cmd::get_restore;
use super::task_wait::{Bar, Ended, Task, Totals, completed, download_line, run_and_wait};

/// A restore's download link lines (`restore show`), when it has a download.
pub(super) fn link_fields(r: &pb::Restore) {
    let mut f = Vec::new();
    if r.artifact_bytes > 0 {
        f.push(("artifact_bytes", r.artifact_bytes.to_string()));
        f.push(("artifact_sha256", r.artifact_sha256.clone()));
    }
    if !r.download_url.is_empty() {
        f.push(("download_url", r.download_url.clone()));
        f.push(("link_expires_at", r.download_expires_at.clone()));
    }
    if r.artifact_expired {
        f.push(("artifact", "expired and deleted".to_string()));
    }
    if !f.is_empty() {
        fields(&f);
    }
}

/// `restore link ID --expires D`.
pub(super) async fn restore_link(
    c: &mut Admin,
    id: &RestoreId,
    expires: Duration,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .mint_download_link(pb::MintDownloadLinkRequest {
            id: id.into(),
            expires_seconds: expires.as_secs(),
        })
        .await?
        .into_inner();
    if is_json(out) {
        output::json(&r);
    } else {
        fields(&[("url", r.url), ("expires_at", r.expires_at)]);
    }
    Ok(exit::OK)
}

/// `backup download BACKUP_ID --to FILE --expires D`: a `download_zip` restore, watched; then its
/// link fetched over HTTP into a temporary file beside FILE, checked against the restore's size
/// and SHA-256, and renamed to FILE. FILE is either absent or a complete, checked ZIP.
pub(super) async fn backup_download(
    c: &mut Admin,
    backup_id: &BackupId,
    to: &Path,
    expires: Duration,
    out: OutputFormat,
) -> Result<i32, CliError> {
    if to.symlink_metadata().is_ok() {
        return Err(CliError::usage(format!("--to {} exists", to.display())));
    }
    let r = c
        .start_restore(pb::StartRestoreRequest {
            backup_id: backup_id.into(),
            r#type: RestoreType::DownloadZip.into(),
            target: RestoreTarget::Download.into(),
            link_expires_seconds: expires.as_secs(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .restore
        .unwrap_or_default();
    let task = Task {
        id: &r.task_id,
        what: format!("restore {}", r.id),
    };
    // The ZIP is fetched once the restore has completed, before anything is printed.
    let fetch = async |c: &mut Admin| {
        let r = get_restore(c, r.id.clone()).await?;
        if value(r.status) == Some(TaskStatus::Completed) {
            if r.download_url.is_empty() {
                return Err(CliError::failed(format!(
                    "restore {} completed but has no download link (does the coordinator serve HTTP?)",
                    r.id
                )));
            }
            fetch_link(&r, to, out).await?;
        }
        Ok(r)
    };
    let human = |r: &pb::Restore| {
        if value(r.status) != Some(TaskStatus::Completed) {
            errln!(
                "restore {} {}: {}; nothing was written",
                r.id,
                spelled::<TaskStatus>(r.status),
                r.error
            );
            return;
        }
        fields(&[
            ("file", to.display().to_string()),
            ("bytes", r.artifact_bytes.to_string()),
            ("sha256", r.artifact_sha256.clone()),
            ("restore", r.id.clone()),
            ("link", r.download_url.clone()),
            ("link_expires_at", r.download_expires_at.clone()),
        ]);
    };
    let code = |r: &pb::Restore| completed(r.status);
    run_and_wait(c, out, Some(task), Ended { fetch, human, code }).await
}

/// Downloads `r`'s link to a temporary file beside `to`, checks size and SHA-256, renames.
async fn fetch_link(r: &pb::Restore, to: &Path, out: OutputFormat) -> Result<(), CliError> {
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| CliError::failed(format!("{}: {e}", parent.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".repovault-download-")
        .suffix(".zip.partial")
        .tempfile_in(parent)
        .map_err(|e| CliError::failed(format!("temporary file in {}: {e}", parent.display())))?;
    let failed = |e: reqwest::Error| CliError::failed(format!("fetching the download link: {e}"));
    // The coordinator's HTTP port is bounded as its gRPC calls are: connecting, and each read
    // (a silent peer fails the download, a slow one that keeps sending does not).
    let t = crate::connection::timeouts();
    let client = reqwest::Client::builder()
        .connect_timeout(crate::connection::CONNECT_TIMEOUT.min(t.request))
        .read_timeout(t.request)
        .build()
        .map_err(failed)?;
    let mut resp = client.get(&r.download_url).send().await.map_err(failed)?;
    if !resp.status().is_success() {
        let code = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(CliError::failed(format!(
            "download link refused: {code}: {}",
            body.trim()
        )));
    }
    let mut bar = Bar::on_terminal(out);
    let total = resp.content_length().unwrap_or(r.artifact_bytes);
    let mut hash = Sha256::new();
    let mut got = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        hash.update(&chunk);
        got += chunk.len() as u64;
        tmp.write_all(&chunk)
            .map_err(|e| CliError::failed(format!("{}: {e}", tmp.path().display())))?;
        if let Some(b) = &mut bar {
            b.show("download", Totals::bytes(got, total), download_line(&r.id));
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    let actual = hex::encode(hash.finalize());
    if got != r.artifact_bytes || actual != r.artifact_sha256 {
        return Err(CliError::failed(format!(
            "download of restore {} is corrupt: {got} of {} bytes, sha256 {actual} (expected {}); nothing was written to {}",
            r.id,
            r.artifact_bytes,
            r.artifact_sha256,
            to.display()
        )));
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| CliError::failed(format!("{}: {e}", tmp.path().display())))?;
    tmp.persist_noclobber(to)
        .map_err(|e| CliError::failed(format!("writing {}: {}", to.display(), e.error)))?;
    Ok(())
}
