//! The fleet-wide rate budget per forge credential: a pure state
//! machine, every time a parameter (unix milliseconds), so each rule is unit-tested with explicit
//! times.
//!
//! A credential is named by a stable, non-secret id ([`repovault_common::forge::token_credential_id`]
//! for a token, so organisations sharing a token share a budget; `app:APP:INSTALLATION` for an
//! App installation). Per credential the budget keeps:
//! - the primary window as GitHub last reported it (`x-ratelimit-limit`, `-remaining`, `-reset`):
//!   within one window `remaining` only goes down (reports arrive out of order, the lowest is the
//!   newest), a report of a later window replaces it, and once the reset has passed the window is
//!   assumed replenished (`remaining = limit`) until the next report;
//! - holders: the leases that were granted permits, each with its unspent permits. Unspent
//!   permits count as spent until their holder reports (spent requests that no report reflects
//!   yet are among them), so `remaining - reserve - Σ unspent` never over-promises;
//! - a pause (`paused_until`) from a secondary limit: no permits for anyone until then.
//!
//! Grants are batches: at most [`BudgetPolicy::batch_max`], and a fair share of what is
//! available among the holders that hold permits or asked in vain lately. A holder ends with a
//! last report that gives its permits back (`wanted` 0, `unspent` 0); one that is released or
//! idle without it has whatever it held counted as spent, since no reading showed those
//! requests. At most [`BudgetPolicy::max_holders`] leases hold
//! permits at once (each holder sends one request at a time, so this caps the credential's
//! requests in flight fleet-wide). A credential without any report yet (a new coordinator, a
//! new credential) is treated cautiously: one holder, [`BudgetPolicy::cautious_batch`] permits,
//! until a report arrives.

use std::collections::HashMap;

/// The budget's knobs; [`BudgetPolicy::default`] is what the coordinator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// Largest batch. Our choice: one refill round trip per 50 requests keeps the coordinator's
    /// share of the traffic at 2% while one holder never sits on more than 1% of GitHub's
    /// 5,000 per hour.
    pub batch_max: u32,
    /// Permits of the single holder of a credential no report has been seen for. Our choice:
    /// small enough that a credential whose window is already spent elsewhere costs at most
    /// this many refusals, large enough to get the first report back quickly.
    pub cautious_batch: u32,
    /// Leases holding permits at once per credential (the fleet-wide cap on requests in
    /// flight). Our choice: GitHub documents a secondary limit of 100 concurrent requests
    /// ("Rate limits for the REST API"); 16 stays far below it.
    pub max_holders: usize,
    /// Kept back from every window: `max(reserve_min, limit / reserve_divisor)`, for the
    /// coordinator's own requests (discovery, token checks) and for reports still in flight.
    /// Our choice: 2%, at least 2.
    pub reserve_divisor: u64,
    pub reserve_min: u64,
    /// A holder that has not asked for this long is dropped with its unspent permits (its lease
    /// is gone without the coordinator being told). Our choice: two minutes, several lease TTLs
    /// of the default heartbeat (10 s, TTL 31 s).
    pub holder_idle_ms: i64,
    /// A holder told to wait for a free holder slot, or for a window whose reset is unknown,
    /// asks again after this. Our choice: one second, GitHub's reset granularity.
    pub retry_ms: i64,
    /// Added to `x-ratelimit-reset` before the window counts as replenished: the header has whole
    /// seconds, and a request in the reset second itself may still be refused. The same second
    /// as the client's `PRIMARY_RESET_SLACK`.
    pub reset_slack_ms: i64,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        BudgetPolicy {
            batch_max: 50,
            cautious_batch: 5,
            max_holders: 16,
            reserve_divisor: 50,
            reserve_min: 2,
            holder_idle_ms: 120_000,
            retry_ms: 1_000,
            reset_slack_ms: 1_000,
        }
    }
}

/// One reading of the primary limit (the `x-ratelimit-*` headers of a `core` answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub limit: u64,
    pub remaining: u64,
    /// `x-ratelimit-reset`, unix seconds.
    pub reset_s: i64,
}

/// What a holder was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    /// Requests the holder may send (added to what it still holds).
    pub permits: u32,
    /// No request with this credential before this time (unix ms); 0: no pause.
    pub paused_until_ms: i64,
    /// With no permits: ask again no earlier than this (unix ms).
    pub retry_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    limit: u64,
    remaining: u64,
    /// `None` after an assumed replenish, until the next report names the new window's reset.
    reset_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Holder {
    unspent: u64,
    last_ms: i64,
}

#[derive(Debug, Default)]
struct Budget {
    window: Option<Window>,
    paused_until_ms: i64,
    holders: HashMap<String, Holder>,
}

/// Every credential's budget.
#[derive(Debug, Default)]
pub struct RateBudgets {
    policy: BudgetPolicy,
    budgets: HashMap<String, Budget>,
}

impl RateBudgets {
    pub fn new(policy: BudgetPolicy) -> Self {
        RateBudgets {
            policy,
            budgets: HashMap::new(),
        }
    }

    /// Records a reading of `credential`'s primary window taken before `now_ms`.
    pub fn report(&mut self, credential: &str, reading: Reading, now_ms: i64) {
        let slack = self.policy.reset_slack_ms;
        let b = self.budgets.entry(credential.to_string()).or_default();
        let reset_ms = reading.reset_s.saturating_mul(1000);
        if reset_ms.saturating_add(slack) <= now_ms {
            // A window that is over says nothing about the current one but its size.
            match &mut b.window {
                Some(w) => w.limit = reading.limit,
                None => {
                    b.window = Some(Window {
                        limit: reading.limit,
                        remaining: reading.limit,
                        reset_ms: None,
                    })
                }
            }
            return;
        }
        let fresh = Window {
            limit: reading.limit,
            remaining: reading.remaining,
            reset_ms: Some(reset_ms),
        };
        b.window = Some(match b.window {
            Some(w) => match w.reset_ms {
                Some(known) if known == reset_ms => Window {
                    remaining: w.remaining.min(reading.remaining),
                    ..fresh
                },
                Some(known) if known > reset_ms => w,
                _ => fresh,
            },
            None => fresh,
        });
    }

    /// GitHub imposed a wait on `credential` until `until_ms`. A secondary limit pauses every
    /// holder of the credential; a primary one marks the window spent until then.
    pub fn limited(&mut self, credential: &str, until_ms: i64, secondary: bool) {
        let b = self.budgets.entry(credential.to_string()).or_default();
        if secondary {
            b.paused_until_ms = b.paused_until_ms.max(until_ms);
        } else if let Some(w) = &mut b.window {
            // The refusal is the newest word on the window: spent until the time it names.
            w.remaining = 0;
            w.reset_ms = Some(until_ms);
        } else {
            b.window = Some(Window {
                limit: 0,
                remaining: 0,
                reset_ms: Some(until_ms),
            });
        }
    }

    /// A holder's request: it still holds `unspent` permits and wants up to `wanted` more.
    /// `wanted == 0` only reports (and gives the holder's slot back when it holds nothing).
    pub fn request(
        &mut self,
        credential: &str,
        holder: &str,
        unspent: u32,
        wanted: u32,
        now_ms: i64,
    ) -> Grant {
        let p = self.policy;
        let b = self.budgets.entry(credential.to_string()).or_default();
        // Idle holders lose their slot; what they held counts as spent (see `release`).
        let idle: Vec<String> = b
            .holders
            .iter()
            .filter(|(id, h)| *id != holder && h.last_ms.saturating_add(p.holder_idle_ms) <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            if let Some(h) = b.holders.remove(&id)
                && let Some(w) = &mut b.window
            {
                w.remaining = w.remaining.saturating_sub(h.unspent);
            }
        }
        if let Some(w) = &mut b.window
            && let Some(reset) = w.reset_ms
            && reset.saturating_add(p.reset_slack_ms) <= now_ms
        {
            *w = Window {
                limit: w.limit,
                remaining: w.limit,
                reset_ms: None,
            };
        }
        let me = b.holders.entry(holder.to_string()).or_default();
        me.unspent = u64::from(unspent);
        me.last_ms = now_ms;
        let paused_until_ms = if b.paused_until_ms > now_ms {
            b.paused_until_ms
        } else {
            0
        };
        let wait = |retry_at_ms: i64| Grant {
            permits: 0,
            paused_until_ms,
            retry_at_ms,
        };
        if wanted == 0 {
            if unspent == 0 {
                b.holders.remove(holder);
            }
            return wait(0);
        }
        if paused_until_ms > 0 {
            return wait(paused_until_ms);
        }
        let others = b
            .holders
            .iter()
            .filter(|(id, h)| *id != holder && h.unspent > 0)
            .count();
        let cap = if b.window.is_some() { p.max_holders } else { 1 };
        if unspent == 0 && others >= cap {
            // Stays registered, waiting (it shares the next batches, see below).
            return wait(now_ms + p.retry_ms);
        }
        // The share is split among the active holders and those that asked in vain lately, so
        // the first to ask after a reset does not take the whole window.
        let recent_ms = p.retry_ms.saturating_mul(3);
        let sharing = b
            .holders
            .iter()
            .filter(|(id, h)| {
                *id != holder && (h.unspent > 0 || h.last_ms.saturating_add(recent_ms) > now_ms)
            })
            .count();
        let sharing = u64::try_from((sharing + 1).min(cap.max(1))).unwrap_or(1);
        let outstanding: u64 = b.holders.values().map(|h| h.unspent).sum();
        let batch = match b.window {
            None => u64::from(p.cautious_batch).saturating_sub(outstanding),
            Some(w) => {
                let reserve = p.reserve_min.max(w.limit / p.reserve_divisor.max(1));
                let available = w.remaining.saturating_sub(reserve + outstanding);
                let share = available / sharing;
                share.max(available.min(1)).min(u64::from(p.batch_max))
            }
        };
        let batch = batch.min(u64::from(wanted));
        tracing::debug!(
            credential,
            holder,
            unspent,
            outstanding,
            others,
            sharing,
            window = ?b.window,
            batch,
            now_ms,
            "rate budget: request"
        );
        if batch == 0 {
            let retry_at_ms = match b.window.and_then(|w| w.reset_ms) {
                Some(reset) if b.window.is_some_and(|w| w.remaining == 0 || others == 0) => {
                    reset + p.reset_slack_ms
                }
                _ => now_ms + p.retry_ms,
            };
            return wait(retry_at_ms.max(now_ms + 1));
        }
        if let Some(h) = b.holders.get_mut(holder) {
            h.unspent += batch;
        }
        Grant {
            permits: u32::try_from(batch).unwrap_or(u32::MAX),
            paused_until_ms: 0,
            retry_at_ms: 0,
        }
    }

    /// The first grant of a new lease: a batch as [`RateBudgets::request`] would give it, but
    /// nothing while no report has been seen for the credential (the single cautious holder slot
    /// goes to the first lease that actually sends a request, not to one still fetching git).
    pub fn lease(&mut self, credential: &str, holder: &str, now_ms: i64) -> Grant {
        let known = self
            .budgets
            .get(credential)
            .is_some_and(|b| b.window.is_some());
        if known {
            self.request(credential, holder, 0, u32::MAX, now_ms)
        } else {
            let paused_until_ms = self
                .budgets
                .get(credential)
                .map_or(0, |b| b.paused_until_ms)
                .max(0);
            Grant {
                permits: 0,
                paused_until_ms: if paused_until_ms > now_ms {
                    paused_until_ms
                } else {
                    0
                },
                retry_at_ms: 0,
            }
        }
    }

    /// The holder is gone (its task ended) without a last report: whatever it still held may
    /// have been spent without any reading showing it, so it is taken from the window's
    /// remaining. A worker gives its permits back with a last report first (`wanted` 0,
    /// `unspent` 0), which makes this a no-op.
    pub fn release(&mut self, holder: &str) {
        for b in self.budgets.values_mut() {
            if let Some(h) = b.holders.remove(holder)
                && let Some(w) = &mut b.window
            {
                w.remaining = w.remaining.saturating_sub(h.unspent);
            }
        }
    }

    /// The pauses in force at `now_ms`: (credential, until unix ms).
    pub fn pauses(&self, now_ms: i64) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = self
            .budgets
            .iter()
            .filter(|(_, b)| b.paused_until_ms > now_ms)
            .map(|(c, b)| (c.clone(), b.paused_until_ms))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "token:0123456789abcdef";
    /// A time in the window (unix ms).
    const T0: i64 = 1_700_000_000_000;

    fn policy() -> BudgetPolicy {
        BudgetPolicy {
            batch_max: 50,
            cautious_batch: 5,
            max_holders: 3,
            reserve_divisor: 50,
            reserve_min: 2,
            holder_idle_ms: 60_000,
            retry_ms: 1_000,
            reset_slack_ms: 1_000,
        }
    }

    fn reading(limit: u64, remaining: u64, reset_in_s: i64) -> Reading {
        Reading {
            limit,
            remaining,
            reset_s: T0 / 1000 + reset_in_s,
        }
    }

    fn known(limit: u64, remaining: u64) -> RateBudgets {
        let mut r = RateBudgets::new(policy());
        r.report(C, reading(limit, remaining, 600), T0);
        r
    }

    #[test]
    fn a_new_budget_starts_cautiously_with_one_holder() {
        let mut r = RateBudgets::new(policy());
        let g = r.request(C, "a", 0, 100, T0);
        assert_eq!(g.permits, 5, "a small first batch");
        let g = r.request(C, "b", 0, 100, T0);
        assert_eq!(g.permits, 0, "one holder until a report arrives");
        assert_eq!(g.retry_at_ms, T0 + 1_000);
        // The holder itself gets no more than the cautious batch in all.
        assert_eq!(r.request(C, "a", 3, 100, T0).permits, 2);
        assert_eq!(r.request(C, "a", 5, 100, T0).permits, 0);
        // A report ends the caution.
        r.report(C, reading(5000, 4990, 600), T0 + 10);
        assert_eq!(r.request(C, "b", 0, 100, T0 + 20).permits, 50);
    }

    #[test]
    fn a_lease_gets_a_first_batch_only_once_the_budget_is_known() {
        let mut r = RateBudgets::new(policy());
        assert_eq!(
            r.lease(C, "a", T0),
            Grant::default(),
            "no slot taken at lease time"
        );
        // The first one to ask is the cautious holder.
        assert_eq!(r.request(C, "b", 0, 100, T0).permits, 5);
        r.report(C, reading(5000, 4990, 600), T0 + 1);
        assert_eq!(r.lease(C, "c", T0 + 2).permits, 50);
        r.limited(C, T0 + 10_000, true);
        let g = r.lease(C, "d", T0 + 3);
        assert_eq!((g.permits, g.paused_until_ms), (0, T0 + 10_000));
    }

    #[test]
    fn grants_are_batches_and_fair_shares() {
        let mut r = known(5000, 5000);
        assert_eq!(r.request(C, "a", 0, 500, T0).permits, 50, "at most a batch");
        assert_eq!(
            r.request(C, "a", 0, 7, T0).permits,
            7,
            "at most what is wanted"
        );
        let mut r = known(300, 100);
        // reserve max(2, 300/50 = 6) = 6: 94 available.
        assert_eq!(r.request(C, "a", 0, 100, T0).permits, 50);
        // 44 left, shared with one other active holder.
        assert_eq!(r.request(C, "b", 0, 100, T0).permits, 22);
        assert_eq!(
            r.request(C, "c", 0, 100, T0).permits,
            7,
            "22 left among three"
        );
    }

    #[test]
    fn holders_waiting_for_a_reset_share_the_new_window() {
        let mut r = known(100, 2);
        // Both wait for the reset, asking again until then.
        assert_eq!(r.request(C, "a", 0, 100, T0).permits, 0);
        assert_eq!(r.request(C, "b", 0, 100, T0 + 600_900).permits, 0);
        // 98 after the reset: a shares with b, who asked a moment ago.
        assert_eq!(r.request(C, "a", 0, 100, T0 + 601_000).permits, 49);
        assert_eq!(r.request(C, "b", 0, 100, T0 + 601_001).permits, 24);
        // A holder that stopped asking long ago is not waited for.
        let mut r = known(100, 2);
        assert_eq!(r.request(C, "x", 0, 100, T0).permits, 0);
        assert_eq!(r.request(C, "a", 0, 100, T0 + 601_000).permits, 50);
    }

    #[test]
    fn unspent_permits_count_until_reported_and_the_reserve_is_kept() {
        let mut r = known(100, 20);
        // reserve 2: 18 available.
        assert_eq!(r.request(C, "a", 0, 100, T0).permits, 18);
        assert_eq!(r.request(C, "b", 0, 100, T0).permits, 0, "a holds the rest");
        // a spent 10 (GitHub now says 10 remain) and holds 8.
        r.report(C, reading(100, 10, 600), T0 + 1);
        assert_eq!(r.request(C, "a", 8, 100, T0 + 2).permits, 0, "10 - 2 - 8");
        // a gives its 8 back with a last report (it spent nothing more).
        r.report(C, reading(100, 10, 600), T0 + 3);
        assert_eq!(r.request(C, "a", 0, 0, T0 + 3).permits, 0);
        r.release("a");
        assert_eq!(r.request(C, "b", 0, 100, T0 + 3).permits, 8);
    }

    #[test]
    fn a_holder_gone_without_a_last_report_counts_as_having_spent_everything() {
        let mut r = known(100, 52);
        assert_eq!(r.request(C, "a", 0, 100, T0).permits, 50);
        // a's task ended without a report: its 50 may all have been spent.
        r.release("a");
        assert_eq!(r.request(C, "b", 0, 100, T0 + 1).permits, 0);
        // Until the window resets.
        assert_eq!(r.request(C, "b", 0, 100, T0 + 601_000).permits, 50);
    }

    #[test]
    fn within_a_window_the_lowest_remaining_wins() {
        let mut r = known(100, 50);
        r.report(C, reading(100, 80, 600), T0 + 1);
        // 50 - reserve 2.
        assert_eq!(r.request(C, "a", 0, 100, T0 + 2).permits, 48);
        let mut r = known(100, 50);
        // An older window's late report changes nothing.
        r.report(C, reading(100, 90, 500), T0 + 1);
        assert_eq!(r.request(C, "a", 0, 100, T0 + 2).permits, 48);
    }

    #[test]
    fn an_exhausted_window_waits_for_its_reset_then_replenishes() {
        let mut r = known(100, 2);
        let g = r.request(C, "a", 0, 100, T0);
        assert_eq!(g.permits, 0, "only the reserve is left");
        assert_eq!(g.retry_at_ms, T0 + 600_000 + 1_000, "reset plus slack");
        // Not yet: the reset second itself.
        assert_eq!(r.request(C, "a", 0, 100, T0 + 600_500).permits, 0);
        // Replenished once the reset (plus slack) has passed: a full window, less the reserve.
        let g = r.request(C, "a", 0, 100, T0 + 601_000);
        assert_eq!(g.permits, 50);
        assert_eq!(r.request(C, "b", 0, 100, T0 + 601_000).permits, 24);
        // A report of the new window takes over.
        r.report(C, reading(100, 10, 1200), T0 + 601_100);
        assert_eq!(r.request(C, "c", 0, 100, T0 + 601_200).permits, 0);
    }

    #[test]
    fn a_report_of_a_window_already_over_only_gives_the_limit() {
        let mut r = RateBudgets::new(policy());
        r.report(C, reading(100, 0, -10), T0);
        // Known limit, replenished: no longer cautious.
        assert_eq!(r.request(C, "a", 0, 100, T0).permits, 50);
        assert_eq!(r.request(C, "b", 0, 100, T0).permits, 24);
    }

    #[test]
    fn a_secondary_limit_pauses_every_holder_until_retry_after() {
        let mut r = known(5000, 5000);
        assert_eq!(r.request(C, "a", 0, 10, T0).permits, 10);
        r.limited(C, T0 + 60_000, true);
        assert_eq!(r.pauses(T0 + 1), vec![(C.to_string(), T0 + 60_000)]);
        let g = r.request(C, "b", 0, 10, T0 + 1);
        assert_eq!(
            g,
            Grant {
                permits: 0,
                paused_until_ms: T0 + 60_000,
                retry_at_ms: T0 + 60_000
            }
        );
        assert_eq!(r.request(C, "a", 5, 10, T0 + 59_999).permits, 0);
        // A shorter, later pause does not shorten it.
        r.limited(C, T0 + 30_000, true);
        assert_eq!(r.pauses(T0 + 40_000).len(), 1);
        assert!(r.pauses(T0 + 60_000).is_empty());
        assert_eq!(r.request(C, "b", 0, 10, T0 + 60_000).permits, 10);
        // Other credentials are not paused.
        r.limited(C, T0 + 120_000, true);
        assert_eq!(r.request("app:1:2", "c", 0, 3, T0 + 60_001).permits, 3);
    }

    #[test]
    fn a_primary_refusal_marks_the_window_spent_until_its_reset() {
        let mut r = known(5000, 4000);
        r.limited(C, T0 + 30_000, false);
        let g = r.request(C, "a", 0, 10, T0);
        assert_eq!((g.permits, g.retry_at_ms), (0, T0 + 31_000));
        assert_eq!(r.request(C, "a", 0, 10, T0 + 31_000).permits, 10);
    }

    #[test]
    fn holders_are_capped_fleet_wide() {
        let mut r = known(5000, 5000);
        for h in ["a", "b", "c"] {
            assert!(r.request(C, h, 0, 10, T0).permits > 0, "{h}");
        }
        let g = r.request(C, "d", 0, 10, T0);
        assert_eq!((g.permits, g.retry_at_ms), (0, T0 + 1_000), "cap of 3");
        // A holder that still holds permits keeps its slot and may refill.
        assert_eq!(r.request(C, "a", 2, 10, T0).permits, 10);
        // One gives its slot back (spent, reports with nothing wanted): d gets in.
        assert_eq!(r.request(C, "b", 0, 0, T0 + 1).permits, 0);
        assert_eq!(r.request(C, "d", 0, 10, T0 + 2).permits, 10);
    }

    #[test]
    fn idle_holders_lose_their_slot_and_their_permits_count_as_spent() {
        let mut r = known(5000, 5000);
        for h in ["a", "b", "c"] {
            assert_eq!(r.request(C, h, 0, 10, T0).permits, 10, "{h}");
        }
        assert_eq!(r.request(C, "d", 0, 10, T0 + 59_999).permits, 0, "cap");
        // a, b and c have not asked for a minute: d gets a slot, and their 30 are gone.
        assert_eq!(r.request(C, "d", 0, 10, T0 + 60_000).permits, 10);
        let mut r = known(100, 52);
        assert_eq!(r.request(C, "a", 0, 100, T0).permits, 50);
        assert_eq!(r.request(C, "b", 0, 100, T0 + 60_000).permits, 0);
    }
}
