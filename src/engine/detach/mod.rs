//! Detached steps on POSIX targets: the command runs in its own session and process group on
//! the target, writing its output and exit status to files in a job folder, so it survives a
//! dropped connection and a runner that dies. The runner polls the folder, streams the output
//! and collects the result; a later run that finds the attempt still `running` follows the
//! same job instead of starting it again.
//!
//! The job folder is recorded in the journal (an attempt note) *before* the job starts.
//! Everything here is plain `sh` sent through [`Transport::exec`], so any transport that runs
//! `sh` can run detached jobs.
//!
//! The job runs in the working directory of an attached command (the login folder over SSH,
//! the playbook's folder for `local`, the shell's starting folder on Windows); only the job's
//! own files live in the job folder, `<root>/<run>/<attempt>`. On POSIX targets the root, the
//! run's folder and the job's folder are created private (0700) and checked before every
//! use, with `lstat` semantics: each must be a real directory (no symlink) owned by the
//! connecting user and writable by nobody else. Otherwise another user could plant a `status`
//! (a success for a job that failed) or a `pid` (a process group the runner would kill): the
//! runner refuses to use the folder.

use std::time::{Duration, Instant};

use super::output::PairOutput;
use super::Session;
use crate::journal::{AttemptId, RunId};
use crate::transport::{CommandExit, Control, Shell, Stream, Transport, TransportError};

/// Where job folders live on POSIX targets reached over SSH. (For `local` targets:
/// [`LOCAL_JOB_ROOT`] under the playbook's folder.)
pub const JOB_ROOT: &str = "/tmp/runner-jobs";
/// Where job folders of `local` targets live, under the playbook's folder.
pub const LOCAL_JOB_ROOT: &str = ".runner/jobs";
/// Exit code of a POSIX control script that refused a job folder it does not trust; its
/// reason is on stderr, after [`UNSAFE`].
const UNSAFE_EXIT: i64 = 3;
const UNSAFE: &str = "UNSAFE ";
/// Where job folders live on Windows targets (expanded on the target).
pub const WINDOWS_JOB_ROOT: &str = r"%SystemRoot%\Temp\runner-jobs";
pub use crate::journal::notes::NOTE_JOB_DIR;

/// How jobs are started and watched on a target: with POSIX tools, or with PowerShell
/// (2.0 or later) and a `cmd` wrapper on Windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Posix,
    /// The command itself runs with this shell (cmd or PowerShell).
    Windows(Shell),
}

impl Flavor {
    pub fn of(shell: Shell) -> Flavor {
        match shell {
            Shell::Sh => Flavor::Posix,
            other => Flavor::Windows(other),
        }
    }

    /// The job folder of an attempt: unique per run and attempt, under `root` (POSIX) or
    /// [`WINDOWS_JOB_ROOT`].
    pub fn job_dir(self, root: &str, run: &RunId, attempt: AttemptId) -> String {
        match self {
            Flavor::Posix => format!("{root}/{}/{}", run.as_str(), attempt.0),
            Flavor::Windows(_) => format!("{WINDOWS_JOB_ROOT}\\{}\\{}", run.as_str(), attempt.0),
        }
    }

    /// The shell the control scripts below are written for.
    fn control_shell(self) -> Shell {
        match self {
            Flavor::Posix => Shell::Sh,
            Flavor::Windows(_) => Shell::PowerShell,
        }
    }

    /// Writes the command to the folder, starts it detached with its output and status going
    /// to files, and prints its pid once it is known.
    fn launcher(self, dir: &str, command: &str) -> String {
        match self {
            Flavor::Posix => {
                let d = quote(dir);
                // The folders are made (0700) and checked first; the job runs where this
                // script runs, the working directory of an attached command, and keeps only
                // its own files in the job folder. Making them is tried three times: the end
                // of another job of this run may remove the run's folder in between.
                format!(
                    "umask 077\n{guard}\
                     mk() {{ for x in {all}; do [ -e \"$x\" ] || [ -h \"$x\" ] || mkdir -m 700 \"$x\" 2>/dev/null || return 1; own \"$x\"; done; }}\n\
                     [ -e {root_parent} ] || mkdir -p {root_parent} || exit 1\n\
                     mk || mk || mk || {{ echo 'cannot create the job folder '{d} >&2; exit 1; }}\n\
                     printf '%s\\n' {cmd} > {d}/cmd.sh || exit 1\n\
                     command -v setsid >/dev/null || {{ echo 'setsid is missing on the target' >&2; exit 127; }}\n\
                     setsid sh -c 'd=$1; echo $$ > \"$d/pid.tmp\"; mv \"$d/pid.tmp\" \"$d/pid\"; sh \"$d/cmd.sh\" > \"$d/out\" 2> \"$d/err\" < /dev/null; echo $? > \"$d/status.tmp\"; mv \"$d/status.tmp\" \"$d/status\"' sh {d} \
                     < /dev/null > /dev/null 2>&1 &\n\
                     i=0; while [ ! -s {d}/pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat {d}/pid",
                    guard = posix_guard(),
                    all = chain(dir).iter().map(|c| quote(c)).collect::<Vec<_>>().join(" "),
                    root_parent = quote(&parent_of(&parent_of(&parent_of(dir)))),
                    cmd = quote(command)
                )
            }
            Flavor::Windows(shell) => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(command.as_bytes());
                // The command file and how the wrapper runs it, per shell.
                let (file, write, run) = if shell == Shell::PowerShell {
                    (
                        "cmd.ps1",
                        // UTF-8 with a BOM, which PowerShell 2.0 reads as UTF-8.
                        "[IO.File]::WriteAllText($f, $c, (New-Object Text.UTF8Encoding $true))",
                        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \"%~dp0cmd.ps1\"",
                    )
                } else {
                    (
                        "cmd.cmd",
                        "[IO.File]::WriteAllText($f, \"@echo off`r`n\" + $c + \"`r`n\", [Text.Encoding]::Default)",
                        "call \"%~dp0cmd.cmd\"",
                    )
                };
                format!(
                    "$ErrorActionPreference = 'Stop'\n\
                     $d = [Environment]::ExpandEnvironmentVariables({dir})\n\
                     New-Item -ItemType Directory -Force -Path $d | Out-Null\n\
                     $c = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{b64}'))\n\
                     $f = Join-Path $d '{file}'\n\
                     {write}\n\
                     $w = \"@echo off`r`n{run} > `\"%~dp0out`\" 2> `\"%~dp0err`\" < nul`r`necho %ERRORLEVEL%> `\"%~dp0status.tmp`\"`r`nmove /y `\"%~dp0status.tmp`\" `\"%~dp0status`\" > nul`r`n\"\n\
                     [IO.File]::WriteAllText((Join-Path $d 'wrapper.cmd'), $w, [Text.Encoding]::Default)\n\
                     # Created through WMI, the job is outside this session's job object and outlives it;\n\
                     # it runs in this shell's folder, as an attached command does.\n\
                     $r = ([wmiclass]'Win32_Process').Create('cmd.exe /d /c \"' + (Join-Path $d 'wrapper.cmd') + '\"', (Get-Location).Path)\n\
                     if ($r.ReturnValue -ne 0) {{ [Console]::Error.WriteLine('Win32_Process.Create failed with ' + $r.ReturnValue); exit 1 }}\n\
                     [IO.File]::WriteAllText((Join-Path $d 'pid'), [string]$r.ProcessId)\n\
                     [Console]::Out.Write([string]$r.ProcessId)",
                    dir = ps_quote(dir),
                    run = run.replace('"', "`\""),
                )
            }
        }
    }

    fn status_script(self, dir: &str) -> String {
        match self {
            Flavor::Posix => {
                let d = quote(dir);
                format!(
                    "{guard}checked || {{ echo GONE; exit 0; }}\n\
                     cd {d} 2>/dev/null || {{ echo GONE; exit 0; }}; \
                     if [ -f status ]; then echo \"DONE $(cat status)\"; \
                     elif kill -0 \"$(cat pid 2>/dev/null)\" 2>/dev/null; then echo RUNNING; \
                     else echo LOST; fi",
                    guard = guarded(dir)
                )
            }
            Flavor::Windows(_) => format!(
                "$d = [Environment]::ExpandEnvironmentVariables({})\n\
                 if (-not (Test-Path -LiteralPath $d)) {{ 'GONE'; exit 0 }}\n\
                 $s = Join-Path $d 'status'\n\
                 if (Test-Path -LiteralPath $s) {{ 'DONE ' + [IO.File]::ReadAllText($s).Trim(); exit 0 }}\n\
                 $p = [int]([IO.File]::ReadAllText((Join-Path $d 'pid')).Trim())\n\
                 if (Get-Process -Id $p -ErrorAction SilentlyContinue) {{ 'RUNNING' }} else {{ 'LOST' }}",
                ps_quote(dir)
            ),
        }
    }

    /// Prints the bytes of the job's `file` from `offset` on, unchanged.
    fn tail_script(self, dir: &str, file: &str, offset: u64) -> String {
        match self {
            Flavor::Posix => format!(
                "{}checked || exit 0\ntail -c +{} {}/{file} 2>/dev/null || true",
                guarded(dir),
                offset + 1,
                quote(dir)
            ),
            Flavor::Windows(_) => format!(
                "$f = Join-Path ([Environment]::ExpandEnvironmentVariables({})) '{file}'\n\
                 if (Test-Path -LiteralPath $f) {{\n\
                 $s = New-Object IO.FileStream($f, 'Open', 'Read', 'ReadWrite')\n\
                 [void]$s.Seek({offset}, 'Begin')\n\
                 $o = [Console]::OpenStandardOutput(); $b = New-Object byte[] 65536\n\
                 while (($n = $s.Read($b, 0, $b.Length)) -gt 0) {{ $o.Write($b, 0, $n) }}\n\
                 $o.Flush(); $s.Close() }}",
                ps_quote(dir)
            ),
        }
    }

    /// Stops the whole job (POSIX: its process group, TERM then KILL; Windows: its process
    /// tree) and prints GONE once nothing of it runs.
    fn kill_script(self, dir: &str) -> String {
        match self {
            // dash's `kill` accepts a negative (process group) id only as `kill -s SIG -- -PGID`.
            Flavor::Posix => {
                let d = quote(dir);
                format!(
                    "{guard}checked || {{ echo GONE; exit 0; }}\n\
                     cd {d} 2>/dev/null || exit 0; p=$(cat pid 2>/dev/null) || exit 0; [ -n \"$p\" ] || exit 0; \
                     kill -s TERM -- -\"$p\" 2>/dev/null || true; i=0; \
                     while kill -s 0 -- -\"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
                     kill -s KILL -- -\"$p\" 2>/dev/null || true; i=0; \
                     while kill -s 0 -- -\"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
                     if kill -s 0 -- -\"$p\" 2>/dev/null; then echo ALIVE; else echo GONE; fi",
                    guard = guarded(dir)
                )
            }
            Flavor::Windows(_) => format!(
                "$d = [Environment]::ExpandEnvironmentVariables({})\n\
                 $pf = Join-Path $d 'pid'\n\
                 if (-not (Test-Path -LiteralPath $pf)) {{ 'GONE'; exit 0 }}\n\
                 $p = [int]([IO.File]::ReadAllText($pf).Trim())\n\
                 & taskkill.exe /T /F /PID $p 2>&1 | Out-Null\n\
                 for ($i = 0; $i -lt 50 -and (Get-Process -Id $p -ErrorAction SilentlyContinue); $i++) {{ Start-Sleep -Milliseconds 100 }}\n\
                 if (Get-Process -Id $p -ErrorAction SilentlyContinue) {{ 'ALIVE' }} else {{ 'GONE' }}",
                ps_quote(dir)
            ),
        }
    }

    fn remove_script(self, dir: &str) -> Option<String> {
        match self {
            // The run's folder goes too once its last job is removed.
            Flavor::Posix if is_posix_job_dir(dir) => Some(format!(
                "{}checked || exit 0\nrm -rf {}; rmdir {} 2>/dev/null; exit 0",
                guarded(dir),
                quote(dir),
                quote(&parent_of(dir))
            )),
            Flavor::Windows(_) if dir.starts_with(WINDOWS_JOB_ROOT) => Some(format!(
                "Remove-Item -LiteralPath ([Environment]::ExpandEnvironmentVariables({})) -Recurse -Force -ErrorAction SilentlyContinue",
                ps_quote(dir)
            )),
            _ => None,
        }
    }

    /// An exit status as the job wrote it. `cmd` prints ERRORLEVEL signed; Windows exit codes
    /// are unsigned 32-bit (4294967295, not -1).
    fn exit_code(self, text: &str) -> Option<i64> {
        let n: i64 = text.trim().parse().ok()?;
        Some(match self {
            Flavor::Windows(_) if n < 0 => n + (1i64 << 32),
            _ => n,
        })
    }
}

/// The folder above `path` (a POSIX path), or `path` itself at the top.
fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => path[..i].to_string(),
        None => path.to_string(),
    }
}

/// The folders checked before a job folder is used: its root, the run's folder and the job's
/// own (`<root>/<run>/<attempt>`); the root's own parent (`/tmp`, or the playbook's `.runner`)
/// is not another user's to change.
fn chain(dir: &str) -> Vec<String> {
    let run = parent_of(dir);
    vec![parent_of(&run), run, dir.to_string()]
}

/// Whether `dir` is a POSIX job folder, `<root>/<run>/<attempt>` under one of the two roots:
/// nothing else is ever removed.
fn is_posix_job_dir(dir: &str) -> bool {
    let parts = chain(dir);
    let root = &parts[0];
    let plain = |p: &str| {
        let name = p.rsplit('/').next().unwrap_or_default();
        !name.is_empty() && name != "." && name != ".."
    };
    (root == JOB_ROOT || root.ends_with(&format!("/{LOCAL_JOB_ROOT}")))
        && plain(&parts[1])
        && plain(dir)
        && !dir.contains("/../")
}

/// Shell functions that check a job folder before it is used: `own DIR` exits with
/// [`UNSAFE_EXIT`] and the reason on stderr unless DIR is a real directory (not a symlink)
/// owned by the connecting user and writable by nobody else.
fn posix_guard() -> String {
    format!(
        "own() {{\n\
         if [ -h \"$1\" ] || [ ! -d \"$1\" ]; then echo \"{UNSAFE}$1 is not a folder of its own (a symbolic link or something else): refusing to use it as a job folder; remove it\" >&2; exit {UNSAFE_EXIT}; fi\n\
         set -- \"$1\" $(ls -ldn -- \"$1\")\n\
         [ \"$4\" = \"$(id -u)\" ] || {{ echo \"{UNSAFE}$1 belongs to uid $4, not to the connecting user (uid $(id -u)): another user may have planted files in it; refusing to use it as a job folder: remove it\" >&2; exit {UNSAFE_EXIT}; }}\n\
         case $2 in ?????w*|????????w*) echo \"{UNSAFE}$1 is writable by other users ($2): refusing to use it as a job folder; remove it\" >&2; exit {UNSAFE_EXIT} ;; esac\n\
         }}\n"
    )
}

/// [`posix_guard`] and `checked`: checks the folders of `dir` that exist; false when one is
/// missing (the job folder is gone).
fn guarded(dir: &str) -> String {
    format!(
        "{}checked() {{ for x in {}; do [ -e \"$x\" ] || [ -h \"$x\" ] || return 1; own \"$x\"; done; }}\n",
        posix_guard(),
        chain(dir).iter().map(|c| quote(c)).collect::<Vec<_>>().join(" ")
    )
}

/// Quotes text for `sh` as one word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Quotes text for PowerShell as a literal string.
fn ps_quote(text: &str) -> String {
    crate::transport::shell::ps_quote(text)
}

/// How a job ended, as the engine records it.
pub enum JobEnd {
    Exited(i64),
    TimedOut,
    Cancelled,
    /// The job vanished without an exit status (killed on the target, or the target rebooted).
    Lost(String),
    /// The runner was asked to stop (one Ctrl-C or SIGTERM) and leaves the job running on the
    /// target: its attempt stays `running` with its folder noted, and the next apply follows it.
    LeftRunning,
}

/// After the first Ctrl-C or SIGTERM, how long a detached job is still followed before the
/// runner leaves it running and exits: the time to press Ctrl-C again to stop it instead.
pub const LEAVE_GRACE: Duration = Duration::from_secs(10);

/// The root of the POSIX job folders on `target`: under the playbook's folder for `local`
/// targets (absolute: the job's working directory is elsewhere), [`JOB_ROOT`] otherwise.
pub fn job_root(s: &Session<'_>, target: &str) -> String {
    let local =
        s.pb.targets
            .get(target)
            .is_some_and(|t| t.transport == crate::playbook::TransportKind::Local);
    if !local {
        return JOB_ROOT.to_string();
    }
    let dir = std::path::absolute(&s.pb.dir).unwrap_or_else(|_| s.pb.dir.clone());
    format!("{}/{LOCAL_JOB_ROOT}", dir.display()).replace("//", "/")
}

/// Runs a short control script and returns its stdout, trimmed. A POSIX script that refused
/// the job folder returns [`UNSAFE_EXIT`] and, instead of its output, the reason.
fn control(
    t: &mut dyn Transport,
    flavor: Flavor,
    script: &str,
) -> Result<(CommandExit, String), TransportError> {
    control_with(
        t,
        flavor,
        script,
        &Control::new(Some(Duration::from_secs(60))),
    )
}

/// [`control`] with the limits and the environment of `ctl`.
fn control_with(
    t: &mut dyn Transport,
    flavor: Flavor,
    script: &str,
    ctl: &Control,
) -> Result<(CommandExit, String), TransportError> {
    let (exit, out, err) =
        crate::transport::capture(|sink| t.exec(script, flavor.control_shell(), ctl, sink))?;
    if let Some(why) = unsafe_reason(flavor, exit, &err) {
        return Ok((exit, why));
    }
    Ok((exit, out.trim().to_string()))
}

/// The reason a POSIX control script gave for refusing a job folder, if it did.
fn unsafe_reason(flavor: Flavor, exit: CommandExit, stderr: &str) -> Option<String> {
    if flavor != Flavor::Posix || exit != CommandExit::Code(UNSAFE_EXIT) {
        return None;
    }
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(UNSAFE))
        .map(|why| format!("{UNSAFE}{why}"))
}

/// Starts the job. The caller has already noted `dir` in the journal.
///
/// `env` (a step's `env`) reaches the POSIX launcher the way it reaches an attached command:
/// over SSH on the wrapper's standard input, locally in the child's environment; the launcher
/// exports it and the job, started in its own session, inherits it. The values are in no file
/// and no command line, only in the job's processes, so following the job later needs none.
pub fn start(
    s: &Session<'_>,
    flavor: Flavor,
    target: &str,
    dir: &str,
    command: &str,
    env: &[(String, crate::transport::Secret)],
) -> Result<(), String> {
    if !env.is_empty() && flavor != Flavor::Posix {
        // validate refuses this already: a WMI-started job inherits no environment.
        return Err("the detached job was not started: on Windows it would get its `env` only from a file on the target's disk".into());
    }
    let r = s.pool.with(s.pb, &s.secrets, target, |t| {
        let mut ctl = Control::new(Some(Duration::from_secs(60)));
        ctl.env = env.to_vec();
        control_with(t, flavor, &flavor.launcher(dir, command), &ctl)
    });
    match r {
        Ok(Ok((CommandExit::Code(0), pid))) if !pid.is_empty() => Ok(()),
        Ok(Ok((_, text))) if text.starts_with(UNSAFE) => Err(format!(
            "the detached job was not started: {}",
            &text[UNSAFE.len()..]
        )),
        Ok(Ok((exit, text))) => Err(format!(
            "the detached job could not start ({exit:?}): {text}"
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Follows a job to its end: streams new output, survives dropped connections (reconnecting
/// with backoff), stops it on timeout or cancel. `started` is when the attempt began (for the
/// timeout across a reattach).
pub fn follow(
    s: &Session<'_>,
    flavor: Flavor,
    target: &str,
    dir: &str,
    timeout: Option<Duration>,
    started: Instant,
    out: &mut PairOutput<'_, '_>,
) -> JobEnd {
    let cancel = s.interrupt.cancel_flag();
    let mut offsets = [0u64; 2];
    let mut pause = Duration::from_millis(100);
    let mut failures = 0u32;
    let mut leave_at: Option<Instant> = None;
    loop {
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return stop(s, flavor, target, dir, JobEnd::Cancelled);
        }
        if s.interrupt.stopping() {
            let at = *leave_at.get_or_insert_with(|| {
                s.emit(&super::event::Event::Notice {
                    text: format!(
                        "the detached job `{}` on `{target}` keeps running on the target: the runner leaves it running and exits in {} s (`runner apply {}` reattaches to it); to stop it on the target instead, press Ctrl-C again now",
                        out.step(),
                        LEAVE_GRACE.as_secs(),
                        s.pb.path.display()
                    ),
                });
                Instant::now() + LEAVE_GRACE
            });
            if Instant::now() >= at {
                out.note("left running: the runner was asked to stop; the next apply follows it");
                return JobEnd::LeftRunning;
            }
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return stop(s, flavor, target, dir, JobEnd::TimedOut);
        }
        let polled = s.pool.with(s.pb, &s.secrets, target, |t| {
            poll(t, flavor, dir, &mut offsets, out)
        });
        match polled {
            Ok(Ok(Poll::Done(code))) => return JobEnd::Exited(code),
            Ok(Ok(Poll::Running)) => {
                failures = 0;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Ok(Ok(Poll::Lost(why))) => return JobEnd::Lost(why),
            Ok(Err(e)) => {
                failures += 1;
                out.note(&format!("following the detached job: {e}; reconnecting"));
                pause = backoff(failures);
            }
            Err(e) => {
                failures += 1;
                out.note(&format!("following the detached job: {e}; reconnecting"));
                pause = backoff(failures);
            }
        }
        let pause = match leave_at {
            Some(at) => pause.min(at.saturating_duration_since(Instant::now())),
            None => pause,
        };
        sleep_unless_cancelled(&cancel, pause);
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

fn sleep_unless_cancelled(cancel: &std::sync::atomic::AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
}

enum Poll {
    Running,
    Done(i64),
    Lost(String),
}

/// One poll: the status first, then any new output. Reading output *after* seeing `DONE`
/// guarantees the last bytes are collected.
fn poll(
    t: &mut dyn Transport,
    flavor: Flavor,
    dir: &str,
    offsets: &mut [u64; 2],
    out: &mut PairOutput<'_, '_>,
) -> Result<Poll, TransportError> {
    let (_, status) = control(t, flavor, &flavor.status_script(dir))?;
    if let Some(why) = status.strip_prefix(UNSAFE) {
        return Ok(Poll::Lost(format!(
            "the job folder can no longer be trusted, so neither its status nor its pid is used (the job may still run): {why}"
        )));
    }
    for (i, (file, stream)) in [("out", Stream::Stdout), ("err", Stream::Stderr)]
        .into_iter()
        .enumerate()
    {
        let script = flavor.tail_script(dir, file, offsets[i]);
        let ctl = Control::new(Some(Duration::from_secs(300)));
        let mut got = 0u64;
        let mut err = String::new();
        let exit = t.exec(&script, flavor.control_shell(), &ctl, &mut |st, b| {
            if st == Stream::Stdout {
                got += b.len() as u64;
                out.push(stream, b);
            } else {
                err.push_str(&String::from_utf8_lossy(b));
            }
        })?;
        if let Some(why) = unsafe_reason(flavor, exit, &err) {
            return Ok(Poll::Lost(format!(
                "the job folder can no longer be trusted (the job may still run): {}",
                &why[UNSAFE.len()..]
            )));
        }
        offsets[i] += got;
    }
    Ok(if let Some(code) = status.strip_prefix("DONE ") {
        match flavor.exit_code(code) {
            Some(c) => Poll::Done(c),
            None => Poll::Lost(format!("unreadable exit status {code:?}")),
        }
    } else if status == "RUNNING" {
        Poll::Running
    } else if status == "GONE" {
        Poll::Lost(format!("the job folder {dir} is gone from the target"))
    } else {
        Poll::Lost(
            "the job's process is gone without an exit status (killed, or the target restarted)"
                .into(),
        )
    })
}

/// Stops the whole job (its process group) and confirms it is gone.
fn stop(s: &Session<'_>, flavor: Flavor, target: &str, dir: &str, end: JobEnd) -> JobEnd {
    let r = s.pool.with(s.pb, &s.secrets, target, |t| {
        control(t, flavor, &flavor.kill_script(dir))
    });
    match r {
        Ok(Ok((_, text))) if text == "GONE" => end,
        Ok(Ok((_, text))) => JobEnd::Lost(format!(
            "the job could not be stopped on the target ({text})"
        )),
        Ok(Err(e)) => JobEnd::Lost(format!("the job could not be stopped on the target: {e}")),
        Err(e) => JobEnd::Lost(format!("the job could not be stopped on the target: {e}")),
    }
}

/// Removes the job folder once its result is in the journal. Failure only leaves files behind.
pub fn remove(s: &Session<'_>, flavor: Flavor, target: &str, dir: &str) {
    let Some(script) = flavor.remove_script(dir) else {
        return;
    };
    if let Err(e) = s
        .pool
        .with(s.pb, &s.secrets, target, |t| control(t, flavor, &script))
    {
        tracing::warn!("cannot remove the job folder {dir} on {target}: {e}");
    }
}

#[cfg(test)]
mod tests;
