//! `runner apply --background`: the run goes on without the terminal it was started from.
//!
//! The command re-runs itself in a session of its own (no controlling terminal, so no SIGHUP
//! when the SSH session or the tmux pane goes), stdin from `/dev/null`. Until the run has
//! started (the journal's lock taken, the run recorded), the child's output comes back to the
//! starting command through a pipe and is shown there, so an error (bad input, a locked
//! journal) reads as in the foreground and its exit code is the starting command's. Once the
//! run has started, the child sends its run id over a second pipe, moves its own output to
//! `runner.log` in the run's folder and closes the pipes; the starting command prints where to
//! look and exits 0.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::engine::event::{Event, Reporter};

/// The environment variable naming the status pipe's file descriptor in the child.
pub const STATUS_FD_ENV: &str = "RUNNER_BACKGROUND_FD";

/// The run's own log file in its folder: what a foreground run prints on its terminal.
pub const LOG_NAME: &str = "runner.log";

/// The run started in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub run_id: String,
    pub log: PathBuf,
}

/// What became of the background start.
#[derive(Debug)]
pub enum Launch {
    Started(Started),
    /// The child ended before the run started, with this exit code (its messages were shown).
    Failed(i32),
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints; pipe2 fills it on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts this program again with `args` (the same command without `--background`) in a
/// session of its own, relays its messages until its run has started, and says how it went.
/// `relay` receives the child's output before the start (errors, notes).
pub fn launch(args: &[OsString], relay: &mut dyn Write) -> std::io::Result<Launch> {
    let exe = std::env::current_exe()?;
    let (status_r, status_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let status_fd = status_w.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env(STATUS_FD_ENV, status_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w.try_clone()?))
        .stderr(Stdio::from(out_w));
    // SAFETY: only async-signal-safe calls (setsid, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The status pipe's write end is the one descriptor the child keeps.
            if libc::fcntl(status_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // Our copies of the write ends must go, or the reads below would never see the end.
    drop(cmd);
    drop(status_w);

    let mut out = File::from(out_r);
    let mut buf = [0u8; 4096];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = relay.write_all(&buf[..n]);
                let _ = relay.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let mut status = String::new();
    let _ = File::from(status_r).read_to_string(&mut status);
    if let Some(rest) = status.strip_prefix("started ") {
        if let Some((run_id, log)) = rest.trim_end().split_once(' ') {
            return Ok(Launch::Started(Started {
                pid: child.id(),
                run_id: run_id.to_string(),
                log: PathBuf::from(log),
            }));
        }
    }
    let code = child.wait()?.code().unwrap_or(1);
    Ok(Launch::Failed(if code == 0 { 1 } else { code }))
}

/// The child's side: the status pipe named in the environment, if this process was started by
/// [`launch`]. Reads and removes the variable (the steps' commands must not inherit it).
pub struct Announcer {
    fd: Mutex<Option<OwnedFd>>,
}

impl Announcer {
    pub fn from_env() -> Option<Announcer> {
        let value = std::env::var(STATUS_FD_ENV).ok()?;
        std::env::remove_var(STATUS_FD_ENV);
        let fd: RawFd = value.parse().ok()?;
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // Not inherited by the commands the run starts.
        // SAFETY: sets a flag on a descriptor we were handed and now own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: the descriptor was handed to this process for it alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Some(Announcer {
            fd: Mutex::new(Some(fd)),
        })
    }

    /// The run has started: stdout and stderr go to `runner.log` in `run_dir` from now on, and
    /// the starting command is told the run id and that log. Only the first call does anything.
    pub fn started(&self, run_id: &str, run_dir: &Path) {
        let Ok(mut guard) = self.fd.lock() else {
            return;
        };
        let Some(fd) = guard.take() else {
            return;
        };
        let log = run_dir.join(LOG_NAME);
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            Ok(f) => {
                let _ = std::io::stdout().flush();
                // SAFETY: dup2 onto the standard descriptors, which this process owns.
                unsafe {
                    libc::dup2(f.as_raw_fd(), 1);
                    libc::dup2(f.as_raw_fd(), 2);
                }
            }
            Err(e) => tracing::warn!("cannot write {}: {e}", log.display()),
        }
        let mut status = File::from(fd);
        let _ = writeln!(status, "started {run_id} {}", log.display());
    }
}

/// The child's reporter: announces the start, then passes every event on.
pub struct Child {
    pub inner: std::sync::Arc<dyn Reporter>,
    pub announcer: Announcer,
}

impl Reporter for Child {
    fn event(&self, e: &Event) {
        if let Event::RunStarted {
            run_id, run_dir, ..
        } = e
        {
            self.announcer.started(run_id, Path::new(run_dir));
        }
        self.inner.event(e);
    }

    fn hang_up(&self) {
        self.inner.hang_up();
    }
}
