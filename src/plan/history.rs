//! Estimates that learn: durations measured in earlier runs (this cutover's journal, other
//! customers' journals, a rehearsal's) replace the playbook's guesses in the plan, each with
//! where it comes from, and say how likely each night's work is to fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use serde::Serialize;

use super::{Plan, Warning};
use crate::journal::{AttemptKind, AttemptState, Journal, JournalError};
use crate::playbook::Playbook;

/// How many draws the fit estimate makes. Fixed, with a fixed seed: the same history gives
/// the same plan.
const DRAWS: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read the history journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: JournalError,
    },
    #[error("the history journal {path} does not exist")]
    Missing { path: PathBuf },
}

/// Measured durations (whole seconds) per step id, from every journal read.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub journals: Vec<PathBuf>,
    pub per_step: BTreeMap<String, Vec<i64>>,
}

/// Where a step's estimate in this plan comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Measured {
    /// Succeeded runs measured.
    pub runs: usize,
    pub median_secs: i64,
    /// The shortest and the longest measured.
    pub min_secs: i64,
    pub max_secs: i64,
    /// The playbook's guess, if it has one.
    pub playbook_secs: Option<i64>,
}

/// How likely a night's work ends before the window closes, from the measured spread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    /// Share of draws that end in time, 0 to 100.
    pub percent: u32,
    /// 90th percentile end, RFC 3339.
    pub p90_end: String,
    #[serde(skip)]
    pub p90_end_at: jiff::Timestamp,
    /// Steps of the night with measured durations, and all of them.
    pub measured_steps: usize,
    pub steps: usize,
}

impl History {
    /// Reads succeeded attempts from each journal: per run and step, the longest of its
    /// targets' attempts (they run in parallel) that moved the step forward (not checks, not
    /// rollbacks).
    pub fn read(paths: &[PathBuf]) -> Result<History, HistoryError> {
        let mut h = History::default();
        for path in paths {
            h.read_one(path)?;
        }
        Ok(h)
    }

    fn read_one(&mut self, path: &Path) -> Result<(), HistoryError> {
        let err = |source| HistoryError::Journal {
            path: path.to_path_buf(),
            source,
        };
        let Some(journal) = Journal::open_for_reading(path).map_err(err)? else {
            return Err(HistoryError::Missing {
                path: path.to_path_buf(),
            });
        };
        let mut longest: BTreeMap<(String, String), i64> = BTreeMap::new();
        for a in journal.attempts(None).map_err(err)? {
            if a.state != AttemptState::Succeeded
                || matches!(a.kind, AttemptKind::Check | AttemptKind::Rollback)
            {
                continue;
            }
            let Some(end) = a.ended_at else { continue };
            let secs = a.started_at.duration_until(end).as_secs().max(0);
            let e = longest
                .entry((a.run.as_str().to_string(), a.step_id.clone()))
                .or_insert(0);
            *e = (*e).max(secs);
        }
        for ((_, step), secs) in longest {
            self.per_step.entry(step).or_default().push(secs);
        }
        self.journals.push(path.to_path_buf());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.per_step.is_empty()
    }

    fn sorted(&self, step: &str) -> Option<Vec<i64>> {
        let mut v = self.per_step.get(step)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        Some(v)
    }

    /// The playbook with each measured step's estimate replaced by its median, and what was
    /// replaced.
    pub fn apply(&self, pb: &Playbook) -> (Playbook, BTreeMap<String, Measured>) {
        let mut out = pb.clone();
        let mut measured = BTreeMap::new();
        for step in &mut out.steps {
            let Some(v) = self.sorted(&step.id) else {
                continue;
            };
            let median = v[v.len() / 2];
            measured.insert(
                step.id.clone(),
                Measured {
                    runs: v.len(),
                    median_secs: median,
                    min_secs: v[0],
                    max_secs: v[v.len() - 1],
                    playbook_secs: step.estimate.map(|e| e.as_secs()),
                },
            );
            step.estimate = Some(SignedDuration::from_secs(median));
        }
        (out, measured)
    }

    /// Fills the plan's measured estimates, warns where the guess and the history differ by
    /// more than 2x, and for every night with measured steps says how likely it fits.
    pub fn annotate(&self, plan: &mut Plan, measured: &BTreeMap<String, Measured>, pb: &Playbook) {
        for s in &mut plan.steps {
            s.measured = measured.get(&s.id).cloned();
            let Some(m) = &s.measured else { continue };
            let Some(guess) = m.playbook_secs else {
                plan.warnings.push(Warning {
                    code: "estimate-vs-history",
                    step: Some(s.id.clone()),
                    message: format!(
                        "`{}` has no estimate; {} measured runs took {} (median)",
                        s.id,
                        m.runs,
                        super::human_duration(SignedDuration::from_secs(m.median_secs))
                    ),
                });
                continue;
            };
            let (lo, hi) = (guess.min(m.median_secs), guess.max(m.median_secs));
            if hi > lo.saturating_mul(2) {
                plan.warnings.push(Warning {
                    code: "estimate-vs-history",
                    step: Some(s.id.clone()),
                    message: format!(
                        "`{}` is estimated at {} but took {} (median of {} measured runs, {} to {}): correct the estimate",
                        s.id,
                        super::human_duration(SignedDuration::from_secs(guess)),
                        super::human_duration(SignedDuration::from_secs(m.median_secs)),
                        m.runs,
                        super::human_duration(SignedDuration::from_secs(m.min_secs)),
                        super::human_duration(SignedDuration::from_secs(m.max_secs)),
                    ),
                });
            }
        }
        let w = &pb.window;
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for night in &mut plan.nights {
            let Some(closes) = night.closes else { continue };
            let steps: Vec<&super::PlannedStep> = plan
                .steps
                .iter()
                .filter(|s| s.night == night.number)
                .collect();
            let samples: Vec<Vec<i64>> = steps
                .iter()
                .map(|s| {
                    self.sorted(&s.id)
                        .unwrap_or_else(|| vec![s.estimate_secs.unwrap_or(0)])
                })
                .collect();
            let measured_steps = steps.iter().filter(|s| s.measured.is_some()).count();
            if measured_steps == 0 {
                continue;
            }
            let mut ends: Vec<i64> = (0..DRAWS)
                .map(|_| {
                    samples
                        .iter()
                        .map(|v| {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            v[(seed % v.len() as u64) as usize]
                        })
                        .sum()
                })
                .collect();
            ends.sort_unstable();
            let limit = night.start.duration_until(closes).as_secs();
            let fits = ends.iter().filter(|e| **e <= limit).count();
            let p90 = ends[(DRAWS * 9) / 10];
            let p90_end_at = night
                .start
                .saturating_add(SignedDuration::from_secs(p90))
                .unwrap_or(night.start);
            night.fit = Some(Fit {
                percent: ((fits * 100) / DRAWS) as u32,
                p90_end: super::rfc3339(p90_end_at, w),
                p90_end_at,
                measured_steps,
                steps: steps.len(),
            });
        }
    }
}
