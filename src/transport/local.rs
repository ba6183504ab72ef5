//! Steps that run on the machine the runner runs on.
//!
//! Each command is a child process in its own process group, so that a timeout or cancel can
//! stop everything it started (SIGTERM to the group, SIGKILL after a short grace).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::shell::powershell_encode;
use super::{upload_mismatch, Control, Exit, FileDigest, Shell, Stream, Transport, TransportError};

/// How long a stopped command gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How often a running command checks for cancel and timeout.
const TICK: Duration = Duration::from_millis(50);
/// After the command was stopped, how long to wait for the last output.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);
const CHUNK: usize = 64 * 1024;

/// Runs commands as child processes of the runner, in `workdir`. Relative upload destinations
/// are relative to `workdir` too.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    workdir: PathBuf,
}

impl LocalTransport {
    pub fn new(workdir: PathBuf) -> Self {
        LocalTransport { workdir }
    }

    fn target(&self) -> String {
        self.describe()
    }

    fn command_for(&self, shell: Shell, script: Option<&str>, file: Option<&Path>) -> Command {
        let mut cmd = match shell {
            Shell::Sh => {
                let mut c = Command::new("sh");
                match (script, file) {
                    (Some(s), _) => {
                        c.arg("-c").arg(s);
                    }
                    (None, Some(f)) => {
                        c.arg(f);
                    }
                    (None, None) => {}
                }
                c
            }
            Shell::PowerShell => {
                // Windows PowerShell where it exists, PowerShell 7 (`pwsh`) elsewhere.
                let exe = if cfg!(windows) {
                    "powershell.exe"
                } else {
                    "pwsh"
                };
                let mut c = Command::new(exe);
                c.args(["-NoProfile", "-NonInteractive"]);
                match (script, file) {
                    (Some(s), _) => {
                        c.arg("-EncodedCommand").arg(powershell_encode(s));
                    }
                    (None, Some(f)) => {
                        c.args(["-ExecutionPolicy", "Bypass", "-File"]).arg(f);
                    }
                    (None, None) => {}
                }
                c
            }
            Shell::Cmd => {
                let mut c = Command::new("cmd.exe");
                c.arg("/d").arg("/c");
                match (script, file) {
                    (Some(s), _) => {
                        c.arg(s);
                    }
                    (None, Some(f)) => {
                        c.arg(f);
                    }
                    (None, None) => {}
                }
                c
            }
        };
        cmd.current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        cmd
    }

    fn run(
        &self,
        mut cmd: Command,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<Exit, TransportError> {
        if !self.workdir.is_dir() {
            return Err(TransportError::Io {
                context: format!("cannot run in working directory {}", self.workdir.display()),
                source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TransportError::ShellUnavailable {
                    target: self.target(),
                    shell,
                    message: format!(
                        "{} is not installed or not on PATH",
                        cmd.get_program().to_string_lossy()
                    ),
                })
            }
            Err(source) => {
                return Err(TransportError::Io {
                    context: format!("cannot start {}", cmd.get_program().to_string_lossy()),
                    source,
                })
            }
        };
        let started = Instant::now();
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut open_streams = 0;
        if let Some(stdout) = child.stdout.take() {
            spawn_reader(stdout, Stream::Stdout, tx.clone());
            open_streams += 1;
        }
        if let Some(stderr) = child.stderr.take() {
            spawn_reader(stderr, Stream::Stderr, tx.clone());
            open_streams += 1;
        }
        drop(tx);

        // Like sshd, wait for both pipes to close, not just for the child: output of anything
        // it left running in the background would otherwise be lost.
        let mut stopped: Option<Exit> = None;
        while open_streams > 0 {
            let wait = match ctl.timeout {
                Some(t) => t.saturating_sub(started.elapsed()).min(TICK),
                None => TICK,
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Data(stream, bytes)) => out(stream, &bytes),
                Ok(Msg::Eof) => open_streams -= 1,
                Ok(Msg::Failed(stream, e)) => {
                    tracing::warn!(?stream, error = %e, "reading command output failed");
                    open_streams -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if ctl.is_cancelled() {
                stopped = Some(Exit::Cancelled);
            } else if ctl.timeout.is_some_and(|t| started.elapsed() >= t) {
                stopped = Some(Exit::TimedOut);
            }
            if stopped.is_some() {
                break;
            }
        }

        if let Some(exit) = stopped {
            kill_tree(&mut child).map_err(|e| TransportError::KillFailed {
                target: self.target(),
                reason: if exit == Exit::Cancelled {
                    "was cancelled"
                } else {
                    "timed out"
                },
                message: e.to_string(),
            })?;
            // Whatever was written before the end is still worth showing.
            let deadline = Instant::now() + DRAIN_AFTER_KILL;
            while open_streams > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(Msg::Data(stream, bytes)) => out(stream, &bytes),
                    Ok(Msg::Eof) | Ok(Msg::Failed(..)) => open_streams -= 1,
                    Err(_) => break,
                }
            }
            return Ok(exit);
        }

        let status = child.wait().map_err(|source| TransportError::Io {
            context: "cannot wait for the command".into(),
            source,
        })?;
        Ok(Exit::Code(exit_code(status)))
    }
}

enum Msg {
    Data(Stream, Vec<u8>),
    Eof,
    Failed(Stream, io::Error),
}

fn spawn_reader(mut pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Msg>) {
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

fn exit_code(status: ExitStatus) -> i64 {
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
fn kill_tree(child: &mut Child) -> io::Result<()> {
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
fn kill_tree(child: &mut Child) -> io::Result<()> {
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

impl Transport for LocalTransport {
    fn describe(&self) -> String {
        format!("local ({})", self.workdir.display())
    }

    fn connect(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    fn exec(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<Exit, TransportError> {
        if script.contains('\0') {
            return Err(TransportError::InvalidScript {
                target: self.target(),
                message: "it contains a NUL byte".into(),
            });
        }
        let cmd = self.command_for(shell, Some(script), None);
        self.run(cmd, shell, ctl, out)
    }

    fn upload(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        _shell: Shell,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TransportError> {
        let dest_path = self.workdir.join(dest);
        if let Some(parent) = dest_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(TransportError::UploadParentMissing {
                    target: self.target(),
                    dest: dest.to_string(),
                    parent: parent.display().to_string(),
                });
            }
        }
        let io_err = |context: String| move |source| TransportError::Io { context, source };
        let mut input =
            fs::File::open(src).map_err(io_err(format!("cannot read {}", src.display())))?;
        let mut output = fs::File::create(&dest_path)
            .map_err(io_err(format!("cannot create {}", dest_path.display())))?;
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(format!("cannot read {}", src.display()))(e)),
            };
            output
                .write_all(&buf[..n])
                .map_err(io_err(format!("cannot write {}", dest_path.display())))?;
            sent += n as u64;
            progress(sent);
        }
        output
            .sync_all()
            .map_err(io_err(format!("cannot write {}", dest_path.display())))?;
        drop(output);

        // Verify what actually landed on disk against the reviewed content.
        let actual = FileDigest::of_file(&dest_path)
            .map_err(io_err(format!("cannot read back {}", dest_path.display())))?;
        if actual != *expected {
            return Err(upload_mismatch(self.target(), src, dest, expected, actual));
        }
        Ok(())
    }

    fn run_script(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<Exit, TransportError> {
        // The script is already a file here; no temporary copy is needed. Make it absolute so
        // that the working directory does not change which file runs.
        let path = if local.is_absolute() {
            local.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|source| TransportError::Io {
                    context: "cannot determine the current directory".into(),
                    source,
                })?
                .join(local)
        };
        if !path.is_file() {
            return Err(TransportError::Io {
                context: format!("cannot run script {}", path.display()),
                source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
            });
        }
        let cmd = self.command_for(shell, None, Some(&path));
        self.run(cmd, shell, ctl, out)
    }
}
