//! `runner apply` (and rollback, mark, trust) end to end: the real binary, real sshd servers on
//! 127.0.0.x, real journals. The targets are this same machine, so every test can look at what
//! a step really did: steps append to "ledger" files, and a ledger's lines count how often a
//! step ran.
//!
//! Synchronisation with a running runner is always by a condition (a marker file a step
//! creates, a "go" file the test creates), never by sleeping for a while.

use crate::common;
use crate::common::sshd::openssh_fingerprint;
use crate::common_cli;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::run::Run;
use crate::common::running::Running;
use crate::common::scene::{manual, step, Scene, Step};
use crate::common::{process_running, Sshd};

/// A shell loop that waits (bounded, about 60 s) until `path` exists; exit 9 if it never does,
/// so a broken test fails instead of hanging.
fn wait_in_shell_for(path: &Path) -> String {
    format!(
        "i=0; until [ -e {p} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
        p = path.display()
    )
}

fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("runner-apply-")
        .tempdir()
        .expect("create a temporary directory")
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

/// Lines of a ledger; none when the file does not exist (the step never ran).
fn lines(path: &Path) -> Vec<String> {
    match fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

fn db(dir: &Path) -> rusqlite::Connection {
    let path = journal_path(dir);
    assert!(path.exists(), "no journal at {}", path.display());
    rusqlite::Connection::open(&path).expect("open the journal")
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

/// Waits until `path` exists; fails at once if the runner ends first.
fn wait_for_file(path: &Path, runner: &mut Running) {
    runner.wait_while_running(&format!("{} to appear", path.display()), || path.exists());
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

/// Succeeded run attempts, one per target.
fn succeeded_on<'a>(targets: &[&'a str]) -> Vec<(&'a str, &'static str, &'static str)> {
    targets.iter().map(|t| (*t, "run", "succeeded")).collect()
}

#[test]
fn full_apply_fans_out_over_three_hosts_and_a_second_apply_runs_nothing() {
    let mut scene = Scene::new("fan-out").top("groups:\n  all: [a, b, c]\n");
    for (name, ip) in [
        ("a", "127.0.0.41"),
        ("b", "127.0.0.42"),
        ("c", "127.0.0.43"),
    ] {
        scene = scene
            .ssh(name, ip)
            .var(name, "ledger", &format!("{{dir}}/ledger-{name}"));
    }
    let scene = scene.steps([
        step("prepare", "a", "echo prepare >> {{ ledger }}"),
        step(
            "everywhere",
            "all",
            "echo everywhere on {{ target.name }} >> {{ ledger }}",
        ),
        step("finish", "c", "echo finish >> {{ ledger }}"),
    ]);
    let expected = [
        vec!["prepare", "everywhere on a"],
        vec!["everywhere on b"],
        vec!["everywhere on c", "finish"],
    ];
    // The second apply finds everything done: the same attempts, the same ledgers.
    for (round, what) in [(1, "the first apply"), (2, "the second apply")] {
        let r = scene
            .apply()
            .expect_exit(0)
            .expect_journal("prepare", &succeeded_on(&["a"]))
            .expect_journal("everywhere", &succeeded_on(&["a", "b", "c"]))
            .expect_journal("finish", &succeeded_on(&["c"]))
            .run();
        for (name, want) in ["a", "b", "c"].iter().zip(&expected) {
            assert_eq!(
                &scene.lines(&format!("ledger-{name}")),
                want,
                "ledger of {name} after {what} (round {round})\n{}",
                r.show()
            );
        }
    }
}

// 2 ----------------------------------------------------------------------------------------

#[test]
fn a_failing_step_stops_the_run_and_a_fixed_playbook_resumes_from_it() {
    // `b` and `c` finish only after the runner has recorded `a`'s failure (its note in the
    // run log): they were still in flight when `a` failed.
    let failure_seen = "i=0; until grep -qs 'is not one of the ok codes' {dir}/.runner/runs/cutover/*/risky@a.log; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done";
    let mut scene = Scene::new("failure and resume").top("groups:\n  all: [a, b, c]\n");
    for (name, ip) in [
        ("a", "127.0.0.44"),
        ("b", "127.0.0.45"),
        ("c", "127.0.0.46"),
    ] {
        let risky = if name == "a" { "exit 3" } else { failure_seen };
        scene = scene
            .ssh(name, ip)
            .var(name, "ledger", &format!("{{dir}}/ledger-{name}"))
            .var(name, "risky", risky);
    }
    let scene = scene.steps([
        step("first", "all", "echo first >> {{ ledger }}"),
        step(
            "risky",
            "all",
            "echo risky-start >> {{ ledger }}; {{ risky }}; echo risky-end >> {{ ledger }}",
        ),
        step("after", "all", "echo after >> {{ ledger }}"),
    ]);

    let r = scene
        .apply()
        .expect_exit(1)
        // Only `a` failed, its siblings completed.
        .expect_stderr_contains("`risky` failed on 1 target")
        .expect_stderr_contains("exit code 3")
        // The progress line says it once and plainly.
        .expect_stdout_contains("FAILED run risky on a: exit code 3 is not one of the ok codes")
        .expect_journal("first", &succeeded_on(&["a", "b", "c"]))
        .expect_journal(
            "risky",
            &[
                ("a", "run", "failed"),
                ("b", "run", "succeeded"),
                ("c", "run", "succeeded"),
            ],
        )
        // No later step starts.
        .expect_journal("after", &[])
        .run();
    assert_eq!(scene.lines("ledger-a"), ["first", "risky-start"]);
    for n in ["b", "c"] {
        assert_eq!(
            scene.lines(&format!("ledger-{n}")),
            ["first", "risky-start", "risky-end"],
            "{n} completed its part of the failed step\n{}",
            r.show()
        );
    }
    let risky: Vec<_> = scene
        .attempts("risky")
        .into_iter()
        .map(|a| (a.target, a.state, a.exit_code))
        .collect();
    assert!(risky.contains(&("a".into(), "failed".into(), Some(3))));
    assert!(risky.contains(&("b".into(), "succeeded".into(), Some(0))));

    // The fix changes `risky` on `a` only: a step that never succeeded there is not a
    // "changed" step, it simply runs; on `b` and `c` its rendering is what succeeded.
    let scene = scene.var("a", "risky", "true");
    let r = scene
        .apply()
        .expect_exit(0)
        // Earlier steps are not run again.
        .expect_journal("first", &succeeded_on(&["a", "b", "c"]))
        .expect_journal(
            "risky",
            &[
                ("a", "run", "failed"),
                ("a", "run", "succeeded"),
                ("b", "run", "succeeded"),
                ("c", "run", "succeeded"),
            ],
        )
        .expect_journal("after", &succeeded_on(&["a", "b", "c"]))
        .run();
    assert_eq!(
        scene.lines("ledger-a"),
        ["first", "risky-start", "risky-start", "risky-end", "after"],
        "{}",
        r.show()
    );
    for n in ["b", "c"] {
        assert_eq!(
            scene.lines(&format!("ledger-{n}")),
            ["first", "risky-start", "risky-end", "after"],
            "on {n} only the later step ran\n{}",
            r.show()
        );
    }
}

// 3 ----------------------------------------------------------------------------------------

#[test]
fn retries_run_a_step_again_and_number_the_attempts() {
    let scene = Scene::new("retries")
        .ssh("a", "127.0.0.47")
        .var("a", "ledger", "{dir}/ledger")
        .var("a", "counter", "{dir}/counter")
        .steps([
            step(
                "flaky",
                "a",
                "n=$(cat {{ counter }} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {{ counter }}; echo flaky-$n >> {{ ledger }}; [ $n -ge 3 ]",
            )
            .key("retries", "2"),
            step("stubborn", "a", "echo stubborn >> {{ ledger }}; exit 5").key("retries", "1"),
        ]);

    let r = scene
        .apply()
        .expect_exit(1)
        .expect_journal(
            "flaky",
            &[
                ("a", "run", "failed"),
                ("a", "run", "failed"),
                ("a", "run", "succeeded"),
            ],
        )
        .expect_journal(
            "stubborn",
            &[("a", "run", "failed"), ("a", "run", "failed")],
        )
        .run();
    let flaky: Vec<_> = scene
        .attempts("flaky")
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
        r.show()
    );
    let stubborn: Vec<_> = scene
        .attempts("stubborn")
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
        scene.lines("ledger"),
        ["flaky-1", "flaky-2", "flaky-3", "stubborn", "stubborn"]
    );

    // Attempt numbers keep counting across a resume; a success is not run again.
    scene
        .apply()
        .expect_exit(1)
        .expect_journal(
            "flaky",
            &[
                ("a", "run", "failed"),
                ("a", "run", "failed"),
                ("a", "run", "succeeded"),
            ],
        )
        .run();
    let numbers: Vec<i64> = scene
        .attempts("stubborn")
        .into_iter()
        .map(|a| a.number)
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
}

// 4 ----------------------------------------------------------------------------------------

#[test]
fn a_timeout_stops_the_remote_command() {
    let scene = Scene::new("timeout")
        .ssh("a", "127.0.0.48")
        .var("a", "shell_pid", "{dir}/shell.pid")
        .var("a", "sleep_pid", "{dir}/sleep.pid")
        .step(
            step(
                "slow",
                "a",
                "echo $$ > {{ shell_pid }}; sleep 60 & echo $! > {{ sleep_pid }}; wait",
            )
            .key("timeout", "2s"),
        );

    scene
        .apply()
        .expect_exit(1)
        .expect_stderr_contains("timed out")
        .expect_journal("slow", &[("a", "run", "timed_out")])
        .run();
    for file in ["shell.pid", "sleep.pid"] {
        let pid = common::read_pid(scene.dir(), file);
        assert!(
            !process_running(pid),
            "process {pid} ({file}) still runs after the timeout"
        );
    }
}

// 5 ----------------------------------------------------------------------------------------

const NOON: &str = "2026-03-10T12:00:00Z";

/// Business hours every day 08:00 to 18:00 UTC.
fn window_scene(ip: &str, when_closed: &str, migrate: Step) -> Scene {
    Scene::new("window")
        .window(&format!(
            "window:\n  timezone: UTC\n  business_hours:\n    - {{ days: mon-sun, from: \"08:00\", to: \"18:00\" }}\n  when_closed: {when_closed}\n"
        ))
        .ssh("a", ip)
        .var("a", "ledger", "{dir}/ledger")
        .step(migrate.key("estimate", "10m"))
}

fn migrate() -> Step {
    step("migrate", "a", "echo migrate >> {{ ledger }}")
}

#[test]
fn the_window_stops_apply_and_an_override_is_journaled_with_its_reason() {
    let scene = window_scene("127.0.0.49", "stop", migrate());

    scene
        .apply()
        .env("RUNNER_NOW", NOON)
        .expect_exit(3)
        // The message says when the step may start.
        .expect_stderr_contains("may start Tue 10 Mar 2026 18:00")
        .expect_journal("migrate", &[])
        .run();
    assert!(
        scene.lines("ledger").is_empty(),
        "nothing may run in business hours"
    );
    assert_eq!(events(scene.dir(), "stopped").len(), 1);

    let reason = "customer approved the outage, ticket 4711";
    scene
        .apply_with(&["--override-window-all", "--reason", reason])
        .env("RUNNER_NOW", NOON)
        .expect_exit(0)
        .expect_journal("migrate", &[("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["migrate"]);
    let overrides = events(scene.dir(), "override");
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert_eq!(overrides[0].0.as_deref(), Some("migrate"));
    assert!(
        overrides[0].1.contains(reason),
        "the override records why: {overrides:?}"
    );
}

#[test]
fn when_closed_wait_waits_for_the_end_of_business_hours() {
    let scene = window_scene("127.0.0.50", "wait", migrate());
    // Two seconds before business hours end; the shifted clock advances in real time, so
    // apply waits about two seconds.
    scene
        .apply()
        .env("RUNNER_NOW", "2026-03-10T17:59:58Z")
        .expect_exit(0)
        .expect_journal("migrate", &[("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["migrate"]);
    let waited = events(scene.dir(), "waited");
    assert_eq!(waited.len(), 1, "{waited:?}");
    assert!(waited[0].1.contains("18:00"), "{waited:?}");
    let conn = db(scene.dir());
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
    let scene = window_scene(
        "127.0.0.51",
        "stop",
        migrate().key("business_hours", "allow"),
    );
    scene
        .apply()
        .env("RUNNER_NOW", NOON)
        .expect_exit(0)
        .expect_journal("migrate", &[("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["migrate"]);
    assert!(events(scene.dir(), "stopped").is_empty());
    assert!(events(scene.dir(), "override").is_empty());
}

// 6 ----------------------------------------------------------------------------------------

/// Succeeded rollback attempts, one per target.
fn undone_on<'a>(targets: &[&'a str]) -> Vec<(&'a str, &'static str, &'static str)> {
    targets
        .iter()
        .map(|t| (*t, "rollback", "succeeded"))
        .collect()
}

#[test]
fn rollback_undoes_in_reverse_completion_order_and_stops_at_a_point_of_no_return() {
    // On `a`, step `three` ends only after `b`'s attempt of it is recorded as finished, so
    // `b` completes first although `a` is listed first.
    let after_b = "i=0; until grep -qsF '\"event\":\"attempt_finished\",\"step\":\"three\",\"target\":\"b\"' {dir}/.runner/runs/cutover/*/events.jsonl; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done";
    let mut scene = Scene::new("rollback")
        .ssh("a", "127.0.0.53")
        .ssh("b", "127.0.0.54");
    for (name, wait) in [("a", after_b), ("b", "true")] {
        scene = scene
            .var(name, "ledger", "{dir}/ledger")
            .var(name, "rb", "{dir}/rollback-ledger")
            .var(name, "before_three", wait);
    }
    let scene = scene.steps([
        step("one", "a", "echo one >> {{ ledger }}").text("rollback", "echo undo-one >> {{ rb }}"),
        step("two", "a", "echo two >> {{ ledger }}")
            .key("point_of_no_return", "true")
            .text("rollback", "echo undo-two >> {{ rb }}"),
        step(
            "three",
            "[a, b]",
            "{{ before_three }}; echo three-{{ target.name }} >> {{ ledger }}",
        )
        .text("rollback", "echo undo-three-{{ target.name }} >> {{ rb }}"),
        step("four", "b", "echo four >> {{ ledger }}")
            .text("rollback", "echo undo-four >> {{ rb }}"),
    ]);

    let r = scene.apply().expect_exit(0).run();
    assert_eq!(
        scene.lines("ledger"),
        ["one", "two", "three-b", "three-a", "four"],
        "{}",
        r.show()
    );

    // Without a terminal a rollback needs --yes; nothing is undone without confirmation.
    scene
        .run(["rollback", "cutover.yaml"])
        .expect_exit(2)
        .expect_stderr_contains("--yes")
        .expect_journal("four", &succeeded_on(&["b"]))
        .run();
    assert!(scene.lines("rollback-ledger").is_empty());

    // --to three: only the steps after `three`.
    let r = scene
        .run(["rollback", "cutover.yaml", "--yes", "--to", "three"])
        .expect_exit(0)
        .expect_journal("three", &succeeded_on(&["a", "b"]))
        .run();
    assert_eq!(
        scene.lines("rollback-ledger"),
        ["undo-four"],
        "{}",
        r.show()
    );

    // The rest: reverse completion order, stopping before the point of no return `two`.
    let r = scene
        .run(["rollback", "cutover.yaml", "--yes"])
        .expect_exit(0)
        .expect_journal("one", &succeeded_on(&["a"]))
        .expect_journal("two", &succeeded_on(&["a"]))
        .expect_journal(
            "three",
            &[succeeded_on(&["a", "b"]), undone_on(&["a", "b"])].concat(),
        )
        .expect_journal("four", &[succeeded_on(&["b"]), undone_on(&["b"])].concat())
        .run();
    assert_eq!(
        scene.lines("rollback-ledger"),
        ["undo-four", "undo-three-a", "undo-three-b"],
        "{}",
        r.show()
    );
    assert!(
        r.said().contains("point of no return `two`"),
        "the rollback says where it stopped:\n{}",
        r.show()
    );

    // Nothing left to undo before the point of no return; nothing is undone twice.
    let r = scene
        .run(["rollback", "cutover.yaml", "--yes"])
        .expect_exit(0)
        .expect_journal("four", &[succeeded_on(&["b"]), undone_on(&["b"])].concat())
        .run();
    assert_eq!(scene.lines("rollback-ledger").len(), 3, "{}", r.show());
}

#[test]
fn a_failing_rollback_command_stops_the_rollback() {
    let scene = Scene::new("failing rollback")
        .ssh("a", "127.0.0.55")
        .var("a", "rb", "{dir}/rollback-ledger")
        .steps([
            step("one", "a", "true").text("rollback", "echo undo-one >> {{ rb }}"),
            step("two", "a", "true").text("rollback", "echo undo-two >> {{ rb }}; exit 7"),
            step("three", "a", "true").text("rollback", "echo undo-three >> {{ rb }}"),
        ]);
    scene.apply().expect_exit(0).run();

    let r = scene
        .run(["rollback", "cutover.yaml", "--yes"])
        .expect_exit(1)
        .expect_stderr_contains("rollback of `two`")
        .expect_stderr_contains("failed")
        .expect_journal("one", &succeeded_on(&["a"]))
        .expect_journal(
            "two",
            &[("a", "run", "succeeded"), ("a", "rollback", "failed")],
        )
        .expect_journal("three", &[succeeded_on(&["a"]), undone_on(&["a"])].concat())
        .run();
    assert_eq!(
        scene.lines("rollback-ledger"),
        ["undo-three", "undo-two"],
        "{}",
        r.show()
    );
    let two = scene.attempts("two");
    let rollback: Vec<_> = two.iter().filter(|a| a.kind == "rollback").collect();
    assert_eq!(rollback[0].exit_code, Some(7));
}

#[test]
fn on_failure_rollback_undoes_what_succeeded_after_a_failed_step() {
    let scene = Scene::new("automatic rollback")
        .top("on_failure: rollback\n")
        .ssh("a", "127.0.0.66")
        .var("a", "rb", "{dir}/rollback-ledger")
        .steps([
            step("one", "a", "true").text("rollback", "echo undo-one >> {{ rb }}"),
            step("two", "a", "true").text("rollback", "echo undo-two >> {{ rb }}"),
            step("three", "a", "exit 3").text("rollback", "echo undo-three >> {{ rb }}"),
        ]);

    let r = scene
        .apply()
        .expect_exit(1)
        .expect_stderr_contains("on_failure: rollback")
        .expect_journal("two", &[succeeded_on(&["a"]), undone_on(&["a"])].concat())
        .expect_journal("three", &[("a", "run", "failed")])
        .run();
    assert_eq!(
        scene.lines("rollback-ledger"),
        ["undo-two", "undo-one"],
        "the failed step is not undone, the others are, newest first\n{}",
        r.show()
    );
}

// 7 ----------------------------------------------------------------------------------------

#[test]
fn a_second_apply_is_refused_while_the_first_holds_the_lock() {
    let scene = Scene::new("lock")
        .ssh("a", "127.0.0.56")
        .var("a", "ledger", "{dir}/ledger")
        .var("a", "marker", "{dir}/started")
        .var("a", "hold", &wait_in_shell_for(Path::new("{dir}/go")))
        .step(step(
            "hold",
            "a",
            "echo hold >> {{ ledger }}; touch {{ marker }}; {{ hold }}",
        ));
    scene.write();

    let mut first = scene.apply().expect_exit(0).spawn();
    wait_for_file(&scene.path("started"), &mut first);
    // The message names the holder's pid.
    let holder = format!("pid {}", first.pid());
    scene
        .apply()
        .expect_exit(4)
        .expect_stderr_contains(&holder)
        .run();

    // Neither a rollback nor an operator's mark may change the state under a running apply.
    scene
        .run(["rollback", "cutover.yaml", "--yes"])
        .expect_exit(4)
        .expect_stderr_contains(&holder)
        .run();
    scene
        .run(["mark", "cutover.yaml", "hold", "done"])
        .expect_exit(4)
        .run();
    assert!(
        db(scene.dir())
            .query_row("SELECT count(*) FROM marks", [], |r| r.get::<_, i64>(0))
            .expect("count marks")
            == 0,
        "the refused mark was not recorded"
    );

    fs::write(scene.path("go"), b"").expect("create the go file");
    first.wait();
    assert_eq!(
        scene.lines("ledger"),
        ["hold"],
        "the refused commands ran nothing"
    );
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("hold", &succeeded_on(&["a"]))
        .run();
    assert_eq!(scene.lines("ledger"), ["hold"]);
}

// 8 ----------------------------------------------------------------------------------------

/// One ssh target `a` whose step `one` appends to `ledger`.
fn one_step_scene(name: &str, ip: &str) -> Scene {
    Scene::new(name)
        .ssh("a", ip)
        .var("a", "ledger", "{dir}/ledger")
        .step(step("one", "a", "echo one >> {{ ledger }}"))
}

#[test]
fn an_unknown_host_key_is_refused_until_trusted() {
    let scene = one_step_scene("host keys", "127.0.0.57");
    let known_hosts = scene.path("known_hosts");
    fs::write(&known_hosts, b"").expect("write an empty known_hosts");
    let scene = scene.known_hosts("a", &known_hosts);
    let fingerprint = openssh_fingerprint(&scene.sshd("a").host_pub_path());

    scene
        .apply()
        .expect_exit(1)
        // The message shows the fingerprint and the way out.
        .expect_stderr_contains(&fingerprint)
        .expect_stderr_contains("runner trust")
        // The attempt failed before anything ran.
        .expect_journal("one", &[("a", "run", "failed")])
        .run();
    assert!(
        scene.lines("ledger").is_empty(),
        "nothing ran on an untrusted host"
    );
    assert!(
        fs::read_to_string(&known_hosts).unwrap().is_empty(),
        "apply never writes known_hosts"
    );

    scene
        .run(["trust", "cutover.yaml", "a", "--yes"])
        .expect_exit(0)
        .expect_stdout_contains(&fingerprint)
        .run();
    let (_, b64) = scene.sshd("a").host_key();
    assert!(fs::read_to_string(&known_hosts).unwrap().contains(&b64));

    scene
        .apply()
        .expect_exit(0)
        .expect_journal("one", &[("a", "run", "failed"), ("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["one"]);
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
    let scene = one_step_scene("changed host key", ip);
    let other = scene.path("other_host_key");
    keygen_typed(&other, recorded_type, "");
    let other_pub = fs::read_to_string(other.with_extension("pub")).expect("read the other key");
    let mut fields = other_pub.split_whitespace();
    let (key_type, b64) = (fields.next().unwrap(), fields.next().unwrap());
    let known_hosts = scene.path("known_hosts");
    let sshd = scene.sshd("a");
    let recorded = format!("[{}]:{} {key_type} {b64}\n", sshd.host(), sshd.port());
    fs::write(&known_hosts, &recorded).expect("write known_hosts");
    // The server is asked for a key of the recorded type, so that is the one it presents.
    let presented = if recorded_type == "ecdsa" {
        sshd.ecdsa_host_pub_path()
    } else {
        sshd.host_pub_path()
    };
    let presented = openssh_fingerprint(&presented);
    let scene = scene.known_hosts("a", &known_hosts);

    let r = scene
        .apply()
        .expect_exit(1)
        .expect_stderr_contains(&presented)
        .expect_journal("one", &[("a", "run", "failed")])
        .run();
    assert!(scene.lines("ledger").is_empty(), "nothing ran");
    assert!(
        r.stderr.to_lowercase().contains("has changed"),
        "the message says the key changed:\n{}",
        r.show()
    );

    if recorded_type != "ed25519" {
        return;
    }
    // `trust` does not replace a recorded key either.
    scene
        .run(["trust", "cutover.yaml", "a", "--yes"])
        .expect_exit(1)
        .run();
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), recorded);
    scene
        .apply()
        .expect_exit(1)
        .expect_journal("one", &[("a", "run", "failed"), ("a", "run", "failed")])
        .run();
    assert!(scene.lines("ledger").is_empty());
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

/// `secret` is written in no file of the state folder below `dir`.
#[track_caller]
fn assert_not_in_state(dir: &Path, secret: &str) {
    for f in files_below(&dir.join(".runner")) {
        let bytes = fs::read(&f).expect("read a state file");
        assert!(
            !contains_bytes(&bytes, secret.as_bytes()),
            "a secret is written in {}",
            f.display()
        );
    }
}

/// An ssh target `a` logging in with a new key encrypted with `passphrase` (read from
/// RUNNER_TEST_PP), the only key the server accepts.
fn passphrase_scene(name: &str, ip: &str, passphrase: &str) -> Scene {
    let scene = Scene::new(name).ssh("a", ip);
    let key = scene.path("encrypted_key");
    keygen(&key, passphrase);
    let key_text = fs::read_to_string(&key).expect("read the key");
    assert!(!key_text.contains(passphrase));
    // Authorize only the encrypted key's public half: logging in proves the passphrase was used.
    let public = fs::read_to_string(key.with_extension("pub")).expect("read the public key");
    fs::write(scene.sshd("a").dir().join("authorized_keys"), public)
        .expect("write authorized_keys");
    scene
        .login_key("a", &key)
        .target_keys("a", "    passphrase: { env: RUNNER_TEST_PP }\n")
        .var("a", "ledger", "{dir}/ledger")
}

#[test]
fn a_passphrase_never_appears_in_output_journal_or_logs() {
    const PASSPHRASE: &str = "orchid-7391-zebra-Quill";
    // The commands print the passphrase without containing it.
    let (head, tail) = PASSPHRASE.split_at(9);
    let scene = passphrase_scene("secrets", "127.0.0.59", PASSPHRASE).steps([
        step(
            "echo-it",
            "a",
            &format!(
                "printf '%s%s\\n' {head} {tail}; printf 'err %s%s\\n' {head} {tail} >&2; echo ran >> {{{{ ledger }}}}"
            ),
        ),
        step(
            "fail-with-it",
            "a",
            &format!("printf 'bad: %s%s\\n' {head} {tail}; exit 3"),
        ),
    ]);
    assert!(!scene.yaml().contains(PASSPHRASE));
    let env = [("RUNNER_TEST_PP", PASSPHRASE)];

    let first = scene
        .apply()
        .envs(&env)
        .expect_exit(1)
        // The output line is shown masked.
        .expect_stdout_contains("********")
        .expect_journal("echo-it", &succeeded_on(&["a"]))
        .expect_journal("fail-with-it", &[("a", "run", "failed")])
        .run();
    assert_eq!(scene.lines("ledger"), ["ran"], "{}", first.show());
    let second = scene
        .apply_with(&["--json"])
        .envs(&env)
        .expect_exit(1)
        .run();
    let status = scene
        .run(["status", "cutover.yaml", "--format", "json"])
        .envs(&env)
        .expect_exit(0)
        .run();
    let report = scene
        .run(["report", "cutover.yaml", "--format", "json"])
        .envs(&env)
        .expect_exit(0)
        .run();
    for (what, r) in [
        ("first apply", &first),
        ("apply --json", &second),
        ("status", &status),
        ("report", &report),
    ] {
        assert!(
            !r.stdout.contains(PASSPHRASE) && !r.stderr.contains(PASSPHRASE),
            "the passphrase leaked into the output of {what}:\n{}",
            r.show()
        );
    }

    let files = files_below(&scene.path(".runner"));
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "db")));
    assert_not_in_state(scene.dir(), PASSPHRASE);
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
    let failed = scene.attempts("fail-with-it");
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
    let scene = passphrase_scene("secrets", "127.0.0.65", PASSPHRASE).step(step(
        "one",
        "a",
        "echo one >> {{ ledger }}",
    ));

    // Not set: invalid input, and the message names the variable, once; no state is written.
    let r = scene
        .apply()
        .expect_exit(2)
        .expect_stderr_contains("RUNNER_TEST_PP")
        .expect_no_journal()
        .run();
    assert_eq!(
        r.stderr.matches("RUNNER_TEST_PP is not set").count(),
        1,
        "said once:\n{}",
        r.show()
    );
    assert!(scene.lines("ledger").is_empty());

    // Wrong: the login fails; the value tried is not shown anywhere.
    scene
        .apply()
        .env("RUNNER_TEST_PP", WRONG)
        .expect_exit(1)
        .expect_stdout_lacks(WRONG)
        .expect_stderr_lacks(WRONG)
        .expect_journal("one", &[("a", "run", "failed")])
        .run();
    assert!(scene.lines("ledger").is_empty());
    assert_not_in_state(scene.dir(), WRONG);

    scene
        .apply()
        .env("RUNNER_TEST_PP", PASSPHRASE)
        .expect_exit(0)
        .expect_journal("one", &[("a", "run", "failed"), ("a", "run", "succeeded")])
        .run();
    assert_eq!(scene.lines("ledger"), ["one"]);
}

// 10 ---------------------------------------------------------------------------------------

#[test]
fn a_session_dropped_between_steps_is_re_established() {
    // `one` and `two` run on `a`; between them `hold` runs on `b` until the test has
    // restarted `a`'s sshd, which kills the session the runner cached for `a` after `one`.
    let mut scene = Scene::new("reconnect")
        .ssh("a", "127.0.0.60")
        .ssh("b", "127.0.0.61")
        .var("b", "marker", "{dir}/holding")
        .var("b", "hold", &wait_in_shell_for(Path::new("{dir}/go")))
        .var("a", "ledger", "{dir}/ledger")
        .steps([
            // The parent of runner's wrapper ($PPID) is the sshd process of the connection
            // the command came through.
            step(
                "one",
                "a",
                "echo one $(cut -d' ' -f4 /proc/$PPID/stat) >> {{ ledger }}",
            ),
            step("hold", "b", "touch {{ marker }}; {{ hold }}"),
            step(
                "two",
                "a",
                "echo two $(cut -d' ' -f4 /proc/$PPID/stat) >> {{ ledger }}",
            ),
        ]);
    scene.write();

    let mut run = scene
        .apply()
        .expect_exit(0)
        .expect_journal("two", &succeeded_on(&["a"]))
        .spawn();
    wait_for_file(&scene.path("holding"), &mut run);
    scene.sshd_mut("a").restart();
    fs::write(scene.path("go"), b"").expect("create the go file");
    run.wait();

    let l = scene.lines("ledger");
    assert_eq!(l.len(), 2, "{l:?}");
    let one: u32 = l[0].strip_prefix("one ").unwrap().parse().unwrap();
    let two: u32 = l[1].strip_prefix("two ").unwrap().parse().unwrap();
    assert!(
        !process_running(one),
        "the first connection's sshd process {one} is gone"
    );
    assert_ne!(one, two, "`two` came through a new connection");
    assert_eq!(scene.attempts("two").len(), 1, "one attempt sufficed");
}

// 11 ---------------------------------------------------------------------------------------

#[test]
fn a_manual_step_without_a_terminal_waits_for_runner_mark() {
    let scene = Scene::new("manual")
        .top("vars:\n  label: NIGHT-1\n")
        .ssh("a", "127.0.0.62")
        .var("a", "ledger", "{dir}/ledger")
        .steps([
            step("one", "a", "echo one >> {{ ledger }}"),
            manual(
                "swap-disk",
                "Plug the backup disk labelled {{ label }} into the server.",
            ),
            step("three", "a", "echo three >> {{ ledger }}"),
        ]);

    scene
        .apply()
        .expect_exit(5)
        // The instructions are in the message, and how to go on.
        .expect_stderr_contains("Plug the backup disk labelled NIGHT-1 into the server.")
        .expect_stderr_contains("runner mark")
        .expect_stderr_contains("swap-disk done")
        .expect_journal("three", &[])
        .run();
    assert_eq!(scene.lines("ledger"), ["one"]);

    scene.mark("swap-disk", "done");

    let r = scene
        .apply()
        .expect_exit(0)
        .expect_journal("one", &succeeded_on(&["a"]))
        .expect_journal("three", &succeeded_on(&["a"]))
        .run();
    assert_eq!(scene.lines("ledger"), ["one", "three"], "{}", r.show());
    let conn = db(scene.dir());
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
    let scene = Scene::new("json").ssh("a", "127.0.0.63").steps([
        step("hello", "a", "echo hello from {{ target.name }}"),
        step("bye", "a", "true"),
    ]);

    let r = scene
        .apply_with(&["--json"])
        .expect_exit(0)
        .expect_stderr("all 2 steps are done\n")
        .expect_journal("hello", &succeeded_on(&["a"]))
        .expect_journal("bye", &succeeded_on(&["a"]))
        .run();
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", r.show()))
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

/// An ssh target that is never reached in the test (nothing listens on port 1), with a
/// password read from `secret`.
fn unreachable(secret: &str) -> String {
    format!(
        "    transport: ssh\n    host: 127.0.0.1\n    port: 1\n    user: nobody\n    password: {secret}\n"
    )
}

#[test]
fn rollback_stops_at_an_in_doubt_pair_and_names_the_mark_command() {
    let scene = Scene::new("in doubt rollback").local("here").steps([
        step("s1", "here", "echo s1 >> {dir}/ledger")
            .text("rollback", "echo undo-s1 >> {dir}/rollback-ledger"),
        // s2 does its work, then the runner is killed before it can record the success.
        step(
            "s2",
            "here",
            &format!(
                "echo s2 >> {{dir}}/ledger; touch {{dir}}/started; {}",
                wait_in_shell_for(Path::new("{dir}/go"))
            ),
        )
        .text("rollback", "echo undo-s2 >> {dir}/rollback-ledger"),
    ]);
    scene.write();
    let mut bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_for_file(&scene.path("started"), &mut bg);
    bg.kill();
    bg.wait();
    fs::write(scene.path("go"), b"").expect("let the orphaned command end");
    assert_eq!(scene.lines("ledger"), ["s1", "s2"]);

    // s2 is in doubt: the rollback undoes nothing and says what to decide first: the
    // message names the command that decides about s2.
    let r = scene
        .run(["rollback", "cutover.yaml", "--yes"])
        .expect_exit(1)
        .expect_stderr_contains("runner mark cutover.yaml s2@here done")
        .expect_stderr_contains("--include-in-doubt")
        .expect_journal("s1", &succeeded_on(&["here"]))
        .expect_journal("s2", &[("here", "run", "running")])
        .run();
    assert!(
        scene.lines("rollback-ledger").is_empty(),
        "nothing is undone:\n{}",
        r.show()
    );

    // Told explicitly, the rollback undoes the in-doubt pair too, last started first.
    let r = scene
        .run(["rollback", "cutover.yaml", "--yes", "--include-in-doubt"])
        .expect_exit(0)
        .expect_journal(
            "s2",
            // The attempt the killed runner left running is closed as interrupted.
            &[
                ("here", "run", "interrupted"),
                ("here", "rollback", "succeeded"),
            ],
        )
        .expect_journal(
            "s1",
            &[succeeded_on(&["here"]), undone_on(&["here"])].concat(),
        )
        .run();
    assert_eq!(
        scene.lines("rollback-ledger"),
        ["undo-s2", "undo-s1"],
        "{}",
        r.show()
    );
}

#[test]
fn rollback_to_a_step_behind_a_point_of_no_return_says_it_cannot() {
    let scene = Scene::new("point of no return").local("here").steps([
        step("one", "here", "true").text("rollback", "echo undo-one >> {dir}/rollback-ledger"),
        step("two", "here", "true")
            .key("point_of_no_return", "true")
            .text("rollback", "echo undo-two >> {dir}/rollback-ledger"),
    ]);
    scene.apply().expect_exit(0).run();

    // The message says the point of no return stops it.
    let r = scene
        .run(["rollback", "cutover.yaml", "--yes", "--to", "one"])
        .expect_exit(2)
        .expect_stderr_contains("point of no return `two`")
        .expect_stdout_lacks("Nothing to roll back")
        .expect_journal("two", &succeeded_on(&["here"]))
        .run();
    assert!(scene.lines("rollback-ledger").is_empty(), "{}", r.show());
}

#[test]
fn secrets_of_targets_with_no_work_left_are_still_masked() {
    const PASSWORD: &str = "Quartz-5512-heron-Mellow";
    // The local commands repeat the database password (they inherit the environment).
    let scene = Scene::new("finished target secrets")
        .target("db", &unreachable("{ env: RUNNER_TEST_DB_PW }"))
        .local("here")
        .steps([
            step("set-db-password", "db", "true"),
            step("show", "here", "printf 'pw=%s\\n' \"$RUNNER_TEST_DB_PW\"")
                .text("rollback", "printf 'undo pw=%s\\n' \"$RUNNER_TEST_DB_PW\""),
            step(
                "fail",
                "here",
                "printf 'bad pw=%s\\n' \"$RUNNER_TEST_DB_PW\"; exit 3",
            ),
        ]);
    let env = [("RUNNER_TEST_DB_PW", PASSWORD)];
    // The database step is done: `db` has no work left.
    scene
        .run(["mark", "cutover.yaml", "set-db-password@db", "done"])
        .envs(&env)
        .expect_exit(0)
        .run();

    let mut shown = vec![
        (
            "apply",
            scene
                .apply()
                .envs(&env)
                .expect_exit(1)
                .expect_stdout_contains("pw=********")
                .expect_journal("set-db-password", &[])
                .expect_journal("fail", &[("here", "run", "failed")])
                .run(),
        ),
        (
            "apply --json",
            scene
                .apply_with(&["--json"])
                .envs(&env)
                .expect_exit(1)
                .run(),
        ),
        (
            "rollback",
            scene
                .run(["rollback", "cutover.yaml", "--yes"])
                .envs(&env)
                .expect_exit(0)
                .expect_stdout_contains("undo pw=********")
                .run(),
        ),
    ];
    for format in ["text", "json"] {
        let r = scene
            .run(["status", "cutover.yaml", "--format", format])
            .envs(&env)
            .expect_exit(0)
            .run();
        shown.push(("status", r));
    }
    for format in ["markdown", "html", "json"] {
        let r = scene
            .run(["report", "cutover.yaml", "--format", format])
            .envs(&env)
            .expect_exit(0)
            .run();
        shown.push(("report", r));
    }
    for (what, r) in &shown {
        assert!(
            !r.stdout.contains(PASSWORD) && !r.stderr.contains(PASSWORD),
            "the password leaked into {what}:\n{}",
            r.show()
        );
    }
    assert_not_in_state(scene.dir(), PASSWORD);
    for a in scene.attempts("fail") {
        let m = a.message.unwrap_or_default();
        assert!(!m.contains(PASSWORD), "journal message: {m:?}");
    }
    // A missing secret of a target with no work left is not an error.
    scene
        .apply()
        .expect_exit(1)
        .expect_stderr_contains("step `fail` failed")
        .run();
}

#[test]
fn every_line_of_a_multi_line_secret_is_masked() {
    let first = "Ledger-first-line-7731";
    let second = "  Ledger-second-line-4408";
    // The local step prints the secret file, line by line, then the unreachable target fails.
    let scene = Scene::new("multi-line secret")
        .local("here")
        .target("db", &unreachable("{ file: db.pw }"))
        .steps([
            step("show", "here", "cat db.pw"),
            step("use-db", "db", "true"),
        ]);
    fs::write(scene.path("db.pw"), format!("{first}\n{second}\nab\n")).expect("secret file");
    scene
        .apply()
        .expect_exit(1)
        .expect_stdout_lacks(first)
        .expect_stdout_lacks(second.trim())
        .expect_stdout_contains("show@here | ********")
        // Lines shorter than four characters are not masked (documented): they are too common.
        .expect_stdout_contains("show@here | ab")
        .expect_journal("show", &succeeded_on(&["here"]))
        .expect_journal("use-db", &[("db", "run", "failed")])
        .run();
    for line in [first, second.trim()] {
        assert_not_in_state(scene.dir(), line);
    }
}

/// One local target `here` and a step `one` that does nothing.
fn local_scene(name: &str) -> Scene {
    Scene::new(name)
        .local("here")
        .step(step("one", "here", "true"))
}

#[test]
fn a_state_folder_that_cannot_be_used_is_invalid_input_naming_the_path() {
    let scene = local_scene("state folder");
    let pb = scene.write().display().to_string();
    let state = scene.path(".runner");
    let state_s = state.display().to_string();
    // A file where the folder should be, then a symbolic link to nowhere: `apply` and
    // `rollback` name the path and do not say to wait.
    fs::write(&state, b"not a folder").expect("write a file");
    for args in [vec!["apply", &pb], vec!["rollback", &pb, "--yes"]] {
        scene
            .run(args)
            .expect_exit(2)
            .expect_stderr_contains(&state_s)
            .expect_stderr_lacks("wait for it")
            .run();
    }
    fs::remove_file(&state).expect("remove the file");
    std::os::unix::fs::symlink(scene.path("gone").join("state"), &state).expect("symlink");
    scene
        .run(["apply", &pb])
        .expect_exit(2)
        .expect_stderr_contains(&state_s)
        .expect_stderr_contains("symbolic link")
        .run();
    // A folder where the journal file should be: the message names the path and what to do.
    fs::remove_file(&state).expect("remove the symlink");
    fs::create_dir_all(scene.journal()).expect("a folder in the journal's place");
    for command in ["apply", "status"] {
        scene
            .run([command, &pb])
            .expect_exit(2)
            .expect_stderr_contains("cutover.db")
            .expect_stderr_contains("--state")
            .run();
    }
}

#[test]
fn a_state_folder_without_write_permission_is_invalid_input_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Root may write anywhere, so the runner runs as `nobody` (uid 65534) here: the tests run
    // as root (README), which may switch to any user.
    let scene = local_scene("read-only state");
    let pb = scene.write();
    let state = scene.path(".runner");
    fs::create_dir(&state).expect("create the state folder");
    for p in [scene.dir(), state.as_path()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", &pb.display().to_string()])
        .current_dir(scene.dir())
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

#[test]
fn a_renamed_step_that_was_done_is_not_run_again_silently() {
    let steps = |users_id: &str, cache_id: &str| {
        [
            step(users_id, "here", "echo users >> {dir}/users.ledger"),
            step(cache_id, "here", "echo cache >> {dir}/cache.ledger").key("idempotent", "true"),
        ]
    };
    let scene = Scene::new("rename")
        .local("here")
        .steps(steps("create-users", "warm-cache"));
    scene.apply().expect_exit(0).run();

    let scene = scene
        .without_steps()
        .steps(steps("create-ad-users", "warm-the-cache"));
    let r = scene
        .apply()
        .expect_exit(4)
        // The message names the new and the old id, and gives the exact command; an
        // idempotent step is not asked about.
        .expect_stderr_contains("`create-ad-users` on `here`")
        .expect_stderr_contains("`create-users`")
        .expect_stderr_contains("runner mark cutover.yaml create-ad-users@here done")
        .expect_stderr_lacks("warm-the-cache")
        .run();
    assert_eq!(
        scene.lines("users.ledger"),
        ["users"],
        "nothing ran\n{}",
        r.show()
    );
    assert_eq!(scene.lines("cache.ledger"), ["cache"], "nothing ran");

    scene.mark("create-ad-users@here", "done");
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("create-ad-users", &[])
        .expect_journal("warm-the-cache", &succeeded_on(&["here"]))
        .run();
    assert_eq!(
        scene.lines("users.ledger"),
        ["users"],
        "the renamed step did not run twice"
    );
    assert_eq!(
        scene.lines("cache.ledger"),
        ["cache", "cache"],
        "the idempotent step simply ran"
    );
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("users.ledger"), ["users"]);
}

#[test]
fn a_target_moved_to_another_host_keeps_no_old_success_until_decided() {
    let new = Sshd::start("127.0.17.2");
    let scene = Scene::new("move")
        .ssh("dc", "127.0.17.1")
        .var("dc", "ledger", "{dir}/ledger")
        // The server's address, as sshd saw the connection.
        .step(step(
            "create-users",
            "dc",
            "set -- $SSH_CONNECTION; echo $3 >> {{ ledger }}",
        ));
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["127.0.17.1"]);

    // The IP was wrong: fix it. The message names the target and its old and new address.
    let (old_port, new_port) = (scene.sshd("dc").port(), new.port());
    let scene = scene.ssh_to("dc", new);
    scene
        .apply()
        .expect_exit(4)
        .expect_stderr_contains("`create-users` on `dc`")
        .expect_stderr_contains(format!("127.0.17.1:{old_port}"))
        .expect_stderr_contains(format!("127.0.17.2:{new_port}"))
        .expect_stderr_contains("runner mark cutover.yaml create-users@dc retry")
        .run();
    assert_eq!(scene.lines("ledger"), ["127.0.17.1"], "nothing ran");
    // Nor is it undone on the new address.
    scene
        .run(["rollback", "cutover.yaml", "--yes"])
        .expect_exit(4)
        .expect_stderr_contains("`create-users` on `dc`")
        .run();

    scene.mark("create-users@dc", "retry");
    scene
        .apply()
        .expect_exit(0)
        .expect_journal(
            "create-users",
            &[("dc", "run", "succeeded"), ("dc", "run", "succeeded")],
        )
        .run();
    assert_eq!(
        scene.lines("ledger"),
        ["127.0.17.1", "127.0.17.2"],
        "the real server was reached"
    );
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["127.0.17.1", "127.0.17.2"]);
}

#[test]
fn a_journal_of_another_playbook_is_refused() {
    let acme = Scene::new("Acme cutover")
        .file_name("acme.yaml")
        .local("here")
        .step(step(
            "s1",
            "here",
            "echo 'Acme cutover' >> {dir}/acme.ledger",
        ));
    let state = acme.path("shared.db").display().to_string();
    acme.apply_with(&["--state", &state]).expect_exit(0).run();

    let beta = acme
        .file_name("beta.yaml")
        .name("Beta cutover")
        .without_steps()
        .step(step(
            "s1",
            "here",
            "echo 'Beta cutover' >> {dir}/beta.ledger",
        ));
    // The message names both playbooks.
    beta.apply_with(&["--state", &state])
        .expect_exit(4)
        .expect_stderr_contains("Acme cutover")
        .expect_stderr_contains("Beta cutover")
        .run();
    assert!(beta.lines("beta.ledger").is_empty(), "nothing ran");
    beta.run(["mark", "beta.yaml", "s1", "done", "--state", &state])
        .expect_exit(4)
        .run();
    beta.run(["status", "beta.yaml", "--state", &state])
        .expect_exit(0)
        .expect_stderr_contains("belongs to the playbook `Acme cutover`")
        .run();

    let acme = beta
        .file_name("acme.yaml")
        .name("Acme cutover")
        .without_steps()
        .step(step(
            "s1",
            "here",
            "echo 'Acme cutover' >> {dir}/acme.ledger",
        ));
    acme.apply_with(&["--state", &state]).expect_exit(0).run();
    assert_eq!(acme.lines("acme.ledger"), ["Acme cutover"]);
}

#[test]
fn a_playbook_or_journal_reached_through_a_symlink_shares_one_journal_and_lock() {
    let scene = Scene::new("symlinks").local("here").step(step(
        "hold",
        "here",
        &format!(
            "echo hold >> {{dir}}/ledger; touch {{dir}}/started; {}",
            wait_in_shell_for(Path::new("{dir}/go"))
        ),
    ));
    let real = scene.path("real");
    let elsewhere = scene.path("elsewhere");
    fs::create_dir_all(&real).expect("mkdir");
    fs::create_dir_all(&elsewhere).expect("mkdir");
    let pb = write_playbook(&real, &scene.yaml());
    let link = elsewhere.join("link.yaml");
    std::os::unix::fs::symlink(&pb, &link).expect("symlink the playbook");
    let (pb_s, link_s) = (pb.display().to_string(), link.display().to_string());

    let mut first = Run::at(scene.dir())
        .args(["apply", &pb_s])
        .expect_exit(0)
        .spawn();
    wait_for_file(&scene.path("started"), &mut first);
    let state_link = scene.path("state-link.db");
    std::os::unix::fs::symlink(journal_path(&real), &state_link).expect("symlink the journal");
    let state_s = state_link.display().to_string();

    let holder = format!("pid {}", first.pid());
    Run::at(scene.dir())
        .args(["apply", &link_s])
        .expect_exit(4)
        .expect_stderr_contains(&holder)
        .run();
    Run::at(scene.dir())
        .args(["apply", &pb_s, "--state", &state_s])
        .expect_exit(4)
        .expect_stderr_contains(&holder)
        .run();

    fs::write(scene.path("go"), b"").expect("create the go file");
    first.wait();
    Run::at(scene.dir())
        .args(["apply", &link_s])
        .expect_exit(0)
        .expect_stdout_contains("done in an earlier run")
        .run();
    Run::at(scene.dir())
        .args(["apply", &pb_s, "--state", &state_s])
        .expect_exit(0)
        .run();
    assert_eq!(scene.lines("ledger"), ["hold"], "the step ran once");
    assert!(
        !elsewhere.join(".runner").exists(),
        "no second journal beside the link"
    );
}

#[test]
fn a_journal_deleted_during_a_run_stops_it_before_anything_more_runs() {
    let scene = Scene::new("deleted").local("here").steps([
        step("wipe", "here", "rm -f {dir}/.runner/cutover.db"),
        step("after", "here", "echo after >> {dir}/after.ledger"),
    ]);
    let pb = scene.write().display().to_string();
    let journal = scene.journal();
    let journal_s = journal.display().to_string();
    // The message names the journal; nothing more runs.
    let r = scene
        .run(["apply", &pb])
        .expect_exit(1)
        .expect_stderr_contains(&journal_s)
        .expect_stderr_contains("deleted")
        .run();
    assert!(scene.lines("after.ledger").is_empty(), "{}", r.show());

    // The next apply does not start afresh beside the copy the run saved.
    let rescued = PathBuf::from(format!("{journal_s}.rescued"));
    let r = scene
        .run(["apply", &pb])
        .expect_exit(4)
        .expect_stderr_contains(format!("mv {} {journal_s}", rescued.display()))
        .run();
    assert!(
        scene.lines("after.ledger").is_empty(),
        "nothing ran:\n{}",
        r.show()
    );
    fs::rename(&rescued, &journal).expect("put the journal back");
    // `wipe` ended unrecorded: it is in doubt, and it is not idempotent.
    scene
        .run(["apply", &pb])
        .expect_exit(1)
        .expect_stderr_contains("runner mark")
        .expect_journal("after", &[])
        .run();
    scene
        .run(["mark", &pb, "wipe", "done"])
        .expect_exit(0)
        .run();
    scene
        .run(["apply", &pb])
        .expect_exit(0)
        .expect_journal("after", &succeeded_on(&["here"]))
        .run();
    assert_eq!(scene.lines("after.ledger"), ["after"]);
}

#[test]
fn a_journal_replaced_during_the_last_step_fails_the_run() {
    // A copy of the journal put back in its place: another file under the same name.
    let scene = Scene::new("replaced").local("here").step(step(
        "restore",
        "here",
        "cp {dir}/.runner/cutover.db {dir}/copy.db && mv {dir}/copy.db {dir}/.runner/cutover.db",
    ));
    let pb = scene.write().display().to_string();
    // The message names the journal.
    scene
        .run(["apply", &pb])
        .expect_exit(1)
        .expect_stderr_contains(scene.journal().display().to_string())
        .expect_stderr_contains("replaced")
        .run();
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
    let pb = dir.path().join("cutover.yaml").display().to_string();
    Run::at(dir.path())
        .args(["apply", &pb])
        .expect_exit(0)
        .expect_stdout_contains("done in an earlier run")
        .run();
    assert!(
        lines(&dir.path().join("ledger")).is_empty(),
        "nothing ran again"
    );
    Run::at(dir.path())
        .args(["status", &pb])
        .expect_exit(0)
        .run();
}

#[test]
fn a_renamed_target_with_the_same_address_does_not_run_its_done_steps_again() {
    let scene = Scene::new("target rename").local("old-name").step(step(
        "once",
        "old-name",
        "echo once >> {dir}/ledger",
    ));
    scene.apply().expect_exit(0).run();
    let scene = scene
        .rename_target("old-name", "new-name")
        .without_steps()
        .step(step("once", "new-name", "echo once >> {dir}/ledger"));
    scene
        .apply()
        .expect_exit(4)
        .expect_stderr_contains("`once` on `new-name`")
        .expect_stderr_contains("`once` on `old-name`")
        .run();
    scene.apply_with(&["--accept-changed"]).expect_exit(0).run();
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["once"]);
}

#[test]
fn a_step_left_in_doubt_and_then_renamed_waits_for_an_operator() {
    let users = |id: &str| {
        step(
            id,
            "here",
            &format!(
                "echo users >> {{dir}}/ledger; touch {{dir}}/started; {}",
                wait_in_shell_for(Path::new("{dir}/go"))
            ),
        )
    };
    let scene = Scene::new("in doubt, renamed")
        .local("here")
        .step(users("create-users"));
    scene.write();
    let mut first = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_for_file(&scene.path("started"), &mut first);
    first.kill();
    first.wait();
    fs::write(scene.path("go"), b"").expect("let a command left behind end");

    let scene = scene.without_steps().step(users("create-ad-users"));
    for extra in [&[][..], &["--accept-changed"][..]] {
        scene
            .apply_with(extra)
            .expect_exit(4)
            .expect_stderr_contains("left in doubt")
            .expect_stderr_contains("runner mark cutover.yaml create-ad-users@here done")
            .run();
    }
    assert_eq!(scene.lines("ledger"), ["users"], "nothing ran again");
    scene.mark("create-ad-users@here", "done");
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("create-ad-users", &[])
        .run();
    assert_eq!(scene.lines("ledger"), ["users"]);
}

// Journals beside this one -------------------------------------------------------------------

/// A cutover on one ssh target `web` whose point of no return appends to `ledger`.
fn cutover_steps(scene: Scene) -> Scene {
    scene.var("web", "ledger", "{dir}/ledger").steps([
        step("look", "web", "true").key("idempotent", "true"),
        step("switch", "web", "echo switch >> {{ ledger }}").key("point_of_no_return", "true"),
    ])
}

#[test]
fn a_copied_playbook_stops_before_touching_machines_another_journal_beside_it_changed() {
    let b = Sshd::start("127.0.23.2");
    let scene = cutover_steps(
        Scene::new("Acme")
            .file_name("acme.yaml")
            .ssh("web", "127.0.23.1"),
    );
    scene.apply().expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["switch"]);

    // The same playbook copied for "another" cutover, same machine: stopped before any step;
    // idempotent steps are no concern.
    let scene = scene.file_name("acme-copy.yaml").name("Acme again");
    let a = scene.sshd("web");
    let identity = format!("ssh://{}@{}:{}", a.user(), a.host(), a.port());
    let mut refused = scene.apply().expect_exit(4).expect_stderr_lacks("`look`");
    for want in [
        ".runner/acme.db",
        "`switch`",
        identity.as_str(),
        "target `web`",
        "--accept-changed",
        "runner apply acme.yaml",
    ] {
        refused = refused.expect_stderr_contains(want);
    }
    refused.expect_journal("switch", &[]).run();
    assert_eq!(scene.lines("ledger"), ["switch"], "nothing ran");

    // The operator decides: it runs, and a resume of the copy is not stopped again.
    scene.apply_with(&["--accept-changed"]).expect_exit(0).run();
    assert_eq!(scene.lines("ledger"), ["switch", "switch"]);
    scene.apply().expect_exit(0).run();

    // A copy for a new customer, on other machines, is not bothered.
    let scene = scene
        .file_name("globex.yaml")
        .name("Globex")
        .ssh_to("web", b);
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("switch", &succeeded_on(&["web"]))
        .run();
    assert_eq!(scene.lines("ledger"), ["switch", "switch", "switch"]);
}
