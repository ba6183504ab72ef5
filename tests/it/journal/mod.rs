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

mod opening;
mod pair_state;
mod round_trips;
mod sqlite_file;
mod state_lock;

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

fn holder(command: &str) -> Holder {
    Holder::this_process(command, "alice", t(0))
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
