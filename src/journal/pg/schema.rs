//! A cutover's tables on the server: the migrations, the tables all cutovers share, and
//! opening one cutover's journal, to write (creating and migrating it) or only to read.

use std::path::PathBuf;

use postgres::Client;

use super::PgLocation;
use crate::journal::JournalError;

/// The journal's schema on PostgreSQL. `PG_MIGRATIONS[n]` takes a cutover's schema from version
/// `n` to `n + 1`, mirroring the SQLite list entry by entry (same tables, same columns; integer
/// columns are BIGINT, times are RFC 3339 text on both stores).
pub const PG_MIGRATIONS: &[&str] = &[PG_V1, PG_V2, PG_V3, PG_V4, PG_V5];

const PG_V1: &str = "
CREATE TABLE counter (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO counter (id, value) VALUES (1, 0);

CREATE TABLE runs (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    command         TEXT NOT NULL CHECK (command IN ('apply', 'rollback', 'mark')),
    playbook_path   TEXT NOT NULL,
    playbook_sha256 TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    outcome         TEXT,
    \"user\"          TEXT NOT NULL,
    host            TEXT NOT NULL,
    pid             BIGINT NOT NULL,
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
    id         BIGINT PRIMARY KEY,
    finish_seq BIGINT UNIQUE,
    run_id     TEXT NOT NULL REFERENCES runs (id),
    step_id    TEXT NOT NULL,
    target     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    number     BIGINT NOT NULL,
    state      TEXT NOT NULL
               CHECK (state IN ('running', 'succeeded', 'failed', 'timed_out', 'interrupted')),
    exit_code  BIGINT,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    pid        BIGINT NOT NULL,
    host       TEXT NOT NULL,
    message    TEXT,
    def_hash   TEXT NOT NULL
);
CREATE INDEX attempts_by_pair ON attempts (step_id, target, id);
CREATE INDEX attempts_by_run ON attempts (run_id, id);

CREATE TABLE marks (
    id       BIGINT PRIMARY KEY,
    run_id   TEXT REFERENCES runs (id),
    step_id  TEXT NOT NULL,
    target   TEXT NOT NULL,
    mark     TEXT NOT NULL CHECK (mark IN ('done', 'retry', 'skip')),
    def_hash TEXT NOT NULL,
    \"user\"   TEXT NOT NULL,
    host     TEXT NOT NULL,
    at       TEXT NOT NULL,
    reason   TEXT
);
CREATE INDEX marks_by_pair ON marks (step_id, target, id);

CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    run_id  TEXT NOT NULL REFERENCES runs (id),
    at      TEXT NOT NULL,
    step_id TEXT,
    kind    TEXT NOT NULL CHECK (kind IN ('stopped', 'waited', 'override', 'overrun')),
    detail  TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, id);
";

const PG_V2: &str = "
CREATE TABLE attempt_notes (
    attempt_id BIGINT NOT NULL REFERENCES attempts (id),
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (attempt_id, key)
);
";

const PG_V3: &str = "
ALTER TABLE runs ADD COLUMN simulated_from TEXT;
ALTER TABLE runs ADD COLUMN real_started_at TEXT;
";

const PG_V4: &str = "
ALTER TABLE attempts ADD COLUMN target_identity TEXT;
ALTER TABLE marks ADD COLUMN target_identity TEXT;
CREATE TABLE journal_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO journal_meta (key, value)
    VALUES ('journal_id', md5(random()::text || clock_timestamp()::text));
";

const PG_V5: &str = "
CREATE TABLE notifications (
    id       BIGSERIAL PRIMARY KEY,
    run_id   TEXT NOT NULL REFERENCES runs (id),
    event_id TEXT NOT NULL,
    event    TEXT NOT NULL,
    sink     TEXT NOT NULL,
    attempt  BIGINT NOT NULL,
    at       TEXT NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed', 'given-up', 'dropped')),
    detail   TEXT NOT NULL
);
CREATE INDEX notifications_by_run ON notifications (run_id, id);
";

/// Tables shared by all cutovers of a database. Created if missing, never dropped.
const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS runner;
CREATE TABLE IF NOT EXISTS runner.cutovers (
    name        TEXT PRIMARY KEY,
    schema_name TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runner.leases (
    cutover    TEXT PRIMARY KEY,
    holder     TEXT,
    expires_at TIMESTAMPTZ NOT NULL,
    fence      BIGINT NOT NULL
);
";

/// A transaction-scoped advisory lock (released at commit or rollback, never left behind on
/// a connection) that serializes creating the shared tables and a cutover's schema.
const BOOTSTRAP_LOCK: &str = "SELECT pg_advisory_xact_lock(5642538931213078833)";

/// Creates the shared tables if needed.
pub(super) fn bootstrap(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    tx.execute(BOOTSTRAP_LOCK, &[])?;
    tx.batch_execute(BOOTSTRAP)
}

/// Opens (and with `create`, creates) a cutover's journal and migrates it to the current
/// version. `None` when it does not exist and `create` is false.
pub fn open(loc: &PgLocation, create: bool) -> Result<Option<Client>, JournalError> {
    let mut client = loc.connect()?;
    let schema = loc.schema();
    let mut tx = client.transaction()?;
    if create {
        bootstrap(&mut tx)?;
    } else {
        let exists: Option<String> = tx
            .query_one("SELECT to_regclass('runner.cutovers')::text", &[])?
            .get(0);
        if exists.is_none() {
            return Ok(None);
        }
        tx.execute(BOOTSTRAP_LOCK, &[])?;
    }
    let known: Option<String> = tx
        .query_opt(
            "SELECT schema_name FROM runner.cutovers WHERE name = $1",
            &[&loc.cutover],
        )?
        .map(|r| r.get(0));
    match known {
        Some(s) if s != schema => {
            return Err(JournalError::Store(format!(
                "{}: registered in schema {s}, expected {schema}",
                loc.display()
            )))
        }
        Some(_) => {}
        None if !create => return Ok(None),
        None => {
            tx.execute(
                "INSERT INTO runner.cutovers (name, schema_name, created_at) VALUES ($1, $2, $3)",
                &[&loc.cutover, &schema, &jiff::Timestamp::now().to_string()],
            )?;
        }
    }
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (version BIGINT NOT NULL);
         SET LOCAL search_path TO \"{schema}\";"
    ))?;
    let found: Option<i64> = tx
        .query_opt("SELECT version FROM schema_version", &[])?
        .map(|r| r.get(0));
    let mut version = match found {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    let known_version = PG_MIGRATIONS.len() as i64;
    if version > known_version {
        return Err(JournalError::TooNew {
            path: PathBuf::from(loc.display()),
            found: version,
            known: known_version,
        });
    }
    while let Some(sql) = usize::try_from(version)
        .ok()
        .and_then(|i| PG_MIGRATIONS.get(i))
    {
        tx.batch_execute(sql)?;
        version += 1;
        tx.execute("UPDATE schema_version SET version = $1", &[&version])?;
    }
    tx.commit()?;
    client.batch_execute(&format!("SET search_path TO \"{schema}\""))?;
    Ok(Some(client))
}

/// Opens a cutover's journal for reading only, or `None` when the cutover was never applied.
/// Nothing is created, migrated or locked, and the session is read-only: a reader (`status`,
/// `report`, `serve`) works with a role that may only SELECT, and can never change the journal.
/// A journal of another schema version is refused.
pub fn open_read_only(loc: &PgLocation) -> Result<Option<Client>, JournalError> {
    let mut client = loc.connect()?;
    client.batch_execute("SET default_transaction_read_only = on")?;
    let schema = loc.schema();
    let mut tx = client.build_transaction().read_only(true).start()?;
    let shared: Option<String> = tx
        .query_one("SELECT to_regclass('runner.cutovers')::text", &[])?
        .get(0);
    if shared.is_none() {
        return Ok(None);
    }
    let known: Option<String> = tx
        .query_opt(
            "SELECT schema_name FROM runner.cutovers WHERE name = $1",
            &[&loc.cutover],
        )?
        .map(|r| r.get(0));
    match known {
        None => return Ok(None),
        Some(s) if s != schema => {
            return Err(JournalError::Store(format!(
                "{}: registered in schema {s}, expected {schema}",
                loc.display()
            )))
        }
        Some(_) => {}
    }
    let found: Option<i64> = tx
        .query_opt(
            &format!("SELECT version FROM \"{schema}\".schema_version"),
            &[],
        )?
        .map(|r| r.get(0));
    tx.commit()?;
    let found = found.unwrap_or(0);
    let known_version = PG_MIGRATIONS.len() as i64;
    if found > known_version {
        return Err(JournalError::TooNew {
            path: PathBuf::from(loc.display()),
            found,
            known: known_version,
        });
    }
    if found < known_version {
        return Err(JournalError::TooOldToRead {
            location: loc.display(),
            found,
            known: known_version,
        });
    }
    client.batch_execute(&format!("SET search_path TO \"{schema}\""))?;
    Ok(Some(client))
}

/// The schema version of an open cutover journal.
pub fn version(client: &mut Client) -> Result<i64, JournalError> {
    Ok(client
        .query_one("SELECT version FROM schema_version", &[])?
        .get(0))
}

/// What [`crate::journal::Journal::data_version`] reads on PostgreSQL: for each of the
/// cutover's tables, and for its lease (`$1`, the cutover), the sum of its rows' `xmin` (the
/// transaction that wrote each row version) and their count. Any insert, update or delete
/// changes it; reading changes nothing.
pub const VERSION_SQL: &str = "SELECT ((SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM counter) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM runs) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM step_definitions) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM attempts) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM attempt_notes) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM marks) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM events) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM journal_meta) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) + count(*) FROM notifications) \
     + (SELECT coalesce(sum(xmin::text::bigint), 0) FROM runner.leases WHERE cutover = $1))::bigint";
