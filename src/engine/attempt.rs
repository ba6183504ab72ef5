//! One attempt of a step on a target, as named phases: start the command (or follow what an
//! earlier run started), judge how it ended, stop a command a lost link may have left running,
//! reboot when asked, run the check, and record the outcome.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::event::Event;
use super::output::PairOutput;
use super::pair::{
    finish, lost, overrun, run_check, settle_orphan, shell_for, std_duration, AttemptEnd, CheckEnd,
    Phase, Resume,
};
use super::transfer_limit::{exit_of, TransferLimit};
use super::Session;
use crate::journal::{AttemptId, AttemptState};
use crate::playbook::{Rendered, RenderedAction, Step};
use crate::transport::{CommandExit, Control, FileDigest, Identity, Orphan, Shell, Transport};

use super::pair::NOTE_ORPHAN;

/// What the command part of an attempt left behind for the later phases.
#[derive(Default)]
struct Started {
    /// The detached job's folder on the target, once the job exists.
    job_dir: Option<String>,
    /// A command a lost link may have left running.
    orphan: Option<Orphan>,
}

/// How an attempt ended, as it will be recorded.
struct Verdict {
    state: AttemptState,
    code: Option<i64>,
    message: Option<String>,
}

impl Verdict {
    fn fail(&mut self, state: AttemptState, message: String) {
        self.state = state;
        self.message = Some(message);
    }
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
    let mut out = PairOutput::new(s, &step.id, target, "");
    match &resume.phase {
        Phase::Fresh => out.note(&format!("attempt {n} of {tries} ({})", step.action.kind())),
        Phase::Job(dir) => out.note(&format!(
            "following the detached job in {dir} started by an earlier run"
        )),
        Phase::Reboot => out.note("continuing the reboot begun by an earlier run"),
    }
    let mut left = Started::default();
    let result = match command(
        s, step, target, r, resume, token, started, &mut out, &mut left,
    ) {
        Ok(result) => result,
        Err(end) => {
            out.finish();
            return end;
        }
    };
    out.finish();
    let mut v = judge(step, result, &out);
    let orphan_unsettled = settle_left_command(s, target, id, &left, &mut v, &mut out);
    if v.state == AttemptState::Succeeded {
        reboot_if_asked(s, step, target, id, &mut v, &mut out);
    }
    if v.state == AttemptState::Succeeded {
        check(s, step, target, r, number, &mut v);
    }
    record(s, step, target, id, n, &v, &left, started, &mut out);
    conclude(
        s,
        step,
        target,
        number,
        v,
        orphan_unsettled,
        resume.started_at,
    )
}

/// What running the command part gave: its exit, a failure to start it (`Ok(Err)`), or an
/// outcome nobody knows (`Err(Lost)`: the link or the job was lost mid-way).
type Ran = Result<Result<CommandExit, String>, Lost>;

/// Starts the step's command (attached, or as a detached job), or follows what an earlier run
/// started. `Err` ends the attempt at once (a job left running, a journal that cannot record).
#[allow(clippy::too_many_arguments)]
fn command(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    r: &Rendered,
    resume: &Resume,
    token: Option<&str>,
    started: Instant,
    out: &mut PairOutput<'_, '_>,
    left: &mut Started,
) -> Result<Ran, AttemptEnd> {
    let id = resume.attempt;
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
    match (&resume.phase, &r.action) {
        // A reboot step, or the reboot after a `reboot_on` code: the command part is done.
        (Phase::Reboot, _) => Ok(Ok(Ok(CommandExit::Code(exit_before_reboot(s, id))))),
        (_, RenderedAction::Reboot { .. }) => Ok(Ok(Ok(CommandExit::Code(0)))),
        (Phase::Job(dir), _) => {
            left.job_dir = Some(dir.clone());
            follow_job(s, flavor, target, dir, &ctl, started, out)
        }
        (Phase::Fresh, RenderedAction::Run { command }) if detached => {
            start_job(s, flavor, target, id, command, &ctl, started, out, left)
        }
        (Phase::Fresh, RenderedAction::Copy { .. } | RenderedAction::Fetch { .. }) => {
            let limit = TransferLimit::new(ctl.timeout, ctl.cancel.clone());
            Ok(super::copy::transfer(s, target, r, &limit, out))
        }
        (Phase::Fresh, _) => Ok(run_attached(
            s, target, r, id, token, shell, &ctl, out, left,
        )),
    }
}

/// The exit code a command gave before the reboot it asked for (noted on the attempt).
fn exit_before_reboot(s: &Session<'_>, id: AttemptId) -> i64 {
    s.journal()
        .notes(id)
        .ok()
        .and_then(|n| {
            n.get(super::reboot::NOTE_EXIT_CODE)
                .and_then(|c| c.parse().ok())
        })
        .unwrap_or(0)
}

/// Follows a detached job until it ends (or is left running at the operator's request).
fn follow_job(
    s: &Session<'_>,
    flavor: super::detach::Flavor,
    target: &str,
    dir: &str,
    ctl: &Control,
    started: Instant,
    out: &mut PairOutput<'_, '_>,
) -> Result<Ran, AttemptEnd> {
    match super::detach::follow(s, flavor, target, dir, ctl.timeout, started, out) {
        super::detach::JobEnd::LeftRunning => Err(AttemptEnd::LeftRunning),
        end => Ok(job_result(end)),
    }
}

/// Starts `command` as a detached job whose folder the journal knows first, then follows it.
#[allow(clippy::too_many_arguments)]
fn start_job(
    s: &Session<'_>,
    flavor: super::detach::Flavor,
    target: &str,
    id: AttemptId,
    command: &str,
    ctl: &Control,
    started: Instant,
    out: &mut PairOutput<'_, '_>,
    left: &mut Started,
) -> Result<Ran, AttemptEnd> {
    let dir = flavor.job_dir(&super::detach::job_root(s, target), &s.run, id);
    // Intent before action: the folder is known to the journal before the job exists.
    if let Err(e) = s.journal().set_note(id, super::detach::NOTE_JOB_DIR, &dir) {
        return Err(AttemptEnd::Fatal(format!(
            "the journal cannot record the job, so it was not started: {e}"
        )));
    }
    out.note(&format!(
        "detached: output and status in {dir} on the target"
    ));
    match super::detach::start(s, flavor, target, &dir, command, &ctl.env) {
        Err(m) => Ok(Ok(Err(m))),
        Ok(()) => {
            left.job_dir = Some(dir.clone());
            follow_job(s, flavor, target, &dir, ctl, started, out)
        }
    }
}

/// Runs the step's action attached, on the target's pooled connection. A command the target
/// may still run after a lost link is left in `left.orphan` for the next phase to stop.
#[allow(clippy::too_many_arguments)]
fn run_attached(
    s: &Session<'_>,
    target: &str,
    r: &Rendered,
    id: AttemptId,
    token: Option<&str>,
    shell: Shell,
    ctl: &Control,
    out: &mut PairOutput<'_, '_>,
    left: &mut Started,
) -> Ran {
    let ran = s.pool.with(s.pb, &s.secrets, target, |t| {
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
        let result = execute(t, r, shell, ctl, identity, out);
        // Asked only after a failure: a normal step pays nothing for this.
        let orphan = if result.is_err() {
            t.take_orphan()
        } else {
            None
        };
        (result, orphan)
    });
    match ran {
        Err(e) => Ok(Err(e.to_string())),
        // A lost link, or a command that could not be stopped (its stop request failed on
        // a stalled link): either way it may have run in part or in full, or still run.
        Ok((Err(e), orphan))
            if e.is_connection_lost()
                || matches!(e, crate::transport::TransportError::KillFailed { .. }) =>
        {
            left.orphan = orphan;
            Err(Lost(format!(
                "{e}; the command may have run in part or in full"
            )))
        }
        Ok((Err(e), _)) => Ok(Err(e.to_string())),
        Ok((Ok(exit), _)) => Ok(Ok(exit)),
    }
}

/// A command whose outcome is unknown (the link or the job was lost mid-way).
pub(super) struct Lost(pub(super) String);

fn job_result(end: super::detach::JobEnd) -> Ran {
    use super::detach::JobEnd;
    match end {
        JobEnd::Exited(c) => Ok(Ok(CommandExit::Code(c))),
        JobEnd::TimedOut => Ok(Ok(CommandExit::TimedOut)),
        JobEnd::Cancelled => Ok(Ok(CommandExit::Cancelled)),
        JobEnd::Lost(m) => Err(Lost(m)),
        JobEnd::LeftRunning => Err(Lost("left running on the target".into())),
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
            let limit = TransferLimit::new(ctl.timeout, ctl.cancel.clone());
            match t.upload(src, &expected, dest, shell, &mut |_| limit.check()) {
                Ok(()) => {}
                Err(e) => match limit.halt_of(&e) {
                    Some(halt) => return Ok(exit_of(halt)),
                    None => return Err(e),
                },
            }
            let secs = started.elapsed().as_secs_f64().max(0.001);
            out.note(&format!(
                "uploaded {bytes} bytes to {dest}; the target has the planned SHA-256 {sha256} ({:.1} MiB/s)",
                *bytes as f64 / 1_048_576.0 / secs
            ));
            Ok(CommandExit::Code(0))
        }
        // Manual steps are confirmed by the operator and reboots are driven by `reboot`;
        // copies and fetches need two ends (`copy`).
        RenderedAction::Manual { .. }
        | RenderedAction::Reboot { .. }
        | RenderedAction::Copy { .. }
        | RenderedAction::Fetch { .. } => Ok(CommandExit::Code(0)),
    }
}

/// How the command part ended, as an attempt's state, exit code and message.
fn judge(step: &Step, result: Ran, out: &PairOutput<'_, '_>) -> Verdict {
    let succeeded = |c: i64| step.ok_codes.contains(&c) || step.reboot_on.contains(&c);
    let transfer = matches!(
        step.action,
        crate::playbook::Action::Upload { .. }
            | crate::playbook::Action::Copy { .. }
            | crate::playbook::Action::Fetch { .. }
    );
    let stopped = if transfer {
        "the transfer was stopped: the destination is as it was, and its temporary file was removed where the target could be reached"
    } else {
        "the command was stopped on the target"
    };
    let (state, code, message) = match result {
        // Could not start: a plain failure.
        Ok(Err(m)) => (AttemptState::Failed, None, Some(m)),
        // The link died (or the job vanished) while the command ran: it may or may not have
        // had its effect. Recorded as interrupted, which every later decision treats as in doubt.
        Err(Lost(m)) => (AttemptState::Interrupted, None, Some(m)),
        Ok(Ok(CommandExit::TimedOut)) => (
            AttemptState::TimedOut,
            None,
            Some(format!(
                "timed out after {}; {stopped}",
                step.timeout
                    .map(crate::duration::human_duration)
                    .unwrap_or_default()
            )),
        ),
        Ok(Ok(CommandExit::Cancelled)) => (
            AttemptState::Interrupted,
            None,
            Some(if transfer {
                format!("interrupted by the operator (second Ctrl-C); {stopped}; the next `runner apply` does it again")
            } else {
                "interrupted by the operator (second Ctrl-C)".into()
            }),
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
    Verdict {
        state,
        code,
        message,
    }
}

/// A command that lost its connection may still run on the target (sshd need not notice a
/// link that failed silently): it must be gone before a check or a retry, which would
/// otherwise run beside it. True when it may still run.
fn settle_left_command(
    s: &Session<'_>,
    target: &str,
    id: AttemptId,
    left: &Started,
    v: &mut Verdict,
    out: &mut PairOutput<'_, '_>,
) -> bool {
    let Some(o) = &left.orphan else {
        return false;
    };
    // Durable before the reconnect, in case this runner dies before the stop.
    if let Err(e) = s.journal().set_note(id, NOTE_ORPHAN, &o.to_note()) {
        tracing::error!("cannot note the command left on the target: {e}");
    }
    let settled = settle_orphan(s, target, id, o, out);
    let unsettled = settled.is_err();
    let text = match settled {
        Ok(t) | Err(t) => t,
    };
    v.message = Some(match v.message.take() {
        Some(m) => format!("{m}; {text}"),
        None => text,
    });
    unsettled
}

/// Reboots the target if the step is a reboot or its exit code asks for one.
fn reboot_if_asked(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    id: AttemptId,
    v: &mut Verdict,
    out: &mut PairOutput<'_, '_>,
) {
    let timeout = match step.action {
        crate::playbook::Action::Reboot { timeout } => timeout,
        _ if v.code.is_some_and(|c| step.reboot_on.contains(&c)) => {
            crate::playbook::DEFAULT_REBOOT_TIMEOUT
        }
        _ => return,
    };
    if let Some(c) = v.code {
        if let Err(e) = s
            .journal()
            .set_note(id, super::reboot::NOTE_EXIT_CODE, &c.to_string())
        {
            tracing::error!("cannot note the exit code before the reboot: {e}");
        }
    }
    let timeout = Duration::try_from(timeout).unwrap_or(Duration::from_secs(1200));
    match super::reboot::reboot(s, id, target, timeout, out) {
        super::reboot::RebootEnd::Done => {}
        super::reboot::RebootEnd::Failed(m) => v.fail(AttemptState::Failed, m),
        super::reboot::RebootEnd::Cancelled => v.fail(
            AttemptState::Interrupted,
            "interrupted while waiting for the reboot".into(),
        ),
    }
}

/// The check, after the command (and any reboot) succeeded.
fn check(s: &Session<'_>, step: &Step, target: &str, r: &Rendered, number: u32, v: &mut Verdict) {
    let Some(check) = &r.check else {
        return;
    };
    match run_check(s, step, target, r, check, number) {
        CheckEnd::Passed => {}
        CheckEnd::Failed(m) => v.fail(AttemptState::Failed, m),
        CheckEnd::Interrupted => v.fail(
            AttemptState::Interrupted,
            "interrupted during the check".into(),
        ),
    }
}

/// Records the outcome in the journal, removes a finished job's folder and says it.
#[allow(clippy::too_many_arguments)]
fn record(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    id: AttemptId,
    n: u32,
    v: &Verdict,
    left: &Started,
    started: Instant,
    out: &mut PairOutput<'_, '_>,
) {
    let recorded = finish(s, id, v.state, v.code, v.message.as_deref());
    if let Some(dir) = &left.job_dir {
        // The result is in the journal: the job's files have served their purpose. A job that
        // is still in doubt keeps its folder for the operator to inspect, and a result the
        // journal could not record stays for the next run to collect.
        if recorded && v.state != AttemptState::Interrupted {
            let flavor = super::detach::Flavor::of(shell_for(s, target));
            super::detach::remove(s, flavor, target, dir);
        }
    }
    let elapsed = started.elapsed();
    if let Some(m) = &v.message {
        out.note(m);
    }
    s.emit(&Event::AttemptFinished {
        step: step.id.clone(),
        target: target.to_string(),
        kind: super::event::ActionKind::of(&step.action),
        attempt: n,
        outcome: v.state.into(),
        exit_code: v.code,
        elapsed_ms: elapsed.as_millis() as u64,
        message: v.message.clone(),
    });
}

/// What the recorded outcome means for the pair: done, retry, in doubt, or stop the run.
fn conclude(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    number: u32,
    v: Verdict,
    orphan_unsettled: bool,
    started_at: Timestamp,
) -> AttemptEnd {
    match v.state {
        AttemptState::Succeeded => {
            overrun(s, step, target, started_at);
            AttemptEnd::Succeeded
        }
        AttemptState::Interrupted if orphan_unsettled => AttemptEnd::Fatal(format!(
            "{}. It is left in doubt and neither checked nor run again while it may still run: inspect the target, then `runner mark {} {}@{target} done|retry|skip` (or run `runner apply` again once the target answers: it tries to stop the command first)",
            v.message.unwrap_or_default(),
            s.pb.path.display(),
            step.id
        )),
        AttemptState::Interrupted if !s.interrupt.stopping() => {
            lost(s, step, target, number, v.message.unwrap_or_default())
        }
        AttemptState::Interrupted => AttemptEnd::Interrupted,
        _ => AttemptEnd::Failed(v.message.unwrap_or_else(|| "failed".into())),
    }
}
