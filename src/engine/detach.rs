//! Detached steps on POSIX targets: the command runs in its own session and process group on
//! the target, writing its output and exit status to files in a job folder, so it survives a
//! dropped connection and a runner that dies. The runner polls the folder, streams the output
//! and collects the result; a later run that finds the attempt still `running` follows the
//! same job instead of starting it again.
//!
//! The job folder is recorded in the journal (an attempt note) *before* the job starts.
//! Everything here is plain `sh` sent through [`Transport::exec`], so any transport that runs
//! `sh` can run detached jobs.

use std::time::{Duration, Instant};

use super::output::PairOutput;
use super::Session;
use crate::journal::{AttemptId, RunId};
use crate::transport::{Control, Exit, Shell, Stream, Transport, TransportError};

/// Where job folders live on the target.
pub const JOB_ROOT: &str = "/tmp/runner-jobs";
/// The attempt note naming the job folder.
pub const NOTE_JOB_DIR: &str = "job_dir";

/// The job folder of an attempt: unique per run and attempt.
pub fn job_dir(run: &RunId, attempt: AttemptId) -> String {
    format!("{JOB_ROOT}/{}/{}", run.as_str(), attempt.0)
}

/// Quotes text for `sh` as one word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The launcher: writes the command to the folder, starts it in a new session with its
/// output and status going to files, and prints its pid once it is known.
fn launcher(dir: &str, command: &str) -> String {
    let d = quote(dir);
    format!(
        "set -e; umask 077; mkdir -p {d}; cd {d}; printf '%s\\n' {cmd} > cmd.sh; \
         command -v setsid >/dev/null || {{ echo 'setsid is missing on the target' >&2; exit 127; }}; \
         setsid sh -c 'echo $$ > pid.tmp; mv pid.tmp pid; sh cmd.sh > out 2> err < /dev/null; echo $? > status.tmp; mv status.tmp status' \
         < /dev/null > /dev/null 2>&1 & \
         i=0; while [ ! -s pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat pid",
        cmd = quote(command)
    )
}

fn status_script(dir: &str) -> String {
    let d = quote(dir);
    format!(
        "cd {d} 2>/dev/null || {{ echo GONE; exit 0; }}; \
         if [ -f status ]; then echo \"DONE $(cat status)\"; \
         elif kill -0 \"$(cat pid 2>/dev/null)\" 2>/dev/null; then echo RUNNING; \
         else echo LOST; fi"
    )
}

/// dash's `kill` accepts a negative (process group) id only as `kill -s SIG -- -PGID`.
fn kill_script(dir: &str) -> String {
    let d = quote(dir);
    format!(
        "cd {d} 2>/dev/null || exit 0; p=$(cat pid 2>/dev/null) || exit 0; [ -n \"$p\" ] || exit 0; \
         kill -s TERM -- -\"$p\" 2>/dev/null || true; i=0; \
         while kill -s 0 -- -\"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
         kill -s KILL -- -\"$p\" 2>/dev/null || true; i=0; \
         while kill -s 0 -- -\"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
         if kill -s 0 -- -\"$p\" 2>/dev/null; then echo ALIVE; else echo GONE; fi"
    )
}

/// How a job ended, as the engine records it.
pub enum JobEnd {
    Exited(i64),
    TimedOut,
    Cancelled,
    /// The job vanished without an exit status (killed on the target, or the target rebooted).
    Lost(String),
}

/// Runs a short control script and returns its stdout.
fn control(t: &mut dyn Transport, script: &str) -> Result<(Exit, String), TransportError> {
    let mut out = Vec::new();
    let ctl = Control::new(Some(Duration::from_secs(60)));
    let exit = t.exec(script, Shell::Sh, &ctl, &mut |st, b| {
        if st == Stream::Stdout {
            out.extend_from_slice(b)
        }
    })?;
    Ok((exit, String::from_utf8_lossy(&out).trim().to_string()))
}

/// Starts the job. The caller has already noted `dir` in the journal.
pub fn start(s: &Session<'_>, target: &str, dir: &str, command: &str) -> Result<(), String> {
    let r = s.pool.with(s.pb, &s.secrets, target, |t| {
        control(t, &launcher(dir, command))
    });
    match r {
        Ok(Ok((Exit::Code(0), pid))) if !pid.is_empty() => Ok(()),
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
    loop {
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return stop(s, target, dir, JobEnd::Cancelled);
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return stop(s, target, dir, JobEnd::TimedOut);
        }
        let polled = s.pool.with(s.pb, &s.secrets, target, |t| {
            poll(t, dir, &mut offsets, out)
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
    dir: &str,
    offsets: &mut [u64; 2],
    out: &mut PairOutput<'_, '_>,
) -> Result<Poll, TransportError> {
    let (_, status) = control(t, &status_script(dir))?;
    for (i, (file, stream)) in [("out", Stream::Stdout), ("err", Stream::Stderr)]
        .into_iter()
        .enumerate()
    {
        let script = format!(
            "tail -c +{} {}/{file} 2>/dev/null || true",
            offsets[i] + 1,
            quote(dir)
        );
        let ctl = Control::new(Some(Duration::from_secs(300)));
        let mut got = 0u64;
        t.exec(&script, Shell::Sh, &ctl, &mut |st, b| {
            if st == Stream::Stdout {
                got += b.len() as u64;
                out.push(stream, b);
            }
        })?;
        offsets[i] += got;
    }
    Ok(if let Some(code) = status.strip_prefix("DONE ") {
        match code.trim().parse::<i64>() {
            Ok(c) => Poll::Done(c),
            Err(_) => Poll::Lost(format!("unreadable exit status {code:?}")),
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
fn stop(s: &Session<'_>, target: &str, dir: &str, end: JobEnd) -> JobEnd {
    let r = s
        .pool
        .with(s.pb, &s.secrets, target, |t| control(t, &kill_script(dir)));
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
pub fn remove(s: &Session<'_>, target: &str, dir: &str) {
    if !dir.starts_with(JOB_ROOT) {
        return;
    }
    let script = format!("rm -rf {}", quote(dir));
    if let Err(e) = s
        .pool
        .with(s.pb, &s.secrets, target, |t| control(t, &script))
    {
        tracing::warn!("cannot remove the job folder {dir} on {target}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_launcher_runs_in_a_local_shell() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job");
        let job = job.to_str().unwrap();
        let script = launcher(job, "echo 'hello'; echo oops >&2; exit 7");
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let pid: u32 = String::from_utf8_lossy(&st.stdout).trim().parse().unwrap();
        assert!(pid > 1);
        // Wait for the status file: the job is quick.
        let status = std::path::Path::new(job).join("status");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !status.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "7");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("job/out")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("job/err")).unwrap(),
            "oops\n"
        );
    }
}
