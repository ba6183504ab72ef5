//! The `Run` builder of the other tests: a run whose outcome differs from what it states fails.

use crate::common::run::Run;
use crate::common::scene::{step, Scene};

#[test]
#[should_panic(expected = "call expect_exit before run")]
fn a_run_that_states_no_exit_code_is_refused() {
    Run::new().args(["validate", "missing.yaml"]).run();
}

#[test]
#[should_panic(expected = "unexpected exit code")]
fn another_exit_code_fails() {
    Run::new()
        .args(["validate", "missing.yaml"])
        .expect_exit(0)
        .run();
}

#[test]
#[should_panic(expected = "stderr lacks")]
fn a_missing_text_fails() {
    Run::new()
        .args(["validate", "missing.yaml"])
        .expect_exit(2)
        .expect_stderr_contains("words the runner never says")
        .run();
}

#[test]
#[should_panic(expected = "attempts of `one` in the journal")]
fn other_attempts_in_the_journal_fail() {
    let scene = Scene::new("builder")
        .local("here")
        .step(step("one", "here", "true"));
    scene
        .apply()
        .expect_exit(0)
        .expect_journal("one", &[("here", "run", "failed")])
        .run();
}

#[test]
fn the_folder_outlives_the_run_and_holds_what_it_wrote() {
    let scene =
        Scene::new("builder")
            .local("here")
            .step(step("one", "here", "echo one >> {dir}/ledger"));
    let done = scene
        .apply()
        .expect_exit(0)
        .expect_stdout_contains("one")
        .expect_journal("one", &[("here", "run", "succeeded")])
        .run();
    assert_eq!(done.path(), scene.dir());
    assert_eq!(scene.lines("ledger"), ["one"]);
    assert!(scene.journal().exists());
}

/// A local step that waits until the test lets it go.
fn held_scene() -> Scene {
    Scene::new("builder").local("here").step(step(
        "hold",
        "here",
        "touch {dir}/started; i=0; until [ -e {dir}/go ] || [ $i -gt 1200 ]; do i=$((i+1)); sleep 0.05; done",
    ))
}

#[test]
fn a_background_run_is_checked_when_it_is_waited_for() {
    let scene = held_scene();
    let mut bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    bg.wait_while_running("the step to start", || scene.path("started").exists());
    bg.kill();
    let done = bg.wait();
    assert_eq!(done.code, -1);
}

#[test]
#[should_panic(expected = "unexpected exit code")]
fn a_background_run_that_ends_otherwise_fails() {
    let scene = held_scene();
    let mut bg = scene.apply().expect_exit(0).spawn();
    bg.wait_while_running("the step to start", || scene.path("started").exists());
    bg.kill();
    bg.wait();
}
