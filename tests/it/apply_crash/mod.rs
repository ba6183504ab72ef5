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

mod changed_step;
mod crash_points;
mod ctrl_c;
mod in_doubt;

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
