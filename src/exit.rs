//! Process exit codes: a contract with scripts that wrap `runner`, so they never change meaning.

/// Why the process ended. The numbers are documented in README and must stay stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// A step (or a rollback, a check, a ping) failed.
    StepFailed = 1,
    /// The playbook or the command line is invalid; nothing ran and nothing was written.
    InvalidInput = 2,
    /// The business-hours window forbids starting anything now.
    WindowClosed = 3,
    /// A conflict: the state is locked by another run, or the reviewed plan no longer matches.
    Conflict = 4,
    /// A manual step waits for an operator.
    WaitingForOperator = 5,
    /// Interrupted by Ctrl-C (or SIGTERM).
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}
