//! Crash and resume of `runner apply` against real sshd servers: kill -9 in the middle of a
//! step for each in-doubt policy, the lock a killed runner leaves behind, a step changed after
//! it succeeded, Ctrl-C once and twice, intent committed before the command starts, and a
//! crash during a fan-out.
//!
//! The targets are this machine reached over SSH, so the tests see the commands' effects
//! directly: every step appends to a ledger file (one `start` line each time it really starts,
//! one `end` line when it gets to its end), and a step that must stay "in flight" blocks while
//! its hold file exists.

use crate::common;
use crate::common::wait_until;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::run::{all_attempts, open_journal, Attempt, Run};
use crate::common::running::Running;
use crate::common::scene::{bare, step, Scene, Step};
use crate::common::{process_running, read_pid};

/// Upper bound for waiting on a condition; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(60);

/// One mark row of the journal.
#[derive(Debug, Clone)]
struct Mark {
    step: String,
    target: String,
    mark: String,
    user: String,
}

/// A scene whose targets `h1`, `h2`, ... are sshd servers on loopback (or one local target
/// `here`), with the ledgers, hold files and journal readers of these tests.
struct Play {
    scene: Scene,
}

impl Drop for Play {
    fn drop(&mut self) {
        // A failed test can leave a held command running on this machine; stop it (only if the
        // process is still one of ours, i.e. its command line names this tempdir).
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return;
        };
        let me = self.dir().display().to_string();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(tag) = name.strip_suffix(".pid") {
                let pid = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                if let Some(pid) = pid {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    if cmdline.contains(&me) && cmdline.contains(tag) {
                        kill_group(pid);
                    }
                }
            }
        }
    }
}

/// SIGKILL to the process group led by `pid` (a remote command's session), or to `pid` alone.
fn kill_group(pid: u32) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    assert!(pid > 1);
    // SAFETY: kill(2) on a negative (group) and a positive pid, both greater than 1.
    unsafe {
        if libc::kill(-pid, libc::SIGKILL) != 0 {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

impl Play {
    fn new(ips: &[&str]) -> Play {
        let mut scene = Scene::new("Crash and resume");
        for (i, ip) in ips.iter().enumerate() {
            scene = scene.ssh(&format!("h{}", i + 1), ip);
        }
        Play { scene }
    }

    /// A play on one local target, `here`.
    fn local() -> Play {
        Play {
            scene: Scene::new("Crash and resume").local("here"),
        }
    }

    fn dir(&self) -> &Path {
        self.scene.dir()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.scene.path(name)
    }

    fn db(&self) -> PathBuf {
        self.scene.journal()
    }

    /// Writes `cutover.yaml` with these steps.
    fn write(&mut self, steps: impl IntoIterator<Item = Step>) {
        self.scene.set_steps(steps);
        self.scene.write();
    }

    /// A step that only records that it ran.
    fn quick(&self, id: &str, on: &str) -> Step {
        step(id, on, &format!("echo start >> {{dir}}/{id}.ledger"))
    }

    /// A command that records its start and its pid, touches `<tag>.started`, then blocks
    /// while `<tag>.hold` exists; `before` and `after` run around the wait.
    fn held(&self, tag: &str, before: &str, after: &str) -> String {
        let d = self.dir().display();
        format!(
            "echo start >> {d}/{tag}.ledger; {before}echo $$ > {d}/{tag}.pid; touch {d}/{tag}.started; \
             while [ -f {d}/{tag}.hold ]; do sleep 0.05; done; {after}echo end >> {d}/{tag}.ledger"
        )
    }

    fn hold(&self, tag: &str) {
        std::fs::write(self.file(&format!("{tag}.hold")), "").unwrap();
    }

    fn release(&self, tag: &str) {
        std::fs::remove_file(self.file(&format!("{tag}.hold"))).unwrap();
    }

    fn wait_started(&self, tag: &str) {
        let f = self.file(&format!("{tag}.started"));
        wait_until(&format!("{} to appear", f.display()), || f.exists());
    }

    /// How many times the step with this ledger started and got to its end.
    fn ledger(&self, tag: &str) -> (usize, usize) {
        let text = std::fs::read_to_string(self.file(&format!("{tag}.ledger"))).unwrap_or_default();
        let count = |w: &str| text.lines().filter(|l| *l == w).count();
        (count("start"), count("end"))
    }

    fn apply(&self, extra: &[&str]) -> Run {
        self.scene.apply_with(extra)
    }

    /// An apply after a crash, which is never refused for the lock.
    fn resume(&self, extra: &[&str]) -> Run {
        self.apply(extra).expect_stderr_lacks("locked")
    }

    fn mark(&self, pair: &str, what: &str) {
        self.scene.mark(pair, what);
    }

    /// An apply started in the background that the test kills with SIGKILL.
    fn spawn_killed_apply(&self) -> Running {
        self.apply(&[]).expect_signal(libc::SIGKILL).spawn()
    }

    /// Stops a held command left running on the target by a killed runner, and waits until
    /// it is gone, so that it cannot append to the ledger behind the resume's back.
    fn stop_remote(&self, tag: &str) {
        let pid = read_pid(self.dir(), &format!("{tag}.pid"));
        kill_group(pid);
        wait_until(&format!("remote command {tag} (pid {pid}) to end"), || {
            !process_running(pid)
        });
    }

    fn attempts(&self) -> Vec<Attempt> {
        all_attempts(&self.db())
    }

    /// Run attempts of one pair, in order.
    fn runs_of(&self, step: &str, target: &str) -> Vec<Attempt> {
        self.attempts()
            .into_iter()
            .filter(|a| a.step == step && a.target == target && a.kind == "run")
            .collect()
    }

    fn marks(&self) -> Vec<Mark> {
        let conn = open_journal(&self.db());
        let mut stmt = conn
            .prepare("SELECT step_id, target, mark, user FROM marks ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok(Mark {
                step: r.get(0)?,
                target: r.get(1)?,
                mark: r.get(2)?,
                user: r.get(3)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// `(outcome, ended_at)` of every run, oldest first.
    fn runs(&self) -> Vec<(Option<String>, Option<String>)> {
        let conn = open_journal(&self.db());
        let mut stmt = conn
            .prepare("SELECT outcome, ended_at FROM runs ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Starts apply, waits until every tag in `held` has started on its target, kills the
    /// runner with SIGKILL and stops the commands it left behind. Checks that the runner
    /// really died by the signal and that it left its lock file naming itself (the lock
    /// itself is a flock the kernel dropped). Returns the killed runner's pid.
    fn crash_during(&self, held: &[&str], also: impl Fn()) -> u32 {
        let mut bg = self.spawn_killed_apply();
        for tag in held {
            self.wait_started(tag);
        }
        also();
        let pid = bg.pid();
        bg.kill();
        // The runner died by SIGKILL.
        bg.wait();
        for tag in held {
            self.stop_remote(tag);
        }
        // The lock file still names the dead runner: nothing cleaned up after it.
        let lock = std::fs::read_to_string(self.file(".runner/cutover.db.lock")).unwrap();
        let holder: serde_json::Value = serde_json::from_str(&lock).unwrap();
        assert_eq!(holder["pid"], u64::from(pid), "lock file: {lock}");
        assert_eq!(holder["command"], "apply", "lock file: {lock}");
        pid
    }
}

// ---- 1a: in doubt, with a check --------------------------------------------------------

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

// ---- 1b: in doubt, idempotent ----------------------------------------------------------

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

// ---- 1c: in doubt, neither check nor idempotent -----------------------------------------

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

// ---- 3: a step changed after it succeeded ------------------------------------------------

#[test]
fn changed_step_is_refused_until_accepted_and_reruns_only_after_mark_retry() {
    let mut p = Play::new(&["127.0.3.7"]);
    let prep = |text: &str| {
        step(
            "prep",
            "h1",
            &format!("echo start >> {{dir}}/prep.ledger; echo {text} >> {{dir}}/prep.text"),
        )
    };
    // `next` fails until its go file exists, so the first apply stops after `prep`.
    let next = || {
        step(
            "next",
            "h1",
            "test -f {dir}/next.go && echo start >> {dir}/next.ledger",
        )
    };
    p.write([prep("first"), next()]);
    p.apply(&[]).expect_exit(1).run();
    assert_eq!(p.ledger("prep"), (1, 0));

    p.write([prep("second"), next()]);
    std::fs::write(p.file("next.go"), "").unwrap();
    p.apply(&[])
        .expect_exit(4)
        .expect_stderr_contains("`prep` on `h1`")
        .expect_stderr_contains("--accept-changed")
        .expect_stderr_lacks("`next`")
        .run();
    assert_eq!(p.ledger("prep"), (1, 0));
    assert_eq!(p.ledger("next"), (0, 0), "nothing ran");

    p.apply(&["--accept-changed"]).expect_exit(0).run();
    assert_eq!(
        p.ledger("prep"),
        (1, 0),
        "the accepted step was not run again"
    );
    assert_eq!(p.ledger("next"), (1, 0));

    // The acceptance is remembered: the next apply neither asks again nor runs anything.
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("prep"), (1, 0));

    p.mark("prep", "retry");
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("prep"), (2, 0));
    assert_eq!(
        std::fs::read_to_string(p.file("prep.text")).unwrap(),
        "first\nsecond\n",
        "the changed command ran"
    );
    assert_eq!(p.ledger("next"), (1, 0), "the unchanged success was kept");
}

// ---- 4: Ctrl-C -------------------------------------------------------------------------

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

// ---- 5: intent before action --------------------------------------------------------------

#[test]
fn attempt_is_committed_as_running_before_its_command_starts() {
    let mut p = Play::new(&["127.0.3.10"]);
    let d = p.dir().display().to_string();
    let db = p.db().display().to_string();
    // The command photographs the journal (database and write-ahead log) as it starts.
    let snap = format!(
        "mkdir -p {d}/snap; cp {db} {d}/snap/j.db; if [ -f {db}-wal ]; then cp {db}-wal {d}/snap/j.db-wal; fi"
    );
    p.write([p.quick("before", "h1"), step("probe", "h1", &snap)]);
    p.apply(&[]).expect_exit(0).run();

    let copy = all_attempts(&p.file("snap/j.db"));
    let probe: Vec<_> = copy.iter().filter(|a| a.step == "probe").collect();
    assert_eq!(probe.len(), 1, "{copy:?}");
    assert_eq!(
        (
            probe[0].target.as_str(),
            probe[0].kind.as_str(),
            probe[0].state.as_str()
        ),
        ("h1", "run", "running")
    );
    // The earlier step's outcome was committed too, and the run had not ended.
    let before: Vec<_> = copy.iter().filter(|a| a.step == "before").collect();
    assert_eq!(before.len(), 1, "{copy:?}");
    assert_eq!(before[0].state, "succeeded");
    let conn = open_journal(&p.file("snap/j.db"));
    let ended: Option<String> = conn
        .query_row("SELECT ended_at FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ended, None);
    // And the live journal has the outcome.
    assert_eq!(p.runs_of("probe", "h1")[0].state, "succeeded");
}

// ---- 6: a crash during a fan-out ----------------------------------------------------------

#[test]
fn kill9_during_fan_out_keeps_the_finished_host_and_decides_the_others_by_check() {
    let mut p = Play::new(&["127.0.3.11", "127.0.3.12", "127.0.3.13"]);
    let d = p.dir().display().to_string();
    let tag = "fan-{{ target.name }}";
    let work = format!("touch {d}/{tag}.work; ");
    p.write([
        step("fan", "[h1, h2, h3]", &p.held(tag, "", &work))
            .text("check", &format!("test -f {d}/{tag}.work")),
        p.quick("after", "h1"),
    ]);
    // h1 runs through; h2 and h3 stay in flight.
    p.hold("fan-h2");
    p.hold("fan-h3");
    p.crash_during(&["fan-h2", "fan-h3"], || {
        wait_until("fan on h1 to succeed", || {
            p.runs_of("fan", "h1")
                .first()
                .is_some_and(|a| a.state == "succeeded")
        });
    });
    assert_eq!(p.ledger("fan-h1"), (1, 1));
    // h2 had done its work when the runner died; h3 had not.
    std::fs::write(p.file("fan-h2.work"), "").unwrap();
    p.release("fan-h2");
    p.release("fan-h3");

    p.resume(&[])
        .expect_exit(0)
        .expect_stdout_contains("fan on h1: done in an earlier run")
        .expect_stdout_contains("fan on h2 was in flight when runner stopped: check passed: done")
        .expect_stdout_contains(
            "fan on h3 was in flight when runner stopped: check failed: run again",
        )
        .expect_stdout_lacks("fan on h1 was in flight")
        .run();

    assert_eq!(
        p.ledger("fan-h1"),
        (1, 1),
        "the finished host did not run again"
    );
    assert_eq!(p.ledger("fan-h2"), (1, 0));
    assert_eq!(p.ledger("fan-h3"), (2, 1));
    assert_eq!(p.ledger("after"), (1, 0));
    let states =
        |t: &str| -> Vec<String> { p.runs_of("fan", t).into_iter().map(|a| a.state).collect() };
    assert_eq!(states("h1"), ["succeeded"]);
    assert_eq!(states("h2"), ["interrupted"]);
    assert_eq!(states("h3"), ["interrupted", "succeeded"]);
    let checks_h1 = p
        .attempts()
        .into_iter()
        .filter(|a| a.step == "fan" && a.target == "h1" && a.kind == "check")
        .count();
    assert_eq!(checks_h1, 1, "h1's check ran once, after its own run");
}

// ---- an upload cut short by SIGKILL ------------------------------------------------------

/// Processes on this machine (the target) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
        })
        .collect()
}

/// A large upload is hashed on the target by a process that follows the file as it is
/// written. Killing the runner mid-upload must not leave that process behind, and the next
/// apply sends the whole file again (the step is idempotent) and verifies it.
#[test]
fn kill9_during_an_upload_leaves_no_hashing_process_and_resume_sends_it_again() {
    let mut p = Play::new(&["127.0.3.15"]);
    let data = common::pseudo_random_bytes(128 * 1024 * 1024, 15);
    std::fs::write(p.file("big.bin"), &data).unwrap();
    let dest = p.file("big.copy");
    p.write([bare("send")
        .key("on", "h1")
        .key(
            "upload",
            &format!("{{ src: big.bin, dest: '{}' }}", dest.display()),
        )
        .key("idempotent", "true")]);

    let mut bg = p.spawn_killed_apply();
    // The upload writes a new file beside the destination (`.big.copy.runner-TOKEN`) and
    // hashes that while it grows.
    let needle = p.file(".big.copy.runner-").display().to_string();
    wait_until("the hashing process on the target", || {
        processes_with(&needle)
            .iter()
            .any(|pid| process_running(*pid))
    });
    bg.kill();
    bg.wait();
    let copied = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    assert!(
        copied < data.len() as u64,
        "the upload finished before the kill ({copied} bytes); nothing was cut short"
    );
    wait_until("the hashing process to end with its connection", || {
        processes_with(&needle)
            .iter()
            .all(|pid| !process_running(*pid))
    });

    p.resume(&[]).expect_exit(0).run();
    assert!(std::fs::read(&dest).unwrap() == data, "the copy differs");
    let states: Vec<String> = p
        .runs_of("send", "h1")
        .into_iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, ["interrupted", "succeeded"]);
}

// ---- 7: an attached local command dies with its runner -----------------------------------

#[test]
fn kill9_of_the_runner_takes_its_attached_local_command_with_it() {
    let mut p = Play::local();
    p.write([step("copy", "here", &p.held("copy", "", "")).key("idempotent", "true")]);
    p.hold("copy");
    let mut bg = p.spawn_killed_apply();
    p.wait_started("copy");
    let pid = read_pid(p.dir(), "copy.pid");
    bg.kill();
    bg.wait();
    // Nothing keeps running unattended, although its hold file is still there.
    assert!(
        common::stops_within(pid, PATIENCE),
        "the local command {pid} outlived its runner"
    );

    // The resume runs it again, alone: one end, and only the second start reached it.
    p.release("copy");
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("copy"), (2, 1));
}
