//! How many workers the queue wants: a pure function of the work in hand and the bounds.

use serde::{Deserialize, Serialize};

/// `[scaling]`: what the desired-worker figure assumes and where it is clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingConfig {
    /// Slots of one worker of the scaled pool (its `--slots`). Default 2, the worker's default.
    pub slots_per_worker: u32,
    /// The fewest workers wanted, work or not (0: a pool may scale to zero).
    pub min_workers: u32,
    /// The most workers wanted however long the queue: what the pool's storage, forge rate
    /// limits and budget can bear. Default 20, our choice for a first deployment.
    pub max_workers: u32,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            slots_per_worker: 2,
            min_workers: 0,
            max_workers: 20,
        }
    }
}

impl ScalingConfig {
    /// Refuses bounds that cannot hold, naming them.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots_per_worker == 0 {
            return Err("scaling.slots_per_worker must be at least 1".into());
        }
        if self.max_workers == 0 {
            return Err("scaling.max_workers must be at least 1".into());
        }
        if self.min_workers > self.max_workers {
            return Err(format!(
                "scaling.min_workers ({}) is above scaling.max_workers ({})",
                self.min_workers, self.max_workers
            ));
        }
        Ok(())
    }
}

/// Workers wanted for `work` tasks (ready plus leased: a worker running a task is wanted until
/// it ends, or an autoscaler would stop it mid-backup): the work over the slots per worker,
/// rounded up, within the bounds.
pub fn desired_workers(work: u64, c: &ScalingConfig) -> u32 {
    let need = work.div_ceil(u64::from(c.slots_per_worker.max(1)));
    let need = u32::try_from(need).unwrap_or(u32::MAX);
    need.clamp(c.min_workers, c.max_workers.max(c.min_workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_over_slots_rounded_up_within_the_bounds() {
        let c = ScalingConfig::default();
        assert_eq!(desired_workers(0, &c), 0);
        assert_eq!(desired_workers(1, &c), 1);
        assert_eq!(desired_workers(2, &c), 1);
        assert_eq!(desired_workers(3, &c), 2);
        assert_eq!(desired_workers(1_000, &c), 20);
        let floor = ScalingConfig {
            min_workers: 2,
            ..c
        };
        assert_eq!(desired_workers(0, &floor), 2);
        assert_eq!(desired_workers(u64::MAX, &floor), 20);
    }

    #[test]
    fn impossible_bounds_are_refused_by_name() {
        let c = ScalingConfig {
            min_workers: 5,
            max_workers: 2,
            ..Default::default()
        };
        assert!(
            c.validate()
                .expect_err("refused")
                .contains("scaling.min_workers")
        );
        let c = ScalingConfig {
            slots_per_worker: 0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .expect_err("refused")
                .contains("slots_per_worker")
        );
        assert!(ScalingConfig::default().validate().is_ok());
    }
}
