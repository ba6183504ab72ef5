//! Steps that run on the machine the runner runs on.
//!
//! Each command is a child process in its own process group, so that a timeout or cancel can
//! stop everything it started (SIGTERM to the group, SIGKILL after a short grace).
//!
//! An attached command dies with its runner, as over SSH: an `sh` command runs in the same
//! wrapper as over SSH ([`shell::tracked_sh_args`]), whose watcher holds a pipe from the
//! runner and stops the whole process group when it ends (the kernel closes it when the
//! runner dies, even by `kill -9`); every command also gets `PR_SET_PDEATHSIG` on Linux. A
//! step's command carries the token the engine journaled before starting it, so a leftover is
//! found and stopped by it ([`Transport::stop_orphan`]), as on an SSH target.

mod process;

use process::{exit_code, kill_tree, spawn_reader};

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::shell::{self, powershell_encode, Payload, PidMarkerFilter};
use super::{
    random_token, upload_mismatch, CommandExit, Control, FileDigest, Halt, Identity, Orphan,
    OrphanStop, Pace, Secret, Shell, Stream, Transport, TransportError, ORPHAN_REASON,
};

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

    /// The command for `script` (or the script `file`); for `sh`, in the tracked wrapper
    /// with `token`.
    fn command_for(
        &self,
        shell: Shell,
        script: Option<&str>,
        file: Option<&Path>,
        token: &str,
        ctl: &Control,
    ) -> Command {
        let mut cmd = match shell {
            Shell::Sh => sh_command(script, file, token, ctl),
            Shell::PowerShell => powershell_command(script, file),
            Shell::Cmd => cmd_command(script, file),
        };
        // The `sh` wrapper's watcher reads the pipe until it ends.
        let stdin = if shell == Shell::Sh || ctl.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        if shell != Shell::Sh {
            for (name, value) in &ctl.env {
                cmd.env(name, value.expose());
            }
        }
        cmd.current_dir(&self.workdir)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        #[cfg(target_os = "linux")]
        die_with_runner(&mut cmd);
        cmd
    }

    /// Runs `cmd` to its end, streaming its output to `sink`, or stops it on timeout or
    /// cancel.
    fn run(
        &self,
        mut cmd: Command,
        shell: Shell,
        ctl: &Control,
        sink: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.check_workdir()?;
        let mut child = self.spawn(&mut cmd, shell)?;
        // Held open while the command runs: its end is the watcher's signal to stop the group.
        let stdin = feed_input(&mut child, shell, ctl);
        let started = Instant::now();
        let (rx, mut open_streams) = read_output(&mut child);

        // The wrapper's PID marker is not the command's output.
        let mut marker = (shell == Shell::Sh).then(PidMarkerFilter::new);
        let mut out = |stream: Stream, bytes: &[u8]| match (stream, marker.as_mut()) {
            (Stream::Stderr, Some(m)) => {
                let shown = m.feed(bytes);
                if !shown.is_empty() {
                    sink(stream, &shown);
                }
            }
            _ => sink(stream, bytes),
        };

        let stopped = wait_for_output(&rx, &mut open_streams, ctl, started, &mut out);
        if let Some(exit) = stopped {
            return self.stop_child(&mut child, exit, &rx, open_streams, &mut out);
        }

        let status = child.wait().map_err(|source| TransportError::Io {
            context: "cannot wait for the command".into(),
            source,
        })?;
        drop(stdin);
        if let Some(m) = marker.as_mut() {
            let rest = m.finish();
            if !rest.is_empty() {
                sink(Stream::Stderr, &rest);
            }
        }
        Ok(CommandExit::Code(exit_code(status)))
    }

    /// Refuses to run in a working directory that is not there.
    fn check_workdir(&self) -> Result<(), TransportError> {
        if !self.workdir.is_dir() {
            return Err(TransportError::Io {
                context: format!("cannot run in working directory {}", self.workdir.display()),
                source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            });
        }
        Ok(())
    }

    /// Starts `cmd`; a program that is not there is the shell being unavailable.
    fn spawn(&self, cmd: &mut Command, shell: Shell) -> Result<Child, TransportError> {
        match cmd.spawn() {
            Ok(c) => Ok(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(TransportError::ShellUnavailable {
                    target: self.target(),
                    shell,
                    message: format!(
                        "{} is not installed or not on PATH",
                        cmd.get_program().to_string_lossy()
                    ),
                })
            }
            Err(source) => Err(TransportError::Io {
                context: format!("cannot start {}", cmd.get_program().to_string_lossy()),
                source,
            }),
        }
    }

    /// Kills the stopped command's process tree, then hands on what output arrives within
    /// [`DRAIN_AFTER_KILL`]; returns `exit`.
    fn stop_child(
        &self,
        child: &mut Child,
        exit: CommandExit,
        rx: &mpsc::Receiver<Msg>,
        mut open_streams: usize,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        kill_tree(child).map_err(|e| TransportError::KillFailed {
            target: self.target(),
            reason: if exit == CommandExit::Cancelled {
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
        Ok(exit)
    }

    /// Copies `input` to `output` (the file `temp`), syncs it, and checks what landed on disk
    /// against `expected`; stops when `pace` says so, before the first block or after any.
    #[allow(clippy::too_many_arguments)]
    fn write_verified(
        &self,
        input: &mut fs::File,
        mut output: fs::File,
        temp: &Path,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        pace: Pace<'_>,
    ) -> Result<(), TransportError> {
        let io_err = |context: String| move |source| TransportError::Io { context, source };
        let halted = |halt| TransportError::Halted {
            target: self.target(),
            what: format!("the upload to {dest}"),
            halt,
        };
        let dest_path = temp;
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            pace(sent).map_err(halted)?;
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
        }
        output
            .sync_all()
            .map_err(io_err(format!("cannot write {}", dest_path.display())))?;
        drop(output);

        // Verify what actually landed on disk against the reviewed content.
        let actual = FileDigest::of_file(dest_path)
            .map_err(io_err(format!("cannot read back {}", dest_path.display())))?;
        if actual != *expected {
            return Err(upload_mismatch(self.target(), src, dest, expected, actual));
        }
        pace(sent).map_err(halted)
    }

    fn exec_inner(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        token: Option<&str>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        if script.contains('\0') {
            return Err(TransportError::InvalidScript {
                target: self.target(),
                message: "it contains a NUL byte".into(),
            });
        }
        let token = token.map_or_else(random_token, str::to_string);
        let cmd = self.command_for(shell, Some(script), None, &token, ctl);
        self.run(cmd, shell, ctl, out)
    }

    fn run_script_inner(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        token: Option<&str>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
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
        let token = token.map_or_else(random_token, str::to_string);
        let cmd = self.command_for(shell, None, Some(&path), &token, ctl);
        self.run(cmd, shell, ctl, out)
    }
}

/// `sh` running the script (or `sh FILE`) inside the tracked wrapper with `token`.
fn sh_command(script: Option<&str>, file: Option<&Path>, token: &str, ctl: &Control) -> Command {
    let inline = match (script, file) {
        (Some(s), _) => s.to_string(),
        (None, Some(f)) => format!("sh {}", shell::sh_quote(&f.to_string_lossy())),
        (None, None) => String::new(),
    };
    // Environment and stdin reach the command as over SSH: the wrapper reads them
    // from the pipe it holds ([`shell::input_block`]).
    let [wrapper, tag, arg] =
        shell::tracked_sh_args_with_input(Payload::Inline(&inline), token, ctl.has_input());
    let mut c = Command::new("sh");
    c.arg("-c").arg(wrapper).arg(tag).arg(arg);
    c
}

/// PowerShell running the script (encoded) or the script file.
fn powershell_command(script: Option<&str>, file: Option<&Path>) -> Command {
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

/// `cmd.exe /d /c` running the script or the script file.
fn cmd_command(script: Option<&str>, file: Option<&Path>) -> Command {
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

/// Has the command get SIGTERM when the thread that spawned it ends, or at once if the
/// runner is already gone (`PR_SET_PDEATHSIG`).
#[cfg(target_os = "linux")]
fn die_with_runner(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid, prctl, getppid and kill are async-signal-safe, which is all a
    // pre_exec hook may call.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            // The signal comes when the thread that spawned the child ends: the
            // engine's pair thread, which waits for the command before it ends.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The runner may have died before the prctl took effect.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
            Ok(())
        });
    }
}

/// Writes the command's input (for `sh`, the wrapper's environment and stdin block); returns
/// the stdin pipe to hold open while the command runs, if any.
fn feed_input(child: &mut Child, shell: Shell, ctl: &Control) -> Option<ChildStdin> {
    let mut stdin = child.stdin.take();
    if ctl.has_input() {
        if let Some(pipe) = stdin.as_mut() {
            let data = if shell == Shell::Sh {
                shell::input_block(&ctl.env, ctl.stdin.as_ref())
            } else {
                Secret::new(format!(
                    "{}\n",
                    ctl.stdin.as_ref().map(Secret::expose).unwrap_or_default()
                ))
            };
            // A command that exits without reading its input is not an error.
            let _ = pipe.write_all(data.expose().as_bytes());
        }
        if shell != Shell::Sh {
            // Other shells read their stdin to its end.
            stdin = None;
        }
    }
    stdin
}

/// Starts a reader thread per output pipe; returns where they report and how many there are.
fn read_output(child: &mut Child) -> (mpsc::Receiver<Msg>, usize) {
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
    (rx, open_streams)
}

/// Hands on the command's output until both pipes close, or until cancel or timeout stops
/// it (then how).
fn wait_for_output(
    rx: &mpsc::Receiver<Msg>,
    open_streams: &mut usize,
    ctl: &Control,
    started: Instant,
    out: &mut dyn FnMut(Stream, &[u8]),
) -> Option<CommandExit> {
    // Like sshd, wait for both pipes to close, not just for the child: output of anything
    // it left running in the background would otherwise be lost.
    let mut stopped: Option<CommandExit> = None;
    while *open_streams > 0 {
        let wait = match ctl.timeout {
            Some(t) => t.saturating_sub(started.elapsed()).min(TICK),
            None => TICK,
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Data(stream, bytes)) => out(stream, &bytes),
            Ok(Msg::Eof) => *open_streams -= 1,
            Ok(Msg::Failed(stream, e)) => {
                tracing::warn!(?stream, error = %e, "reading command output failed");
                *open_streams -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if ctl.is_cancelled() {
            stopped = Some(CommandExit::Cancelled);
        } else if ctl.timeout.is_some_and(|t| started.elapsed() >= t) {
            stopped = Some(CommandExit::TimedOut);
        }
        if stopped.is_some() {
            break;
        }
    }
    stopped
}

enum Msg {
    Data(Stream, Vec<u8>),
    Eof,
    Failed(Stream, io::Error),
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
    ) -> Result<CommandExit, TransportError> {
        self.exec_inner(script, shell, ctl, None, out)
    }

    fn exec_identified(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.exec_inner(script, shell, ctl, Some(id.token), out)
    }

    fn run_script_identified(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.run_script_inner(local, shell, ctl, Some(id.token), out)
    }

    fn stop_orphan(&mut self, orphan: &Orphan) -> Result<OrphanStop, TransportError> {
        let Orphan::Process { pid, token } = orphan else {
            return Err(TransportError::KillFailed {
                target: self.target(),
                reason: ORPHAN_REASON,
                message: format!("a local target cannot stop {}", orphan.describe()),
            });
        };
        let line = shell::stop_orphan_command_line(*pid, token);
        let failed = |message: String| TransportError::KillFailed {
            target: self.target(),
            reason: ORPHAN_REASON,
            message,
        };
        let done = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run the stop command: {e}")))?;
        if !done.status.success() {
            return Err(failed(format!(
                "the stop command ended with {}: {}",
                done.status,
                String::from_utf8_lossy(&done.stderr).trim()
            )));
        }
        shell::parse_orphan_stop(&String::from_utf8_lossy(&done.stdout)).map_err(failed)
    }

    fn upload(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        _shell: Shell,
        pace: Pace<'_>,
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
        // Written beside the destination and verified there, then renamed into place: an
        // upload that fails leaves the destination as it was.
        let name = dest_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dest_path.with_file_name(format!(".{name}.runner-{}", random_token()));
        let output = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err(format!("cannot create {}", temp.display())))?;
        let sent = self.write_verified(&mut input, output, &temp, src, expected, dest, pace);
        let placed = sent.and_then(|()| {
            // POSIX rename(2); on Windows MoveFileEx with MOVEFILE_REPLACE_EXISTING.
            fs::rename(&temp, &dest_path).map_err(io_err(format!(
                "cannot move the verified copy {} to {}",
                temp.display(),
                dest_path.display()
            )))
        });
        if placed.is_err() {
            let _ = fs::remove_file(&temp);
        }
        placed
    }

    /// Hashed (within `ctl`), then read again for the bytes: a file that changes in between
    /// does not verify.
    fn read_file(
        &mut self,
        path: &str,
        _shell: Shell,
        ctl: &Control,
        sink: &mut dyn Write,
    ) -> Result<FileDigest, TransportError> {
        let full = self.workdir.join(path);
        let failed =
            |e: io::Error| super::download::read_failed(self.target(), path, e.to_string());
        let started = Instant::now();
        let halt = || {
            if ctl.is_cancelled() {
                Some(Halt::Cancelled)
            } else if ctl.timeout.is_some_and(|t| started.elapsed() >= t) {
                Some(Halt::TimedOut)
            } else {
                None
            }
        };
        let digest = match FileDigest::of_file_while(&full, || halt().is_none()) {
            Ok(d) => d,
            Err(e) => {
                return Err(match halt() {
                    Some(h) => super::download::hash_halted(self.target(), path, h),
                    None => failed(e),
                })
            }
        };
        let mut input = fs::File::open(&full).map_err(failed)?;
        let mut buf = vec![0u8; super::download::READ_BLOCK];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(e)),
            };
            sink.write_all(&buf[..n])
                .map_err(|e| super::download::sink_failed(self.target(), path, e))?;
        }
        Ok(digest)
    }

    fn run_script(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.run_script_inner(local, shell, ctl, None, out)
    }
}
