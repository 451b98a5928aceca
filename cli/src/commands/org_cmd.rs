//! `org ...`: add, list, show, set, sync, key export, connect and disconnect, retention, purge.

use repovault_common::domain::{FromWire, Provider};
use repovault_proto::v1 as pb;

use super::pages;
use crate::admin_client::{Admin, CliError};
use crate::args::{OrgCmd, OrgKeyCmd, OrgRetentionArgs, OutputFormat};
use crate::exit;
use crate::output::outln;
use crate::output::{self, fields, is_json};
use crate::output::{spelled, value};

use super::{or_dash, org_add, purge_done};

pub(super) async fn org(c: &mut Admin, cmd: OrgCmd, out: OutputFormat) -> Result<i32, CliError> {
    match cmd {
        OrgCmd::Add(a) => {
            let req = org_add::request(&a, |k| std::env::var(k).ok())?;
            let r = c.add_org(req).await?.into_inner();
            let o = r.org.clone().unwrap_or_default();
            if is_json(out) {
                output::json(&o);
            } else {
                outln!(
                    "organisation {} added (id {}, provider {}{})",
                    o.name,
                    o.id,
                    spelled::<Provider>(o.provider),
                    if value::<Provider>(o.provider).is_some_and(Provider::is_forge) {
                        format!(", {}", credential(&o))
                    } else {
                        String::new()
                    }
                );
                if let Some(s) = &r.sync {
                    print_sync(s);
                }
            }
        }
        OrgCmd::List { page } => {
            let shown = pages::follow(
                c,
                page,
                async |c: &mut Admin, page_size: u32, page_token: String| {
                    let r = c
                        .list_orgs(pb::ListOrgsRequest {
                            page_size,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok::<_, CliError>((r.orgs, r.next_page_token))
                },
            )
            .await?;
            let orgs = shown.items;
            output::list(
                out,
                &orgs,
                &["NAME", "ID", "PROVIDER", "API URL", "CREDENTIAL", "CREATED"],
                |o| {
                    vec![
                        o.name.clone(),
                        o.id.clone(),
                        spelled::<Provider>(o.provider),
                        or_dash(&o.api_url),
                        credential(o),
                        o.created_at.clone(),
                    ]
                },
            );
            pages::note_more(out, orgs.len(), shown.more, "organisations");
        }
        OrgCmd::Show { org } => {
            let r = c.get_org(pb::GetOrgRequest { org }).await?.into_inner();
            let o = r.org.clone().unwrap_or_default();
            output::show(out, &r, |r| {
                fields(&[
                    ("name", o.name.clone()),
                    ("id", o.id.clone()),
                    ("provider", spelled::<Provider>(o.provider)),
                    ("api_url", or_dash(&o.api_url)),
                    ("credential", credential(&o)),
                    (
                        "ca_cert",
                        if o.has_ca_cert {
                            "yes".into()
                        } else {
                            "-".into()
                        },
                    ),
                    ("created_at", o.created_at.clone()),
                    ("last_sync_at", or_dash(&o.last_sync_at)),
                    ("schedule", schedule_text(&o)),
                    (
                        "repositories",
                        format!(
                            "{} ({} archived, {} deleted)",
                            r.repos, r.archived, r.deleted
                        ),
                    ),
                ])
            });
        }
        OrgCmd::Set(a) => {
            let schedule_given = a.schedule.is_some()
                || a.timezone.is_some()
                || a.full_every_days.is_some()
                || a.drill.is_some();
            let storage_given =
                a.storage.is_some() || a.copy_to.is_some() || a.tier_after_days.is_some();
            if !schedule_given && !storage_given {
                return Err(CliError::usage(
                    "nothing to set: give --schedule, --timezone, --full-every-days, --drill, --storage, --copy-to or --tier-after-days",
                ));
            }
            if storage_given {
                let o = c
                    .set_org_storage(pb::SetOrgStorageRequest {
                        org: a.org.clone(),
                        storage: a.storage.clone().unwrap_or_default(),
                        copy_to: a.copy_to.clone(),
                        tier_after_days: a.tier_after_days,
                    })
                    .await?
                    .into_inner()
                    .org
                    .unwrap_or_default();
                if !schedule_given {
                    if is_json(out) {
                        output::json(&o);
                    } else {
                        outln!(
                            "{}: storage {}; second copy {}",
                            o.name,
                            o.storage,
                            if o.copy_to.is_empty() {
                                "none"
                            } else {
                                &o.copy_to
                            }
                        );
                    }
                    return Ok(0);
                }
            }
            let o = c
                .set_org_schedule(pb::SetOrgScheduleRequest {
                    org: a.org,
                    schedule: a.schedule,
                    timezone: a.timezone,
                    full_every_days: a.full_every_days,
                    drill: a.drill,
                })
                .await?
                .into_inner()
                .org
                .unwrap_or_default();
            if is_json(out) {
                output::json(&o);
            } else {
                outln!(
                    "{}: schedule {}; drills {}",
                    o.name,
                    schedule_text(&o),
                    o.drill
                );
            }
        }
        OrgCmd::Disconnect { org } => {
            return org_connected(c, org, false, out).await;
        }
        OrgCmd::Connect { org } => {
            return org_connected(c, org, true, out).await;
        }
        OrgCmd::Retention(a) => return org_retention(c, a, out).await,
        OrgCmd::Purge { org, confirm } => {
            return org_purge(c, org, confirm, out).await;
        }
        OrgCmd::Update(a) => return org_update(c, a, out).await,
        OrgCmd::Sync { org } => {
            let s = c.sync_org(pb::SyncOrgRequest { org }).await?.into_inner();
            if is_json(out) {
                output::json(&s);
            } else {
                print_sync(&s);
            }
        }
        OrgCmd::Key(OrgKeyCmd::Export { org, to }) => {
            if to.exists() {
                return Err(CliError::usage(format!(
                    "{} exists; choose a new file (keys are never overwritten)",
                    to.display()
                )));
            }
            let r = c
                .export_org_key(pb::ExportOrgKeyRequest { org: org.clone() })
                .await?
                .into_inner();
            repovault_common::crypto::write_private_file(&to, format!("{}\n", r.key).as_bytes())
                .map_err(|e| CliError::failed(format!("writing {}: {e}", to.display())))?;
            if is_json(out) {
                output::json(&serde_json::json!({"org": org, "org_id": r.org_id, "file": to}));
            } else {
                outln!(
                    "key of {org} written to {} (mode 0600); it opens the snapshot repositories under <storage>/{}/",
                    to.display(),
                    r.org_id
                );
            }
        }
    }
    Ok(exit::OK)
}

/// `daily (Europe/Berlin), full every 7 days`, or `-`.
fn schedule_text(o: &pb::Org) -> String {
    if o.schedule.is_empty() {
        return "-".into();
    }
    let tz = if o.timezone.is_empty() {
        "UTC"
    } else {
        &o.timezone
    };
    format!(
        "{} ({tz}), full every {} days",
        o.schedule, o.full_every_days
    )
}

/// The credential kind, never the secret: `token`, `app <id> installation <id>`, or `-`.
fn credential(o: &pb::Org) -> String {
    match o.credential.as_str() {
        "app" => format!("app {} installation {}", o.app_id, o.installation_id),
        "" | "none" => "-".into(),
        other => other.to_string(),
    }
}

fn print_sync(s: &pb::SyncOrgResponse) {
    outln!(
        "{}: {} listed, {} added, {} renamed, {} archived, {} unarchived, {} deleted, {} restored, {} unchanged",
        s.org,
        s.listed,
        s.added.len(),
        s.renamed.len(),
        s.archived.len(),
        s.unarchived.len(),
        s.deleted.len(),
        s.restored.len(),
        s.unchanged
    );
    for n in &s.added {
        outln!("  added       {}/{n}", s.org);
    }
    for r in &s.renamed {
        outln!(
            "  renamed     {}/{} -> {}/{} (id {})",
            s.org,
            r.from,
            s.org,
            r.to,
            r.repo_id
        );
    }
    for (what, names) in [
        ("archived", &s.archived),
        ("unarchived", &s.unarchived),
        ("deleted", &s.deleted),
        ("restored", &s.restored),
    ] {
        for n in names {
            outln!("  {what:<11} {}/{n}", s.org);
        }
    }
}

async fn org_connected(
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
        outln!(
            "{} disconnected: schedules paused; credentials and backups kept",
            r.org
        );
    } else {
        outln!(
            "{} connected: schedules resumed; the next backups are full",
            r.org
        );
    }
    Ok(exit::OK)
}

async fn org_retention(
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

async fn org_purge(
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

/// `org update`: the organisation's provider is read first, so the new credential is checked
/// locally as that provider requires (the same checks as `org add`), then sent once.
async fn org_update(
    c: &mut Admin,
    a: crate::args::OrgUpdateArgs,
    out: OutputFormat,
) -> Result<i32, CliError> {
    let org = c
        .get_org(pb::GetOrgRequest { org: a.org.clone() })
        .await?
        .into_inner()
        .org
        .unwrap_or_default();
    let provider = <Provider as FromWire>::from_wire(org.provider, "provider")
        .map_err(|e| CliError::failed(format!("organisation {}: {e}", a.org)))?;
    if !provider.is_forge() {
        return Err(CliError::usage(format!(
            "organisation {} is plain git: it has no credential of its own (change a repository's token with `repovault repo update ORG/NAME`)",
            a.org
        )));
    }
    let as_add = crate::args::OrgAddArgs {
        name: a.org.clone(),
        provider: provider.as_str().to_string(),
        api_url: None,
        credential: a.credential,
        ca_cert: None,
    };
    let req = org_add::request(&as_add, |k| std::env::var(k).ok())?;
    let r = c
        .update_org_credential(pb::UpdateOrgCredentialRequest {
            org: a.org,
            token: req.token,
            app_id: req.app_id,
            private_key_pem: req.private_key_pem,
            installation_id: req.installation_id,
        })
        .await?
        .into_inner();
    let o = r.org.unwrap_or_default();
    if is_json(out) {
        output::json(&o);
    } else {
        outln!(
            "organisation {}: credential replaced ({}; {} repositories listed with it)",
            o.name,
            o.credential,
            r.listed
        );
    }
    Ok(exit::OK)
}
