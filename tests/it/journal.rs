//! The journal on both of its stores, SQLite files and a real PostgreSQL server (one cluster
//! for the whole test process, a fresh cutover for each case), and the state lock (the flock,
//! or the lease) across real processes. Cases about the SQLite file itself (a file that is not
//! a database, deleted, replaced or reached by a symlink) run on SQLite only.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use jiff::Timestamp;
use runner::journal::{
    self, acquire, pg, process_alive, AttemptId, AttemptKind, AttemptState, EventKind, Holder,
    Journal, JournalError, LockError, LockGuard, MarkKind, NewAttempt, NewEvent, NewMark, NewRun,
    PairState, RunCommand, RunId,
};

use crate::common;

/// Set in the environment of a child copy of this test binary to make `child_helper` act.
const CHILD_ENV: &str = "RUNNER_JOURNAL_TEST_CHILD";
const READY: &str = "CHILD-READY";

fn t(sec: i64) -> Timestamp {
    // 2026-11-30T23:00:00Z plus `sec`.
    Timestamp::from_second(1_796_079_600 + sec).unwrap()
}

fn new_run(command: RunCommand, sec: i64) -> NewRun {
    NewRun {
        command,
        playbook_path: PathBuf::from("plays/cutover.yaml"),
        playbook_sha256: "ab".repeat(32),
        started_at: t(sec),
        user: "alice".into(),
        host: "jump1".into(),
        pid: 4242,
        args: vec![
            "apply".into(),
            "cutover.yaml".into(),
            "--var=pw=<redacted>".into(),
        ],
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

fn new_mark(step: &str, target: &str, mark: MarkKind, sec: i64) -> NewMark {
    NewMark {
        run: None,
        step_id: step.into(),
        target: target.into(),
        mark,
        def_hash: format!("mark-def-{step}"),
        user: "bob".into(),
        host: "jump2".into(),
        at: t(sec),
        reason: Some("checked by hand".into()),
    }
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(".runner").join("cutover.db")
}

/// One case's journal on one store.
struct Store {
    path: PathBuf,
    /// On PostgreSQL a writer needs the cutover's lease: taken at the first [`Store::open`].
    lease: RefCell<Option<LockGuard>>,
    /// The SQLite file's folder, removed with the store.
    _dir: Option<tempfile::TempDir>,
}

impl Store {
    fn is_pg(&self) -> bool {
        pg::parse_location(&self.path).is_some()
    }

    /// Opens the journal as a writer does (creating it); on PostgreSQL under the lease.
    fn open(&self) -> Journal {
        if self.is_pg() && self.lease.borrow().is_none() {
            *self.lease.borrow_mut() = Some(acquire(&self.path, &holder("apply")).unwrap());
        }
        let mut j = Journal::open(&self.path).unwrap();
        if let Some(lease) = self.lease.borrow().as_ref() {
            j.hold(lease);
        }
        j
    }

    fn open_existing(&self) -> Option<Journal> {
        Journal::open_existing(&self.path).unwrap()
    }

    /// The schema of the cutover on PostgreSQL.
    fn schema(&self) -> String {
        pg::parse_location(&self.path).unwrap().schema()
    }
}

/// The stores a case runs on, each fresh: an SQLite file in a new folder, then a new cutover
/// (a schema of its own) on the process's PostgreSQL cluster. A case prints which one it is on.
fn stores() -> impl Iterator<Item = Store> {
    static CASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let server = common::postgres::shared();
    // The runner logs in with PGPASSWORD, as a team would set it (child processes inherit it).
    static PASSWORD: std::sync::Once = std::sync::Once::new();
    PASSWORD.call_once(|| std::env::set_var("PGPASSWORD", common::postgres::PASSWORD));
    let n = CASES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let file = tempfile::tempdir().unwrap();
    let sqlite = Store {
        path: db_path(&file),
        lease: RefCell::new(None),
        _dir: Some(file),
    };
    let postgres = Store {
        path: pg::location_path(&server.url(), &format!("journal case {n}")),
        lease: RefCell::new(None),
        _dir: None,
    };
    [sqlite, postgres]
        .into_iter()
        .inspect(|s| println!("on {}", s.path.display()))
}

/// Runs one attempt to completion.
fn run_step(
    j: &Journal,
    run: &RunId,
    step: &str,
    target: &str,
    kind: AttemptKind,
    state: AttemptState,
    sec: i64,
) -> AttemptId {
    let id = j
        .begin_attempt(&new_attempt(run, step, target, kind, sec))
        .unwrap();
    j.finish_attempt(id, state, Some(0), t(sec + 1), None)
        .unwrap();
    id
}

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
fn runs_round_trip() {
    for s in stores() {
        let j = s.open();
        let nr = new_run(RunCommand::Apply, 0);
        let id = j.begin_run(&nr).unwrap();
        assert_eq!(id.as_str(), "20261130T230000Z-4242");
        // Same second, same pid: a distinct id, not an error.
        let id2 = j.begin_run(&new_run(RunCommand::Rollback, 0)).unwrap();
        assert_eq!(id2.as_str(), "20261130T230000Z-4242-2");

        j.end_run(&id, "completed", t(3600)).unwrap();
        let runs = j.runs().unwrap();
        assert_eq!(runs.len(), 2);
        let r = &runs[0];
        assert_eq!(r.id, id);
        assert_eq!(r.command, RunCommand::Apply);
        assert_eq!(r.playbook_path, "plays/cutover.yaml");
        assert_eq!(r.playbook_sha256, nr.playbook_sha256);
        assert_eq!(r.started_at, t(0));
        assert_eq!(r.ended_at, Some(t(3600)));
        assert_eq!(r.outcome.as_deref(), Some("completed"));
        assert_eq!(r.user, "alice");
        assert_eq!(r.host, "jump1");
        assert_eq!(r.pid, 4242);
        assert_eq!(r.runner_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(r.args, nr.args);
        assert_eq!(runs[1].command, RunCommand::Rollback);
        assert_eq!(runs[1].ended_at, None);
        assert_eq!(runs[1].outcome, None);

        let unknown = RunId("nope".into());
        assert!(matches!(
            j.end_run(&unknown, "x", t(1)),
            Err(JournalError::UnknownRun(ref r)) if r == "nope"
        ));
    }
}

#[test]
fn definitions_round_trip_and_replace() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let defs = vec![
            ("stop-app".to_string(), "h1".to_string()),
            ("copy-db".to_string(), "h2".to_string()),
        ];
        j.record_definitions(&run, &defs).unwrap();
        j.record_definitions(&run, &[("copy-db".into(), "h3".into())])
            .unwrap();
        assert_eq!(
            j.definitions(&run).unwrap(),
            vec![
                ("copy-db".to_string(), "h3".to_string()),
                ("stop-app".to_string(), "h1".to_string()),
            ]
        );
        assert!(matches!(
            j.record_definitions(&RunId("nope".into()), &defs),
            Err(JournalError::UnknownRun(_))
        ));
    }
}

#[test]
fn attempts_round_trip() {
    for s in stores() {
        let j = s.open();
        let run1 = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let run2 = j.begin_run(&new_run(RunCommand::Apply, 10)).unwrap();

        let mut na = new_attempt(&run1, "copy-db", "db1", AttemptKind::Run, 5);
        na.number = 2;
        let a1 = j.begin_attempt(&na).unwrap();
        // Intent is visible before any outcome.
        let running = j.attempts(None).unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].state, AttemptState::Running);
        assert_eq!(running[0].ended_at, None);
        assert_eq!(running[0].finish_seq, None);

        j.finish_attempt(a1, AttemptState::Failed, Some(3), t(6), Some("disk full"))
            .unwrap();
        let kinds = [
            AttemptKind::Check,
            AttemptKind::Rollback,
            AttemptKind::Reboot,
            AttemptKind::Upload,
            AttemptKind::Other("snapshot".into()),
        ];
        for kind in &kinds {
            j.begin_attempt(&new_attempt(&run2, "copy-db", "db1", kind.clone(), 11))
                .unwrap();
        }

        let all = j.attempts(None).unwrap();
        assert_eq!(all.len(), 6);
        let a = &all[0];
        assert_eq!(a.id, a1);
        assert_eq!(a.run, run1);
        assert_eq!(a.step_id, "copy-db");
        assert_eq!(a.target, "db1");
        assert_eq!(a.kind, AttemptKind::Run);
        assert_eq!(a.number, 2);
        assert_eq!(a.state, AttemptState::Failed);
        assert_eq!(a.exit_code, Some(3));
        assert_eq!(a.started_at, t(5));
        assert_eq!(a.ended_at, Some(t(6)));
        assert_eq!(a.pid, 4242);
        assert_eq!(a.host, "jump1");
        assert_eq!(a.message.as_deref(), Some("disk full"));
        assert_eq!(a.def_hash, "def-copy-db");
        assert!(a.finish_seq.is_some_and(|s| s > a1.0));
        let got: Vec<AttemptKind> = all[1..].iter().map(|a| a.kind.clone()).collect();
        assert_eq!(got, kinds);
        // Ids grow in start order.
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));

        let only2 = j.attempts(Some(&run2)).unwrap();
        assert_eq!(only2.len(), 5);
        assert!(only2.iter().all(|a| a.run == run2));
    }
}

#[test]
fn finish_attempt_refuses_misuse() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let id = j
            .begin_attempt(&new_attempt(&run, "s", "t", AttemptKind::Run, 1))
            .unwrap();

        assert!(matches!(
            j.finish_attempt(id, AttemptState::Running, None, t(2), None),
            Err(JournalError::FinishAsRunning(i)) if i == id
        ));
        j.finish_attempt(id, AttemptState::Succeeded, Some(0), t(2), None)
            .unwrap();
        let again = j.finish_attempt(id, AttemptState::Failed, Some(1), t(3), None);
        assert!(matches!(
            again,
            Err(JournalError::AttemptNotRunning { id: i, state: AttemptState::Succeeded }) if i == id
        ));
        // The refused second outcome changed nothing.
        assert_eq!(j.attempts(None).unwrap()[0].state, AttemptState::Succeeded);

        assert!(matches!(
            j.finish_attempt(AttemptId(999), AttemptState::Failed, None, t(3), None),
            Err(JournalError::UnknownAttempt(AttemptId(999)))
        ));
        let bad = new_attempt(&RunId("nope".into()), "s", "t", AttemptKind::Run, 1);
        assert!(matches!(
            j.begin_attempt(&bad),
            Err(JournalError::UnknownRun(_))
        ));
    }
}

#[test]
fn marks_round_trip() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Mark, 0)).unwrap();
        let mut m1 = new_mark("copy-db", "db1", MarkKind::Done, 1);
        m1.run = Some(run.clone());
        j.mark(&m1).unwrap();
        let mut m2 = new_mark("copy-db", "db2", MarkKind::Skip, 2);
        m2.reason = None;
        let m3 = new_mark("copy-db", "db3", MarkKind::Retry, 2);
        j.mark_all(&[m2.clone(), m3]).unwrap();

        let marks = j.marks().unwrap();
        assert_eq!(marks.len(), 3);
        let m = &marks[0];
        assert_eq!(m.run.as_ref(), Some(&run));
        assert_eq!(m.step_id, "copy-db");
        assert_eq!(m.target, "db1");
        assert_eq!(m.mark, MarkKind::Done);
        assert_eq!(m.def_hash, "mark-def-copy-db");
        assert_eq!(m.user, "bob");
        assert_eq!(m.host, "jump2");
        assert_eq!(m.at, t(1));
        assert_eq!(m.reason.as_deref(), Some("checked by hand"));
        assert_eq!(marks[1].mark, MarkKind::Skip);
        assert_eq!(marks[1].reason, None);
        assert_eq!(marks[1].run, None);
        assert_eq!(marks[2].mark, MarkKind::Retry);
    }
}

#[test]
fn mark_all_is_atomic() {
    for s in stores() {
        let j = s.open();
        let good = new_mark("s", "a", MarkKind::Done, 1);
        let mut bad = new_mark("s", "b", MarkKind::Done, 1);
        bad.run = Some(RunId("missing".into()));
        assert!(matches!(
            j.mark_all(&[good, bad]),
            Err(JournalError::UnknownRun(_))
        ));
        assert!(j.marks().unwrap().is_empty());
        assert_eq!(j.pair("s", "a").unwrap(), PairState::Pending);
    }
}

#[test]
fn events_round_trip() {
    for s in stores() {
        let j = s.open();
        let run1 = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let run2 = j.begin_run(&new_run(RunCommand::Apply, 100)).unwrap();
        let e1 = NewEvent {
            run: run1.clone(),
            at: t(5),
            step_id: Some("copy-db".into()),
            kind: EventKind::Override,
            detail: "override by alice: customer approved".into(),
        };
        let e2 = NewEvent {
            run: run2.clone(),
            at: t(105),
            step_id: None,
            kind: EventKind::Stopped,
            detail: "window closes at 06:00".into(),
        };
        j.record_event(&e1).unwrap();
        j.record_event(&e2).unwrap();
        for kind in [EventKind::Waited, EventKind::Overrun] {
            j.record_event(&NewEvent { kind, ..e2.clone() }).unwrap();
        }

        let all = j.events(None).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].run, run1);
        assert_eq!(all[0].at, t(5));
        assert_eq!(all[0].step_id.as_deref(), Some("copy-db"));
        assert_eq!(all[0].kind, EventKind::Override);
        assert_eq!(all[0].detail, e1.detail);
        assert_eq!(all[1].step_id, None);
        let kinds: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Override,
                EventKind::Stopped,
                EventKind::Waited,
                EventKind::Overrun
            ]
        );
        let only1 = j.events(Some(&run1)).unwrap();
        assert_eq!(only1.len(), 1);
        assert!(matches!(
            j.record_event(&NewEvent {
                run: RunId("nope".into()),
                ..e1
            }),
            Err(JournalError::UnknownRun(_))
        ));
    }
}

#[test]
fn pair_state_follows_history_in_the_database() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        assert_eq!(j.pair("copy-db", "db1").unwrap(), PairState::Pending);

        let a = j
            .begin_attempt(&new_attempt(&run, "copy-db", "db1", AttemptKind::Run, 1))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Running {
                attempt: a,
                kind: AttemptKind::Run,
                pid: 4242,
                host: "jump1".into(),
                started_at: t(1),
            }
        );
        j.finish_attempt(a, AttemptState::TimedOut, None, t(2), Some("timeout 600s"))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Failed {
                at: t(2),
                state: AttemptState::TimedOut,
                exit_code: None,
                message: Some("timeout 600s".into()),
            }
        );
        // A check afterwards does not change it.
        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Check,
            AttemptState::Succeeded,
            3,
        );
        assert!(matches!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Failed { .. }
        ));

        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Run,
            AttemptState::Succeeded,
            4,
        );
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Succeeded {
                at: t(5),
                def_hash: "def-copy-db".into(),
                by_mark: false,
                target_identity: None,
            }
        );
        // Other pairs are untouched.
        assert_eq!(j.pair("copy-db", "db2").unwrap(), PairState::Pending);

        let rb = j
            .begin_attempt(&new_attempt(
                &run,
                "copy-db",
                "db1",
                AttemptKind::Rollback,
                6,
            ))
            .unwrap();
        assert!(matches!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Running { kind: AttemptKind::Rollback, attempt, .. } if attempt == rb
        ));
        j.finish_attempt(rb, AttemptState::Failed, Some(2), t(7), None)
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::RollbackFailed {
                at: t(7),
                exit_code: Some(2)
            }
        );
        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Rollback,
            AttemptState::Succeeded,
            8,
        );
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::RolledBack { at: t(9) }
        );

        j.mark(&new_mark("copy-db", "db1", MarkKind::Done, 10))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Succeeded {
                at: t(10),
                def_hash: "mark-def-copy-db".into(),
                by_mark: true,
                target_identity: None,
            }
        );
        j.mark(&new_mark("copy-db", "db1", MarkKind::Retry, 11))
            .unwrap();
        assert_eq!(j.pair("copy-db", "db1").unwrap(), PairState::Pending);
        j.mark(&new_mark("copy-db", "db1", MarkKind::Skip, 12))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Skipped { at: t(12) }
        );
    }
}

#[test]
fn pairs_lists_every_pair_in_first_appearance_order() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        run_step(
            &j,
            &run,
            "b",
            "x",
            AttemptKind::Run,
            AttemptState::Succeeded,
            1,
        );
        j.mark(&new_mark("a", "y", MarkKind::Skip, 2)).unwrap();
        run_step(
            &j,
            &run,
            "b",
            "x",
            AttemptKind::Run,
            AttemptState::Failed,
            3,
        );
        let pairs = j.pairs().unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[0].0.as_str(), pairs[0].1.as_str()), ("b", "x"));
        assert!(matches!(pairs[0].2, PairState::Failed { .. }));
        assert_eq!((pairs[1].0.as_str(), pairs[1].1.as_str()), ("a", "y"));
        assert_eq!(pairs[1].2, PairState::Skipped { at: t(2) });
    }
}

#[test]
fn completion_order_is_by_completion_not_start() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        // Two targets in parallel: db1 starts first, db2 finishes first.
        let a1 = j
            .begin_attempt(&new_attempt(&run, "copy", "db1", AttemptKind::Run, 1))
            .unwrap();
        let a2 = j
            .begin_attempt(&new_attempt(&run, "copy", "db2", AttemptKind::Run, 2))
            .unwrap();
        j.finish_attempt(a2, AttemptState::Succeeded, Some(0), t(3), None)
            .unwrap();
        j.finish_attempt(a1, AttemptState::Succeeded, Some(0), t(4), None)
            .unwrap();
        // Marked done counts; skipped, failed and rolled back do not.
        j.mark(&new_mark("manual", "db1", MarkKind::Done, 5))
            .unwrap();
        j.mark(&new_mark("optional", "db1", MarkKind::Skip, 6))
            .unwrap();
        run_step(
            &j,
            &run,
            "broken",
            "db1",
            AttemptKind::Run,
            AttemptState::Failed,
            7,
        );
        run_step(
            &j,
            &run,
            "undone",
            "db1",
            AttemptKind::Run,
            AttemptState::Succeeded,
            9,
        );
        run_step(
            &j,
            &run,
            "undone",
            "db1",
            AttemptKind::Rollback,
            AttemptState::Succeeded,
            11,
        );
        run_step(
            &j,
            &run,
            "last",
            "db1",
            AttemptKind::Reboot,
            AttemptState::Succeeded,
            13,
        );

        let order = j.completion_order().unwrap();
        let got: Vec<(&str, &str, Timestamp)> = order
            .iter()
            .map(|(s, t, at)| (s.as_str(), t.as_str(), *at))
            .collect();
        assert_eq!(
            got,
            vec![
                ("copy", "db2", t(3)),
                ("copy", "db1", t(4)),
                ("manual", "db1", t(5)),
                ("last", "db1", t(14)),
            ]
        );
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

fn holder(command: &str) -> Holder {
    Holder::this_process(command, "alice", t(0))
}

#[test]
fn lock_is_exclusive_and_released_on_drop() {
    for s in stores() {
        let state = s.path.clone();
        let guard = acquire(&state, &holder("apply")).unwrap();
        if s.is_pg() {
            assert!(guard.lease().is_some());
        } else {
            assert_eq!(guard.path(), journal::lock_path(&state));
        }
        assert_eq!(journal::read_holder_of(&state), Some(holder("apply")));

        // A second open file description conflicts even inside one process.
        match acquire(&state, &holder("rollback")) {
            Err(LockError::Held {
                holder: Some(h), ..
            }) => {
                assert_eq!(h, holder("apply"));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(guard);
        assert_eq!(journal::read_holder_of(&state), None);
        let again = acquire(&state, &holder("rollback")).unwrap();
        assert_eq!(again.holder().command, "rollback");
        drop(again);
        if !s.is_pg() {
            // The lock file stays (see lock.rs on why it is never deleted).
            assert!(journal::lock_path(&state).exists());
        }
    }
}

// No store: the message of a refusal.
#[test]
fn held_error_names_the_holder() {
    let h = Holder {
        pid: 4242,
        host: "jump1".into(),
        user: "alice".into(),
        since: t(900),
        command: "apply".into(),
    };
    let err = LockError::Held {
        path: PathBuf::from("cutover.db.lock"),
        holder: Some(h),
    };
    let text = err.to_string();
    assert!(text.contains("pid 4242 on host jump1"), "{text}");
    assert!(text.contains("2026-11-30T23:15:00Z"), "{text}");
    assert!(text.contains("runner apply"), "{text}");
}

/// Starts a copy of this test binary that runs `child_helper` with `action`, and waits until it
/// reports that it has done its part.
fn spawn_child(action: &str, path: &Path) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "journal::child_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{action}:{}", path.display()))
        // A lease the child leaves behind when killed runs out soon.
        .env("RUNNER_PG_LEASE_MS", "500")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "child exited before it was ready");
        if line.contains(READY) {
            break;
        }
    }
    (child, out)
}

fn kill_and_reap(mut child: Child) -> u32 {
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: no destructors, no cleanup.
    let status = child.wait().unwrap();
    assert!(!status.success());
    pid
}

#[test]
fn lock_held_by_another_process_is_freed_by_kill_9() {
    for s in stores() {
        let state = s.path.clone();
        let (child, _out) = spawn_child("lock", &state);
        let child_pid = child.id();

        match acquire(&state, &holder("apply")) {
            Err(LockError::Held {
                holder: Some(h), ..
            }) => {
                assert_eq!(h.pid, child_pid);
                assert_eq!(h.command, "apply");
            }
            other => panic!("expected Held by the child, got {other:?}"),
        }
        assert!(process_alive(child_pid));

        let pid = kill_and_reap(child);
        assert!(!process_alive(pid));
        let guard = if s.is_pg() {
            // Nobody released the lease: it is free once it has run out.
            let mut guard = None;
            common::wait_until("the dead holder's lease to run out", || {
                match acquire(&state, &holder("apply")) {
                    Ok(g) => guard = Some(g),
                    Err(LockError::Held { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                guard.is_some()
            });
            guard.unwrap()
        } else {
            // The kernel dropped the flock with its process.
            acquire(&state, &holder("apply")).unwrap()
        };
        assert_eq!(guard.holder().pid, std::process::id());
    }
}

#[test]
fn running_attempt_survives_kill_9_and_is_in_doubt() {
    for s in stores() {
        let path = s.path.clone();
        let (child, _out) = spawn_child("attempt", &path);
        let pid = kill_and_reap(child);

        let j = Journal::open_existing(&path).unwrap().unwrap();
        match j.pair("copy-db", "db1").unwrap() {
            PairState::Running {
                pid: recorded,
                kind,
                ..
            } => {
                assert_eq!(recorded, pid);
                assert_eq!(kind, AttemptKind::Run);
                assert!(!process_alive(recorded), "the runner is gone");
                let state = j.pair("copy-db", "db1").unwrap();
                assert!(state.is_in_doubt(&journal::host_name().unwrap()));
            }
            other => panic!("expected Running, got {other:?}"),
        }
        let runs = j.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].ended_at, None);
    }
}

/// Not a test on its own: the body a child copy of this binary runs (see `spawn_child`). It does
/// its action, says it is ready, then blocks until its parent kills it or closes stdin.
#[test]
#[ignore = "helper run by other tests in a child process"]
fn child_helper() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (action, path) = spec.split_once(':').unwrap();
    let path = Path::new(path);
    let _keep: Box<dyn std::any::Any> = match action {
        "lock" => Box::new(acquire(path, &holder("apply")).unwrap()),
        "attempt" => {
            // On PostgreSQL a writer holds the lease; the kill leaves it to run out.
            let lease = pg::parse_location(path).map(|_| acquire(path, &holder("apply")).unwrap());
            let mut j = Journal::open(path).unwrap();
            if let Some(l) = &lease {
                j.hold(l);
            }
            let mut nr = new_run(RunCommand::Apply, 0);
            nr.pid = std::process::id();
            let run = j.begin_run(&nr).unwrap();
            let mut na = new_attempt(&run, "copy-db", "db1", AttemptKind::Run, 1);
            na.pid = std::process::id();
            na.host = journal::host_name().unwrap();
            j.begin_attempt(&na).unwrap();
            Box::new((j, lease))
        }
        other => panic!("unknown child action {other}"),
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{READY}").unwrap();
    stdout.flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

// ---- identities ------------------------------------------------------------------------

#[test]
fn a_success_and_a_mark_record_the_identity_of_their_target() {
    for s in stores() {
        let mut j = s.open();
        j.bind_targets(
            [("db1".to_string(), "ssh://root@10.0.0.1:22".to_string())]
                .into_iter()
                .collect(),
        );
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Run,
            AttemptState::Succeeded,
            1,
        );
        let identity = |st: PairState| match st {
            PairState::Succeeded {
                target_identity, ..
            } => target_identity,
            other => panic!("expected a success, got {other:?}"),
        };
        assert_eq!(
            identity(j.pair("copy-db", "db1").unwrap()).as_deref(),
            Some("ssh://root@10.0.0.1:22")
        );
        // A target the run did not bind is recorded as unknown, not as something else.
        j.mark(&new_mark("copy-db", "db2", MarkKind::Done, 2))
            .unwrap();
        assert_eq!(identity(j.pair("copy-db", "db2").unwrap()), None);

        assert!(j.journal_id().unwrap().is_some_and(|id| id.len() == 32));
        assert_eq!(j.playbook().unwrap(), None);
        j.set_playbook("Acme cutover").unwrap();
        drop(j);
        let j = s.open();
        assert_eq!(j.playbook().unwrap().as_deref(), Some("Acme cutover"));
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
