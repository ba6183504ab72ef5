//! What the engine reports while it works. The engine only emits events; reporters (the
//! terminal progress, `--json`, the run's events file) decide how to show them.

use jiff::Timestamp;
use serde::Serialize;

use crate::clock::Simulated;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        command: String,
        playbook: String,
        steps: usize,
        pairs_total: usize,
        pairs_done: usize,
        run_dir: String,
        /// When business hours next begin (None: no restriction).
        business_hours_at: Option<Timestamp>,
        /// Set when `RUNNER_NOW` replaced the clock: the times of this run are simulated.
        simulated_clock: Option<Simulated>,
    },
    StepStarted {
        step: String,
        title: String,
        index: usize,
        targets: Vec<String>,
    },
    PairSkipped {
        step: String,
        target: String,
        reason: String,
    },
    AttemptStarted {
        step: String,
        target: String,
        kind: String,
        attempt: u32,
        of: u32,
    },
    /// One line of a command's output, secrets already masked.
    Output {
        step: String,
        target: String,
        stream: String,
        line: String,
    },
    AttemptFinished {
        step: String,
        target: String,
        kind: String,
        attempt: u32,
        outcome: String,
        exit_code: Option<i64>,
        elapsed_ms: u64,
        message: Option<String>,
    },
    PairFinished {
        step: String,
        target: String,
        ok: bool,
        elapsed_ms: u64,
    },
    StepFinished {
        step: String,
        ok: bool,
    },
    /// A pair found running in the journal by a process that no longer exists.
    InDoubt {
        step: String,
        target: String,
        decision: String,
    },
    WindowClosed {
        step: String,
        next_start: Option<Timestamp>,
        action: String,
    },
    /// A countdown while `when_closed: wait` waits for the window.
    Waiting {
        step: String,
        until: Timestamp,
        remaining_secs: i64,
    },
    WindowOverride {
        step: String,
        reason: String,
    },
    Overrun {
        step: String,
        target: String,
    },
    OperatorNeeded {
        step: String,
        instructions: String,
    },
    Notice {
        text: String,
    },
    RunFinished {
        outcome: String,
        exit_code: i32,
        message: String,
        simulated_clock: Option<Simulated>,
    },
    /// The first event of a run whose clock `RUNNER_NOW` replaced: every time it shows and
    /// records is simulated, and `real_start` is when it really began.
    SimulatedClock {
        from: Timestamp,
        real_start: Option<Timestamp>,
    },
}

/// Receives events; called from several threads at once.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);

    /// The terminal this reporter writes to is gone (SIGHUP): stop drawing on it.
    fn hang_up(&self) {}

    /// Runs `f` (a question to the operator) with this reporter's drawing suspended, so that
    /// what `f` prints stays on the screen.
    fn suspend(&self, f: &mut dyn FnMut()) {
        f()
    }
}

/// A reporter that shows nothing (tests, `--quiet` where events still go to the run log).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event) {}
}
