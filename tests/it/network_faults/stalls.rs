//! A link that stalls for good is noticed by keepalives during a step, an upload or between steps
//! and handled like a cut, while a quiet step or an idle session on a live link keeps its
//! connection.

use super::*;

// A link that stalls for good: TCP keeps acknowledging, so only keepalives can tell.

/// The shortest keepalive, so that three unanswered ones take seconds, not minutes.
const KEEPALIVE_1S: &str = "    keepalive: 1s\n";

/// What the transport says when keepalives go unanswered.
const SILENCE: &str = "3 keepalives unanswered";

#[test]
fn stall_for_good_during_an_idempotent_step_is_retried_over_a_new_connection() {
    let scene = Scene::with_target_keys(
        8,
        KEEPALIVE_1S,
        &format!("  - {{ id: work, on: far, run: '{COUNTED}', idempotent: true, retries: 1 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the first attempt to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.stall_forever();
    bg.wait();
    // The first run never learnt of the stall (its sshd still waits on the proxy); let it end.
    scene.release();

    retried_over_a_new_connection(&scene, "work", &["lost", SILENCE]);
    done_on_the_second_run(&scene);

    let files = scene.run_files();
    assert!(files.contains(SILENCE), "{files}");
    assert!(files.contains("\"outcome\":\"interrupted\""), "{files}");
}

#[test]
fn stall_for_good_during_an_upload_is_retried_over_a_new_connection() {
    // SFTP writes wait for the server's acknowledgements; on a stalled link none come, and
    // the upload must end as a lost connection after three keepalive intervals.
    let scene = Scene::with_target_keys(
        17,
        KEEPALIVE_1S,
        "  - { id: send, on: far, upload: { src: big.bin, dest: '{dest}' }, idempotent: true, retries: 1 }\n",
    );
    let dest = scene.sshd.dir().join("big.copy");
    let yaml = fs::read_to_string(&scene.playbook).expect("read playbook");
    fs::write(
        &scene.playbook,
        yaml.replace("{dest}", &dest.display().to_string()),
    )
    .expect("write playbook");
    // Large enough that it is still on its way when the test sees the first MiB arrive.
    let data: Vec<u8> = (0..64u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(scene.dir.path().join("big.bin"), &data).expect("write source");

    let bg = scene.apply().expect_exit(0).spawn();
    // It is written to a new file beside the destination, renamed into place once verified.
    let written = || {
        fs::read_dir(scene.sshd.dir())
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(".big.copy.runner-")
                    })
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    wait_until("the upload to be under way", || written() > 1024 * 1024);
    scene.proxy.stall_forever();
    bg.wait();

    retried_over_a_new_connection(&scene, "send", &["uploading", SILENCE]);
    assert!(
        fs::read(&dest).expect("read copy") == data,
        "the copy differs"
    );
}

#[test]
fn stall_for_good_during_a_step_without_check_or_idempotence_stops_for_an_operator() {
    let scene = Scene::with_target_keys(
        9,
        KEEPALIVE_1S,
        &format!("  - {{ id: once, on: far, run: '{COUNTED}', retries: 3 }}\n"),
    );
    let bg = scene.apply().expect_exit(1).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.stall_forever();
    let end = bg.wait();
    scene.release();
    left_to_an_operator(&scene, end, SILENCE);
}

#[test]
fn stall_for_good_between_steps_reconnects_before_the_next_step() {
    // Nothing of `second` was sent when the stall is noticed, so it is not in doubt: it runs
    // once over a new connection.
    let scene = Scene::with_target_keys(
        10,
        KEEPALIVE_1S,
        "  - { id: first, on: far, run: 'echo first >> {ledger}' }\n\
         \x20 - { id: hold, on: here, run: 'touch {local}/holding; while [ ! -e {local}/go ]; do sleep 0.02; done' }\n\
         \x20 - { id: second, on: far, run: 'echo second >> {ledger}' }\n",
    );
    let bg = scene
        .apply()
        .expect_exit(0)
        .expect_stderr_contains("reconnecting")
        .spawn();
    let holding = scene.dir.path().join("holding");
    wait_until("the local step between the two", || holding.exists());
    assert_eq!(scene.proxy.accepted(), 1);
    scene.proxy.stall_forever();
    fs::write(scene.dir.path().join("go"), "").expect("write go");
    bg.wait();
    assert_eq!(scene.ledger(), vec!["first", "second"]);
    assert_eq!(
        scene.proxy.accepted(),
        2,
        "the session was not re-established"
    );
    let j = scene.journal();
    let second = run_attempts(&j, "second");
    assert_eq!(second.len(), 1, "{second:#?}");
    assert_eq!(second[0].state, AttemptState::Succeeded);
    let all = j.attempts(None).expect("attempts");
    assert!(
        all.iter().all(|a| a.state != AttemptState::Interrupted),
        "{all:#?}"
    );
}

#[test]
fn a_quiet_step_and_an_idle_session_on_a_live_link_keep_their_connection() {
    // The other side of the keepalive rule: a command that prints nothing for longer than
    // three intervals, then a pause longer than one interval between steps. The server
    // answers every keepalive, so nothing is dropped and nothing reconnects. (The sleeps are
    // the situation under test, not synchronisation.)
    let scene = Scene::with_target_keys(
        11,
        KEEPALIVE_1S,
        "  - { id: quiet, on: far, run: 'sleep 4; echo quiet >> {ledger}' }\n\
         \x20 - { id: pause, on: here, run: 'sleep 2' }\n\
         \x20 - { id: after, on: far, run: 'echo after >> {ledger}' }\n",
    );
    let end = scene
        .apply()
        .expect_exit(0)
        .expect_stderr_lacks("reconnecting")
        .spawn()
        .wait();
    assert_eq!(scene.ledger(), vec!["quiet", "after"]);
    assert_eq!(scene.proxy.accepted(), 1, "{}", end.stderr);
    let all = scene.journal().attempts(None).expect("attempts");
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all.iter().all(|a| a.state == AttemptState::Succeeded),
        "{all:#?}"
    );
}
