//! What every transport promises, checked the same way for each: exit codes and separate
//! streams, output that arrives while the command still runs, and a timeout or a cancel that
//! stops the command's whole process tree. `dir` is a folder both this test and the target
//! see (the targets are this machine).

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use runner::transport::{CommandExit, Control, Shell, Stream, Transport};

use super::{read_pid, run_sh, stops_within, Output, EXIT_GRACE};

/// The exit code and both streams of a command, apart; 0 and 255 come through as they are.
pub fn exit_codes_and_separate_streams(t: &mut dyn Transport) {
    let out = run_sh(t, "echo out; echo err >&2; exit 3", None).expect("exec");
    assert_eq!(out.exit, CommandExit::Code(3));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(
        out.stderr, "err\n",
        "nothing of the transport's own (a PID marker) leaks into stderr"
    );
    for (script, code) in [("true", 0), ("exit 255", 255)] {
        let exit = run_sh(t, script, None).expect("exec").exit;
        assert_eq!(exit, CommandExit::Code(code), "{script}");
    }
}

/// The command prints "second" only if the test saw "first" while the command still ran.
pub fn output_is_streamed_while_the_command_runs(t: &mut dyn Transport, dir: &Path) {
    let flag = dir.join("seen-first");
    let script = format!(
        "echo first\n\
         i=0; while [ ! -e '{f}' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n\
         [ -e '{f}' ] && echo second",
        f = flag.display()
    );
    let ctl = Control::new(Some(Duration::from_secs(60)));
    let mut stdout = String::new();
    let exit = t
        .exec(&script, Shell::Sh, &ctl, &mut |s, b| {
            if s == Stream::Stdout {
                stdout.push_str(&String::from_utf8_lossy(b));
                if stdout.contains("first") && !flag.exists() {
                    fs::write(&flag, b"").expect("create flag");
                }
            }
        })
        .expect("exec");
    assert_eq!(exit, CommandExit::Code(0));
    assert_eq!(stdout, "first\nsecond\n");
}

/// A command whose shell waits for a child times out after a second: both are stopped.
/// Returns what the command printed, for the transport's own further checks.
pub fn timeout_stops_the_process_tree(t: &mut dyn Transport, dir: &Path) -> Output {
    let d = dir.display();
    let script = format!("sleep 300 & echo $! > '{d}/child'; echo $$ > '{d}/shell'; wait");
    let out = run_sh(t, &script, Some(Duration::from_secs(1))).expect("exec");
    assert_eq!(out.exit, CommandExit::TimedOut);
    assert_tree_stopped(dir);
    out
}

/// `script` writes the pids of its shell and of a child to `{dir}/shell` and `{dir}/child`,
/// then prints `ready` and waits; the test cancels it on `ready`, and both must stop (after
/// SIGKILL where `script` ignores SIGTERM).
pub fn cancel_stops_the_process_tree(t: &mut dyn Transport, dir: &Path, script: &str) {
    let script = script.replace("{dir}", &dir.display().to_string());
    let ctl = Control::new(None);
    let cancel = ctl.cancel.clone();
    let mut stdout = String::new();
    let exit = t
        .exec(&script, Shell::Sh, &ctl, &mut |s, b| {
            if s == Stream::Stdout {
                stdout.push_str(&String::from_utf8_lossy(b));
                if stdout.contains("ready") {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        })
        .expect("exec");
    assert_eq!(exit, CommandExit::Cancelled);
    assert_tree_stopped(dir);
}

/// The processes whose pids are in `dir/shell` and `dir/child` have stopped.
fn assert_tree_stopped(dir: &Path) {
    let shell = read_pid(dir, "shell");
    let child = read_pid(dir, "child");
    assert!(
        stops_within(shell, EXIT_GRACE),
        "the shell {shell} still runs"
    );
    assert!(
        stops_within(child, EXIT_GRACE),
        "its child {child} still runs"
    );
}
