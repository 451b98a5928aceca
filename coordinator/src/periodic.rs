//! The coordinator's periodic passes (retention, the read-back rotation, drills, second copies,
//! escrow locks, task history, download expiry, the reaper, readiness, organisation discovery)
//! all run through [`every`], so they share one timing contract.

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// When a periodic pass first runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPass {
    /// At start-up: the pass catches up on what fell due while the coordinator was down.
    AtStart,
    /// One period after start-up: a heavy pass that need not compete with a starting
    /// coordinator rebuilding its queue.
    AfterOnePeriod,
}

/// Runs `pass` every `period` until `stop` is cancelled.
///
/// Contract:
/// * **No overlap.** A pass starts only after the previous one has returned.
/// * **No burst.** A pass that overruns its period delays the next one by the overrun; missed
///   periods are not made up with passes back to back.
/// * **Stop between passes.** `stop` is looked at before every pass. A pass already running is
///   not interrupted here: every pass's writes are store transactions, and the server's
///   shutdown grace bounds how long it may take. A pass that must end early takes `stop` itself.
pub async fn every<F, Fut>(
    period: Duration,
    first: FirstPass,
    stop: &CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    if first == FirstPass::AfterOnePeriod {
        // An interval's first tick completes at once.
        tick.tick().await;
    }
    loop {
        tokio::select! {
            // A stop and a due tick together: the stop wins.
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        pass().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use parking_lot::Mutex;

    use super::*;

    /// Runs `every` in the background, recording when each pass started; the first pass takes
    /// `first_takes`, the others no time.
    fn start(
        period: Duration,
        first: FirstPass,
        first_takes: Duration,
    ) -> (
        CancellationToken,
        Arc<Mutex<Vec<Instant>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let stop = CancellationToken::new();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let run = tokio::spawn({
            let (stop, starts) = (stop.clone(), starts.clone());
            async move {
                every(period, first, &stop, || {
                    let starts = starts.clone();
                    async move {
                        let n = {
                            let mut s = starts.lock();
                            s.push(Instant::now());
                            s.len()
                        };
                        if n == 1 {
                            tokio::time::sleep(first_takes).await;
                        }
                    }
                })
                .await
            }
        });
        (stop, starts, run)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// Bounded waits for what must happen (generous: a loaded machine is slow, never early).
    const PATIENCE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn the_first_pass_runs_at_start_or_after_a_period_and_a_stop_ends_the_loop() {
        let (stop, starts, run) = start(HOUR, FirstPass::AtStart, Duration::ZERO);
        tokio::time::timeout(PATIENCE, async {
            while starts.lock().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("a first pass at start-up");
        stop.cancel();
        tokio::time::timeout(PATIENCE, run)
            .await
            .expect("every returns once stopped")
            .expect("join");
        assert_eq!(starts.lock().len(), 1, "one pass in the first hour");

        let (stop, starts, run) = start(HOUR, FirstPass::AfterOnePeriod, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        tokio::time::timeout(PATIENCE, run)
            .await
            .expect("every returns once stopped")
            .expect("join");
        assert!(starts.lock().is_empty(), "no pass before the first period");
    }

    #[tokio::test]
    async fn an_overrunning_pass_delays_the_next_without_a_burst() {
        // The first pass overruns six periods; the passes after it are a period apart, not
        // back to back as made-up ticks would run them.
        let period = Duration::from_millis(50);
        let (stop, starts, run) = start(period, FirstPass::AtStart, period * 6);
        tokio::time::timeout(PATIENCE, async {
            while starts.lock().len() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("passes after the long one");
        stop.cancel();
        run.await.expect("join");
        let s = starts.lock().clone();
        assert!(
            s[1] - s[0] >= period * 6,
            "the second pass waited for the first"
        );
        for w in s[1..].windows(2) {
            assert!(
                w[1] - w[0] >= period - Duration::from_millis(5),
                "passes {:?} apart",
                w[1] - w[0]
            );
        }
    }
}
