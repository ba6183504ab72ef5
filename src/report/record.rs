//! The record of a cutover for the customer: the same in every format, and the JSON as is.

use jiff::Timestamp;
use serde::Serialize;

use crate::journal;
use crate::status::PairStatus;

/// The whole record; serialized as is for `--format json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: u32,
    pub playbook: PlaybookInfo,
    pub summary: Summary,
    pub targets: Vec<TargetInfo>,
    /// The final state of every step of the playbook.
    pub steps: Vec<StepRecord>,
    pub runs: Vec<RunRecord>,
    /// Operator decisions not tied to a run recorded in the journal.
    pub other_marks: Vec<MarkRecord>,
    /// Every notification sent (or not) to a `notify:` sink, one entry per notification and
    /// sink, tries folded in.
    pub notifications: Vec<journal::DeliverySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaybookInfo {
    pub name: String,
    pub description: Option<String>,
    pub path: String,
    pub sha256: String,
    /// The zone times are shown in; None means UTC (no business hours).
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub first_start: Option<Timestamp>,
    pub last_end: Option<Timestamp>,
    /// From the first run's start to the last run's end, nights between included.
    pub elapsed_secs: Option<i64>,
    /// The runs' durations added up: the time the runner was actually at work.
    pub working_secs: i64,
    pub steps: usize,
    pub steps_done: usize,
    pub steps_failed: usize,
    pub steps_in_doubt: usize,
    pub steps_running: usize,
    pub steps_rolled_back: usize,
    pub steps_pending: usize,
    pub attempts: usize,
    pub failed_attempts: usize,
    pub rollback_attempts: usize,
    pub marks: usize,
    pub overrides: usize,
    pub overruns: usize,
    /// Runs whose clock `RUNNER_NOW` replaced: their times are simulated, not real.
    pub simulated_runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub name: String,
    /// e.g. `ssh admin@10.0.0.5:22`; never a credential.
    pub connection: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    Failed,
    InDoubt,
    Running,
    RolledBack,
    Pending,
}

impl StepOutcome {
    pub fn label(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Failed => "failed",
            StepOutcome::InDoubt => "in doubt",
            StepOutcome::Running => "running",
            StepOutcome::RolledBack => "rolled back",
            StepOutcome::Pending => "pending",
        }
    }

    /// A step's outcome from its pairs: any failure makes the step failed, then any doubt,
    /// then any work in progress; it is done only when every pair is.
    pub(super) fn of(pairs: &[FinalPair]) -> StepOutcome {
        let any = |f: fn(PairStatus) -> bool| pairs.iter().any(|p| f(p.status));
        if any(PairStatus::is_failure) {
            StepOutcome::Failed
        } else if any(|s| s == PairStatus::InDoubt) {
            StepOutcome::InDoubt
        } else if any(|s| s == PairStatus::Running) {
            StepOutcome::Running
        } else if pairs.iter().all(|p| p.status.is_done()) {
            StepOutcome::Done
        } else if any(|s| s == PairStatus::RolledBack) {
            StepOutcome::RolledBack
        } else {
            StepOutcome::Pending
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// 1-based position in the playbook.
    pub number: usize,
    pub id: String,
    pub title: String,
    pub phase: Option<String>,
    pub outcome: StepOutcome,
    pub pairs: Vec<FinalPair>,
    /// The playbook's estimate, in seconds.
    pub estimate_secs: Option<i64>,
    /// How long it took: each target's last succeeded attempt (checks and rollbacks aside),
    /// the longest of them (targets run in parallel). None until it succeeded.
    pub actual_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinalPair {
    pub target: String,
    pub status: PairStatus,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// 1-based, in start order.
    pub number: usize,
    pub id: String,
    /// apply, rollback or mark.
    pub command: String,
    pub user: String,
    pub host: String,
    pub runner_version: String,
    pub started_at: Timestamp,
    /// None when the runner stopped without closing the run (killed, power cut) or is still
    /// at work.
    pub ended_at: Option<Timestamp>,
    /// The latest thing the journal records for this run.
    pub last_activity: Option<Timestamp>,
    /// To `ended_at`, or to `last_activity` for a run that was never closed.
    pub duration_secs: i64,
    pub outcome: Option<String>,
    /// Some attempt in this run failed, timed out or was interrupted.
    pub had_failures: bool,
    /// Business-hours window decisions.
    pub events: Vec<EventRecord>,
    /// Steps this run worked on, in playbook order.
    pub steps: Vec<RunStep>,
    pub marks: Vec<MarkRecord>,
    /// Set when the run's clock was simulated (`RUNNER_NOW`): every time above is simulated.
    pub simulated_clock: Option<crate::clock::Simulated>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunStep {
    pub id: String,
    pub title: String,
    pub pairs: Vec<RunPair>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunPair {
    pub target: String,
    pub attempts: Vec<AttemptRecord>,
    pub output: OutputTail,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub id: i64,
    /// 1 for the first try.
    pub number: u32,
    /// run, check, rollback, ...
    pub kind: String,
    /// running, succeeded, failed, timed_out or interrupted.
    pub state: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_secs: Option<i64>,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub failed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputTail {
    /// Relative to the runs directory: `<run-id>/<step>@<target>.log`.
    pub file: String,
    pub status: OutputStatus,
    /// Why an existing file could not be read.
    pub error: Option<String>,
    pub lines: Vec<OutputLine>,
    /// Earlier lines exist that are not shown.
    pub earlier_omitted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStatus {
    Recorded,
    Empty,
    Missing,
    Unreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputLine {
    /// stdout, stderr, ... as the engine wrote it; empty for a line not in the log format.
    pub stream: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MarkRecord {
    pub run: Option<String>,
    pub step: String,
    pub target: String,
    /// done, retry or skip.
    pub decision: String,
    pub user: String,
    pub host: String,
    pub at: Timestamp,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub at: Timestamp,
    /// stopped, waited, override or overrun.
    pub kind: String,
    pub step: Option<String>,
    pub detail: String,
}
