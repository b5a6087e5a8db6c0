//! The fault schedule: which fault happens at which point of the run, drawn from the seed.
//!
//! Faults are placed on the run's *progress* (the fraction of all steps checkpointed), not on
//! the clock, so every fault lands while work is in flight whatever the machine's speed: a
//! kill at 0.4 happens once 40 % of the steps are recorded. Kills are spread over
//! [0.03, 0.75] and Postgres restarts over [0.15, 0.70]; each kill names a worker slot and how
//! long the slot stays down before it is relaunched.
//!
//! The last Postgres restart always comes after the last kill (at most at 0.85), and the
//! orchestrator fires a restart only while every worker is up and serving. A relaunched
//! worker recovers whatever its executor id left `PENDING`, so a kill after a Postgres restart
//! would also rescue work the restart stranded on that worker and hide it; with the restart
//! last, the workers live through it with no kill to come, and "a database outage only delays
//! work, never strands it" is tested on its own.

use serde::Serialize;

/// A small deterministic generator (SplitMix64): the schedule depends only on the seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Fault {
    /// SIGKILL the worker in `slot`, relaunch it `down_ms` later under the same executor id.
    Kill {
        /// The worker slot (0-based).
        slot: u32,
        /// How long the slot stays down.
        down_ms: u64,
    },
    /// `pg_ctl restart -m immediate`.
    PgRestart,
}

/// A fault and the progress at which it fires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Scheduled {
    /// Fraction of all steps checkpointed when the fault fires.
    pub(crate) at_progress: f64,
    /// The fault.
    #[serde(flatten)]
    pub(crate) fault: Fault,
}

/// The schedule of `kills` kills over `workers` slots and `pg_restarts` Postgres restarts,
/// sorted by progress.
pub(crate) fn schedule(seed: u64, workers: u32, kills: u32, pg_restarts: u32) -> Vec<Scheduled> {
    let mut rng = Rng::new(seed);
    let mut events = Vec::new();
    for _ in 0..kills {
        events.push(Scheduled {
            at_progress: rng.range(0.03, 0.75),
            fault: Fault::Kill {
                slot: rng.below(u64::from(workers)) as u32,
                down_ms: rng.below(400),
            },
        });
    }
    for _ in 0..pg_restarts {
        events.push(Scheduled {
            at_progress: rng.range(0.15, 0.70),
            fault: Fault::PgRestart,
        });
    }
    let last_kill = events
        .iter()
        .filter(|e| matches!(e.fault, Fault::Kill { .. }))
        .map(|e| e.at_progress)
        .fold(0.0f64, f64::max);
    let last_restart = events
        .iter_mut()
        .filter(|e| e.fault == Fault::PgRestart)
        .max_by(|a, b| a.at_progress.total_cmp(&b.at_progress));
    if let Some(restart) = last_restart {
        if restart.at_progress <= last_kill {
            restart.at_progress = (last_kill + 0.02).min(0.85);
        }
    }
    events.sort_by(|a, b| a.at_progress.total_cmp(&b.at_progress));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let a = schedule(42, 3, 10, 2);
        assert_eq!(a, schedule(42, 3, 10, 2));
        assert_ne!(a, schedule(43, 3, 10, 2));
        assert_eq!(a.len(), 12);
        assert_eq!(a.iter().filter(|e| e.fault == Fault::PgRestart).count(), 2);
        assert!(a.windows(2).all(|w| w[0].at_progress <= w[1].at_progress));
        for e in &a {
            assert!((0.03..=0.85).contains(&e.at_progress), "{e:?}");
            if let Fault::Kill { slot, down_ms } = e.fault {
                assert!(slot < 3 && down_ms < 400, "{e:?}");
            }
        }
    }

    #[test]
    fn the_last_postgres_restart_comes_after_the_last_kill() {
        for seed in 0..200 {
            let events = schedule(seed, 3, 6, 2);
            let last_kill = events
                .iter()
                .rposition(|e| matches!(e.fault, Fault::Kill { .. }))
                .expect("kills");
            let last_restart = events
                .iter()
                .rposition(|e| e.fault == Fault::PgRestart)
                .expect("restarts");
            assert!(last_restart > last_kill, "seed {seed}: {events:?}");
        }
    }

    #[test]
    fn kills_reach_every_slot_over_a_long_schedule() {
        let slots: std::collections::HashSet<u32> = schedule(1, 4, 50, 0)
            .iter()
            .filter_map(|e| match e.fault {
                Fault::Kill { slot, .. } => Some(slot),
                Fault::PgRestart => None,
            })
            .collect();
        assert_eq!(slots.len(), 4);
    }
}
