//! Unit tests of [`super`]: classification, the plan of each scope, legacy backups.
use super::*;
use serde_json::json;

fn user(login: &str, role: &str) -> Value {
    json!({ "login": login, "role_name": role })
}

fn doc(unread: bool) -> AccessDoc {
    let all = [
        user("boss", "admin"),
        user("contractor", "write"),
        user("member", "read"),
        user("teammate", "write"),
    ];
    let direct = [user("contractor", "write")];
    let outside = [user("contractor", "write")];
    let team = TeamAccess {
        slug: "core".into(),
        name: "Core".into(),
        permission: "push".into(),
        members: (!unread).then(|| vec!["teammate".to_string()]),
        members_unreadable: unread.then(|| "403".to_string()),
    };
    AccessDoc::classify(&all, &direct, &outside, vec![team])
}

#[test]
fn each_person_is_classified() {
    let d = doc(false);
    let via: BTreeMap<&str, (&[Via], bool)> = d
        .people
        .iter()
        .map(|p| (p.login.as_str(), (p.via.as_slice(), p.outside)))
        .collect();
    assert_eq!(via["contractor"], (&[Via::Direct][..], true));
    assert_eq!(via["teammate"], (&[Via::Team][..], false));
    assert_eq!(via["member"], (&[Via::Organisation][..], false));
    assert_eq!(via["boss"], (&[Via::Organisation][..], false));
    // Unreadable team members: nobody is called "organisation" who might be in the team.
    let d = doc(true);
    let teammate = d.people.iter().find(|p| p.login == "teammate");
    assert_eq!(
        teammate.map(|p| p.via.clone()),
        Some(vec![Via::TeamOrOrganisation])
    );
}

#[test]
fn only_direct_collaborators_by_default() {
    let p = plan(&doc(false), AccessScope::Direct, "dst", None);
    assert_eq!(
        p.grants,
        vec![Grant {
            kind: GrantKind::Collaborator,
            name: "contractor".into(),
            permission: "push".into(),
            why: "direct collaborator (outside collaborator)".into(),
        }]
    );
    let left: Vec<&String> = p.left_out.iter().flat_map(|l| &l.who).collect();
    assert_eq!(left, ["team core", "boss", "member", "teammate"]);
    let line = p.describe();
    assert!(line.contains("invite contractor (push)"), "{line}");
    assert!(line.contains("--access teams"), "{line}");
}

#[test]
fn teams_restore_as_team_grants_where_the_target_has_them() {
    let have = TargetTeams {
        present: BTreeSet::from(["core".to_string()]),
        absent: BTreeMap::new(),
    };
    let p = plan(&doc(false), AccessScope::Teams, "dst", Some(&have));
    assert_eq!(p.grants[0].kind, GrantKind::Team);
    assert_eq!((p.grants[0].name.as_str(), p.grants.len()), ("core", 2));
    let lacking = TargetTeams {
        present: BTreeSet::new(),
        absent: BTreeMap::from([("core".to_string(), "dst has no team core".to_string())]),
    };
    let p = plan(&doc(false), AccessScope::Teams, "dst", Some(&lacking));
    assert_eq!(p.grants.len(), 1);
    assert!(
        p.left_out
            .iter()
            .any(|l| l.reason == "dst has no team core")
    );
    // Everyone: the rest are invited, but not the team's members where the team is granted.
    let p = plan(&doc(false), AccessScope::All, "dst", Some(&have));
    let names: Vec<&str> = p.grants.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["core", "boss", "contractor", "member"]);
}

#[test]
fn a_legacy_backup_invites_nobody_unless_told() {
    let d = AccessDoc::legacy(&[user("someone", "write")], &[]);
    assert_eq!(d.people[0].via, vec![Via::Unknown]);
    let p = plan(&d, AccessScope::Direct, "dst", None);
    assert!(p.grants.is_empty());
    assert!(p.left_out[0].reason.starts_with("unknown how"), "{p:?}");
    let p = plan(&d, AccessScope::All, "dst", None);
    assert_eq!(p.grants.len(), 1);
}

#[test]
fn scope_names_round_trip() {
    for s in [AccessScope::Direct, AccessScope::Teams, AccessScope::All] {
        assert_eq!(AccessScope::parse(s.as_str()), Some(s));
        assert_eq!(AccessScope::from(pb::RestoreAccess::from(s)), s);
    }
    assert_eq!(
        AccessScope::from(pb::RestoreAccess::Unspecified),
        AccessScope::Direct
    );
    assert_eq!(AccessScope::parse("everyone"), None);
}
