//! The local command's process group: reading its output, its exit code, and stopping every
//! process it started (SIGTERM to the group, then SIGKILL).

use super::*;

pub(super) fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<Msg>,
) {
    thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.send(Msg::Eof);
                    return;
                }
                Ok(n) => {
                    if tx.send(Msg::Data(stream, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Msg::Failed(stream, e));
                    return;
                }
            }
        }
    });
}

pub(super) fn exit_code(status: ExitStatus) -> i64 {
    if let Some(code) = status.code() {
        // On Windows the code is a u32 that std hands out as i32; undo the sign.
        return if cfg!(windows) {
            i64::from(code as u32)
        } else {
            i64::from(code)
        };
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + i64::from(sig);
        }
    }
    -1
}

/// Stop the child's whole process group: SIGTERM, then SIGKILL once the grace is over, and reap
/// the child. Members that outlive the leader are found through the group id.
#[cfg(unix)]
pub(super) fn kill_tree(child: &mut Child) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::other("process id out of range"))?;
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + KILL_GRACE;
    let mut reaped = false;
    loop {
        if !reaped {
            reaped = child.try_wait()?.is_some();
        }
        if reaped && !group_has_live_members(pgid) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    signal_group(pgid, libc::SIGKILL);
    child.wait()?;
    // SIGKILL cannot be refused, but dying takes a moment; return once it is done, so that
    // "stopped" really means stopped for whoever looks next.
    let deadline = Instant::now() + KILL_GRACE;
    while group_has_live_members(pgid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn kill_tree(child: &mut Child) -> io::Result<()> {
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[cfg(unix)]
fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid <= 1 {
        return; // never signal "every process" by accident
    }
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether any process of group `pgid` still runs. Zombies do not count: they have stopped,
/// they only wait for a parent (possibly an init that never reaps) to collect them.
#[cfg(unix)]
fn group_has_live_members(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(-pgid, 0) } == 0;
    if !exists {
        return false;
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        return true; // no /proc: assume the worst, the caller will SIGKILL
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        if pgrp.parse::<libc::pid_t>().ok() == Some(pgid) && *state != "Z" && *state != "X" {
            return true;
        }
    }
    false
}
