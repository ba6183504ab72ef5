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

fn pair<'a>(v: &'a status::StatusView, step: &str, target: &str) -> &'a status::PairView {
    v.steps
        .iter()
        .find(|s| s.id == step)
        .and_then(|s| s.pairs.iter().find(|p| p.target == target))
        .unwrap()
}

#[test]
fn status_shows_states_counts_and_next_step() {
    let f = fixture();
    let now = t(100_000);
    let v = status::status(&f.pb, Some(&f.journal), now, HOST, None).unwrap();
    assert!(v.applied);

    let stop1 = pair(&v, "stop-shares", "fs1");
    assert_eq!(stop1.status, PairStatus::Succeeded);
    assert_eq!(stop1.attempts, 1);
    assert_eq!(stop1.last_duration_secs, Some(30));
    assert_eq!(stop1.last_end, Some(t(30)));
    assert!(!stop1.definition_changed);

    assert_eq!(
        pair(&v, "stop-shares", "fs2").status,
        PairStatus::RolledBack
    );

    let copy = pair(&v, "copy-data", "fs2");
    assert_eq!(copy.status, PairStatus::Succeeded);
    // Two runs of the step; the check is not counted.
    assert_eq!(copy.attempts, 2);
    assert_eq!(copy.last_duration_secs, Some(600));
    assert_eq!(copy.last_end, Some(t(87_000)));

    let confirm = pair(&v, "confirm", "operator");
    assert_eq!(confirm.status, PairStatus::MarkedDone);
    let mark = confirm.mark.as_ref().unwrap();
    assert_eq!(mark.user, "bob");
    assert_eq!(mark.reason.as_deref(), Some("customer opened Q3.xlsx"));

    let dns = pair(&v, "switch-dns", "fs1");
    assert_eq!(dns.status, PairStatus::InDoubt);
    assert_eq!(dns.running.as_ref().unwrap().host, HOST);

    assert_eq!(pair(&v, "tell-dc", "dc1").status, PairStatus::Pending);

    let count = |s: PairStatus| v.counts[&s];
    assert_eq!(count(PairStatus::Succeeded), 2);
    assert_eq!(count(PairStatus::RolledBack), 1);
    assert_eq!(count(PairStatus::MarkedDone), 1);
    assert_eq!(count(PairStatus::InDoubt), 1);
    assert_eq!(count(PairStatus::Pending), 1);
    assert_eq!(count(PairStatus::Failed), 0);
    assert_eq!(v.counts.values().sum::<usize>(), 6);

    let last = v.last_run.as_ref().unwrap();
    assert_eq!(last.command, "rollback");
    assert_eq!(last.user, "alice");
    assert_eq!(last.outcome.as_deref(), Some("rolled back"));

    // The rolled-back pair makes the first step the next one; no business hours, so now.
    let next = v.next.as_ref().unwrap();
    assert_eq!(next.step, "stop-shares");
    assert_eq!(next.waiting.len(), 1);
    assert_eq!(next.waiting[0].target, "fs2");
    assert_eq!(next.earliest, Some(now));
    assert!(next.now);
    assert!(v.unknown_pairs.is_empty());

    let text = status::render_status_text(&v, &f.pb);
    assert!(text.contains("in doubt"), "{text}");
    assert!(text.contains("marked done"), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert!(text.contains("Next: stop-shares"), "{text}");
    assert!(text.contains("window allows it now"), "{text}");
    // The hint is the real command, ready to paste: the path as given, the real pair.
    assert!(
        text.contains(&format!(
            "runner mark {} switch-dns@fs1 done",
            f.pb.path.display()
        )),
        "{text}"
    );
    // The rest of the schedule, every step with work left, not only the next one.
    let left: Vec<(&str, Vec<String>)> = v
        .schedule
        .iter()
        .map(|s| (s.step.as_str(), s.targets.clone()))
        .collect();
    assert_eq!(
        left,
        [
            ("stop-shares", vec!["fs2".to_string()]),
            ("switch-dns", vec!["fs1".to_string()]),
            ("tell-dc", vec!["dc1".to_string()])
        ]
    );
    assert!(text.contains("Schedule of what is left"), "{text}");
    assert!(text.contains("3 steps left, expected to end"), "{text}");

    let json: serde_json::Value = serde_json::to_value(&v).unwrap();
    assert_eq!(json["counts"]["in_doubt"], 1);
    assert_eq!(json["steps"][3]["pairs"][0]["status"], "in_doubt");
}

#[test]
fn running_pair_of_a_live_runner_is_running_not_in_doubt() {
    let f = fixture();
    let live = attempt(
        &f,
        1,
        ("tell-dc", "dc1"),
        AttemptKind::Run,
        1,
        88_000,
        std::process::id(),
    );
    let v = status::status(&f.pb, Some(&f.journal), t(88_100), HOST, None).unwrap();
    assert_eq!(pair(&v, "tell-dc", "dc1").status, PairStatus::Running);
    // The same attempt seen from another host cannot be vouched for.
    let v = status::status(&f.pb, Some(&f.journal), t(88_100), "jump2", None).unwrap();
    assert_eq!(pair(&v, "tell-dc", "dc1").status, PairStatus::InDoubt);

    f.journal
        .finish_attempt(
            live,
            AttemptState::TimedOut,
            None,
            t(88_200),
            Some("no answer"),
        )
        .unwrap();
    let v = status::status(&f.pb, Some(&f.journal), t(88_300), HOST, None).unwrap();
    let p = pair(&v, "tell-dc", "dc1");
    assert_eq!(p.status, PairStatus::TimedOut);
    assert_eq!(p.message.as_deref(), Some("no answer"));
}

#[test]
fn status_without_journal_is_all_pending() {
    let dir = tempfile::tempdir().unwrap();
    let pb = load_playbook(dir.path());
    let now = t(0);
    let v = status::status(&pb, None, now, HOST, None).unwrap();
    assert!(!v.applied);
    assert!(v.last_run.is_none());
    let pairs: usize = v.steps.iter().map(|s| s.pairs.len()).sum();
    assert_eq!(pairs, 6);
    assert_eq!(v.counts[&PairStatus::Pending], 6);
    assert!(v
        .steps
        .iter()
        .flat_map(|s| &s.pairs)
        .all(|p| p.status == PairStatus::Pending && p.attempts == 0));
    // The manual step's single pair is the operator.
    let confirm = v.steps.iter().find(|s| s.id == "confirm").unwrap();
    assert!(confirm.manual);
    assert_eq!(confirm.pairs[0].target, "operator");
    let next = v.next.as_ref().unwrap();
    assert_eq!(next.step, "stop-shares");
    assert_eq!(next.waiting.len(), 2);
    let text = status::render_status_text(&v, &pb);
    assert!(text.contains("Never applied"), "{text}");
}

#[test]
fn status_reports_the_lock_holder() {
    let f = fixture();
    let holder = |pid: u32, host: &str| Holder {
        pid,
        host: host.into(),
        user: "alice".into(),
        since: t(86_400),
        command: "apply".into(),
    };
    let state = |h: &Holder| {
        status::status(&f.pb, Some(&f.journal), t(100_000), HOST, Some(h))
            .unwrap()
            .lock
            .unwrap()
            .state
    };
    assert_eq!(state(&holder(std::process::id(), HOST)), LockState::Held);
    assert_eq!(state(&holder(dead_pid(), HOST)), LockState::Stale);
    assert_eq!(
        state(&holder(std::process::id(), "jump2")),
        LockState::OtherHost
    );
}

#[test]
fn status_lists_journal_pairs_the_playbook_no_longer_names() {
    let f = fixture();
    finished(
        &f,
        1,
        ("copy-data", "fs9"),
        AttemptKind::Run,
        1,
        (87_100, 87_200),
        (AttemptState::Succeeded, Some(0), None),
    );
    let v = status::status(&f.pb, Some(&f.journal), t(100_000), HOST, None).unwrap();
    assert_eq!(v.unknown_pairs.len(), 1);
    assert_eq!(v.unknown_pairs[0].target, "fs9");
    assert_eq!(v.unknown_pairs[0].status, PairStatus::Succeeded);
    let text = status::render_status_text(&v, &f.pb);
    assert!(text.contains("copy-data @ fs9"), "{text}");
}

#[test]
fn markdown_report_has_failures_overrides_output_and_people() {
    let f = fixture();
    let md = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Markdown).unwrap();

    assert!(
        md.starts_with("# Cutover report: Acme file server move"),
        "{md}"
    );
    assert!(md.contains("Move the shares from fs1 to fs2."), "{md}");
    // The failure: exit code and message in the attempt row. The message's leading `\\`
    // is Markdown-escaped so that a viewer shows both backslashes.
    let row = md
        .lines()
        .find(|l| {
            l.contains("**failed**") && l.contains(r"robocopy reported errors on \\\fs2\data")
        })
        .unwrap_or_else(|| panic!("no failed attempt row in\n{md}"));
    assert!(row.contains("| 3 |"), "{row}");
    // The override reason, at the top and in its run.
    let reason = "customer approved a late finish by phone (J. Smith)";
    assert!(md.matches(reason).count() >= 2, "{md}");
    assert!(md.contains("**Business-hours override**"), "{md}");
    // Output tail: the last 15 of 20 lines, with their stream.
    assert!(md.contains("stdout | copied file 20"), "{md}");
    assert!(md.contains("stderr | ERROR 112 not enough space"), "{md}");
    assert!(md.contains("stdout | copied file 06"), "{md}");
    assert!(!md.contains("copied file 05"), "{md}");
    assert!(md.contains("(last 15 lines)"), "{md}");
    assert!(md.contains("stdout | shares stopped"), "{md}");
    // A pair without a log file.
    assert!(md.contains("no output recorded"), "{md}");
    // Who ran what, when (local time of the window), with which runner.
    assert!(md.contains("apply by alice on jump1"), "{md}");
    assert!(md.contains("bob on jump1"), "{md}");
    assert!(md.contains("customer opened Q3.xlsx"), "{md}");
    assert!(md.contains("Tue 1 Dec 2026 00:00 CET"), "{md}");
    assert!(md.contains(env!("CARGO_PKG_VERSION")), "{md}");
    assert!(md.contains("rollback"), "{md}");
    // The run left open by the dead runner says so.
    assert!(md.contains("**not recorded**"), "{md}");
    // Summary counts: stop-shares (rolled back pair), copy-data done, confirm done,
    // switch-dns in doubt, tell-dc pending.
    assert!(
        md.contains("2 of 5 done, 1 in doubt, 1 rolled back, 1 pending"),
        "{md}"
    );
    // No credential reference is added to the record.
    assert!(!md.contains("ACME_DC_PASSWORD"), "{md}");
}

#[test]
fn html_report_is_self_contained_and_escaped() {
    let f = fixture();
    let html = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>"));
    assert!(!html.contains("<link"));
    assert!(!html.contains("<script"), "output must not become markup");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("class=\"alert\""));
    assert!(html.contains("customer approved a late finish by phone (J. Smith)"));
    assert!(html.contains("tr class=\"fail\""));
    assert!(!html.contains("ACME_DC_PASSWORD"));
}

#[test]
fn markdown_report_does_not_pass_output_markup_through() {
    let f = fixture();
    let md = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Markdown).unwrap();
    // Output is inside a fenced block, where a viewer shows it literally.
    assert_eq!(md.matches("<script>").count(), 1, "{md}");
    let script = md.find("<script>").unwrap();
    let fence_start = md[..script].rfind("```text").unwrap();
    let fence_end = script + md[script..].find("```").unwrap();
    assert!(
        !md[fence_start + 7..script].contains("```"),
        "the fence closes before the output line"
    );
    assert!(md[fence_start..fence_end].contains("stderr | <script>"));
}

#[test]
fn json_report_has_runs_attempts_and_summary() {
    let f = fixture();
    let text = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["playbook"]["name"], "Acme file server move");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0]["user"], "alice");
    assert_eq!(runs[0]["command"], "apply");
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(runs[0]["had_failures"], true);
    assert_eq!(runs[2]["marks"][0]["reason"], "customer opened Q3.xlsx");
    assert_eq!(
        runs[3]["steps"][0]["pairs"][0]["attempts"][0]["kind"],
        "rollback"
    );

    let night1 = runs[0]["steps"].as_array().unwrap();
    assert_eq!(night1.len(), 2);
    assert_eq!(night1[0]["id"], "stop-shares");
    assert_eq!(night1[0]["pairs"].as_array().unwrap().len(), 2);
    let copy = &night1[1]["pairs"][0];
    assert_eq!(copy["target"], "fs2");
    let attempt = &copy["attempts"][0];
    assert_eq!(attempt["state"], "failed");
    assert_eq!(attempt["exit_code"], 3);
    assert_eq!(attempt["message"], FAIL_MESSAGE);
    assert_eq!(attempt["duration_secs"], 540);
    assert_eq!(copy["output"]["status"], "recorded");
    assert_eq!(copy["output"]["lines"].as_array().unwrap().len(), 15);
    assert_eq!(copy["output"]["lines"][14]["stream"], "stdout");
    assert_eq!(copy["output"]["lines"][14]["text"], "copied file 20");
    assert_eq!(runs[0]["events"][0]["kind"], "override");

    // The second night: the retry and its check.
    let night2 = runs[1]["steps"].as_array().unwrap();
    let kinds: Vec<&str> = night2[0]["pairs"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["run", "check"]);
    assert_eq!(runs[1]["ended_at"], serde_json::Value::Null);

    let s = &v["summary"];
    assert_eq!(s["runs"], 4);
    assert_eq!(s["overrides"], 1);
    assert_eq!(s["steps_done"], 2);
    assert_eq!(s["steps_pending"], 1);
    assert_eq!(s["failed_attempts"], 1);
    assert_eq!(s["rollback_attempts"], 1);
    assert_eq!(s["attempts"], 7);
    // 610 + (87_010 - 86_400) + 2 + 30.
    assert_eq!(s["working_secs"], 610 + 610 + 2 + 30);
}

#[test]
fn report_of_an_empty_journal_says_nothing_ran() {
    let dir = tempfile::tempdir().unwrap();
    let pb = load_playbook(dir.path());
    let journal = Journal::open(&dir.path().join("j.db")).unwrap();
    let md = report::report(
        &pb,
        &journal,
        &dir.path().join("runs"),
        ReportFormat::Markdown,
    )
    .unwrap();
    assert!(md.contains("never applied"), "{md}");
    assert!(md.contains("0 of 5 done, 5 pending"), "{md}");
}

// A simulated clock (`RUNNER_NOW`) ---------------------------------------------------------

const SIMULATED: &str = "2026-03-10T23:00:00Z";

fn simulated_playbook(dir: &Path) {
    let text = "name: Rehearsal\nwindow:\n  timezone: UTC\n  business_hours:\n    - { days: mon-fri, from: \"08:00\", to: \"18:00\" }\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: one\n    on: here\n    run: echo one\n";
    std::fs::write(dir.join("p.yaml"), text).unwrap();
}

/// Runs `runner` with stdout on a terminal (so that it draws its progress bars), through
/// `script`.
fn runner_on_a_terminal(args: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_runner")),
        "/dev/null",
    ])
    .current_dir(dir)
    .env_remove("RUNNER_NOW");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_run_under_a_simulated_clock_says_so_in_the_journal_progress_status_and_report() {
    let dir = tempfile::tempdir().unwrap();
    simulated_playbook(dir.path());
    let now = [("RUNNER_NOW", SIMULATED)];

    // Plain progress: said before the first step.
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let warned = r
        .stdout
        .find("SIMULATED CLOCK: RUNNER_NOW=2026-03-10T23:00:00Z");
    let first_step = r.stdout.find("> one");
    assert!(
        warned.is_some() && first_step.is_some() && warned < first_step,
        "{}",
        r.stdout
    );
    // Even --quiet says so.
    let quiet = tempfile::tempdir().unwrap();
    simulated_playbook(quiet.path());
    let r = common_cli::runner(&["apply", "p.yaml", "--quiet"], quiet.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("SIMULATED CLOCK"), "{}", r.stdout);
    // JSON progress: the first event carries it, and so does the last.
    let json = tempfile::tempdir().unwrap();
    simulated_playbook(json.path());
    let r = common_cli::runner(&["apply", "p.yaml", "--json"], json.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_step = events
        .iter()
        .position(|e| e["event"] == "step_started")
        .unwrap();
    assert!(
        events[..first_step]
            .iter()
            .any(|e| e["event"] == "simulated_clock" && e["from"] == SIMULATED),
        "{}",
        r.stdout
    );
    let started = events.iter().find(|e| e["event"] == "run_started").unwrap();
    assert_eq!(started["simulated_clock"]["from"], SIMULATED);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["simulated_clock"]["from"], SIMULATED);
    // Progress bars on a terminal.
    let bars = tempfile::tempdir().unwrap();
    simulated_playbook(bars.path());
    let out = runner_on_a_terminal("apply p.yaml", bars.path(), &now);
    assert!(out.contains("SIMULATED CLOCK"), "{out}");

    // The journal records it on the run.
    let db = rusqlite::Connection::open(dir.path().join(".runner/p.db")).unwrap();
    let (from, real): (Option<String>, Option<String>) = db
        .query_row(
            "SELECT simulated_from, real_started_at FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(from.as_deref(), Some(SIMULATED));
    let real: Timestamp = real.expect("the real start is recorded").parse().unwrap();
    assert!(real > SIMULATED.parse::<Timestamp>().unwrap());
    drop(db);

    // A later run on the real clock (nothing left to do) is not marked.
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("SIMULATED"), "{}", r.stdout);

    // status and report, read later on the real clock, say which run was simulated.
    let st = common_cli::runner(&["status", "p.yaml"], dir.path(), &[]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(
        st.stdout.contains("Simulated clock: run ")
            && st.stdout.contains("RUNNER_NOW=2026-03-10T23:00:00Z"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("(simulated clock)"), "{}", st.stdout);
    let st = common_cli::runner(&["status", "p.yaml", "--format", "json"], dir.path(), &[]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["simulated_runs"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["simulated_runs"][0]["simulated_clock"]["from"], SIMULATED);
    assert_eq!(v["steps"][0]["pairs"][0]["simulated_clock"], true, "{v}");
    assert_eq!(v["last_run"]["simulated_clock"], serde_json::Value::Null);

    let md = common_cli::runner(&["report", "p.yaml"], dir.path(), &[]).stdout;
    assert!(md.contains("**Simulated clock**"), "{md}");
    assert!(md.contains("RUNNER_NOW=2026-03-10T23:00:00Z"), "{md}");
    assert!(md.contains("(simulated clock)"), "{md}");
    let html =
        common_cli::runner(&["report", "p.yaml", "--format", "html"], dir.path(), &[]).stdout;
    assert!(html.contains("Simulated clock"), "{html}");
    assert!(html.contains("RUNNER_NOW=2026-03-10T23:00:00Z"), "{html}");
    let json =
        common_cli::runner(&["report", "p.yaml", "--format", "json"], dir.path(), &[]).stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["summary"]["simulated_runs"], 1, "{v}");
    assert_eq!(v["runs"][0]["simulated_clock"]["from"], SIMULATED, "{v}");
    assert_eq!(
        v["runs"][1]["simulated_clock"],
        serde_json::Value::Null,
        "{v}"
    );

    // `status` itself under RUNNER_NOW says its "now" is simulated.
    let st = common_cli::runner(&["status", "p.yaml"], dir.path(), &now);
    assert!(
        st.stdout.contains("(simulated: RUNNER_NOW)"),
        "{}",
        st.stdout
    );
}

#[test]
fn markdown_report_shows_code_in_override_text_as_code_not_escaped_backticks() {
    let f = fixture();
    f.journal
        .record_event(&NewEvent {
            run: f.runs[1].clone(),
            at: t(700),
            step_id: Some("copy-data".into()),
            kind: EventKind::Override,
            detail:
                "window overridden by alice on jump1 for step `copy-data`: the *customer* asked"
                    .into(),
        })
        .unwrap();
    let md = report::report(&f.pb, &f.journal, &f.runs_dir, ReportFormat::Markdown).unwrap();
    assert!(
        md.contains("for step `copy-data`: the \\*customer\\* asked"),
        "{md}"
    );
    assert!(!md.contains("\\`"), "{md}");
    // Key/value tables carry a real header row.
    assert!(!md.contains("| | |\n|---|---|"), "{md}");
}

#[test]
fn the_playbooks_of_one_folder_keep_their_runs_apart_and_old_runs_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let playbook = |echo: &str| {
        format!(
            "name: {echo}\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\nsteps:\n  - {{ id: say, on: here, run: 'echo said-{echo}', idempotent: true }}\n"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), playbook("alpha")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), playbook("bravo")).unwrap();
    for f in ["a.yaml", "b.yaml"] {
        let r = common_cli::runner(&["apply", f], dir.path(), &[]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let runs = dir.path().join(".runner").join("runs");
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // Each journal has its own runs folder, with one run each.
    assert_eq!(names(&runs), ["a", "b"]);
    assert_eq!(names(&runs.join("a")).len(), 1);
    assert_eq!(names(&runs.join("b")).len(), 1);
    let report = |f: &str| {
        let r = common_cli::runner(&["report", f, "--format", "markdown"], dir.path(), &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let a = report("a.yaml");
    assert!(a.contains("said-alpha") && !a.contains("said-bravo"), "{a}");
    // A run recorded before runs were kept per journal (`.runner/runs/<run>`) is still read.
    let run = names(&runs.join("b")).remove(0);
    std::fs::rename(runs.join("b").join(&run), runs.join(&run)).unwrap();
    let b = report("b.yaml");
    assert!(b.contains("said-bravo"), "{b}");
}

#[test]
fn a_simulated_clock_is_shown_in_the_customers_zone_and_as_the_user_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: Rehearsal\nwindow:\n  timezone: America/Chicago\n  business_hours:\n    - { days: mon-fri, from: \"08:00\", to: \"18:00\" }\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: one\n    on: here\n    run: echo one\n";
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    let given = "2026-03-10T18:30:00-05:00";
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &[("RUNNER_NOW", given)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The note before the playbook is read repeats the setting as given, not in UTC.
    assert!(
        r.stderr
            .contains(&format!("note: RUNNER_NOW={given} is set")),
        "{}",
        r.stderr
    );
    // The progress names the simulated instant in the customer's zone, with its abbreviation.
    assert!(
        r.stdout.contains(
            "SIMULATED CLOCK: RUNNER_NOW=2026-03-10T23:30:00Z (Tue 10 Mar 2026 18:30 CDT)"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("23:30:00Z"), "{}", r.stderr);
}

#[test]
fn status_names_the_zone_of_every_time_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: Rehearsal\nwindow:\n  timezone: America/Chicago\n  business_hours:\n    - { days: mon-fri, from: \"08:00\", to: \"18:00\" }\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: one\n    on: here\n    run: echo one\n";
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    let now = [("RUNNER_NOW", "2026-03-10T23:30:00Z")];
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = common_cli::runner(&["status", "p.yaml"], dir.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for label in [
        "Now: Tue 10 Mar 18:30 CDT",
        "started Tue 10 Mar 18:30 CDT",
        "ended Tue 10 Mar 18:30 CDT",
    ] {
        assert!(r.stdout.contains(label), "{label}:\n{}", r.stdout);
    }
}
