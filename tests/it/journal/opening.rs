//! A journal is created with durable settings where asked and only there, keeps everything across a
//! reopen and a second connection, reads without writing when read-only, refuses a newer schema and
//! migrates a version 2 one keeping its successes.

use super::*;

#[test]
fn open_creates_directory_and_durable_settings() {
    for s in stores() {
        let j = s.open();
        assert_eq!(j.path(), s.path);
        let settings = j.settings().unwrap();
        if s.is_pg() {
            assert_eq!(settings.journal_mode, "postgresql");
        } else {
            assert!(s.path.is_file());
            assert_eq!(settings.journal_mode.to_ascii_lowercase(), "wal");
        }
        assert_eq!(
            settings.synchronous, 2,
            "synchronous=FULL, or commits on disk"
        );
        assert!(settings.foreign_keys);
        assert_eq!(settings.schema_version, journal::schema_version());
    }
}

#[test]
fn open_existing_does_not_create() {
    for s in stores() {
        assert!(s.open_existing().is_none());
        if s.is_pg() {
            // Not the cutover's schema, not its entry among the cutovers.
            let mut c = common::postgres::shared().client();
            let schema: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                    &[&s.schema()],
                )
                .unwrap()
                .get(0);
            assert_eq!(schema, 0);
        } else {
            assert!(!s.path.exists());
            assert!(!s.path.parent().unwrap().exists());
        }

        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        drop(j);
        let j = s.open_existing().unwrap();
        assert_eq!(j.runs().unwrap()[0].id, run);
    }
}

#[test]
fn reopen_after_drop_keeps_everything() {
    for s in stores() {
        let (run, before_attempts, before_pairs) = {
            let j = s.open();
            let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
            j.record_definitions(&run, &[("s".into(), "h".into())])
                .unwrap();
            run_step(
                &j,
                &run,
                "s",
                "t1",
                AttemptKind::Run,
                AttemptState::Succeeded,
                1,
            );
            j.begin_attempt(&new_attempt(&run, "s", "t2", AttemptKind::Run, 3))
                .unwrap();
            j.mark(&new_mark("s", "t3", MarkKind::Skip, 4)).unwrap();
            j.record_event(&NewEvent {
                run: run.clone(),
                at: t(5),
                step_id: None,
                kind: EventKind::Waited,
                detail: "until 20:00".into(),
            })
            .unwrap();
            (run, j.attempts(None).unwrap(), j.pairs().unwrap())
        };

        let j = s.open();
        assert_eq!(j.runs().unwrap().len(), 1);
        assert_eq!(j.definitions(&run).unwrap().len(), 1);
        assert_eq!(j.attempts(None).unwrap(), before_attempts);
        assert_eq!(j.pairs().unwrap(), before_pairs);
        assert_eq!(j.marks().unwrap().len(), 1);
        assert_eq!(j.events(None).unwrap().len(), 1);
        // The sequence continues after reopening instead of reusing ids.
        let next = j
            .begin_attempt(&new_attempt(&run, "s", "t4", AttemptKind::Run, 6))
            .unwrap();
        assert!(before_attempts.iter().all(|a| a.id < next));
    }
}

#[test]
fn second_connection_sees_committed_writes() {
    for s in stores() {
        let writer = s.open();
        let reader = s.open_existing().unwrap();
        let run = writer.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let id = writer
            .begin_attempt(&new_attempt(&run, "s", "t", AttemptKind::Run, 1))
            .unwrap();
        assert!(matches!(
            reader.pair("s", "t").unwrap(),
            PairState::Running { attempt, .. } if attempt == id
        ));
    }
}

#[test]
fn a_read_only_journal_reads_what_was_written_and_writes_nothing() {
    for s in stores() {
        // Looking at a journal that does not exist creates nothing.
        assert!(Journal::open_read_only(&s.path).unwrap().is_none());
        assert!(s.open_existing().is_none());
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let reader = Journal::open_read_only(&s.path).unwrap().unwrap();
        assert_eq!(reader.runs().unwrap()[0].id, run);
        let a = j
            .begin_attempt(&new_attempt(&run, "s", "t", AttemptKind::Run, 1))
            .unwrap();
        assert!(matches!(
            reader.pair("s", "t").unwrap(),
            PairState::Running { attempt, .. } if attempt == a
        ));
        // Even in the process that holds the lock or the lease.
        assert!(reader.begin_run(&new_run(RunCommand::Apply, 2)).is_err());
        assert!(reader.mark(&new_mark("s", "t", MarkKind::Done, 3)).is_err());
        assert_eq!(j.runs().unwrap().len(), 1);
        assert!(j.marks().unwrap().is_empty());
    }
}

#[test]
fn newer_schema_version_is_refused() {
    for s in stores() {
        drop(s.open());
        if s.is_pg() {
            common::postgres::shared()
                .client()
                .execute(
                    &format!("UPDATE \"{}\".schema_version SET version = 999", s.schema()),
                    &[],
                )
                .unwrap();
        } else {
            let conn = rusqlite::Connection::open(&s.path).unwrap();
            conn.pragma_update(None, "user_version", 999).unwrap();
        }
        let err = Journal::open(&s.path).unwrap_err();
        match &err {
            JournalError::TooNew { found, known, .. } => {
                assert_eq!(*found, 999);
                assert_eq!(*known, journal::schema_version());
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert!(err.to_string().contains("newer runner"), "{err}");
        assert!(matches!(
            Journal::open_existing(&s.path),
            Err(JournalError::TooNew { .. })
        ));
        assert!(matches!(
            Journal::open_read_only(&s.path),
            Err(JournalError::TooNew { .. })
        ));
    }
}

#[test]
fn a_version_2_journal_is_migrated_and_keeps_its_successes() {
    for s in stores() {
        if s.is_pg() {
            write_v2_on_server(&s);
        } else {
            let path = &s.path;
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v2");
            let sql = std::fs::read_to_string(fixture.join("journal.sql")).unwrap();
            rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(&sql)
                .unwrap();
        }
        // A reader that may not write leaves it as it is, and says who upgrades it.
        match Journal::open_read_only(&s.path) {
            Err(JournalError::TooOld { found: 2, .. }) if !s.is_pg() => {}
            Err(e @ JournalError::TooOldToRead { found: 2, .. }) if s.is_pg() => {
                assert!(e.to_string().contains("runner apply"), "{e}");
                assert!(matches!(
                    Journal::open_for_reading(&s.path),
                    Err(JournalError::TooOldToRead { .. })
                ));
            }
            other => panic!("expected the old version refused, got {other:?}"),
        }

        let j = s.open();
        assert_eq!(
            j.settings().unwrap().schema_version,
            journal::schema_version()
        );
        assert!(matches!(
            j.pair("once", "here").unwrap(),
            PairState::Succeeded {
                by_mark: false,
                target_identity: None,
                ..
            }
        ));
        assert_eq!(j.runs().unwrap().len(), 1);
        assert!(j.journal_id().unwrap().is_some());
        assert_eq!(
            j.playbook().unwrap(),
            None,
            "claimed by the next run, not guessed"
        );
    }
}

/// A cutover on the server as a runner of schema version 2 left it: the SQLite fixture's rows
/// (one apply, `once` succeeded on `here`) in the tables of the first two migrations.
fn write_v2_on_server(s: &Store) {
    // Creates the tables all cutovers share.
    drop(acquire(&s.path, &holder("apply")).unwrap());
    let schema = s.schema();
    let name = pg::parse_location(&s.path).unwrap().cutover;
    let mut c = common::postgres::shared().client();
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "INSERT INTO runner.cutovers (name, schema_name, created_at) \
         VALUES ($1, $2, '2026-12-06T02:29:12Z')",
        &[&name, &schema],
    )
    .unwrap();
    tx.batch_execute(&format!(
        "CREATE SCHEMA \"{schema}\";
         SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE schema_version (version BIGINT NOT NULL);
         INSERT INTO schema_version (version) VALUES (2);"
    ))
    .unwrap();
    for sql in &pg::PG_MIGRATIONS[..2] {
        tx.batch_execute(sql).unwrap();
    }
    tx.batch_execute(
        "UPDATE counter SET value = 2;
         INSERT INTO runs (id, command, playbook_path, playbook_sha256, started_at, ended_at,
             outcome, \"user\", host, pid, runner_version, args)
         VALUES ('20261206T022912Z-21734', 'apply', 'cutover.yaml', 'ab', \
             '2026-12-06T02:29:12.611151167Z', '2026-12-06T02:29:12.61493477Z', 'succeeded', \
             'root', 'jump1', 21734, '0.1.0', '[\"runner\",\"apply\",\"cutover.yaml\"]');
         INSERT INTO attempts VALUES (1, 2, '20261206T022912Z-21734', 'once', 'here', 'run', 1,
             'succeeded', 0, '2026-12-06T02:29:12.612667259Z', \
             '2026-12-06T02:29:12.614531659Z', 21734, 'jump1', NULL, 'cd');",
    )
    .unwrap();
    tx.commit().unwrap();
}
/// `runner serve` redraws when a journal's version changes: it must stay put while nothing is
/// written (no redraw, no query storm) and change with every write another connection commits,
/// an update of an existing row (an attempt finishing) included.
#[test]
fn a_readers_version_changes_exactly_when_something_is_written() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let reader = Journal::open_read_only(&s.path).unwrap().unwrap();
        let v0 = reader.data_version().unwrap();
        // Looked at again and again (as a page polls), with reads between: unchanged.
        for _ in 0..20 {
            assert_eq!(reader.runs().unwrap().len(), 1);
            assert_eq!(
                reader.data_version().unwrap(),
                v0,
                "nothing written: same version"
            );
        }
        let a = j
            .begin_attempt(&new_attempt(&run, "s", "t", AttemptKind::Run, 1))
            .unwrap();
        let v1 = reader.data_version().unwrap();
        assert_ne!(v1, v0, "a new attempt");
        assert_eq!(reader.data_version().unwrap(), v1);
        j.finish_attempt(a, AttemptState::Succeeded, Some(0), t(2), None)
            .unwrap();
        let v2 = reader.data_version().unwrap();
        assert_ne!(v2, v1, "an attempt finished (a row updated, none added)");
        assert_eq!(reader.data_version().unwrap(), v2);
        // Who holds it, read over the reader's own connection: the lease on PostgreSQL
        // (taken by the writer above), the lock file's record on SQLite (not taken here).
        let held = reader.holder().map(|h| (h.command, h.user));
        if s.is_pg() {
            assert_eq!(held, Some(("apply".to_string(), "alice".to_string())));
        } else {
            assert_eq!(held, None);
        }
    }
}
