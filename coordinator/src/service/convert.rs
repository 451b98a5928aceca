//! Records to protocol messages.

use repovault_proto::v1 as pb;

use crate::core::format_ms;
use crate::model::{BackupRecord, OrgRecord, RepoRecord, RepoStats, RestoreRecord};

fn opt_time(ms: Option<i64>) -> String {
    ms.map(format_ms).unwrap_or_default()
}

pub fn org(o: &OrgRecord) -> pb::Org {
    pb::Org {
        id: o.id.clone(),
        name: o.name.clone(),
        provider: o.provider.clone(),
        created_at: format_ms(o.created_at_ms),
    }
}

pub fn repo(r: &RepoRecord, s: &RepoStats) -> pb::Repo {
    pb::Repo {
        id: r.id.clone(),
        org: r.org_name.clone(),
        name: r.name.clone(),
        full_name: r.full_name(),
        url: r.url.clone(),
        has_token: r.sealed_token.is_some(),
        created_at: format_ms(r.created_at_ms),
        last_backup_id: s.last_backup_id.clone().unwrap_or_default(),
        last_backup_status: s.last_status.clone().unwrap_or_default(),
        last_backup_at: opt_time(s.last_finished_at_ms),
    }
}

pub fn backup(b: &BackupRecord) -> pb::Backup {
    pb::Backup {
        id: b.id.clone(),
        repo: format!("{}/{}", b.org_name, b.repo_name),
        org_id: b.org_id.clone(),
        repo_id: b.repo_id.clone(),
        r#type: b.backup_type.clone(),
        trigger: b.trigger.clone(),
        status: b.status.as_str().to_string(),
        error: b.error.clone().unwrap_or_default(),
        created_at: format_ms(b.created_at_ms),
        started_at: opt_time(b.started_at_ms),
        finished_at: opt_time(b.finished_at_ms),
        size_bytes: b.size_bytes,
        added_bytes: b.added_bytes,
        counts: Some(pb::Counts {
            branches: b.counts.branches,
            tags: b.counts.tags,
            commits: b.counts.commits,
            refs: b.counts.refs,
        }),
        snapshot_id: b.snapshot_id.clone().unwrap_or_default(),
        parent_snapshot_id: b.parent_snapshot_id.clone().unwrap_or_default(),
        task_id: b.task_id.clone(),
        attempt: b.attempt,
        bytes_received: b.bytes_received,
        priority: u32::from(b.priority),
        worker_id: b.worker_id.clone().unwrap_or_default(),
    }
}

pub fn restore(r: &RestoreRecord) -> pb::Restore {
    pb::Restore {
        id: r.id.clone(),
        backup_id: r.backup_id.clone(),
        repo: r.repo_full_name.clone(),
        r#type: r.restore_type.clone(),
        target: r.target.clone(),
        target_url: r.target_url.clone().unwrap_or_default(),
        status: r.status.as_str().to_string(),
        error: r.error.clone().unwrap_or_default(),
        created_at: format_ms(r.created_at_ms),
        finished_at: opt_time(r.finished_at_ms),
        refs_pushed: r.refs_pushed,
        artifact_bytes: r.artifact_bytes,
        artifact_sha256: r.artifact_sha256.clone().unwrap_or_default(),
        task_id: r.task_id.clone(),
    }
}
