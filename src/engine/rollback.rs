//! `runner rollback`: undo succeeded pairs in reverse order of completion with each step's
//! `rollback`, never crossing a point of no return, recording every attempt.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use super::event::{Event, Reporter, RunOutcome};
use super::interrupt::Interrupt;
use super::output::PairOutput;
use super::{Blocked, EngineError, Outcome, Session, Start, Who};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::journal::{lock, AttemptKind, AttemptState, Journal, NewAttempt, PairState, RunCommand};
use crate::playbook::{Playbook, Step};
use crate::secret::Redactor;
use crate::targets::{shell_of, Secrets};
use crate::transport::{CommandExit, Control};

pub struct RollbackOptions {
    pub state: PathBuf,
    pub runs_dir: PathBuf,
    /// Roll back only the steps after this one.
    pub to: Option<String>,
    /// Answer yes to the confirmation (required without a terminal).
    pub yes: bool,
    /// Who confirms the rollback (without `--yes`).
    pub operator: std::sync::Arc<dyn super::operator::Operator>,
    pub override_window: Option<super::WindowOverride>,
    pub args: Vec<String>,
    /// Also undo pairs in doubt (their outcome unknown), running their rollback command.
    pub include_in_doubt: bool,
}

/// What a rollback will do, worked out before it does anything.
pub(crate) struct RollbackPlan<'a> {
    /// Pairs to undo, in the order they will be undone.
    pub items: Vec<(&'a Step, String)>,
    /// Succeeded pairs whose step has no rollback: listed, never silently passed.
    pub without: Vec<(&'a Step, String)>,
    /// The point of no return the rollback stops before.
    pub stops_at: Option<&'a Step>,
    /// Pairs in doubt (the runner stopped while they ran, they were interrupted part-way, or
    /// their rollback failed) that the rollback would reach, with why. Unless included, they
    /// stop the rollback before it starts: an operator decides about them first.
    pub in_doubt: Vec<(&'a Step, String, String)>,
}

/// Why a pair's outcome is unknown, or None if it is known.
fn doubt_of(st: &PairState) -> Option<String> {
    match st {
        PairState::Running {
            kind, pid, host, ..
        } => Some(format!(
            "runner (pid {pid} on {host}) stopped while its {kind} was running; its outcome is unknown"
        )),
        PairState::Failed {
            state: AttemptState::Interrupted,
            ..
        } => Some("it was interrupted part-way; its outcome is unknown".into()),
        PairState::RollbackFailed { .. } => {
            Some("its rollback failed earlier; it may be partly undone".into())
        }
        _ => None,
    }
}

/// The rollback worked out from the journal, before anything is undone.
pub(crate) fn plan<'a>(
    pb: &'a Playbook,
    journal: &Journal,
    to: Option<&str>,
    include_in_doubt: bool,
) -> Result<RollbackPlan<'a>, EngineError> {
    let to_index = to_index(pb, to)?;
    let states: BTreeMap<(String, String), PairState> = journal
        .pairs()?
        .into_iter()
        .map(|(s, t, st)| ((s, t), st))
        .collect();
    let mut out = RollbackPlan {
        items: Vec::new(),
        without: Vec::new(),
        stops_at: None,
        in_doubt: Vec::new(),
    };
    succeeded_latest_first(pb, journal, &states, to_index, &mut out)?;
    let doubts = doubts(pb, &states, to_index, out.stops_at);
    if include_in_doubt {
        undo_doubts_first(&mut out, doubts);
    } else {
        out.in_doubt = doubts;
    }
    Ok(out)
}

/// The index of the step `--to` names: the rollback undoes only the steps after it.
fn to_index(pb: &Playbook, to: Option<&str>) -> Result<Option<usize>, EngineError> {
    Ok(match to {
        None => None,
        Some(id) => Some(
            pb.steps
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.index)
                .ok_or_else(|| {
                    EngineError::Usage(format!(
                        "--to `{id}` is not a step of {}",
                        pb.path.display()
                    ))
                })?,
        ),
    })
}

/// Succeeded pairs after `--to`, latest first, up to the point of no return: to undo, or to
/// list as without a rollback.
fn succeeded_latest_first<'a>(
    pb: &'a Playbook,
    journal: &Journal,
    states: &BTreeMap<(String, String), PairState>,
    to_index: Option<usize>,
    out: &mut RollbackPlan<'a>,
) -> Result<(), EngineError> {
    let order = journal.completion_order()?;
    for (step_id, target, _) in order.into_iter().rev() {
        if !matches!(
            states.get(&(step_id.clone(), target.clone())),
            Some(PairState::Succeeded { .. })
        ) {
            continue;
        }
        let Some(step) = pb.steps.iter().find(|s| s.id == step_id) else {
            continue;
        };
        if to_index.is_some_and(|ti| step.index <= ti) {
            continue;
        }
        if step.point_of_no_return {
            out.stops_at = Some(step);
            break;
        }
        if has_rollback(step, &target) {
            out.items.push((step, target));
        } else {
            out.without.push((step, target));
        }
    }
    Ok(())
}

/// Whether `step` has a rollback command on `target`.
fn has_rollback(step: &Step, target: &str) -> bool {
    step.rendered_for(target)
        .and_then(|r| r.rollback.as_ref())
        .is_some()
}

/// Pairs in doubt were the last in flight: they come first, latest step first. Those at or
/// before `--to`, or before the point of no return, are not reached and do not matter.
fn doubts<'a>(
    pb: &'a Playbook,
    states: &BTreeMap<(String, String), PairState>,
    to_index: Option<usize>,
    stops_at: Option<&Step>,
) -> Vec<(&'a Step, String, String)> {
    let mut doubts: Vec<(&Step, String, String)> = states
        .iter()
        .filter_map(|((step_id, target), st)| {
            let why = doubt_of(st)?;
            let step = pb.steps.iter().find(|s| &s.id == step_id)?;
            Some((step, target.clone(), why))
        })
        .filter(|(step, _, _)| to_index.is_none_or(|ti| step.index > ti))
        .filter(|(step, _, _)| stops_at.is_none_or(|p| step.index > p.index))
        .collect();
    doubts.sort_by_key(|(step, _, _)| std::cmp::Reverse(step.index));
    doubts
}

/// `--include-in-doubt`: pairs in doubt are undone first; a point of no return in doubt is
/// treated as done, and the rollback stops before it.
fn undo_doubts_first<'a>(out: &mut RollbackPlan<'a>, mut doubts: Vec<(&'a Step, String, String)>) {
    if let Some(pnr) = doubts
        .iter()
        .filter(|(s, _, _)| s.point_of_no_return)
        .map(|(s, _, _)| *s)
        .max_by_key(|s| s.index)
    {
        out.items.retain(|(s, _)| s.index > pnr.index);
        out.without.retain(|(s, _)| s.index > pnr.index);
        doubts.retain(|(s, _, _)| s.index > pnr.index);
        out.stops_at = Some(pnr);
    }
    let mut first = Vec::new();
    for (step, target, _) in doubts {
        if has_rollback(step, &target) {
            first.push((step, target));
        } else {
            out.without.push((step, target));
        }
    }
    first.append(&mut out.items);
    out.items = first;
}

/// The message that stops a rollback before pairs in doubt, with what to decide.
fn in_doubt_text(pb: &Playbook, p: &RollbackPlan<'_>) -> String {
    let file = pb.path.display();
    let list = p
        .in_doubt
        .iter()
        .map(|(s, t, why)| {
            format!(
                "  - `{id}` on `{t}`: {why}\n    inspect the target, then run `runner mark {file} {id}@{t} done` if it did its work (the rollback then undoes it), or `runner mark {file} {id}@{t} retry` if it did not (nothing to undo)",
                id = s.id
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "rollback stopped before it started: {} in doubt, and undoing the rest around {} would leave the target in an unknown state:\n{list}\nthen run `runner rollback {file}` again; or, to run the rollback command of {} anyway, `runner rollback {file} --include-in-doubt`; nothing was undone",
        if p.in_doubt.len() == 1 { "1 pair is".to_string() } else { format!("{} pairs are", p.in_doubt.len()) },
        if p.in_doubt.len() == 1 { "it" } else { "them" },
        if p.in_doubt.len() == 1 { "that pair" } else { "those pairs" },
    )
}

fn describe(p: &RollbackPlan<'_>) -> String {
    let mut o = String::new();
    if p.items.is_empty() {
        o.push_str("Nothing to roll back.\n");
    } else {
        o.push_str("Will undo, in this order:\n");
        for (s, t) in &p.items {
            o.push_str(&format!("  - `{}` on `{t}`\n", s.id));
        }
    }
    if !p.without.is_empty() {
        o.push_str("Cannot undo (no rollback given), check these by hand:\n");
        for (s, t) in &p.without {
            o.push_str(&format!("  - `{}` on `{t}`\n", s.id));
        }
    }
    if let Some(s) = p.stops_at {
        o.push_str(&format!(
            "Stops before `{}`: it is a point of no return, so it and everything before it stay as they are.\n",
            s.id
        ));
    }
    o
}

pub fn rollback(
    pb: &Playbook,
    opts: &RollbackOptions,
    clock: Clock,
    reporter: &dyn Reporter,
    interrupt: Interrupt,
) -> Result<Outcome, EngineError> {
    let who = Who::current();
    if let Some(o) = &opts.override_window {
        o.check(pb)?;
    }
    let _lock = lock::acquire(
        &opts.state,
        &lock::Holder::this_process("rollback", &who.user, clock.now()),
    )?;
    let mut journal = Journal::open(&opts.state)?;
    journal.hold(&_lock);
    refuse_moved_targets(pb, &mut journal)?;
    let (plan_text, targets) = match reviewed(pb, &journal, opts)? {
        ControlFlow::Continue(reviewed) => reviewed,
        ControlFlow::Break(outcome) => return Ok(outcome),
    };
    if !opts.yes {
        if let ControlFlow::Break(outcome) = confirmed(opts, &plan_text, &interrupt)? {
            return Ok(outcome);
        }
    }
    let mut redactor = Redactor::new();
    let secrets = Secrets::resolve_all(pb, targets.iter().map(String::as_str), &mut redactor)?;
    let session = Session::start(Start {
        pb,
        journal,
        command: RunCommand::Rollback,
        runs_dir: &opts.runs_dir,
        args: &opts.args,
        clock,
        reporter,
        redactor,
        secrets,
        interrupt,
        who,
        override_window: opts.override_window.clone(),
    })?;
    session.emit(&Event::Notice { text: plan_text });
    let p = {
        let j = session.journal();
        plan(pb, &j, opts.to.as_deref(), opts.include_in_doubt)?
    };
    Ok(execute(&session, &p))
}

/// Undoing on one machine what was done on another would be worse than not undoing it: this
/// journal is claimed for this playbook, and no target has moved.
fn refuse_moved_targets(pb: &Playbook, journal: &mut Journal) -> Result<(), EngineError> {
    super::identity::claim(journal, pb, false)?;
    let moved: Vec<_> =
        super::identity::conflicts(pb, &journal.pairs()?, &[], &super::identity::identities(pb))
            .into_iter()
            .filter(super::identity::Conflict::is_moved)
            .collect();
    if !moved.is_empty() {
        return Err(EngineError::Changed(moved));
    }
    Ok(())
}

/// The rollback worked out and checked: its description and the targets it undoes on, or the
/// outcome that ends it before anything is undone (nothing to undo, pairs in doubt; `--to`
/// beyond a point of no return is an error).
fn reviewed(
    pb: &Playbook,
    journal: &Journal,
    opts: &RollbackOptions,
) -> Result<ControlFlow<Outcome, (String, Vec<String>)>, EngineError> {
    let p = plan(pb, journal, opts.to.as_deref(), opts.include_in_doubt)?;
    if let (Some(to), Some(stop)) = (&opts.to, p.stops_at) {
        // `--to` asks for everything after `to` to be undone; a point of no return after
        // it makes that impossible. Say so before undoing anything.
        return Err(EngineError::Usage(format!(
            "rollback --to `{to}` would cross the point of no return `{}`: it and everything before it stay as they are, so the state after `{to}` cannot be reached; nothing was undone. The furthest a rollback may go is `runner rollback {} --to {}`",
            stop.id,
            pb.path.display(),
            stop.id
        )));
    }
    if !p.in_doubt.is_empty() {
        return Ok(ControlFlow::Break(Outcome {
            exit: Exit::StepFailed,
            message: in_doubt_text(pb, &p),
        }));
    }
    let plan_text = describe(&p);
    if p.items.is_empty() {
        return Ok(ControlFlow::Break(Outcome {
            exit: Exit::Success,
            message: plan_text,
        }));
    }
    let targets = p.items.iter().map(|(_, t)| t.clone()).collect();
    Ok(ControlFlow::Continue((plan_text, targets)))
}

/// Without `--yes`, the operator confirms the rollback; a refusal (or Ctrl-C at the question)
/// ends it with nothing changed.
fn confirmed(
    opts: &RollbackOptions,
    plan_text: &str,
    interrupt: &Interrupt,
) -> Result<ControlFlow<Outcome>, EngineError> {
    let asked = opts.operator.confirm(&super::operator::Confirmation {
        plan: plan_text.to_string(),
        word: "yes".into(),
    });
    match asked {
        super::operator::Confirmed::Yes => Ok(ControlFlow::Continue(())),
        super::operator::Confirmed::NoOperator => {
            Err(EngineError::Usage(format!(
                "rollback needs confirmation: run it on a terminal, or add --yes. It would do this:\n{plan_text}"
            )))
        }
        super::operator::Confirmed::No => {
            Ok(ControlFlow::Break(Outcome {
                // Ctrl-C at the question is an interruption, not an answer.
                exit: if interrupt.stopping() {
                    Exit::Interrupted
                } else {
                    Exit::Success
                },
                message: "rollback cancelled; nothing was changed".into(),
            }))
        }
    }
}

/// `on_failure: rollback`: undo what succeeded, inside the failing apply's session.
pub(crate) fn automatic(s: &Session<'_>, failed: &Step) -> String {
    let p = {
        let j = s.journal();
        match plan(s.pb, &j, None, false) {
            Ok(p) => p,
            Err(e) => return format!("the automatic rollback could not be planned: {e}"),
        }
    };
    if !p.in_doubt.is_empty() {
        return in_doubt_text(s.pb, &p);
    }
    let mut text = describe(&p);
    // The session knows every secret that could be read; a target whose secret is missing
    // fails with a clear message rather than being skipped.
    let o = execute(s, &p);
    text.push_str(&format!(
        "after the failure of `{}`: {}",
        failed.id, o.message
    ));
    text
}

fn execute(s: &Session<'_>, p: &RollbackPlan<'_>) -> Outcome {
    let mut undone = 0usize;
    for (step, target) in &p.items {
        if s.interrupt.stopping() {
            return s.finish(Exit::Interrupted, RunOutcome::Interrupted, format!("rollback interrupted after {undone} pairs; run `runner rollback {}` again to go on", s.pb.path.display()));
        }
        match s.gate(step) {
            Ok(()) => {}
            Err(Blocked::Interrupted) => {
                return s.finish(Exit::Interrupted, RunOutcome::Interrupted, "rollback interrupted".into())
            }
            Err(Blocked::Window(next)) => {
                return s.finish(
                    Exit::WindowClosed,
                    RunOutcome::StoppedWindow,
                    format!(
                        "rollback stopped before `{}` on `{target}`: the window is closed; it may start {}",
                        step.id,
                        super::when(s.pb, next)
                    ),
                )
            }
        }
        if let Err(msg) = undo(s, step, target) {
            return s.finish(
                Exit::StepFailed,
                RunOutcome::RollbackFailed,
                format!("rollback of `{}` on `{target}` failed: {msg}\nthe rollback stopped here; {undone} pairs were undone", step.id),
            );
        }
        undone += 1;
    }
    let mut msg = format!(
        "rolled back {undone} pair{}",
        if undone == 1 { "" } else { "s" }
    );
    if !p.without.is_empty() {
        msg.push_str(&format!(
            "; {} pair{} had no rollback and must be checked by hand: {}",
            p.without.len(),
            if p.without.len() == 1 { "" } else { "s" },
            p.without
                .iter()
                .map(|(s, t)| format!("`{}` on `{t}`", s.id))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(stop) = p.stops_at {
        msg.push_str(&format!(
            "; stopped before the point of no return `{}`",
            stop.id
        ));
    }
    s.finish(Exit::Success, RunOutcome::RolledBack, msg)
}

fn undo(s: &Session<'_>, step: &Step, target: &str) -> Result<(), String> {
    let r = step
        .rendered_for(target)
        .ok_or("no rendering for this target")?;
    let cmd = r.rollback.as_deref().ok_or("no rollback")?;
    close_in_doubt(s, step, target)?;
    let id = s
        .journal()
        .begin_attempt(&NewAttempt {
            run: s.run.clone(),
            step_id: step.id.clone(),
            target: target.to_string(),
            kind: AttemptKind::Rollback,
            number: 1,
            started_at: s.clock.now(),
            pid: s.who.pid,
            host: s.who.host.clone(),
            def_hash: r.def_hash.clone(),
        })
        .map_err(|e| {
            format!("the journal cannot record the rollback, so it was not started: {e}")
        })?;
    s.emit(&Event::AttemptStarted {
        step: step.id.clone(),
        target: target.to_string(),
        kind: super::event::ActionKind::Rollback,
        attempt: 1,
        of: 1,
    });
    let started = Instant::now();
    let mut out = PairOutput::new(s, &step.id, target, "");
    out.note("rollback");
    let ctl = Control {
        timeout: step
            .timeout
            .and_then(|d| std::time::Duration::try_from(d).ok()),
        cancel: s.interrupt.cancel_flag(),
        // The rollback gets the step's environment; its stdin is the command's alone.
        env: s.secrets.inputs_of(r).0,
        stdin: None,
    };
    let shell =
        s.pb.targets
            .get(target)
            .map(|t| shell_of(t.shell))
            .unwrap_or(crate::transport::Shell::Sh);
    let result = s.pool.with(s.pb, &s.secrets, target, |t| {
        t.exec(cmd, shell, &ctl, &mut |st, b| out.push(st, b))
    });
    out.finish();
    let (state, code, err) = match result {
        Ok(Ok(CommandExit::Code(0))) => (AttemptState::Succeeded, Some(0), None),
        Ok(Ok(CommandExit::Code(c))) => (
            AttemptState::Failed,
            Some(c),
            Some(format!("exit code {c}")),
        ),
        Ok(Ok(CommandExit::TimedOut)) => {
            (AttemptState::TimedOut, None, Some("timed out".to_string()))
        }
        Ok(Ok(CommandExit::Cancelled)) => (
            AttemptState::Interrupted,
            None,
            Some("interrupted".to_string()),
        ),
        Ok(Err(e)) => (AttemptState::Failed, None, Some(e.to_string())),
        Err(e) => (AttemptState::Failed, None, Some(e.to_string())),
    };
    let err = err.map(|e| s.redactor.redact(&e));
    if let Err(e) = s
        .journal()
        .finish_attempt(id, state, code, s.clock.now(), err.as_deref())
    {
        tracing::error!("cannot record the rollback's outcome: {e}");
    }
    s.emit(&Event::AttemptFinished {
        step: step.id.clone(),
        target: target.to_string(),
        kind: super::event::ActionKind::Rollback,
        attempt: 1,
        outcome: state.into(),
        exit_code: code,
        elapsed_ms: started.elapsed().as_millis() as u64,
        message: err.clone(),
    });
    match err {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// A pair still recorded as running (its runner died) that `--include-in-doubt` undoes: any
/// command it left running is stopped first, and the attempt is closed as interrupted, so the
/// journal does not show it running forever.
fn close_in_doubt(s: &Session<'_>, step: &Step, target: &str) -> Result<(), String> {
    let state = s
        .journal()
        .pairs()
        .map_err(|e| format!("the journal cannot be read: {e}"))?
        .into_iter()
        .find(|(st, t, _)| st == &step.id && t == target)
        .map(|(_, _, state)| state);
    let Some(PairState::Running { attempt, .. }) = state else {
        return Ok(());
    };
    let found = super::pair::settle_recorded_orphan(s, step, target, attempt)?;
    let why = match found {
        Some(text) => {
            format!("in doubt ({text}); undone with `runner rollback --include-in-doubt`")
        }
        None => "in doubt; undone with `runner rollback --include-in-doubt`".to_string(),
    };
    s.journal()
        .finish_attempt(
            attempt,
            AttemptState::Interrupted,
            None,
            s.clock.now(),
            Some(&why),
        )
        .map_err(|e| format!("the journal cannot close the attempt in doubt: {e}"))
}
