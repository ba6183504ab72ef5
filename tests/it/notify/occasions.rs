//! What is notified: work that no longer fits and the window's stop, a run waiting for the window,
//! and a manual step or a step left in doubt that needs an operator.

use super::*;

/// Business hours 07:00 to 18:00 UTC on weekdays.
const WEEKDAYS_UTC: &str = "window:\n  timezone: UTC\n  business_hours:\n    - { days: mon-fri, from: \"07:00\", to: \"18:00\" }\n";

#[test]
fn work_that_no_longer_fits_warns_then_the_window_stop_is_notified() {
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [window-closing, night-done, run-stopped]\n",
        hook.url("/hook")
    ))
    .window(WEEKDAYS_UTC)
    .steps([
        step("short", "box", "echo short").key("estimate", "1m"),
        step("long", "box", "echo long").key("estimate", "12h"),
    ]);
    scene.write();
    apply(scene.dir(), &[]).expect_exit(3).run();
    let reqs = hook.requests();
    let types: Vec<Value> = reqs.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        types,
        [json!("runner.window.closing"), json!("runner.run.stopped")]
    );
    let closing = reqs[0].json();
    assert_eq!(
        closing["data"]["summary"],
        "the work left (2 steps, about 12h1m) no longer fits before business hours at Wed 2 Dec 2026 07:00 UTC"
    );
    assert_eq!(closing["data"]["business_hours_at"], "2026-12-02T07:00:00Z");
    let stopped = reqs[1].json();
    assert_eq!(stopped["data"]["outcome"], "stopped-window");
    assert_eq!(stopped["data"]["exit_code"], 3);
    assert_eq!(stopped["data"]["next_start"], "2026-12-02T18:00:00Z");
    assert_eq!(
        stopped["data"]["next"],
        "from Wed 2 Dec 2026 18:00 UTC: runner apply acme.yaml"
    );
}

#[test]
fn a_manual_step_without_a_terminal_asks_for_an_operator() {
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [operator-needed]\n",
        hook.url("/hook")
    ))
    .step(manual("confirm", "Ask the customer to open a file."));
    scene.write();
    apply(scene.dir(), &[]).expect_exit(5).run();
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1);
    let ev = reqs[0].json();
    assert_eq!(ev["type"], "runner.operator.needed");
    assert_eq!(
        ev["data"]["summary"],
        "manual step `confirm` waits for an operator"
    );
    assert_eq!(
        ev["data"]["output"],
        json!(["Ask the customer to open a file."])
    );
    assert_eq!(
        ev["data"]["next"],
        "carry out the instructions, then: runner mark acme.yaml confirm done && runner apply acme.yaml"
    );
}

#[test]
fn a_run_waiting_for_the_window_says_so_while_it_waits() {
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [window-closing, night-done, run-finished]\n",
        hook.url("/hook")
    ))
    .window(&format!("{WEEKDAYS_UTC}  when_closed: wait\n"))
    .step(step("one", "box", "echo one").key("estimate", "1m"));
    // Started at noon on a Tuesday: the run waits until 18:00; Ctrl-C ends it.
    let bg = scene
        .apply()
        .env("RUNNER_NOW", "2026-12-01T12:00:00Z")
        .expect_exit(130)
        .spawn();
    let first = hook.wait_for(1);
    let ev = first[0].json();
    assert_eq!(ev["type"], "runner.window.closing");
    assert_eq!(
        ev["data"]["summary"],
        "the window is closed: the run waits; `one` may start Tue 1 Dec 2026 18:00 UTC"
    );
    assert_eq!(ev["data"]["next_start"], "2026-12-01T18:00:00Z");
    // Ctrl-C ends the wait; the run reports how it ended.
    bg.signal(libc::SIGINT);
    bg.wait();
    let all = hook.wait_for(2);
    let fin = all[1].json();
    assert_eq!(fin["type"], "runner.run.finished");
    assert_eq!(fin["data"]["outcome"], "interrupted");
    assert_eq!(fin["data"]["next"], "runner apply acme.yaml");
}

#[test]
fn a_step_left_in_doubt_asks_an_operator_to_decide() {
    use runner::journal::{AttemptKind, NewAttempt, NewRun, RunCommand};
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [operator-needed]\n",
        hook.url("/hook")
    ))
    .step(step("move-mailboxes", "box", "echo moving"));
    scene.write();
    // An earlier runner died while the step ran: a `running` attempt of a process that is gone.
    let j = Journal::open(&scene.journal()).expect("journal");
    let at: jiff::Timestamp = "2026-12-01T19:00:00Z".parse().unwrap();
    let run = j
        .begin_run(&NewRun {
            command: RunCommand::Apply,
            playbook_path: "acme.yaml".into(),
            playbook_sha256: "0".repeat(64),
            started_at: at,
            user: "night".into(),
            host: host(),
            pid: 999_999,
            args: vec![],
            simulated: None,
        })
        .expect("run");
    j.begin_attempt(&NewAttempt {
        run,
        step_id: "move-mailboxes".into(),
        target: "box".into(),
        kind: AttemptKind::Run,
        number: 1,
        started_at: at,
        pid: 999_999,
        host: host(),
        def_hash: "old".into(),
    })
    .expect("attempt");
    drop(j);

    apply(scene.dir(), &[]).expect_exit(1).run();
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let ev = reqs[0].json();
    assert_eq!(ev["type"], "runner.operator.needed");
    assert_eq!(ev["subject"], "move-mailboxes@box");
    assert_eq!(
        ev["data"]["summary"],
        "step `move-mailboxes` is in doubt on `box`: an operator must decide"
    );
    assert_eq!(
        ev["data"]["next"],
        "inspect the target, then: runner mark acme.yaml move-mailboxes@box done|retry|skip && runner apply acme.yaml"
    );
}
