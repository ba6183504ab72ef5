//! A run over ssh fans out, stops at a failing step, resumes, retries, times out, re-opens a
//! dropped session, waits for a manual step, speaks JSON, and holds its journal's lock.

use super::*;

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
