//! What a run left behind, read the way a test checks it: the lines of a ledger file the
//! steps append to, and the runs and attempts of an SQLite journal, in order.

use std::path::Path;

/// The lines of `path`; none when the file does not exist (yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn open(journal: &Path) -> rusqlite::Connection {
    assert!(journal.exists(), "no journal at {}", journal.display());
    rusqlite::Connection::open(journal).expect("open the journal")
}

/// (command, outcome) of every run, in order.
pub fn runs(journal: &Path) -> Vec<(String, Option<String>)> {
    let conn = open(journal);
    let mut stmt = conn
        .prepare("SELECT command, outcome FROM runs ORDER BY seq")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query runs")
        .collect::<Result<_, _>>()
        .expect("read runs")
}

/// (step, kind, state) of every attempt, in order.
pub fn attempts(journal: &Path) -> Vec<(String, String, String)> {
    let conn = open(journal);
    let mut stmt = conn
        .prepare("SELECT step_id, kind, state FROM attempts ORDER BY id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query attempts")
        .collect::<Result<_, _>>()
        .expect("read attempts")
}
