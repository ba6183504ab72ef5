//! A step left in doubt by a SIGKILL is settled on resume: by its check, by being idempotent, or by
//! the operator's mark (done, retry, skip); a kill during the check leaves it in doubt with nothing
//! running.

use super::*;

#[test]
fn kill9_in_doubt_step_whose_check_passes_is_not_run_again() {
    let mut p = Play::new(&["127.0.3.1"]);
    let d = p.dir().display().to_string();
    // The work is done before the wait: the crash hits after it.
    let work = format!("touch {d}/copy.work; ");
    p.write([
        step("copy", "h1", &p.held("copy", &work, ""))
            .text("check", &format!("test -f {d}/copy.work")),
        p.quick("after", "h1"),
    ]);
    p.hold("copy");
    let killed = p.crash_during(&["copy"], || {});
    p.release("copy");
    assert_eq!(p.ledger("copy"), (1, 0));
    assert_eq!(p.runs_of("copy", "h1")[0].state, "running");
    assert_eq!(p.runs()[0], (None, None), "the killed run never ended");

    p.resume(&[])
        .expect_exit(0)
        .expect_stdout_contains("copy on h1 was in flight when runner stopped: check passed: done")
        .run();
    // The check decided: the step did not start again; the later step ran.
    assert_eq!(p.ledger("copy"), (1, 0));
    assert_eq!(p.ledger("after"), (1, 0));
    let runs = p.runs_of("copy", "h1");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, "interrupted");
    let why = runs[0].message.as_deref().unwrap_or_default();
    assert!(why.contains(&format!("pid {killed}")), "{why}");
    let checks: Vec<_> = p
        .attempts()
        .into_iter()
        .filter(|a| a.step == "copy" && a.kind == "check")
        .collect();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].state, "succeeded");
    let marks = p.marks();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(
        (
            marks[0].step.as_str(),
            marks[0].target.as_str(),
            marks[0].mark.as_str()
        ),
        ("copy", "h1", "done")
    );
    assert!(marks[0].user.starts_with("runner (check"), "{marks:?}");
    let runs = p.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].0.as_deref(), Some("succeeded"));
}

#[test]
fn kill9_in_doubt_step_whose_check_fails_runs_again() {
    let mut p = Play::new(&["127.0.3.2"]);
    let d = p.dir().display().to_string();
    // The work is done only after the wait, which the crash never lets it reach.
    let work = format!("touch {d}/copy.work; ");
    p.write([
        step("copy", "h1", &p.held("copy", "", &work))
            .text("check", &format!("test -f {d}/copy.work")),
        p.quick("after", "h1"),
    ]);
    p.hold("copy");
    p.crash_during(&["copy"], || {});
    p.release("copy");
    assert!(!p.file("copy.work").exists());

    p.resume(&[])
        .expect_exit(0)
        .expect_stdout_contains(
            "copy on h1 was in flight when runner stopped: check failed: run again",
        )
        .run();
    assert_eq!(p.ledger("copy"), (2, 1), "ran again, to its end");
    assert_eq!(p.ledger("after"), (1, 0));
    let states: Vec<String> = p
        .runs_of("copy", "h1")
        .into_iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, ["interrupted", "succeeded"]);
}

#[test]
fn kill9_during_the_check_leaves_the_step_in_doubt_and_no_attempt_running() {
    let mut p = Play::new(&["127.0.3.14"]);
    let d = p.dir().display().to_string();
    // The action ends at once; its check is what the runner is killed in.
    p.write([
        step("copy", "h1", &format!("echo start >> {d}/copy.ledger"))
            .text("check", &p.held("chk", "", "")),
        p.quick("after", "h1"),
    ]);
    p.hold("chk");
    p.crash_during(&["chk"], || {});
    p.release("chk");

    p.resume(&[])
        .expect_exit(0)
        .expect_stdout_contains("copy on h1 was in flight when runner stopped: check passed: done")
        .run();
    assert_eq!(p.ledger("copy"), (1, 0), "the action did not run again");
    assert_eq!(p.ledger("chk"), (2, 1), "the check ran again, to its end");
    assert_eq!(p.ledger("after"), (1, 0));
    // The dead runner's check is closed like its run: nothing stays `running` in the record.
    let attempts = p.attempts();
    assert!(
        attempts.iter().all(|a| a.state != "running"),
        "{attempts:#?}"
    );
    let checks: Vec<&str> = attempts
        .iter()
        .filter(|a| a.kind == "check")
        .map(|a| a.state.as_str())
        .collect();
    assert_eq!(checks, ["interrupted", "succeeded"]);
}

#[test]
fn kill9_in_doubt_idempotent_step_without_check_runs_again() {
    let mut p = Play::new(&["127.0.3.3"]);
    p.write([
        step("sync", "h1", &p.held("sync", "", "")).key("idempotent", "true"),
        p.quick("after", "h1"),
    ]);
    p.hold("sync");
    p.crash_during(&["sync"], || {});
    p.release("sync");

    p.resume(&[])
        .expect_exit(0)
        .expect_stdout_contains(
            "sync on h1 was in flight when runner stopped: idempotent: run again",
        )
        .run();
    assert_eq!(p.ledger("sync"), (2, 1));
    assert_eq!(p.ledger("after"), (1, 0));
    let states: Vec<String> = p
        .runs_of("sync", "h1")
        .into_iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, ["interrupted", "succeeded"]);
}

/// Crashes during `once` (no check, not idempotent) and checks that two resumes both stop for
/// an operator without starting it again. Returns the play for the operator's decision.
fn crash_and_stop_for_operator(ip: &str) -> Play {
    let mut p = Play::new(&[ip]);
    p.write([
        step("once", "h1", &p.held("once", "", "")),
        p.quick("after", "h1"),
    ]);
    p.hold("once");
    p.crash_during(&["once"], || {});
    p.release("once");

    for _ in 0..2 {
        p.resume(&[])
            .expect_exit(1)
            .expect_stderr_contains("an operator must decide about step `once`")
            .expect_stderr_contains("inspect the target")
            .expect_stderr_contains("runner mark ")
            .expect_stderr_contains("once@h1 done`")
            .expect_stderr_contains("`retry`")
            .expect_stderr_contains("`skip`")
            .run();
        assert_eq!(p.ledger("once"), (1, 0), "never started again");
        assert_eq!(p.ledger("after"), (0, 0), "nothing after it started");
    }
    p
}

#[test]
fn kill9_in_doubt_unsafe_step_waits_for_mark_done_then_continues() {
    let p = crash_and_stop_for_operator("127.0.3.4");
    p.mark("once@h1", "done");
    p.apply(&[])
        .expect_exit(0)
        .expect_stdout_contains("once on h1: marked done")
        .run();
    assert_eq!(p.ledger("once"), (1, 0));
    assert_eq!(p.ledger("after"), (1, 0));
}

#[test]
fn kill9_in_doubt_unsafe_step_runs_again_after_mark_retry() {
    let p = crash_and_stop_for_operator("127.0.3.5");
    p.mark("once@h1", "retry");
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("once"), (2, 1));
    assert_eq!(p.ledger("after"), (1, 0));
    let states: Vec<String> = p
        .runs_of("once", "h1")
        .into_iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, ["interrupted", "succeeded"]);
}

#[test]
fn kill9_in_doubt_unsafe_step_is_skipped_after_mark_skip() {
    let p = crash_and_stop_for_operator("127.0.3.6");
    p.mark("once", "skip");
    p.apply(&[])
        .expect_exit(0)
        .expect_stdout_contains("once on h1: marked skip")
        .run();
    assert_eq!(p.ledger("once"), (1, 0));
    assert_eq!(p.ledger("after"), (1, 0));
    assert_eq!(p.runs_of("once", "h1").len(), 1);
}
