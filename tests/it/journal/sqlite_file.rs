//! The SQLite file itself: a file that is not a database or is another application's is refused
//! untouched, one deleted or replaced under an open connection refuses every write, and two
//! spellings of its path share one lock.

use super::*;

// SQLite only: a file that is not a database (a server holds nothing else in a schema).
#[test]
fn garbage_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cutover.db");
    std::fs::write(&path, "this is a playbook, not a journal\n".repeat(200)).unwrap();
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("not an SQLite database"));
    assert!(matches!(
        Journal::open_existing(&path),
        Err(JournalError::NotADatabase { .. })
    ));
}

// SQLite only: another application's database file under the journal's name.
#[test]
fn foreign_sqlite_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('x');",
        )
        .unwrap();
    }
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::NotAJournal { .. }), "{err:?}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

// SQLite only: the file deleted under the connection, and the copy saved beside it.
#[test]
fn a_journal_deleted_under_an_open_connection_refuses_every_write_and_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let j = Journal::open(&path).unwrap();
    let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
    std::fs::remove_file(&path).unwrap();

    let copy = match j.begin_attempt(&new_attempt(&run, "s", "t", AttemptKind::Run, 1)) {
        Err(JournalError::Replaced {
            deleted: true,
            rescued: Ok(copy),
            ..
        }) => copy,
        other => panic!("expected Replaced, got {other:?}"),
    };
    // Every later write too, without a second copy.
    assert!(matches!(
        j.end_run(&run, "succeeded", t(2)),
        Err(JournalError::Replaced { .. })
    ));
    assert!(!path.exists(), "nothing was written at the path");
    let saved = Journal::open_existing(&copy).unwrap().unwrap();
    assert_eq!(saved.runs().unwrap()[0].id, run);
    assert!(saved.attempts(None).unwrap().is_empty());
    drop(saved);
    drop(j);
    // A new, empty journal is not started beside the saved one.
    assert!(matches!(
        Journal::open(&path),
        Err(JournalError::RescuedCopy { .. })
    ));
    assert!(!path.exists());
}

// SQLite only: another file renamed over the journal's path.
#[test]
fn a_journal_replaced_under_an_open_connection_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let j = Journal::open(&path).unwrap();
    let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
    let other = dir.path().join("other.db");
    std::fs::copy(&path, &other).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let err = j
        .begin_attempt(&new_attempt(&run, "s", "t", AttemptKind::Run, 1))
        .unwrap_err();
    assert!(
        matches!(err, JournalError::Replaced { deleted: false, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

// SQLite only: two spellings of one file's path.
#[test]
fn a_journal_reached_through_a_symlink_has_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let state = db_path(&dir);
    let link = dir.path().join("link.db");
    // Dangling at first: the journal does not exist yet.
    std::os::unix::fs::symlink(&state, &link).unwrap();
    let guard = acquire(&link, &holder("apply")).unwrap();
    assert!(matches!(
        acquire(&state, &holder("rollback")),
        Err(LockError::Held { .. })
    ));
    assert_eq!(journal::read_holder_of(&state), Some(holder("apply")));
    drop(guard);
    assert_eq!(journal::resolve_path(&link), journal::resolve_path(&state));
}
