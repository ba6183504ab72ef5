//! One apply of the mixed mode as it really runs: the runner binary started through the playbook or
//! its symlink, with the faults of the round (SIGHUP, SIGTERM, `kill -9`, a second apply that must
//! find the lock taken), then `runner mark`, and no local command left behind.

use super::*;

fn runner_cmd(args: &[&std::ffi::OsStr], log: &fs::File) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.args(args)
        .env_remove("RUNNER_NOW")
        // The local target finds its ledger by this, as the sshd targets do.
        .env_remove("SSH_CONNECTION")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log.try_clone().expect("clone log handle"));
    c
}

pub(super) fn mixed_apply(
    m: &Mixed,
    via_alias: bool,
    accept: bool,
    f: Faults,
    n: usize,
) -> MixedApply {
    use std::os::unix::process::ExitStatusExt;
    let (path, other) = if via_alias {
        (&m.alias, &m.real)
    } else {
        (&m.real, &m.alias)
    };
    let log_path = m.dir.path().join(format!("apply-{n}.log"));
    let log = fs::File::create(&log_path).expect("create apply log");
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["apply".as_ref(), path.as_os_str(), "--quiet".as_ref()];
    if accept {
        args.push("--accept-changed".as_ref());
    }
    let mut child = runner_cmd(&args, &log).spawn().expect("spawn runner");
    let started = Instant::now();
    let mut out = MixedApply {
        code: None,
        signal: None,
        log: String::new(),
        killed_at: None,
        hup_sent: false,
        term_sent: false,
        local_busy: false,
        twin: None,
    };
    let mut twin: Option<(std::process::Child, PathBuf)> = None;
    let due = |at: Option<Duration>| at.is_some_and(|t| started.elapsed() >= t);
    loop {
        if let Some((t, tlog)) = twin.as_mut() {
            if let Some(status) = t.try_wait().expect("wait for the second apply") {
                let first_alive = child.try_wait().expect("wait for runner").is_none();
                out.twin = Some((
                    status.code(),
                    first_alive,
                    fs::read_to_string(&*tlog).unwrap_or_default(),
                ));
                twin = None;
            }
        }
        if let Some(status) = child.try_wait().expect("wait for runner") {
            out.code = status.code();
            out.signal = status.signal();
            break;
        }
        let limit = f.kill.unwrap_or(APPLY_TIMEOUT);
        let kill_now = started.elapsed() >= limit
            && (!f.kill_in_local
                || started.elapsed() >= APPLY_TIMEOUT
                || local_commands(&m.local_marker) > 0);
        if kill_now {
            out.local_busy = f.kill.is_some() && local_commands(&m.local_marker) > 0;
            child.kill().expect("kill runner");
            let status = child.wait().expect("reap runner");
            out.code = status.code();
            out.signal = status.signal();
            if f.kill.is_some() {
                out.killed_at = Some(now_ns());
            } else {
                panic!(
                    "apply did not finish within {APPLY_TIMEOUT:?}:\n{}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            break;
        }
        // Once the run has begun (it holds the lock): before its signal handlers are set, a
        // SIGHUP ends any program, and the few milliseconds that takes are not this test's.
        if !out.hup_sent && due(f.hup) && holds_lock(m, child.id()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
            out.hup_sent = true;
        }
        if !out.term_sent && due(f.term) {
            // SAFETY: as above.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            out.term_sent = true;
        }
        // Only once the first apply holds the lock: started earlier, the second could take it
        // first, and which of the two runs would be a matter of luck, not of the lock.
        if twin.is_none() && out.twin.is_none() && due(f.twin) && holds_lock(m, child.id()) {
            let tlog_path = m.dir.path().join(format!("apply-{n}-twin.log"));
            let tlog = fs::File::create(&tlog_path).expect("create twin log");
            let mut targs: Vec<&std::ffi::OsStr> =
                vec!["apply".as_ref(), other.as_os_str(), "--quiet".as_ref()];
            if accept {
                targs.push("--accept-changed".as_ref());
            }
            let t = runner_cmd(&targs, &tlog)
                .spawn()
                .expect("spawn second runner");
            twin = Some((t, tlog_path));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some((mut t, tlog)) = twin {
        let status = t.wait().expect("wait for the second apply");
        out.twin = Some((
            status.code(),
            false,
            fs::read_to_string(&tlog).unwrap_or_default(),
        ));
    }
    out.log = fs::read_to_string(&log_path).unwrap_or_default();
    out
}

/// Whether process `pid` holds the `flock` on the round's journal lock (from /proc/locks: a
/// probe with `flock` itself could take the lock from under the runner).
fn holds_lock(m: &Mixed, pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(runner::journal::lock::lock_path(&m.state())) else {
        return false;
    };
    let inode = format!(":{}", meta.ino());
    fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"FLOCK")
                && f.get(4) == Some(&pid.to_string().as_str())
                && f.get(5).is_some_and(|dev| dev.ends_with(&inode))
        })
}

pub(super) fn mixed_mark(m: &Mixed, via_alias: bool, pair: &str, decision: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("mark")
        .arg(if via_alias { &m.alias } else { &m.real })
        .arg(pair)
        .arg(decision)
        .arg("--reason")
        .arg("torture: read the ledger on the target")
        .env_remove("RUNNER_NOW")
        .output()
        .expect("run runner mark");
    assert_eq!(
        out.status.code(),
        Some(0),
        "runner mark {pair} {decision} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Processes of this round's local commands.
pub(super) fn local_commands(marker: &str) -> usize {
    processes()
        .iter()
        .filter(|(_, _, cmd)| cmd.contains(marker))
        .count()
}
