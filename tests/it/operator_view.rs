//! What the operator sees: a manual step's prompt that stays on a real terminal and answers a
//! wrong reply, a progress bar that counts each pair once on a resume, countdowns that tick, one
//! clock (the customer's zone, the operator's beside it), and a window override that says which
//! steps it opens.
//!
//! Terminal tests run the binary in tmux and read the screen with `capture-pane`; they wait by
//! polling the screen or marker files, never by sleeping.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::run::Run;
use crate::common::scene::{manual, step, Scene, Step};
use crate::common::tmux::Tmux;
use crate::common::wait_until;

/// A shell command that waits (bounded) until `{dir}/go` exists.
const WAIT_FOR_GO: &str =
    "i=0; until [ -e {dir}/go ]; do i=$((i+1)); [ $i -gt 2400 ] && exit 9; sleep 0.05; done";

/// The command that runs `runner ARGS` in `dir` inside tmux and writes its exit code to
/// `dir/code`.
fn in_shell(dir: &Path, args: &str, env: &str) -> String {
    format!(
        "cd {d} && env -u RUNNER_NOW {env} {bin} {args}; echo $? > {d}/code",
        d = dir.display(),
        bin = env!("CARGO_BIN_EXE_runner"),
    )
}

fn exit_code(dir: &Path) -> i32 {
    let path = dir.join("code");
    wait_until("the runner to exit", || {
        fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n'))
    });
    fs::read_to_string(&path)
        .expect("read the exit code")
        .trim()
        .parse()
        .expect("an exit code")
}

fn ledger(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("ledger"))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A playbook `p.yaml` with one local target, `here`.
fn scene(name: &str) -> Scene {
    Scene::new(name).file_name("p.yaml").local("here")
}

/// A local step that appends `id` to the ledger.
fn ledger_step(id: &str) -> Step {
    step(id, "here", &format!("echo {id} >> {{dir}}/ledger"))
}

/// A local step that says it started, then waits for the file `go`.
fn waiting_step(id: &str) -> Step {
    step(
        id,
        "here",
        &format!("touch {{dir}}/started; {WAIT_FOR_GO}; echo {id} >> {{dir}}/ledger"),
    )
}

/// Business hours 08:00 to 18:00 UTC on weekdays, and `more` window keys.
fn utc_hours(more: &str) -> String {
    format!(
        "window:\n  timezone: UTC\n  business_hours:\n    - {{ days: mon-fri, from: \"08:00\", to: \"18:00\" }}\n{more}"
    )
}

#[test]
fn a_manual_prompt_stays_on_screen_and_a_wrong_answer_gets_a_reply() {
    let scene = scene("manual").steps([
        manual("disk", "Label the backup disk and store it away."),
        ledger_step("after"),
    ]);
    scene.write();
    let d = scene.dir();
    let tmux = Tmux::new(d);
    tmux.start(&in_shell(d, "apply p.yaml", ""));
    wait_until("the prompt", || tmux.screen().contains("Type `done`"));

    tmux.type_line("ok");
    wait_until("a reply to `ok`", || {
        tmux.screen().contains("`ok` is not an answer")
    });
    let screen = tmux.screen();
    // The instructions and the question are still there: nothing drew over them.
    assert!(
        screen.contains("Label the backup disk and store it away."),
        "{screen}"
    );
    assert!(screen.contains("Manual step `disk`"), "{screen}");
    assert!(
        screen.contains("type `done` when it is finished, or `fail`"),
        "{screen}"
    );

    tmux.type_line("done");
    assert_eq!(exit_code(d), 0, "{}", tmux.screen());
    assert_eq!(ledger(d), vec!["after"]);
}

#[test]
fn ctrl_c_at_a_manual_prompt_stops_the_run_with_exit_130() {
    let scene = scene("manual").steps([
        manual("disk", "Label the backup disk."),
        ledger_step("after"),
    ]);
    scene.write();
    let d = scene.dir();
    let tmux = Tmux::new(d);
    // The shell ignores Ctrl-C so that it lives to write the runner's exit code.
    tmux.start(&format!("trap '' INT; {}", in_shell(d, "apply p.yaml", "")));
    wait_until("the prompt", || tmux.screen().contains("Type `done`"));
    let out = tmux.run(&["send-keys", "-t", "night", "C-c"]);
    assert!(out.status.success());
    assert_eq!(exit_code(d), 130, "{}", tmux.screen());
    assert!(ledger(d).is_empty());
    let db = rusqlite::Connection::open(d.join(".runner/p.db")).expect("the journal");
    let outcome: String = db
        .query_row(
            "SELECT outcome FROM runs ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the run's outcome");
    assert_eq!(outcome, "interrupted");
}

#[test]
fn a_resumed_run_counts_each_done_pair_once() {
    let scene = scene("resume").steps([ledger_step("a"), ledger_step("b"), waiting_step("c")]);
    for s in ["a", "b"] {
        scene.mark(s, "done");
    }
    let d = scene.dir();
    let tmux = Tmux::new(d);
    tmux.start(&in_shell(d, "apply p.yaml", ""));
    wait_until("step c to start", || d.join("started").exists());
    // The step's own line is drawn with the bar, after every skipped pair was counted.
    wait_until("the bar", || tmux.screen().contains("run c@here"));
    let screen = tmux.screen();
    assert!(screen.contains(" 2/3 pairs"), "{screen}");

    fs::write(d.join("go"), "").expect("go");
    assert_eq!(exit_code(d), 0, "{}", tmux.screen());
    assert_eq!(ledger(d), vec!["c"]);
}

/// The word just after `before` on the screen ("may start in 1m5s" -> "1m5s").
fn word_after(screen: &str, before: &str) -> Option<String> {
    let at = screen.find(before)? + before.len();
    screen[at..].split_whitespace().next().map(str::to_string)
}

/// The word just before `after` on the screen ("1m5s before business hours" -> "1m5s").
fn word_before(screen: &str, after: &str) -> Option<String> {
    let at = screen.find(after)?;
    screen[..at].split_whitespace().last().map(str::to_string)
}

fn secs(text: &str) -> i64 {
    let mut total = 0;
    let mut n = 0;
    for c in text.chars() {
        match c {
            '0'..='9' => n = n * 10 + i64::from(c as u8 - b'0'),
            'd' => (total, n) = (total + n * 86_400, 0),
            'h' => (total, n) = (total + n * 3_600, 0),
            'm' => (total, n) = (total + n * 60, 0),
            's' => (total, n) = (total + n, 0),
            _ => {}
        }
    }
    total
}

#[test]
fn the_time_left_before_business_hours_ticks_while_a_step_runs() {
    let scene = scene("tick")
        .window(&utc_hours(""))
        .step(waiting_step("long"));
    scene.write();
    let d = scene.dir();
    let tmux = Tmux::new(d);
    tmux.start(&in_shell(
        d,
        "apply p.yaml",
        "RUNNER_NOW=2026-12-09T01:00:00Z",
    ));
    wait_until("the step to start", || d.join("started").exists());
    let mut first = None;
    wait_until("the countdown", || {
        first = word_before(&tmux.screen(), " before business hours");
        first.is_some()
    });
    let first = first.unwrap_or_default();
    wait_until("the countdown to move", || {
        word_before(&tmux.screen(), " before business hours")
            .is_some_and(|now| secs(&now) < secs(&first))
    });
    fs::write(d.join("go"), "").expect("go");
    assert_eq!(exit_code(d), 0, "{}", tmux.screen());
}

#[test]
fn the_wait_for_the_window_counts_down() {
    let scene = scene("wait")
        .window(&utc_hours("  when_closed: wait\n"))
        .step(ledger_step("a"));
    scene.write();
    let d = scene.dir();
    let tmux = Tmux::new(d);
    // Wednesday 17:59:40 UTC: the step may start in 20 s.
    tmux.start(&in_shell(
        d,
        "apply p.yaml",
        "RUNNER_NOW=2026-12-09T17:59:40Z",
    ));
    let mut first = None;
    wait_until("the countdown", || {
        first = word_after(&tmux.screen(), "may start in ");
        first.is_some()
    });
    let first = secs(&first.unwrap_or_default());
    wait_until("the countdown to move", || {
        word_after(&tmux.screen(), "may start in ")
            .is_some_and(|now| secs(&now) < first && secs(&now) > 0)
            || d.join("code").exists()
    });
    assert!(
        !d.join("code").exists(),
        "the step started before the countdown moved: {}",
        tmux.screen()
    );
    assert_eq!(exit_code(d), 0, "{}", tmux.screen());
    assert_eq!(ledger(d), vec!["a"]);
}

/// Chicago business hours; the operator sits in Paris.
fn chicago(steps: impl IntoIterator<Item = Step>) -> Scene {
    let scene = scene("zones")
        .window("window:\n  timezone: America/Chicago\n  business_hours:\n    - { days: mon-fri, from: \"07:30\", to: \"18:00\" }\n")
        .steps(steps);
    scene.write();
    scene
}

#[test]
fn progress_lines_and_the_final_message_show_the_customers_zone_and_the_operators() {
    let scene = chicago([ledger_step("a").key("estimate", "1h")]);
    // Wednesday 9 December 08:00 CST, 15:00 in Paris: business hours in Chicago.
    let r = scene
        .apply()
        .envs(&[
            ("RUNNER_NOW", "2026-12-09T14:00:00Z"),
            ("TZ", "Europe/Paris"),
        ])
        .expect_exit(3)
        .run();
    for line in r.stdout.lines().filter(|l| l.starts_with('[')) {
        assert!(line.starts_with("[08:00:"), "{line}");
        assert!(line.contains(" CST] "), "{line}");
    }
    assert!(
        r.stdout
            .contains("next allowed start Wed 9 Dec 2026 18:00 CST (Thu 01:00 CET here)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("2026-12-10T00:00:00Z"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("It may start Wed 9 Dec 2026 18:00 CST (Thu 01:00 CET here)"),
        "{}",
        r.stderr
    );

    // JSON keeps RFC 3339 UTC.
    scene
        .apply_with(&["--json"])
        .envs(&[
            ("RUNNER_NOW", "2026-12-09T14:00:00Z"),
            ("TZ", "Europe/Paris"),
        ])
        .expect_exit(3)
        .expect_stdout_contains(r#""next_start":"2026-12-10T00:00:00Z""#)
        .run();

    // An operator in the customer's zone sees one time.
    scene
        .apply()
        .envs(&[
            ("RUNNER_NOW", "2026-12-09T14:00:00Z"),
            ("TZ", "America/Chicago"),
        ])
        .expect_exit(3)
        .expect_stdout_contains("next allowed start Wed 9 Dec 2026 18:00 CST\n")
        .run();
}

const DAYTIME: &str = "2026-12-09T15:00:00Z";

#[test]
fn a_window_override_for_one_step_leaves_the_next_step_closed() {
    let scene = chicago([
        ledger_step("a"),
        ledger_step("b").key("point_of_no_return", "true"),
    ]);
    let d = scene.dir();
    let r = scene
        .apply_with(&["--override-window", "a", "--reason", "customer asked"])
        .env("RUNNER_NOW", DAYTIME)
        .expect_exit(3)
        .run();
    assert_eq!(ledger(d), vec!["a"]);
    assert!(r.stderr.contains("stopped before `b`"), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("--override-window opens the window for: a"),
        "{}",
        r.stdout
    );
}

#[test]
fn overriding_the_window_for_all_steps_names_them_before_the_first_starts() {
    let scene = chicago([
        ledger_step("a"),
        ledger_step("b").key("point_of_no_return", "true"),
    ]);
    let d = scene.dir();
    let r = scene
        .apply_with(&["--override-window-all", "--reason", "customer asked"])
        .env("RUNNER_NOW", DAYTIME)
        .expect_exit(0)
        .run();
    assert_eq!(ledger(d), vec!["a", "b"]);
    let list = r
        .stdout
        .find("--override-window-all opens the window for every remaining step: a, b (point of no return)")
        .unwrap_or_else(|| panic!("{}", r.stdout));
    let first = r
        .stdout
        .find("> a (")
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(list < first, "{}", r.stdout);
}

#[test]
fn a_window_override_names_steps_that_exist() {
    let scene = chicago([ledger_step("a")]);
    let d = scene.dir();
    scene
        .apply_with(&["--override-window", "nope", "--reason", "x"])
        .env("RUNNER_NOW", DAYTIME)
        .expect_exit(2)
        .expect_stderr_contains("`nope`")
        .expect_stderr_contains("a")
        .run();
    assert!(!d.join(".runner").exists());

    // Without a reason, or with neither a step nor -all, it is refused before anything runs.
    for args in [
        &["apply", "p.yaml", "--override-window", "a"][..],
        &["apply", "p.yaml", "--override-window-all"][..],
        &["apply", "p.yaml", "--override-window", "--reason", "x"][..],
    ] {
        Run::at(d)
            .args(args)
            .env("RUNNER_NOW", DAYTIME)
            .note(format!("{args:?}"))
            .expect_exit(2)
            .run();
    }
    assert!(!d.join(".runner").exists());
    assert!(ledger(d).is_empty());
}

/// The engine asks an [`Operator`]; a scripted one stands in for the person.
mod asked_through_the_operator {
    use super::*;
    use runner::clock::Clock;
    use runner::engine::event::Silent;
    use runner::engine::interrupt::Interrupt;
    use runner::engine::operator::{Confirmed, ManualAnswer, Operator, Scripted};
    use runner::engine::{self, ApplyOptions, RollbackOptions};
    use runner::exit::Exit;
    use std::sync::Arc;

    fn apply(pb: &Path, operator: Arc<dyn Operator>) -> engine::Outcome {
        let pb = runner::playbook::load(pb).expect("a valid playbook");
        let state = engine::default_state_path(&pb);
        let opts = ApplyOptions {
            runs_dir: engine::runs_dir(&state),
            state,
            max_parallel: 4,
            override_window: None,
            accept_changed: false,
            operator,
            args: vec!["runner".into(), "apply".into()],
            wait_for_operator: false,
        };
        engine::apply(&pb, &opts, Clock::System, &Silent, Interrupt::new()).expect("apply runs")
    }

    fn manual_playbook() -> (Scene, PathBuf) {
        let scene =
            scene("manual").steps([manual("disk", "Label the disk."), ledger_step("after")]);
        let pb = scene.write();
        (scene, pb)
    }

    #[test]
    fn a_manual_step_the_operator_reports_failed_stops_with_exit_1() {
        let (scene, pb) = manual_playbook();
        let operator = Arc::new(Scripted::new(vec![ManualAnswer::Fail], vec![]));
        let o = apply(&pb, operator.clone());
        assert_eq!(o.exit, Exit::StepFailed, "{}", o.message);
        assert_eq!(operator.asked(), vec!["manual disk"]);
        assert!(ledger(scene.dir()).is_empty());

        // Done continues with the next step; nobody present waits with exit 5.
        let o = apply(&pb, Arc::new(runner::engine::operator::Absent));
        assert_eq!(o.exit, Exit::WaitingForOperator, "{}", o.message);
        let o = apply(
            &pb,
            Arc::new(Scripted::new(vec![ManualAnswer::Done], vec![])),
        );
        assert_eq!(o.exit, Exit::Success, "{}", o.message);
        assert_eq!(ledger(scene.dir()), vec!["after"]);
    }

    #[test]
    fn a_rollback_the_operator_declines_changes_nothing() {
        let scene =
            scene("rb").step(ledger_step("a").text("rollback", "echo undo >> {dir}/ledger"));
        let pb = scene.write();
        let d = scene.dir();
        let o = apply(&pb, Arc::new(runner::engine::operator::Absent));
        assert_eq!(o.exit, Exit::Success, "{}", o.message);

        let book = runner::playbook::load(&pb).expect("a valid playbook");
        let state = engine::default_state_path(&book);
        let opts = |operator: Arc<dyn Operator>| RollbackOptions {
            runs_dir: engine::runs_dir(&state),
            state: state.clone(),
            to: None,
            yes: false,
            operator,
            override_window: None,
            args: vec!["runner".into(), "rollback".into()],
            include_in_doubt: false,
        };
        let no = Arc::new(Scripted::new(vec![], vec![Confirmed::No]));
        let o = engine::rollback(
            &book,
            &opts(no.clone()),
            Clock::System,
            &Silent,
            Interrupt::new(),
        )
        .expect("rollback runs");
        assert_eq!(o.exit, Exit::Success);
        assert!(o.message.contains("rollback cancelled"), "{}", o.message);
        assert_eq!(no.asked(), vec!["confirm"]);
        assert_eq!(ledger(d), vec!["a"]);

        let yes = Arc::new(Scripted::new(vec![], vec![Confirmed::Yes]));
        let o = engine::rollback(&book, &opts(yes), Clock::System, &Silent, Interrupt::new())
            .expect("rollback runs");
        assert_eq!(o.exit, Exit::Success, "{}", o.message);
        assert_eq!(ledger(d), vec!["a", "undo"]);
    }
}
