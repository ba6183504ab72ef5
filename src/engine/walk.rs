//! The steps of a run in order: skip what is done, decide what was in doubt, gate each step
//! on the window, run it on its targets (a fan-out in worker threads), and stop for a failure,
//! an operator or Ctrl-C.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::apply::{is_done, ApplyOptions, Known};
use super::doubt::{resolve_doubt, Doubt};
use super::event::{Event, RunOutcome};
use super::manual::{manual, ManualEnd};
use super::pair::{run_pair, PairEnd, Resume};
use super::{Blocked, Outcome, Session};
use crate::exit::Exit;
use crate::journal::PairState;
use crate::playbook::{OnFailure, Step};

/// The steps in order; `Break` carries how the run stopped before the last one was done.
pub(super) fn walk_steps(
    session: &Session<'_>,
    opts: &ApplyOptions,
    known: &Known,
) -> ControlFlow<Outcome> {
    for step in &session.pb.steps {
        if session.interrupt.stopping() {
            return ControlFlow::Break(interrupted(session));
        }
        walk_step(session, opts, known, step)?;
    }
    ControlFlow::Continue(())
}

/// A pair to run: its target, its earlier run attempts, and where to pick it up if under way.
type RunOn = (String, u32, Option<Resume>);

fn walk_step(
    session: &Session<'_>,
    opts: &ApplyOptions,
    known: &Known,
    step: &Step,
) -> ControlFlow<Outcome> {
    let todo = skip_done(session, known, step);
    if todo.is_empty() {
        return ControlFlow::Continue(());
    }
    session.emit(&Event::StepStarted {
        step: step.id.clone(),
        title: step.title().to_string(),
        index: step.index,
        targets: todo.iter().map(|(t, _)| t.clone()).collect(),
    });
    let mut run_on = decide_doubts(session, known, step, todo)?;
    if run_on.is_empty() {
        session.emit(&Event::StepFinished {
            step: step.id.clone(),
            ok: true,
        });
        return ControlFlow::Continue(());
    }
    let blocked = gate_step(session, step, &mut run_on)?;
    if step.is_manual() {
        return manual_step(session, opts, step);
    }
    run_step(session, step, &run_on, opts.max_parallel.max(1), blocked)
}

/// Reports the pairs of a step that are done and returns the others with their states.
fn skip_done(session: &Session<'_>, known: &Known, step: &Step) -> Vec<(String, PairState)> {
    let mut todo = Vec::new();
    for t in &step.targets {
        let st = known.state_of(&step.id, t);
        if is_done(&st) {
            session.emit(&Event::PairSkipped {
                step: step.id.clone(),
                target: t.clone(),
                reason: match st {
                    PairState::Skipped { .. } => "marked skip".into(),
                    PairState::Succeeded { by_mark: true, .. } => "marked done".into(),
                    _ => "done in an earlier run".into(),
                },
            });
        } else {
            todo.push((t.clone(), st));
        }
    }
    todo
}

/// Decides about each pair still to do (`resolve_doubt`); stops for an operator if any needs one.
fn decide_doubts(
    session: &Session<'_>,
    known: &Known,
    step: &Step,
    todo: Vec<(String, PairState)>,
) -> ControlFlow<Outcome, Vec<RunOn>> {
    let mut run_on = Vec::new();
    let mut need_operator = Vec::new();
    for (t, st) in todo {
        let earlier = known
            .earlier_attempts
            .get(&(step.id.clone(), t.clone()))
            .copied()
            .unwrap_or(0);
        let last_run = known
            .last_attempt
            .get(&(step.id.clone(), t.clone()))
            .filter(|(_, is_run)| *is_run)
            .map(|(id, _)| *id);
        match resolve_doubt(session, step, &t, &st, earlier, last_run) {
            Doubt::Run => run_on.push((t, earlier, None)),
            Doubt::Continue(r) => run_on.push((t, earlier, Some(r))),
            Doubt::Done => {}
            Doubt::Operator(why) => need_operator.push((t, why)),
        }
    }
    if need_operator.is_empty() {
        return ControlFlow::Continue(run_on);
    }
    let file = session.pb.path.display();
    let list = need_operator
        .iter()
        .map(|(t, why)| {
            format!(
                "  - `{}` on `{t}`: {why}\n    inspect the target, then run `runner mark {file} {}@{t} done` (it did its work), `retry` (run it again) or `skip`",
                step.id, step.id
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    session.emit(&Event::OperatorNeeded {
        step: step.id.clone(),
        instructions: list.clone(),
    });
    ControlFlow::Break(session.finish(
        Exit::StepFailed,
        RunOutcome::NeedsOperator,
        format!(
            "stopped: an operator must decide about step `{}`:\n{list}",
            step.id
        ),
    ))
}

/// The window decides about new starts only. Work already under way on the target (a detached
/// job, a reboot) is followed to its end whatever the time: abandoning it would not make it
/// stop. The step asks first, so that a closed window stops or waits once for the whole step;
/// each target then asks again as it starts (`run_pair`). An override is journaled by each
/// start it lets through, so the step does not ask for it. Continues with the next business
/// start if the window closed but work under way goes on.
fn gate_step(
    session: &Session<'_>,
    step: &Step,
    run_on: &mut Vec<RunOn>,
) -> ControlFlow<Outcome, Option<Option<jiff::Timestamp>>> {
    let mut blocked: Option<Option<jiff::Timestamp>> = None;
    if run_on.iter().any(|(_, _, resume)| resume.is_none())
        && (step.is_manual()
            || !session
                .override_window
                .as_ref()
                .is_some_and(|o| o.covers(&step.id)))
    {
        match session.gate(step) {
            Ok(()) => {}
            Err(Blocked::Interrupted) => return ControlFlow::Break(interrupted(session)),
            Err(Blocked::Window(next)) => {
                run_on.retain(|(_, _, resume)| resume.is_some());
                if run_on.is_empty() {
                    return ControlFlow::Break(window_stop(session, step, next));
                }
                blocked = Some(next);
            }
        }
    }
    ControlFlow::Continue(blocked)
}

/// A manual step: waits for a mark (`apply --background`) or asks the operator.
fn manual_step(session: &Session<'_>, opts: &ApplyOptions, step: &Step) -> ControlFlow<Outcome> {
    let waited = opts
        .wait_for_operator
        .then(|| super::mark::wait_for_mark(session, step, &opts.state));
    let end = match waited {
        Some(Ok(())) => ManualEnd::Confirmed,
        Some(Err(super::mark::NoMark::Interrupted)) => {
            return ControlFlow::Break(interrupted(session))
        }
        Some(Err(super::mark::NoMark::CannotWait)) | None => {
            manual(session, step, opts.operator.as_ref())
        }
    };
    match end {
        ManualEnd::Confirmed => {
            session.emit(&Event::StepFinished {
                step: step.id.clone(),
                ok: true,
            });
            ControlFlow::Continue(())
        }
        ManualEnd::Waiting(o) | ManualEnd::Failed(o) => ControlFlow::Break(o),
    }
}

/// Runs the step's pairs in parallel and decides how the step ended: on, or stopped by
/// detached jobs left running, an interruption, failures or the window.
fn run_step(
    session: &Session<'_>,
    step: &Step,
    run_on: &[RunOn],
    max_parallel: usize,
    blocked: Option<Option<jiff::Timestamp>>,
) -> ControlFlow<Outcome> {
    let ends = run_parallel(session, step, run_on, max_parallel);
    let failed: Vec<String> = ends
        .iter()
        .filter_map(|(t, e)| match e {
            PairEnd::Failed(m) => Some(format!("`{t}`: {m}")),
            _ => None,
        })
        .collect();
    let ok = failed.is_empty() && ends.iter().all(|(_, e)| *e == PairEnd::Done);
    session.emit(&Event::StepFinished {
        step: step.id.clone(),
        ok,
    });
    let left: Vec<&str> = ends
        .iter()
        .filter(|(_, e)| *e == PairEnd::LeftRunning)
        .map(|(t, _)| t.as_str())
        .collect();
    if !left.is_empty() && failed.is_empty() {
        return ControlFlow::Break(left_running(session, step, &left));
    }
    if ends.iter().any(|(_, e)| *e == PairEnd::Interrupted) && failed.is_empty() {
        return ControlFlow::Break(interrupted(session));
    }
    if !failed.is_empty() {
        return ControlFlow::Break(step_failed(session, step, &failed));
    }
    if let Some(next) = blocked.or_else(|| {
        ends.iter().find_map(|(_, e)| match e {
            PairEnd::WindowClosed(n) => Some(*n),
            _ => None,
        })
    }) {
        return ControlFlow::Break(window_stop(session, step, next));
    }
    if session.interrupt.stopping() {
        return ControlFlow::Break(interrupted(session));
    }
    ControlFlow::Continue(())
}

fn step_failed(session: &Session<'_>, step: &Step, failed: &[String]) -> Outcome {
    let pb = session.pb;
    let mut message = format!(
        "step `{}` failed on {}:\n  {}\nfix the cause, then run `runner apply {}` again to resume from this step",
        step.id,
        if failed.len() == 1 { "1 target".to_string() } else { format!("{} targets", failed.len()) },
        failed.join("\n  "),
        pb.path.display()
    );
    if pb.on_failure == OnFailure::Rollback && !session.interrupt.stopping() {
        let rb = super::rollback::automatic(session, step);
        message.push_str(&format!("\n\non_failure: rollback\n{rb}"));
    }
    session.finish(Exit::StepFailed, RunOutcome::Failed, message)
}

pub(super) fn interrupted(s: &Session<'_>) -> Outcome {
    s.finish(
        Exit::Interrupted,
        RunOutcome::Interrupted,
        format!(
            "interrupted; run `runner apply {}` to resume",
            s.pb.path.display()
        ),
    )
}

/// Stopped by the operator while detached jobs ran: they go on on their targets, recorded as
/// running, and the next apply follows them to their end instead of starting them again.
fn left_running(s: &Session<'_>, step: &Step, targets: &[&str]) -> Outcome {
    s.finish(
        Exit::Interrupted,
        RunOutcome::Interrupted,
        format!(
            "interrupted; the detached job of `{}` keeps running on {}; run `runner apply {}` to reattach to it and resume",
            step.id,
            targets
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", "),
            s.pb.path.display()
        ),
    )
}

fn window_stop(s: &Session<'_>, step: &Step, next: Option<jiff::Timestamp>) -> Outcome {
    s.finish(
        Exit::WindowClosed,
        RunOutcome::StoppedWindow,
        format!(
            "stopped before `{}`: it could still be running in business hours if started now. It may start {}; run `runner apply {}` then",
            step.id,
            super::when(s.pb, next),
            s.pb.path.display()
        ),
    )
}

/// Runs the pairs of a step on up to `max` threads at once. A failure does not stop the
/// siblings already running; no later step starts (the caller's job).
fn run_parallel(
    s: &Session<'_>,
    step: &Step,
    pairs: &[(String, u32, Option<Resume>)],
    max: usize,
) -> Vec<(String, PairEnd)> {
    let next = AtomicUsize::new(0);
    // Once a target may not start for the window, the targets after it are not started either
    // (work to follow, `resume`, still is).
    let closed: Mutex<Option<Option<jiff::Timestamp>>> = Mutex::new(None);
    let results: Mutex<Vec<(usize, String, PairEnd)>> = Mutex::new(Vec::with_capacity(pairs.len()));
    let workers = max.min(pairs.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((t, earlier, resume)) = pairs.get(i) else {
                    break;
                };
                let end = pair_of_many(s, step, t, *earlier, resume, &closed);
                if let Ok(mut r) = results.lock() {
                    r.push((i, t.clone(), end));
                }
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_else(|p| p.into_inner());
    r.sort_by_key(|(i, _, _)| *i);
    r.into_iter().map(|(_, t, e)| (t, e)).collect()
}

/// One pair of a fan-out, in a worker thread: not started after a Ctrl-C, nor (unless it
/// resumes work already under way) once another target found the window closed.
fn pair_of_many(
    s: &Session<'_>,
    step: &Step,
    t: &str,
    earlier: u32,
    resume: &Option<Resume>,
    closed: &Mutex<Option<Option<jiff::Timestamp>>>,
) -> PairEnd {
    let window_closed = match closed.lock() {
        Ok(c) if resume.is_none() => *c,
        _ => None,
    };
    if s.interrupt.stopping() {
        return PairEnd::Interrupted;
    }
    if let Some(next) = window_closed {
        return PairEnd::WindowClosed(next);
    }
    let started = std::time::Instant::now();
    let end = run_pair(s, step, t, earlier, resume.clone());
    s.emit(&Event::PairFinished {
        step: step.id.clone(),
        target: t.to_string(),
        ok: end == PairEnd::Done,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    if let (PairEnd::WindowClosed(next), Ok(mut c)) = (&end, closed.lock()) {
        c.get_or_insert(*next);
    }
    end
}
