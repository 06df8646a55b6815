//! The run's timetable: which target is loaded when, and whether it is measured.
//!
//! A plain run is an optional warm-up phase then one measured phase. With `--compare` each
//! target warms up in turn, then the measured duration is cut into slices that alternate
//! between baseline and target in the order B T T B B T …, so that a drift over the run (a
//! machine warming up, another job starting) falls on both equally.

use std::time::Duration;

use crate::config::Limit;

#[cfg(test)]
mod tests;

/// The targets' indices: the target under test is always 0, the baseline 1.
pub const TARGET: usize = 0;
pub const BASELINE: usize = 1;

/// One phase, relative to the start of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase {
    pub target: usize,
    pub start: Duration,
    /// `None`: until `--requests` are sent.
    pub end: Option<Duration>,
    pub measure: bool,
}

/// A whole run's phases, in time order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub phases: Vec<Phase>,
    /// When measuring begins (second 0 of the per-second series).
    pub measure_start: Duration,
}

/// A slice is about this long when comparing.
const SLICE: Duration = Duration::from_secs(1);

impl Schedule {
    pub fn build(limit: Limit, warmup: Duration, compare: bool) -> Schedule {
        let mut phases = Vec::new();
        let mut at = Duration::ZERO;
        let order: &[usize] = if compare {
            &[BASELINE, TARGET]
        } else {
            &[TARGET]
        };
        if !warmup.is_zero() {
            for &target in order {
                phases.push(Phase {
                    target,
                    start: at,
                    end: Some(at + warmup),
                    measure: false,
                });
                at += warmup;
            }
        }
        let measure_start = at;
        match (limit, compare) {
            (Limit::Requests(_), _) => phases.push(Phase {
                target: TARGET,
                start: at,
                end: None,
                measure: true,
            }),
            (Limit::Duration(d), false) => phases.push(Phase {
                target: TARGET,
                start: at,
                end: Some(at + d),
                measure: true,
            }),
            (Limit::Duration(d), true) => {
                let pairs = ((d.as_secs_f64() / (2.0 * SLICE.as_secs_f64())).round() as u32).max(2);
                let slices = 2 * pairs;
                for i in 0..slices {
                    // B T | T B | B T …: baseline first in even pairs.
                    let pair = i / 2;
                    let first = if pair % 2 == 0 { BASELINE } else { TARGET };
                    let target = if i % 2 == 0 { first } else { 1 - first };
                    let start = measure_start + d * i / slices;
                    let end = measure_start + d * (i + 1) / slices;
                    phases.push(Phase {
                        target,
                        start,
                        end: Some(end),
                        measure: true,
                    });
                }
            }
        }
        Schedule {
            phases,
            measure_start,
        }
    }

    /// The phases of one target, with their indices.
    pub fn of(&self, target: usize) -> impl Iterator<Item = (usize, &Phase)> {
        self.phases
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.target == target)
    }
}
