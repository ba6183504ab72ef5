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
        kind: ActionKind,
        attempt: u32,
        of: u32,
    },
    /// One line of a command's output, secrets already masked.
    Output {
        step: String,
        target: String,
        stream: OutputStream,
        line: String,
    },
    AttemptFinished {
        step: String,
        target: String,
        kind: ActionKind,
        attempt: u32,
        outcome: AttemptOutcome,
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
        decision: Decision,
    },
    WindowClosed {
        step: String,
        next_start: Option<Timestamp>,
        action: ClosedAction,
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
        outcome: RunOutcome,
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

/// Declares an event field's closed set of values with the text each is shown and serialized
/// as (the `--json` output and the run's events file keep these exact words).
macro_rules! event_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

event_enum!(
    /// What an attempt does: the step's action, or the rollback of it.
    ActionKind {
        Run => "run",
        Script => "script",
        Upload => "upload",
        Copy => "copy",
        Fetch => "fetch",
        Manual => "manual",
        Reboot => "reboot",
        Rollback => "rollback",
    }
);

impl ActionKind {
    pub fn of(action: &crate::playbook::Action) -> ActionKind {
        use crate::playbook::Action;
        match action {
            Action::Run(_) => ActionKind::Run,
            Action::Script(_) => ActionKind::Script,
            Action::Upload { .. } => ActionKind::Upload,
            Action::Copy { .. } => ActionKind::Copy,
            Action::Fetch { .. } => ActionKind::Fetch,
            Action::Manual(_) => ActionKind::Manual,
            Action::Reboot { .. } => ActionKind::Reboot,
        }
    }
}

event_enum!(
    /// How an attempt ended.
    AttemptOutcome {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        TimedOut => "timed_out",
        Interrupted => "interrupted",
    }
);

impl From<crate::journal::AttemptState> for AttemptOutcome {
    fn from(s: crate::journal::AttemptState) -> AttemptOutcome {
        use crate::journal::AttemptState as S;
        match s {
            S::Running => AttemptOutcome::Running,
            S::Succeeded => AttemptOutcome::Succeeded,
            S::Failed => AttemptOutcome::Failed,
            S::TimedOut => AttemptOutcome::TimedOut,
            S::Interrupted => AttemptOutcome::Interrupted,
        }
    }
}

event_enum!(
    /// Which output a line came from: the command's, or its check's.
    OutputStream {
        Stdout => "stdout",
        Stderr => "stderr",
        CheckStdout => "check-stdout",
        CheckStderr => "check-stderr",
    }
);

event_enum!(
    /// What `apply` does when the window is closed (`when_closed`).
    ClosedAction { Stop => "stop", Wait => "wait" }
);

event_enum!(
    /// How a run ended, as the journal records it.
    RunOutcome {
        Succeeded => "succeeded",
        Failed => "failed",
        NeedsOperator => "needs-operator",
        WaitingForOperator => "waiting-for-operator",
        StoppedWindow => "stopped-window",
        Interrupted => "interrupted",
        JournalLost => "journal-lost",
        RolledBack => "rolled-back",
        RollbackFailed => "rollback-failed",
    }
);

/// What `apply` decided about a pair that was in flight when an earlier runner stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Decision {
    #[serde(rename = "a detached job: follow it")]
    FollowJob,
    #[serde(rename = "a reboot: wait for the target")]
    WaitForReboot,
    /// An operator must decide (`runner mark`).
    #[serde(rename = "operator")]
    Operator,
    #[serde(rename = "ask the operator again")]
    AskOperatorAgain,
    #[serde(rename = "check passed: done")]
    CheckPassed,
    #[serde(rename = "check passed but cannot be recorded")]
    CheckPassedUnrecorded,
    #[serde(rename = "check failed: run again")]
    CheckFailed,
    #[serde(rename = "idempotent: run again")]
    Idempotent,
    /// The command an earlier runner left on the target was dealt with; what was done.
    #[serde(untagged)]
    Settled(String),
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::FollowJob => "a detached job: follow it",
            Decision::WaitForReboot => "a reboot: wait for the target",
            Decision::Operator => "operator",
            Decision::AskOperatorAgain => "ask the operator again",
            Decision::CheckPassed => "check passed: done",
            Decision::CheckPassedUnrecorded => "check passed but cannot be recorded",
            Decision::CheckFailed => "check failed: run again",
            Decision::Idempotent => "idempotent: run again",
            Decision::Settled(text) => text,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_serialize_as_the_words_tools_read() {
        let e = Event::InDoubt {
            step: "s".into(),
            target: "t".into(),
            decision: Decision::CheckPassed,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"in_doubt","step":"s","target":"t","decision":"check passed: done"}"#
        );
        let e = Event::InDoubt {
            step: "s".into(),
            target: "t".into(),
            decision: Decision::Settled("the old command was stopped".into()),
        };
        assert!(serde_json::to_string(&e)
            .unwrap()
            .ends_with(r#""decision":"the old command was stopped"}"#));
        let e = Event::RunFinished {
            outcome: RunOutcome::StoppedWindow,
            exit_code: 3,
            message: "m".into(),
            simulated_clock: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"run_finished","outcome":"stopped-window","exit_code":3,"message":"m","simulated_clock":null}"#
        );
        let e = Event::Output {
            step: "s".into(),
            target: "t".into(),
            stream: OutputStream::CheckStderr,
            line: "l".into(),
        };
        assert!(serde_json::to_string(&e)
            .unwrap()
            .contains(r#""stream":"check-stderr""#));
        let e = Event::AttemptFinished {
            step: "s".into(),
            target: "t".into(),
            kind: ActionKind::Rollback,
            attempt: 1,
            outcome: AttemptOutcome::TimedOut,
            exit_code: None,
            elapsed_ms: 5,
            message: None,
        };
        assert!(serde_json::to_string(&e)
            .unwrap()
            .contains(r#""kind":"rollback","attempt":1,"outcome":"timed_out""#));
    }
}
