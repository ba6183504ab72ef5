//! Runs that do not need a terminal: `apply --background` survives the end of the SSH session
//! or the terminal it was started from and finishes; a background start that fails says why
//! with its exit code; one Ctrl-C during a detached step leaves the job running and the next
//! apply reattaches to it; `status --follow` shows a run live and ends with it.
//!
//! Steps run on the local transport; synchronisation is by marker files, never by sleeping.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::tmux::Tmux;
use crate::common::{process_running, records, stops_within, wait_until, Sshd};
use crate::common_cli::runner;

/// Upper bound for any wait; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(90);

/// YAML single-quoted scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A shell loop that waits (bounded, about 60 s) until `path` exists; exit 9 if it never does.
fn wait_in_shell_for(path: &Path) -> String {
    format!(
        "i=0; until [ -e {p} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
        p = path.display()
    )
}

/// A playbook with a first step that says it started, prints a line, waits for `go` and writes
/// the ledger, and a second step after it. `detach` makes the first a detached job.
fn playbook(dir: &Path, detach: bool) -> PathBuf {
    let d = dir.display();
    let yaml = format!(
        "name: night\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n\
         steps:\n\
         - id: long\n  on: here\n  detach: {detach}\n  run: {}\n\
         - id: after\n  on: here\n  run: {}\n",
        q(&format!(
            "echo start >> {d}/ledger; echo copying the share; touch {d}/started; {w}; echo end >> {d}/ledger",
            w = wait_in_shell_for(&dir.join("go")),
        )),
        q(&format!("echo after >> {d}/ledger")),
    );
    let path = dir.join("night.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

fn ledger(dir: &Path) -> Vec<String> {
    records::lines(&dir.join("ledger"))
}

fn journal(dir: &Path) -> PathBuf {
    dir.join(".runner").join("night.db")
}

fn runs(dir: &Path) -> Vec<(String, Option<String>)> {
    records::runs(&journal(dir))
}

fn attempts(dir: &Path) -> Vec<(String, String, String)> {
    records::attempts(&journal(dir))
}

fn triple(s: (&str, &str, &str)) -> (String, String, String) {
    (s.0.to_string(), s.1.to_string(), s.2.to_string())
}

/// The pid in "started run ID in the background (pid N)".
fn background_pid(said: &str) -> u32 {
    said.split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in: {said}"))
}

/// The run's log named in what `--background` said.
fn background_log(said: &str) -> PathBuf {
    said.lines()
        .find_map(|l| l.trim().strip_prefix("log:"))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no log in: {said}"))
}

/// After the first step's release, the background run finishes by itself: the journal records
/// its success, both steps ran once, and its log has the end of the run.
fn assert_finished_alone(dir: &Path, pid: u32, said: &str) {
    assert!(
        process_running(pid),
        "the background run did not survive: {said}"
    );
    fs::write(dir.join("go"), b"").expect("create go");
    assert!(
        stops_within(pid, PATIENCE),
        "the background run did not end"
    );
    assert_eq!(ledger(dir), ["start", "end", "after"]);
    assert_eq!(
        runs(dir),
        [("apply".to_string(), Some("succeeded".to_string()))]
    );
    assert_eq!(
        attempts(dir),
        [
            triple(("long", "run", "succeeded")),
            triple(("after", "run", "succeeded"))
        ]
    );
    let log = fs::read_to_string(background_log(said)).expect("the run's log");
    assert!(
        log.contains("copying the share") && log.contains("all 2 steps are done"),
        "the run's log:\n{log}"
    );
}

#[test]
fn a_background_run_survives_its_closed_terminal_and_finishes() {
    let dir = tempfile::Builder::new()
        .prefix("runner-bg-")
        .tempdir()
        .expect("tempdir");
    let pb = playbook(dir.path(), false);
    let tmux = Tmux::new(dir.path());
    let said_file = dir.path().join("said");
    // The operator's shell starts the run and stays open, as a terminal does, until closed.
    let cmd = format!(
        "cd {d} && env -u RUNNER_NOW {bin} apply {pb} --background > {s} 2>&1; echo $? > {d}/rc; exec sleep 3600",
        d = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_runner"),
        pb = pb.display(),
        s = said_file.display()
    );
    let out = tmux.run(&["new-session", "-d", "-s", "night", &cmd]);
    assert!(out.status.success(), "tmux: {out:?}");
    wait_until("the start to return", || dir.path().join("rc").exists());
    wait_until("the long step to start", || {
        dir.path().join("started").exists()
    });
    let said = fs::read_to_string(&said_file).expect("what the start said");
    assert_eq!(
        fs::read_to_string(dir.path().join("rc")).unwrap().trim(),
        "0",
        "{said}"
    );
    assert!(
        said.contains(&format!("runner status {} --follow", pb.display())),
        "{said}"
    );
    let pid = background_pid(&said);
    let out = tmux.run(&["kill-session", "-t", "night"]);
    assert!(out.status.success(), "tmux kill-session: {out:?}");
    assert_finished_alone(dir.path(), pid, &said);
}

#[test]
fn a_background_run_survives_the_end_of_its_ssh_session_and_finishes() {
    let sshd = Sshd::start("127.0.0.91");
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), false);
    // A real SSH session with a terminal: when the command returns, sshd closes the session
    // and hangs up its terminal.
    let out = Command::new("ssh")
        .args([
            "-tt",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.known_hosts_path().display()
        ))
        .arg("-i")
        .arg(sshd.user_key_path())
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(format!("{}@{}", sshd.user(), sshd.host()))
        .arg(format!(
            "cd {d} && env -u RUNNER_NOW {bin} apply {pb} --background",
            d = dir.path().display(),
            bin = env!("CARGO_BIN_EXE_runner"),
            pb = pb.display()
        ))
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the long step to start", || {
        dir.path().join("started").exists()
    });
    assert_finished_alone(dir.path(), background_pid(&said), &said);
}

#[test]
fn a_background_start_that_fails_returns_its_error_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), false);
    let bad = dir.path().join("bad.yaml");
    fs::write(&bad, "name: bad\nsteps: [\n").expect("write");
    let r = runner(&["apply", "bad.yaml", "--background"], dir.path(), &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        !dir.path().join(".runner").exists(),
        "something was written"
    );

    // A run holds the journal: a second background start is a conflict, said as such.
    let first = runner(&["apply", "night.yaml", "--background"], dir.path(), &[]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let pid = background_pid(&first.stdout);
    wait_until("the long step to start", || {
        dir.path().join("started").exists()
    });
    let second = runner(&["apply", "night.yaml", "--background"], dir.path(), &[]);
    assert_eq!(second.code, 4, "{}{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("is locked by pid"),
        "{}",
        second.stderr
    );
    assert!(!second.stdout.contains("started run"), "{}", second.stdout);
    assert_finished_alone(dir.path(), pid, &first.stdout);
    drop(pb);
}

#[test]
fn one_ctrl_c_during_a_detached_step_leaves_the_job_running_and_apply_reattaches() {
    let dir = tempfile::tempdir().expect("tempdir");
    playbook(dir.path(), true);
    let err = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "night.yaml"])
        .current_dir(dir.path())
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("runner starts");
    wait_until("the detached job to start", || {
        dir.path().join("started").exists()
    });
    // SAFETY: signals a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut code = None;
    wait_until("the runner to leave the job and exit", || {
        code = child.try_wait().expect("wait").map(|s| s.code());
        code.is_some()
    });
    let said = fs::read_to_string(&err).unwrap_or_default();
    assert_eq!(code, Some(Some(130)), "{said}");
    assert!(said.contains("Ctrl-C (SIGINT) received"), "{said}");
    assert!(
        said.contains("keeps running on `here`; run `runner apply night.yaml` to reattach"),
        "{said}"
    );
    // The job goes on without the runner and ends by itself.
    assert_eq!(attempts(dir.path()), [triple(("long", "run", "running"))]);
    fs::write(dir.path().join("go"), b"").expect("create go");
    wait_until("the job to end on its own", || {
        ledger(dir.path()).contains(&"end".to_string())
    });
    let status = runner(&["status", "night.yaml"], dir.path(), &[]);
    assert!(
        status.stdout.contains("running (detached)"),
        "{}",
        status.stdout
    );
    let r = runner(&["apply", "night.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Started once, followed to its end once, never started again.
    assert_eq!(ledger(dir.path()), ["start", "end", "after"]);
    assert_eq!(
        attempts(dir.path()),
        [
            triple(("long", "run", "succeeded")),
            triple(("after", "run", "succeeded"))
        ]
    );
}

/// Runs `runner status night.yaml --follow` in a tmux pane of `session`; its exit code lands in
/// `rc-<session>`.
fn follow_in_tmux(tmux: &Tmux, dir: &Path, session: &str) {
    let cmd = format!(
        "cd {d} && env -u RUNNER_NOW {bin} status night.yaml --follow; echo $? > {d}/rc-{session}; exec sleep 3600",
        d = dir.display(),
        bin = env!("CARGO_BIN_EXE_runner"),
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]);
    assert!(out.status.success(), "tmux: {out:?}");
}

fn rc(dir: &Path, session: &str) -> Option<String> {
    fs::read_to_string(dir.join(format!("rc-{session}")))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn status_follow_shows_a_step_go_from_running_to_done_and_ends_with_the_run() {
    let dir = tempfile::Builder::new()
        .prefix("runner-follow-")
        .tempdir()
        .expect("tempdir");
    playbook(dir.path(), false);
    let tmux = Tmux::new(dir.path());
    let started = runner(&["apply", "night.yaml", "--background"], dir.path(), &[]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid = background_pid(&started.stdout);

    // A first look, left with Ctrl-C: the run goes on.
    follow_in_tmux(&tmux, dir.path(), "look");
    wait_until(
        "the live view to show the running step and its output",
        || {
            let screen = tmux.capture("look");
            screen.contains("long on here: running") && screen.contains("| copying the share")
        },
    );
    let screen = tmux.capture("look");
    assert!(screen.contains("Next:"), "{screen}");
    assert!(screen.contains("after (after) on here"), "{screen}");
    assert!(screen.contains("2 steps left, expected to end"), "{screen}");
    tmux.run(&["send-keys", "-t", "look", "C-c"]);
    wait_until("the view to be left", || rc(dir.path(), "look").is_some());
    assert_eq!(rc(dir.path(), "look").as_deref(), Some("0"));
    assert!(
        tmux.capture("look")
            .contains("Left the live view; the run goes on"),
        "{}",
        tmux.capture("look")
    );
    assert!(process_running(pid), "leaving the view stopped the run");

    // Back again: the step ends, the next runs, the view ends by itself with the run.
    follow_in_tmux(&tmux, dir.path(), "again");
    wait_until("the live view to show the running step", || {
        tmux.capture("again").contains("long on here: running")
    });
    fs::write(dir.path().join("go"), b"").expect("create go");
    wait_until("the view to end with the run", || {
        rc(dir.path(), "again").is_some()
    });
    let screen = tmux.capture("again");
    assert_eq!(rc(dir.path(), "again").as_deref(), Some("0"), "{screen}");
    assert!(
        screen.contains("Done: 2 of 2 step x target pairs"),
        "{screen}"
    );
    assert!(screen.contains("The run ended: succeeded"), "{screen}");
    assert!(stops_within(pid, PATIENCE));
}

#[test]
fn a_background_run_waits_for_the_window_with_a_visible_countdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), false);
    let text = fs::read_to_string(&pb).expect("read");
    fs::write(
        &pb,
        text.replace(
            "window:\n  business_hours: []\n",
            "window:\n  timezone: America/Chicago\n  business_hours:\n    - { days: mon-fri, from: \"07:15\", to: \"18:00\" }\n  when_closed: wait\n",
        ),
    )
    .expect("write");
    // An afternoon: the window opens at 18:00, 2h 13m from now.
    let now = [("RUNNER_NOW", "2026-12-07T15:47:00-06:00")];
    let started = runner(&["apply", "night.yaml", "--background"], dir.path(), &now);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid = background_pid(&started.stdout);

    // Watched without a terminal: plain lines, no screen control.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["status", "night.yaml", "--follow"])
        .current_dir(dir.path())
        .env("RUNNER_NOW", "2026-12-07T15:47:00-06:00")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("status --follow starts");
    let mut out = std::io::BufReader::new(watch.stdout.take().expect("stdout"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut out, &mut line).expect("read");
        assert!(n > 0, "the view ended before showing the wait: {seen}");
        seen.push_str(&line);
        if line.contains("waiting for the window") {
            break;
        }
    }
    assert!(
        seen.contains("waiting for the window: `long` may start at 18:00 CST (in 2h 1"),
        "{seen}"
    );
    assert!(!dir.path().join("started").exists(), "a step started early");
    // SIGTERM ends the wait politely; the view ends with the run and says how.
    // SAFETY: signals the background run this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read");
    let status = watch.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{seen}{rest}");
    assert!(rest.contains("The run ended: interrupted"), "{rest}");
    assert!(
        !rest.contains('\x1b'),
        "screen control on a plain stdout: {rest:?}"
    );
    assert!(stops_within(pid, PATIENCE));
    assert_eq!(
        runs(dir.path()),
        [("apply".to_string(), Some("interrupted".to_string()))]
    );
}

#[test]
fn a_background_run_started_before_the_window_sleeps_and_works_when_it_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), false);
    let text = fs::read_to_string(&pb).expect("read");
    fs::write(
        &pb,
        text.replace(
            "window:\n  business_hours: []\n",
            "window:\n  timezone: America/Chicago\n  business_hours:\n    - { days: mon-fri, from: \"07:15\", to: \"18:00\" }\n  when_closed: wait\n",
        ),
    )
    .expect("write");
    fs::write(dir.path().join("go"), b"").expect("create go");
    // Two seconds before the window opens.
    let now = [("RUNNER_NOW", "2026-12-07T17:59:58-06:00")];
    let started = runner(&["apply", "night.yaml", "--background"], dir.path(), &now);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid = background_pid(&started.stdout);
    assert!(stops_within(pid, PATIENCE), "the run did not end");
    assert_eq!(
        runs(dir.path()),
        [("apply".to_string(), Some("succeeded".to_string()))]
    );
    assert_eq!(ledger(dir.path()), ["start", "end", "after"]);
    // Nothing started before 18:00 CST (00:00 UTC), on the run's own clock.
    let first: String = rusqlite::Connection::open(journal(dir.path()))
        .expect("open the journal")
        .query_row(
            "SELECT started_at FROM attempts ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the first attempt");
    let first: jiff::Timestamp = first.parse().expect("a timestamp");
    assert!(
        first >= "2026-12-08T00:00:00Z".parse().expect("a timestamp"),
        "started at {first}"
    );
    let log = fs::read_to_string(background_log(&started.stdout)).expect("the run's log");
    assert!(log.contains("window closed for long (wait)"), "{log}");
}

#[test]
fn a_manual_step_in_a_background_run_waits_for_runner_mark_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let yaml = format!(
        "name: night\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n\
         steps:\n\
         - id: first\n  on: here\n  run: echo first >> {d}/ledger\n\
         - id: confirm\n  manual: Ask the customer to open a file on the new share.\n\
         - id: after\n  on: here\n  run: echo after >> {d}/ledger\n"
    );
    fs::write(dir.path().join("night.yaml"), yaml).expect("write");
    let started = runner(&["apply", "night.yaml", "--background"], dir.path(), &[]);
    assert_eq!(started.code, 0, "{}{}", started.stdout, started.stderr);
    let pid = background_pid(&started.stdout);

    // The watcher is told what to do, with the real command.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["status", "night.yaml", "--follow"])
        .current_dir(dir.path())
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("status --follow starts");
    let mut out = std::io::BufReader::new(watch.stdout.take().expect("stdout"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut out, &mut line).expect("read");
        assert!(n > 0, "the view ended before the manual step: {seen}");
        seen.push_str(&line);
        if line.contains("waiting for an operator") {
            break;
        }
    }
    assert!(
        seen.contains("run `runner mark night.yaml confirm done` (or `skip`)"),
        "{seen}"
    );
    assert!(process_running(pid), "the run stopped instead of waiting");
    assert_eq!(ledger(dir.path()), ["first"]);
    // Only the awaited answer passes the running apply's lock.
    let other = runner(&["mark", "night.yaml", "first", "done"], dir.path(), &[]);
    assert_eq!(other.code, 4, "{}{}", other.stdout, other.stderr);
    let mark = runner(&["mark", "night.yaml", "confirm", "done"], dir.path(), &[]);
    assert_eq!(mark.code, 0, "{}{}", mark.stdout, mark.stderr);
    assert!(mark.stdout.contains("goes on"), "{}", mark.stdout);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read");
    assert_eq!(watch.wait().expect("wait").code(), Some(0), "{rest}");
    assert!(rest.contains("The run ended: succeeded"), "{rest}");
    assert!(stops_within(pid, PATIENCE));
    assert_eq!(ledger(dir.path()), ["first", "after"]);
    assert_eq!(
        runs(dir.path()),
        [("apply".to_string(), Some("succeeded".to_string()))]
    );
}
