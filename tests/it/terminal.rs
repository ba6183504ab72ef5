//! The runner and the terminal it was started from: a closed terminal (SIGHUP) does not stop
//! the night's run, SIGTERM and Ctrl-C stop it politely and say which signal came, a third
//! Ctrl-C ends it at once, and a closed stdout (`runner ... | head -1`) is not a crash.
//!
//! Steps run on the local transport; synchronisation is by marker files, never by sleeping.

use crate::common::wait_until;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::tmux::Tmux;
use crate::common::{process_running, records, stops_within};
use crate::common_cli::runner;

/// Upper bound for any wait; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(90);

/// YAML single-quoted scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A shell loop that waits (bounded, about 60 s) until `path` exists; exit 9 if it never does.
fn wait_in_shell_for(path: &Path) -> String {
    format!(
        "i=0; until [ -e {p} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
        p = path.display()
    )
}

/// A playbook with one local step that says it started, waits for `go`, then writes the ledger,
/// and a second step after it.
fn playbook(dir: &Path, first_extra: &str) -> PathBuf {
    let started = dir.join("started");
    let go = dir.join("go");
    let ledger = dir.join("ledger");
    let yaml = format!(
        "name: terminal\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n\
         steps:\n\
         - id: long\n  on: here\n  run: {}\n{first_extra}\
         - id: after\n  on: here\n  run: {}\n",
        q(&format!(
            "touch {s}; {w}; echo long >> {l}",
            s = started.display(),
            w = wait_in_shell_for(&go),
            l = ledger.display()
        )),
        q(&format!("echo after; echo after >> {}", ledger.display())),
    );
    let path = dir.join("cutover.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

fn ledger(dir: &Path) -> Vec<String> {
    records::lines(&dir.join("ledger"))
}

fn journal(dir: &Path) -> PathBuf {
    dir.join(".runner").join("cutover.db")
}

fn runs(dir: &Path) -> Vec<(String, Option<String>)> {
    records::runs(&journal(dir))
}

fn attempts(dir: &Path) -> Vec<(String, String, String)> {
    records::attempts(&journal(dir))
}

fn triple(s: (&str, &str, &str)) -> (String, String, String) {
    (s.0.to_string(), s.1.to_string(), s.2.to_string())
}

#[test]
fn a_closed_terminal_does_not_stop_the_run() {
    let dir = tempfile::Builder::new()
        .prefix("runner-hup-")
        .tempdir()
        .expect("tempdir");
    let pb = playbook(dir.path(), "");
    let pid_file = dir.path().join("runner.pid");
    let tmux = Tmux::new(dir.path());
    // The runner replaces the shell, so it is the pane's process and its terminal's session
    // leader: closing the terminal sends it SIGHUP, as a dropped SSH session does.
    let cmd = format!(
        "cd {d} && echo $$ > {p} && exec env -u RUNNER_NOW {bin} apply {pb}",
        d = dir.path().display(),
        p = pid_file.display(),
        bin = env!("CARGO_BIN_EXE_runner"),
        pb = pb.display()
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "night",
        "-x",
        "120",
        "-y",
        "30",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "tmux new-session failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the long step to start", || {
        dir.path().join("started").exists()
    });
    let pid: u32 = fs::read_to_string(&pid_file)
        .expect("read the runner's pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(process_running(pid));

    // The terminal goes away while the step runs.
    let out = tmux.run(&["kill-session", "-t", "night"]);
    assert!(
        out.status.success(),
        "tmux kill-session failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The runner is still there after the hangup: the step may now end.
    fs::write(dir.path().join("go"), b"").expect("create go");
    assert!(
        stops_within(pid, PATIENCE),
        "the runner did not finish after its terminal closed"
    );
    assert_eq!(ledger(dir.path()), ["long", "after"]);
    assert_eq!(
        runs(dir.path()),
        [("apply".to_string(), Some("succeeded".to_string()))],
        "the journal records the run's success"
    );
    assert_eq!(
        attempts(dir.path()),
        [
            triple(("long", "run", "succeeded")),
            triple(("after", "run", "succeeded"))
        ]
    );
    // The run log kept what the terminal no longer showed, to the end of the run.
    let runs_dir = dir.path().join(".runner").join("runs").join("cutover");
    let events: String = fs::read_dir(&runs_dir)
        .expect("the runs folder")
        .map(|e| e.expect("entry").path().join("events.jsonl"))
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        events.contains(r#""event":"output","step":"after""#)
            && events.contains(r#""event":"run_finished","outcome":"succeeded""#),
        "the run log has the output after the hangup and the end of the run:\n{events}"
    );
    let status = runner(&["status", &pb.display().to_string()], dir.path(), &[]);
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
}

/// A runner in the background with its stderr in a file.
struct Background {
    child: Child,
    err: PathBuf,
}

impl Background {
    fn start(pb: &Path) -> Background {
        let dir = pb.parent().expect("folder");
        let err = dir.join("runner.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["apply", &pb.display().to_string()])
            .current_dir(dir)
            .env_remove("RUNNER_NOW")
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("runner.stdout")).expect("stdout file"))
            .stderr(fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start runner");
        Background { child, err }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "runner did not finish:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn sigterm_stops_politely_and_says_which_signal_came() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), "");
    let mut bg = Background::start(&pb);
    wait_until("the long step to start", || {
        dir.path().join("started").exists()
    });
    bg.signal(libc::SIGTERM);
    wait_until("the runner to say it heard SIGTERM", || {
        bg.stderr().contains("SIGTERM")
    });
    // The running step is allowed to finish; nothing new starts.
    fs::write(dir.path().join("go"), b"").expect("create go");
    let code = bg.wait();
    assert_eq!(code, 130, "{}", bg.stderr());
    assert_eq!(ledger(dir.path()), ["long"], "{}", bg.stderr());
    assert_eq!(attempts(dir.path()), [triple(("long", "run", "succeeded"))]);
}

/// Whether process `pid` ignores SIGHUP (`SigIgn` in /proc/PID/status).
fn ignores_sighup(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (libc::SIGHUP - 1);
    status.lines().any(|l| {
        l.strip_prefix("SigIgn:")
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|mask| mask & bit != 0)
    })
}

#[test]
fn a_hangup_while_the_playbook_loads_does_not_end_the_run() {
    // Before its signal handlers exist the runner loads the playbook, which takes a while for
    // a large one. It ignores SIGHUP from its first moments, so a terminal closed then does not
    // end it. The playbook is large enough for its loading to be seen, and its window is always
    // closed, so the run ends at once after loading: exit 3, not the 129 of a hangup.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from(
        "name: big\nwindow:\n  timezone: UTC\n  business_hours:\n    - { days: mon-sun, from: \"00:00\", to: \"23:59\" }\n  margin: 2m\ntargets:\n  here:\n    transport: local\nsteps:\n",
    );
    for i in 0..20_000 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, on: here, run: 'true', idempotent: true, estimate: 1m }}\n"
        ));
    }
    let pb = dir.path().join("big.yaml");
    fs::write(&pb, yaml).expect("write playbook");
    let child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "big.yaml", "--quiet"])
        .current_dir(dir.path())
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    let pid = child.id();
    wait_until("the runner to ignore SIGHUP while it loads", || {
        ignores_sighup(pid)
    });
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGHUP);
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_third_ctrl_c_exits_at_once_and_the_journal_keeps_the_step_in_doubt() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The step refuses the polite stop, so the second Ctrl-C leaves the runner waiting for it.
    let pb = playbook(dir.path(), "");
    let text = fs::read_to_string(&pb).expect("read");
    fs::write(
        &pb,
        text.replacen("'touch ", "'trap \"\" TERM INT; touch ", 1),
    )
    .expect("write");
    let mut bg = Background::start(&pb);
    wait_until("the long step to start", || {
        dir.path().join("started").exists()
    });
    bg.signal(libc::SIGINT);
    wait_until("the first interrupt to be heard", || {
        bg.stderr().contains("no new steps will start")
    });
    // From now on the journal is busy: a runner that goes on stopping the step waits for it
    // (and says it cannot record), one that exits at once does not.
    let busy = rusqlite::Connection::open(journal(dir.path())).expect("open the journal");
    busy.execute_batch("BEGIN IMMEDIATE")
        .expect("take the journal's write lock");
    bg.signal(libc::SIGINT);
    wait_until("the second interrupt to be heard", || {
        bg.stderr().contains("stopping running commands")
    });
    bg.signal(libc::SIGINT);
    let code = bg.wait();
    let stderr = bg.stderr();
    busy.execute_batch("ROLLBACK").expect("release the journal");
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("exiting now"), "{stderr}");
    assert!(
        !stderr.contains("cannot record"),
        "the runner waited to record instead of exiting at once:\n{stderr}"
    );
    // The journal shows the step in flight, so the next apply treats it as in doubt.
    assert_eq!(attempts(dir.path()), [triple(("long", "run", "running"))]);
    fs::write(dir.path().join("go"), b"").expect("create go");
}

/// Runs the binary with a stdout whose reader is already gone.
fn with_closed_stdout(args: &[&str], dir: &Path) -> (i32, String) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe(2) fills two new descriptors, each then owned by exactly one File.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe");
    let (reader, writer) = unsafe {
        use std::os::fd::FromRawFd;
        (fs::File::from_raw_fd(fds[0]), fs::File::from_raw_fd(fds[1]))
    };
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run runner");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_survives_a_closed_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), "");
    fs::write(dir.path().join("go"), b"").expect("create go");
    let pb_s = pb.display().to_string();
    for args in [
        vec!["validate", pb_s.as_str()],
        vec!["schema"],
        vec!["plan", pb_s.as_str()],
        vec!["apply", pb_s.as_str(), "--dry-run"],
        vec!["apply", pb_s.as_str()],
        vec!["apply", pb_s.as_str()],
        vec!["apply", pb_s.as_str(), "--json"],
        vec!["status", pb_s.as_str()],
        vec!["status", pb_s.as_str(), "--format", "json"],
        vec!["report", pb_s.as_str()],
        vec!["report", pb_s.as_str(), "--format", "html"],
        vec!["rollback", pb_s.as_str(), "--yes"],
        vec!["ping", pb_s.as_str()],
        vec!["--help"],
    ] {
        let (code, stderr) = with_closed_stdout(&args, dir.path());
        assert_eq!(code, 0, "runner {args:?} with a closed stdout:\n{stderr}");
        assert!(
            !stderr.contains("panicked"),
            "runner {args:?} panicked:\n{stderr}"
        );
    }
    assert_eq!(ledger(dir.path()), ["long", "after"]);
}
