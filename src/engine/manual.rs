//! A manual step: ask the operator at the terminal, or end the run waiting for `runner mark`,
//! and record the answer.

use super::event::{Event, RunOutcome};
use super::operator::{ManualAnswer, ManualTask, Operator};
use super::walk::interrupted;
use super::{Outcome, Session};
use crate::exit::Exit;
use crate::journal::{AttemptKind, AttemptState, MarkKind, NewAttempt, NewMark};
use crate::playbook::Step;

pub(super) enum ManualEnd {
    Confirmed,
    Waiting(Outcome),
    Failed(Outcome),
}

/// A manual step: ask the operator for `done` or `fail`; without one, stop (exit 5) and say
/// how to confirm with `runner mark`.
pub(super) fn manual(s: &Session<'_>, step: &Step, operator: &dyn Operator) -> ManualEnd {
    let target = crate::playbook::OPERATOR;
    let Some(r) = step.rendered_for(target) else {
        return ManualEnd::Confirmed;
    };
    let instructions = match &r.action {
        crate::playbook::RenderedAction::Manual { instructions } => instructions.clone(),
        _ => String::new(),
    };
    s.emit(&Event::OperatorNeeded {
        step: step.id.clone(),
        instructions: instructions.clone(),
    });
    if !operator.present() {
        return ManualEnd::Waiting(wait_for_mark(s, step, &instructions));
    }
    let answer = operator.manual(&ManualTask {
        step: step.id.clone(),
        title: step.title().to_string(),
        instructions: instructions.trim().to_string(),
    });
    match answer {
        // Ctrl-C at the prompt.
        ManualAnswer::Wait if s.interrupt.stopping() => ManualEnd::Waiting(interrupted(s)),
        ManualAnswer::Wait => ManualEnd::Waiting(s.finish(
            Exit::WaitingForOperator,
            RunOutcome::WaitingForOperator,
            format!(
                "no answer for manual step `{}`; confirm it with `runner mark {} {} done`",
                step.id,
                s.pb.path.display(),
                step.id
            ),
        )),
        ManualAnswer::Done => record_confirmed(s, step, &r.def_hash),
        ManualAnswer::Fail => record_operator_failure(s, step, &r.def_hash),
    }
}

/// No one to ask (a background run, no terminal): the run ends and says how to go on.
fn wait_for_mark(s: &Session<'_>, step: &Step, instructions: &str) -> Outcome {
    s.finish(
        Exit::WaitingForOperator,
        RunOutcome::WaitingForOperator,
        format!(
            "step `{}` waits for an operator:\n\n  {}\n\nwhen it is done, run `runner mark {} {} done`, then `runner apply {}` again",
            step.id,
            instructions.trim().replace('\n', "\n  "),
            s.pb.path.display(),
            step.id,
            s.pb.path.display()
        ),
    )
}

/// The operator confirmed the manual step at the terminal: recorded as a `done` mark.
fn record_confirmed(s: &Session<'_>, step: &Step, def_hash: &str) -> ManualEnd {
    let mark = NewMark {
        run: Some(s.run.clone()),
        step_id: step.id.clone(),
        target: crate::playbook::OPERATOR.to_string(),
        mark: MarkKind::Done,
        def_hash: def_hash.to_owned(),
        user: s.who.user.clone(),
        host: s.who.host.clone(),
        at: s.clock.now(),
        reason: Some("confirmed at the terminal".into()),
    };
    match s.journal().mark(&mark) {
        Ok(()) => ManualEnd::Confirmed,
        Err(e) => ManualEnd::Failed(s.finish(
            Exit::StepFailed,
            RunOutcome::Failed,
            format!("cannot record the confirmation: {e}"),
        )),
    }
}

/// The operator reported that the manual step failed: a failed attempt, and the run stops.
fn record_operator_failure(s: &Session<'_>, step: &Step, def_hash: &str) -> ManualEnd {
    let j = s.journal();
    let rec = j.begin_attempt(&NewAttempt {
        run: s.run.clone(),
        step_id: step.id.clone(),
        target: crate::playbook::OPERATOR.to_string(),
        kind: AttemptKind::Run,
        number: 1,
        started_at: s.clock.now(),
        pid: s.who.pid,
        host: s.who.host.clone(),
        def_hash: def_hash.to_owned(),
    });
    if let Ok(id) = rec {
        let _ = j.finish_attempt(
            id,
            AttemptState::Failed,
            None,
            s.clock.now(),
            Some("the operator reported a failure"),
        );
    }
    drop(j);
    ManualEnd::Failed(s.finish(
        Exit::StepFailed,
        RunOutcome::Failed,
        format!(
            "the operator reported that manual step `{}` failed",
            step.id
        ),
    ))
}
