//! JournalError: everything that can go wrong opening, reading or writing the journal.

use std::io;
use std::path::PathBuf;

use super::records::{AttemptId, AttemptState};
use super::store::pg_text;

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
    /// A reader of a journal on PostgreSQL never migrates it (its role may only read).
    #[error(
        "the journal {location} has schema version {found}, older than this runner's {known}; \
         readers leave it as it is: the next `runner apply`, `rollback` or `mark` upgrades it"
    )]
    TooOldToRead {
        location: String,
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
