//! `workers [list]` and `workers token create|list|revoke`: the connected workers with their
//! pools, and the pools' join tokens.

use repovault_proto::v1 as pb;

use super::{or_dash, pages};
use crate::admin_client::{Admin, CliError};
use crate::args::OutputFormat;
use crate::args::workers_args::{TokenCmd, WorkersArgs, WorkersCmd};
use crate::exit;
use crate::output::{self, errln, is_json, outln};

pub(super) async fn workers(
    c: &mut Admin,
    a: WorkersArgs,
    out: OutputFormat,
) -> Result<i32, CliError> {
    match a.cmd.unwrap_or(WorkersCmd::List) {
        WorkersCmd::List => list(c, out).await,
        WorkersCmd::Token(TokenCmd::Create { pool, expires_in }) => {
            let r = c
                .create_worker_token(pb::CreateWorkerTokenRequest {
                    pool,
                    expires_in_seconds: expires_in.map(|d| d.as_secs()),
                })
                .await?
                .into_inner();
            let t = r.token.clone().unwrap_or_default();
            if is_json(out) {
                output::json(&r);
            } else {
                // The token alone on stdout (`> FILE`); what it is on stderr.
                outln!("{}", r.secret);
                errln!(
                    "join token {} created for pool {} ({}); it is shown only this once: start workers with --join-token-file holding it",
                    t.id,
                    t.pool,
                    if t.expires_at.is_empty() {
                        "does not expire".to_string()
                    } else {
                        format!("expires {}", t.expires_at)
                    }
                );
            }
            Ok(exit::OK)
        }
        WorkersCmd::Token(TokenCmd::List { pool, page }) => {
            let pool = pool.unwrap_or_default();
            let shown = pages::follow(
                c,
                page,
                async |c: &mut Admin, page_size: u32, page_token: String| {
                    let r = c
                        .list_worker_tokens(pb::ListWorkerTokensRequest {
                            pool: pool.clone(),
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok::<_, CliError>((r.tokens, r.next_page_token))
                },
            )
            .await?;
            output::list(
                out,
                &shown.items,
                &[
                    "ID", "POOL", "STATE", "WORKERS", "CREATED", "BY", "EXPIRES", "REVOKED",
                ],
                |t| {
                    vec![
                        t.id.clone(),
                        t.pool.clone(),
                        state(t.state),
                        t.workers.to_string(),
                        t.created_at.clone(),
                        t.created_by.clone(),
                        or_dash(&t.expires_at),
                        if t.revoked_at.is_empty() {
                            "-".into()
                        } else {
                            format!("{} by {}", t.revoked_at, t.revoked_by)
                        },
                    ]
                },
            );
            pages::note_more(out, shown.items.len(), shown.more, "join tokens");
            Ok(exit::OK)
        }
        WorkersCmd::Token(TokenCmd::Revoke { id }) => {
            let r = c
                .revoke_worker_token(pb::RevokeWorkerTokenRequest { id })
                .await?
                .into_inner();
            if is_json(out) {
                output::json(&r);
            } else {
                let t = r.token.clone().unwrap_or_default();
                outln!(
                    "join token {} of pool {} revoked: {} worker(s) refused{}, {} task(s) back in the queue",
                    t.id,
                    t.pool,
                    r.workers_refused.len(),
                    if r.workers_refused.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", r.workers_refused.join(", "))
                    },
                    r.tasks_requeued
                );
            }
            Ok(exit::OK)
        }
    }
}

async fn list(c: &mut Admin, out: OutputFormat) -> Result<i32, CliError> {
    let w = c
        .list_workers(pb::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    output::list(
        out,
        &w,
        &["ID", "NAME", "POOL", "RUNNING", "STATE", "LAST HEARTBEAT"],
        |w| {
            vec![
                w.id.clone(),
                w.name.clone(),
                w.pool.clone(),
                format!("{}/{}", w.running, w.slots),
                if w.draining {
                    "draining".into()
                } else {
                    "active".into()
                },
                w.last_heartbeat_at.clone(),
            ]
        },
    );
    Ok(exit::OK)
}

/// A token's state as the table shows it (the JSON spelling).
fn state(v: i32) -> String {
    match pb::WorkerTokenState::try_from(v) {
        Ok(pb::WorkerTokenState::Active) => "active",
        Ok(pb::WorkerTokenState::Expired) => "expired",
        Ok(pb::WorkerTokenState::Revoked) => "revoked",
        _ => "-",
    }
    .into()
}
