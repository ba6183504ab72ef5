//! When only the runner's side is cut and sshd keeps the command running, the old command is
//! stopped (or noted for the next apply, or left to an operator) before any check or retry, so no
//! second copy runs.

use super::*;

// Half cuts: sshd keeps the command running, the runner must stop it before a check or retry.

/// Like `COUNTED`, and a run that is stopped logs `term-N`. Its first run waits for a release
/// that only the end of a test gives; `end-N` is its end marker.
const TRAPPED: &str = "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; \
     trap \"echo term-$n >> {ledger}; exit 143\" TERM; echo start-$n >> {ledger}; \
     if [ $n = 1 ]; then while [ ! -e {release} ]; do sleep 0.02; done; fi; \
     echo end-$n >> {ledger}";

/// A check that logs itself and finds the work done once any run logged its end marker.
const CHECK_END: &str = "echo check >> {ledger}; grep -q ^end- {ledger}";

fn checked_trapped_step() -> String {
    format!("  - {{ id: checked, on: far, run: '{TRAPPED}', check: '{CHECK_END}', retries: 1 }}\n")
}

fn notes_of(
    j: &Journal,
    a: &runner::journal::Attempt,
) -> std::collections::BTreeMap<String, String> {
    j.notes(a.id).expect("read notes")
}

#[test]
fn half_cut_during_a_checked_step_stops_the_old_command_before_the_check() {
    let scene = Scene::new(12, &checked_trapped_step());
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.half_cut();
    bg.wait();
    scene.release();
    // The first command was stopped (its trap ran) before the check looked, and the retry
    // ran alone; the first never reached its end.
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Interrupted);
    assert_eq!(attempts[1].state, AttemptState::Succeeded);
    // Found running: sshd had not noticed the cut, so it was this runner that stopped it.
    let cause = attempts[0].message.clone().unwrap_or_default();
    // Stopped by the pid the runner learned, or (if the cut came before it learned it) found
    // by the token journaled before the command was sent.
    assert!(
        cause.contains(
            "still running on the target after the connection was lost; stopped it (pid "
        ) || cause.contains(
            "still running on the target after the connection was lost; stopped it (found by its token "
        ),
        "cause: {cause}"
    );
    let notes = notes_of(&j, &attempts[0]);
    assert!(
        notes
            .get("orphan")
            .is_some_and(|n| n.starts_with("process ") && n.contains("token=")),
        "{notes:?}"
    );
    assert_eq!(
        notes.get("orphan_settled").map(String::as_str),
        Some("stopped")
    );
    let files = scene.run_files();
    assert!(files.contains("; stopped it ("), "{files}");
    assert!(scene.report().contains("; stopped it ("));
}

#[test]
fn half_cut_during_an_idempotent_step_stops_the_old_command_before_the_retry() {
    let scene = Scene::new(
        13,
        &format!("  - {{ id: work, on: far, run: '{TRAPPED}', idempotent: true, retries: 1 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.half_cut();
    bg.wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "start-2", "end-2"]
    );
    let attempts = run_attempts(&scene.journal(), "work");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[1].state, AttemptState::Succeeded);
    let cause = attempts[0].message.clone().unwrap_or_default();
    assert!(stopped_it(&cause), "cause: {cause}");
}

#[test]
fn a_runner_killed_before_stopping_the_old_command_leaves_it_to_the_next_apply() {
    let scene = Scene::new(14, &checked_trapped_step());
    let bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.half_cut_and_kill_the_runner_as_it_reconnects(bg);

    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let notes = notes_of(&j, &attempts[0]);
    // The command's token was journaled before it was sent; its pid only if the runner lived
    // long enough to learn it. Either is enough to find and stop the command later.
    assert!(
        notes
            .get("orphan")
            .is_some_and(|n| n.starts_with("process ") && n.contains("token=")),
        "{notes:?}"
    );
    assert!(!notes.contains_key("orphan_settled"), "{notes:?}");
    // The old command still runs: nothing stopped it, nothing checked.
    assert_eq!(scene.ledger(), vec!["start-1"]);
    drop(j);

    // The next apply finds the pair in doubt with the note, and stops the command first.
    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Interrupted);
    let cause = attempts[0].message.clone().unwrap_or_default();
    assert!(stopped_it(&cause), "cause: {cause}");
    assert_eq!(
        notes_of(&j, &attempts[0])
            .get("orphan_settled")
            .map(String::as_str),
        Some("stopped")
    );
    let files = scene.run_files();
    assert!(stopped_it(&files), "{files}");
}

/// A `script:` step runs a temporary file on the target. Removing that file must not be what
/// reconnects first: the note about the command that may still run it comes before.
#[test]
fn a_script_step_cut_off_is_noted_before_its_file_is_removed() {
    let scene = Scene::new(
        16,
        &format!("  - {{ id: scripted, on: far, script: trapped.sh, check: '{CHECK_END}', retries: 1 }}\n"),
    );
    let fill = |t: &str| {
        t.replace(
            "{ledger}",
            &scene.sshd.dir().join("ledger").display().to_string(),
        )
        .replace(
            "{count}",
            &scene.sshd.dir().join("count").display().to_string(),
        )
        .replace(
            "{release}",
            &scene.sshd.dir().join("release").display().to_string(),
        )
    };
    fs::write(scene.dir.path().join("trapped.sh"), fill(TRAPPED)).expect("write script");
    let bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_until("the script to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.half_cut_and_kill_the_runner_as_it_reconnects(bg);

    let j = scene.journal();
    let attempts = run_attempts(&j, "scripted");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let note = notes_of(&j, &attempts[0]).get("orphan").cloned();
    let token = note
        .as_deref()
        .and_then(|n| n.split("token=").nth(1))
        .map(|t| t.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("the note was not written before reconnecting: {note:?}"));
    let script_on_target = Path::new("/tmp").join(format!("runner-{token}.sh"));
    assert!(script_on_target.exists(), "{}", script_on_target.display());
    drop(j);

    // The next apply stops the old script first, then checks and runs it again; the file the
    // killed runner left behind is removed with the stop.
    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
    assert!(!script_on_target.exists(), "{}", script_on_target.display());
}

#[test]
fn half_cut_with_the_target_unreachable_leaves_the_step_to_an_operator() {
    let scene = Scene::new(15, &checked_trapped_step());
    let bg = scene.apply().expect_exit(1).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.refuse(true);
    scene.proxy.half_cut();
    let end = bg.wait();
    // Whether the old command still runs cannot be known: no check, no retry.
    let all = end.said();
    assert!(all.contains("runner mark"), "{all}");
    assert!(all.contains("may still be running"), "{all}");
    assert_eq!(scene.ledger(), vec!["start-1"]);
    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Interrupted);
    assert!(!notes_of(&j, &attempts[0]).contains_key("orphan_settled"));
    assert!(j
        .attempts(None)
        .expect("attempts")
        .iter()
        .all(|a| a.kind != AttemptKind::Check));
    drop(j);

    // Once the target answers again, the next apply stops it before anything else.
    scene.proxy.refuse(false);
    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
}

/// A power cut of the runner while the link is silently dead: the runner never saw anything
/// go wrong, sshd never saw the connection end and keeps the command running. The next apply
/// must find the command's identity in the journal and stop it before the check decides, so
/// that no second copy runs beside the first.
#[test]
fn a_runner_killed_while_the_link_is_silently_dead_leaves_no_second_copy_running() {
    let scene = Scene::new(41, &checked_trapped_step());
    let mut bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.stall_forever();
    bg.kill();
    bg.wait();

    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Running);
    // Written with the attempt, before the command was sent: the token it carries.
    assert!(
        notes_of(&j, &attempts[0])
            .get("orphan")
            .is_some_and(|n| n.starts_with("process ") && n.contains("token=")),
        "the command's identity is not in the journal"
    );
    drop(j);

    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    // The first copy was stopped (its trap ran) before the check, and the second ran alone.
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
}

/// Whether `text` says the old command was found running and stopped: by the pid the runner
/// learned, or (when the cut or the kill came before it learned it) by the token journaled
/// before the command was sent. Which of the two depends on where the cut falls.
fn stopped_it(text: &str) -> bool {
    text.contains("stopped it (pid ") || text.contains("stopped it (found by its token ")
}
