//! `runner apply` (and rollback, mark, trust) end to end: the real binary, real sshd servers on
//! 127.0.0.x, real journals. The targets are this same machine, so every test can look at what
//! a step really did: steps append to "ledger" files, and a ledger's lines count how often a
//! step ran.
//!
//! Synchronisation with a running runner is always by a condition (a marker file a step
//! creates, a "go" file the test creates), never by sleeping for a while.

use crate::common;
use crate::common_cli;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{process_running, Sshd};
use crate::common_cli::{runner, Run};

/// Upper bound for any wait on the runner or on a step; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(90);

/// A shell loop that waits (bounded, about 60 s) until `path` exists; exit 9 if it never does,
/// so a broken test fails instead of hanging.
fn wait_in_shell_for(path: &Path) -> String {
    format!(
        "i=0; until [ -e {p} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
        p = path.display()
    )
}

/// YAML single-quoted scalar: everything literal, `'` doubled.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("runner-apply-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A playbook with no business hours: steps may start at any time.
fn header(name: &str) -> String {
    format!("name: {}\nwindow:\n  business_hours: []\n", q(name))
}

/// An ssh target logging into `sshd` with the harness key and known_hosts.
fn target(name: &str, sshd: &Sshd, vars: &[(&str, String)]) -> String {
    target_with(
        name,
        sshd,
        &sshd.user_key_path(),
        &sshd.known_hosts_path(),
        "",
        vars,
    )
}

/// An ssh target with a chosen key and known_hosts file; `extra` holds more keys of the target,
/// each line indented by four spaces.
fn target_with(
    name: &str,
    sshd: &Sshd,
    key: &Path,
    known_hosts: &Path,
    extra: &str,
    vars: &[(&str, String)],
) -> String {
    let mut t = format!(
        "  {name}:\n    transport: ssh\n    host: {host}\n    port: {port}\n    user: {user}\n    key: {key}\n    known_hosts: {kh}\n{extra}",
        host = q(sshd.host()),
        port = sshd.port(),
        user = q(&sshd.user()),
        key = q(&key.display().to_string()),
        kh = q(&known_hosts.display().to_string()),
    );
    if !vars.is_empty() {
        t.push_str("    vars:\n");
        for (k, v) in vars {
            t.push_str(&format!("      {k}: {}\n", q(v)));
        }
    }
    t
}

fn write_playbook(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("cutover.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

/// The default journal of `dir/cutover.yaml`.
fn journal_path(dir: &Path) -> PathBuf {
    dir.join(".runner").join("cutover.db")
}

fn runs_dir(dir: &Path) -> PathBuf {
    dir.join(".runner").join("runs").join("cutover")
}

/// Lines of a ledger; none when the file does not exist (the step never ran).
fn lines(path: &Path) -> Vec<String> {
    match fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

fn apply(pb: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let pb_s = pb.display().to_string();
    let mut args = vec!["apply", pb_s.as_str()];
    args.extend_from_slice(extra);
    runner(&args, pb.parent().expect("playbook folder"), env)
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        r.code, r.stdout, r.stderr
    )
}

#[track_caller]
fn assert_exit(r: &Run, code: i32) {
    assert_eq!(r.code, code, "unexpected exit code:\n{}", show(r));
}

/// One attempt as the journal recorded it.
#[derive(Debug, Clone, PartialEq)]
struct AttemptRow {
    target: String,
    kind: String,
    number: i64,
    state: String,
    exit_code: Option<i64>,
    message: Option<String>,
}

fn db(dir: &Path) -> rusqlite::Connection {
    let path = journal_path(dir);
    assert!(path.exists(), "no journal at {}", path.display());
    rusqlite::Connection::open(&path).expect("open the journal")
}

/// Attempts of one step, in the order they were started.
fn attempts(dir: &Path, step: &str) -> Vec<AttemptRow> {
    let conn = db(dir);
    let mut stmt = conn
        .prepare(
            "SELECT target, kind, number, state, exit_code, message FROM attempts \
             WHERE step_id = ?1 ORDER BY id",
        )
        .expect("prepare");
    stmt.query_map([step], |r| {
        Ok(AttemptRow {
            target: r.get(0)?,
            kind: r.get(1)?,
            number: r.get(2)?,
            state: r.get(3)?,
            exit_code: r.get(4)?,
            message: r.get(5)?,
        })
    })
    .expect("query attempts")
    .collect::<Result<_, _>>()
    .expect("read attempts")
}

/// Attempts of one step and kind, as (target, state).
fn attempts_of_kind(dir: &Path, step: &str, kind: &str) -> Vec<(String, String)> {
    attempts(dir, step)
        .into_iter()
        .filter(|a| a.kind == kind)
        .map(|a| (a.target, a.state))
        .collect()
}

/// Journal events (window decisions) of a kind, as (step, detail).
fn events(dir: &Path, kind: &str) -> Vec<(Option<String>, String)> {
    let conn = db(dir);
    let mut stmt = conn
        .prepare("SELECT step_id, detail FROM events WHERE kind = ?1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query events")
        .collect::<Result<_, _>>()
        .expect("read events")
}

/// Waits (bounded) until `path` exists.
fn wait_for_file(path: &Path, child: &mut Background) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        if let Ok(Some(status)) = child.child.try_wait() {
            panic!(
                "runner ended ({status}) before {} appeared:\n{}",
                path.display(),
                child.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear in time",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A runner started in the background, its output going to files; killed if the test fails.
struct Background {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Background {
    fn start(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Background {
        let n = fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let out = dir.join(format!("bg-{n}.stdout"));
        let err = dir.join(format!("bg-{n}.stderr"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.args(args)
            .current_dir(dir)
            .env_remove("RUNNER_NOW")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("create stdout file"))
            .stderr(fs::File::create(&err).expect("create stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start runner");
        Background { child, out, err }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            fs::read_to_string(&self.out).unwrap_or_default(),
            fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits (bounded) for the runner to end.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "runner did not finish in time:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The fingerprint as OpenSSH itself prints it.
fn openssh_fingerprint(pub_path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_path)
        .output()
        .expect("run ssh-keygen -lf");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_string()
}

fn keygen(path: &Path, passphrase: &str) {
    keygen_typed(path, "ed25519", passphrase);
}

fn keygen_typed(path: &Path, key_type: &str, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            key_type,
            "-C",
            "runner test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// 1 ----------------------------------------------------------------------------------------

#[test]
fn full_apply_fans_out_over_three_hosts_and_a_second_apply_runs_nothing() {
    let hosts = [
        Sshd::start("127.0.0.41"),
        Sshd::start("127.0.0.42"),
        Sshd::start("127.0.0.43"),
    ];
    let dir = workdir();
    let ledger = |n: &str| dir.path().join(format!("ledger-{n}"));
    let mut yaml = header("fan-out");
    yaml.push_str("targets:\n");
    for (name, sshd) in ["a", "b", "c"].iter().zip(&hosts) {
        yaml.push_str(&target(
            name,
            sshd,
            &[("ledger", ledger(name).display().to_string())],
        ));
    }
    yaml.push_str(&format!(
        "groups:\n  all: [a, b, c]\nsteps:\n\
         - id: prepare\n  on: a\n  run: {}\n\
         - id: everywhere\n  on: all\n  run: {}\n\
         - id: finish\n  on: c\n  run: {}\n",
        q("echo prepare >> {{ ledger }}"),
        q("echo everywhere on {{ target.name }} >> {{ ledger }}"),
        q("echo finish >> {{ ledger }}"),
    ));
    let pb = write_playbook(dir.path(), &yaml);

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 0);
    let expected = [
        vec!["prepare", "everywhere on a"],
        vec!["everywhere on b"],
        vec!["everywhere on c", "finish"],
    ];
    for (name, want) in ["a", "b", "c"].iter().zip(&expected) {
        assert_eq!(
            &lines(&ledger(name)),
            want,
            "ledger of {name}\n{}",
            show(&r)
        );
    }
    let everywhere = attempts_of_kind(dir.path(), "everywhere", "run");
    let mut on: Vec<&str> = everywhere.iter().map(|(t, _)| t.as_str()).collect();
    on.sort_unstable();
    assert_eq!(on, ["a", "b", "c"]);
    assert!(everywhere.iter().all(|(_, s)| s == "succeeded"));

    let again = apply(&pb, &[], &[]);
    assert_exit(&again, 0);
    for (name, want) in ["a", "b", "c"].iter().zip(&expected) {
        assert_eq!(
            &lines(&ledger(name)),
            want,
            "the second apply ran something on {name}\n{}",
            show(&again)
        );
    }
    for step in ["prepare", "everywhere", "finish"] {
        let n = attempts(dir.path(), step).len();
        let want = if step == "everywhere" { 3 } else { 1 };
        assert_eq!(n, want, "attempts of `{step}` after the second apply");
    }
}

// 2 ----------------------------------------------------------------------------------------

#[test]
fn a_failing_step_stops_the_run_and_a_fixed_playbook_resumes_from_it() {
    let hosts = [
        Sshd::start("127.0.0.44"),
        Sshd::start("127.0.0.45"),
        Sshd::start("127.0.0.46"),
    ];
    let dir = workdir();
    let ledger = |n: &str| dir.path().join(format!("ledger-{n}"));
    // `b` and `c` finish only after the runner has recorded `a`'s failure (its note in the
    // run log): they were still in flight when `a` failed.
    let failure_seen = format!(
        "i=0; until grep -qs 'is not one of the ok codes' {}/*/risky@a.log; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
        runs_dir(dir.path()).display()
    );
    let playbook = |a_risky: &str| {
        let mut yaml = header("failure and resume");
        yaml.push_str("targets:\n");
        for (name, sshd) in ["a", "b", "c"].iter().zip(&hosts) {
            let risky = if *name == "a" {
                a_risky.to_string()
            } else {
                failure_seen.clone()
            };
            yaml.push_str(&target(
                name,
                sshd,
                &[
                    ("ledger", ledger(name).display().to_string()),
                    ("risky", risky),
                ],
            ));
        }
        yaml.push_str(&format!(
            "groups:\n  all: [a, b, c]\nsteps:\n\
             - id: first\n  on: all\n  run: {}\n\
             - id: risky\n  on: all\n  run: {}\n\
             - id: after\n  on: all\n  run: {}\n",
            q("echo first >> {{ ledger }}"),
            q("echo risky-start >> {{ ledger }}; {{ risky }}; echo risky-end >> {{ ledger }}"),
            q("echo after >> {{ ledger }}"),
        ));
        write_playbook(dir.path(), &yaml)
    };

    let pb = playbook("exit 3");
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(
        r.stderr.contains("`risky` failed on 1 target"),
        "only `a` failed, its siblings completed:\n{}",
        show(&r)
    );
    assert!(r.stderr.contains("exit code 3"), "{}", show(&r));
    assert!(
        r.stdout
            .contains("FAILED run risky on a: exit code 3 is not one of the ok codes"),
        "the progress line says it once and plainly:\n{}",
        show(&r)
    );
    assert_eq!(lines(&ledger("a")), ["first", "risky-start"]);
    for n in ["b", "c"] {
        assert_eq!(
            lines(&ledger(n)),
            ["first", "risky-start", "risky-end"],
            "{n} completed its part of the failed step\n{}",
            show(&r)
        );
    }
    assert!(
        attempts(dir.path(), "after").is_empty(),
        "no later step starts"
    );
    let risky: Vec<_> = attempts(dir.path(), "risky")
        .into_iter()
        .map(|a| (a.target, a.state, a.exit_code))
        .collect();
    assert!(risky.contains(&("a".into(), "failed".into(), Some(3))));
    assert!(risky.contains(&("b".into(), "succeeded".into(), Some(0))));

    // The fix changes `risky` on `a` only: a step that never succeeded there is not a
    // "changed" step, it simply runs; on `b` and `c` its rendering is what succeeded.
    let pb = playbook("true");
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 0);
    assert_eq!(
        lines(&ledger("a")),
        ["first", "risky-start", "risky-start", "risky-end", "after"],
        "{}",
        show(&r)
    );
    for n in ["b", "c"] {
        assert_eq!(
            lines(&ledger(n)),
            ["first", "risky-start", "risky-end", "after"],
            "on {n} only the later step ran\n{}",
            show(&r)
        );
    }
    assert_eq!(
        attempts(dir.path(), "first").len(),
        3,
        "earlier steps not re-run"
    );
    assert_eq!(attempts(dir.path(), "risky").len(), 4);
}

// 3 ----------------------------------------------------------------------------------------

#[test]
fn retries_run_a_step_again_and_number_the_attempts() {
    let sshd = Sshd::start("127.0.0.47");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let counter = dir.path().join("counter");
    let mut yaml = header("retries");
    yaml.push_str("targets:\n");
    yaml.push_str(&target(
        "a",
        &sshd,
        &[
            ("ledger", ledger.display().to_string()),
            ("counter", counter.display().to_string()),
        ],
    ));
    yaml.push_str(&format!(
        "steps:\n\
         - id: flaky\n  on: a\n  retries: 2\n  run: {}\n\
         - id: stubborn\n  on: a\n  retries: 1\n  run: {}\n",
        q("n=$(cat {{ counter }} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {{ counter }}; echo flaky-$n >> {{ ledger }}; [ $n -ge 3 ]"),
        q("echo stubborn >> {{ ledger }}; exit 5"),
    ));
    let pb = write_playbook(dir.path(), &yaml);

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    let flaky: Vec<_> = attempts(dir.path(), "flaky")
        .into_iter()
        .map(|a| (a.kind, a.number, a.state, a.exit_code))
        .collect();
    assert_eq!(
        flaky,
        [
            ("run".to_string(), 1, "failed".to_string(), Some(1)),
            ("run".to_string(), 2, "failed".to_string(), Some(1)),
            ("run".to_string(), 3, "succeeded".to_string(), Some(0)),
        ],
        "{}",
        show(&r)
    );
    let stubborn: Vec<_> = attempts(dir.path(), "stubborn")
        .into_iter()
        .map(|a| (a.number, a.state, a.exit_code))
        .collect();
    assert_eq!(
        stubborn,
        [
            (1, "failed".to_string(), Some(5)),
            (2, "failed".to_string(), Some(5))
        ]
    );
    assert_eq!(
        lines(&ledger),
        ["flaky-1", "flaky-2", "flaky-3", "stubborn", "stubborn"]
    );

    // Attempt numbers keep counting across a resume.
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    let numbers: Vec<i64> = attempts(dir.path(), "stubborn")
        .into_iter()
        .map(|a| a.number)
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(
        attempts(dir.path(), "flaky").len(),
        3,
        "a success is not re-run"
    );
}

// 4 ----------------------------------------------------------------------------------------

#[test]
fn a_timeout_stops_the_remote_command() {
    let sshd = Sshd::start("127.0.0.48");
    let dir = workdir();
    let shell_pid = dir.path().join("shell.pid");
    let sleep_pid = dir.path().join("sleep.pid");
    let mut yaml = header("timeout");
    yaml.push_str("targets:\n");
    yaml.push_str(&target(
        "a",
        &sshd,
        &[
            ("shell_pid", shell_pid.display().to_string()),
            ("sleep_pid", sleep_pid.display().to_string()),
        ],
    ));
    yaml.push_str(&format!(
        "steps:\n- id: slow\n  on: a\n  timeout: 2s\n  run: {}\n",
        q("echo $$ > {{ shell_pid }}; sleep 60 & echo $! > {{ sleep_pid }}; wait"),
    ));
    let pb = write_playbook(dir.path(), &yaml);

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(r.stderr.contains("timed out"), "{}", show(&r));
    let rows = attempts(dir.path(), "slow");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "timed_out");
    for file in [&shell_pid, &sleep_pid] {
        let pid = common::read_pid(dir.path(), &file.file_name().unwrap().to_string_lossy());
        assert!(
            !process_running(pid),
            "process {pid} ({}) still runs after the timeout",
            file.display()
        );
    }
}

// 5 ----------------------------------------------------------------------------------------

/// Business hours every day 08:00 to 18:00 UTC.
fn window_playbook(dir: &Path, sshd: &Sshd, when_closed: &str, step_extra: &str) -> PathBuf {
    let ledger = dir.join("ledger");
    let mut yaml = String::from("name: window\nwindow:\n  timezone: UTC\n  business_hours:\n    - { days: mon-sun, from: \"08:00\", to: \"18:00\" }\n");
    yaml.push_str(&format!("  when_closed: {when_closed}\ntargets:\n"));
    yaml.push_str(&target(
        "a",
        sshd,
        &[("ledger", ledger.display().to_string())],
    ));
    yaml.push_str(&format!(
        "steps:\n- id: migrate\n  on: a\n  estimate: 10m\n{step_extra}  run: {}\n",
        q("echo migrate >> {{ ledger }}")
    ));
    write_playbook(dir, &yaml)
}

#[test]
fn the_window_stops_apply_and_an_override_is_journaled_with_its_reason() {
    let sshd = Sshd::start("127.0.0.49");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let pb = window_playbook(dir.path(), &sshd, "stop", "");
    let noon = [("RUNNER_NOW", "2026-03-10T12:00:00Z")];

    let r = apply(&pb, &[], &noon);
    assert_exit(&r, 3);
    assert!(
        lines(&ledger).is_empty(),
        "nothing may run in business hours"
    );
    assert!(
        r.stderr.contains("may start Tue 10 Mar 2026 18:00"),
        "the message says when the step may start:\n{}",
        show(&r)
    );
    assert!(attempts(dir.path(), "migrate").is_empty());
    assert_eq!(events(dir.path(), "stopped").len(), 1);

    let reason = "customer approved the outage, ticket 4711";
    let r = apply(&pb, &["--override-window-all", "--reason", reason], &noon);
    assert_exit(&r, 0);
    assert_eq!(lines(&ledger), ["migrate"]);
    let overrides = events(dir.path(), "override");
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert_eq!(overrides[0].0.as_deref(), Some("migrate"));
    assert!(
        overrides[0].1.contains(reason),
        "the override records why: {overrides:?}"
    );
}

#[test]
fn when_closed_wait_waits_for_the_end_of_business_hours() {
    let sshd = Sshd::start("127.0.0.50");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let pb = window_playbook(dir.path(), &sshd, "wait", "");
    // Two seconds before business hours end; the shifted clock advances in real time, so
    // apply waits about two seconds.
    let r = apply(&pb, &[], &[("RUNNER_NOW", "2026-03-10T17:59:58Z")]);
    assert_exit(&r, 0);
    assert_eq!(lines(&ledger), ["migrate"]);
    let waited = events(dir.path(), "waited");
    assert_eq!(waited.len(), 1, "{waited:?}");
    assert!(waited[0].1.contains("18:00"), "{waited:?}");
    let rows = attempts(dir.path(), "migrate");
    assert_eq!(rows.len(), 1);
    let conn = db(dir.path());
    let started: String = conn
        .query_row(
            "SELECT started_at FROM attempts WHERE step_id = 'migrate'",
            [],
            |r| r.get(0),
        )
        .expect("read started_at");
    assert!(
        started.as_str() >= "2026-03-10T18:00:00",
        "the step started before business hours ended: {started}"
    );
}

#[test]
fn a_step_allowed_in_business_hours_runs_inside_them() {
    let sshd = Sshd::start("127.0.0.51");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let pb = window_playbook(dir.path(), &sshd, "stop", "  business_hours: allow\n");
    let r = apply(&pb, &[], &[("RUNNER_NOW", "2026-03-10T12:00:00Z")]);
    assert_exit(&r, 0);
    assert_eq!(lines(&ledger), ["migrate"]);
    assert!(events(dir.path(), "stopped").is_empty());
    assert!(events(dir.path(), "override").is_empty());
}

// 6 ----------------------------------------------------------------------------------------

#[test]
fn rollback_undoes_in_reverse_completion_order_and_stops_at_a_point_of_no_return() {
    let a = Sshd::start("127.0.0.53");
    let b = Sshd::start("127.0.0.54");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let rb = dir.path().join("rollback-ledger");
    // On `a`, step `three` ends only after `b`'s attempt of it is recorded as finished, so
    // `b` completes first although `a` is listed first.
    let after_b = format!(
        "i=0; until grep -qsF '\"event\":\"attempt_finished\",\"step\":\"three\",\"target\":\"b\"' {}/*/events.jsonl; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
        runs_dir(dir.path()).display()
    );
    let vars = |wait: &str| {
        vec![
            ("ledger", ledger.display().to_string()),
            ("rb", rb.display().to_string()),
            ("before_three", wait.to_string()),
        ]
    };
    let mut yaml = header("rollback");
    yaml.push_str("targets:\n");
    yaml.push_str(&target("a", &a, &vars(&after_b)));
    yaml.push_str(&target("b", &b, &vars("true")));
    yaml.push_str(&format!(
        "steps:\n\
         - id: one\n  on: a\n  run: {}\n  rollback: {}\n\
         - id: two\n  on: a\n  point_of_no_return: true\n  run: {}\n  rollback: {}\n\
         - id: three\n  on: [a, b]\n  run: {}\n  rollback: {}\n\
         - id: four\n  on: b\n  run: {}\n  rollback: {}\n",
        q("echo one >> {{ ledger }}"),
        q("echo undo-one >> {{ rb }}"),
        q("echo two >> {{ ledger }}"),
        q("echo undo-two >> {{ rb }}"),
        q("{{ before_three }}; echo three-{{ target.name }} >> {{ ledger }}"),
        q("echo undo-three-{{ target.name }} >> {{ rb }}"),
        q("echo four >> {{ ledger }}"),
        q("echo undo-four >> {{ rb }}"),
    ));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 0);
    assert_eq!(
        lines(&ledger),
        ["one", "two", "three-b", "three-a", "four"],
        "{}",
        show(&r)
    );

    // Without a terminal a rollback needs --yes.
    let r = runner(&["rollback", &pb_s], dir.path(), &[]);
    assert_exit(&r, 2);
    assert!(r.stderr.contains("--yes"), "{}", show(&r));
    assert!(
        lines(&rb).is_empty(),
        "nothing was undone without confirmation"
    );

    // --to three: only the steps after `three`.
    let r = runner(
        &["rollback", &pb_s, "--yes", "--to", "three"],
        dir.path(),
        &[],
    );
    assert_exit(&r, 0);
    assert_eq!(lines(&rb), ["undo-four"], "{}", show(&r));

    // The rest: reverse completion order, stopping before the point of no return `two`.
    let r = runner(&["rollback", &pb_s, "--yes"], dir.path(), &[]);
    assert_exit(&r, 0);
    assert_eq!(
        lines(&rb),
        ["undo-four", "undo-three-a", "undo-three-b"],
        "{}",
        show(&r)
    );
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("point of no return `two`"),
        "the rollback says where it stopped:\n{}",
        show(&r)
    );
    assert!(attempts_of_kind(dir.path(), "two", "rollback").is_empty());
    assert!(attempts_of_kind(dir.path(), "one", "rollback").is_empty());
    assert_eq!(
        attempts_of_kind(dir.path(), "four", "rollback"),
        [("b".to_string(), "succeeded".to_string())]
    );

    // Nothing left to undo before the point of no return.
    let r = runner(&["rollback", &pb_s, "--yes"], dir.path(), &[]);
    assert_exit(&r, 0);
    assert_eq!(lines(&rb).len(), 3, "nothing is undone twice\n{}", show(&r));
}

#[test]
fn a_failing_rollback_command_stops_the_rollback() {
    let sshd = Sshd::start("127.0.0.55");
    let dir = workdir();
    let rb = dir.path().join("rollback-ledger");
    let mut yaml = header("failing rollback");
    yaml.push_str("targets:\n");
    yaml.push_str(&target("a", &sshd, &[("rb", rb.display().to_string())]));
    yaml.push_str(&format!(
        "steps:\n\
         - id: one\n  on: a\n  run: 'true'\n  rollback: {}\n\
         - id: two\n  on: a\n  run: 'true'\n  rollback: {}\n\
         - id: three\n  on: a\n  run: 'true'\n  rollback: {}\n",
        q("echo undo-one >> {{ rb }}"),
        q("echo undo-two >> {{ rb }}; exit 7"),
        q("echo undo-three >> {{ rb }}"),
    ));
    let pb = write_playbook(dir.path(), &yaml);
    assert_exit(&apply(&pb, &[], &[]), 0);

    let r = runner(
        &["rollback", &pb.display().to_string(), "--yes"],
        dir.path(),
        &[],
    );
    assert_exit(&r, 1);
    assert_eq!(lines(&rb), ["undo-three", "undo-two"], "{}", show(&r));
    assert!(
        r.stderr.contains("rollback of `two`") && r.stderr.contains("failed"),
        "{}",
        show(&r)
    );
    let two = attempts(dir.path(), "two");
    let rollback: Vec<_> = two.iter().filter(|a| a.kind == "rollback").collect();
    assert_eq!(rollback.len(), 1);
    assert_eq!(rollback[0].state, "failed");
    assert_eq!(rollback[0].exit_code, Some(7));
    assert!(attempts_of_kind(dir.path(), "one", "rollback").is_empty());
}

#[test]
fn on_failure_rollback_undoes_what_succeeded_after_a_failed_step() {
    let sshd = Sshd::start("127.0.0.66");
    let dir = workdir();
    let rb = dir.path().join("rollback-ledger");
    let mut yaml = header("automatic rollback");
    yaml.push_str("on_failure: rollback\ntargets:\n");
    yaml.push_str(&target("a", &sshd, &[("rb", rb.display().to_string())]));
    yaml.push_str(&format!(
        "steps:\n\
         - id: one\n  on: a\n  run: 'true'\n  rollback: {}\n\
         - id: two\n  on: a\n  run: 'true'\n  rollback: {}\n\
         - id: three\n  on: a\n  run: 'exit 3'\n  rollback: {}\n",
        q("echo undo-one >> {{ rb }}"),
        q("echo undo-two >> {{ rb }}"),
        q("echo undo-three >> {{ rb }}"),
    ));
    let pb = write_playbook(dir.path(), &yaml);

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert_eq!(
        lines(&rb),
        ["undo-two", "undo-one"],
        "the failed step is not undone, the others are, newest first\n{}",
        show(&r)
    );
    assert!(r.stderr.contains("on_failure: rollback"), "{}", show(&r));
    assert_eq!(
        attempts_of_kind(dir.path(), "two", "rollback"),
        [("a".to_string(), "succeeded".to_string())]
    );
}

// 7 ----------------------------------------------------------------------------------------

#[test]
fn a_second_apply_is_refused_while_the_first_holds_the_lock() {
    let sshd = Sshd::start("127.0.0.56");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let marker = dir.path().join("started");
    let go = dir.path().join("go");
    let mut yaml = header("lock");
    yaml.push_str("targets:\n");
    yaml.push_str(&target(
        "a",
        &sshd,
        &[
            ("ledger", ledger.display().to_string()),
            ("marker", marker.display().to_string()),
            ("hold", wait_in_shell_for(&go)),
        ],
    ));
    yaml.push_str(&format!(
        "steps:\n- id: hold\n  on: a\n  run: {}\n",
        q("echo hold >> {{ ledger }}; touch {{ marker }}; {{ hold }}")
    ));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();

    let mut first = Background::start(&["apply", &pb_s], dir.path(), &[]);
    wait_for_file(&marker, &mut first);

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains(&format!("pid {}", first.pid())),
        "the message names the holder's pid {}:\n{}",
        first.pid(),
        show(&r)
    );

    // Neither a rollback nor an operator's mark may change the state under a running apply.
    let r = runner(&["rollback", &pb_s, "--yes"], dir.path(), &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        show(&r)
    );
    let r = runner(&["mark", &pb_s, "hold", "done"], dir.path(), &[]);
    assert_exit(&r, 4);
    assert!(
        db(dir.path())
            .query_row("SELECT count(*) FROM marks", [], |r| r.get::<_, i64>(0))
            .expect("count marks")
            == 0,
        "the refused mark was not recorded"
    );

    fs::write(&go, b"").expect("create the go file");
    let status = first.wait();
    assert_eq!(status.code(), Some(0), "{}", first.output());
    assert_eq!(lines(&ledger), ["hold"], "the refused commands ran nothing");
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(lines(&ledger), ["hold"]);
}

// 8 ----------------------------------------------------------------------------------------

#[test]
fn an_unknown_host_key_is_refused_until_trusted() {
    let sshd = Sshd::start("127.0.0.57");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let known_hosts = dir.path().join("known_hosts");
    fs::write(&known_hosts, b"").expect("write an empty known_hosts");
    let mut yaml = header("host keys");
    yaml.push_str("targets:\n");
    yaml.push_str(&target_with(
        "a",
        &sshd,
        &sshd.user_key_path(),
        &known_hosts,
        "",
        &[("ledger", ledger.display().to_string())],
    ));
    yaml.push_str(&format!(
        "steps:\n- id: one\n  on: a\n  run: {}\n",
        q("echo one >> {{ ledger }}")
    ));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(
        lines(&ledger).is_empty(),
        "nothing ran on an untrusted host"
    );
    let fingerprint = openssh_fingerprint(&sshd.host_pub_path());
    assert!(
        r.stderr.contains(&fingerprint),
        "the message shows the fingerprint {fingerprint}:\n{}",
        show(&r)
    );
    assert!(r.stderr.contains("runner trust"), "{}", show(&r));
    assert!(
        fs::read_to_string(&known_hosts).unwrap().is_empty(),
        "apply never writes known_hosts"
    );

    let t = runner(&["trust", &pb_s, "a", "--yes"], dir.path(), &[]);
    assert_exit(&t, 0);
    assert!(t.stdout.contains(&fingerprint), "{}", show(&t));
    let (_, b64) = sshd.host_key();
    assert!(fs::read_to_string(&known_hosts).unwrap().contains(&b64));

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 0);
    assert_eq!(lines(&ledger), ["one"]);
}

#[test]
fn a_changed_host_key_is_refused() {
    changed_host_key_is_refused("127.0.0.58", "ed25519");
}

/// Only a key of another type is recorded for the host: the server cannot prove it holds that
/// key, so this counts as a changed key too.
#[test]
fn a_host_key_of_another_type_than_the_recorded_one_is_refused() {
    changed_host_key_is_refused("127.0.0.64", "ecdsa");
}

fn changed_host_key_is_refused(ip: &str, recorded_type: &str) {
    let sshd = Sshd::start(ip);
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let other = dir.path().join("other_host_key");
    keygen_typed(&other, recorded_type, "");
    let other_pub = fs::read_to_string(other.with_extension("pub")).expect("read the other key");
    let mut fields = other_pub.split_whitespace();
    let (key_type, b64) = (fields.next().unwrap(), fields.next().unwrap());
    let known_hosts = dir.path().join("known_hosts");
    let recorded = format!("[{}]:{} {key_type} {b64}\n", sshd.host(), sshd.port());
    fs::write(&known_hosts, &recorded).expect("write known_hosts");
    let mut yaml = header("changed host key");
    yaml.push_str("targets:\n");
    yaml.push_str(&target_with(
        "a",
        &sshd,
        &sshd.user_key_path(),
        &known_hosts,
        "",
        &[("ledger", ledger.display().to_string())],
    ));
    yaml.push_str(&format!(
        "steps:\n- id: one\n  on: a\n  run: {}\n",
        q("echo one >> {{ ledger }}")
    ));
    let pb = write_playbook(dir.path(), &yaml);

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(lines(&ledger).is_empty(), "nothing ran");
    assert!(
        r.stderr.to_lowercase().contains("has changed"),
        "the message says the key changed:\n{}",
        show(&r)
    );
    // The server is asked for a key of the recorded type, so that is the one it presents.
    let presented = if recorded_type == "ecdsa" {
        sshd.ecdsa_host_pub_path()
    } else {
        sshd.host_pub_path()
    };
    assert!(
        r.stderr.contains(&openssh_fingerprint(&presented)),
        "{}",
        show(&r)
    );

    if recorded_type != "ed25519" {
        return;
    }
    // `trust` does not replace a recorded key either.
    let t = runner(
        &["trust", &pb.display().to_string(), "a", "--yes"],
        dir.path(),
        &[],
    );
    assert_eq!(t.code, 1, "{}", show(&t));
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), recorded);
    assert_exit(&apply(&pb, &[], &[]), 1);
    assert!(lines(&ledger).is_empty());
}

// 9 ----------------------------------------------------------------------------------------

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_passphrase_never_appears_in_output_journal_or_logs() {
    const PASSPHRASE: &str = "orchid-7391-zebra-Quill";
    let sshd = Sshd::start("127.0.0.59");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let key = dir.path().join("encrypted_key");
    keygen(&key, PASSPHRASE);
    let key_text = fs::read_to_string(&key).expect("read the key");
    assert!(!key_text.contains(PASSPHRASE));
    // Authorize only the encrypted key's public half: logging in proves the passphrase was used.
    let public = fs::read_to_string(key.with_extension("pub")).expect("read the public key");
    fs::write(sshd.dir().join("authorized_keys"), public).expect("write authorized_keys");

    let mut yaml = header("secrets");
    yaml.push_str("targets:\n");
    yaml.push_str(&target_with(
        "a",
        &sshd,
        &key,
        &sshd.known_hosts_path(),
        "    passphrase: { env: RUNNER_TEST_PP }\n",
        &[("ledger", ledger.display().to_string())],
    ));
    // The commands print the passphrase without containing it.
    let (head, tail) = PASSPHRASE.split_at(9);
    yaml.push_str(&format!(
        "steps:\n\
         - id: echo-it\n  on: a\n  run: {}\n\
         - id: fail-with-it\n  on: a\n  run: {}\n",
        q(&format!(
            "printf '%s%s\\n' {head} {tail}; printf 'err %s%s\\n' {head} {tail} >&2; echo ran >> {{{{ ledger }}}}"
        )),
        q(&format!("printf 'bad: %s%s\\n' {head} {tail}; exit 3")),
    ));
    assert!(!yaml.contains(PASSPHRASE));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();
    let env = [("RUNNER_TEST_PP", PASSPHRASE)];

    let first = apply(&pb, &[], &env);
    assert_exit(&first, 1);
    assert_eq!(lines(&ledger), ["ran"], "{}", show(&first));
    assert!(
        first.stdout.contains("********"),
        "the output line is shown masked:\n{}",
        show(&first)
    );
    let second = apply(&pb, &["--json"], &env);
    assert_exit(&second, 1);
    let status = runner(&["status", &pb_s, "--format", "json"], dir.path(), &env);
    // `runner report` may still be a placeholder in this build; then this only checks that it
    // does not leak, which stays true once it has real content.
    let report = runner(&["report", &pb_s, "--format", "json"], dir.path(), &env);
    assert_exit(&status, 0);
    assert_exit(&report, 0);
    for (what, r) in [
        ("first apply", &first),
        ("apply --json", &second),
        ("status", &status),
        ("report", &report),
    ] {
        assert!(
            !r.stdout.contains(PASSPHRASE) && !r.stderr.contains(PASSPHRASE),
            "the passphrase leaked into the output of {what}:\n{}",
            show(r)
        );
    }

    let state = dir.path().join(".runner");
    let files = files_below(&state);
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "db")));
    for f in &files {
        let bytes = fs::read(f).expect("read a state file");
        assert!(
            !contains_bytes(&bytes, PASSPHRASE.as_bytes()),
            "the passphrase is written in {}",
            f.display()
        );
    }
    let logs: Vec<String> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "echo-it@a.log"))
        .map(|f| fs::read_to_string(f).expect("read the run log"))
        .collect();
    assert_eq!(logs.len(), 1, "one run log for echo-it@a: {files:?}");
    assert!(
        logs[0].contains("stdout | ********") && logs[0].contains("stderr | err ********"),
        "the mask stands where the passphrase was printed:\n{}",
        logs[0]
    );
    // The failure message journaled with the attempt is masked too.
    let failed = attempts(dir.path(), "fail-with-it");
    assert!(!failed.is_empty());
    for a in &failed {
        let m = a.message.as_deref().unwrap_or_default();
        assert!(m.contains("bad: ********"), "message: {m:?}");
    }
}

#[test]
fn a_missing_or_wrong_passphrase_runs_nothing_and_is_not_shown() {
    const PASSPHRASE: &str = "lantern-2208-fjord";
    const WRONG: &str = "lantern-2208-fjorb";
    let sshd = Sshd::start("127.0.0.65");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let key = dir.path().join("encrypted_key");
    keygen(&key, PASSPHRASE);
    let public = fs::read_to_string(key.with_extension("pub")).expect("read the public key");
    fs::write(sshd.dir().join("authorized_keys"), public).expect("write authorized_keys");
    let mut yaml = header("secrets");
    yaml.push_str("targets:\n");
    yaml.push_str(&target_with(
        "a",
        &sshd,
        &key,
        &sshd.known_hosts_path(),
        "    passphrase: { env: RUNNER_TEST_PP }\n",
        &[("ledger", ledger.display().to_string())],
    ));
    yaml.push_str(&format!(
        "steps:\n- id: one\n  on: a\n  run: {}\n",
        q("echo one >> {{ ledger }}")
    ));
    let pb = write_playbook(dir.path(), &yaml);

    // Not set: invalid input, and the message names the variable.
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 2);
    assert!(r.stderr.contains("RUNNER_TEST_PP"), "{}", show(&r));
    assert_eq!(
        r.stderr.matches("RUNNER_TEST_PP is not set").count(),
        1,
        "said once:\n{}",
        show(&r)
    );
    assert!(lines(&ledger).is_empty());
    assert!(
        !dir.path().join(".runner").exists(),
        "invalid input wrote state"
    );

    // Wrong: the login fails; the value tried is not shown anywhere.
    let r = apply(&pb, &[], &[("RUNNER_TEST_PP", WRONG)]);
    assert_exit(&r, 1);
    assert!(lines(&ledger).is_empty());
    assert!(
        !r.stdout.contains(WRONG) && !r.stderr.contains(WRONG),
        "{}",
        show(&r)
    );
    for f in files_below(&dir.path().join(".runner")) {
        let bytes = fs::read(&f).expect("read a state file");
        assert!(
            !contains_bytes(&bytes, WRONG.as_bytes()),
            "the passphrase is written in {}",
            f.display()
        );
    }

    let r = apply(&pb, &[], &[("RUNNER_TEST_PP", PASSPHRASE)]);
    assert_exit(&r, 0);
    assert_eq!(lines(&ledger), ["one"]);
}

// 10 ---------------------------------------------------------------------------------------

#[test]
fn a_session_dropped_between_steps_is_re_established() {
    let mut a = Sshd::start("127.0.0.60");
    let b = Sshd::start("127.0.0.61");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let marker = dir.path().join("holding");
    let go = dir.path().join("go");
    // `one` and `two` run on `a`; between them `hold` runs on `b` until the test has
    // restarted `a`'s sshd, which kills the session the runner cached for `a` after `one`.
    let vars = vec![
        ("ledger", ledger.display().to_string()),
        ("marker", marker.display().to_string()),
        ("hold", wait_in_shell_for(&go)),
    ];
    let mut yaml = header("reconnect");
    yaml.push_str("targets:\n");
    yaml.push_str(&target("a", &a, &vars));
    yaml.push_str(&target("b", &b, &vars));
    yaml.push_str(&format!(
        "steps:\n\
         - id: one\n  on: a\n  run: {}\n\
         - id: hold\n  on: b\n  run: {}\n\
         - id: two\n  on: a\n  run: {}\n",
        // The parent of runner's wrapper ($PPID) is the sshd process of the connection the
        // command came through.
        q("echo one $(cut -d' ' -f4 /proc/$PPID/stat) >> {{ ledger }}"),
        q("touch {{ marker }}; {{ hold }}"),
        q("echo two $(cut -d' ' -f4 /proc/$PPID/stat) >> {{ ledger }}"),
    ));
    let pb = write_playbook(dir.path(), &yaml);

    let mut run = Background::start(&["apply", &pb.display().to_string()], dir.path(), &[]);
    wait_for_file(&marker, &mut run);
    a.restart();
    fs::write(&go, b"").expect("create the go file");
    let status = run.wait();
    assert_eq!(status.code(), Some(0), "{}", run.output());

    let l = lines(&ledger);
    assert_eq!(l.len(), 2, "{l:?}");
    let one: u32 = l[0].strip_prefix("one ").unwrap().parse().unwrap();
    let two: u32 = l[1].strip_prefix("two ").unwrap().parse().unwrap();
    assert!(
        !process_running(one),
        "the first connection's sshd process {one} is gone"
    );
    assert_ne!(one, two, "`two` came through a new connection");
    assert_eq!(attempts(dir.path(), "two").len(), 1, "one attempt sufficed");
}

// 11 ---------------------------------------------------------------------------------------

#[test]
fn a_manual_step_without_a_terminal_waits_for_runner_mark() {
    let sshd = Sshd::start("127.0.0.62");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let mut yaml = header("manual");
    yaml.push_str("vars:\n  label: NIGHT-1\ntargets:\n");
    yaml.push_str(&target(
        "a",
        &sshd,
        &[("ledger", ledger.display().to_string())],
    ));
    yaml.push_str(&format!(
        "steps:\n\
         - id: one\n  on: a\n  run: {}\n\
         - id: swap-disk\n  manual: {}\n\
         - id: three\n  on: a\n  run: {}\n",
        q("echo one >> {{ ledger }}"),
        q("Plug the backup disk labelled {{ label }} into the server."),
        q("echo three >> {{ ledger }}"),
    ));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 5);
    assert!(
        r.stderr
            .contains("Plug the backup disk labelled NIGHT-1 into the server."),
        "the instructions are in the message:\n{}",
        show(&r)
    );
    assert!(
        r.stderr.contains("runner mark") && r.stderr.contains("swap-disk done"),
        "{}",
        show(&r)
    );
    assert_eq!(lines(&ledger), ["one"]);

    let m = runner(&["mark", &pb_s, "swap-disk", "done"], dir.path(), &[]);
    assert_exit(&m, 0);

    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 0);
    assert_eq!(lines(&ledger), ["one", "three"], "{}", show(&r));
    let conn = db(dir.path());
    let marks: i64 = conn
        .query_row(
            "SELECT count(*) FROM marks WHERE step_id = 'swap-disk' AND mark = 'done'",
            [],
            |r| r.get(0),
        )
        .expect("count marks");
    assert_eq!(marks, 1);
}

// 12 ---------------------------------------------------------------------------------------

#[test]
fn json_output_is_one_event_per_line_ending_in_run_finished() {
    let sshd = Sshd::start("127.0.0.63");
    let dir = workdir();
    let mut yaml = header("json");
    yaml.push_str("targets:\n");
    yaml.push_str(&target("a", &sshd, &[]));
    yaml.push_str(&format!(
        "steps:\n\
         - id: hello\n  on: a\n  run: {}\n\
         - id: bye\n  on: a\n  run: 'true'\n",
        q("echo hello from {{ target.name }}"),
    ));
    let pb = write_playbook(dir.path(), &yaml);

    let r = apply(&pb, &["--json"], &[]);
    assert_exit(&r, 0);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", show(&r)))
        })
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| {
            e.get("event")
                .and_then(|k| k.as_str())
                .unwrap_or_else(|| panic!("no `event` field: {e}"))
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    let last = events.last().unwrap();
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["outcome"], "succeeded");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "output" && e["step"] == "hello" && e["line"] == "hello from a"),
        "the command's output is an event:\n{}",
        r.stdout
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "step_finished").count(),
        2,
        "{kinds:?}"
    );
}

// Safety under real conditions: rollback and in-doubt pairs, secrets of finished targets ------

/// A local target named `here`.
fn local_target() -> &'static str {
    "  here:\n    transport: local\n"
}

/// An ssh target that is never reached in the test (nothing listens on port 1), with a
/// password read from `secret`.
fn unreachable_target(name: &str, secret: &str) -> String {
    format!(
        "  {name}:\n    transport: ssh\n    host: 127.0.0.1\n    port: 1\n    user: nobody\n    password: {secret}\n"
    )
}

#[test]
fn rollback_stops_at_an_in_doubt_pair_and_names_the_mark_command() {
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let rb = dir.path().join("rollback-ledger");
    let started = dir.path().join("started");
    let go = dir.path().join("go");
    let mut yaml = header("in doubt rollback");
    yaml.push_str("targets:\n");
    yaml.push_str(local_target());
    yaml.push_str(&format!(
        "steps:\n\
         - id: s1\n  on: here\n  run: {}\n  rollback: {}\n\
         - id: s2\n  on: here\n  run: {}\n  rollback: {}\n",
        q(&format!("echo s1 >> {}", ledger.display())),
        q(&format!("echo undo-s1 >> {}", rb.display())),
        // s2 does its work, then the runner is killed before it can record the success.
        q(&format!(
            "echo s2 >> {l}; touch {s}; {w}",
            l = ledger.display(),
            s = started.display(),
            w = wait_in_shell_for(&go)
        )),
        q(&format!("echo undo-s2 >> {}", rb.display())),
    ));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();
    let mut bg = Background::start(&["apply", &pb_s], dir.path(), &[]);
    wait_for_file(&started, &mut bg);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(bg.pid() as libc::pid_t, libc::SIGKILL) };
    bg.wait();
    fs::write(&go, b"").expect("let the orphaned command end");
    assert_eq!(lines(&ledger), ["s1", "s2"]);

    // s2 is in doubt: the rollback undoes nothing and says what to decide first.
    let r = runner(&["rollback", &pb_s, "--yes"], dir.path(), &[]);
    assert_exit(&r, 1);
    assert!(lines(&rb).is_empty(), "nothing is undone:\n{}", show(&r));
    assert!(
        r.stderr
            .contains(&format!("runner mark {pb_s} s2@here done")),
        "the message names the command that decides about s2:\n{}",
        show(&r)
    );
    assert!(r.stderr.contains("--include-in-doubt"), "{}", show(&r));
    assert!(attempts_of_kind(dir.path(), "s1", "rollback").is_empty());

    // Told explicitly, the rollback undoes the in-doubt pair too, last started first.
    let r = runner(
        &["rollback", &pb_s, "--yes", "--include-in-doubt"],
        dir.path(),
        &[],
    );
    assert_exit(&r, 0);
    assert_eq!(lines(&rb), ["undo-s2", "undo-s1"], "{}", show(&r));
    assert_eq!(
        attempts_of_kind(dir.path(), "s2", "rollback"),
        [("here".to_string(), "succeeded".to_string())]
    );
}

#[test]
fn rollback_to_a_step_behind_a_point_of_no_return_says_it_cannot() {
    let dir = workdir();
    let rb = dir.path().join("rollback-ledger");
    let mut yaml = header("point of no return");
    yaml.push_str("targets:\n");
    yaml.push_str(local_target());
    yaml.push_str(&format!(
        "steps:\n\
         - id: one\n  on: here\n  run: 'true'\n  rollback: {}\n\
         - id: two\n  on: here\n  point_of_no_return: true\n  run: 'true'\n  rollback: {}\n",
        q(&format!("echo undo-one >> {}", rb.display())),
        q(&format!("echo undo-two >> {}", rb.display())),
    ));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();
    assert_exit(&apply(&pb, &[], &[]), 0);

    let r = runner(
        &["rollback", &pb_s, "--yes", "--to", "one"],
        dir.path(),
        &[],
    );
    assert_exit(&r, 2);
    assert!(lines(&rb).is_empty(), "{}", show(&r));
    assert!(
        r.stderr.contains("point of no return `two`") && !r.stdout.contains("Nothing to roll back"),
        "the message says the point of no return stops it:\n{}",
        show(&r)
    );
}

#[test]
fn secrets_of_targets_with_no_work_left_are_still_masked() {
    const PASSWORD: &str = "Quartz-5512-heron-Mellow";
    let dir = workdir();
    let mut yaml = header("finished target secrets");
    yaml.push_str("targets:\n");
    yaml.push_str(&unreachable_target("db", "{ env: RUNNER_TEST_DB_PW }"));
    yaml.push_str(local_target());
    // The local commands repeat the database password (they inherit the environment).
    yaml.push_str(&format!(
        "steps:\n\
         - id: set-db-password\n  on: db\n  run: 'true'\n\
         - id: show\n  on: here\n  run: {}\n  rollback: {}\n\
         - id: fail\n  on: here\n  run: {}\n",
        q("printf 'pw=%s\\n' \"$RUNNER_TEST_DB_PW\""),
        q("printf 'undo pw=%s\\n' \"$RUNNER_TEST_DB_PW\""),
        q("printf 'bad pw=%s\\n' \"$RUNNER_TEST_DB_PW\"; exit 3"),
    ));
    let pb = write_playbook(dir.path(), &yaml);
    let pb_s = pb.display().to_string();
    let env = [("RUNNER_TEST_DB_PW", PASSWORD)];
    // The database step is done: `db` has no work left.
    let r = runner(
        &["mark", &pb_s, "set-db-password@db", "done"],
        dir.path(),
        &env,
    );
    assert_exit(&r, 0);

    let first = apply(&pb, &[], &env);
    assert_exit(&first, 1);
    assert!(first.stdout.contains("pw=********"), "{}", show(&first));
    let json = apply(&pb, &["--json"], &env);
    assert_exit(&json, 1);
    let rollback = runner(&["rollback", &pb_s, "--yes"], dir.path(), &env);
    assert_exit(&rollback, 0);
    assert!(
        rollback.stdout.contains("undo pw=********"),
        "{}",
        show(&rollback)
    );
    let mut shown = vec![
        ("apply", first),
        ("apply --json", json),
        ("rollback", rollback),
    ];
    for format in ["text", "json"] {
        shown.push((
            "status",
            runner(&["status", &pb_s, "--format", format], dir.path(), &env),
        ));
    }
    for format in ["markdown", "html", "json"] {
        shown.push((
            "report",
            runner(&["report", &pb_s, "--format", format], dir.path(), &env),
        ));
    }
    for (what, r) in &shown {
        assert!(
            !r.stdout.contains(PASSWORD) && !r.stderr.contains(PASSWORD),
            "the password leaked into {what}:\n{}",
            show(r)
        );
    }
    for f in files_below(&dir.path().join(".runner")) {
        let bytes = fs::read(&f).expect("read a state file");
        assert!(
            !contains_bytes(&bytes, PASSWORD.as_bytes()),
            "the password is written in {}",
            f.display()
        );
    }
    for a in attempts(dir.path(), "fail") {
        let m = a.message.unwrap_or_default();
        assert!(!m.contains(PASSWORD), "journal message: {m:?}");
    }
    // A missing secret of a target with no work left is not an error.
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(r.stderr.contains("step `fail` failed"), "{}", show(&r));
}

#[test]
fn every_line_of_a_multi_line_secret_is_masked() {
    let dir = workdir();
    let first = "Ledger-first-line-7731";
    let second = "  Ledger-second-line-4408";
    fs::write(dir.path().join("db.pw"), format!("{first}\n{second}\nab\n")).expect("secret file");
    let mut yaml = header("multi-line secret");
    yaml.push_str("targets:\n");
    yaml.push_str(local_target());
    yaml.push_str(&unreachable_target("db", "{ file: db.pw }"));
    // The local step prints the secret file, line by line, then the unreachable target fails.
    yaml.push_str(
        "steps:\n\
         - id: show\n  on: here\n  run: 'cat db.pw'\n\
         - id: use-db\n  on: db\n  run: 'true'\n",
    );
    let pb = write_playbook(dir.path(), &yaml);
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    for line in [first, second.trim()] {
        assert!(
            !r.stdout.contains(line),
            "a line of the secret leaked:\n{}",
            show(&r)
        );
        for f in files_below(&dir.path().join(".runner")) {
            let bytes = fs::read(&f).expect("read a state file");
            assert!(
                !contains_bytes(&bytes, line.as_bytes()),
                "a line of the secret is written in {}",
                f.display()
            );
        }
    }
    assert!(r.stdout.contains("show@here | ********"), "{}", show(&r));
    // Lines shorter than four characters are not masked (documented): they are too common.
    assert!(r.stdout.contains("show@here | ab"), "{}", show(&r));
}

#[test]
fn a_state_folder_that_cannot_be_used_is_invalid_input_naming_the_path() {
    let dir = workdir();
    let mut yaml = header("state folder");
    yaml.push_str("targets:\n");
    yaml.push_str(local_target());
    yaml.push_str("steps:\n- id: one\n  on: here\n  run: 'true'\n");
    let pb = write_playbook(dir.path(), &yaml);
    let state = dir.path().join(".runner");
    // A file where the folder should be, then a symbolic link to nowhere.
    fs::write(&state, b"not a folder").expect("write a file");
    for (what, command) in [
        ("apply", vec!["apply"]),
        ("rollback", vec!["rollback", "--yes"]),
    ] {
        let mut args = command.clone();
        let pb_s = pb.display().to_string();
        args.insert(1, &pb_s);
        let r = runner(&args, dir.path(), &[]);
        assert_exit(&r, 2);
        assert!(
            r.stderr.contains(&state.display().to_string()) && !r.stderr.contains("wait for it"),
            "{what} names the path and does not say to wait:\n{}",
            show(&r)
        );
    }
    fs::remove_file(&state).expect("remove the file");
    std::os::unix::fs::symlink(dir.path().join("gone").join("state"), &state).expect("symlink");
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 2);
    assert!(
        r.stderr.contains(&state.display().to_string()) && r.stderr.contains("symbolic link"),
        "{}",
        show(&r)
    );
    // A folder where the journal file should be.
    fs::remove_file(&state).expect("remove the symlink");
    fs::create_dir_all(journal_path(dir.path())).expect("a folder in the journal's place");
    let pb_s = pb.display().to_string();
    for args in [vec!["apply", pb_s.as_str()], vec!["status", pb_s.as_str()]] {
        let r = runner(&args, dir.path(), &[]);
        assert_exit(&r, 2);
        assert!(
            r.stderr.contains("cutover.db") && r.stderr.contains("--state"),
            "{args:?} names the path and what to do:\n{}",
            show(&r)
        );
    }
}

#[test]
fn a_state_folder_without_write_permission_is_invalid_input_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Root may write anywhere, so the runner runs as `nobody` (uid 65534) here: the tests run
    // as root (README), which may switch to any user.
    let dir = workdir();
    let mut yaml = header("read-only state");
    yaml.push_str("targets:\n");
    yaml.push_str(local_target());
    yaml.push_str("steps:\n- id: one\n  on: here\n  run: 'true'\n");
    let pb = write_playbook(dir.path(), &yaml);
    let state = dir.path().join(".runner");
    fs::create_dir(&state).expect("create the state folder");
    for p in [dir.path(), state.as_path()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", &pb.display().to_string()])
        .current_dir(dir.path())
        .env_remove("RUNNER_NOW")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run runner as nobody (the tests run as root)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&state.display().to_string())
            && stderr.contains("--state")
            && !stderr.contains("wait for it"),
        "{stderr}"
    );
    assert!(
        fs::read_dir(&state).expect("read").next().is_none(),
        "nothing was written"
    );
}

// 13: identity: what makes a step, a target, a playbook and a journal the same --------------

/// A playbook with one local target, `here`, and the given steps (YAML list items).
fn local_playbook(name: &str, steps: &str) -> String {
    format!(
        "{}targets:\n  here:\n    transport: local\nsteps:\n{steps}",
        header(name)
    )
}

#[test]
fn a_renamed_step_that_was_done_is_not_run_again_silently() {
    let dir = workdir();
    let users = dir.path().join("users.ledger");
    let cache = dir.path().join("cache.ledger");
    let steps = |users_id: &str, cache_id: &str| {
        format!(
            "- id: {users_id}\n  on: here\n  run: {}\n\
             - id: {cache_id}\n  on: here\n  run: {}\n  idempotent: true\n",
            q(&format!("echo users >> {}", users.display())),
            q(&format!("echo cache >> {}", cache.display())),
        )
    };
    let pb = write_playbook(
        dir.path(),
        &local_playbook("rename", &steps("create-users", "warm-cache")),
    );
    assert_exit(&apply(&pb, &[], &[]), 0);

    write_playbook(
        dir.path(),
        &local_playbook("rename", &steps("create-ad-users", "warm-the-cache")),
    );
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains("`create-ad-users` on `here`") && r.stderr.contains("`create-users`"),
        "the message names the new and the old id:\n{}",
        show(&r)
    );
    let answer = format!("runner mark {} create-ad-users@here done", pb.display());
    assert!(
        r.stderr.contains(&answer),
        "the message gives the exact command `{answer}`:\n{}",
        show(&r)
    );
    assert!(
        !r.stderr.contains("warm-the-cache"),
        "an idempotent step is not asked about:\n{}",
        show(&r)
    );
    assert_eq!(lines(&users), ["users"], "nothing ran");
    assert_eq!(lines(&cache), ["cache"], "nothing ran");

    let pb_s = pb.display().to_string();
    let r = runner(
        &["mark", &pb_s, "create-ad-users@here", "done"],
        dir.path(),
        &[],
    );
    assert_exit(&r, 0);
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 0);
    assert_eq!(
        lines(&users),
        ["users"],
        "the renamed step did not run twice"
    );
    assert_eq!(
        lines(&cache),
        ["cache", "cache"],
        "the idempotent step simply ran"
    );
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(lines(&users), ["users"]);
}

#[test]
fn a_target_moved_to_another_host_keeps_no_old_success_until_decided() {
    let old = Sshd::start("127.0.17.1");
    let new = Sshd::start("127.0.17.2");
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let yaml = |sshd: &Sshd| {
        format!(
            "{}targets:\n{}steps:\n- id: create-users\n  on: dc\n  run: {}\n",
            header("move"),
            target("dc", sshd, &[("ledger", ledger.display().to_string())]),
            // The server's address, as sshd saw the connection.
            q("set -- $SSH_CONNECTION; echo $3 >> {{ ledger }}"),
        )
    };
    let pb = write_playbook(dir.path(), &yaml(&old));
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(lines(&ledger), ["127.0.17.1"]);

    // The IP was wrong: fix it.
    write_playbook(dir.path(), &yaml(&new));
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains("`create-users` on `dc`")
            && r.stderr.contains(&format!("127.0.17.1:{}", old.port()))
            && r.stderr.contains(&format!("127.0.17.2:{}", new.port())),
        "the message names the target and its old and new address:\n{}",
        show(&r)
    );
    let retry = format!("runner mark {} create-users@dc retry", pb.display());
    assert!(r.stderr.contains(&retry), "{}", show(&r));
    assert_eq!(lines(&ledger), ["127.0.17.1"], "nothing ran");
    // Nor is it undone on the new address.
    let pb_s = pb.display().to_string();
    let r = runner(&["rollback", &pb_s, "--yes"], dir.path(), &[]);
    assert_exit(&r, 4);
    assert!(r.stderr.contains("`create-users` on `dc`"), "{}", show(&r));

    assert_exit(
        &runner(
            &["mark", &pb_s, "create-users@dc", "retry"],
            dir.path(),
            &[],
        ),
        0,
    );
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(
        lines(&ledger),
        ["127.0.17.1", "127.0.17.2"],
        "the real server was reached"
    );
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(lines(&ledger), ["127.0.17.1", "127.0.17.2"]);
}

#[test]
fn a_journal_of_another_playbook_is_refused() {
    let dir = workdir();
    let state = dir.path().join("shared.db");
    let state_s = state.display().to_string();
    let write = |file: &str, name: &str, ledger: &str| {
        let path = dir.path().join(file);
        let steps = format!(
            "- id: s1\n  on: here\n  run: {}\n",
            q(&format!(
                "echo {name} >> {}",
                dir.path().join(ledger).display()
            ))
        );
        fs::write(&path, local_playbook(name, &steps)).expect("write a playbook");
        path
    };
    let acme = write("acme.yaml", "Acme cutover", "acme.ledger");
    let beta = write("beta.yaml", "Beta cutover", "beta.ledger");
    assert_exit(&apply(&acme, &["--state", &state_s], &[]), 0);

    let r = apply(&beta, &["--state", &state_s], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains("Acme cutover") && r.stderr.contains("Beta cutover"),
        "the message names both playbooks:\n{}",
        show(&r)
    );
    assert!(
        lines(&dir.path().join("beta.ledger")).is_empty(),
        "nothing ran"
    );
    let pb_s = beta.display().to_string();
    let r = runner(
        &["mark", &pb_s, "s1", "done", "--state", &state_s],
        dir.path(),
        &[],
    );
    assert_exit(&r, 4);
    let r = runner(&["status", &pb_s, "--state", &state_s], dir.path(), &[]);
    assert_exit(&r, 0);
    assert!(
        r.stderr.contains("belongs to the playbook `Acme cutover`"),
        "{}",
        show(&r)
    );

    assert_exit(&apply(&acme, &["--state", &state_s], &[]), 0);
    assert_eq!(lines(&dir.path().join("acme.ledger")), ["Acme cutover"]);
}

#[test]
fn a_playbook_or_journal_reached_through_a_symlink_shares_one_journal_and_lock() {
    let dir = workdir();
    let real = dir.path().join("real");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir_all(&real).expect("mkdir");
    fs::create_dir_all(&elsewhere).expect("mkdir");
    let ledger = dir.path().join("ledger");
    let marker = dir.path().join("started");
    let go = dir.path().join("go");
    let steps = format!(
        "- id: hold\n  on: here\n  run: {}\n",
        q(&format!(
            "echo hold >> {}; touch {}; {}",
            ledger.display(),
            marker.display(),
            wait_in_shell_for(&go)
        ))
    );
    let pb = write_playbook(&real, &local_playbook("symlinks", &steps));
    let link = elsewhere.join("link.yaml");
    std::os::unix::fs::symlink(&pb, &link).expect("symlink the playbook");
    let pb_s = pb.display().to_string();

    let mut first = Background::start(&["apply", &pb_s], dir.path(), &[]);
    wait_for_file(&marker, &mut first);
    let state_link = dir.path().join("state-link.db");
    std::os::unix::fs::symlink(journal_path(&real), &state_link).expect("symlink the journal");
    let state_s = state_link.display().to_string();

    let r = apply(&link, &[], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        show(&r)
    );
    let r = apply(&pb, &["--state", &state_s], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        show(&r)
    );

    fs::write(&go, b"").expect("create the go file");
    let status = first.wait();
    assert_eq!(status.code(), Some(0), "{}", first.output());
    let r = apply(&link, &[], &[]);
    assert_exit(&r, 0);
    assert!(r.stdout.contains("done in an earlier run"), "{}", show(&r));
    assert_exit(&apply(&pb, &["--state", &state_s], &[]), 0);
    assert_eq!(lines(&ledger), ["hold"], "the step ran once");
    assert!(
        !elsewhere.join(".runner").exists(),
        "no second journal beside the link"
    );
}

#[test]
fn a_journal_deleted_during_a_run_stops_it_before_anything_more_runs() {
    let dir = workdir();
    let after = dir.path().join("after.ledger");
    let journal = journal_path(dir.path());
    let steps = format!(
        "- id: wipe\n  on: here\n  run: {}\n- id: after\n  on: here\n  run: {}\n",
        q(&format!("rm -f {}", journal.display())),
        q(&format!("echo after >> {}", after.display())),
    );
    let pb = write_playbook(dir.path(), &local_playbook("deleted", &steps));
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(
        r.stderr.contains(&journal.display().to_string()) && r.stderr.contains("deleted"),
        "the message names the journal:\n{}",
        show(&r)
    );
    assert!(lines(&after).is_empty(), "nothing more ran:\n{}", show(&r));

    // The next apply does not start afresh beside the copy the run saved.
    let rescued = PathBuf::from(format!("{}.rescued", journal.display()));
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr
            .contains(&format!("mv {} {}", rescued.display(), journal.display())),
        "{}",
        show(&r)
    );
    assert!(lines(&after).is_empty(), "nothing ran:\n{}", show(&r));
    fs::rename(&rescued, &journal).expect("put the journal back");
    // `wipe` ended unrecorded: it is in doubt, and it is not idempotent.
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(r.stderr.contains("runner mark"), "{}", show(&r));
    let pb_s = pb.display().to_string();
    assert_exit(
        &runner(&["mark", &pb_s, "wipe", "done"], dir.path(), &[]),
        0,
    );
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(lines(&after), ["after"]);
}

#[test]
fn a_journal_replaced_during_the_last_step_fails_the_run() {
    let dir = workdir();
    let journal = journal_path(dir.path());
    let copy = dir.path().join("copy.db");
    // A copy of the journal put back in its place: another file under the same name.
    let steps = format!(
        "- id: restore\n  on: here\n  run: {}\n",
        q(&format!(
            "cp {j} {c} && mv {c} {j}",
            j = journal.display(),
            c = copy.display()
        )),
    );
    let pb = write_playbook(dir.path(), &local_playbook("replaced", &steps));
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 1);
    assert!(
        r.stderr.contains(&journal.display().to_string()) && r.stderr.contains("replaced"),
        "the message names the journal:\n{}",
        show(&r)
    );
}

#[test]
fn a_journal_written_before_identities_were_recorded_keeps_its_successes() {
    let dir = workdir();
    let fixture = common_cli::fixture("journal-v2");
    fs::copy(
        fixture.join("cutover.yaml"),
        dir.path().join("cutover.yaml"),
    )
    .expect("copy");
    let journal = journal_path(dir.path());
    fs::create_dir_all(journal.parent().expect("folder")).expect("mkdir");
    {
        let sql = fs::read_to_string(fixture.join("journal.sql")).expect("read the dump");
        let conn = rusqlite::Connection::open(&journal).expect("create the old journal");
        conn.execute_batch(&sql).expect("load the old journal");
    }
    let pb = dir.path().join("cutover.yaml");
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 0);
    assert!(r.stdout.contains("done in an earlier run"), "{}", show(&r));
    assert!(
        lines(&dir.path().join("ledger")).is_empty(),
        "nothing ran again"
    );
    let r = runner(&["status", &pb.display().to_string()], dir.path(), &[]);
    assert_exit(&r, 0);
}

#[test]
fn a_renamed_target_with_the_same_address_does_not_run_its_done_steps_again() {
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let yaml = |target: &str| {
        format!(
            "{}targets:\n  {target}:\n    transport: local\nsteps:\n- id: once\n  on: {target}\n  run: {}\n",
            header("target rename"),
            q(&format!("echo once >> {}", ledger.display())),
        )
    };
    let pb = write_playbook(dir.path(), &yaml("old-name"));
    assert_exit(&apply(&pb, &[], &[]), 0);
    write_playbook(dir.path(), &yaml("new-name"));
    let r = apply(&pb, &[], &[]);
    assert_exit(&r, 4);
    assert!(
        r.stderr.contains("`once` on `new-name`") && r.stderr.contains("`once` on `old-name`"),
        "{}",
        show(&r)
    );
    assert_exit(&apply(&pb, &["--accept-changed"], &[]), 0);
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(lines(&ledger), ["once"]);
}

#[test]
fn a_step_left_in_doubt_and_then_renamed_waits_for_an_operator() {
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let marker = dir.path().join("started");
    let go = dir.path().join("go");
    let yaml = |id: &str| {
        local_playbook(
            "in doubt, renamed",
            &format!(
                "- id: {id}\n  on: here\n  run: {}\n",
                q(&format!(
                    "echo users >> {}; touch {}; {}",
                    ledger.display(),
                    marker.display(),
                    wait_in_shell_for(&go)
                ))
            ),
        )
    };
    let pb = write_playbook(dir.path(), &yaml("create-users"));
    let pb_s = pb.display().to_string();
    let mut first = Background::start(&["apply", &pb_s], dir.path(), &[]);
    wait_for_file(&marker, &mut first);
    first.child.kill().expect("kill -9 the runner");
    first.wait();
    fs::write(&go, b"").expect("let a command left behind end");

    write_playbook(dir.path(), &yaml("create-ad-users"));
    for extra in [&[][..], &["--accept-changed"][..]] {
        let r = apply(&pb, extra, &[]);
        assert_exit(&r, 4);
        assert!(
            r.stderr.contains("left in doubt")
                && r.stderr
                    .contains(&format!("runner mark {pb_s} create-ad-users@here done")),
            "{}",
            show(&r)
        );
    }
    assert_eq!(lines(&ledger), ["users"], "nothing ran again");
    assert_exit(
        &runner(
            &["mark", &pb_s, "create-ad-users@here", "done"],
            dir.path(),
            &[],
        ),
        0,
    );
    assert_exit(&apply(&pb, &[], &[]), 0);
    assert_eq!(lines(&ledger), ["users"]);
}

// Journals beside this one -------------------------------------------------------------------

/// A cutover on one ssh target whose point of no return appends to `ledger`.
fn cutover_on(name: &str, sshd: &Sshd, ledger: &Path) -> String {
    let mut yaml = header(name);
    yaml.push_str("targets:\n");
    yaml.push_str(&target(
        "web",
        sshd,
        &[("ledger", ledger.display().to_string())],
    ));
    yaml.push_str(&format!(
        "steps:\n\
         - id: look\n  on: web\n  idempotent: true\n  run: {}\n\
         - id: switch\n  on: web\n  point_of_no_return: true\n  run: {}\n",
        q("true"),
        q("echo switch >> {{ ledger }}"),
    ));
    yaml
}

#[test]
fn a_copied_playbook_stops_before_touching_machines_another_journal_beside_it_changed() {
    let (a, b) = (Sshd::start("127.0.23.1"), Sshd::start("127.0.23.2"));
    let dir = workdir();
    let ledger = dir.path().join("ledger");
    let first = dir.path().join("acme.yaml");
    fs::write(&first, cutover_on("Acme", &a, &ledger)).unwrap();
    assert_exit(&apply(&first, &[], &[]), 0);
    assert_eq!(lines(&ledger), ["switch"]);

    // The same playbook copied for "another" cutover, same machine: stopped before any step.
    let copy = dir.path().join("acme-copy.yaml");
    fs::write(&copy, cutover_on("Acme again", &a, &ledger)).unwrap();
    let r = apply(&copy, &[], &[]);
    assert_exit(&r, 4);
    let identity = format!("ssh://{}@{}:{}", a.user(), a.host(), a.port());
    for want in [
        ".runner/acme.db",
        "`switch`",
        identity.as_str(),
        "target `web`",
        "--accept-changed",
        "runner apply acme.yaml",
    ] {
        assert!(r.stderr.contains(want), "{want}:\n{}", show(&r));
    }
    assert!(
        !r.stderr.contains("`look`"),
        "idempotent steps are no concern:\n{}",
        show(&r)
    );
    assert_eq!(lines(&ledger), ["switch"], "nothing ran");

    // The operator decides: it runs, and a resume of the copy is not stopped again.
    assert_exit(&apply(&copy, &["--accept-changed"], &[]), 0);
    assert_eq!(lines(&ledger), ["switch", "switch"]);
    assert_exit(&apply(&copy, &[], &[]), 0);

    // A copy for a new customer, on other machines, is not bothered.
    let other = dir.path().join("globex.yaml");
    fs::write(&other, cutover_on("Globex", &b, &ledger)).unwrap();
    let r = apply(&other, &[], &[]);
    assert_exit(&r, 0);
    assert_eq!(lines(&ledger), ["switch", "switch", "switch"]);
}
