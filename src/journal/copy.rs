//! `runner state copy`: a cutover's whole journal from one store to the other, verified.
//!
//! Every table is copied row by row with its ids (the journal-wide sequence, run order and
//! attempt ids must survive, or pair states would change), in one transaction on the
//! destination, which must hold no runs yet. Then both sides are read again and compared per
//! table: row count and a SHA-256 digest of the rows in key order.

use sha2::{Digest, Sha256};

use super::sql::{Row, Tx, Val};
use super::{Journal, JournalError};

/// The tables in an order that satisfies their foreign keys, with their columns and key.
const TABLES: &[(&str, &str, &str)] = &[
    (
        "runs",
        "seq, id, command, playbook_path, playbook_sha256, started_at, ended_at, outcome, \
         \"user\", host, pid, runner_version, args, simulated_from, real_started_at",
        "seq",
    ),
    (
        "step_definitions",
        "run_id, step_id, def_hash",
        "run_id, step_id",
    ),
    (
        "attempts",
        "id, finish_seq, run_id, step_id, target, kind, number, state, exit_code, started_at, \
         ended_at, pid, host, message, def_hash, target_identity",
        "id",
    ),
    ("attempt_notes", "attempt_id, key, value", "attempt_id, key"),
    (
        "marks",
        "id, run_id, step_id, target, mark, def_hash, \"user\", host, at, reason, \
         target_identity",
        "id",
    ),
    ("events", "id, run_id, at, step_id, kind, detail", "id"),
    (
        "notifications",
        "id, run_id, event_id, event, sink, attempt, at, outcome, detail",
        "id",
    ),
    ("counter", "id, value", "id"),
    ("journal_meta", "key, value", "key"),
];

/// Serial columns on PostgreSQL whose sequence must follow copied ids.
const SERIALS: &[(&str, &str)] = &[("runs", "seq"), ("events", "id"), ("notifications", "id")];

/// One table's count and digest, as compared after a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSum {
    pub table: &'static str,
    pub rows: usize,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "the destination already holds {0} run(s) of this cutover; copy only into an empty journal"
    )]
    NotEmpty(usize),
    #[error(
        "the copy does not match its source in table {table}: {src_rows} rows ({src_sha}) \
         against {dst_rows} rows ({dst_sha}); the destination was written but is not a faithful \
         copy"
    )]
    Mismatch {
        table: &'static str,
        src_rows: usize,
        src_sha: String,
        dst_rows: usize,
        dst_sha: String,
    },
}

fn digest(rows: &[Row]) -> String {
    let mut h = Sha256::new();
    for r in rows {
        for v in &r.0 {
            match v {
                Val::Null => h.update(b"N"),
                Val::Int(i) => {
                    h.update(b"I");
                    h.update(i.to_be_bytes());
                }
                Val::Text(t) => {
                    h.update(b"T");
                    h.update((t.len() as u64).to_be_bytes());
                    h.update(t.as_bytes());
                }
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn read_table(tx: &dyn Tx, table: &str, cols: &str, key: &str) -> Result<Vec<Row>, JournalError> {
    tx.rows(&format!("SELECT {cols} FROM {table} ORDER BY {key}"), &[])
}

impl Journal {
    /// Count and digest of every table, from one snapshot.
    pub fn table_sums(&self) -> Result<Vec<TableSum>, JournalError> {
        self.read(|tx| {
            TABLES
                .iter()
                .map(|(table, cols, key)| {
                    let rows = read_table(tx, table, cols, key)?;
                    Ok(TableSum {
                        table,
                        rows: rows.len(),
                        sha256: digest(&rows),
                    })
                })
                .collect()
        })
    }

    /// Copies everything `self` holds into `dst` (empty of runs), then verifies both sides.
    /// Both journals should be held (lock or lease) by the caller.
    pub fn copy_into(&self, dst: &Journal) -> Result<Vec<TableSum>, CopyError> {
        let existing = dst.runs()?.len();
        if existing != 0 {
            return Err(CopyError::NotEmpty(existing));
        }
        let data: Vec<Vec<Row>> = self.read(|tx| {
            TABLES
                .iter()
                .map(|(table, cols, key)| read_table(tx, table, cols, key))
                .collect()
        })?;
        let on_pg = dst.is_postgres();
        dst.write(|tx| {
            // A fresh journal has its own counter row and journal id: replaced by the source's.
            tx.exec("DELETE FROM counter", &[])?;
            tx.exec("DELETE FROM journal_meta", &[])?;
            for ((table, cols, _), rows) in TABLES.iter().zip(&data) {
                let n = cols.split(',').count();
                let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
                let sql = format!("INSERT INTO {table} ({cols}) VALUES ({})", marks.join(", "));
                for r in rows {
                    tx.exec(&sql, &r.0)?;
                }
            }
            if on_pg {
                for (table, col) in SERIALS {
                    tx.rows(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), \
                             COALESCE((SELECT max({col}) FROM {table}), 0) + 1, false)"
                        ),
                        &[],
                    )?;
                }
            }
            Ok(())
        })?;
        let src = self.table_sums()?;
        let got = dst.table_sums()?;
        for (a, b) in src.iter().zip(&got) {
            if a != b {
                return Err(CopyError::Mismatch {
                    table: a.table,
                    src_rows: a.rows,
                    src_sha: a.sha256.clone(),
                    dst_rows: b.rows,
                    dst_sha: b.sha256.clone(),
                });
            }
        }
        Ok(src)
    }
}
