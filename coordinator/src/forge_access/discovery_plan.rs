//! Discovery of a forge organisation's repositories, as pure planning: what the store holds and
//! what the forge lists go in, the changes come out. Keyed by the forge's repository id, which
//! survives renames, so a renamed repository keeps its record (id, history, backups).
//!
//! The caller lists the forge, plans, creates records for `added` and writes `updated` together
//! with the name index changes of [`name_index`] (one small transaction per repository: a plan
//! may be far larger than one transaction may hold).

use crate::model::RepoId;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::RepoRecord;

/// One repository as the forge lists it: only what discovery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRepo {
    /// The forge's repository id.
    pub id: u64,
    pub name: String,
    pub archived: bool,
    /// Where git fetches it (without credentials).
    pub clone_url: String,
}

/// A stored repository that now has another name on the forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub repo_id: RepoId,
    pub from: String,
    pub to: String,
}

/// What a discovery changes. Names are the repositories' names after the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Listed, not stored: new records are created for these.
    pub added: Vec<ListedRepo>,
    /// Same forge id, new name: the record follows.
    pub renamed: Vec<Renamed>,
    pub archived: Vec<String>,
    pub unarchived: Vec<String>,
    /// Stored, not listed any more: marked deleted, backups kept.
    pub deleted: Vec<String>,
    /// Marked deleted earlier and listed again.
    pub restored: Vec<String>,
    /// Stored and listed with nothing to change.
    pub unchanged: usize,
    /// Every stored record that changes, as it is after the plan (name, URL, marks).
    pub updated: Vec<RepoRecord>,
}

impl SyncPlan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty()
    }
}

/// Plans a discovery of one organisation. `stored` are the organisation's records (records
/// without a forge id, added by URL, are left alone); `listed` is everything the forge lists
/// (a repository listed twice counts once). Output lists are sorted by name.
pub fn plan_sync(stored: &[RepoRecord], listed: &[ListedRepo]) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let mut by_forge_id: HashMap<u64, &RepoRecord> = HashMap::new();
    for r in stored {
        if let Some(id) = r.forge_id {
            by_forge_id.entry(id).or_insert(r);
        }
    }
    let mut seen = HashSet::new();
    for l in listed {
        if !seen.insert(l.id) {
            continue;
        }
        let Some(s) = by_forge_id.get(&l.id) else {
            plan.added.push(l.clone());
            continue;
        };
        let mut next = (*s).clone();
        if s.deleted {
            next.deleted = false;
            plan.restored.push(l.name.clone());
        }
        if s.name != l.name {
            next.name = l.name.clone();
            plan.renamed.push(Renamed {
                repo_id: s.id.clone(),
                from: s.name.clone(),
                to: l.name.clone(),
            });
        }
        if s.archived != l.archived {
            next.archived = l.archived;
            if l.archived {
                plan.archived.push(l.name.clone());
            } else {
                plan.unarchived.push(l.name.clone());
            }
        }
        if !l.clone_url.is_empty() && s.url != l.clone_url {
            next.url = l.clone_url.clone();
        }
        if next == **s {
            plan.unchanged += 1;
        } else {
            plan.updated.push(next);
        }
    }
    for s in stored {
        if let Some(id) = s.forge_id
            && !s.deleted
            && !seen.contains(&id)
            && by_forge_id.get(&id).is_some_and(|first| first.id == s.id)
        {
            let mut next = s.clone();
            next.deleted = true;
            plan.deleted.push(s.name.clone());
            plan.updated.push(next);
        }
    }
    plan.added.sort_by(|a, b| a.name.cmp(&b.name));
    plan.renamed.sort_by(|a, b| a.to.cmp(&b.to));
    for v in [
        &mut plan.archived,
        &mut plan.unarchived,
        &mut plan.deleted,
        &mut plan.restored,
    ] {
        v.sort();
    }
    plan.updated
        .sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    plan
}

/// The name index of one organisation's records: name -> record id. A live record holds its
/// name; a name only deleted records carry stays with the newest of them, so `ORG/NAME` of a
/// deleted repository still finds it (and its backups) until a live repository takes the name.
pub fn name_index(records: &[RepoRecord]) -> BTreeMap<String, RepoId> {
    let mut best: BTreeMap<String, &RepoRecord> = BTreeMap::new();
    for r in records {
        let better = match best.get(&r.name) {
            None => true,
            Some(cur) => {
                (cur.deleted && !r.deleted)
                    || (cur.deleted == r.deleted
                        && (r.created_at_ms, &r.id) > (cur.created_at_ms, &cur.id))
            }
        };
        if better {
            best.insert(r.name.clone(), r);
        }
    }
    best.into_iter().map(|(n, r)| (n, r.id.clone())).collect()
}

/// The index entries to write (name, id) and to delete (names) to go from `before` to `after`.
/// A key is never both written and deleted.
pub fn index_changes(
    before: &BTreeMap<String, RepoId>,
    after: &BTreeMap<String, RepoId>,
) -> (Vec<(String, RepoId)>, Vec<String>) {
    let puts = after
        .iter()
        .filter(|(n, id)| before.get(*n) != Some(*id))
        .map(|(n, id)| (n.clone(), id.clone()))
        .collect();
    let deletes = before
        .keys()
        .filter(|n| !after.contains_key(*n))
        .cloned()
        .collect();
    (puts, deletes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, name: &str, forge_id: u64) -> RepoRecord {
        RepoRecord {
            id: crate::coordinator::testing::tid(id),
            org_id: crate::coordinator::testing::tid("o1"),
            org_name: "acme".into(),
            name: name.into(),
            url: format!("https://github.example/acme/{name}.git"),
            sealed_token: None,
            sealed_master_key: None,
            created_at_ms: 1,
            forge_id: Some(forge_id),
            archived: false,
            deleted: false,
            schedule: None,
            on_push: None,
        }
    }

    fn listed(id: u64, name: &str) -> ListedRepo {
        ListedRepo {
            id,
            name: name.into(),
            archived: false,
            clone_url: format!("https://github.example/acme/{name}.git"),
        }
    }

    #[test]
    fn first_sync_adds_everything() {
        let plan = plan_sync(&[], &[listed(2, "b"), listed(1, "a"), listed(1, "a")]);
        let names: Vec<_> = plan.added.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b"],
            "sorted, a repository listed twice counts once"
        );
        assert!(plan.updated.is_empty());
        assert_eq!(plan.unchanged, 0);
    }

    #[test]
    fn unchanged_repositories_produce_an_empty_plan() {
        let stored = [rec("r1", "a", 1), rec("r2", "b", 2)];
        let plan = plan_sync(&stored, &[listed(1, "a"), listed(2, "b")]);
        assert!(plan.is_empty());
        assert_eq!(plan.unchanged, 2);
    }

    #[test]
    fn a_rename_follows_the_forge_id_and_keeps_the_record() {
        let stored = [rec("r1", "old", 7)];
        let plan = plan_sync(&stored, &[listed(7, "new")]);
        assert!(plan.added.is_empty(), "not a new repository");
        assert_eq!(
            plan.renamed,
            [Renamed {
                repo_id: "r1".parse().expect("repo id"),
                from: "old".into(),
                to: "new".into()
            }]
        );
        assert_eq!(plan.updated.len(), 1);
        let r = &plan.updated[0];
        assert_eq!((r.id.as_str(), r.name.as_str()), ("r1", "new"));
        assert_eq!(r.url, "https://github.example/acme/new.git");
        assert!(plan.deleted.is_empty());
    }

    #[test]
    fn archived_unarchived_deleted_and_restored_are_marked() {
        let mut gone_before = rec("r4", "ghost", 4);
        gone_before.deleted = true;
        let mut was_archived = rec("r2", "b", 2);
        was_archived.archived = true;
        let stored = [
            rec("r1", "a", 1),
            was_archived,
            rec("r3", "c", 3),
            gone_before,
        ];
        let mut a = listed(1, "a");
        a.archived = true;
        let plan = plan_sync(&stored, &[a, listed(2, "b"), listed(4, "ghost")]);
        assert_eq!(plan.archived, ["a"]);
        assert_eq!(plan.unarchived, ["b"]);
        assert_eq!(plan.deleted, ["c"]);
        assert_eq!(plan.restored, ["ghost"]);
        let by_id: HashMap<_, _> = plan.updated.iter().map(|r| (r.id.as_str(), r)).collect();
        assert!(by_id["r1"].archived);
        assert!(!by_id["r2"].archived);
        assert!(by_id["r3"].deleted, "kept, marked");
        assert!(!by_id["r4"].deleted);
        assert_eq!(plan.updated.len(), 4);
    }

    #[test]
    fn a_deleted_repository_stays_deleted_without_churn_and_records_without_forge_id_are_left_alone()
     {
        let mut gone = rec("r1", "a", 1);
        gone.deleted = true;
        let mut by_url = rec("r2", "by-url", 0);
        by_url.forge_id = None;
        let plan = plan_sync(&[gone, by_url], &[]);
        assert!(plan.is_empty(), "{plan:?}");
        assert!(plan.deleted.is_empty());
    }

    #[test]
    fn a_new_repository_may_take_the_name_of_a_deleted_one() {
        let stored = [rec("r1", "a", 1)];
        let plan = plan_sync(&stored, &[listed(9, "a")]);
        assert_eq!(plan.deleted, ["a"]);
        assert_eq!(plan.added.len(), 1);
        // The index moves the name to the live record once it exists.
        let mut after = plan.updated.clone();
        let mut new = rec("r9", "a", 9);
        new.created_at_ms = 5;
        after.push(new);
        let before = name_index(&stored);
        let after = name_index(&after);
        assert_eq!(after["a"].as_str(), "r9");
        let (puts, deletes) = index_changes(&before, &after);
        assert_eq!(
            puts,
            [("a".to_string(), crate::coordinator::testing::tid("r9"))]
        );
        assert!(deletes.is_empty());
    }

    #[test]
    fn swapped_names_write_each_key_once_and_delete_none() {
        let stored = [rec("r1", "a", 1), rec("r2", "b", 2)];
        let plan = plan_sync(&stored, &[listed(1, "b"), listed(2, "a")]);
        assert_eq!(plan.renamed.len(), 2);
        let (puts, deletes) = index_changes(&name_index(&stored), &name_index(&plan.updated));
        assert_eq!(
            puts,
            [
                ("a".to_string(), crate::coordinator::testing::tid("r2")),
                ("b".to_string(), crate::coordinator::testing::tid("r1"))
            ]
        );
        assert!(deletes.is_empty());
    }

    #[test]
    fn a_renamed_name_leaves_the_index() {
        let stored = [rec("r1", "old", 1)];
        let plan = plan_sync(&stored, &[listed(1, "new")]);
        let (puts, deletes) = index_changes(&name_index(&stored), &name_index(&plan.updated));
        assert_eq!(
            puts,
            [("new".to_string(), crate::coordinator::testing::tid("r1"))]
        );
        assert_eq!(deletes, ["old"]);
    }
}
