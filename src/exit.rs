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

    /// The exit a code stands for (an unknown code is a failure).
    pub fn from_code(code: i32) -> Exit {
        match code {
            0 => Exit::Success,
            2 => Exit::InvalidInput,
            3 => Exit::WindowClosed,
            4 => Exit::Conflict,
            5 => Exit::WaitingForOperator,
            130 => Exit::Interrupted,
            _ => Exit::StepFailed,
        }
    }
}
