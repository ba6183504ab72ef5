//! Rollback undoes in reverse completion order, stops at a failing undo, a point of no return or a
//! pair in doubt, and `on_failure: rollback` undoes what succeeded.

use super::*;

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
