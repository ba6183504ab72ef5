//! A pair an earlier run left in doubt (in flight when it stopped): why, whether its command
//! may still run (then stop it), and whether its check, `idempotent` or an operator decides.

use std::ops::ControlFlow;

use super::event::{Decision, Event};
use super::pair::{verify_in_doubt, Phase, Resume};
use super::Session;
use crate::journal::{AttemptId, AttemptKind, AttemptState, MarkKind, NewMark, PairState};
use crate::playbook::Step;

pub(super) enum Doubt {
    Run,
    /// Not in doubt at all: a detached job to follow, or a reboot to wait for.
    Continue(Resume),
    Done,
    Operator(String),
}

/// Decides about a pair that is not done.
///
/// In doubt are pairs whose last run attempt is `running` (left by a process that no longer
/// runs: we hold the lock, so no live runner can be running it) or `interrupted` (stopped
/// part-way by a second Ctrl-C, or closed as in doubt by an earlier resume). Either may have
/// had part or all of its effect, so a step that is not idempotent is verified with its check
/// or left to an operator; it is never simply run again. If its connection was lost with the
/// command perhaps still running on the target, that command is stopped first (`last_run` is
/// the pair's last run attempt, which carries the note).
pub(super) fn resolve_doubt(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    st: &PairState,
    earlier: u32,
    last_run: Option<AttemptId>,
) -> Doubt {
    let (why, running) = match why_in_doubt(s, step, target, st) {
        ControlFlow::Continue(found) => found,
        ControlFlow::Break(d) => return d,
    };
    // The old command must be gone before the check or a new run: either would run beside it.
    let why = match settle_old_command(s, step, target, why, running.or(last_run), running) {
        ControlFlow::Continue(why) => why,
        ControlFlow::Break(d) => return d,
    };
    if step.is_manual() {
        return emit_doubt(s, step, target, Decision::AskOperatorAgain, Doubt::Run);
    }
    verify_or_ask(s, step, target, earlier, &why)
}

/// Why a pair is in doubt, and its run attempt still recorded as running (closed once any
/// command it left running is dealt with); `Break` when the state decides it already.
fn why_in_doubt(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    st: &PairState,
) -> ControlFlow<Doubt, (String, Option<AttemptId>)> {
    let mut running: Option<AttemptId> = None;
    let why = match st {
        PairState::Running {
            attempt,
            kind,
            pid,
            host,
            started_at,
        } => {
            if let Some(d) = under_way(s, step, target, *attempt, kind, *started_at) {
                return ControlFlow::Break(d);
            }
            let why = format!(
                "runner (pid {pid} on {host}) stopped while this {kind} was running; its outcome is unknown"
            );
            if *kind == AttemptKind::Run {
                // Closed below, once any command it left running is dealt with.
                running = Some(*attempt);
            } else if let Err(e) = s.journal().finish_attempt(
                *attempt,
                AttemptState::Interrupted,
                None,
                s.clock.now(),
                Some(&why),
            ) {
                tracing::error!("cannot close the in-doubt attempt {attempt}: {e}");
            }
            if *kind == AttemptKind::Rollback {
                return ControlFlow::Break(emit_doubt(
                    s,
                    step,
                    target,
                    Decision::Operator,
                    Doubt::Operator(format!("{why} (a rollback)")),
                ));
            }
            why
        }
        PairState::Failed {
            state: AttemptState::Interrupted,
            message,
            ..
        } => message
            .clone()
            .unwrap_or_else(|| "it was interrupted part-way; its outcome is unknown".into()),
        PairState::RollbackFailed { .. } => {
            return ControlFlow::Break(Doubt::Operator(
                "its rollback failed earlier; the target is in an unknown state".into(),
            ))
        }
        _ => return ControlFlow::Break(Doubt::Run),
    };
    ControlFlow::Continue((why, running))
}

/// A detached job or a reboot is not in doubt: the journal says where to pick it up.
fn under_way(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    attempt: AttemptId,
    kind: &AttemptKind,
    started_at: jiff::Timestamp,
) -> Option<Doubt> {
    let notes = s.journal().notes(attempt).unwrap_or_default();
    let phase = if *kind == AttemptKind::Reboot || notes.contains_key(super::reboot::NOTE_EXIT_CODE)
    {
        Some(Phase::Reboot)
    } else {
        notes
            .get(super::detach::NOTE_JOB_DIR)
            .map(|d| Phase::Job(d.clone()))
    }?;
    let decision = match &phase {
        Phase::Job(_) => Decision::FollowJob,
        _ => Decision::WaitForReboot,
    };
    Some(emit_doubt(
        s,
        step,
        target,
        decision,
        Doubt::Continue(Resume {
            attempt,
            phase,
            started_at,
        }),
    ))
}

/// Stops the command an earlier runner may have left running (`orphan`, the attempt carrying
/// the note), then closes the attempt still recorded as running (`running`). Continues with
/// the reason extended by what was done; `Break` when the command may still run.
fn settle_old_command(
    s: &Session<'_>,
    step: &Step,
    target: &str,
    why: String,
    orphan: Option<AttemptId>,
    running: Option<AttemptId>,
) -> ControlFlow<Doubt, String> {
    let settled = match orphan {
        Some(id) => super::pair::settle_recorded_orphan(s, step, target, id),
        None => Ok(None),
    };
    let why = match &settled {
        Ok(Some(text)) | Err(text) => format!("{why}; {text}"),
        Ok(None) => why,
    };
    if let Some(attempt) = running {
        if let Err(e) = s.journal().finish_attempt(
            attempt,
            AttemptState::Interrupted,
            None,
            s.clock.now(),
            Some(&why),
        ) {
            tracing::error!("cannot close the in-doubt attempt {attempt}: {e}");
        }
    }
    match settled {
        Ok(None) => {}
        Ok(Some(text)) => {
            emit_doubt(s, step, target, Decision::Settled(text), Doubt::Run);
        }
        Err(_) => {
            return ControlFlow::Break(emit_doubt(
                s,
                step,
                target,
                Decision::Operator,
                Doubt::Operator(format!(
                    "{why}; it is neither checked nor run again while it may still run"
                )),
            ))
        }
    }
    ControlFlow::Continue(why)
}

/// Verifies an in-doubt pair with its check (a pass is recorded as a `done` mark), runs it
/// again if that is safe, or leaves it to an operator.
fn verify_or_ask(s: &Session<'_>, step: &Step, target: &str, earlier: u32, why: &str) -> Doubt {
    match verify_in_doubt(s, step, target, earlier) {
        Some(true) => {
            let def_hash = step.rendered_for(target).map(|r| r.def_hash.clone()).unwrap_or_default();
            let mark = NewMark {
                run: Some(s.run.clone()),
                step_id: step.id.clone(),
                target: target.to_string(),
                mark: MarkKind::Done,
                def_hash,
                user: format!("runner (check, for {})", s.who.user),
                host: s.who.host.clone(),
                at: s.clock.now(),
                reason: Some("in doubt after an interruption; the check passed".into()),
            };
            match s.journal().mark(&mark) {
                Ok(()) => emit_doubt(s, step, target, Decision::CheckPassed, Doubt::Done),
                Err(e) => emit_doubt(s, step, target, Decision::CheckPassedUnrecorded, Doubt::Operator(format!("the journal cannot record it: {e}"))),
            }
        }
        Some(false) => emit_doubt(s, step, target, Decision::CheckFailed, Doubt::Run),
        None if step.redone_in_doubt() => {
            emit_doubt(s, step, target, Decision::Idempotent, Doubt::Run)
        }
        None => emit_doubt(
            s,
            step,
            target,
            Decision::Operator,
            Doubt::Operator(format!("{why}; the step has no check and is not idempotent, so it is not run again blindly")),
        ),
    }
}

fn emit_doubt(s: &Session<'_>, step: &Step, target: &str, decision: Decision, d: Doubt) -> Doubt {
    s.emit(&Event::InDoubt {
        step: step.id.clone(),
        target: target.to_string(),
        decision,
    });
    d
}
