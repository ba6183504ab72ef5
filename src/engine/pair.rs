//! One step on one target: attempts with retries, each journaled before it starts, the
//! check after a success, and the overrun report.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::event::Event;
use super::output::PairOutput;
use super::targets::shell_of;
use super::{Blocked, Session};
use crate::journal::{AttemptId, AttemptKind, AttemptState, EventKind, NewAttempt};
use crate::playbook::{Rendered, RenderedAction, Step};
use crate::transport::{Control, Exit, Shell, Transport};

/// How a pair ended in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairEnd {
    Done,
    Failed(String),
    Interrupted,
    /// A retry could not start because the window closed (`when_closed: stop`).
    WindowClosed(Option<Timestamp>),
}

fn std_duration(d: Option<jiff::SignedDuration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
}

/// Runs `step` on `target`; `earlier` is how many run attempts previous runs made, so that
/// attempt numbers keep counting across a resume.
pub fn run_pair(s: &Session<'_>, step: &Step, target: &str, earlier: u32) -> PairEnd {
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
            match s.gate(step) {
                Ok(()) => {}
                Err(Blocked::Interrupted) => return PairEnd::Interrupted,
                Err(Blocked::Window(next)) => return PairEnd::WindowClosed(next),
            }
        }
        if s.interrupt.stopping() && n > 1 {
            return PairEnd::Interrupted;
        }
        match attempt(s, step, target, rendered, earlier + n, n, tries) {
            AttemptEnd::Succeeded => return PairEnd::Done,
            AttemptEnd::Interrupted => return PairEnd::Interrupted,
            AttemptEnd::Failed(msg) => last_failure = msg,
            AttemptEnd::Fatal(msg) => return PairEnd::Failed(msg),
        }
    }
    PairEnd::Failed(last_failure)
}

enum AttemptEnd {
    Succeeded,
    Failed(String),
    Interrupted,
    /// Do not retry: the journal could not record intent, so nothing may run.
    Fatal(String),
}

fn begin(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    kind: AttemptKind,
    number: u32,
    def_hash: &str,
) -> Result<AttemptId, String> {
    s.journal()
        .begin_attempt(&NewAttempt {
            run: s.run.clone(),
            step_id: step.id.clone(),
            target: target.to_string(),
            kind,
            number,
            started_at: s.clock.now(),
            pid: s.who.pid,
            host: s.who.host.clone(),
            def_hash: def_hash.to_string(),
        })
        .map_err(|e| format!("the journal cannot record the attempt, so it was not started: {e}"))
}

fn finish(
    s: &Session<'_>,
    id: AttemptId,
    state: AttemptState,
    code: Option<i64>,
    message: Option<&str>,
) {
    let message = message.map(|m| s.redactor.redact(m));
    if let Err(e) = s
        .journal()
        .finish_attempt(id, state, code, s.clock.now(), message.as_deref())
    {
        // The attempt stays `running` in the journal: the next apply treats it as in doubt,
        // which is the safe reading.
        tracing::error!("cannot record the outcome of attempt {id}: {e}");
    }
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
    let id = match begin(s, step, target, AttemptKind::Run, number, &r.def_hash) {
        Ok(id) => id,
        Err(msg) => return AttemptEnd::Fatal(msg),
    };
    s.emit(&Event::AttemptStarted {
        step: step.id.clone(),
        target: target.to_string(),
        kind: "run".into(),
        attempt: n,
        of: tries,
    });
    let started = Instant::now();
    let started_at = s.clock.now();
    let mut out = PairOutput::new(s, &step.id, target, "");
    out.note(&format!("attempt {n} of {tries} ({})", step.action.kind()));
    let ctl = Control {
        timeout: std_duration(step.timeout),
        cancel: s.interrupt.cancel_flag(),
    };
    let shell = shell_for(s, target);
    let result = s.pool.with(s.pb, &s.secrets, target, |t| {
        execute(t, r, shell, &ctl, &mut out)
    });
    out.finish();

    let (state, code, message) = match result {
        // Could not connect: the command never started, so this is a plain failure.
        Err(e) => (AttemptState::Failed, None, Some(e.to_string())),
        // The link died while the command ran: it may or may not have had its effect. Recorded
        // as interrupted, which every later decision treats as in doubt.
        Ok(Err(e)) if e.is_connection_lost() => (
            AttemptState::Interrupted,
            None,
            Some(format!("{e}; the command may have run in part or in full")),
        ),
        Ok(Err(e)) => (AttemptState::Failed, None, Some(e.to_string())),
        Ok(Ok(Exit::TimedOut)) => (
            AttemptState::TimedOut,
            None,
            Some(format!(
                "timed out after {}; the command was stopped on the target",
                step.timeout
                    .map(crate::plan::human_duration)
                    .unwrap_or_default()
            )),
        ),
        Ok(Ok(Exit::Cancelled)) => (
            AttemptState::Interrupted,
            None,
            Some("interrupted by the operator (second Ctrl-C)".into()),
        ),
        Ok(Ok(Exit::Code(c))) if step.ok_codes.contains(&c) => match &r.check {
            None => (AttemptState::Succeeded, Some(c), None),
            Some(check) => match run_check(s, step, target, r, check, number) {
                CheckEnd::Passed => (AttemptState::Succeeded, Some(c), None),
                CheckEnd::Failed(msg) => (AttemptState::Failed, Some(c), Some(msg)),
                CheckEnd::Interrupted => (
                    AttemptState::Interrupted,
                    Some(c),
                    Some("interrupted during the check".into()),
                ),
            },
        },
        Ok(Ok(Exit::Code(c))) => {
            let tail = out.tail.back().cloned().unwrap_or_default();
            (
                AttemptState::Failed,
                Some(c),
                Some(if tail.is_empty() {
                    format!(
                        "exit code {c} is not one of the ok codes {:?}",
                        step.ok_codes
                    )
                } else {
                    format!(
                        "exit code {c} is not one of the ok codes {:?}; last output: {tail}",
                        step.ok_codes
                    )
                }),
            )
        }
    };
    finish(s, id, state, code, message.as_deref());
    let elapsed = started.elapsed();
    if let Some(m) = &message {
        out.note(m);
    }
    s.emit(&Event::AttemptFinished {
        step: step.id.clone(),
        target: target.to_string(),
        kind: "run".into(),
        attempt: n,
        outcome: state.as_str().to_string(),
        exit_code: code,
        elapsed_ms: elapsed.as_millis() as u64,
        message: message.clone(),
    });
    match state {
        AttemptState::Succeeded => {
            overrun(s, step, target, started_at);
            AttemptEnd::Succeeded
        }
        AttemptState::Interrupted if !s.interrupt.stopping() => {
            lost(s, step, target, number, message.unwrap_or_default())
        }
        AttemptState::Interrupted => AttemptEnd::Interrupted,
        _ => AttemptEnd::Failed(message.unwrap_or_else(|| "failed".into())),
    }
}

/// The connection died mid-command. An idempotent step may simply be retried; otherwise the
/// check decides; without one, only an operator can.
fn lost(s: &Session<'_>, step: &Step, target: &str, number: u32, why: String) -> AttemptEnd {
    if step.idempotent {
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

/// Runs the step's action on a connected transport.
fn execute(
    t: &mut dyn Transport,
    r: &Rendered,
    shell: Shell,
    ctl: &Control,
    out: &mut PairOutput<'_, '_>,
) -> Result<Exit, crate::transport::TransportError> {
    match &r.action {
        RenderedAction::Run { command } => {
            t.exec(command, shell, ctl, &mut |st, b| out.push(st, b))
        }
        RenderedAction::Script { path, .. } => {
            t.run_script(path, shell, ctl, &mut |st, b| out.push(st, b))
        }
        RenderedAction::Upload {
            src, dest, bytes, ..
        } => {
            let started = Instant::now();
            let up = t.upload(src, dest, shell, &mut |_| {})?;
            let secs = started.elapsed().as_secs_f64().max(0.001);
            out.note(&format!(
                "uploaded {} bytes to {dest}; SHA-256 {} verified on the target ({:.1} MiB/s)",
                up.bytes,
                up.sha256,
                *bytes as f64 / 1_048_576.0 / secs
            ));
            Ok(Exit::Code(0))
        }
        RenderedAction::Manual { .. } => Ok(Exit::Code(0)),
    }
}

fn shell_for(s: &Session<'_>, target: &str) -> Shell {
    s.pb.targets
        .get(target)
        .map(|t| shell_of(t.shell))
        .unwrap_or(Shell::Sh)
}

enum CheckEnd {
    Passed,
    Failed(String),
    Interrupted,
}

/// Runs the step's check (recorded as its own attempt); exit 0 means the step's work is done.
fn run_check(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    r: &Rendered,
    check: &str,
    number: u32,
) -> CheckEnd {
    let id = match begin(s, step, target, AttemptKind::Check, number, &r.def_hash) {
        Ok(id) => id,
        Err(msg) => return CheckEnd::Failed(msg),
    };
    let mut out = PairOutput::new(s, &step.id, target, "check");
    out.note("check");
    let ctl = Control {
        timeout: std_duration(step.timeout),
        cancel: s.interrupt.cancel_flag(),
    };
    let shell = shell_for(s, target);
    let result = s.pool.with(s.pb, &s.secrets, target, |t| {
        t.exec(check, shell, &ctl, &mut |st, b| out.push(st, b))
    });
    out.finish();
    let (state, code, end) = match result {
        Ok(Ok(Exit::Code(0))) => (AttemptState::Succeeded, Some(0), CheckEnd::Passed),
        Ok(Ok(Exit::Code(c))) => (
            AttemptState::Failed,
            Some(c),
            CheckEnd::Failed(format!("the check exited with {c}")),
        ),
        Ok(Ok(Exit::TimedOut)) => (
            AttemptState::TimedOut,
            None,
            CheckEnd::Failed("the check timed out".into()),
        ),
        Ok(Ok(Exit::Cancelled)) => (AttemptState::Interrupted, None, CheckEnd::Interrupted),
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
fn overrun(s: &Session<'_>, step: &Step, target: &str, started: Timestamp) {
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
                crate::plan::human_duration(w.margin()),
                super::when(s.pb, Some(end))
            ),
        );
        s.emit(&Event::Overrun {
            step: step.id.clone(),
            target: target.to_string(),
        });
    }
}
