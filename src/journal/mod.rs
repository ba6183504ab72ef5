//! The journal: what ran, where, when and how it ended, in one SQLite file per playbook.
//!
//! It is the only thing that lets a cutover resume after a kill -9, a reboot of the jump host or
//! a power cut, so it is written defensively:
//!
//! - WAL with `synchronous=FULL`: once a write function has returned, the row is on disk.
//! - Every write is one short `BEGIN IMMEDIATE` transaction, committed before returning.
//! - Intent before action: [`Journal::begin_attempt`] records a `running` row *before* the
//!   engine touches a target. A `running` row whose runner is gone is therefore "in doubt", never
//!   silently "not started".
//! - The state of a step × target pair is never stored; it is derived from the history by
//!   [`derive_pair_state`], so there is no second copy that could disagree.
//!
//! Only the CLI chooses where the file lives; the journal creates the directory.

pub mod copy;
pub mod lock;
pub mod notes;
mod notifications;
pub mod pg;
mod schema;
pub mod sql;

pub use notifications::{
    summarize as summarize_notifications, DeliverySummary, NewNotification, Notification,
};

pub use lock::{
    acquire, host_name, lock_path, process_alive, read_holder_of, Holder, LockError, LockGuard,
};

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql, Transaction, TransactionBehavior};

use sql::{Row, Tx};

use schema::MigrateError;

/// How long a writer waits for another connection's transaction (e.g. `runner status` reading
/// while `apply` writes). Transactions are a few milliseconds, so this only matters on a very
/// slow or very busy disk.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the journal directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the journal {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path} is not an SQLite database; is this really the runner journal?")]
    NotADatabase { path: PathBuf },
    #[error("{path} is an SQLite database but not a runner journal; refusing to touch it")]
    NotAJournal { path: PathBuf },
    #[error(
        "the journal {path} has schema version {found}, but this runner only knows up to \
         {known}; it was written by a newer runner: use that version"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "the journal {path} has schema version {found}, older than this runner's {known}; \
         run `runner status` on it once to upgrade it"
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "the journal {path} could not be switched to {wanted} (SQLite reports {got}); \
         the file system may not support it (network file systems often do not)"
    )]
    Pragma {
        path: PathBuf,
        wanted: &'static str,
        got: String,
    },
    #[error("cannot make the journal directory entry durable for {path}: {source}")]
    Sync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journal database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("journal database error (PostgreSQL): {}", pg_text(.0))]
    Pg(#[from] postgres::Error),
    /// The PostgreSQL server or the cutover's place on it could not be used.
    #[error("the journal on PostgreSQL cannot be used: {0}")]
    Store(String),
    /// A row that does not read as the journal wrote it (edited by hand, or a bug).
    #[error("the journal holds a row that cannot be read: {0}")]
    BadRow(String),
    /// A write on PostgreSQL without the cutover's lease.
    #[error("{0}: writing to the journal needs the cutover's lease, and this process has none")]
    NoLease(String),
    /// Another runner took the cutover's lease: this one must not record anything more.
    #[error(
        "another runner took over the cutover {location} (this run held lease fence {ours}, \
         the lease is now at {}), so this run records nothing more and stops; the other \
         runner's record decides\n  = help: `runner status` shows who holds it",
        match .now { Some(n) => n.to_string(), None => "none".into() }
    )]
    Fenced {
        location: String,
        ours: i64,
        now: Option<i64>,
    },
    #[error("no run {0} in the journal")]
    UnknownRun(String),
    #[error("no attempt {0} in the journal")]
    UnknownAttempt(AttemptId),
    #[error("attempt {id} already ended as {state}; it cannot be finished again")]
    AttemptNotRunning { id: AttemptId, state: AttemptState },
    #[error("attempt {0} cannot be finished as running")]
    FinishAsRunning(AttemptId),
    /// No journal at the path, but the copy a run saved when it found its journal deleted:
    /// starting a new, empty journal would run every step again.
    #[error(
        "there is no journal at {path}, but {copy} holds the one a run saved when its journal was \
         deleted; starting afresh would run steps already done again\n  = help: put it back with \
         `mv {copy} {path}`; or, if the cutover really starts over, remove {copy}",
        path = .path.display(), copy = .copy.display()
    )]
    RescuedCopy { path: PathBuf, copy: PathBuf },
    /// The file at the journal's path is no longer the one this connection opened: someone
    /// deleted, moved or replaced it. Every later write is refused, so nothing more starts
    /// with its record going to a file nobody will read.
    #[error(
        "the journal {path} was {} while this run was using it, so nothing more is started; \
         what this run recorded is no longer at that path.\n  = help: {}; do not run \
         `runner apply` before the journal is back, or steps already done would run again",
        if *.deleted { "deleted" } else { "replaced by another file" },
        match (.rescued, .deleted) {
            (Ok(copy), true) => format!(
                "a copy of what this run's journal holds was saved to {}: check it, then put it \
                 back with `mv {} {}`",
                copy.display(), copy.display(), .path.display()
            ),
            (Ok(copy), false) => format!(
                "a copy of what this run's journal holds was saved to {c}; the file now at {p} \
                 is another one. To go on from this run's record instead: \
                 `rm {p}-wal {p}-shm; mv {c} {p}` (the -wal and -shm files belong to the lost \
                 file)",
                c = copy.display(), p = .path.display()
            ),
            (Err(why), _) => format!("no copy of this run's journal could be saved ({why})"),
        }
    )]
    Replaced {
        path: PathBuf,
        deleted: bool,
        /// Where the journal as this connection knew it was saved, or why it could not be.
        rescued: Result<PathBuf, String>,
    },
}

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
/// For the pair state only three roles matter (see [`derive_pair_state`]): `Check` is
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
    /// Where it ran (see [`Journal::bind_targets`]); `None` if recorded before identities were.
    pub target_identity: Option<String>,
}

/// An operator decision about one step × target pair. A mark for a whole step is recorded as
/// one mark per target (see [`Journal::mark_all`]).
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

/// The effective state of one step × target pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairState {
    /// Never ran, marked retry, or nothing decisive recorded.
    Pending,
    Succeeded {
        at: Timestamp,
        def_hash: String,
        by_mark: bool,
        /// The identity of the target it succeeded on; `None` when the journal predates
        /// identities.
        target_identity: Option<String>,
    },
    /// Marked skip: counts as done, is never rolled back.
    Skipped {
        at: Timestamp,
    },
    Failed {
        at: Timestamp,
        state: AttemptState,
        exit_code: Option<i64>,
        message: Option<String>,
    },
    /// A run or rollback attempt is recorded as running. If `pid` is not alive on `host` (or
    /// `host` is another machine and we hold the lock), it is in doubt: the step may or may not
    /// have had its effect.
    Running {
        attempt: AttemptId,
        kind: AttemptKind,
        pid: u32,
        host: String,
        started_at: Timestamp,
    },
    RolledBack {
        at: Timestamp,
    },
    RollbackFailed {
        at: Timestamp,
        exit_code: Option<i64>,
    },
}

impl PairState {
    /// Whether this pair is `Running` but its runner cannot still be working on it: the pid is
    /// gone on this host, or the attempt was started on another machine. An attempt from another
    /// host counts as in doubt because the caller is expected to hold the state lock, which that
    /// runner would need too. In doubt means the step may or may not have had its effect; the
    /// engine must not silently re-run a non-idempotent step.
    pub fn is_in_doubt(&self, this_host: &str) -> bool {
        match self {
            PairState::Running { pid, host, .. } => host != this_host || !process_alive(*pid),
            _ => false,
        }
    }
}

/// One entry of a pair's history as [`derive_pair_state`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryEntry {
    Attempt(Attempt),
    Mark(Mark),
}

impl HistoryEntry {
    /// Position in the journal-wide start sequence.
    pub fn seq(&self) -> i64 {
        match self {
            HistoryEntry::Attempt(a) => a.id.0,
            HistoryEntry::Mark(m) => m.id,
        }
    }

    /// Position in the journal-wide completion sequence. An attempt that has not finished yet
    /// (or finished before this column existed) falls back to its start.
    fn completion_seq(&self) -> i64 {
        match self {
            HistoryEntry::Attempt(a) => a.finish_seq.unwrap_or(a.id.0),
            HistoryEntry::Mark(m) => m.id,
        }
    }

    fn step_target(&self) -> (&str, &str) {
        match self {
            HistoryEntry::Attempt(a) => (&a.step_id, &a.target),
            HistoryEntry::Mark(m) => (&m.step_id, &m.target),
        }
    }
}

/// The entry that decides a pair's state: the latest (by start sequence) entry that is not a
/// check attempt. Order-independent in its input.
fn deciding(history: &[HistoryEntry]) -> Option<&HistoryEntry> {
    history
        .iter()
        .filter(|e| !matches!(e, HistoryEntry::Attempt(a) if a.kind == AttemptKind::Check))
        .max_by_key(|e| e.seq())
}

/// Derives a pair's state from its history (attempts and marks of that one step × target).
///
/// The rule: ignore check attempts (the engine records the run attempt's outcome itself), take
/// the entry with the highest sequence number, and map it:
///
/// | latest entry                                    | state                      |
/// |-------------------------------------------------|----------------------------|
/// | none                                            | `Pending`                  |
/// | forward attempt `running`                       | `Running`                  |
/// | forward attempt `succeeded`                     | `Succeeded { by_mark: false }` |
/// | forward attempt `failed`/`timed_out`/`interrupted` | `Failed`                |
/// | rollback attempt `running`                      | `Running { kind: Rollback }` |
/// | rollback attempt `succeeded`                    | `RolledBack`               |
/// | rollback attempt `failed`/`timed_out`/`interrupted` | `RollbackFailed`       |
/// | mark `done`                                     | `Succeeded { by_mark: true }` |
/// | mark `retry`                                    | `Pending`                  |
/// | mark `skip`                                     | `Skipped`                  |
///
/// "Forward" is every attempt kind except `check` and `rollback`: run, reboot, upload and any
/// kind a later runner adds. Ordering by *start* sequence (not end) matters: if an in-doubt
/// attempt is closed as interrupted after a newer attempt started, the newer one still decides.
pub fn derive_pair_state(history: &[HistoryEntry]) -> PairState {
    match deciding(history) {
        None => PairState::Pending,
        Some(HistoryEntry::Mark(m)) => match m.mark {
            MarkKind::Done => PairState::Succeeded {
                at: m.at,
                def_hash: m.def_hash.clone(),
                by_mark: true,
                target_identity: m.target_identity.clone(),
            },
            MarkKind::Retry => PairState::Pending,
            MarkKind::Skip => PairState::Skipped { at: m.at },
        },
        Some(HistoryEntry::Attempt(a)) => {
            // A finished attempt always has ended_at; falling back keeps a damaged row readable.
            let at = a.ended_at.unwrap_or(a.started_at);
            let rollback = a.kind == AttemptKind::Rollback;
            match a.state {
                AttemptState::Running => PairState::Running {
                    attempt: a.id,
                    kind: a.kind.clone(),
                    pid: a.pid,
                    host: a.host.clone(),
                    started_at: a.started_at,
                },
                AttemptState::Succeeded if rollback => PairState::RolledBack { at },
                AttemptState::Succeeded => PairState::Succeeded {
                    at,
                    def_hash: a.def_hash.clone(),
                    by_mark: false,
                    target_identity: a.target_identity.clone(),
                },
                AttemptState::Failed | AttemptState::TimedOut | AttemptState::Interrupted
                    if rollback =>
                {
                    PairState::RollbackFailed {
                        at,
                        exit_code: a.exit_code,
                    }
                }
                AttemptState::Failed | AttemptState::TimedOut | AttemptState::Interrupted => {
                    PairState::Failed {
                        at,
                        state: a.state,
                        exit_code: a.exit_code,
                        message: a.message.clone(),
                    }
                }
            }
        }
    }
}

/// See [`Journal::settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `wal` when open.
    pub journal_mode: String,
    /// SQLite's number: 2 is FULL.
    pub synchronous: i64,
    pub foreign_keys: bool,
    pub schema_version: i64,
}

/// The journal-wide schema version this build writes.
pub fn schema_version() -> i64 {
    schema::current_version()
}

/// A PostgreSQL error with the server's own message (the plain one says only "db error").
pub(crate) fn pg_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Where the journal's rows are.
enum Db {
    Sqlite(Connection),
    /// One connection, not a pool: the engine's threads take turns through the journal's mutex.
    Pg {
        client: Box<std::cell::RefCell<postgres::Client>>,
        loc: pg::PgLocation,
        /// The lease's fence this journal writes under; see [`Journal::hold`].
        fence: Option<i64>,
    },
}

pub struct Journal {
    db: Db,
    path: PathBuf,
    /// Device and inode of the file at `path` when it was opened: every write first checks
    /// that the path still names that file.
    file: Option<(u64, u64)>,
    /// Set once the file was found deleted or replaced: where its content was saved.
    lost: std::cell::RefCell<Option<(bool, Result<PathBuf, String>)>>,
    /// Target name -> identity, recorded with every attempt and mark written from now on.
    targets: std::collections::BTreeMap<String, String>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

const ATTEMPT_COLUMNS: &str = "id, run_id, step_id, target, kind, number, state, exit_code, \
     started_at, ended_at, pid, host, message, def_hash, finish_seq, target_identity";
const MARK_COLUMNS: &str =
    "id, run_id, step_id, target, mark, def_hash, \"user\", host, at, reason, target_identity";

impl Journal {
    /// Opens the journal at `path`, creating it (and its directory) if needed and migrating it
    /// to the current schema.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(loc) = pg::parse_location(path) {
            let client = pg::open(&loc, true)?
                .ok_or_else(|| JournalError::Store(format!("{}: not created", loc.display())))?;
            return Ok(Self::on_pg(path, loc, client));
        }
        let existed = path.exists();
        if !existed {
            if let Some(copy) = rescued_copies(path).into_iter().next() {
                return Err(JournalError::RescuedCopy {
                    path: path.to_owned(),
                    copy,
                });
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_dir_durably(dir)?;
        }
        let journal = Self::open_with(path, OpenFlags::SQLITE_OPEN_CREATE)?;
        if !existed {
            // SQLite syncs the file's contents but not necessarily the new directory entry;
            // without this a power cut could lose the whole (committed) journal.
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        Ok(journal)
    }

    /// Opens an existing journal, or `None` if there is no file: `status` and `report` must not
    /// create one. Still migrates an older journal, like [`Journal::open`].
    pub fn open_existing(path: &Path) -> Result<Option<Journal>, JournalError> {
        if let Some(loc) = pg::parse_location(path) {
            return Ok(pg::open(&loc, false)?.map(|client| Self::on_pg(path, loc, client)));
        }
        if !path.exists() {
            return Ok(None);
        }
        Self::open_with(path, OpenFlags::empty()).map(Some)
    }

    /// Opens an existing journal for reading only, or `None` if there is no file: nothing is
    /// written, not even a migration or a pragma, and no lock is taken, so a reader (`runner
    /// serve`) can never disturb a run. A journal of another schema version is refused (any
    /// writing command migrates an older one).
    pub fn open_read_only(path: &Path) -> Result<Option<Journal>, JournalError> {
        if !path.exists() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| JournalError::Open {
                path: path.to_owned(),
                source,
            })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let journal = Journal {
            db: Db::Sqlite(conn),
            path: path.to_owned(),
            file: file_id(path),
            lost: std::cell::RefCell::new(None),
            targets: std::collections::BTreeMap::new(),
        };
        let Some(conn) = journal.sqlite() else {
            unreachable!("opened as SQLite just above")
        };
        let version = schema::version(conn).map_err(|e| journal.classify(e))?;
        if version > schema::current_version() {
            return Err(journal.too_new(version));
        }
        if version < schema::current_version() {
            return Err(JournalError::TooOld {
                path: path.to_owned(),
                found: version,
                known: schema::current_version(),
            });
        }
        Ok(Some(journal))
    }

    /// SQLite's `data_version`: changes whenever another connection commits to the journal,
    /// so a reader can tell cheaply whether there is anything new to read.
    pub fn data_version(&self) -> Result<i64, JournalError> {
        match self.sqlite() {
            Some(conn) => Ok(conn.pragma_query_value(None, "data_version", |r| r.get(0))?),
            // A PostgreSQL journal has no such counter: every look is "maybe changed".
            None => Ok(jiff::Timestamp::now().as_millisecond()),
        }
    }

    fn open_with(path: &Path, extra: OpenFlags) -> Result<Journal, JournalError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | extra;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| JournalError::Open {
                path: path.to_owned(),
                source,
            })?;
        let mut journal = Journal {
            db: Db::Sqlite(conn),
            path: path.to_owned(),
            file: None,
            lost: std::cell::RefCell::new(None),
            targets: std::collections::BTreeMap::new(),
        };
        journal.configure()?;
        // After configure: the file exists now, whoever created it.
        journal.file = file_id(path);
        Ok(journal)
    }

    fn on_pg(path: &Path, loc: pg::PgLocation, client: postgres::Client) -> Journal {
        Journal {
            db: Db::Pg {
                client: Box::new(std::cell::RefCell::new(client)),
                fence: pg::held_fence(&loc),
                loc,
            },
            path: path.to_owned(),
            file: None,
            lost: std::cell::RefCell::new(None),
            targets: std::collections::BTreeMap::new(),
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, the rescue copy).
    fn sqlite(&self) -> Option<&Connection> {
        match &self.db {
            Db::Sqlite(c) => Some(c),
            Db::Pg { .. } => None,
        }
    }

    /// Whether this journal is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Pg { .. })
    }

    /// Writes from now on under `lock`'s lease: each write checks, in its own transaction, that
    /// the lease's fence is still the current one. No effect on SQLite, where the flock is
    /// enough (one machine).
    pub fn hold(&mut self, lock: &LockGuard) {
        if let (Db::Pg { fence, loc, .. }, Some(lease)) = (&mut self.db, lock.lease()) {
            if lease.cutover() == loc.cutover {
                *fence = Some(lease.fence());
            }
        }
    }

    fn configure(&self) -> Result<(), JournalError> {
        let Some(conn) = self.sqlite() else {
            return Ok(());
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;

        // The first statement that reads the header tells us whether this is SQLite at all, and
        // the version must be checked before anything writes (even a journal_mode change).
        let version = schema::version(conn).map_err(|e| self.classify(e))?;
        if version > schema::current_version() {
            return Err(self.too_new(version));
        }

        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| self.classify(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(self.pragma_failed("journal_mode=WAL", mode));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
        if sync != 2 {
            return Err(self.pragma_failed("synchronous=FULL", sync.to_string()));
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
        if fk != 1 {
            return Err(self.pragma_failed("foreign_keys=ON", fk.to_string()));
        }

        schema::migrate(conn).map_err(|e| match e {
            MigrateError::Foreign | MigrateError::WrongApplication => JournalError::NotAJournal {
                path: self.path.clone(),
            },
            MigrateError::TooNew(found) => self.too_new(found),
            MigrateError::Db(e) => self.classify(e),
        })
    }

    /// Turns "file is not a database" into a message an operator can act on.
    fn classify(&self, e: rusqlite::Error) -> JournalError {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => JournalError::NotADatabase {
                path: self.path.clone(),
            },
            _ => JournalError::Db(e),
        }
    }

    fn too_new(&self, found: i64) -> JournalError {
        JournalError::TooNew {
            path: self.path.clone(),
            found,
            known: schema::current_version(),
        }
    }

    fn pragma_failed(&self, wanted: &'static str, got: String) -> JournalError {
        JournalError::Pragma {
            path: self.path.clone(),
            wanted,
            got,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability settings actually in force on this connection, for diagnostics and
    /// tests: a journal that silently fell back to a weaker mode would be worse than an error.
    pub fn settings(&self) -> Result<Settings, JournalError> {
        let conn = match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Pg { client, .. } => {
                let mut c = client.borrow_mut();
                let sync: String = c.query_one("SHOW synchronous_commit", &[])?.get(0);
                let fsync: String = c.query_one("SHOW fsync", &[])?.get(0);
                return Ok(Settings {
                    journal_mode: "postgresql".into(),
                    synchronous: if sync == "on" && fsync == "on" { 2 } else { 0 },
                    foreign_keys: true,
                    schema_version: pg::version(&mut c)?,
                });
            }
        };
        Ok(Settings {
            journal_mode: conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
            synchronous: conn.pragma_query_value(None, "synchronous", |r| r.get(0))?,
            foreign_keys: conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?,
            schema_version: schema::version(conn)?,
        })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits before returning. IMMEDIATE
    /// takes the write lock up front, so a reader upgrading to writer can never deadlock.
    ///
    /// On PostgreSQL the transaction first checks the lease's fence (see [`Journal::hold`]).
    fn write<T>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        match &self.db {
            Db::Sqlite(conn) => {
                self.check_file()?;
                let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
                let value = f(&*tx)?;
                tx.commit()?;
                Ok(value)
            }
            Db::Pg { client, loc, fence } => {
                let mut c = self.pg_client(client, loc)?;
                let mut tx = c.transaction()?;
                pg::check_fence(&mut tx, loc, *fence)?;
                let value = f(&pg::PgTx(std::cell::RefCell::new(&mut tx)))?;
                tx.commit()?;
                Ok(value)
            }
        }
    }

    /// The PostgreSQL connection, opened again if the server dropped it (a restart): the next
    /// write then goes through once the server is back, still under the fence.
    fn pg_client<'c>(
        &self,
        client: &'c std::cell::RefCell<postgres::Client>,
        loc: &pg::PgLocation,
    ) -> Result<std::cell::RefMut<'c, postgres::Client>, JournalError> {
        let mut c = client.borrow_mut();
        if c.is_closed() {
            *c = pg::open(loc, false)?.ok_or_else(|| {
                JournalError::Store(format!("{}: the cutover is gone", loc.display()))
            })?;
        }
        Ok(c)
    }

    /// Runs several reads against one snapshot, so e.g. attempts and marks agree.
    fn read<T>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        match &self.db {
            Db::Sqlite(conn) => {
                let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
                f(&*tx)
            }
            Db::Pg { client, loc, .. } => {
                let mut c = self.pg_client(client, loc)?;
                let mut tx = c
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let value = f(&pg::PgTx(std::cell::RefCell::new(&mut tx)))?;
                tx.commit()?;
                Ok(value)
            }
        }
    }

    /// Whether the path still names the file this connection opened. The first time it does
    /// not, what this connection sees is saved beside it (never over anything), so that the
    /// operator can put it back.
    fn check_file(&self) -> Result<(), JournalError> {
        let mut lost = self.lost.borrow_mut();
        if lost.is_none() {
            let now = file_id(&self.path);
            if self.file.is_none() || now == self.file {
                return Ok(());
            }
            let deleted = now.is_none();
            let rescued = self.rescue();
            if deleted && rescued.is_ok() {
                // Left without their file they are only a trap: a journal put back under this
                // name would be "recovered" from them, pages of another file. This connection
                // writes nothing more, and its open descriptors do not need the names.
                for suffix in ["-wal", "-shm"] {
                    let mut name = self.path.as_os_str().to_owned();
                    name.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(name));
                }
            }
            *lost = Some((deleted, rescued));
        }
        let (deleted, rescued) = lost.clone().unwrap_or((true, Err(String::new())));
        Err(JournalError::Replaced {
            path: self.path.clone(),
            deleted,
            rescued,
        })
    }

    /// Writes what this connection sees to a new file beside the journal's path.
    fn rescue(&self) -> Result<PathBuf, String> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "journal".into());
        let copy = rescue_names(&self.path)
            .find(|p| std::fs::symlink_metadata(p).is_err())
            .ok_or_else(|| format!("{name}.rescued-1 to -99 all exist in {}", dir.display()))?;
        let target = copy.to_string_lossy().into_owned();
        self.sqlite()
            .ok_or_else(|| "not an SQLite journal".to_owned())?
            .execute("VACUUM INTO ?1", [&target])
            .map_err(|e| format!("{}: {e}", copy.display()))?;
        Ok(copy)
    }

    /// Binds target names to their identities (see the engine's identity rules): every attempt
    /// and mark written through this connection from now on records the identity of its target,
    /// so that a success is tied to where it happened.
    pub fn bind_targets(&mut self, identities: std::collections::BTreeMap<String, String>) {
        self.targets = identities;
    }

    /// This journal's random id, made when it was created (or migrated to schema 3).
    pub fn journal_id(&self) -> Result<Option<String>, JournalError> {
        self.meta("journal_id")
    }

    /// The name of the playbook this journal belongs to; `None` until a run claims it.
    pub fn playbook(&self) -> Result<Option<String>, JournalError> {
        self.meta("playbook")
    }

    /// Records which playbook this journal belongs to.
    pub fn set_playbook(&self, name: &str) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.exec(
                "INSERT INTO journal_meta (key, value) VALUES ('playbook', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[name.into()],
            )?;
            Ok(())
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.read(|tx| {
            tx.row(
                "SELECT value FROM journal_meta WHERE key = ?1",
                &[key.into()],
            )?
            .map(|r| r.text(0))
            .transpose()
        })
    }

    /// Records the start of a run and returns its id.
    pub fn begin_run(&self, r: &NewRun) -> Result<RunId, JournalError> {
        let base = format!("{}-{}", r.started_at.strftime("%Y%m%dT%H%M%SZ"), r.pid);
        let args = serde_json::to_string(&r.args)
            .map_err(|e| JournalError::BadRow(format!("run arguments: {e}")))?;
        self.write(|tx| {
            // The same pid can start two runs within a second (a `mark` right after an aborted
            // `apply` in one process, or tests); suffix instead of failing.
            let mut id = base.clone();
            let mut n = 1u32;
            while run_exists(tx, &id)? {
                n += 1;
                id = format!("{base}-{n}");
            }
            tx.exec(
                "INSERT INTO runs (id, command, playbook_path, playbook_sha256, started_at, \
                 \"user\", host, pid, runner_version, args, simulated_from, real_started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                &[
                    id.as_str().into(),
                    r.command.as_str().into(),
                    r.playbook_path.to_string_lossy().into_owned().into(),
                    (&r.playbook_sha256).into(),
                    r.started_at.into(),
                    (&r.user).into(),
                    (&r.host).into(),
                    r.pid.into(),
                    env!("CARGO_PKG_VERSION").into(),
                    args.as_str().into(),
                    r.simulated.map(|c| c.from).into(),
                    r.simulated.and_then(|c| c.real_start).into(),
                ],
            )?;
            Ok(RunId(id))
        })
    }

    pub fn end_run(&self, run: &RunId, outcome: &str, at: Timestamp) -> Result<(), JournalError> {
        self.write(|tx| {
            let n = tx.exec(
                "UPDATE runs SET ended_at = ?1, outcome = ?2 WHERE id = ?3",
                &[at.into(), outcome.into(), (&run.0).into()],
            )?;
            if n == 0 {
                return Err(JournalError::UnknownRun(run.0.clone()));
            }
            Ok(())
        })
    }

    /// Records each step's definition hash as seen by this run: `(step_id, def_hash)`.
    /// Recording a step again replaces its hash.
    pub fn record_definitions(
        &self,
        run: &RunId,
        defs: &[(String, String)],
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            require_run(tx, run)?;
            for (step, hash) in defs {
                tx.exec(
                    "INSERT INTO step_definitions (run_id, step_id, def_hash) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (run_id, step_id) DO UPDATE SET def_hash = excluded.def_hash",
                    &[(&run.0).into(), step.into(), hash.into()],
                )?;
            }
            Ok(())
        })
    }

    /// The definition hashes recorded for a run, by step id.
    pub fn definitions(&self, run: &RunId) -> Result<Vec<(String, String)>, JournalError> {
        self.read(|tx| {
            tx.rows(
                "SELECT step_id, def_hash FROM step_definitions WHERE run_id = ?1 ORDER BY step_id",
                &[(&run.0).into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
    }

    /// Records the intent to act: the `running` row is committed to disk before this returns,
    /// and only then may the engine touch the target.
    pub fn begin_attempt(&self, a: &NewAttempt) -> Result<AttemptId, JournalError> {
        self.begin_attempt_noted(a, &[])
    }

    /// [`Journal::begin_attempt`] with notes on the attempt, committed together: what must be
    /// durable before the attempt's command starts costs no second write.
    pub fn begin_attempt_noted(
        &self,
        a: &NewAttempt,
        notes: &[(&str, &str)],
    ) -> Result<AttemptId, JournalError> {
        self.write(|tx| {
            require_run(tx, &a.run)?;
            let id = next_seq(tx)?;
            tx.exec(
                "INSERT INTO attempts (id, run_id, step_id, target, kind, number, state, \
                 started_at, pid, host, def_hash, target_identity) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                &[
                    id.into(),
                    (&a.run.0).into(),
                    (&a.step_id).into(),
                    (&a.target).into(),
                    a.kind.as_str().into(),
                    a.number.into(),
                    AttemptState::Running.as_str().into(),
                    a.started_at.into(),
                    a.pid.into(),
                    (&a.host).into(),
                    (&a.def_hash).into(),
                    self.targets.get(&a.target).into(),
                ],
            )?;
            for (key, value) in notes {
                put_note(tx, id, key, value)?;
            }
            Ok(AttemptId(id))
        })
    }

    /// Records how a running attempt ended. Only a `running` attempt can be finished, exactly
    /// once: a second outcome for the same attempt would mean two parties think they own it.
    pub fn finish_attempt(
        &self,
        id: AttemptId,
        state: AttemptState,
        exit_code: Option<i64>,
        at: Timestamp,
        message: Option<&str>,
    ) -> Result<(), JournalError> {
        if state == AttemptState::Running {
            return Err(JournalError::FinishAsRunning(id));
        }
        self.write(|tx| {
            let current: Option<AttemptState> = tx
                .row("SELECT state FROM attempts WHERE id = ?1", &[id.0.into()])?
                .map(|r| r.parse(0, AttemptState::parse))
                .transpose()?;
            match current {
                None => return Err(JournalError::UnknownAttempt(id)),
                Some(AttemptState::Running) => {}
                Some(state) => return Err(JournalError::AttemptNotRunning { id, state }),
            }
            let seq = next_seq(tx)?;
            tx.exec(
                "UPDATE attempts SET state = ?1, exit_code = ?2, ended_at = ?3, message = ?4, \
                 finish_seq = ?5 WHERE id = ?6",
                &[
                    state.as_str().into(),
                    exit_code.into(),
                    at.into(),
                    message.into(),
                    seq.into(),
                    id.0.into(),
                ],
            )?;
            Ok(())
        })
    }

    /// Records one operator decision.
    pub fn mark(&self, m: &NewMark) -> Result<(), JournalError> {
        self.mark_all(std::slice::from_ref(m))
    }

    /// Records several decisions atomically: `runner mark FILE STEP done` on a step with many
    /// targets must not leave half of them marked if the disk fills up.
    pub fn mark_all(&self, marks: &[NewMark]) -> Result<(), JournalError> {
        self.write(|tx| {
            for m in marks {
                if let Some(run) = &m.run {
                    require_run(tx, run)?;
                }
                let id = next_seq(tx)?;
                tx.exec(
                    "INSERT INTO marks (id, run_id, step_id, target, mark, def_hash, \"user\", \
                     host, at, reason, target_identity) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    &[
                        id.into(),
                        m.run.as_ref().map(|r| r.0.as_str()).into(),
                        (&m.step_id).into(),
                        (&m.target).into(),
                        m.mark.as_str().into(),
                        (&m.def_hash).into(),
                        (&m.user).into(),
                        (&m.host).into(),
                        m.at.into(),
                        m.reason.as_deref().into(),
                        self.targets.get(&m.target).into(),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Records a note on an attempt (replacing an earlier value of the same key), durably,
    /// before the action it describes is taken.
    pub fn set_note(&self, attempt: AttemptId, key: &str, value: &str) -> Result<(), JournalError> {
        self.write(|tx| put_note(tx, attempt.0, key, value))
    }

    /// The notes of an attempt.
    pub fn notes(
        &self,
        attempt: AttemptId,
    ) -> Result<std::collections::BTreeMap<String, String>, JournalError> {
        self.read(|tx| {
            tx.rows(
                "SELECT key, value FROM attempt_notes WHERE attempt_id = ?1",
                &[attempt.0.into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
    }

    pub fn record_event(&self, e: &NewEvent) -> Result<(), JournalError> {
        self.write(|tx| {
            require_run(tx, &e.run)?;
            tx.exec(
                "INSERT INTO events (run_id, at, step_id, kind, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    (&e.run.0).into(),
                    e.at.into(),
                    e.step_id.as_deref().into(),
                    e.kind.as_str().into(),
                    (&e.detail).into(),
                ],
            )?;
            Ok(())
        })
    }

    /// The effective state of one step × target pair; see [`derive_pair_state`].
    pub fn pair(&self, step: &str, target: &str) -> Result<PairState, JournalError> {
        let history = self.read(|tx| {
            let mut history = Vec::new();
            let key = [step.into(), target.into()];
            for r in tx.rows(
                &format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE step_id = ?1 AND target = ?2"
                ),
                &key,
            )? {
                history.push(HistoryEntry::Attempt(attempt_from_row(&r)?));
            }
            for r in tx.rows(
                &format!("SELECT {MARK_COLUMNS} FROM marks WHERE step_id = ?1 AND target = ?2"),
                &key,
            )? {
                history.push(HistoryEntry::Mark(mark_from_row(&r)?));
            }
            Ok(history)
        })?;
        Ok(derive_pair_state(&history))
    }

    /// Every pair the journal knows of, in the order it first appeared.
    pub fn pairs(&self) -> Result<Vec<(String, String, PairState)>, JournalError> {
        Ok(self
            .histories()?
            .into_iter()
            .map(|(step, target, history)| {
                let state = derive_pair_state(&history);
                (step, target, state)
            })
            .collect())
    }

    /// Pairs that are currently succeeded (by an attempt or a `done` mark; not skipped, not
    /// rolled back), in the order they completed, with the completion time. A rollback walks
    /// this list backwards.
    pub fn completion_order(&self) -> Result<Vec<(String, String, Timestamp)>, JournalError> {
        let mut done: Vec<(i64, String, String, Timestamp)> = Vec::new();
        for (step, target, history) in self.histories()? {
            let Some(entry) = deciding(&history) else {
                continue;
            };
            if let PairState::Succeeded { at, .. } = derive_pair_state(&history) {
                done.push((entry.completion_seq(), step, target, at));
            }
        }
        done.sort_by_key(|d| d.0);
        Ok(done.into_iter().map(|(_, s, t, at)| (s, t, at)).collect())
    }

    /// All histories grouped by pair, pairs in order of first appearance.
    fn histories(&self) -> Result<Vec<(String, String, Vec<HistoryEntry>)>, JournalError> {
        let (attempts, marks) = self.read(|tx| {
            let attempts = query_attempts(tx, None)?;
            let marks = query_marks(tx)?;
            Ok((attempts, marks))
        })?;
        let mut entries: Vec<HistoryEntry> = attempts
            .into_iter()
            .map(HistoryEntry::Attempt)
            .chain(marks.into_iter().map(HistoryEntry::Mark))
            .collect();
        entries.sort_by_key(HistoryEntry::seq);

        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut out: Vec<(String, String, Vec<HistoryEntry>)> = Vec::new();
        for entry in entries {
            let (step, target) = entry.step_target();
            let key = (step.to_owned(), target.to_owned());
            match index.get(&key) {
                Some(&i) => out[i].2.push(entry),
                None => {
                    index.insert(key.clone(), out.len());
                    out.push((key.0, key.1, vec![entry]));
                }
            }
        }
        Ok(out)
    }

    /// Attempts in start order, all of them or one run's.
    pub fn attempts(&self, run: Option<&RunId>) -> Result<Vec<Attempt>, JournalError> {
        self.read(|tx| query_attempts(tx, run))
    }

    /// Runs in start order.
    pub fn runs(&self) -> Result<Vec<Run>, JournalError> {
        let rows = self.read(|tx| {
            tx.rows(
                "SELECT id, command, playbook_path, playbook_sha256, started_at, ended_at, \
                 outcome, \"user\", host, pid, runner_version, args, simulated_from, \
                 real_started_at FROM runs ORDER BY seq",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let args: Vec<String> = serde_json::from_str(&r.text(11)?)
                    .map_err(|e| JournalError::BadRow(format!("run arguments: {e}")))?;
                Ok(Run {
                    id: RunId(r.text(0)?),
                    command: r.parse(1, RunCommand::parse)?,
                    playbook_path: r.text(2)?,
                    playbook_sha256: r.text(3)?,
                    started_at: r.ts(4)?,
                    ended_at: r.opt_ts(5)?,
                    outcome: r.opt_text(6)?,
                    user: r.text(7)?,
                    host: r.text(8)?,
                    pid: r.u32(9)?,
                    runner_version: r.text(10)?,
                    args,
                    simulated: r.opt_ts(12)?.map(|from| crate::clock::Simulated {
                        from,
                        real_start: r.opt_ts(13).ok().flatten(),
                    }),
                })
            })
            .collect()
    }

    /// Window events in the order recorded, all of them or one run's.
    pub fn events(&self, run: Option<&RunId>) -> Result<Vec<Event>, JournalError> {
        self.read(|tx| {
            tx.rows(
                "SELECT id, run_id, at, step_id, kind, detail FROM events \
                 WHERE CAST(?1 AS TEXT) IS NULL OR run_id = ?1 ORDER BY id",
                &[run.map(|r| r.0.as_str()).into()],
            )?
            .iter()
            .map(|r| {
                Ok(Event {
                    id: r.int(0)?,
                    run: RunId(r.text(1)?),
                    at: r.ts(2)?,
                    step_id: r.opt_text(3)?,
                    kind: r.parse(4, EventKind::parse)?,
                    detail: r.text(5)?,
                })
            })
            .collect()
        })
    }

    /// Operator decisions in the order made.
    pub fn marks(&self) -> Result<Vec<Mark>, JournalError> {
        self.read(query_marks)
    }
}

fn run_exists(tx: &dyn Tx, id: &str) -> Result<bool, JournalError> {
    Ok(tx
        .row("SELECT 1 FROM runs WHERE id = ?1", &[id.into()])?
        .is_some())
}

fn require_run(tx: &dyn Tx, run: &RunId) -> Result<(), JournalError> {
    if run_exists(tx, &run.0)? {
        Ok(())
    } else {
        Err(JournalError::UnknownRun(run.0.clone()))
    }
}

/// The next number of the journal-wide sequence; call inside a write transaction.
fn next_seq(tx: &dyn Tx) -> Result<i64, JournalError> {
    tx.row(
        "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value",
        &[],
    )?
    .ok_or_else(|| JournalError::BadRow("the counter row is missing".into()))?
    .int(0)
}

fn put_note(tx: &dyn Tx, attempt: i64, key: &str, value: &str) -> Result<(), JournalError> {
    tx.exec(
        "INSERT INTO attempt_notes (attempt_id, key, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (attempt_id, key) DO UPDATE SET value = excluded.value",
        &[attempt.into(), key.into(), value.into()],
    )?;
    Ok(())
}

fn query_attempts(tx: &dyn Tx, run: Option<&RunId>) -> Result<Vec<Attempt>, JournalError> {
    tx.rows(
        &format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE CAST(?1 AS TEXT) IS NULL OR run_id = ?1 ORDER BY id"
        ),
        &[run.map(|r| r.0.as_str()).into()],
    )?
    .iter()
    .map(attempt_from_row)
    .collect()
}

fn query_marks(tx: &dyn Tx) -> Result<Vec<Mark>, JournalError> {
    tx.rows(
        &format!("SELECT {MARK_COLUMNS} FROM marks ORDER BY id"),
        &[],
    )?
    .iter()
    .map(mark_from_row)
    .collect()
}

fn attempt_from_row(r: &Row) -> Result<Attempt, JournalError> {
    Ok(Attempt {
        id: AttemptId(r.int(0)?),
        run: RunId(r.text(1)?),
        step_id: r.text(2)?,
        target: r.text(3)?,
        kind: AttemptKind::parse(&r.text(4)?),
        number: r.u32(5)?,
        state: r.parse(6, AttemptState::parse)?,
        exit_code: r.opt_int(7)?,
        started_at: r.ts(8)?,
        ended_at: r.opt_ts(9)?,
        pid: r.u32(10)?,
        host: r.text(11)?,
        message: r.opt_text(12)?,
        def_hash: r.text(13)?,
        finish_seq: r.opt_int(14)?,
        target_identity: r.opt_text(15)?,
    })
}

fn mark_from_row(r: &Row) -> Result<Mark, JournalError> {
    Ok(Mark {
        id: r.int(0)?,
        run: r.opt_text(1)?.map(RunId),
        step_id: r.text(2)?,
        target: r.text(3)?,
        mark: r.parse(4, MarkKind::parse)?,
        def_hash: r.text(5)?,
        user: r.text(6)?,
        host: r.text(7)?,
        at: r.ts(8)?,
        reason: r.opt_text(9)?,
        target_identity: r.opt_text(10)?,
    })
}

/// The names a rescued copy of the journal at `path` is saved under, in the order tried.
fn rescue_names(path: &Path) -> impl Iterator<Item = PathBuf> {
    let mut base = path.as_os_str().to_owned();
    base.push(".rescued");
    (1..100).map(move |n| {
        let mut name = base.clone();
        if n > 1 {
            name.push(format!("-{n}"));
        }
        PathBuf::from(name)
    })
}

/// Rescued copies of the journal at `path` that exist.
fn rescued_copies(path: &Path) -> Vec<PathBuf> {
    rescue_names(path)
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// Device and inode of the file `path` names now (following symlinks); `None` if there is none.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The path a journal (or playbook) really lives at: symlinks resolved, also a dangling one at
/// the end (the journal it points to will be created there) and missing folders (they will be
/// created). Two spellings of one journal must give one lock and one file. Falls back to the
/// path as given when nothing of it can be resolved.
pub fn resolve_path(path: &Path) -> PathBuf {
    if pg::parse_location(path).is_some() {
        return path.to_path_buf();
    }
    let mut p = path.to_path_buf();
    // A symlink at the end that points nowhere yet: follow it by hand (bounded, like the kernel).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() && !p.exists() => match std::fs::read_link(&p) {
                Ok(to) => p = p.parent().map(|d| d.join(&to)).unwrap_or(to),
                Err(_) => break,
            },
            _ => break,
        }
    }
    if let Ok(c) = std::fs::canonicalize(&p) {
        return c;
    }
    // Canonicalize the longest part that exists and keep the rest as written.
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    let mut cur = p.as_path();
    while let (Some(parent), Some(name)) = (cur.parent(), cur.file_name()) {
        rest.push(name);
        let base = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(mut c) = std::fs::canonicalize(base) {
            for name in rest.iter().rev() {
                c.push(name);
            }
            return c;
        }
        cur = parent;
    }
    path.to_path_buf()
}

/// Creates `dir` and any missing ancestors, then fsyncs the parent of each directory it created
/// so the new entries survive a power cut.
fn create_dir_durably(dir: &Path) -> Result<(), JournalError> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        cur = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|source| JournalError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    for created in missing {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    // A relative file name has the empty path as parent, which means the current directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| JournalError::Sync {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sec: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + sec).unwrap()
    }

    fn attempt(id: i64, kind: AttemptKind, state: AttemptState) -> HistoryEntry {
        let finished = state != AttemptState::Running;
        HistoryEntry::Attempt(Attempt {
            id: AttemptId(id),
            run: RunId("r".into()),
            step_id: "s".into(),
            target: "t".into(),
            kind,
            number: 1,
            state,
            exit_code: finished.then_some(id + 100),
            started_at: t(id),
            ended_at: finished.then(|| t(id + 1000)),
            pid: 4242,
            host: "jump".into(),
            message: finished.then(|| format!("m{id}")),
            def_hash: format!("h{id}"),
            finish_seq: finished.then_some(id + 10_000),
            target_identity: Some("local".into()),
        })
    }

    fn mark(id: i64, mark: MarkKind) -> HistoryEntry {
        HistoryEntry::Mark(Mark {
            id,
            run: None,
            step_id: "s".into(),
            target: "t".into(),
            mark,
            def_hash: format!("mh{id}"),
            user: "op".into(),
            host: "jump".into(),
            at: t(id + 2000),
            reason: None,
            target_identity: None,
        })
    }

    fn kinds() -> Vec<AttemptKind> {
        vec![
            AttemptKind::Run,
            AttemptKind::Check,
            AttemptKind::Rollback,
            AttemptKind::Reboot,
            AttemptKind::Upload,
            AttemptKind::Other("future".into()),
        ]
    }

    /// Every possible single entry with the given sequence number.
    fn all_entries(id: i64) -> Vec<HistoryEntry> {
        let mut out = Vec::new();
        for kind in kinds() {
            for &state in AttemptState::ALL {
                out.push(attempt(id, kind.clone(), state));
            }
        }
        for &m in MarkKind::ALL {
            out.push(mark(id, m));
        }
        out
    }

    /// The derivation table written out case by case, independently of the implementation.
    fn expected(entry: &HistoryEntry) -> Option<PairState> {
        let id = entry.seq();
        Some(match entry {
            HistoryEntry::Mark(m) => match m.mark {
                MarkKind::Done => PairState::Succeeded {
                    at: t(id + 2000),
                    def_hash: format!("mh{id}"),
                    by_mark: true,
                    target_identity: None,
                },
                MarkKind::Retry => PairState::Pending,
                MarkKind::Skip => PairState::Skipped { at: t(id + 2000) },
            },
            HistoryEntry::Attempt(a) if a.kind == AttemptKind::Check => return None,
            HistoryEntry::Attempt(a) => match (a.kind == AttemptKind::Rollback, a.state) {
                (_, AttemptState::Running) => PairState::Running {
                    attempt: AttemptId(id),
                    kind: a.kind.clone(),
                    pid: 4242,
                    host: "jump".into(),
                    started_at: t(id),
                },
                (false, AttemptState::Succeeded) => PairState::Succeeded {
                    at: t(id + 1000),
                    def_hash: format!("h{id}"),
                    by_mark: false,
                    target_identity: Some("local".into()),
                },
                (false, state) => PairState::Failed {
                    at: t(id + 1000),
                    state,
                    exit_code: Some(id + 100),
                    message: Some(format!("m{id}")),
                },
                (true, AttemptState::Succeeded) => PairState::RolledBack { at: t(id + 1000) },
                (true, _) => PairState::RollbackFailed {
                    at: t(id + 1000),
                    exit_code: Some(id + 100),
                },
            },
        })
    }

    #[test]
    fn empty_history_is_pending() {
        assert_eq!(derive_pair_state(&[]), PairState::Pending);
    }

    #[test]
    fn single_entry_follows_the_table() {
        let entries = all_entries(5);
        // 6 kinds x 5 states + 3 marks.
        assert_eq!(entries.len(), 33);
        for e in &entries {
            let want = expected(e).unwrap_or(PairState::Pending);
            assert_eq!(derive_pair_state(std::slice::from_ref(e)), want, "{e:?}");
        }
    }

    #[test]
    fn latest_decisive_entry_wins_over_every_earlier_one() {
        for earlier in all_entries(1) {
            for later in all_entries(2) {
                let Some(want) = expected(&later) else {
                    continue;
                };
                let forward = [earlier.clone(), later.clone()];
                assert_eq!(
                    derive_pair_state(&forward),
                    want,
                    "{earlier:?} then {later:?}"
                );
                // The input order does not matter, only the sequence numbers do.
                let backward = [later.clone(), earlier.clone()];
                assert_eq!(
                    derive_pair_state(&backward),
                    want,
                    "{earlier:?} then {later:?}"
                );
            }
        }
    }

    #[test]
    fn checks_never_change_the_state() {
        for earlier in all_entries(1) {
            let base = derive_pair_state(std::slice::from_ref(&earlier));
            for &state in AttemptState::ALL {
                let check = attempt(2, AttemptKind::Check, state);
                assert_eq!(
                    derive_pair_state(&[earlier.clone(), check]),
                    base,
                    "{earlier:?}"
                );
            }
        }
    }

    #[test]
    fn newer_attempt_decides_even_if_older_finished_later() {
        // An in-doubt attempt closed as interrupted after the retry started must not win.
        let mut old = attempt(1, AttemptKind::Run, AttemptState::Interrupted);
        if let HistoryEntry::Attempt(a) = &mut old {
            a.finish_seq = Some(99);
        }
        let new = attempt(2, AttemptKind::Run, AttemptState::Succeeded);
        assert!(matches!(
            derive_pair_state(&[old, new]),
            PairState::Succeeded { by_mark: false, .. }
        ));
    }

    #[test]
    fn in_doubt_needs_a_running_pair_without_its_runner() {
        let running = |pid: u32, host: &str| PairState::Running {
            attempt: AttemptId(1),
            kind: AttemptKind::Run,
            pid,
            host: host.into(),
            started_at: t(0),
        };
        let me = std::process::id();
        assert!(!running(me, "jump").is_in_doubt("jump"));
        assert!(running(me, "other").is_in_doubt("jump"));
        // pid 0 is never a live runner.
        assert!(running(0, "jump").is_in_doubt("jump"));
        assert!(!PairState::Pending.is_in_doubt("jump"));
        assert!(!PairState::RolledBack { at: t(0) }.is_in_doubt("jump"));
    }

    #[test]
    fn text_enums_round_trip() {
        for &s in AttemptState::ALL {
            assert_eq!(AttemptState::parse(s.as_str()), Some(s));
        }
        for &m in MarkKind::ALL {
            assert_eq!(MarkKind::parse(m.as_str()), Some(m));
        }
        for &k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        for &c in RunCommand::ALL {
            assert_eq!(RunCommand::parse(c.as_str()), Some(c));
        }
        for k in kinds() {
            assert_eq!(AttemptKind::parse(k.as_str()), k);
        }
        assert_eq!(AttemptState::parse("done"), None);
    }
}
