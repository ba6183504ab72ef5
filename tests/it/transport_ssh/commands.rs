//! Commands over ssh report their exit codes with separate, streamed output, share one session, run
//! scripts that are removed after, and a timeout or cancel kills the remote process tree.

use super::*;

#[test]
fn exec_reports_exit_codes_and_separates_streams() {
    let sshd = Sshd::start("127.0.0.2");
    let mut t = transport(&sshd);
    t.connect().expect("connect");

    checks::exit_codes_and_separate_streams(&mut t);

    // Quoting survives the trip: single quotes, $, backslashes, newlines.
    let out = run_sh(
        &mut t,
        "x='it'\\''s $HOME'\nprintf '%s\\n' \"$x\" 'a\\b'",
        None,
    )
    .expect("exec");
    assert_eq!(out.stdout, "it's $HOME\na\\b\n");

    // Plenty of output on both streams at once must neither block nor get lost.
    let out = run_sh(
        &mut t,
        "head -c 3000000 /dev/zero | tr '\\0' o & head -c 2000000 /dev/zero | tr '\\0' e >&2; wait",
        None,
    )
    .expect("exec");
    assert_eq!(out.exit, CommandExit::Code(0));
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stdout.bytes().all(|b| b == b'o'));
    assert_eq!(out.stderr.len(), 2_000_000);
    assert!(out.stderr.bytes().all(|b| b == b'e'));
}

#[test]
fn output_is_streamed_while_the_command_runs() {
    let sshd = Sshd::start("127.0.0.3");
    let mut t = transport(&sshd);
    checks::output_is_streamed_while_the_command_runs(&mut t, sshd.dir());
}

#[test]
fn sequential_execs_reuse_one_session() {
    let sshd = Sshd::start("127.0.0.4");
    let mut t = transport(&sshd);
    // The command's parent is runner's wrapper; the wrapper's parent is sshd's per-connection
    // process: one value means one session.
    let mut parents = Vec::new();
    for i in 0..25 {
        let script = format!("cut -d' ' -f4 /proc/$PPID/stat; exit {}", i % 3);
        let out = run_sh(&mut t, &script, None).expect("exec");
        assert_eq!(out.exit, CommandExit::Code(i64::from(i % 3)));
        parents.push(out.stdout.trim().to_string());
    }
    parents.dedup();
    assert_eq!(parents.len(), 1, "several sessions: {parents:?}");
}

#[test]
fn timeout_kills_the_remote_process_tree() {
    let sshd = Sshd::start("127.0.0.9");
    let mut t = transport(&sshd);
    let out = checks::timeout_stops_the_process_tree(&mut t, sshd.dir());
    assert!(!out.stderr.contains("runner-pid"), "{:?}", out.stderr);

    // The session is still good for the next step.
    assert_eq!(
        run_sh(&mut t, "echo next", None).expect("exec").stdout,
        "next\n"
    );
}

#[test]
fn cancel_kills_the_remote_process_tree() {
    let sshd = Sshd::start("127.0.0.10");
    let mut t = transport(&sshd);
    // The child ignores SIGTERM, so stopping it needs the SIGKILL that follows the grace.
    checks::cancel_stops_the_process_tree(
        &mut t,
        sshd.dir(),
        "(trap '' TERM; sleep 300) & echo $! > '{dir}/child'; echo $$ > '{dir}/shell'; echo ready; wait",
    );
}

#[test]
fn run_script_runs_the_file_and_removes_it() {
    let sshd = Sshd::start("127.0.0.12");
    let mut t = transport(&sshd);
    let d = sshd.dir().display().to_string();
    let script = sshd.dir().join("step.sh");
    fs::write(
        &script,
        format!("echo \"$0\" > '{d}/script-path'\necho from-script\necho oops >&2\nexit 4\n"),
    )
    .expect("write script");
    let ctl = Control::new(Some(Duration::from_secs(60)));
    let mut chunks = Vec::new();
    let exit = t
        .run_script(&script, Shell::Sh, &ctl, &mut |s, b| {
            chunks.push((s, b.to_vec()))
        })
        .expect("run_script");
    let out = common::collect(exit, chunks);
    assert_eq!(out.exit, CommandExit::Code(4));
    assert_eq!(out.stdout, "from-script\n");
    assert_eq!(out.stderr, "oops\n");
    let remote_path = fs::read_to_string(sshd.dir().join("script-path")).expect("read");
    let remote_path = remote_path.trim();
    assert!(remote_path.starts_with("/tmp/runner-"), "{remote_path}");
    assert!(
        !Path::new(remote_path).exists(),
        "{remote_path} was not removed"
    );

    // Removed also when the script is stopped.
    fs::write(
        &script,
        format!("echo \"$0\" > '{d}/script-path2'\nsleep 300\n"),
    )
    .expect("write script");
    let ctl = Control::new(Some(Duration::from_secs(1)));
    let exit = t
        .run_script(&script, Shell::Sh, &ctl, &mut |_, _| {})
        .expect("run_script");
    assert_eq!(exit, CommandExit::TimedOut);
    let remote_path = fs::read_to_string(sshd.dir().join("script-path2")).expect("read");
    assert!(!Path::new(remote_path.trim()).exists());
}
