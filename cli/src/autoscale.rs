//! `repovault standalone --autoscale MIN..MAX`: in-process workers that follow the queue's
//! desired-worker figure (`repovault_coordinator::scaling`), for one machine.
//!
//! Growing is the loop's: every [`TICK`] it starts workers up to the figure (never above MAX).
//! Shrinking is the workers' own: each worker above MIN runs with `exit_when_idle`
//! ([`IDLE_EXIT`]), so a surplus worker leaves when it has had nothing to do for that long,
//! and no worker is ever stopped in the middle of a task.

use std::sync::Arc;
use std::time::Duration;

use repovault_coordinator::scaling::{FleetScaling, ScalingConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the figure is read: the heartbeat's order of magnitude, so a queued backup waits
/// for its worker a couple of seconds at most; a read costs one look at the queue.
pub const TICK: Duration = Duration::from_secs(2);

/// How long a worker above MIN may sit idle before it exits. Our choice: long enough that a
/// schedule's next backup (queued seconds apart) finds its worker still there, short enough
/// that an idle machine gives its memory back within a minute.
pub const IDLE_EXIT: Duration = Duration::from_secs(30);

/// The bounds of `--autoscale MIN..MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

impl std::str::FromStr for Bounds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (min, max) = s
            .split_once("..")
            .ok_or_else(|| format!("--autoscale {s:?} is not MIN..MAX (e.g. 0..4)"))?;
        let num = |v: &str, what: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("--autoscale {s:?}: {what} {v:?} is not a whole number"))
        };
        let b = Bounds {
            min: num(min, "MIN")?,
            max: num(max, "MAX")?,
        };
        if b.max == 0 || b.min > b.max {
            return Err(format!(
                "--autoscale {s:?}: MAX must be at least 1 and at least MIN"
            ));
        }
        Ok(b)
    }
}

/// Workers to start now: up to the figure, within the bounds, beyond those running.
pub fn to_start(running: u32, desired: u32, b: Bounds) -> u32 {
    desired.clamp(b.min, b.max).saturating_sub(running)
}

/// Starts one in-process worker: its index, and whether it exits when idle.
pub type Spawn =
    dyn Fn(u32, Option<Duration>) -> futures::future::BoxFuture<'static, ()> + Send + Sync;

/// Runs the pool until `stop`: MIN workers that stay, and up to MAX - MIN more while the queue
/// wants them. `slots_per_worker` is what each worker `spawn` starts runs.
pub async fn run(
    scaling: Arc<FleetScaling>,
    bounds: Bounds,
    slots_per_worker: u32,
    spawn: Arc<Spawn>,
    stop: CancellationToken,
) {
    scaling.configure(ScalingConfig {
        slots_per_worker,
        min_workers: bounds.min,
        max_workers: bounds.max,
    });
    let mut pool = JoinSet::new();
    let mut next = 0u32;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        while pool.try_join_next().is_some() {}
        let running = u32::try_from(pool.len()).unwrap_or(u32::MAX);
        let desired = scaling.figures().await.desired_workers;
        for _ in 0..to_start(running, desired, bounds) {
            // The first MIN stay; the rest leave when idle.
            let idle = (pool.len() >= bounds.min as usize).then_some(IDLE_EXIT);
            pool.spawn(spawn(next, idle));
            next += 1;
        }
    }
    while pool.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_and_refuse_by_name() {
        assert_eq!("0..4".parse::<Bounds>(), Ok(Bounds { min: 0, max: 4 }));
        assert!(
            "4".parse::<Bounds>()
                .expect_err("refused")
                .contains("MIN..MAX")
        );
        assert!(
            "3..1"
                .parse::<Bounds>()
                .expect_err("refused")
                .contains("at least MIN")
        );
        assert!("0..0".parse::<Bounds>().is_err());
        assert!(
            "a..2"
                .parse::<Bounds>()
                .expect_err("refused")
                .contains("MIN")
        );
    }

    #[test]
    fn start_up_to_the_figure_within_the_bounds() {
        let b = Bounds { min: 1, max: 3 };
        assert_eq!(to_start(0, 0, b), 1, "MIN even without work");
        assert_eq!(to_start(1, 0, b), 0);
        assert_eq!(to_start(1, 2, b), 1);
        assert_eq!(to_start(1, 10, b), 2, "never above MAX");
        assert_eq!(to_start(3, 1, b), 0, "surplus workers leave by themselves");
    }
}
