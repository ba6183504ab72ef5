//! Opening the journal on its store (SQLite or PostgreSQL) and noticing a deleted or replaced file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use super::schema::{self, MigrateError};
use super::sql::Tx;
use super::*;

/// How long a writer waits for another connection's transaction (e.g. `runner status` reading
/// while `apply` writes). Transactions are a few milliseconds, so this only matters on a very
/// slow or very busy disk.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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
pub(super) enum Db {
    Sqlite(Connection),
    /// One connection, not a pool: the engine's threads take turns through the journal's mutex.
    Pg {
        client: Box<std::cell::RefCell<postgres::Client>>,
        loc: pg::PgLocation,
        /// The lease's fence this journal writes under; see [`Journal::hold`].
        fence: Option<i64>,
        /// Opened by a reader ([`Journal::open_read_only`]): connected again the same way.
        read_only: bool,
    },
}

impl Journal {
    /// Opens the journal at `path`, creating it (and its directory) if needed and migrating it
    /// to the current schema.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(loc) = pg::parse_location(path) {
            let client = pg::open(&loc, true)?
                .ok_or_else(|| JournalError::Store(format!("{}: not created", loc.display())))?;
            return Ok(Self::on_pg(path, loc, client, false));
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

    /// Opens an existing journal, or `None` if there is no file: looking must not create one.
    /// Still migrates an older journal, like [`Journal::open`]; readers that must not write
    /// use [`Journal::open_for_reading`] or [`Journal::open_read_only`].
    pub fn open_existing(path: &Path) -> Result<Option<Journal>, JournalError> {
        if let Some(loc) = pg::parse_location(path) {
            return Ok(pg::open(&loc, false)?.map(|client| Self::on_pg(path, loc, client, false)));
        }
        if !path.exists() {
            return Ok(None);
        }
        Self::open_with(path, OpenFlags::empty()).map(Some)
    }

    /// Opens an existing journal for a reader (`status`, `report`), or `None` if there is none.
    /// An SQLite file is opened as [`Journal::open_existing`] does (an older one is migrated);
    /// a journal on PostgreSQL as [`Journal::open_read_only`] does: a reader's role there may
    /// be allowed to SELECT and nothing more.
    pub fn open_for_reading(path: &Path) -> Result<Option<Journal>, JournalError> {
        if pg::parse_location(path).is_some() {
            return Self::open_read_only(path);
        }
        Self::open_existing(path)
    }

    /// Opens an existing journal for reading only, or `None` if there is no file: nothing is
    /// written, not even a migration or a pragma, and no lock is taken, so a reader (`runner
    /// serve`) can never disturb a run. A journal of another schema version is refused (any
    /// writing command migrates an older one).
    pub fn open_read_only(path: &Path) -> Result<Option<Journal>, JournalError> {
        if let Some(loc) = pg::parse_location(path) {
            return Ok(pg::open_read_only(&loc)?.map(|client| Self::on_pg(path, loc, client, true)));
        }
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

    /// A number that changes whenever anything is written to the journal and stays put
    /// otherwise, for a reader that redraws on change (`runner serve`). SQLite's
    /// `data_version`; on PostgreSQL the row versions (`xmin`, the writing transaction) of
    /// the cutover's tables and of its lease, summed with their counts, read over this
    /// connection: an update of a row changes its `xmin`, so an attempt that finishes counts.
    pub fn data_version(&self) -> Result<i64, JournalError> {
        match &self.db {
            Db::Sqlite(conn) => Ok(conn.pragma_query_value(None, "data_version", |r| r.get(0))?),
            Db::Pg {
                client,
                loc,
                read_only,
                ..
            } => {
                let mut c = self.pg_client(client, loc, *read_only)?;
                Ok(c.query_one(pg::VERSION_SQL, &[&loc.cutover])?.get(0))
            }
        }
    }

    /// Who holds the journal now: the lock file's record, or on PostgreSQL the live lease,
    /// read over this connection (a page that polls opens no connection per look).
    pub fn holder(&self) -> Option<super::Holder> {
        match &self.db {
            Db::Sqlite(_) => super::lock::read_holder_of(&self.path),
            Db::Pg {
                client,
                loc,
                read_only,
                ..
            } => {
                let mut c = self.pg_client(client, loc, *read_only).ok()?;
                pg::holder_over(&mut c, loc)
            }
        }
    }

    pub(super) fn open_with(path: &Path, extra: OpenFlags) -> Result<Journal, JournalError> {
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

    pub(super) fn on_pg(
        path: &Path,
        loc: pg::PgLocation,
        client: postgres::Client,
        read_only: bool,
    ) -> Journal {
        Journal {
            db: Db::Pg {
                client: Box::new(std::cell::RefCell::new(client)),
                fence: pg::held_fence(&loc),
                loc,
                read_only,
            },
            path: path.to_owned(),
            file: None,
            lost: std::cell::RefCell::new(None),
            targets: std::collections::BTreeMap::new(),
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, the rescue copy).
    pub(super) fn sqlite(&self) -> Option<&Connection> {
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

    pub(super) fn configure(&self) -> Result<(), JournalError> {
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
    pub(super) fn classify(&self, e: rusqlite::Error) -> JournalError {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => JournalError::NotADatabase {
                path: self.path.clone(),
            },
            _ => JournalError::Db(e),
        }
    }

    pub(super) fn too_new(&self, found: i64) -> JournalError {
        JournalError::TooNew {
            path: self.path.clone(),
            found,
            known: schema::current_version(),
        }
    }

    pub(super) fn pragma_failed(&self, wanted: &'static str, got: String) -> JournalError {
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
    pub(super) fn write<T>(
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
            Db::Pg {
                client,
                loc,
                fence,
                read_only,
            } => {
                let mut c = self.pg_client(client, loc, *read_only)?;
                let mut tx = c.transaction()?;
                pg::check_fence(&mut tx, loc, *fence)?;
                let value = f(&pg::PgTx(std::cell::RefCell::new(&mut tx)))?;
                tx.commit()?;
                Ok(value)
            }
        }
    }

    /// The PostgreSQL connection, opened again if the server dropped it (a restart): the next
    /// write then goes through once the server is back, still under the fence. A reader's
    /// connection is opened again as a reader's: creating and migrating nothing.
    pub(super) fn pg_client<'c>(
        &self,
        client: &'c std::cell::RefCell<postgres::Client>,
        loc: &pg::PgLocation,
        read_only: bool,
    ) -> Result<std::cell::RefMut<'c, postgres::Client>, JournalError> {
        let mut c = client.borrow_mut();
        if c.is_closed() {
            let again = if read_only {
                pg::open_read_only(loc)?
            } else {
                pg::open(loc, false)?
            };
            *c = again.ok_or_else(|| {
                JournalError::Store(format!("{}: the cutover is gone", loc.display()))
            })?;
        }
        Ok(c)
    }

    /// Runs several reads against one snapshot, so e.g. attempts and marks agree.
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        match &self.db {
            Db::Sqlite(conn) => {
                let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
                f(&*tx)
            }
            Db::Pg {
                client,
                loc,
                read_only,
                ..
            } => {
                let mut c = self.pg_client(client, loc, *read_only)?;
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
    pub(super) fn check_file(&self) -> Result<(), JournalError> {
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
    pub(super) fn rescue(&self) -> Result<PathBuf, String> {
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
}

/// The names a rescued copy of the journal at `path` is saved under, in the order tried.
pub(super) fn rescue_names(path: &Path) -> impl Iterator<Item = PathBuf> {
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
pub(super) fn rescued_copies(path: &Path) -> Vec<PathBuf> {
    rescue_names(path)
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// Device and inode of the file `path` names now (following symlinks); `None` if there is none.
pub(super) fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The path a journal (or playbook) really lives at: symlinks resolved, also a dangling one at
/// the end, and missing folders (they will be created). Two spellings of one journal must give
/// one lock and one file. Falls back to the path as given when nothing of it can be resolved.
/// (The command line refuses a journal path that is a link to nothing before it gets here: a
/// missing disk must not start a new journal.)
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
pub(super) fn create_dir_durably(dir: &Path) -> Result<(), JournalError> {
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

pub(super) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
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
