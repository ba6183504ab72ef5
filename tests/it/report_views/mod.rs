//! `runner status` and `runner report` views on a real playbook file and a real SQLite journal.

use crate::common_cli;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use runner::journal::{
    AttemptId, AttemptKind, AttemptState, EventKind, Holder, Journal, MarkKind, NewAttempt,
    NewEvent, NewMark, NewRun, RunCommand, RunId,
};
use runner::playbook::{self, Playbook};
use runner::report::{self, ReportFormat};
use runner::status::{self, LockState, PairStatus};

mod customer_report;
mod simulated_clock;
mod status_view;

const HOST: &str = "jump1";

const PLAYBOOK: &str = r#"
name: Acme file server move
description: Move the shares from fs1 to fs2.
window:
  timezone: Europe/Berlin
  business_hours: []
targets:
  fs1:
    transport: local
  fs2:
    transport: local
  dc1:
    transport: ssh
    host: 127.0.0.2
    user: admin
    password: { env: ACME_DC_PASSWORD }
groups:
  servers: [fs1, fs2]
steps:
  - id: stop-shares
    name: Stop the shares
    on: servers
    run: echo stop
    rollback: echo start
  - id: copy-data
    name: Copy the data
    on: fs2
    run: echo copy
    check: echo checked
  - id: confirm
    name: Customer confirms
    manual: Ask the customer to open a file on the new share.
  - id: switch-dns
    name: Switch DNS
    on: fs1
    run: echo dns
  - id: tell-dc
    on: dc1
    run: echo hello
"#;

fn t(sec: i64) -> Timestamp {
    // 2026-11-30T23:00:00Z (Tue 1 Dec 00:00 in Berlin) plus `sec`.
    Timestamp::from_second(1_796_079_600 + sec).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    pb: Playbook,
    journal: Journal,
    runs_dir: PathBuf,
    runs: Vec<RunId>,
}

fn load_playbook(dir: &Path) -> Playbook {
    let path = dir.join("cutover.yaml");
    std::fs::write(&path, PLAYBOOK).unwrap();
    playbook::load(&path).unwrap()
}

fn new_run(command: RunCommand, sec: i64, user: &str) -> NewRun {
    NewRun {
        command,
        playbook_path: PathBuf::from("cutover.yaml"),
        playbook_sha256: "ab".repeat(32),
        started_at: t(sec),
        user: user.into(),
        host: HOST.into(),
        pid: 4242,
        args: vec!["apply".into(), "cutover.yaml".into()],
        simulated: None,
    }
}

fn def_hash(pb: &Playbook, step: &str, target: &str) -> String {
    pb.steps
        .iter()
        .find(|s| s.id == step)
        .and_then(|s| s.rendered_for(target))
        .map_or_else(|| format!("gone-{step}@{target}"), |r| r.def_hash.clone())
}

fn attempt(
    f: &Fixture,
    run: usize,
    (step, target): (&str, &str),
    kind: AttemptKind,
    number: u32,
    sec: i64,
    pid: u32,
) -> AttemptId {
    f.journal
        .begin_attempt(&NewAttempt {
            run: f.runs[run].clone(),
            step_id: step.into(),
            target: target.into(),
            kind,
            number,
            started_at: t(sec),
            pid,
            host: HOST.into(),
            def_hash: def_hash(&f.pb, step, target),
        })
        .unwrap()
}

fn finished(
    f: &Fixture,
    run: usize,
    (step, target): (&str, &str),
    kind: AttemptKind,
    number: u32,
    (start, end): (i64, i64),
    (state, code, message): (AttemptState, Option<i64>, Option<&str>),
) {
    let id = attempt(f, run, (step, target), kind, number, start, 4242);
    f.journal
        .finish_attempt(id, state, code, t(end), message)
        .unwrap();
}

fn write_log(runs_dir: &Path, run: &RunId, name: &str, lines: &[String]) {
    let dir = runs_dir.join(run.as_str());
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join(name), text).unwrap();
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

const OVERRIDE_REASON: &str = "customer approved a late finish by phone (J. Smith)";

const FAIL_MESSAGE: &str = "robocopy reported errors on \\\\fs2\\data";

/// Three nights: apply (one failure, an override), apply again (retry succeeds, one pair
/// left running by a dead runner), mark (the manual step), rollback (one pair undone).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pb = load_playbook(dir.path());
    let journal = Journal::open(&dir.path().join(".runner").join("cutover.db")).unwrap();
    let runs_dir = dir.path().join(".runner").join("runs");
    let mut f = Fixture {
        _dir: dir,
        pb,
        journal,
        runs_dir,
        runs: Vec::new(),
    };
    let ok = (AttemptState::Succeeded, Some(0), None);

    // Night 1.
    let r = f
        .journal
        .begin_run(&new_run(RunCommand::Apply, 0, "alice"))
        .unwrap();
    f.runs.push(r);
    finished(
        &f,
        0,
        ("stop-shares", "fs1"),
        AttemptKind::Run,
        1,
        (0, 30),
        ok,
    );
    finished(
        &f,
        0,
        ("stop-shares", "fs2"),
        AttemptKind::Run,
        1,
        (0, 40),
        ok,
    );
    finished(
        &f,
        0,
        ("copy-data", "fs2"),
        AttemptKind::Run,
        1,
        (60, 600),
        (AttemptState::Failed, Some(3), Some(FAIL_MESSAGE)),
    );
    f.journal
        .record_event(&NewEvent {
            run: f.runs[0].clone(),
            at: t(50),
            step_id: Some("copy-data".into()),
            kind: EventKind::Override,
            detail: OVERRIDE_REASON.into(),
        })
        .unwrap();
    f.journal.end_run(&f.runs[0], "failed", t(610)).unwrap();
    let mut lines: Vec<String> = (1..=20)
        .map(|i| format!("2026-11-30T23:01:{i:02}Z stdout | copied file {i:02}"))
        .collect();
    lines[17] = "2026-11-30T23:01:18Z stderr | <script>alert('x')</script>".into();
    lines[18] = "2026-11-30T23:01:19Z stderr | ERROR 112 not enough space".into();
    write_log(&f.runs_dir, &f.runs[0], "copy-data@fs2.log", &lines);
    write_log(
        &f.runs_dir,
        &f.runs[0],
        "stop-shares@fs1.log",
        &["2026-11-30T23:00:01Z stdout | shares stopped".into()],
    );

    // Night 2: the retry succeeds and is checked; switch-dns is left running by a runner
    // that no longer exists.
    let r = f
        .journal
        .begin_run(&new_run(RunCommand::Apply, 86_400, "alice"))
        .unwrap();
    f.runs.push(r);
    finished(
        &f,
        1,
        ("copy-data", "fs2"),
        AttemptKind::Run,
        2,
        (86_400, 87_000),
        ok,
    );
    finished(
        &f,
        1,
        ("copy-data", "fs2"),
        AttemptKind::Check,
        1,
        (87_000, 87_005),
        ok,
    );
    attempt(
        &f,
        1,
        ("switch-dns", "fs1"),
        AttemptKind::Run,
        1,
        87_010,
        dead_pid(),
    );

    // The operator confirms the manual step.
    let r = f
        .journal
        .begin_run(&new_run(RunCommand::Mark, 90_000, "bob"))
        .unwrap();
    f.runs.push(r);
    f.journal
        .mark(&NewMark {
            run: Some(f.runs[2].clone()),
            step_id: "confirm".into(),
            target: "operator".into(),
            mark: MarkKind::Done,
            def_hash: def_hash(&f.pb, "confirm", "operator"),
            user: "bob".into(),
            host: HOST.into(),
            at: t(90_001),
            reason: Some("customer opened Q3.xlsx".into()),
        })
        .unwrap();
    f.journal.end_run(&f.runs[2], "marked", t(90_002)).unwrap();

    // One pair is rolled back.
    let r = f
        .journal
        .begin_run(&new_run(RunCommand::Rollback, 91_000, "alice"))
        .unwrap();
    f.runs.push(r);
    finished(
        &f,
        3,
        ("stop-shares", "fs2"),
        AttemptKind::Rollback,
        1,
        (91_000, 91_020),
        ok,
    );
    f.journal
        .end_run(&f.runs[3], "rolled back", t(91_030))
        .unwrap();
    f
}
