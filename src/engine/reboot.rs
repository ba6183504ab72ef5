//! Reboot and continue: issue the target's reboot command, wait until the target really
//! restarted (its boot id changed), reconnect. Each stage is noted on the attempt in the journal
//! before it happens, so a runner killed during the wait resumes waiting instead of rebooting
//! the machine a second time.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::output::PairOutput;
use super::Session;
use crate::journal::AttemptId;
use crate::targets::shell_of;
use crate::transport::{CommandExit, Control};

pub use crate::journal::notes::{NOTE_BOOT_ID, NOTE_EXIT_CODE, NOTE_ISSUED};

pub enum RebootEnd {
    Done,
    Failed(String),
    Cancelled,
}

/// Reads the boot id (the target's `boot_id_command`, trimmed; it must exit 0).
fn boot_id(s: &Session<'_>, target: &str) -> Result<String, String> {
    let t = s.pb.targets.get(target).ok_or("unknown target")?;
    let cmd = t.boot_id_command.clone();
    let shell = shell_of(t.shell);
    let r = s.pool.with(s.pb, &s.secrets, target, |tr| {
        let ctl = Control::new(Some(Duration::from_secs(60)));
        crate::transport::capture(|sink| tr.exec(&cmd, shell, &ctl, sink))
            .map(|(e, out, _)| (e, out.trim().to_string()))
    });
    match r {
        Ok(Ok((CommandExit::Code(0), id))) if !id.is_empty() => Ok(id),
        Ok(Ok((exit, id))) => Err(format!("the boot id command gave {exit:?} {id:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Reboots `target` (or continues a reboot an earlier run began) and waits for it.
pub fn reboot(
    s: &Session<'_>,
    attempt: AttemptId,
    target: &str,
    timeout: Duration,
    out: &mut PairOutput<'_, '_>,
) -> RebootEnd {
    let notes = match s.journal().notes(attempt) {
        Ok(n) => n,
        Err(e) => return RebootEnd::Failed(format!("cannot read the journal: {e}")),
    };
    let before = match notes.get(NOTE_BOOT_ID) {
        Some(id) => id.clone(),
        None => match note_boot_id(s, attempt, target) {
            Ok(id) => id,
            Err(end) => return end,
        },
    };
    let issued_at = match notes
        .get(NOTE_ISSUED)
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        Some(at) => {
            out.note(&format!("resuming the wait for the reboot issued at {at}"));
            at
        }
        None => match issue(s, attempt, target, out) {
            Ok(at) => at,
            Err(end) => return end,
        },
    };
    s.pool.reset(target);
    wait_for_new_boot(s, target, &before, issued_at, timeout, out)
}

/// The boot id before the reboot, read and recorded: no reboot is issued without it.
fn note_boot_id(s: &Session<'_>, attempt: AttemptId, target: &str) -> Result<String, RebootEnd> {
    let id = match boot_id(s, target) {
        Ok(id) => id,
        Err(e) => {
            return Err(RebootEnd::Failed(format!(
                "cannot read the boot id before rebooting: {e}"
            )))
        }
    };
    if let Err(e) = s.journal().set_note(attempt, NOTE_BOOT_ID, &id) {
        return Err(RebootEnd::Failed(format!(
            "cannot record the boot id, so the reboot was not issued: {e}"
        )));
    }
    Ok(id)
}

/// Records that the reboot is issued, then runs the target's reboot command; when it was
/// issued.
fn issue(
    s: &Session<'_>,
    attempt: AttemptId,
    target: &str,
    out: &mut PairOutput<'_, '_>,
) -> Result<Timestamp, RebootEnd> {
    let at = s.clock.now();
    // Intent before action: a runner killed from here on waits instead of rebooting again.
    if let Err(e) = s.journal().set_note(attempt, NOTE_ISSUED, &at.to_string()) {
        return Err(RebootEnd::Failed(format!(
            "cannot record the reboot, so it was not issued: {e}"
        )));
    }
    let Some(t) = s.pb.targets.get(target) else {
        return Err(RebootEnd::Failed("unknown target".into()));
    };
    out.note(&format!("rebooting with `{}`", t.reboot_command));
    let cmd = t.reboot_command.clone();
    let shell = shell_of(t.shell);
    // The link going down under this command is the expected outcome, not an error.
    let r = s.pool.with(s.pb, &s.secrets, target, |tr| {
        let ctl = Control::new(Some(Duration::from_secs(60)));
        tr.exec(&cmd, shell, &ctl, &mut |st, b| out.push(st, b))
    });
    if let Ok(Ok(CommandExit::Code(c))) = r {
        if c != 0 {
            return Err(RebootEnd::Failed(format!(
                "the reboot command exited with {c}"
            )));
        }
    }
    Ok(at)
}

/// Waits until the target answers with another boot id than `before`, backing off while it
/// does not answer, until `timeout` after the reboot was issued or Ctrl-C.
fn wait_for_new_boot(
    s: &Session<'_>,
    target: &str,
    before: &str,
    issued_at: Timestamp,
    timeout: Duration,
    out: &mut PairOutput<'_, '_>,
) -> RebootEnd {
    let cancel = s.interrupt.cancel_flag();
    let waited = s.clock.now().duration_since(issued_at);
    let already = Duration::try_from(waited).unwrap_or_default();
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return RebootEnd::Cancelled;
        }
        if already + started.elapsed() >= timeout {
            return RebootEnd::Failed(format!(
                "the target did not come back with a new boot id within {}",
                crate::duration::human_duration(
                    jiff::SignedDuration::try_from(timeout).unwrap_or_default()
                )
            ));
        }
        match boot_id(s, target) {
            Ok(id) if id != before => {
                out.note(&format!("the target is back (boot id {before} -> {id})"));
                return RebootEnd::Done;
            }
            Ok(_) => failures = 0,
            Err(_) => {
                failures += 1;
                // A session that died with the old boot must not be reused.
                s.pool.reset(target);
            }
        }
        pause(&cancel, failures);
    }
}

/// A pause before looking again, longer after each failure to connect (up to 10 s); Ctrl-C
/// ends it early.
fn pause(cancel: &std::sync::atomic::AtomicBool, failures: u32) {
    let pause = Duration::from_millis(250u64 << failures.min(5)).min(Duration::from_secs(10));
    let end = Instant::now() + pause;
    while Instant::now() < end && !cancel.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
}
