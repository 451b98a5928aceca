//! Who has access to a repository and how: the `meta/settings/access.json` document
//! a backup writes, and the plan of what a restore grants from it.
//!
//! Why this exists: GitHub's collaborator list with `affiliation=all` (its default) names
//! everyone who reaches the repository: every member of a team with access, and every member of
//! the organisation through its base permission (owners too). A restore that invited each of
//! them as a direct collaborator of a repository in another organisation widened access: a plain
//! member of the source organisation became an outside collaborator of the target. So a backup
//! records, for each person, how they reach the repository ([`Via`]), and a restore grants only
//! direct collaborators unless its [`AccessScope`] says otherwise.
//!
//! The document (`format` [`ACCESS_FORMAT`]) is derived from four lists the backup also keeps
//! as GitHub sent them (`collaborators.json` with `affiliation=all`, `collaborators_direct.json`,
//! `collaborators_outside.json`, `teams.json`) and from each team's members. A backup made
//! before it existed has only `collaborators.json` (`affiliation=all`) and `teams.json`: read
//! through [`AccessDoc::legacy`], every person there is [`Via::Unknown`], and no restore scope
//! but [`AccessScope::All`] invites them (how they had access cannot be told any more, and
//! inviting everyone is exactly the widening this prevents).

use std::collections::{BTreeMap, BTreeSet};

use repovault_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `format` of `access.json` this build writes.
pub const ACCESS_FORMAT: u32 = 1;

/// How many names a plan's one-line account shows per group before "+N more": a plan of an
/// organisation with thousands of members stays one readable line.
const NAMES_SHOWN: usize = 10;

/// How a person reaches a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A grant on the repository itself (`affiliation=direct`).
    Direct,
    /// Membership of a team that has access to the repository.
    Team,
    /// Neither: organisation membership (its base permission, or being an owner).
    Organisation,
    /// A team or the organisation: the members of a team with access could not be read.
    TeamOrOrganisation,
    /// Not recorded: a backup made before repovault recorded how (its collaborators were listed
    /// with `affiliation=all` only).
    Unknown,
}

/// One person with access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub login: String,
    /// The highest role GitHub reports for them (`role_name`: `read`, `triage`, `write`,
    /// `maintain`, `admin` or a custom role's name). For someone with a direct grant and a team
    /// grant this is the higher of the two: GitHub's lists do not tell the direct grant apart.
    pub role: String,
    /// Every way they reach it, sorted; never empty.
    pub via: Vec<Via>,
    /// An outside collaborator (not a member of the owning organisation).
    #[serde(default)]
    pub outside: bool,
    /// The teams with access they belong to (slugs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
}

/// One team with access to the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamAccess {
    pub slug: String,
    #[serde(default)]
    pub name: String,
    /// As `PUT /orgs/{org}/teams/{team_slug}/repos/{owner}/{repo}` takes it: `pull`,
    /// `triage`, `push`, `maintain`, `admin` (or a custom role's name).
    pub permission: String,
    /// Its members' logins, sorted; `None` when they were not read (`members_unreadable`).
    #[serde(default)]
    pub members: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_unreadable: Option<String>,
}

impl TeamAccess {
    /// A team of `GET /repos/{owner}/{repo}/teams` (its `permission`, else the highest of its
    /// `permissions` flags), members not read yet. `None` without a slug.
    pub fn from_github(team: &Value) -> Option<TeamAccess> {
        let slug = team.get("slug").and_then(Value::as_str)?.to_string();
        let permission = team
            .get("permission")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| highest_flag(team, "pull").to_string());
        Some(TeamAccess {
            name: str_of(team, "name").unwrap_or(&slug).to_string(),
            slug,
            permission,
            members: None,
            members_unreadable: None,
        })
    }
}

/// Who has access to a repository and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDoc {
    /// [`ACCESS_FORMAT`]; 0 for a document read from a backup made before it
    /// ([`AccessDoc::legacy`]).
    pub format: u32,
    /// Sorted by login.
    pub people: Vec<Person>,
    /// Sorted by slug.
    pub teams: Vec<TeamAccess>,
}

fn str_of<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get(field).and_then(Value::as_str)
}

/// The highest of a `permissions` object's flags in GitHub's legacy names (`admin`,
/// `maintain`, `push`, `triage`, `pull`), or `fallback` when none is set.
fn highest_flag<'a>(v: &Value, fallback: &'a str) -> &'a str {
    let p = &v["permissions"];
    ["admin", "maintain", "push", "triage", "pull"]
        .into_iter()
        .find(|k| p.get(*k).and_then(Value::as_bool) == Some(true))
        .unwrap_or(fallback)
}

/// A collaborator's role: `role_name`, else from the `permissions` flags.
fn role_of(c: &Value) -> String {
    if let Some(role) = str_of(c, "role_name") {
        return role.to_string();
    }
    match highest_flag(c, "pull") {
        "push" => "write",
        "pull" => "read",
        other => other,
    }
    .to_string()
}

/// A role as `PUT /repos/{owner}/{repo}/collaborators/{username}` takes it (`pull`, `triage`,
/// `push`, `maintain`, `admin` or a custom role's name).
pub fn collaborator_permission(role: &str) -> String {
    match role {
        "read" => "pull".into(),
        "write" => "push".into(),
        other => other.into(),
    }
}

fn logins(list: &[Value]) -> BTreeMap<String, &Value> {
    list.iter()
        .filter_map(|c| str_of(c, "login").map(|l| (l.to_string(), c)))
        .collect()
}

impl AccessDoc {
    /// Classifies everyone of the four lists: `all`, `direct` and `outside` are
    /// `GET .../collaborators?affiliation=` answers, `teams` the repository's teams with their
    /// members (`None` where unreadable). Someone with neither a direct grant nor a team of
    /// `teams` reaches it through the organisation; when a team's members are unknown, that is
    /// [`Via::TeamOrOrganisation`].
    pub fn classify(
        all: &[Value],
        direct: &[Value],
        outside: &[Value],
        mut teams: Vec<TeamAccess>,
    ) -> AccessDoc {
        teams.sort_by(|a, b| a.slug.cmp(&b.slug));
        let (all, direct, outside) = (logins(all), logins(direct), logins(outside));
        let some_unread = teams.iter().any(|t| t.members.is_none());
        let everyone: BTreeSet<&String> = all.keys().chain(direct.keys()).collect();
        let people = everyone
            .into_iter()
            .filter_map(|login| {
                let doc = direct.get(login).or_else(|| all.get(login))?;
                let member_of: Vec<String> = teams
                    .iter()
                    .filter(|t| t.members.as_ref().is_some_and(|m| m.contains(login)))
                    .map(|t| t.slug.clone())
                    .collect();
                let mut via = Vec::new();
                if direct.contains_key(login) {
                    via.push(Via::Direct);
                }
                if !member_of.is_empty() {
                    via.push(Via::Team);
                }
                if via.is_empty() {
                    via.push(if some_unread {
                        Via::TeamOrOrganisation
                    } else {
                        Via::Organisation
                    });
                }
                Some(Person {
                    login: login.clone(),
                    role: role_of(doc),
                    via,
                    outside: outside.contains_key(login),
                    teams: member_of,
                })
            })
            .collect();
        AccessDoc {
            format: ACCESS_FORMAT,
            people,
            teams,
        }
    }

    /// A backup made before access was recorded: its `collaborators.json`
    /// (`affiliation=all`) and `teams.json`. Everyone is [`Via::Unknown`].
    pub fn legacy(collaborators: &[Value], teams: &[Value]) -> AccessDoc {
        let mut teams: Vec<TeamAccess> = teams.iter().filter_map(TeamAccess::from_github).collect();
        teams.sort_by(|a, b| a.slug.cmp(&b.slug));
        AccessDoc {
            format: 0,
            people: logins(collaborators)
                .into_iter()
                .map(|(login, c)| Person {
                    login,
                    role: role_of(c),
                    via: vec![Via::Unknown],
                    outside: false,
                    teams: Vec::new(),
                })
                .collect(),
            teams,
        }
    }
}

/// Which access a restore grants in the target. Conversions to and from the wire and the CLI
/// happen at those edges; this is the type everything between uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessScope {
    /// Direct collaborators only, invited with their role (the default: a restore never gives
    /// anyone access they did not have in their own right).
    #[default]
    Direct,
    /// Direct collaborators, and team grants: each as a grant to the target organisation's
    /// team of the same slug (its members there get access), skipped when it has none.
    Teams,
    /// Everyone: direct collaborators, team grants, and everyone else who had access (through
    /// the organisation, a team the target lacks, or unknown how) invited as a direct
    /// collaborator. Widens access on purpose.
    All,
}

impl AccessScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessScope::Direct => "direct",
            AccessScope::Teams => "teams",
            AccessScope::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<AccessScope> {
        match s {
            "direct" => Some(AccessScope::Direct),
            "teams" => Some(AccessScope::Teams),
            "all" => Some(AccessScope::All),
            _ => None,
        }
    }

    /// Whether team grants are restored.
    pub fn teams(self) -> bool {
        matches!(self, AccessScope::Teams | AccessScope::All)
    }
}

/// From the wire: unspecified (a client that does not know the field) is the default.
impl From<pb::RestoreAccess> for AccessScope {
    fn from(a: pb::RestoreAccess) -> AccessScope {
        match a {
            pb::RestoreAccess::Unspecified | pb::RestoreAccess::Direct => AccessScope::Direct,
            pb::RestoreAccess::Teams => AccessScope::Teams,
            pb::RestoreAccess::All => AccessScope::All,
        }
    }
}

impl From<AccessScope> for pb::RestoreAccess {
    fn from(s: AccessScope) -> pb::RestoreAccess {
        match s {
            AccessScope::Direct => pb::RestoreAccess::Direct,
            AccessScope::Teams => pb::RestoreAccess::Teams,
            AccessScope::All => pb::RestoreAccess::All,
        }
    }
}

/// What a grant gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// `PUT /repos/{owner}/{repo}/collaborators/{username}`: an invitation (or a grant at
    /// once to a member of the target organisation).
    Collaborator,
    /// `PUT /orgs/{org}/teams/{team_slug}/repos/{owner}/{repo}`.
    Team,
}

/// One grant a restore makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub kind: GrantKind,
    /// Login or team slug.
    pub name: String,
    /// As the PUT takes it.
    pub permission: String,
    /// How they had access in the source.
    pub why: String,
}

/// People or teams a restore leaves out, for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub reason: String,
    /// Logins, and teams as `team SLUG`.
    pub who: Vec<String>,
}

/// What a restore grants and leaves out, before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPlan {
    pub scope: AccessScope,
    /// Team grants first, then collaborators by login.
    pub grants: Vec<Grant>,
    pub left_out: Vec<LeftOut>,
}

/// The target organisation's teams among those a restore would grant, asked before it runs:
/// by slug, present or absent with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetTeams {
    pub present: BTreeSet<String>,
    pub absent: BTreeMap<String, String>,
}

/// Why someone without a direct grant had access, for the plan.
fn how(p: &Person, granted_teams: &BTreeSet<String>) -> String {
    if p.via.contains(&Via::Team) {
        let (restored, not): (Vec<&String>, Vec<&String>) =
            p.teams.iter().partition(|t| granted_teams.contains(*t));
        if !restored.is_empty() {
            return format!(
                "via team {} (restored as a team grant: the target's own members of it get access)",
                join(&restored)
            );
        }
        return format!("via team {} (not restored)", join(&not));
    }
    match p.via.first() {
        Some(Via::Organisation) => {
            "via the organisation only (its base permission, or an owner)".into()
        }
        Some(Via::TeamOrOrganisation) => {
            "via a team or the organisation (the team's members could not be read)".into()
        }
        _ => "unknown how (a backup made before repovault recorded who has access and how)".into(),
    }
}

fn join<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What restoring `doc` into `target_owner` with `scope` grants and leaves out. `teams` are the
/// target's teams as asked; `None` (an offline count) counts every team in scope as granted.
/// Pure: the restore acts on exactly this plan.
pub fn plan(
    doc: &AccessDoc,
    scope: AccessScope,
    target_owner: &str,
    teams: Option<&TargetTeams>,
) -> AccessPlan {
    let mut grants = Vec::new();
    let mut left: Vec<LeftOut> = Vec::new();
    let mut leave = |reason: String, who: String| match left.iter_mut().find(|l| l.reason == reason)
    {
        Some(l) => l.who.push(who),
        None => left.push(LeftOut {
            reason,
            who: vec![who],
        }),
    };
    let mut granted_teams = BTreeSet::new();
    for t in &doc.teams {
        let absent = teams.and_then(|tt| tt.absent.get(&t.slug));
        match (scope.teams(), absent) {
            (false, _) => leave(
                "team access is not restored by default (--access teams restores it as team grants)"
                    .into(),
                format!("team {}", t.slug),
            ),
            (true, Some(why)) => leave(why.clone(), format!("team {}", t.slug)),
            (true, None) => {
                granted_teams.insert(t.slug.clone());
                grants.push(Grant {
                    kind: GrantKind::Team,
                    name: t.slug.clone(),
                    permission: t.permission.clone(),
                    why: format!("team access in the source; {target_owner}'s team of that slug"),
                });
            }
        }
    }
    for p in &doc.people {
        let permission = collaborator_permission(&p.role);
        if p.via.contains(&Via::Direct) {
            grants.push(Grant {
                kind: GrantKind::Collaborator,
                name: p.login.clone(),
                permission,
                why: if p.outside {
                    "direct collaborator (outside collaborator)".into()
                } else {
                    "direct collaborator".into()
                },
            });
            continue;
        }
        let how = how(p, &granted_teams);
        let covered = p.teams.iter().any(|t| granted_teams.contains(t));
        if covered {
            leave(how, p.login.clone());
        } else if scope == AccessScope::All {
            grants.push(Grant {
                kind: GrantKind::Collaborator,
                name: p.login.clone(),
                permission,
                why: format!("--access all: {how}"),
            });
        } else {
            leave(
                format!("{how}: not invited (--access all invites as direct collaborators)"),
                p.login.clone(),
            );
        }
    }
    AccessPlan {
        scope,
        grants,
        left_out: left,
    }
}

/// `names` with at most [`NAMES_SHOWN`] shown.
fn shown(names: &[String]) -> String {
    let mut s = join(&names[..names.len().min(NAMES_SHOWN)]);
    if names.len() > NAMES_SHOWN {
        s.push_str(&format!(" (+{} more)", names.len() - NAMES_SHOWN));
    }
    s
}

impl AccessPlan {
    /// One line for the restore's plan and summary: what is granted (and how they had access),
    /// then what is left out and why.
    pub fn describe(&self) -> String {
        let mut by_why: Vec<(String, Vec<String>)> = Vec::new();
        for g in &self.grants {
            let what = match g.kind {
                GrantKind::Team => format!("grant team {} {}", g.name, g.permission),
                GrantKind::Collaborator => format!("invite {} ({})", g.name, g.permission),
            };
            match by_why.iter_mut().find(|(w, _)| *w == g.why) {
                Some((_, list)) => list.push(what),
                None => by_why.push((g.why.clone(), vec![what])),
            }
        }
        let granted: Vec<String> = by_why
            .iter()
            .map(|(why, list)| format!("{} [{why}]", shown(list)))
            .collect();
        let mut line = format!(
            "access (--access {}): {}",
            self.scope.as_str(),
            if granted.is_empty() {
                "nothing granted".to_string()
            } else {
                granted.join("; ")
            }
        );
        if !self.left_out.is_empty() {
            let left: Vec<String> = self
                .left_out
                .iter()
                .map(|l| format!("{} [{}]", shown(&l.who), l.reason))
                .collect();
            line.push_str(&format!("; not restored: {}", left.join("; ")));
        }
        line
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
