//! The journal on PostgreSQL: one database holds many cutovers, each in its own schema with
//! the same tables as an SQLite journal, and a lease per cutover instead of a file lock.
//!
//! A cutover is named by its playbook's `name`, not by a path on one machine, so a second
//! machine with the same playbook and `--state` finds the same journal. Its tables live in the
//! schema `cutover_<first 16 hex digits of sha256(name)>`, registered in `runner.cutovers`.
//!
//! The lease (`runner.leases`: holder, expiry, fence) replaces the flock: the holder renews it
//! from a thread with its own connection; a holder that died loses it when it expires (the
//! database's clock decides, not the machines'); each takeover increments the fence, and every
//! journal write checks in its own transaction that the fence is still the one its run was
//! given (the lease row is read `FOR SHARE`, so a takeover waits for that write to commit and
//! no write can follow the takeover). No session advisory lock is used: nothing is tied to a
//! connection that could outlive or miss its unlock.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};

use super::lock::{Holder, LockError};
use super::sql::{Row, Tx, Val};
use super::JournalError;

/// How long a lease lasts unless renewed; `RUNNER_PG_LEASE_MS` shortens it for tests.
const LEASE: Duration = Duration::from_secs(60);

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

/// Where a cutover's journal lives on PostgreSQL: the server and the cutover's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLocation {
    /// The URL as given, without a password (one is refused).
    pub url: String,
    pub cutover: String,
}

/// Whether `--state` names a PostgreSQL server rather than an SQLite file.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Why a state URL cannot be used. Bad input: exit 2.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error(
        "the state URL {0} holds a password; a password never goes on the command line or in \
         the playbook\n  = help: give it in PGPASSWORD or a password file (~/.pgpass or \
         PGPASSFILE, `host:port:database:user:password`), and use {1}"
    )]
    Password(String, String),
    #[error("the state URL {url} cannot be read: {why}")]
    Invalid { url: String, why: String },
}

/// Checks a `--state` URL: it parses, and it holds no password.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    let config = postgres::Config::from_str(url).map_err(|e| UrlError::Invalid {
        url: redact_url(url),
        why: e.to_string(),
    })?;
    if config.get_password().is_some() {
        return Err(UrlError::Password(redact_url(url), without_password(url)));
    }
    Ok(())
}

/// The URL with anything between `:` and `@` in its authority replaced.
fn redact_url(url: &str) -> String {
    without_password_with(url, ":***")
}

fn without_password(url: &str) -> String {
    without_password_with(url, "")
}

fn without_password_with(url: &str, with: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let auth = &rest[..auth_end];
    let mut out = url[..scheme_end + 3].to_owned();
    match auth.rfind('@') {
        Some(at) => {
            let userinfo = &auth[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            out.push_str(user);
            if userinfo.contains(':') {
                out.push_str(with);
            }
            out.push_str(&auth[at..]);
        }
        None => out.push_str(auth),
    }
    out.push_str(&rest[auth_end..]);
    // A password given as a query parameter goes too.
    if let Some(q) = out.find("password=") {
        let end = out[q..].find('&').map_or(out.len(), |e| q + e);
        out.replace_range(
            q..end,
            &format!("password={}", with.trim_start_matches(':')),
        );
    }
    out
}

/// The journal "path" that stands for a cutover on a server: `URL#cutover-name` (the name
/// percent-encoded). It travels through the engine like an SQLite path.
pub fn location_path(url: &str, cutover: &str) -> PathBuf {
    let mut s = url.to_owned();
    s.push('#');
    for b in cutover.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    PathBuf::from(s)
}

/// The location a journal path stands for, if it is a PostgreSQL one.
pub fn parse_location(path: &Path) -> Option<PgLocation> {
    let s = path.to_str()?;
    if !is_url(s) {
        return None;
    }
    let (url, name) = s.split_once('#').unwrap_or((s, ""));
    let mut bytes = Vec::new();
    let raw = name.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if let Some(v) = name
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                bytes.push(v);
                i += 3;
                continue;
            }
        }
        bytes.push(raw[i]);
        i += 1;
    }
    Some(PgLocation {
        url: url.to_owned(),
        cutover: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

impl PgLocation {
    /// The schema holding this cutover's tables.
    pub fn schema(&self) -> String {
        let digest = Sha256::digest(self.cutover.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("cutover_{hex}")
    }

    /// For messages: never holds a password (one is refused before we get here).
    pub fn display(&self) -> String {
        format!("{} (cutover `{}`)", redact_url(&self.url), self.cutover)
    }

    /// Connects, with the password from PGPASSWORD or the password file if the server wants one.
    pub fn connect(&self) -> Result<Client, JournalError> {
        let mut config = postgres::Config::from_str(&self.url).map_err(|e| self.err(e))?;
        if config.get_password().is_some() {
            return Err(JournalError::Store(format!(
                "{}: the state URL holds a password; use PGPASSWORD or a password file",
                self.display()
            )));
        }
        if config.get_user().is_none() {
            if let Some(u) = std::env::var("PGUSER")
                .ok()
                .or_else(|| std::env::var("USER").ok())
            {
                config.user(&u);
            }
        }
        let (password, ignored) = password_for(&config);
        if let Some(pw) = password {
            config.password(pw);
        }
        config.connect_timeout(Duration::from_secs(10));
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("runner");
        // TLS as the URL's `sslmode` says (libpq's default `prefer`: TLS when the server offers
        // it). The server's certificate is verified against the system's trusted roots, or
        // PGSSLROOTCERT; `sslmode=disable` turns TLS off.
        let failed = |e: postgres::Error| match &ignored {
            Some(file) => self.err(format!("{}\n  = note: {file}", super::pg_text(&e))),
            None => self.err(super::pg_text(&e)),
        };
        if config.get_ssl_mode() == postgres::config::SslMode::Disable {
            return config.connect(NoTls).map_err(failed);
        }
        let mut tls = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .map_err(|e| self.err(e))?;
        if let Some(ca) = std::env::var_os("PGSSLROOTCERT") {
            tls.set_ca_file(&ca).map_err(|e| {
                self.err(format!("PGSSLROOTCERT {}: {e}", Path::new(&ca).display()))
            })?;
        }
        let tls = postgres_openssl::MakeTlsConnector::new(tls.build());
        config.connect(tls).map_err(failed)
    }

    fn err(&self, e: impl std::fmt::Display) -> JournalError {
        JournalError::Store(format!("{}: {e}", self.display()))
    }
}

/// A password file that was not read, as libpq would not read it: said once as a warning, and
/// again with the error if the server then refuses the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the password file {} was ignored: {why}; like libpq (psql), runner reads a password \
     file only if it is a plain file that nobody but its owner may read or write \
     (chmod 600 {})",
    path.display(),
    path.display()
)]
pub struct IgnoredPasswordFile {
    pub path: PathBuf,
    pub why: String,
}

/// libpq's usual places: PGPASSWORD, then the password file (PGPASSFILE or ~/.pgpass). The
/// file is ignored, as libpq ignores it, when it is not a plain file or when its group or
/// others have any access to it: a password others can read is not a secret any more.
fn password_for(config: &postgres::Config) -> (Option<String>, Option<IgnoredPasswordFile>) {
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        return (Some(pw), None);
    }
    let Some(file) = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))
    else {
        return (None, None);
    };
    match private_file(&file) {
        Ok(Some(text)) => (file_password(config, &text), None),
        Ok(None) => (None, None),
        Err(ignored) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| tracing::warn!("{ignored}"));
            (None, Some(ignored))
        }
    }
}

/// The text of a password file, `None` if there is none (or it cannot be read, which libpq
/// passes over silently too), or why it must be ignored.
fn private_file(path: &Path) -> Result<Option<String>, IgnoredPasswordFile> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    let ignored = |why: String| IgnoredPasswordFile {
        path: path.to_owned(),
        why,
    };
    if !meta.is_file() {
        return Err(ignored("it is not a plain file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ignored(format!(
            "its group or others have access to it (mode {mode:04o}); it must be 0600 or less"
        )));
    }
    Ok(std::fs::read_to_string(path).ok())
}

/// The password for `config`'s server, database and user in a password file's text.
fn file_password(config: &postgres::Config, text: &str) -> Option<String> {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(_)) | None => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    let user = config.get_user().unwrap_or_default();
    pgpass_lookup(text, &[&host, &port, db, user])
}

/// The password of the first line of a password file that matches (`*` matches anything;
/// `\:` and `\\` are escapes), as libpq reads it.
pub fn pgpass_lookup(text: &str, want: &[&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want.iter())
            .all(|(f, w)| f == "*" || f == w)
        {
            return fields.pop();
        }
    }
    None
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Val::Text(t) => match *ty {
                Type::INT8 => t.parse::<i64>()?.to_sql(ty, out),
                _ => t.as_str().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn pg_row(r: &postgres::Row) -> Result<Row, postgres::Error> {
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Val::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Val::Int(i64::from(v))),
            _ => r.try_get::<_, Option<String>>(i)?.map(Val::Text),
        };
        vals.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(vals))
}

fn refs(params: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A PostgreSQL transaction as the journal's [`Tx`].
pub struct PgTx<'a, 'b>(pub RefCell<&'a mut postgres::Transaction<'b>>);

impl Tx for PgTx<'_, '_> {
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, JournalError> {
        Ok(self
            .0
            .borrow_mut()
            .execute(super::sql::to_pg(sql).as_str(), &refs(params))?)
    }

    fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, JournalError> {
        let rows = self
            .0
            .borrow_mut()
            .query(super::sql::to_pg(sql).as_str(), &refs(params))?;
        Ok(rows.iter().map(pg_row).collect::<Result<_, _>>()?)
    }
}

/// Creates the shared tables if needed.
fn bootstrap(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
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

/// The lease length in force (`RUNNER_PG_LEASE_MS` for tests).
pub fn lease_length() -> Duration {
    std::env::var("RUNNER_PG_LEASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms >= 200)
        .map_or(LEASE, Duration::from_millis)
}

/// The leases this process holds: (URL, cutover, fence). Every journal connection this process
/// opens on a held cutover writes under that fence (the notification worker has its own
/// connection), and none of them can write once another runner took the lease over.
static HELD: std::sync::Mutex<Vec<(String, String, i64)>> = std::sync::Mutex::new(Vec::new());

/// The fence this process holds for `loc`, if any.
pub fn held_fence(loc: &PgLocation) -> Option<i64> {
    let held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    held.iter()
        .find(|(u, c, _)| *u == loc.url && *c == loc.cutover)
        .map(|h| h.2)
}

/// A held lease: renewed by a thread until dropped, then released.
#[derive(Debug)]
pub struct Lease {
    loc: PgLocation,
    fence: i64,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    lost: Arc<AtomicBool>,
}

impl Lease {
    pub fn fence(&self) -> i64 {
        self.fence
    }

    pub fn cutover(&self) -> &str {
        &self.loc.cutover
    }

    /// Whether a renewal found the lease taken by another runner.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

fn lock_err(loc: &PgLocation, e: impl std::fmt::Display) -> LockError {
    LockError::Store {
        location: loc.display(),
        message: e.to_string(),
    }
}

fn lock_pg_err(loc: &PgLocation, e: postgres::Error) -> LockError {
    lock_err(loc, super::pg_text(&e))
}

/// Takes the lease of a cutover, or says who holds it.
pub fn acquire(loc: &PgLocation, holder: &Holder) -> Result<Lease, LockError> {
    let lease = lease_length();
    let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let text = serde_json::to_string(holder).map_err(|e| lock_err(loc, e))?;
    let mut client = loc.connect().map_err(|e| lock_err(loc, e))?;
    let mut tx = client.transaction().map_err(|e| lock_pg_err(loc, e))?;
    bootstrap(&mut tx).map_err(|e| lock_pg_err(loc, e))?;
    let got = tx
        .query_opt(
            "INSERT INTO runner.leases AS l (cutover, holder, expires_at, fence) \
             VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond', 1) \
             ON CONFLICT (cutover) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at, fence = l.fence + 1 \
             WHERE l.expires_at <= now() RETURNING fence",
            &[&loc.cutover, &text, &ms],
        )
        .map_err(|e| lock_pg_err(loc, e))?;
    let Some(row) = got else {
        let held: Option<String> = tx
            .query_opt(
                "SELECT holder FROM runner.leases WHERE cutover = $1",
                &[&loc.cutover],
            )
            .map_err(|e| lock_pg_err(loc, e))?
            .and_then(|r| r.get(0));
        return Err(LockError::Held {
            path: PathBuf::from(loc.display()),
            holder: held.and_then(|h| serde_json::from_str(&h).ok()),
        });
    };
    let fence: i64 = row.get(0);
    tx.commit().map_err(|e| lock_pg_err(loc, e))?;

    let (stop, stopped) = mpsc::channel::<()>();
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = {
        let at = loc.clone();
        let lost = Arc::clone(&lost);
        std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || renew(&at, fence, ms, lease / 6, &stopped, &lost, client))
            .map_err(|e| lock_err(loc, e))?
    };
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((loc.url.clone(), loc.cutover.clone(), fence));
    Ok(Lease {
        loc: loc.clone(),
        fence,
        stop: Some(stop),
        renewer: Some(renewer),
        lost,
    })
}

fn renew(
    loc: &PgLocation,
    fence: i64,
    ms: i64,
    every: Duration,
    stopped: &mpsc::Receiver<()>,
    lost: &AtomicBool,
    client: Client,
) {
    let mut client = Some(client);
    loop {
        match stopped.recv_timeout(every) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Stop asked, or the lease dropped.
            _ => return,
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = loc.connect().ok();
        }
        let Some(c) = client.as_mut() else {
            tracing::warn!("cannot reach {} to renew the lease", loc.display());
            continue;
        };
        match c.execute(
            "UPDATE runner.leases SET expires_at = now() + $3::bigint * interval '1 millisecond' \
             WHERE cutover = $1 AND fence = $2",
            &[&loc.cutover, &fence, &ms],
        ) {
            Ok(1) => {}
            Ok(_) => {
                lost.store(true, Ordering::SeqCst);
                tracing::error!(
                    "another runner took over {}: this run records nothing more",
                    loc.display()
                );
                return;
            }
            Err(e) => {
                tracing::warn!("cannot renew the lease on {}: {e}", loc.display());
                client = None;
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(u, c, f)| {
                !(*u == self.loc.url && *c == self.loc.cutover && *f == self.fence)
            });
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        // Release: expire now, keep the fence (the next holder increments it). A failure only
        // means the lease runs out on its own.
        if let Ok(mut c) = self.loc.connect() {
            let _ = c.execute(
                "UPDATE runner.leases SET expires_at = now(), holder = NULL \
                 WHERE cutover = $1 AND fence = $2",
                &[&self.loc.cutover, &self.fence],
            );
        }
    }
}

/// Who holds a cutover's lease now, if anyone (for `runner status`).
pub fn holder_of(loc: &PgLocation) -> Option<Holder> {
    let mut c = loc.connect().ok()?;
    let row = c
        .query_opt(
            "SELECT holder FROM runner.leases WHERE cutover = $1 AND expires_at > now()",
            &[&loc.cutover],
        )
        .ok()??;
    let text: Option<String> = row.get(0);
    serde_json::from_str(&text?).ok()
}

/// Checks inside a write transaction that `fence` still holds the cutover's lease.
pub fn check_fence(
    tx: &mut postgres::Transaction<'_>,
    loc: &PgLocation,
    fence: Option<i64>,
) -> Result<(), JournalError> {
    let Some(fence) = fence else {
        return Err(JournalError::NoLease(loc.display()));
    };
    let now: Option<i64> = tx
        .query_opt(
            "SELECT fence FROM runner.leases WHERE cutover = $1 FOR SHARE",
            &[&loc.cutover],
        )?
        .map(|r| r.get(0));
    if now == Some(fence) {
        Ok(())
    } else {
        Err(JournalError::Fenced {
            location: loc.display(),
            ours: fence,
            now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_not_repeated() {
        let e = check_url("postgres://alice:s3cret@db:5432/runner").unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("postgres://alice@db:5432/runner"), "{text}");
        assert!(check_url("postgres://alice@db:5432/runner?password=s3cret").is_err());
        check_url("postgres://alice@db:5432/runner").unwrap();
    }

    #[test]
    fn a_location_round_trips_any_cutover_name() {
        for name in ["exchange 2003 → 2010", "a#b%c/d", "plain"] {
            let p = location_path("postgres://u@h:1/db", name);
            let loc = parse_location(&p).unwrap();
            assert_eq!(loc.cutover, name);
            assert_eq!(loc.url, "postgres://u@h:1/db");
        }
        assert!(parse_location(Path::new(".runner/x.db")).is_none());
    }

    #[test]
    fn a_password_file_is_read_only_when_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:pw\n").unwrap();
        for (mode, read) in [(0o600, true), (0o400, true), (0o640, false), (0o606, false)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(private_file(&file).is_ok(), read, "{mode:o}");
        }
        assert!(private_file(dir.path()).is_err());
        assert_eq!(private_file(&dir.path().join("none")), Ok(None));
    }

    #[test]
    fn the_password_file_is_read_as_libpq_does() {
        let text = "# comment\nother:5432:*:*:no\ndb\\:x:*:runner:alice:yes\\:it\n*:*:*:*:any\n";
        assert_eq!(
            pgpass_lookup(text, &["db:x", "5432", "runner", "alice"]).as_deref(),
            Some("yes:it")
        );
        assert_eq!(
            pgpass_lookup(text, &["db", "5432", "runner", "bob"]).as_deref(),
            Some("any")
        );
    }
}
