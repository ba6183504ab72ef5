//! The few operations the journal needs from a database, written once for both stores.
//!
//! Every query is written in the common subset of SQLite and PostgreSQL, with `?N` placeholders
//! (rewritten to `$N` for PostgreSQL) and `"user"` quoted (a reserved word there). Values are
//! integers, text or NULL: times are RFC 3339 text in UTC on both stores, so a journal copied
//! from one store to the other reads back identically.

use jiff::Timestamp;

use super::JournalError;

/// A value bound to a statement or read back from a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}

impl From<u32> for Val {
    fn from(v: u32) -> Val {
        Val::Int(i64::from(v))
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_owned())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}

impl From<Timestamp> for Val {
    fn from(v: Timestamp) -> Val {
        Val::Text(v.to_string())
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// One row read back, by column index.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn get(&self, i: usize) -> Result<&Val, JournalError> {
        self.0
            .get(i)
            .ok_or_else(|| JournalError::BadRow(format!("column {i} missing")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, JournalError> {
        match self.get(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Text(t) => Err(JournalError::BadRow(format!(
                "column {i}: text {t:?} where a number was expected"
            ))),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, JournalError> {
        self.opt_int(i)?
            .ok_or_else(|| JournalError::BadRow(format!("column {i}: NULL number")))
    }

    pub fn u32(&self, i: usize) -> Result<u32, JournalError> {
        let v = self.int(i)?;
        u32::try_from(v).map_err(|_| JournalError::BadRow(format!("column {i}: {v} out of range")))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, JournalError> {
        match self.get(i)? {
            Val::Null => Ok(None),
            Val::Text(t) => Ok(Some(t.clone())),
            Val::Int(v) => Ok(Some(v.to_string())),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, JournalError> {
        self.opt_text(i)?
            .ok_or_else(|| JournalError::BadRow(format!("column {i}: NULL text")))
    }

    pub fn opt_ts(&self, i: usize) -> Result<Option<Timestamp>, JournalError> {
        self.opt_text(i)?
            .map(|t| {
                t.parse().map_err(|e: jiff::Error| {
                    JournalError::BadRow(format!("column {i}: bad time {t:?}: {e}"))
                })
            })
            .transpose()
    }

    pub fn ts(&self, i: usize) -> Result<Timestamp, JournalError> {
        self.opt_ts(i)?
            .ok_or_else(|| JournalError::BadRow(format!("column {i}: NULL time")))
    }

    /// A text enum; unknown text is an error rather than a guess.
    pub fn parse<T>(&self, i: usize, parse: fn(&str) -> Option<T>) -> Result<T, JournalError> {
        let t = self.text(i)?;
        parse(&t).ok_or_else(|| JournalError::BadRow(format!("column {i}: unknown value {t:?}")))
    }
}

/// A transaction on either store.
pub trait Tx {
    /// Runs one statement; returns the number of rows changed.
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, JournalError>;
    /// Runs one query and reads every row.
    fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, JournalError>;

    /// The first row, if any.
    fn row(&self, sql: &str, params: &[Val]) -> Result<Option<Row>, JournalError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(Value::Null),
            Val::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Val::Text(t) => ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(t.as_bytes())),
        })
    }
}

pub fn sqlite_val(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        // The journal stores no floating point numbers; one written by hand reads truncated.
        ValueRef::Real(f) => Val::Int(f as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Tx for rusqlite::Connection {
    fn exec(&self, sql: &str, params: &[Val]) -> Result<u64, JournalError> {
        let n = self.execute(sql, rusqlite::params_from_iter(params))?;
        Ok(n as u64)
    }

    fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, JournalError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(sqlite_val(r.get_ref(i)?));
            }
            out.push(Row(vals));
        }
        Ok(out)
    }
}

/// `?N` placeholders as PostgreSQL's `$N`. The journal's statements hold no `?` in literals.
pub fn to_pg(sql: &str) -> String {
    sql.replace('?', "$")
}
