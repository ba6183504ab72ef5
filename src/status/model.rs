//! The status view: each pair's state as an operator sees it, and what the view holds.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::journal::{AttemptState, Holder, PairState};

/// The state of one step × target pair as an operator needs to see it.
///
/// Finer than [`PairState`] in two ways: a failure says how it ended (failed, timed out,
/// interrupted), and a `Running` pair is split into "running" and "in doubt" depending on
/// whether its runner could still be working on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairStatus {
    Pending,
    Running,
    InDoubt,
    Succeeded,
    MarkedDone,
    Skipped,
    Failed,
    TimedOut,
    Interrupted,
    RolledBack,
    RollbackFailed,
}

impl PairStatus {
    pub const ALL: &'static [PairStatus] = &[
        PairStatus::Pending,
        PairStatus::Running,
        PairStatus::InDoubt,
        PairStatus::Succeeded,
        PairStatus::MarkedDone,
        PairStatus::Skipped,
        PairStatus::Failed,
        PairStatus::TimedOut,
        PairStatus::Interrupted,
        PairStatus::RolledBack,
        PairStatus::RollbackFailed,
    ];

    /// What the operator and the customer read.
    pub fn label(self) -> &'static str {
        match self {
            PairStatus::Pending => "pending",
            PairStatus::Running => "running",
            PairStatus::InDoubt => "in doubt",
            PairStatus::Succeeded => "succeeded",
            PairStatus::MarkedDone => "marked done",
            PairStatus::Skipped => "skipped",
            PairStatus::Failed => "failed",
            PairStatus::TimedOut => "timed out",
            PairStatus::Interrupted => "interrupted",
            PairStatus::RolledBack => "rolled back",
            PairStatus::RollbackFailed => "rollback failed",
        }
    }

    /// Whether the pair needs no more work going forward (a skip counts as done).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            PairStatus::Succeeded | PairStatus::MarkedDone | PairStatus::Skipped
        )
    }

    /// Whether something went wrong that a person has to look at.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            PairStatus::Failed
                | PairStatus::TimedOut
                | PairStatus::Interrupted
                | PairStatus::RollbackFailed
        )
    }

    /// Classifies a derived pair state. `this_host` decides whether a `Running` pair's runner
    /// could still be alive (see [`PairState::is_in_doubt`]).
    pub fn of(state: &PairState, this_host: &str) -> PairStatus {
        match state {
            PairState::Pending => PairStatus::Pending,
            PairState::Running { .. } if state.is_in_doubt(this_host) => PairStatus::InDoubt,
            PairState::Running { .. } => PairStatus::Running,
            PairState::Succeeded { by_mark: true, .. } => PairStatus::MarkedDone,
            PairState::Succeeded { .. } => PairStatus::Succeeded,
            PairState::Skipped { .. } => PairStatus::Skipped,
            PairState::Failed { state, .. } => match state {
                AttemptState::TimedOut => PairStatus::TimedOut,
                AttemptState::Interrupted => PairStatus::Interrupted,
                // `Running` and `Succeeded` never reach a Failed state; calling them failed is
                // the safe reading of a damaged row.
                _ => PairStatus::Failed,
            },
            PairState::RolledBack { .. } => PairStatus::RolledBack,
            PairState::RollbackFailed { .. } => PairStatus::RollbackFailed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The playbook's `name`.
    pub playbook: String,
    pub path: String,
    /// IANA zone the times are shown in; None when the window has no business hours (UTC).
    pub timezone: Option<String>,
    pub now: Timestamp,
    /// `now` comes from `RUNNER_NOW`, not the real clock (set by the caller).
    pub now_simulated: bool,
    /// False when there is no journal: the playbook was never applied.
    pub applied: bool,
    pub lock: Option<LockView>,
    pub last_run: Option<RunView>,
    /// Number of pairs in each state; every state is present, zero or not, so tools can
    /// index it without checking.
    pub counts: BTreeMap<PairStatus, usize>,
    pub steps: Vec<StepView>,
    /// The first step with a pair not done; None when everything is done.
    pub next: Option<NextView>,
    /// Pairs the journal has but the playbook no longer names (a step or target was renamed
    /// or removed since they ran). Shown so that a changed playbook cannot hide history.
    pub unknown_pairs: Vec<UnknownPair>,
    /// Every run whose clock `RUNNER_NOW` replaced: the times it recorded are simulated.
    pub simulated_runs: Vec<RunView>,
    /// Notifications of the latest run that sent any, one entry per notification and sink.
    pub notifications: Vec<crate::journal::DeliverySummary>,
    /// Every step with work left, with its planned start from now (what is done is not
    /// scheduled again).
    pub schedule: Vec<ScheduledStep>,
    /// Whether the rest fits before business hours, as a sentence ("3 steps left, expected to
    /// end 05:40 CST, business hours at 07:15, margin 1h35m"); None when it cannot be scheduled.
    pub fit: Option<String>,
    /// The rest ends before business hours begin (None: it cannot be scheduled).
    pub fits: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduledStep {
    pub step: String,
    pub title: String,
    /// Its targets with work left.
    pub targets: Vec<String>,
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    pub holder: Holder,
    pub state: LockState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// The holder process is alive on this host.
    Held,
    /// The lock file names a process on this host that no longer exists: the lock is free,
    /// the text is left over.
    Stale,
    /// The holder is on another host; whether it is alive cannot be checked from here.
    OtherHost,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    /// apply, rollback or mark.
    pub command: String,
    pub user: String,
    pub host: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// None while the run is open, or when its runner died before closing it.
    pub outcome: Option<String>,
    /// Set when the run's clock was simulated (`RUNNER_NOW`).
    pub simulated_clock: Option<crate::clock::Simulated>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// 1-based position in the playbook.
    pub number: usize,
    pub id: String,
    pub title: String,
    pub manual: bool,
    pub pairs: Vec<PairView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairView {
    pub target: String,
    pub status: PairStatus,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    /// Attempts that move the step forward (not checks, not rollbacks).
    pub attempts: usize,
    /// Duration of the last attempt that is not a check, if it ended.
    pub last_duration_secs: Option<i64>,
    /// When the pair reached its current state (or the last attempt ended).
    pub last_end: Option<Timestamp>,
    pub running: Option<RunningView>,
    /// The operator decision behind a marked-done or skipped pair.
    pub mark: Option<MarkView>,
    /// The pair succeeded, but the step as written now differs from what succeeded: a resume
    /// will not trust that success.
    pub definition_changed: bool,
    /// A run under a simulated clock (`RUNNER_NOW`) worked on or decided about this pair: some
    /// of its times are simulated.
    pub simulated_clock: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningView {
    pub kind: String,
    pub pid: u32,
    pub host: String,
    pub started_at: Timestamp,
    /// The folder of a detached job on the target, when the attempt runs detached.
    pub detached_job: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MarkView {
    pub user: String,
    pub host: String,
    pub at: Timestamp,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextView {
    pub step: String,
    pub title: String,
    /// Its pairs that are not done.
    pub waiting: Vec<WaitingPair>,
    /// Earliest start the business-hours window allows from now; None when no gap within the
    /// planning horizon is long enough.
    pub earliest: Option<Timestamp>,
    /// The window allows it right now.
    pub now: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitingPair {
    pub target: String,
    pub status: PairStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnknownPair {
    pub step: String,
    pub target: String,
    pub status: PairStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_and_failure_are_disjoint() {
        for &s in PairStatus::ALL {
            assert!(!(s.is_done() && s.is_failure()), "{s:?}");
        }
        assert!(PairStatus::Skipped.is_done());
        assert!(!PairStatus::RolledBack.is_done());
        assert!(PairStatus::TimedOut.is_failure());
        assert!(!PairStatus::InDoubt.is_failure());
    }
}
