//! Stored records keep their form across the typed ids: a record written when the ids were
//! plain strings reads back with the same ids, and writes back the same JSON.

use super::*;

const SNAPSHOT: &str = "e90cf774d7dbf31d74ab8b89cb7404596d71146d28cbc04f86305e5854d249d5";
const PARENT: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A task record as the coordinator wrote it before ids were types (field order included).
const TASK: &str = r#"{"id":"0190c3b2a1f27c3e8d4b5a6978fedcba","kind":"backup","org_id":"o1a2b3c4d5e6","repo_id":"rk2j9x0a1b2c","subject_id":"rk2j9x0a1b2c-lq3k9x2fab1","priority":8,"enqueued_at_ms":1700000000000,"seq":7,"lease":{"state":{"state":"leased","worker_id":"wk2j9x0a1b2c","expires_at_ms":1700000060000},"attempt":1,"failures":0,"max_attempts":3,"last_error":null,"interruptions":0},"idempotency_key":"backup:rk2j9x0a1b2c:full:manual","committed_attempt":null}"#;

#[test]
fn a_task_record_written_with_string_ids_reads_and_writes_back_unchanged() {
    let t: TaskRecord = serde_json::from_str(TASK).expect("reads");
    assert_eq!(t.id.as_str(), "0190c3b2a1f27c3e8d4b5a6978fedcba");
    assert_eq!(t.org_id.as_str(), "o1a2b3c4d5e6");
    assert_eq!(t.repo_id.as_str(), "rk2j9x0a1b2c");
    assert_eq!(
        t.backup_subject().expect("a backup id").as_str(),
        "rk2j9x0a1b2c-lq3k9x2fab1"
    );
    assert_eq!(serde_json::to_string(&t).expect("writes"), TASK);
}

#[test]
fn backup_restore_and_drill_records_written_with_string_ids_keep_their_ids() {
    let backup = format!(
        r#"{{"id":"rk2j9x0a1b2c-lq3k9x2fab1","org_id":"o1a2b3c4d5e6","repo_id":"rk2j9x0a1b2c","org_name":"acme","repo_name":"web","backup_type":"full","trigger":"manual","status":"completed","error":null,"created_at_ms":1,"started_at_ms":2,"finished_at_ms":3,"size_bytes":10,"added_bytes":5,"counts":{{"branches":1,"tags":0,"commits":3,"refs":1}},"snapshot_id":"{SNAPSHOT}","parent_snapshot_id":"{PARENT}","task_id":"0190c3b2a1f27c3e8d4b5a6978fedcba","attempt":1,"bytes_received":7,"priority":8,"worker_id":"wk2j9x0a1b2c","verification":{{"status":"verified","checks":[],"run":"manual","finished_at_ms":4,"packs_read":0,"bytes_read":0,"task_id":"0190c3b2a1f27c3e8d4b5a6978fedcbb"}}}}"#
    );
    let b: BackupRecord = serde_json::from_str(&backup).expect("backup reads");
    assert_eq!(b.id.as_str(), "rk2j9x0a1b2c-lq3k9x2fab1");
    assert_eq!(
        (b.org_id.as_str(), b.repo_id.as_str()),
        ("o1a2b3c4d5e6", "rk2j9x0a1b2c")
    );
    assert_eq!(
        b.snapshot_id.as_ref().map(SnapshotId::as_str),
        Some(SNAPSHOT)
    );
    assert_eq!(
        b.parent_snapshot_id.as_ref().map(SnapshotId::as_str),
        Some(PARENT)
    );
    assert_eq!(b.task_id.as_str(), "0190c3b2a1f27c3e8d4b5a6978fedcba");
    let v = b.verification.as_ref().expect("verification");
    assert_eq!(
        v.task_id.as_ref().map(TaskId::as_str),
        Some("0190c3b2a1f27c3e8d4b5a6978fedcbb")
    );
    same_ids(
        &backup,
        &b,
        &[
            "id",
            "org_id",
            "repo_id",
            "snapshot_id",
            "parent_snapshot_id",
            "task_id",
        ],
    );

    let restore = r#"{"id":"s0190c3b2a1f27c3e8d4b5a6978fedcba","backup_id":"rk2j9x0a1b2c-lq3k9x2fab1","org_id":"o1a2b3c4d5e6","repo_id":"rk2j9x0a1b2c","repo_full_name":"acme/web","restore_type":"full_repo","target":"download","target_url":null,"sealed_target_token":null,"status":"pending","error":null,"created_at_ms":1,"finished_at_ms":null,"refs_pushed":0,"artifact_path":null,"artifact_bytes":0,"artifact_sha256":null,"task_id":"0190c3b2a1f27c3e8d4b5a6978fedcba","target_credential_org_id":"o9z8y7x6w5v4"}"#;
    let r: RestoreRecord = serde_json::from_str(restore).expect("restore reads");
    assert_eq!(r.id.as_str(), "s0190c3b2a1f27c3e8d4b5a6978fedcba");
    assert_eq!(r.backup_id.as_str(), "rk2j9x0a1b2c-lq3k9x2fab1");
    assert_eq!(
        r.target_credential_org_id.as_ref().map(OrgId::as_str),
        Some("o9z8y7x6w5v4")
    );
    same_ids(
        restore,
        &r,
        &[
            "id",
            "backup_id",
            "org_id",
            "repo_id",
            "task_id",
            "target_credential_org_id",
        ],
    );

    let drill = format!(
        r#"{{"id":"d0190c3b2a1f27c3e8d4b5a6978fedcba","org_id":"o1a2b3c4d5e6","org_name":"acme","repo_id":"rk2j9x0a1b2c","repo_full_name":"acme/web","backup_id":"rk2j9x0a1b2c-lq3k9x2fab1","snapshot_id":"{SNAPSHOT}","trigger":"schedule","status":"pending","created_at_ms":1,"task_id":"0190c3b2a1f27c3e8d4b5a6978fedcba"}}"#
    );
    let d: DrillRecord = serde_json::from_str(&drill).expect("drill reads");
    assert_eq!(d.id.as_str(), "d0190c3b2a1f27c3e8d4b5a6978fedcba");
    assert_eq!(d.snapshot_id.as_str(), SNAPSHOT);
    same_ids(
        &drill,
        &d,
        &[
            "id",
            "org_id",
            "repo_id",
            "backup_id",
            "snapshot_id",
            "task_id",
        ],
    );
}

#[test]
fn an_empty_string_stored_in_an_optional_id_reads_as_none() {
    let stats = r#"{"last_backup_id":"","last_status":null,"last_finished_at_ms":null,"last_success_id":"","last_success_at_ms":null,"last_snapshot_id":"","completed_total":0,"failed_total":0,"added_bytes_total":0}"#;
    let s: RepoStats = serde_json::from_str(stats).expect("stats read");
    assert_eq!(
        (s.last_backup_id, s.last_success_id, s.last_snapshot_id),
        (None, None, None)
    );

    let backup = r#"{"id":"rk2j9x0a1b2c-lq3k9x2fab1","org_id":"o1a2b3c4d5e6","repo_id":"rk2j9x0a1b2c","org_name":"acme","repo_name":"web","backup_type":"full","trigger":"manual","status":"failed","error":"x","created_at_ms":1,"started_at_ms":null,"finished_at_ms":3,"size_bytes":0,"added_bytes":0,"counts":{"branches":0,"tags":0,"commits":0,"refs":0},"snapshot_id":"","parent_snapshot_id":"","task_id":"0190c3b2a1f27c3e8d4b5a6978fedcba","attempt":1,"bytes_received":0,"priority":8,"worker_id":null,"verification":{"status":"pending","run":"manual","task_id":""}}"#;
    let b: BackupRecord = serde_json::from_str(backup).expect("backup reads");
    assert_eq!((b.snapshot_id, b.parent_snapshot_id), (None, None));
    assert_eq!(b.verification.expect("verification").task_id, None);

    // Absent and null read as none too.
    let s: RepoStats = serde_json::from_str(r#"{"last_backup_id":null,"last_status":null,"last_finished_at_ms":null,"last_success_at_ms":null,"completed_total":0,"failed_total":0,"added_bytes_total":0}"#).expect("absent");
    assert_eq!(
        (s.last_backup_id, s.last_success_id, s.last_snapshot_id),
        (None, None, None)
    );
}

/// The id fields of `record` as written are those of `stored`.
fn same_ids<T: serde::Serialize>(stored: &str, record: &T, keys: &[&str]) {
    let before: serde_json::Value = serde_json::from_str(stored).expect("json");
    let after = serde_json::to_value(record).expect("writes");
    for k in keys {
        assert_eq!(after[k], before[k], "{k}");
    }
}
