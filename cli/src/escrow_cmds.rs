//! Retention, deletion, purge, connection and escrow commands (issue 6).

use repovault_proto::v1 as pb;

use crate::args::{EscrowCmd, OrgRetentionArgs, OutputFormat};
use crate::client::{Admin, CliError};
use crate::exit;
use crate::output::{self, fields, is_json};

fn purge_done(out: OutputFormat, what: &str, r: &pb::PurgeResponse) {
    if is_json(out) {
        output::json(&serde_json::json!({"purged": what, "backups_deleted": r.backups_deleted}));
    } else {
        println!(
            "{what} purged: {} backups and the snapshot data deleted",
            r.backups_deleted
        );
    }
}

pub async fn org_purge(
    c: &mut Admin,
    org: String,
    confirm: bool,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .purge_org(pb::PurgeOrgRequest {
            org: org.clone(),
            confirm,
        })
        .await?
        .into_inner();
    purge_done(out, &format!("organisation {org}"), &r);
    Ok(exit::OK)
}

pub async fn repo_purge(
    c: &mut Admin,
    repo: String,
    confirm: bool,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .purge_repo(pb::PurgeRepoRequest {
            repo: repo.clone(),
            confirm,
        })
        .await?
        .into_inner();
    purge_done(out, &repo, &r);
    Ok(exit::OK)
}

pub async fn org_connected(
    c: &mut Admin,
    org: String,
    connected: bool,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let r = c
        .set_org_connected(pb::SetOrgConnectedRequest { org, connected })
        .await?
        .into_inner();
    if is_json(out) {
        output::json(&r);
    } else if r.disconnected {
        println!(
            "{} disconnected: schedules paused; credentials and backups kept",
            r.org
        );
    } else {
        println!(
            "{} connected: schedules resumed; the next backups are full",
            r.org
        );
    }
    Ok(exit::OK)
}

pub async fn org_retention(
    c: &mut Admin,
    a: OrgRetentionArgs,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let changing = a.days.is_some()
        || a.keep_last.is_some()
        || a.keep_hourly.is_some()
        || a.keep_daily.is_some()
        || a.keep_weekly.is_some()
        || a.keep_monthly.is_some();
    // A read: any role, not audited.
    let current = c
        .get_retention(pb::GetRetentionRequest { org: a.org.clone() })
        .await?
        .into_inner()
        .policy
        .unwrap_or_default();
    let policy = if changing {
        // Unnamed counts stay as they were; a count of 0 turns it off.
        let keep = |new: Option<u32>, old: Option<u32>| match new {
            Some(0) => None,
            Some(n) => Some(n),
            None => old,
        };
        let p = pb::RetentionPolicy {
            days: a.days.unwrap_or(current.days),
            keep_last: keep(a.keep_last, current.keep_last),
            keep_hourly: keep(a.keep_hourly, current.keep_hourly),
            keep_daily: keep(a.keep_daily, current.keep_daily),
            keep_weekly: keep(a.keep_weekly, current.keep_weekly),
            keep_monthly: keep(a.keep_monthly, current.keep_monthly),
        };
        c.set_retention(pb::SetRetentionRequest {
            org: a.org.clone(),
            policy: Some(p),
            confirm: a.confirm,
        })
        .await?
        .into_inner()
        .policy
        .unwrap_or_default()
    } else {
        current
    };
    output::show(out, &policy, |p| {
        let n = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        fields(&[
            ("org", a.org.clone()),
            ("days", p.days.to_string()),
            ("keep-last", n(p.keep_last)),
            ("keep-hourly", n(p.keep_hourly)),
            ("keep-daily", n(p.keep_daily)),
            ("keep-weekly", n(p.keep_weekly)),
            ("keep-monthly", n(p.keep_monthly)),
        ])
    });
    Ok(exit::OK)
}

pub async fn backup_delete(c: &mut Admin, id: String, out: OutputFormat) -> Result<i32, CliError> {
    let r = c
        .delete_backup(pb::DeleteBackupRequest { id: id.clone() })
        .await?
        .into_inner();
    if is_json(out) {
        output::json(&r);
    } else {
        println!("backup {id} deleted (its data goes at the repository's next prune)");
    }
    Ok(exit::OK)
}

fn agreement_rows(list: &[pb::EscrowAgreement]) -> Vec<Vec<String>> {
    list.iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.repo.clone(),
                if e.active { "active" } else { "ended" }.into(),
                e.agreement.lines().next().unwrap_or_default().to_string(),
                e.created_at.clone(),
                if e.until.is_empty() {
                    "-".into()
                } else {
                    e.until.clone()
                },
                if e.released_at.is_empty() {
                    "-".into()
                } else {
                    e.released_at.clone()
                },
            ]
        })
        .collect()
}

const HEADERS: &[&str] = &[
    "ID",
    "REPOSITORY",
    "STATE",
    "AGREEMENT",
    "CREATED",
    "UNTIL",
    "RELEASED",
];

pub async fn escrow(c: &mut Admin, cmd: EscrowCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        EscrowCmd::Enable {
            repo,
            agreement,
            agreement_file,
            until,
            key_to,
        } => {
            // Checked before anything changes: the key is handed out once.
            if key_to.exists() {
                return Err(CliError::usage(format!(
                    "{} exists; choose a new file (keys are never overwritten)",
                    key_to.display()
                )));
            }
            let agreement = match (agreement, agreement_file) {
                (Some(a), None) => a,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| CliError::usage(format!("reading {}: {e}", f.display())))?,
                _ => {
                    return Err(CliError::usage(
                        "give the agreement with --agreement TEXT or --agreement-file FILE",
                    ));
                }
            };
            let r = c
                .enable_escrow(pb::EnableEscrowRequest {
                    repo: repo.clone(),
                    agreement,
                    until: until.unwrap_or_default(),
                })
                .await?
                .into_inner();
            repovault_common::crypto::write_private_file(
                &key_to,
                format!("{}\n", r.key).as_bytes(),
            )
            .map_err(|e| {
                CliError::failed(format!(
                    "escrow enabled, but writing the key to {} failed: {e}; release and enable again for a new key",
                    key_to.display()
                ))
            })?;
            let a = r.agreement.unwrap_or_default();
            if is_json(out) {
                output::json(&serde_json::json!({"agreement": a, "key_file": key_to}));
            } else {
                println!(
                    "escrow {} on {repo} active{}; key written to {} (mode 0600): it opens this repository's snapshot repository only",
                    a.id,
                    if a.until.is_empty() {
                        " until released".to_string()
                    } else {
                        format!(" until {}", a.until)
                    },
                    key_to.display()
                );
            }
        }
        EscrowCmd::Release { repo } => {
            let r = c
                .release_escrow(pb::ReleaseEscrowRequest { repo: repo.clone() })
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r);
            } else {
                println!("{repo}: {} escrow agreement(s) released", r.released.len());
            }
        }
        EscrowCmd::List { repo } => {
            let r = c
                .list_escrows(pb::ListEscrowsRequest {
                    repo: repo.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r.agreements);
            } else {
                output::table(HEADERS, &agreement_rows(&r.agreements));
            }
        }
    }
    Ok(exit::OK)
}
