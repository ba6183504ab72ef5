//! The record types: runs, attempts, marks and events as written to and read from the journal.

use std::fmt;
use std::path::PathBuf;

use jiff::Timestamp;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::ToSql;

/// Text enums as stored in the journal. Unknown text read back is a conversion error rather
/// than a guess.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    FromSqlError::Other(
                        format!("unknown {} {text:?} in journal", stringify!($name)).into(),
                    )
                })
            }
        }
    };
}

text_enum!(
    /// The runner subcommand that opened a run.
    RunCommand { Apply => "apply", Rollback => "rollback", Mark => "mark" }
);

text_enum!(
    /// How an attempt stands. Everything but `Running` is final.
    AttemptState {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        TimedOut => "timed_out",
        Interrupted => "interrupted",
    }
);

text_enum!(
    /// An operator's decision from `runner mark`.
    MarkKind { Done => "done", Retry => "retry", Skip => "skip" }
);

text_enum!(
    /// Business-hours window decisions worth reviewing after the night.
    EventKind { Stopped => "stopped", Waited => "waited", Override => "override", Overrun => "overrun" }
);

/// What an attempt did. Stored as free text so new kinds need no migration.
///
/// For the pair state only three roles matter (see [`super::state::derive_pair_state`]): `Check` is
/// informational, `Rollback` undoes, and every other kind (run, reboot, upload, and kinds this
/// build does not know) moves the step forward.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttemptKind {
    Run,
    Check,
    Rollback,
    Reboot,
    Upload,
    Other(String),
}

impl AttemptKind {
    pub fn as_str(&self) -> &str {
        match self {
            AttemptKind::Run => "run",
            AttemptKind::Check => "check",
            AttemptKind::Rollback => "rollback",
            AttemptKind::Reboot => "reboot",
            AttemptKind::Upload => "upload",
            AttemptKind::Other(s) => s,
        }
    }

    pub fn parse(text: &str) -> AttemptKind {
        match text {
            "run" => AttemptKind::Run,
            "check" => AttemptKind::Check,
            "rollback" => AttemptKind::Rollback,
            "reboot" => AttemptKind::Reboot,
            "upload" => AttemptKind::Upload,
            other => AttemptKind::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for AttemptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's id, e.g. `20261130T231500Z-4242` (start time in UTC, runner pid).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub String);

impl RunId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An attempt's id. Attempt and mark ids come from one journal-wide sequence, so a larger id
/// was started later than any smaller attempt or mark id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub i64);

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A run about to start. The runner version is filled in by the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub command: RunCommand,
    pub playbook_path: PathBuf,
    pub playbook_sha256: String,
    pub started_at: Timestamp,
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// Command-line arguments, already redacted by the caller: the journal stores them verbatim.
    pub args: Vec<String>,
    /// Set when `RUNNER_NOW` replaced the clock: every time this run records is simulated.
    pub simulated: Option<crate::clock::Simulated>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub command: RunCommand,
    /// Lossy for non-UTF-8 paths: this is for display only.
    pub playbook_path: String,
    pub playbook_sha256: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub outcome: Option<String>,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub runner_version: String,
    pub args: Vec<String>,
    /// Set when the run's clock was simulated (`RUNNER_NOW`): its times are not real.
    pub simulated: Option<crate::clock::Simulated>,
}

/// An attempt about to start on a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttempt {
    pub run: RunId,
    pub step_id: String,
    pub target: String,
    pub kind: AttemptKind,
    /// 1 for the first try; the engine counts retries.
    pub number: u32,
    pub started_at: Timestamp,
    /// The runner process, so a later run can tell whether it is still alive.
    pub pid: u32,
    pub host: String,
    pub def_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: AttemptId,
    pub run: RunId,
    pub step_id: String,
    pub target: String,
    pub kind: AttemptKind,
    pub number: u32,
    pub state: AttemptState,
    pub exit_code: Option<i64>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub pid: u32,
    pub host: String,
    pub message: Option<String>,
    pub def_hash: String,
    /// Position in the journal-wide sequence when the attempt ended; orders completions.
    pub finish_seq: Option<i64>,
    /// Where it ran (see [`super::Journal::bind_targets`]); `None` if recorded before identities were.
    pub target_identity: Option<String>,
}

/// An operator decision about one step × target pair. A mark for a whole step is recorded as
/// one mark per target (see [`super::Journal::mark_all`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMark {
    /// The `runner mark` run this decision belongs to, if the CLI opened one.
    pub run: Option<RunId>,
    pub step_id: String,
    pub target: String,
    pub mark: MarkKind,
    /// The step's definition hash in the playbook the operator marked against, so a resume can
    /// tell whether a step marked done has changed since.
    pub def_hash: String,
    pub user: String,
    pub host: String,
    pub at: Timestamp,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// From the same sequence as [`AttemptId`].
    pub id: i64,
    pub run: Option<RunId>,
    pub step_id: String,
    pub target: String,
    pub mark: MarkKind,
    pub def_hash: String,
    pub user: String,
    pub host: String,
    pub at: Timestamp,
    pub reason: Option<String>,
    /// The target's identity when the decision was made; `None` if unknown.
    pub target_identity: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub run: RunId,
    pub at: Timestamp,
    pub step_id: Option<String>,
    pub kind: EventKind,
    /// Free text, e.g. an override's reason and who gave it. Never a secret.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub run: RunId,
    pub at: Timestamp,
    pub step_id: Option<String>,
    pub kind: EventKind,
    pub detail: String,
}
