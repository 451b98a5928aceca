//! `escrow enable|release|list`: escrow agreements, and the per-repository key handed out once.

use repovault_proto::v1 as pb;

use super::pages;
use crate::admin_client::{Admin, CliError};
use crate::args::{EscrowCmd, OutputFormat};
use crate::exit;
use crate::output::outln;
use crate::output::{self, is_json};

pub(super) async fn escrow(
    c: &mut Admin,
    cmd: EscrowCmd,
    out: OutputFormat,
) -> Result<i32, CliError> {
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
                outln!(
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
                outln!("{repo}: {} escrow agreement(s) released", r.released.len());
            }
        }
        EscrowCmd::List { repo, page } => {
            let repo = repo.unwrap_or_default();
            let shown = pages::follow(
                c,
                page,
                async |c: &mut Admin, page_size: u32, page_token: String| {
                    let r = c
                        .list_escrows(pb::ListEscrowsRequest {
                            repo: repo.clone(),
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok::<_, CliError>((r.agreements, r.next_page_token))
                },
            )
            .await?;
            if is_json(out) {
                output::json(&shown.items);
            } else {
                output::table(HEADERS, &agreement_rows(&shown.items));
            }
            pages::note_more(out, shown.items.len(), shown.more, "escrow agreements");
        }
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
                storage_lock(e.storage_lock.as_ref()),
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
    "STORAGE LOCK",
];

/// The storage lock in a table cell: `locked until T`, or the state and why.
fn storage_lock(lock: Option<&pb::EscrowStorageLock>) -> String {
    let Some(l) = lock else {
        return "-".into();
    };
    match pb::EscrowLockStatus::try_from(l.status) {
        Ok(pb::EscrowLockStatus::Locked) => format!("locked until {}", l.locked_until),
        Ok(pb::EscrowLockStatus::Pending) => "pending".into(),
        Ok(pb::EscrowLockStatus::Unavailable) => format!("none: {}", l.detail),
        Ok(pb::EscrowLockStatus::Failed) if l.locked_until.is_empty() => {
            format!("failed: {}", l.detail)
        }
        Ok(pb::EscrowLockStatus::Failed) => format!(
            "locked until {}; last pass failed: {}",
            l.locked_until, l.detail
        ),
        _ => "-".into(),
    }
}
