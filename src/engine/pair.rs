//! One step on one target: attempts with retries, each journaled before it starts, the
//! check after a success, and the overrun report.

use std::time::Duration;

use jiff::Timestamp;

use super::event::Event;
use super::output::PairOutput;
use super::{Blocked, Session};
use crate::journal::{AttemptId, AttemptKind, AttemptState, EventKind, NewAttempt};
use crate::playbook::{Rendered, RenderedAction, Step};
use crate::targets::shell_of;
use crate::transport::{CommandExit, Control, Orphan, OrphanStop, Shell};

pub use crate::journal::notes::{NOTE_ORPHAN, NOTE_ORPHAN_SETTLED};

/// How a pair ended in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairEnd {
    Done,
    Failed(String),
    Interrupted,
    /// A retry could not start because the window closed (`when_closed: stop`).
    WindowClosed(Option<Timestamp>),
    /// A detached job left running on the target at the operator's request (one Ctrl-C or
    /// SIGTERM); its attempt stays `running` and the next apply follows it.
    LeftRunning,
}

pub(super) fn std_duration(d: Option<jiff::SignedDuration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
}

/// Runs `step` on `target`; `earlier` is how many run attempts previous runs made, so that
/// attempt numbers keep counting across a resume. With `resume`, the attempt an earlier run
/// left `running` is continued first (it counts as the first try).
pub fn run_pair(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    earlier: u32,
    resume: Option<Resume>,
) -> PairEnd {
    let Some(rendered) = step.rendered_for(target) else {
        return PairEnd::Failed(format!(
            "internal error: `{}` has no rendering for `{target}`",
            step.id
        ));
    };
    let tries = step.retries + 1;
    let mut last_failure = String::new();
    for n in 1..=tries {
        if n > 1 {
            let delay = std_duration(Some(step.retry_delay)).unwrap_or_default();
            if !delay.is_zero() && !s.interrupt.sleep(delay) {
                return PairEnd::Interrupted;
            }
        }
        // Every start on this target passes the gate, the first one included: with more
        // targets than run at once, a target starts when a sibling has finished, later than
        // the step began. Work already under way (a resumed attempt) is followed whatever the
        // time.
        if n > 1 || resume.is_none() {
            match s.gate(step) {
                Ok(()) => {}
                Err(Blocked::Interrupted) => return PairEnd::Interrupted,
                Err(Blocked::Window(next)) => return PairEnd::WindowClosed(next),
            }
        }
        if s.interrupt.stopping() && n > 1 {
            return PairEnd::Interrupted;
        }
        let end = match (&resume, n) {
            (Some(r), 1) => {
                super::attempt::run_attempt(s, step, target, rendered, r, None, earlier, n, tries)
            }
            _ => attempt(s, step, target, rendered, earlier + n, n, tries),
        };
        match end {
            AttemptEnd::Succeeded => return PairEnd::Done,
            AttemptEnd::Interrupted => return PairEnd::Interrupted,
            AttemptEnd::LeftRunning => return PairEnd::LeftRunning,
            AttemptEnd::Failed(msg) => last_failure = msg,
            AttemptEnd::Fatal(msg) => return PairEnd::Failed(msg),
        }
    }
    PairEnd::Failed(last_failure)
}

pub(crate) enum AttemptEnd {
    Succeeded,
    Failed(String),
    Interrupted,
    /// A detached job left running (see [`PairEnd::LeftRunning`]).
    LeftRunning,
    /// Do not retry: the journal could not record intent, so nothing may run.
    Fatal(String),
}

#[allow(clippy::too_many_arguments)]
fn begin(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    kind: AttemptKind,
    number: u32,
    def_hash: &str,
    notes: &[(&str, &str)],
) -> Result<AttemptId, String> {
    s.journal()
        .begin_attempt_noted(
            &NewAttempt {
                run: s.run.clone(),
                step_id: step.id.clone(),
                target: target.to_string(),
                kind,
                number,
                started_at: s.clock.now(),
                pid: s.who.pid,
                host: s.who.host.clone(),
                def_hash: def_hash.to_string(),
            },
            notes,
        )
        .map_err(|e| format!("the journal cannot record the attempt, so it was not started: {e}"))
}

/// Records how an attempt ended; false when the journal could not record it.
pub(super) fn finish(
    s: &Session<'_>,
    id: AttemptId,
    state: AttemptState,
    code: Option<i64>,
    message: Option<&str>,
) -> bool {
    let message = message.map(|m| s.redactor.redact(m));
    if let Err(e) = s
        .journal()
        .finish_attempt(id, state, code, s.clock.now(), message.as_deref())
    {
        // The attempt stays `running` in the journal: the next apply treats it as in doubt,
        // which is the safe reading.
        tracing::error!("cannot record the outcome of attempt {id}: {e}");
        return false;
    }
    true
}

/// Where an attempt is (re-)entered: a fresh start, or the continuation of an attempt an
/// earlier run left `running` (a detached job to follow, a reboot to wait for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Fresh,
    Job(String),
    Reboot,
}

/// An attempt left `running` by an earlier run, to be continued rather than repeated.
#[derive(Debug, Clone)]
pub struct Resume {
    pub attempt: AttemptId,
    pub phase: Phase,
    /// When that attempt started, so its timeout still counts from then.
    pub started_at: Timestamp,
}

#[allow(clippy::too_many_arguments)]
fn attempt(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    r: &Rendered,
    number: u32,
    n: u32,
    tries: u32,
) -> AttemptEnd {
    let kind = match step.action {
        crate::playbook::Action::Reboot { .. } => AttemptKind::Reboot,
        _ => AttemptKind::Run,
    };
    // Identity before action: an attached `sh` command carries a token that is in the journal
    // with the attempt, before the command is sent, so a later apply can find and stop it even
    // if this runner dies (a power cut while the link is silently dead) before it learns more.
    let token = crate::transport::random_token();
    let attached = !s
        .pb
        .targets
        .get(target)
        .is_some_and(|t| step.detached_on(t));
    let tracked = attached
        && shell_for(s, target) == Shell::Sh
        && matches!(
            r.action,
            RenderedAction::Run { .. } | RenderedAction::Script { .. }
        );
    let note = Orphan::Process {
        pid: None,
        token: token.clone(),
    }
    .to_note();
    let notes: &[(&str, &str)] = if tracked {
        &[(NOTE_ORPHAN, note.as_str())]
    } else {
        &[]
    };
    let id = match begin(s, step, target, kind, number, &r.def_hash, notes) {
        Ok(id) => id,
        Err(msg) => return AttemptEnd::Fatal(msg),
    };
    let resume = Resume {
        attempt: id,
        phase: Phase::Fresh,
        started_at: s.clock.now(),
    };
    super::attempt::run_attempt(s, step, target, r, &resume, Some(&token), number, n, tries)
}

/// Stops `orphan` on `target` if it still runs (reconnecting first), notes the result on the
/// attempt `id` and in the pair's log. `Ok`: it is gone, and what was found; `Err`: it may
/// still run, and why.
pub(crate) fn settle_orphan(
    s: &Session<'_>,
    target: &str,
    id: AttemptId,
    orphan: &Orphan,
    out: &mut PairOutput<'_, '_>,
) -> Result<String, String> {
    out.note(&format!(
        "the connection was lost while the command ran; stopping it on the target if it still runs ({})",
        orphan.describe()
    ));
    let what = orphan.describe();
    let settled = match s.pool.with(s.pb, &s.secrets, target, |t| t.stop_orphan(orphan)) {
        Ok(Ok(OrphanStop::Stopped)) => Ok(("stopped", format!(
            "the command was still running on the target after the connection was lost; stopped it ({what})"
        ))),
        Ok(Ok(OrphanStop::Ended)) => Ok(("ended", format!(
            "the command had already ended on the target when it was looked for after the connection was lost ({what})"
        ))),
        Ok(Ok(OrphanStop::PidReused)) => Ok(("pid-reused", format!(
            "the command had already ended on the target ({what} now belongs to another process, which was left alone)"
        ))),
        Ok(Ok(OrphanStop::ShellDeleted)) => Ok(("shell-deleted", format!(
            "after the connection was lost, deleted the command's shell on the target, which stops it if it still ran ({what})"
        ))),
        Ok(Err(e)) => Err(format!(
            "the command may still be running on the target after the connection was lost ({what}): {e}"
        )),
        Err(e) => Err(format!(
            "the command may still be running on the target after the connection was lost ({what}), and it cannot be stopped now: {e}"
        )),
    };
    match settled {
        Ok((word, text)) => {
            if let Err(e) = s.journal().set_note(id, NOTE_ORPHAN_SETTLED, word) {
                // The next apply would look again, and find it gone: harmless.
                tracing::error!("cannot note that the command left on the target is gone: {e}");
            }
            out.note(&text);
            Ok(text)
        }
        Err(text) => {
            out.note(&text);
            Err(text)
        }
    }
}

/// For a pair found in doubt: if its attempt `id` lost its connection with the command perhaps
/// still running, and nothing settled that since, stops the command now. `Ok(None)`: nothing
/// to do; `Ok(Some(text))`: what was found; `Err`: it may still run.
pub(crate) fn settle_recorded_orphan(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    id: AttemptId,
) -> Result<Option<String>, String> {
    let notes = s.journal().notes(id).map_err(|e| {
        format!("the journal cannot be read about the command it may have left running: {e}")
    })?;
    let Some(note) = notes.get(NOTE_ORPHAN) else {
        return Ok(None);
    };
    if notes.contains_key(NOTE_ORPHAN_SETTLED) {
        return Ok(None);
    }
    let Some(orphan) = Orphan::from_note(note) else {
        return Err(format!(
            "its connection was lost while the command ran, and the journal's note about that command cannot be read ({note})"
        ));
    };
    let mut out = PairOutput::new(s, &step.id, target, "");
    let settled = settle_orphan(s, target, id, &orphan, &mut out);
    out.finish();
    settled.map(Some)
}

/// The connection died mid-command. An idempotent step may simply be retried; otherwise the
/// check decides; without one, only an operator can.
pub(super) fn lost(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    number: u32,
    why: String,
) -> AttemptEnd {
    if step.redone_in_doubt() {
        return AttemptEnd::Failed(why);
    }
    match verify_in_doubt(s, step, target, number) {
        Some(true) => {
            let r = step.rendered_for(target);
            let mark = crate::journal::NewMark {
                run: Some(s.run.clone()),
                step_id: step.id.clone(),
                target: target.to_string(),
                mark: crate::journal::MarkKind::Done,
                def_hash: r.map(|r| r.def_hash.clone()).unwrap_or_default(),
                user: format!("runner (check, for {})", s.who.user),
                host: s.who.host.clone(),
                at: s.clock.now(),
                reason: Some("connection lost mid-command; the check passed".into()),
            };
            match s.journal().mark(&mark) {
                Ok(()) => AttemptEnd::Succeeded,
                Err(e) => AttemptEnd::Fatal(format!("{why}; the check passed but cannot be recorded: {e}")),
            }
        }
        Some(false) => AttemptEnd::Failed(format!("{why}; the check failed")),
        None => AttemptEnd::Fatal(format!(
            "{why}. The step is not idempotent and has no check, so it is not run again: inspect the target, then `runner mark {} {}@{target} done|retry|skip`",
            s.pb.path.display(),
            step.id
        )),
    }
}

pub(super) fn shell_for(s: &Session<'_>, target: &str) -> Shell {
    s.pb.targets
        .get(target)
        .map(|t| shell_of(t.shell))
        .unwrap_or(Shell::Sh)
}

pub(super) enum CheckEnd {
    Passed,
    Failed(String),
    Interrupted,
}

/// Runs the step's check (recorded as its own attempt); exit 0 means the step's work is done.
pub(super) fn run_check(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    r: &Rendered,
    check: &str,
    number: u32,
) -> CheckEnd {
    let id = match begin(
        s,
        step,
        target,
        AttemptKind::Check,
        number,
        &r.def_hash,
        &[],
    ) {
        Ok(id) => id,
        Err(msg) => return CheckEnd::Failed(msg),
    };
    let mut out = PairOutput::new(s, &step.id, target, "check");
    out.note("check");
    // The check gets the step's environment; its stdin is the command's alone.
    let (env, _) = s.secrets.inputs_of(r);
    let ctl = Control {
        timeout: std_duration(step.timeout),
        cancel: s.interrupt.cancel_flag(),
        env,
        stdin: None,
    };
    let shell = shell_for(s, target);
    let result = s.pool.with(s.pb, &s.secrets, target, |t| {
        t.exec(check, shell, &ctl, &mut |st, b| out.push(st, b))
    });
    out.finish();
    let (state, code, end) = match result {
        Ok(Ok(CommandExit::Code(0))) => (AttemptState::Succeeded, Some(0), CheckEnd::Passed),
        Ok(Ok(CommandExit::Code(c))) => (
            AttemptState::Failed,
            Some(c),
            CheckEnd::Failed(format!("the check exited with {c}")),
        ),
        Ok(Ok(CommandExit::TimedOut)) => (
            AttemptState::TimedOut,
            None,
            CheckEnd::Failed("the check timed out".into()),
        ),
        Ok(Ok(CommandExit::Cancelled)) => (AttemptState::Interrupted, None, CheckEnd::Interrupted),
        Ok(Err(e)) => (
            AttemptState::Failed,
            None,
            CheckEnd::Failed(format!("the check could not run: {e}")),
        ),
        Err(e) => (
            AttemptState::Failed,
            None,
            CheckEnd::Failed(format!("the check could not run: {e}")),
        ),
    };
    let msg = match &end {
        CheckEnd::Failed(m) => Some(m.as_str()),
        _ => None,
    };
    finish(s, id, state, code, msg);
    end
}

/// Verifies an in-doubt pair with its check (no window gate: a check only reads).
pub fn verify_in_doubt(s: &Session<'_>, step: &Step, target: &str, number: u32) -> Option<bool> {
    let r = step.rendered_for(target)?;
    let check = r.check.as_deref()?;
    Some(matches!(
        run_check(s, step, target, r, check, number),
        CheckEnd::Passed
    ))
}

/// A step still running when business hours (less the margin) began is reported, not killed.
pub(super) fn overrun(s: &Session<'_>, step: &Step, target: &str, started: Timestamp) {
    let w = &s.pb.window;
    let end = s.clock.now();
    let until = end.saturating_add(w.margin()).unwrap_or(end);
    if step.business_hours == crate::playbook::BusinessHoursPolicy::Refuse
        && !w.business_intervals(started, until).is_empty()
    {
        s.record(
            Some(&step.id),
            EventKind::Overrun,
            format!(
                "`{}` on `{target}` was still running within {} of business hours (ended {})",
                step.id,
                crate::duration::human_duration(w.margin()),
                super::when(s.pb, Some(end))
            ),
        );
        s.emit(&Event::Overrun {
            step: step.id.clone(),
            target: target.to_string(),
        });
    }
}
