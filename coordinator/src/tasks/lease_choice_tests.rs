//! The choice from the ready index against `queue_order::select` over every pending task, on
//! seeded random queues; and the indexes against a walk of the tasks after random changes.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::model::{OrgId, TaskKind};
use crate::tasks::lease_state::LeaseState;
use crate::tasks::queue_order::AGING_STEP_MS;

/// A small deterministic generator (xorshift64*): the same seed gives the same queues.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len() as u64) as usize]
    }
}

const KINDS: [TaskKind; 4] = [
    TaskKind::Backup,
    TaskKind::Verify,
    TaskKind::Restore,
    TaskKind::Drill,
];

fn id<T: std::str::FromStr>(s: String) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("id")
}

/// A random task: few organisations, repositories and priorities, so buckets and busy
/// repositories collide; enqueue sequences that do not follow enqueue times (a new leader's
/// clock may be behind its predecessor's).
fn task(rng: &mut Rng, n: u64, now: i64) -> TaskRecord {
    let mut lease = LeaseState::new(3);
    lease.state = match rng.below(10) {
        0..=1 => TaskState::Leased {
            worker_id: "other".into(),
            expires_at_ms: now + 1000,
        },
        2..=3 => TaskState::Pending {
            not_before_ms: now - 500 + rng.below(1000) as i64,
        },
        _ => TaskState::Pending { not_before_ms: 0 },
    };
    TaskRecord {
        id: id(format!("t{n}")),
        kind: *rng.pick(&KINDS),
        org_id: id(format!("o{}", rng.below(4))),
        repo_id: id(format!("r{}", rng.below(12))),
        subject_id: String::new(),
        priority: *rng.pick(&[2u8, 5, 8, 9]),
        enqueued_at_ms: rng.below(4 * AGING_STEP_MS as u64) as i64,
        seq: rng.below(1_000_000) * 1000 + n,
        lease,
        idempotency_key: format!("k{}", rng.below(40)),
        committed_attempt: None,
        mode: None,
    }
}

fn repos(rng: &mut Rng, one_in: u64) -> HashSet<RepoId> {
    (0..12)
        .filter(|_| rng.below(one_in) == 0)
        .map(|r| id(format!("r{r}")))
        .collect()
}

#[test]
fn the_indexed_choice_is_the_choice_over_every_pending_task() {
    let mut rng = Rng(0x5EED_0FC4_01CE);
    let mut leased = 0;
    for round in 0..2000 {
        let now = 4 * AGING_STEP_MS;
        let mut active = ActiveTasks::default();
        for n in 0..rng.below(60) {
            active.insert(task(&mut rng, n, now));
        }
        let mut org_served: HashMap<OrgId, (u64, i64)> = HashMap::new();
        for o in 0..4 {
            if rng.below(2) == 0 {
                let served = (rng.below(100), rng.below(now as u64) as i64);
                org_served.insert(id(format!("o{o}")), served);
            }
        }
        let maintenance = repos(&mut rng, 6);
        let held = repos(&mut rng, 3);
        let elsewhere = repos(&mut rng, 3);
        let wait = rng.below(2 * AGING_STEP_MS as u64) as i64;
        let place = |r: &RepoId, ready_at: i64| {
            if held.contains(r) {
                Placement::Here
            } else if elsewhere.contains(r) {
                Placement::Elsewhere {
                    until_ms: ready_at + wait,
                }
            } else {
                Placement::Anywhere
            }
        };
        let busy = |r: &RepoId| active.is_written(r) || maintenance.contains(r);
        let look = Look {
            ctx: QueueContext {
                org_served: &org_served,
                busy: &busy,
            },
            maintenance: &maintenance,
            held: &held,
            place: &place,
            now_ms: now,
        };
        let all: Vec<Candidate> = active
            .values()
            .filter_map(|t| candidate(t, &look))
            .collect();
        let expected = queue_order::select(&all, &look.ctx, now).map(|c| c.task_id);
        assert_eq!(choose(&active, &look), expected, "round {round}");
        leased += usize::from(expected.is_some());
    }
    // The rounds exercise both answers.
    assert!(
        (1000..1990).contains(&leased),
        "{leased} of 2000 rounds leased"
    );
}

/// The indexes as a walk of the tasks computes them.
fn check_indexes(active: &ActiveTasks) {
    let mut pending: Vec<&TaskId> = active.ready_buckets().flatten().map(|t| &t.id).collect();
    pending.sort();
    let mut walked: Vec<&TaskId> = active
        .values()
        .filter(|t| matches!(t.lease.state, TaskState::Pending { .. }))
        .map(|t| &t.id)
        .collect();
    walked.sort();
    assert_eq!(pending, walked, "the ready index holds the pending tasks");
    for bucket in active.ready_buckets() {
        let order: Vec<(&OrgId, u8, i64, u64)> = bucket
            .map(|t| (&t.org_id, t.priority, t.enqueued_at_ms, t.seq))
            .collect();
        assert!(
            order
                .windows(2)
                .all(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1)
        );
        assert!(
            order
                .windows(2)
                .all(|w| (w[0].2, w[0].3) < (w[1].2, w[1].3))
        );
    }
    for r in 0..12 {
        let repo: RepoId = id(format!("r{r}"));
        let leased = |exclusive: bool| {
            active.values().any(|t| {
                t.repo_id == repo
                    && t.lease.expires_at_ms().is_some()
                    && kinds::exclusive(t.kind) == exclusive
            })
        };
        assert_eq!(active.is_written(&repo), leased(true), "{repo} written");
        assert_eq!(active.is_read(&repo), leased(false), "{repo} read");
        let one: HashSet<RepoId> = [repo.clone()].into();
        let mut of: Vec<&TaskId> = active.pending_of(&one).map(|t| &t.id).collect();
        of.sort();
        let mut walked: Vec<&TaskId> = active
            .values()
            .filter(|t| t.repo_id == repo && matches!(t.lease.state, TaskState::Pending { .. }))
            .map(|t| &t.id)
            .collect();
        walked.sort();
        assert_eq!(of, walked, "pending tasks of {repo}");
    }
    for k in 0..40 {
        let key = format!("k{k}");
        let found = active.with_key(&key).map(|t| t.idempotency_key.clone());
        let any = active.values().any(|t| t.idempotency_key == key);
        assert_eq!(found.is_some(), any, "{key}");
        assert!(found.is_none_or(|f| f == key));
    }
}

#[test]
fn the_indexes_follow_every_change() {
    let mut rng = Rng(0xA11_C4A9E5);
    let mut active = ActiveTasks::default();
    let now = 1000;
    for step in 0..3000u64 {
        let n = rng.below(80);
        let tid: TaskId = id(format!("t{n}"));
        match rng.below(4) {
            0 | 1 => {
                active.insert(task(&mut rng, n, now));
            }
            2 => {
                active.remove(&tid);
            }
            _ => {
                let to = task(&mut rng, n, now).lease.state;
                active.update(&tid, |t| t.lease.state = to);
            }
        }
        if step % 50 == 0 {
            check_indexes(&active);
        }
    }
    check_indexes(&active);
    assert!(active.len() > 20, "the walk kept tasks to index");
}
