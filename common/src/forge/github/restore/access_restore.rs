//! Access: the grants of an [`AccessPlan`] (see [`crate::forge::github::access`]), made in the
//! target. Direct collaborators are invited with their role (`PUT .../collaborators/USER`: a
//! member of the target organisation gets the grant at once, anyone else an invitation); team
//! grants go to the target organisation's team of the same slug. Each is matched in the target
//! first (the token's own user, a pending invitation, an existing collaborator or team grant)
//! and only added; what the target refuses is skipped with GitHub's answer, and what the plan
//! leaves out is reported in [`RestoreReport::access`](super::RestoreReport::access).

use std::collections::BTreeSet;

use serde_json::json;

use super::source::Source;
use super::{Engine, encode, refused, str_field};
use crate::forge::ForgeError;
use crate::forge::github::access::{self, AccessDoc, AccessScope, GrantKind, TargetTeams};
use crate::forge::github::rest_client::GitHubClient;

/// Which of `doc`'s teams `owner` has (`GET /orgs/{org}/teams/{team_slug}`): asked only when
/// `scope` restores team grants.
async fn target_teams(
    client: &GitHubClient,
    owner: &str,
    doc: &AccessDoc,
    scope: AccessScope,
) -> Result<Option<TargetTeams>, ForgeError> {
    if !scope.teams() || doc.teams.is_empty() {
        return Ok(None);
    }
    let mut out = TargetTeams::default();
    for t in &doc.teams {
        let path = format!("/orgs/{}/teams/{}", encode(owner), encode(&t.slug));
        match client.get_json(&path, None).await {
            Ok(_) => {
                out.present.insert(t.slug.clone());
            }
            Err(e) if e.status() == Some(404) => {
                out.absent.insert(
                    t.slug.clone(),
                    format!("{owner} has no team {} (teams are matched by slug)", t.slug),
                );
            }
            Err(e) if refused(&e) => {
                out.absent.insert(
                    t.slug.clone(),
                    format!("{owner}'s team {} could not be read: {e}", t.slug),
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(out))
}

/// The plan of restoring `doc` into `owner` with `scope`, the target's teams asked.
pub(super) async fn plan_for(
    client: &GitHubClient,
    owner: &str,
    doc: &AccessDoc,
    scope: AccessScope,
) -> Result<access::AccessPlan, ForgeError> {
    let teams = target_teams(client, owner, doc, scope).await?;
    Ok(access::plan(doc, scope, owner, teams.as_ref()))
}

/// Makes the grants of the access plan; the plan goes into the report.
pub(super) async fn access(engine: &mut Engine<'_>, src: &Source) -> Result<(), ForgeError> {
    let Some(doc) = &src.access else {
        return Ok(());
    };
    let plan = plan_for(engine.client, engine.owner, doc, engine.opts.access).await?;
    let collaborators = plan
        .grants
        .iter()
        .any(|g| g.kind == GrantKind::Collaborator);
    let (me, invited) = if collaborators {
        collaborators_there(engine).await?
    } else {
        (None, BTreeSet::new())
    };
    for g in &plan.grants {
        match g.kind {
            GrantKind::Collaborator => {
                if me.as_deref() == Some(g.name.as_str()) || invited.contains(&g.name) {
                    engine.reused("collaborator", "settings");
                    continue;
                }
                collaborator(engine, &g.name, &g.permission).await?;
            }
            GrantKind::Team => team(engine, &g.name, &g.permission).await?,
        }
    }
    engine.report.access = Some(plan);
    Ok(())
}

/// The token's own login and the logins with a pending invitation to the target.
async fn collaborators_there(
    engine: &mut Engine<'_>,
) -> Result<(Option<String>, BTreeSet<String>), ForgeError> {
    let me = engine
        .client
        .get_json("/user", None)
        .await?
        .body
        .and_then(|u| str_field(&u, "login").map(str::to_string));
    let invited = match engine
        .client
        .get_all(&engine.repo_path("/invitations"))
        .await
    {
        Ok(list) => list
            .iter()
            .filter_map(|i| str_field(&i["invitee"], "login").map(str::to_string))
            .collect(),
        Err(e) if refused(&e) => {
            engine.skip("collaborator invitations".into(), e.to_string());
            BTreeSet::new()
        }
        Err(e) => return Err(e),
    };
    Ok((me, invited))
}

/// Invites `user` with `permission` unless they already have access.
async fn collaborator(
    engine: &mut Engine<'_>,
    user: &str,
    permission: &str,
) -> Result<(), ForgeError> {
    let item = format!("collaborator {user}");
    let path = engine.repo_path(&format!("/collaborators/{}", encode(user)));
    match engine.client.get_json(&path, None).await {
        Ok(_) => {
            engine.reused("collaborator", "settings");
            return Ok(());
        }
        Err(e) if e.status() == Some(404) => {}
        Err(e) if refused(&e) => {
            engine.skip(item, e.to_string());
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    if !engine.user_exists(user).await? {
        engine.skip(item, format!("user {user} does not exist"));
        return Ok(());
    }
    let r = engine
        .put(&path, Some(&json!({ "permission": permission })))
        .await;
    if engine.attempt(item, r).await? {
        engine.created("collaborator", "settings");
    }
    Ok(())
}

/// Grants the target organisation's team `slug` `permission` unless it has access.
async fn team(engine: &mut Engine<'_>, slug: &str, permission: &str) -> Result<(), ForgeError> {
    let item = format!("team {slug}");
    let path = format!(
        "/orgs/{}/teams/{}/repos/{}/{}",
        engine.owner,
        encode(slug),
        engine.owner,
        engine.name
    );
    match engine.client.get_json(&path, None).await {
        Ok(_) => {
            engine.reused("team", "settings");
            return Ok(());
        }
        Err(e) if e.status() == Some(404) => {}
        Err(e) if refused(&e) => {
            engine.skip(item, e.to_string());
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    let r = engine
        .put(&path, Some(&json!({ "permission": permission })))
        .await;
    if engine.attempt(item, r).await? {
        engine.created("team", "settings");
    }
    Ok(())
}
