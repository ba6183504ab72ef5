//! A link cut during or between steps, or stalled for a moment, is handled by what the step allows:
//! an idempotent step is retried over a new connection, a checked step's check decides, any other
//! step stops for an operator, and the cause is in the report.

use super::*;

/// Cuts the link while an idempotent step with one retry runs; returns the scene afterwards.
fn cut_an_idempotent_step(n: u8) -> Scene {
    let scene = Scene::new(
        n,
        &format!("  - {{ id: work, on: far, run: '{COUNTED}', idempotent: true, retries: 1 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the first attempt to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.cut();
    bg.wait();
    scene.release();
    scene
}

#[test]
fn cut_during_an_idempotent_step_is_retried_and_logged() {
    let scene = cut_an_idempotent_step(1);

    // The first attempt is not a success: the runner never saw it end. The retry is, over a
    // re-established connection.
    retried_over_a_new_connection(&scene, "work", &["connection to", "lost"]);
    done_on_the_second_run(&scene);

    // The cause is in the step log and in the events.
    let files = scene.run_files();
    assert!(files.contains("may have run in part or in full"), "{files}");
    assert!(files.contains("\"outcome\":\"interrupted\""), "{files}");
}

#[test]
fn the_cause_of_a_cut_is_in_the_report() {
    let scene = cut_an_idempotent_step(7);
    let report = scene.report();
    assert!(report.contains("lost"), "report:\n{report}");
}

#[test]
fn cut_during_a_step_without_check_or_idempotence_stops_for_an_operator() {
    let scene = Scene::new(
        2,
        &format!("  - {{ id: once, on: far, run: '{COUNTED}', retries: 3 }}\n"),
    );
    let bg = scene.apply().expect_exit(1).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.cut();
    let end = bg.wait();
    scene.release();
    // Not retried despite `retries: 3`: it may have had its effect, and nothing can tell.
    left_to_an_operator(&scene, end, "lost");
}

#[test]
fn cut_during_a_checked_step_lets_the_check_decide() {
    // The check finds the work not done (the first run is still waiting for its release), so
    // the step runs again, per its retries.
    let scene = Scene::new(
        3,
        &format!(
            "  - {{ id: checked, on: far, run: '{COUNTED}', check: 'grep -qx done-2 {{ledger}}', retries: 1 }}\n"
        ),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.cut();
    bg.wait();
    scene.release();
    let j = scene.journal();
    let checks: Vec<_> = j
        .attempts(None)
        .expect("attempts")
        .into_iter()
        .filter(|a| a.kind == AttemptKind::Check)
        .map(|a| a.state)
        .collect();
    // First the check after the lost connection (not done), then the one after the retry.
    assert_eq!(
        checks,
        vec![AttemptState::Failed, AttemptState::Succeeded],
        "{:#?}",
        j.attempts(None)
    );
    assert!(has(&scene.ledger(), "done-2"));
}

#[test]
fn cut_between_steps_reconnects_and_runs_the_next_step() {
    // `first` runs on the ssh target; `hold` (local) waits for the test, which cuts the idle
    // connection meanwhile; `second` must then run over a new session.
    let scene = Scene::new(
        4,
        "  - { id: first, on: far, run: 'echo first >> {ledger}' }\n\
         \x20 - { id: hold, on: here, run: 'touch {local}/holding; while [ ! -e {local}/go ]; do sleep 0.02; done' }\n\
         \x20 - { id: second, on: far, run: 'echo second >> {ledger}' }\n",
    );
    let bg = scene.apply().expect_exit(0).spawn();
    let holding = scene.dir.path().join("holding");
    wait_until("the local step between the two", || holding.exists());
    assert!(has(&scene.ledger(), "first"));
    assert_eq!(scene.proxy.accepted(), 1);
    scene.proxy.cut();
    fs::write(scene.dir.path().join("go"), "").expect("write go");
    bg.wait();
    assert_eq!(scene.ledger(), vec!["first", "second"]);
    assert_eq!(
        scene.proxy.accepted(),
        2,
        "the session was not re-established"
    );
    let second = run_attempts(&scene.journal(), "second");
    assert_eq!(second.len(), 1, "{second:#?}");
    assert_eq!(second[0].state, AttemptState::Succeeded);
}

#[test]
fn stall_during_a_step_then_recovery_records_one_success() {
    // The link hangs while the command runs and finishes; when it comes back, the runner sees
    // the real end and records exactly one success, without a second run.
    let scene = Scene::new(
        5,
        &format!("  - {{ id: slow, on: far, run: '{COUNTED}', retries: 2 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.stall();
    scene.release();
    wait_until("the command to end on the target", || {
        has(&scene.ledger(), "done-1")
    });
    scene.proxy.resume();
    bg.wait();
    let attempts = run_attempts(&scene.journal(), "slow");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Succeeded);
    assert_eq!(scene.ledger(), vec!["started-1", "done-1"]);
    assert_eq!(scene.proxy.accepted(), 1);
}
