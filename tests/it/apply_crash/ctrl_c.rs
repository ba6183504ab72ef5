//! Ctrl-C once lets the running step finish and starts nothing new; twice stops the remote command
//! and leaves the step in doubt.

use super::*;

#[test]
fn ctrl_c_once_lets_the_running_step_finish_and_starts_nothing_new() {
    let mut p = Play::new(&["127.0.3.8"]);
    p.write([
        step("long", "h1", &p.held("long", "", "")),
        p.quick("next", "h1"),
    ]);
    p.hold("long");
    let bg = p
        .apply(&[])
        .expect_exit(130)
        .expect_stderr_contains("interrupted; run `runner apply")
        .spawn();
    p.wait_started("long");
    bg.signal(libc::SIGINT);
    bg.wait_stderr("no new steps will start");
    // The runner heard it and keeps waiting: the command is still running on the target.
    let pid = read_pid(p.dir(), "long.pid");
    assert!(process_running(pid), "{}", bg.stderr());
    p.release("long");
    bg.wait();
    assert_eq!(p.ledger("long"), (1, 1), "the step finished");
    assert_eq!(p.ledger("next"), (0, 0), "the next step did not start");
    let states: Vec<String> = p
        .runs_of("long", "h1")
        .into_iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, ["succeeded"]);

    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("long"), (1, 1));
    assert_eq!(p.ledger("next"), (1, 0));
}

#[test]
fn ctrl_c_twice_stops_the_remote_command_and_leaves_the_step_in_doubt() {
    let mut p = Play::new(&["127.0.3.9"]);
    p.write([
        step("long", "h1", &p.held("long", "", "")),
        p.quick("next", "h1"),
    ]);
    p.hold("long");
    let bg = p
        .apply(&[])
        .expect_exit(130)
        .expect_stderr_contains("stopping running commands")
        .spawn();
    p.wait_started("long");
    let pid = read_pid(p.dir(), "long.pid");
    bg.signal(libc::SIGINT);
    // Two signals sent back to back could be delivered as one: wait until the first is heard.
    bg.wait_stderr("no new steps will start");
    bg.signal(libc::SIGINT);
    bg.wait();
    // The hold file is still there: only the stop can have ended the command.
    wait_until(&format!("remote command (pid {pid}) to be gone"), || {
        !process_running(pid)
    });
    assert_eq!(p.ledger("long"), (1, 0), "stopped before its end");
    assert_eq!(p.ledger("next"), (0, 0));
    let runs = p.runs_of("long", "h1");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, "interrupted");

    // Not idempotent and no check: the resume leaves it to an operator.
    p.apply(&[])
        .expect_exit(1)
        .expect_stderr_contains("long@h1 done`")
        .run();
    assert_eq!(p.ledger("long"), (1, 0));
    assert_eq!(p.ledger("next"), (0, 0));

    p.release("long");
    p.mark("long@h1", "retry");
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("long"), (2, 1));
    assert_eq!(p.ledger("next"), (1, 0));
}
