//! One step on one target: attempts with retries, each journaled before it starts, the
//! check after a success, and the overrun report.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::event::Event;
use super::output::PairOutput;
use super::{Blocked, Session};
use crate::journal::{AttemptId, AttemptKind, AttemptState, EventKind, NewAttempt};
use crate::playbook::{Rendered, RenderedAction, Step};
use crate::targets::shell_of;
use crate::transport::{
    CommandExit, Control, FileDigest, Identity, Orphan, OrphanStop, Shell, Transport,
};

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

fn std_duration(d: Option<jiff::SignedDuration>) -> Option<Duration> {
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
            (Some(r), 1) => run_attempt(s, step, target, rendered, r, None, earlier, n, tries),
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
fn finish(
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
    run_attempt(s, step, target, r, &resume, Some(&token), number, n, tries)
}

/// Performs (or continues) one attempt and records its outcome. A fresh attempt's command
/// carries `token` (in the journal with the attempt).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_attempt(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    r: &Rendered,
    resume: &Resume,
    token: Option<&str>,
    number: u32,
    n: u32,
    tries: u32,
) -> AttemptEnd {
    let id = resume.attempt;
    s.emit(&Event::AttemptStarted {
        step: step.id.clone(),
        target: target.to_string(),
        kind: super::event::ActionKind::of(&step.action),
        attempt: n,
        of: tries,
    });
    let since_start =
        Duration::try_from(s.clock.now().duration_since(resume.started_at)).unwrap_or_default();
    let started = Instant::now()
        .checked_sub(since_start)
        .unwrap_or_else(Instant::now);
    let started_at = resume.started_at;
    let mut out = PairOutput::new(s, &step.id, target, "");
    match &resume.phase {
        Phase::Fresh => out.note(&format!("attempt {n} of {tries} ({})", step.action.kind())),
        Phase::Job(dir) => out.note(&format!(
            "following the detached job in {dir} started by an earlier run"
        )),
        Phase::Reboot => out.note("continuing the reboot begun by an earlier run"),
    }
    let (env, stdin) = s.secrets.inputs_of(r);
    let ctl = Control {
        timeout: std_duration(step.timeout),
        cancel: s.interrupt.cancel_flag(),
        env,
        stdin,
    };
    let shell = shell_for(s, target);
    let detached =
        s.pb.targets
            .get(target)
            .is_some_and(|t| step.detached_on(t));
    let flavor = super::detach::Flavor::of(shell);
    let mut job_dir: Option<String> = None;
    let mut orphan: Option<Orphan> = None;

    let result: Result<Result<CommandExit, String>, Lost> = match (&resume.phase, &r.action) {
        // A reboot step, or the reboot after a `reboot_on` code: the command part is done.
        (Phase::Reboot, _) => {
            let code = s
                .journal()
                .notes(id)
                .ok()
                .and_then(|n| {
                    n.get(super::reboot::NOTE_EXIT_CODE)
                        .and_then(|c| c.parse().ok())
                })
                .unwrap_or(0);
            Ok(Ok(CommandExit::Code(code)))
        }
        (_, RenderedAction::Reboot { .. }) => Ok(Ok(CommandExit::Code(0))),
        (Phase::Job(dir), _) => {
            job_dir = Some(dir.clone());
            match super::detach::follow(s, flavor, target, dir, ctl.timeout, started, &mut out) {
                super::detach::JobEnd::LeftRunning => {
                    out.finish();
                    return AttemptEnd::LeftRunning;
                }
                end => job_result(end),
            }
        }
        (Phase::Fresh, RenderedAction::Run { command }) if detached => {
            let dir = flavor.job_dir(&super::detach::job_root(s, target), &s.run, id);
            // Intent before action: the folder is known to the journal before the job exists.
            if let Err(e) = s.journal().set_note(id, super::detach::NOTE_JOB_DIR, &dir) {
                return AttemptEnd::Fatal(format!(
                    "the journal cannot record the job, so it was not started: {e}"
                ));
            }
            out.note(&format!(
                "detached: output and status in {dir} on the target"
            ));
            match super::detach::start(s, flavor, target, &dir, command) {
                Err(m) => Ok(Err(m)),
                Ok(()) => {
                    job_dir = Some(dir.clone());
                    match super::detach::follow(
                        s,
                        flavor,
                        target,
                        &dir,
                        ctl.timeout,
                        started,
                        &mut out,
                    ) {
                        super::detach::JobEnd::LeftRunning => {
                            out.finish();
                            return AttemptEnd::LeftRunning;
                        }
                        end => job_result(end),
                    }
                }
            }
        }
        (Phase::Fresh, _) => match s.pool.with(s.pb, &s.secrets, target, |t| {
            // Where the target names the command itself (a WinRM shell): in the journal
            // before the command is sent.
            let mut announce = |o: &Orphan| {
                s.journal()
                    .set_note(id, NOTE_ORPHAN, &o.to_note())
                    .map_err(|e| format!("the journal cannot record the command: {e}"))
            };
            let fallback;
            let token = match token {
                Some(t) => t,
                None => {
                    fallback = crate::transport::random_token();
                    &fallback
                }
            };
            let identity = Identity {
                token,
                announce: &mut announce,
            };
            let result = execute(t, r, shell, &ctl, identity, &mut out);
            // Asked only after a failure: a normal step pays nothing for this.
            let left = if result.is_err() {
                t.take_orphan()
            } else {
                None
            };
            (result, left)
        }) {
            Err(e) => Ok(Err(e.to_string())),
            // A lost link, or a command that could not be stopped (its stop request failed on
            // a stalled link): either way it may have run in part or in full, or still run.
            Ok((Err(e), left))
                if e.is_connection_lost()
                    || matches!(e, crate::transport::TransportError::KillFailed { .. }) =>
            {
                orphan = left;
                Err(Lost(format!(
                    "{e}; the command may have run in part or in full"
                )))
            }
            Ok((Err(e), _)) => Ok(Err(e.to_string())),
            Ok((Ok(exit), _)) => Ok(Ok(exit)),
        },
    };
    out.finish();

    let succeeded = |c: i64| step.ok_codes.contains(&c) || step.reboot_on.contains(&c);
    let (mut state, code, mut message) = match result {
        // Could not start: a plain failure.
        Ok(Err(m)) => (AttemptState::Failed, None, Some(m)),
        // The link died (or the job vanished) while the command ran: it may or may not have
        // had its effect. Recorded as interrupted, which every later decision treats as in doubt.
        Err(Lost(m)) => (AttemptState::Interrupted, None, Some(m)),
        Ok(Ok(CommandExit::TimedOut)) => (
            AttemptState::TimedOut,
            None,
            Some(format!(
                "timed out after {}; the command was stopped on the target",
                step.timeout
                    .map(crate::duration::human_duration)
                    .unwrap_or_default()
            )),
        ),
        Ok(Ok(CommandExit::Cancelled)) => (
            AttemptState::Interrupted,
            None,
            Some("interrupted by the operator (second Ctrl-C)".into()),
        ),
        Ok(Ok(CommandExit::Code(c))) if succeeded(c) => (AttemptState::Succeeded, Some(c), None),
        Ok(Ok(CommandExit::Code(c))) => {
            let tail = out.tail.back().cloned().unwrap_or_default();
            let mut m = format!(
                "exit code {c} is not one of the ok codes {:?}",
                step.ok_codes
            );
            if !tail.is_empty() {
                m.push_str(&format!("; last output: {tail}"));
            }
            (AttemptState::Failed, Some(c), Some(m))
        }
    };

    // A command that lost its connection may still run on the target (sshd need not notice a
    // link that failed silently): it must be gone before a check or a retry, which would
    // otherwise run beside it.
    let mut orphan_unsettled = false;
    if let Some(o) = &orphan {
        // Durable before the reconnect, in case this runner dies before the stop.
        if let Err(e) = s.journal().set_note(id, NOTE_ORPHAN, &o.to_note()) {
            tracing::error!("cannot note the command left on the target: {e}");
        }
        let settled = settle_orphan(s, target, id, o, &mut out);
        orphan_unsettled = settled.is_err();
        let text = match settled {
            Ok(t) | Err(t) => t,
        };
        message = Some(match message {
            Some(m) => format!("{m}; {text}"),
            None => text,
        });
    }

    // Reboot, if the step is a reboot or its exit code asks for one.
    let reboot_timeout = match step.action {
        crate::playbook::Action::Reboot { timeout } => Some(timeout),
        _ if code.is_some_and(|c| step.reboot_on.contains(&c)) => {
            Some(crate::playbook::DEFAULT_REBOOT_TIMEOUT)
        }
        _ => None,
    };
    if state == AttemptState::Succeeded {
        if let Some(timeout) = reboot_timeout {
            if let Some(c) = code {
                if let Err(e) =
                    s.journal()
                        .set_note(id, super::reboot::NOTE_EXIT_CODE, &c.to_string())
                {
                    tracing::error!("cannot note the exit code before the reboot: {e}");
                }
            }
            let timeout = Duration::try_from(timeout).unwrap_or(Duration::from_secs(1200));
            match super::reboot::reboot(s, id, target, timeout, &mut out) {
                super::reboot::RebootEnd::Done => {}
                super::reboot::RebootEnd::Failed(m) => {
                    state = AttemptState::Failed;
                    message = Some(m);
                }
                super::reboot::RebootEnd::Cancelled => {
                    state = AttemptState::Interrupted;
                    message = Some("interrupted while waiting for the reboot".into());
                }
            }
        }
    }

    // The check, after the command (and any reboot) succeeded.
    if state == AttemptState::Succeeded {
        if let Some(check) = &r.check {
            match run_check(s, step, target, r, check, number) {
                CheckEnd::Passed => {}
                CheckEnd::Failed(m) => {
                    state = AttemptState::Failed;
                    message = Some(m);
                }
                CheckEnd::Interrupted => {
                    state = AttemptState::Interrupted;
                    message = Some("interrupted during the check".into());
                }
            }
        }
    }

    let recorded = finish(s, id, state, code, message.as_deref());
    if let Some(dir) = &job_dir {
        // The result is in the journal: the job's files have served their purpose. A job that
        // is still in doubt keeps its folder for the operator to inspect, and a result the
        // journal could not record stays for the next run to collect.
        if recorded && state != AttemptState::Interrupted {
            super::detach::remove(s, flavor, target, dir);
        }
    }
    let elapsed = started.elapsed();
    if let Some(m) = &message {
        out.note(m);
    }
    s.emit(&Event::AttemptFinished {
        step: step.id.clone(),
        target: target.to_string(),
        kind: super::event::ActionKind::of(&step.action),
        attempt: n,
        outcome: state.into(),
        exit_code: code,
        elapsed_ms: elapsed.as_millis() as u64,
        message: message.clone(),
    });
    match state {
        AttemptState::Succeeded => {
            overrun(s, step, target, started_at);
            AttemptEnd::Succeeded
        }
        AttemptState::Interrupted if orphan_unsettled => AttemptEnd::Fatal(format!(
            "{}. It is left in doubt and neither checked nor run again while it may still run: inspect the target, then `runner mark {} {}@{target} done|retry|skip` (or run `runner apply` again once the target answers: it tries to stop the command first)",
            message.unwrap_or_default(),
            s.pb.path.display(),
            step.id
        )),
        AttemptState::Interrupted if !s.interrupt.stopping() => {
            lost(s, step, target, number, message.unwrap_or_default())
        }
        AttemptState::Interrupted => AttemptEnd::Interrupted,
        _ => AttemptEnd::Failed(message.unwrap_or_else(|| "failed".into())),
    }
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

/// A command whose outcome is unknown (the link or the job was lost mid-way).
struct Lost(String);

fn job_result(end: super::detach::JobEnd) -> Result<Result<CommandExit, String>, Lost> {
    use super::detach::JobEnd;
    match end {
        JobEnd::Exited(c) => Ok(Ok(CommandExit::Code(c))),
        JobEnd::TimedOut => Ok(Ok(CommandExit::TimedOut)),
        JobEnd::Cancelled => Ok(Ok(CommandExit::Cancelled)),
        JobEnd::Lost(m) => Err(Lost(m)),
        JobEnd::LeftRunning => Err(Lost("left running on the target".into())),
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
    id: Identity<'_>,
    out: &mut PairOutput<'_, '_>,
) -> Result<CommandExit, crate::transport::TransportError> {
    match &r.action {
        RenderedAction::Run { command } => {
            t.exec_identified(command, shell, ctl, id, &mut |st, b| out.push(st, b))
        }
        RenderedAction::Script { path, .. } => {
            t.run_script_identified(path, shell, ctl, id, &mut |st, b| out.push(st, b))
        }
        RenderedAction::Upload {
            src,
            dest,
            bytes,
            sha256,
        } => {
            let started = Instant::now();
            let expected = FileDigest {
                bytes: *bytes,
                sha256: sha256.clone(),
            };
            t.upload(src, &expected, dest, shell, &mut |_| {})?;
            let secs = started.elapsed().as_secs_f64().max(0.001);
            out.note(&format!(
                "uploaded {bytes} bytes to {dest}; the target has the planned SHA-256 {sha256} ({:.1} MiB/s)",
                *bytes as f64 / 1_048_576.0 / secs
            ));
            Ok(CommandExit::Code(0))
        }
        // Manual steps are confirmed by the operator and reboots are driven by `reboot`.
        RenderedAction::Manual { .. } | RenderedAction::Reboot { .. } => Ok(CommandExit::Code(0)),
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
