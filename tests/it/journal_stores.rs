//! The journal's core promises on both stores, SQLite and a real PostgreSQL server: the same
//! cases run through the same `Journal` API against each. Plus what only the server store has:
//! its schema mirrors SQLite's, many cutovers share one database, and the lease's fence stops a
//! writer that lost the lease.

use crate::common;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::postgres::Postgres;
use jiff::Timestamp;
use runner::journal::{
    acquire, pg, AttemptKind, AttemptState, EventKind, Holder, Journal, JournalError, LockError,
    LockGuard, MarkKind, NewAttempt, NewEvent, NewMark, NewRun, PairState, RunCommand, RunId,
};

fn t(sec: i64) -> Timestamp {
    Timestamp::from_second(1_796_079_600 + sec).unwrap()
}

fn new_run(sec: i64) -> NewRun {
    NewRun {
        command: RunCommand::Apply,
        playbook_path: PathBuf::from("plays/cutover.yaml"),
        playbook_sha256: "ab".repeat(32),
        started_at: t(sec),
        user: "alice".into(),
        host: "jump1".into(),
        pid: 4242,
        args: vec!["apply".into(), "cutover.yaml".into()],
        simulated: None,
    }
}

fn new_attempt(run: &RunId, step: &str, target: &str, kind: AttemptKind, sec: i64) -> NewAttempt {
    NewAttempt {
        run: run.clone(),
        step_id: step.into(),
        target: target.into(),
        kind,
        number: 1,
        started_at: t(sec),
        pid: 4242,
        host: "jump1".into(),
        def_hash: format!("def-{step}"),
    }
}

fn holder() -> Holder {
    Holder::this_process("apply", "alice", t(0))
}

/// A journal on each store, each held as the engine holds it (lock or lease).
struct Stores {
    _dir: tempfile::TempDir,
    pg: Postgres,
}

impl Stores {
    fn new() -> Stores {
        // The runner logs in with PGPASSWORD, as a team would set it.
        std::env::set_var("PGPASSWORD", common::postgres::PASSWORD);
        Stores {
            _dir: tempfile::tempdir().unwrap(),
            pg: Postgres::start(),
        }
    }

    fn paths(&self, cutover: &str) -> [PathBuf; 2] {
        [
            self._dir.path().join(format!("{cutover}.db")),
            pg::location_path(&self.pg.url(), cutover),
        ]
    }

    /// Runs `case` on SQLite, then on PostgreSQL.
    fn each(&self, case: impl Fn(&Journal)) {
        for path in self.paths("cutover") {
            let lock = acquire(&path, &holder()).unwrap();
            let mut j = Journal::open(&path).unwrap();
            j.hold(&lock);
            case(&j);
            drop(j);
            drop(lock);
        }
    }
}

#[test]
fn runs_attempts_and_outcomes_read_back_identically_on_both_stores() {
    let s = Stores::new();
    s.each(|j| {
        let run = j.begin_run(&new_run(0)).unwrap();
        let a = j
            .begin_attempt(&new_attempt(&run, "copy", "db1", AttemptKind::Run, 5))
            .unwrap();
        // Intent is visible before any outcome.
        let running = j.attempts(None).unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].state, AttemptState::Running);
        assert!(matches!(
            j.pair("copy", "db1").unwrap(),
            PairState::Running { .. }
        ));
        j.finish_attempt(a, AttemptState::Failed, Some(3), t(6), Some("disk full"))
            .unwrap();
        // An outcome is recorded once.
        assert!(matches!(
            j.finish_attempt(a, AttemptState::Succeeded, Some(0), t(7), None),
            Err(JournalError::AttemptNotRunning { .. })
        ));
        let b = j
            .begin_attempt(&new_attempt(&run, "copy", "db1", AttemptKind::Run, 8))
            .unwrap();
        j.finish_attempt(b, AttemptState::Succeeded, Some(0), t(9), None)
            .unwrap();
        j.end_run(&run, "succeeded", t(10)).unwrap();

        let runs = j.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcome.as_deref(), Some("succeeded"));
        assert_eq!(runs[0].ended_at, Some(t(10)));
        assert_eq!(runs[0].user, "alice");
        assert_eq!(runs[0].args, vec!["apply", "cutover.yaml"]);
        let all = j.attempts(Some(&run)).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].exit_code, Some(3));
        assert_eq!(all[0].message.as_deref(), Some("disk full"));
        assert!(all[1].finish_seq > all[0].finish_seq);
        assert!(matches!(
            j.pair("copy", "db1").unwrap(),
            PairState::Succeeded { by_mark: false, .. }
        ));
        assert_eq!(j.completion_order().unwrap().len(), 1);
    });
}

#[test]
fn marks_notes_events_and_definitions_round_trip_on_both_stores() {
    let s = Stores::new();
    s.each(|j| {
        let run = j.begin_run(&new_run(0)).unwrap();
        j.record_definitions(&run, &[("copy".into(), "h1".into())])
            .unwrap();
        j.record_definitions(&run, &[("copy".into(), "h2".into())])
            .unwrap();
        assert_eq!(
            j.definitions(&run).unwrap(),
            vec![("copy".to_string(), "h2".to_string())]
        );
        let a = j
            .begin_attempt_noted(
                &new_attempt(&run, "copy", "db1", AttemptKind::Run, 1),
                &[("job", "/tmp/j1")],
            )
            .unwrap();
        j.set_note(a, "job", "/tmp/j2").unwrap();
        assert_eq!(
            j.notes(a).unwrap().get("job").map(String::as_str),
            Some("/tmp/j2")
        );
        j.mark(&NewMark {
            run: None,
            step_id: "copy".into(),
            target: "db1".into(),
            mark: MarkKind::Done,
            def_hash: "h2".into(),
            user: "bob".into(),
            host: "jump2".into(),
            at: t(3),
            reason: Some("checked by hand".into()),
        })
        .unwrap();
        assert!(matches!(
            j.pair("copy", "db1").unwrap(),
            PairState::Succeeded { by_mark: true, .. }
        ));
        let marks = j.marks().unwrap();
        assert_eq!(marks.len(), 1);
        assert_eq!(marks[0].user, "bob");
        assert!(marks[0].id > a.0);
        j.record_event(&NewEvent {
            run: run.clone(),
            at: t(4),
            step_id: None,
            kind: EventKind::Waited,
            detail: "until 22:00".into(),
        })
        .unwrap();
        let ev = j.events(Some(&run)).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Waited);
        assert!(j.events(Some(&RunId("other".into()))).unwrap().is_empty());
        j.set_playbook("Exchange cutover").unwrap();
        assert_eq!(j.playbook().unwrap().as_deref(), Some("Exchange cutover"));
        assert!(j.journal_id().unwrap().is_some_and(|id| id.len() == 32));
        // An unknown run is refused, and nothing of that write is kept.
        assert!(matches!(
            j.begin_attempt(&new_attempt(
                &RunId("nope".into()),
                "x",
                "y",
                AttemptKind::Run,
                5
            )),
            Err(JournalError::UnknownRun(_))
        ));
        assert_eq!(j.attempts(None).unwrap().len(), 1);
    });
}

#[test]
fn everything_survives_reopening_on_both_stores() {
    let s = Stores::new();
    for path in s.paths("cutover") {
        let lock = acquire(&path, &holder()).unwrap();
        {
            let mut j = Journal::open(&path).unwrap();
            j.hold(&lock);
            let run = j.begin_run(&new_run(0)).unwrap();
            j.begin_attempt(&new_attempt(&run, "copy", "db1", AttemptKind::Run, 1))
                .unwrap();
        }
        drop(lock);
        let j = Journal::open_existing(&path).unwrap().unwrap();
        assert_eq!(j.runs().unwrap().len(), 1);
        assert!(matches!(
            j.pair("copy", "db1").unwrap(),
            PairState::Running { .. }
        ));
    }
    // A cutover never written has no journal, and looking does not create one.
    let [_, other] = s.paths("never");
    assert!(Journal::open_existing(&other).unwrap().is_none());
    assert!(Journal::open_existing(&other).unwrap().is_none());
}

#[test]
fn the_postgres_schema_has_the_same_tables_and_columns_as_the_sqlite_one() {
    let s = Stores::new();
    let [file, server] = s.paths("cutover");
    drop(Journal::open(&file).unwrap());
    drop(Journal::open(&server).unwrap());
    let conn = rusqlite::Connection::open(&file).unwrap();
    let mut lite: Vec<(String, String)> = conn
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    lite.sort();
    let schema = pg::parse_location(&server).unwrap().schema();
    let mut c = s.pg.client();
    let mut server_cols: Vec<(String, String)> = c
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name <> 'schema_version'",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    server_cols.sort();
    assert_eq!(lite, server_cols);
    assert_eq!(
        runner::journal::pg::PG_MIGRATIONS.len() as i64,
        runner::journal::schema_version()
    );
}

#[test]
fn many_cutovers_share_one_database_without_seeing_each_other() {
    let s = Stores::new();
    let a = pg::location_path(&s.pg.url(), "Exchange 2003 → 2010");
    let b = pg::location_path(&s.pg.url(), "File server move");
    let la = acquire(&a, &holder()).unwrap();
    // Each cutover has its own lease: holding one does not block the other.
    let lb = acquire(&b, &holder()).unwrap();
    let mut ja = Journal::open(&a).unwrap();
    ja.hold(&la);
    let mut jb = Journal::open(&b).unwrap();
    jb.hold(&lb);
    ja.begin_run(&new_run(0)).unwrap();
    ja.begin_run(&new_run(1)).unwrap();
    jb.begin_run(&new_run(2)).unwrap();
    assert_eq!(ja.runs().unwrap().len(), 2);
    assert_eq!(jb.runs().unwrap().len(), 1);
}

/// Polls the server until `cond` (a query returning one boolean) holds.
fn wait_for(pg: &Postgres, what: &str, sql: &str, cutover: &str) {
    let mut c = pg.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok: bool = c.query_one(sql, &[&cutover]).unwrap().get(0);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_writer_whose_lease_was_taken_over_records_nothing_more() {
    let s = Stores::new();
    let [_, path] = s.paths("cutover");
    let first: LockGuard = acquire(&path, &holder()).unwrap();
    let mut stale = Journal::open(&path).unwrap();
    stale.hold(&first);
    let run = stale.begin_run(&new_run(0)).unwrap();
    let a = stale
        .begin_attempt(&new_attempt(&run, "copy", "db1", AttemptKind::Run, 1))
        .unwrap();

    // While the lease is current, a second runner is refused and told who holds it.
    match acquire(&path, &holder()) {
        Err(LockError::Held {
            holder: Some(h), ..
        }) => assert_eq!(h.pid, std::process::id()),
        other => panic!("expected Held, got {other:?}"),
    }

    // The first runner freezes: its lease runs out as if its renewals had stopped.
    let mut c = s.pg.client();
    c.execute(
        "UPDATE runner.leases SET expires_at = now() - interval '1 second' WHERE cutover = $1",
        &[&"cutover"],
    )
    .unwrap();
    let second = acquire(&path, &holder()).unwrap();
    assert!(second.lease().unwrap().fence() > first.lease().unwrap().fence());
    let mut fresh = Journal::open(&path).unwrap();
    fresh.hold(&second);

    // Every write of the stale runner is refused, whatever it is.
    let before = fresh.attempts(None).unwrap();
    let e = stale
        .finish_attempt(a, AttemptState::Succeeded, Some(0), t(2), None)
        .unwrap_err();
    assert!(matches!(e, JournalError::Fenced { .. }), "{e}");
    assert!(e.to_string().contains("another runner took over"), "{e}");
    assert!(stale
        .begin_attempt(&new_attempt(&run, "next", "db1", AttemptKind::Run, 3))
        .is_err());
    assert!(stale.end_run(&run, "succeeded", t(4)).is_err());
    assert_eq!(fresh.attempts(None).unwrap(), before);
    assert_eq!(fresh.runs().unwrap()[0].ended_at, None);
    // The new holder writes.
    fresh
        .finish_attempt(a, AttemptState::Interrupted, None, t(5), Some("in doubt"))
        .unwrap();
    // The stale holder's renewals find the lease gone.
    wait_for(
        &s.pg,
        "the stale lease to stay taken",
        "SELECT fence = 2 FROM runner.leases WHERE cutover = $1",
        "cutover",
    );
    drop(first);
    // Dropping the stale guard does not release the new holder's lease.
    assert!(matches!(
        acquire(&path, &holder()),
        Err(LockError::Held { .. })
    ));
}

#[test]
fn a_journal_copied_to_postgres_and_back_is_identical() {
    let s = Stores::new();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let back = dir.path().join("back.db");
    let server = pg::location_path(&s.pg.url(), "cutover");
    {
        let lock = acquire(&src, &holder()).unwrap();
        let mut j = Journal::open(&src).unwrap();
        j.hold(&lock);
        let run = j.begin_run(&new_run(0)).unwrap();
        let a = j
            .begin_attempt_noted(
                &new_attempt(&run, "copy", "db1", AttemptKind::Run, 1),
                &[("k", "v")],
            )
            .unwrap();
        j.finish_attempt(a, AttemptState::Succeeded, Some(0), t(2), Some("ok"))
            .unwrap();
        j.set_playbook("cutover").unwrap();
    }
    let copy = |from: &PathBuf, to: &PathBuf| {
        let _l1 = acquire(from, &holder()).unwrap();
        let l2 = acquire(to, &holder()).unwrap();
        let a = Journal::open_existing(from).unwrap().unwrap();
        let mut b = Journal::open(to).unwrap();
        b.hold(&l2);
        a.copy_into(&b).unwrap()
    };
    let there = copy(&src, &server);
    let again = copy(&server, &back);
    assert_eq!(there, again);
    let j = Journal::open_existing(&back).unwrap().unwrap();
    assert_eq!(
        Journal::open_existing(&src)
            .unwrap()
            .unwrap()
            .table_sums()
            .unwrap(),
        j.table_sums().unwrap()
    );
    // The copy goes on where the original stopped: the sequence continues.
    let lock = acquire(&server, &holder()).unwrap();
    let mut on_server = Journal::open(&server).unwrap();
    on_server.hold(&lock);
    let run = on_server.begin_run(&new_run(9)).unwrap();
    let b = on_server
        .begin_attempt(&new_attempt(&run, "copy", "db1", AttemptKind::Run, 10))
        .unwrap();
    assert!(b.0 > j.attempts(None).unwrap()[0].finish_seq.unwrap());
    // Copying into a journal that has runs is refused.
    drop(on_server);
    drop(lock);
    let _l1 = acquire(&back, &holder()).unwrap();
    let l2 = acquire(&server, &holder()).unwrap();
    let mut dst = Journal::open(&server).unwrap();
    dst.hold(&l2);
    assert!(Journal::open_existing(&back)
        .unwrap()
        .unwrap()
        .copy_into(&dst)
        .is_err());
}

#[test]
fn every_connection_of_the_lease_holder_writes_notifications_under_its_fence() {
    let s = Stores::new();
    let [_, path] = s.paths("cutover");
    let lock = acquire(&path, &holder()).unwrap();
    let mut j = Journal::open(&path).unwrap();
    j.hold(&lock);
    let run = j.begin_run(&new_run(0)).unwrap();
    // The notification worker opens its own connection, as on SQLite.
    let worker = Journal::open_existing(&path).unwrap().unwrap();
    let n = runner::journal::NewNotification {
        run: run.clone(),
        event_id: "e1".into(),
        event: "step-failed".into(),
        sink: "webhook".into(),
        attempt: 1,
        at: t(1),
        outcome: "delivered",
        detail: "200".into(),
    };
    worker.record_notification(&n).unwrap();
    assert_eq!(j.notifications(Some(&run)).unwrap().len(), 1);
    drop(j);
    drop(lock);
    // Without the lease, a connection writes nothing.
    let late = Journal::open_existing(&path).unwrap().unwrap();
    assert!(matches!(
        late.record_notification(&n),
        Err(JournalError::NoLease(_))
    ));
}

#[test]
fn a_reader_with_a_read_only_role_reads_again_after_the_server_restarts() {
    let s = Stores::new();
    let [_, path] = s.paths("cutover");
    let lock = acquire(&path, &holder()).unwrap();
    let mut j = Journal::open(&path).unwrap();
    j.hold(&lock);
    j.begin_run(&new_run(0)).unwrap();
    drop(j);
    drop(lock);
    let as_reader = pg::location_path(&s.pg.reader_url(), "cutover");
    let reader = Journal::open_read_only(&as_reader).unwrap().unwrap();
    assert_eq!(reader.runs().unwrap().len(), 1);
    s.pg.stop();
    assert!(reader.runs().is_err());
    s.pg.start_again();
    // Connected again as a reader: nothing created or migrated on the way.
    assert_eq!(reader.runs().unwrap().len(), 1);
    assert!(reader.begin_run(&new_run(1)).is_err());
}
