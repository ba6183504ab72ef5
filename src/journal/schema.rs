//! The journal's SQL schema and its migrations.
//!
//! A journal outlives the runner binary that created it: a cutover runs over several nights, and
//! the subcontractor may upgrade the runner in between. So the layout is versioned with
//! `PRAGMA user_version`, every change is a new entry in [`MIGRATIONS`] (never edit a shipped
//! one), and a journal written by a newer runner is refused instead of being misread.

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// Marks a file as a runner journal (`PRAGMA application_id`), so that pointing the runner at some
/// other SQLite database is refused instead of "migrated". The bytes spell "RNJ1".
pub const APPLICATION_ID: i32 = 0x524E_4A31;

/// `MIGRATIONS[n]` takes a journal from schema version `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this build writes and understands.
pub fn current_version() -> i64 {
    // The list is a handful of entries; the cast cannot truncate.
    MIGRATIONS.len() as i64
}

/// Version 1.
///
/// Attempt ids and mark ids are drawn from one counter (`counter`), so ordering by id is the
/// global order in which things were *started*; `attempts.finish_seq` draws from the same counter
/// when an attempt ends, which gives the order in which things *completed*. Both orders survive
/// clock jumps, which timestamps would not.
///
/// Times are RFC 3339 text in UTC, readable by an operator with the `sqlite3` shell.
const V1: &str = "
CREATE TABLE counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO counter (id, value) VALUES (1, 0);

CREATE TABLE runs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    command         TEXT NOT NULL CHECK (command IN ('apply', 'rollback', 'mark')),
    playbook_path   TEXT NOT NULL,
    playbook_sha256 TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    outcome         TEXT,
    user            TEXT NOT NULL,
    host            TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    runner_version  TEXT NOT NULL,
    args            TEXT NOT NULL
);

CREATE TABLE step_definitions (
    run_id   TEXT NOT NULL REFERENCES runs (id),
    step_id  TEXT NOT NULL,
    def_hash TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE attempts (
    id         INTEGER PRIMARY KEY,
    finish_seq INTEGER UNIQUE,
    run_id     TEXT NOT NULL REFERENCES runs (id),
    step_id    TEXT NOT NULL,
    target     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    number     INTEGER NOT NULL,
    state      TEXT NOT NULL
               CHECK (state IN ('running', 'succeeded', 'failed', 'timed_out', 'interrupted')),
    exit_code  INTEGER,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    message    TEXT,
    def_hash   TEXT NOT NULL
);
CREATE INDEX attempts_by_pair ON attempts (step_id, target, id);
CREATE INDEX attempts_by_run ON attempts (run_id, id);

CREATE TABLE marks (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT REFERENCES runs (id),
    step_id  TEXT NOT NULL,
    target   TEXT NOT NULL,
    mark     TEXT NOT NULL CHECK (mark IN ('done', 'retry', 'skip')),
    def_hash TEXT NOT NULL,
    user     TEXT NOT NULL,
    host     TEXT NOT NULL,
    at       TEXT NOT NULL,
    reason   TEXT
);
CREATE INDEX marks_by_pair ON marks (step_id, target, id);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL REFERENCES runs (id),
    at      TEXT NOT NULL,
    step_id TEXT,
    kind    TEXT NOT NULL CHECK (kind IN ('stopped', 'waited', 'override', 'overrun')),
    detail  TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, id);
";

/// Version 2: notes on an attempt, written before the action they describe. A detached job's
/// folder on the target (so a later run can follow the job instead of starting it again), and a
/// reboot's boot id before the reboot and whether the reboot was issued (so a later run waits
/// instead of rebooting again).
const V2: &str = "
CREATE TABLE attempt_notes (
    attempt_id INTEGER NOT NULL REFERENCES attempts (id),
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (attempt_id, key)
);
";

/// Version 3: a run whose clock was replaced by `RUNNER_NOW` says so. `simulated_from` is that
/// instant and `real_started_at` the real time when the run began; both NULL for a run on the
/// real clock, which is what every run of an older journal was taken to be.
const V3: &str = "
ALTER TABLE runs ADD COLUMN simulated_from TEXT;
ALTER TABLE runs ADD COLUMN real_started_at TEXT;
";

/// Version 4: identities. A success means "this work, on this machine, for this cutover": each
/// attempt and mark records the address of its target (`target_identity`, e.g.
/// `ssh://administrator@192.168.16.3:22`), and the journal records its own random id and the
/// name of the playbook it belongs to (`journal_meta`). Rows written before this version have
/// no target identity (NULL: unknown), and a journal migrated from version 2 belongs to the
/// first playbook that writes to it.
const V4: &str = "
ALTER TABLE attempts ADD COLUMN target_identity TEXT;
ALTER TABLE marks ADD COLUMN target_identity TEXT;
CREATE TABLE journal_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO journal_meta (key, value) VALUES ('journal_id', lower(hex(randomblob(16))));
";

/// Version 5: notifications. Every delivery attempt to a `notify:` sink and how it ended (`delivered`,
/// `failed` and retried later, `given-up` after the last try or at the end of the run, or
/// `dropped` because the queue was full). Self-contained: only this table and its index.
const V5: &str = "
CREATE TABLE notifications (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL REFERENCES runs (id),
    event_id TEXT NOT NULL,
    event    TEXT NOT NULL,
    sink     TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    at       TEXT NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed', 'given-up', 'dropped')),
    detail   TEXT NOT NULL
);
CREATE INDEX notifications_by_run ON notifications (run_id, id);
";

/// Why a migration could not run.
#[derive(Debug)]
pub enum MigrateError {
    /// The file holds tables but no runner schema version: someone else's database.
    Foreign,
    /// Written by a newer runner.
    TooNew(i64),
    /// Written as a runner journal version but without our application id.
    WrongApplication,
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Db(e)
    }
}

/// Reads the schema version without writing anything.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Brings the journal up to [`current_version`], one migration per transaction.
///
/// The version is re-read inside each write transaction: two runner processes opening the same
/// fresh file at once must not both apply version 1.
pub fn migrate(conn: &Connection) -> Result<(), MigrateError> {
    // The common case (already current) must not take the write lock: `runner status` opens the
    // journal while an apply is writing to it.
    let found = version(conn)?;
    if found > current_version() {
        return Err(MigrateError::TooNew(found));
    }
    if found == current_version() {
        return check_application_id(conn, found);
    }
    loop {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let found = version(&tx)?;
        if found > current_version() {
            return Err(MigrateError::TooNew(found));
        }
        if found == current_version() {
            check_application_id(&tx, found)?;
            return Ok(());
        }
        if found == 0 {
            // A version-0 file must be empty; otherwise we would be writing our tables into a
            // database that belongs to something else.
            let tables: i64 =
                tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            if tables != 0 {
                return Err(MigrateError::Foreign);
            }
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        } else {
            check_application_id(&tx, found)?;
        }
        let Some(sql) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            // Negative versions are not ours either.
            return Err(MigrateError::Foreign);
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

fn check_application_id(conn: &Connection, found: i64) -> Result<(), MigrateError> {
    if found == 0 {
        return Ok(());
    }
    let id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if id == APPLICATION_ID {
        Ok(())
    } else {
        Err(MigrateError::WrongApplication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_2_journal_is_migrated_and_its_runs_read_as_on_the_real_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.execute_batch(V1).unwrap();
            conn.execute_batch(V2).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute(
                "INSERT INTO runs (id, command, playbook_path, playbook_sha256, started_at, \
                 user, host, pid, runner_version, args) VALUES ('r1', 'apply', 'p.yaml', 'ab', \
                 '2026-11-30T23:00:00Z', 'alice', 'jump1', 42, '0.1.0', '[]')",
                [],
            )
            .unwrap();
        }
        let j = crate::journal::Journal::open(&path).unwrap();
        let runs = j.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].id.as_str(), "r1");
        assert_eq!(runs[0].simulated, None);
        drop(j);
        let conn = Connection::open(&path).unwrap();
        assert_eq!(version(&conn).unwrap(), current_version());
    }
}
