//! `runner apply`: run the steps in order, skipping what the journal says is done, deciding
//! safely about what was in flight, and stopping cleanly for the window, an operator, a
//! failure or Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::event::{Decision, Event, Reporter, RunOutcome};
use super::interrupt::Interrupt;
use super::operator::{ManualAnswer, ManualTask, Operator};
use super::pair::{run_pair, verify_in_doubt, PairEnd, Phase, Resume};
use super::{Blocked, EngineError, Outcome, Session, Start, Who};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::journal::{
    lock, AttemptId, AttemptKind, AttemptState, Journal, MarkKind, NewAttempt, NewMark, PairState,
    RunCommand,
};
use crate::playbook::{OnFailure, Playbook, Step};
use crate::secret::Redactor;
use crate::targets::Secrets;

pub struct ApplyOptions {
    pub state: PathBuf,
    pub runs_dir: PathBuf,
    pub max_parallel: usize,
    pub override_window: Option<super::WindowOverride>,
    pub accept_changed: bool,
    /// Who answers manual steps: the terminal's owner, or nobody ([`super::operator::Absent`]).
    pub operator: Arc<dyn Operator>,
    /// The command line, for the journal (the caller leaves secrets out: there are none in
    /// arguments by design).
    pub args: Vec<String>,
    /// Without a terminal, a manual step waits for `runner mark STEP done` (or `skip`) instead
    /// of stopping with exit 5 (`apply --background`).
    pub wait_for_operator: bool,
}

/// What the journal says about a pair, as apply sees it.
fn is_done(state: &PairState) -> bool {
    matches!(
        state,
        PairState::Succeeded { .. } | PairState::Skipped { .. }
    )
}

pub fn apply(
    pb: &Playbook,
    opts: &ApplyOptions,
    clock: Clock,
    reporter: &dyn Reporter,
    interrupt: Interrupt,
) -> Result<Outcome, EngineError> {
    let who = Who::current();
    if let Some(o) = &opts.override_window {
        o.check(pb)?;
    }
    probe_secrets(pb, opts)?;

    let _lock = lock::acquire(
        &opts.state,
        &lock::Holder::this_process("apply", &who.user, clock.now()),
    )?;
    let mut journal = Journal::open(&opts.state)?;
    journal.hold(&_lock);
    let Loaded {
        known,
        redactor,
        secrets,
    } = load_state(pb, opts, clock, &mut journal)?;

    let session = Session::start(Start {
        pb,
        journal,
        command: RunCommand::Apply,
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
    open_session(&session, &known)?;

    if let ControlFlow::Break(outcome) = walk_steps(&session, opts, &known) {
        return Ok(outcome);
    }
    Ok(session.finish(
        Exit::Success,
        RunOutcome::Succeeded,
        format!("all {} steps are done", pb.steps.len()),
    ))
}

/// What the journal says before the run starts, as the phases of a run share it.
struct Known {
    /// The playbook this journal belonged to, if it now changes hands (`--accept-changed`).
    previous_owner: Option<String>,
    changed: Vec<super::identity::Conflict>,
    states: BTreeMap<(String, String), PairState>,
    earlier_attempts: BTreeMap<(String, String), u32>,
    /// The last attempt of each pair other than a check: an in-doubt pair's notes are on it.
    last_attempt: BTreeMap<(String, String), (AttemptId, bool)>,
}

impl Known {
    fn state_of(&self, step: &str, target: &str) -> PairState {
        self.states
            .get(&(step.to_string(), target.to_string()))
            .cloned()
            .unwrap_or(PairState::Pending)
    }
}

struct Loaded {
    known: Known,
    redactor: Redactor,
    secrets: Secrets,
}

/// A missing secret is bad input: find it before anything is written (the lock file, a new
/// journal). Which targets still have work is read without the lock; the lock then makes the
/// real decisions, and a target that turns out to need work after all is resolved later.
fn probe_secrets(pb: &Playbook, opts: &ApplyOptions) -> Result<(), EngineError> {
    let done_before: BTreeSet<(String, String)> = match Journal::open_existing(&opts.state)? {
        Some(j) => j
            .pairs()?
            .into_iter()
            .filter(|(_, _, st)| is_done(st))
            .map(|(s, t, _)| (s, t))
            .collect(),
        None => BTreeSet::new(),
    };
    let mut probe = Redactor::new();
    Secrets::resolve(
        pb,
        pb.steps.iter().flat_map(|s| {
            let todo = s
                .targets
                .iter()
                .any(|t| !done_before.contains(&(s.id.clone(), t.to_string())));
            // A copy also needs its source.
            s.machines().filter(move |_| todo)
        }),
        &mut probe,
    )?;
    Ok(())
}

/// Reads the journal under the lock: identity checks, pair states, secrets and earlier attempts.
fn load_state(
    pb: &Playbook,
    opts: &ApplyOptions,
    clock: Clock,
    journal: &mut Journal,
) -> Result<Loaded, EngineError> {
    let (previous_owner, pairs, changed) = check_identity(pb, opts, journal)?;
    let mut states: BTreeMap<(String, String), PairState> =
        pairs.into_iter().map(|(s, t, st)| ((s, t), st)).collect();
    // An accepted rename makes the new id done (its mark is recorded below).
    for c in changed.iter().filter(|c| c.is_renamed()) {
        states.insert(
            (c.step.clone(), c.target.clone()),
            PairState::Succeeded {
                at: clock.now(),
                def_hash: c.def_hash.clone(),
                by_mark: true,
                target_identity: None,
            },
        );
    }
    let mut known = Known {
        previous_owner,
        changed,
        states,
        earlier_attempts: BTreeMap::new(),
        last_attempt: BTreeMap::new(),
    };

    // Resolve secrets of every target that still has work, before anything runs (a missing one
    // is an error), and of every other target as far as they can be read: all are masked.
    let mut pending_targets = BTreeSet::new();
    for step in &pb.steps {
        if step
            .targets
            .iter()
            .any(|t| !is_done(&known.state_of(&step.id, t)))
        {
            // A copy also needs its source.
            pending_targets.extend(step.machines().filter(|t| pb.targets.contains_key(*t)));
        }
    }
    let mut redactor = Redactor::new();
    let secrets = Secrets::resolve_all(pb, pending_targets.iter().copied(), &mut redactor)?;

    read_attempts(journal, clock, &mut known)?;
    Ok(Loaded {
        known,
        redactor,
        secrets,
    })
}

type Pairs = Vec<(String, String, PairState)>;

/// A success recorded for other work, on another machine or for another playbook than what the
/// playbook now says is not a success (see `identity`).
fn check_identity(
    pb: &Playbook,
    opts: &ApplyOptions,
    journal: &mut Journal,
) -> Result<(Option<String>, Pairs, Vec<super::identity::Conflict>), EngineError> {
    let previous_owner = super::identity::claim(journal, pb, opts.accept_changed)?;
    let pairs = journal.pairs()?;
    let changed = super::identity::conflicts(
        pb,
        &pairs,
        &journal.attempts(None)?,
        &super::identity::identities(pb),
    );
    let undecided: Vec<_> = changed
        .iter()
        .filter(|c| !opts.accept_changed || c.needs_operator())
        .cloned()
        .collect();
    if !undecided.is_empty() {
        return Err(EngineError::Changed(undecided));
    }
    // A copied playbook's new journal knows nothing of what the original's did to the same
    // machines: stop before the first step (see `beside`).
    if !opts.accept_changed && !journal.is_postgres() {
        let pending: Vec<(String, String)> = pb
            .steps
            .iter()
            .flat_map(|s| s.targets.iter().map(|t| (s.id.clone(), t.clone())))
            .filter(|(s, t)| {
                !pairs
                    .iter()
                    .any(|(ps, pt, st)| ps == s && pt == t && is_done(st))
            })
            .collect();
        let mine: BTreeSet<String> = journal
            .attempts(None)?
            .into_iter()
            .filter_map(|a| a.target_identity)
            .collect();
        let found = super::beside::changed_elsewhere(
            pb,
            &opts.state,
            &pending,
            &super::identity::identities(pb),
            &mine,
        )?;
        if !found.is_empty() {
            return Err(EngineError::ChangedBeside(super::beside::message(
                pb, &found,
            )));
        }
    }
    Ok((previous_owner, pairs, changed))
}

/// Counts the earlier run attempts of each pair, finds each pair's last attempt, and closes
/// checks left running by a runner that died.
fn read_attempts(journal: &Journal, clock: Clock, known: &mut Known) -> Result<(), EngineError> {
    for a in journal.attempts(None)? {
        if a.kind != AttemptKind::Check {
            let is_run = a.kind == AttemptKind::Run;
            known
                .last_attempt
                .insert((a.step_id.clone(), a.target.clone()), (a.id, is_run));
        }
        // A check still `running` was left by a runner that died (we hold the lock). Pair
        // states ignore checks, so nothing else would ever close it and the record would
        // show that check running forever.
        if a.kind == AttemptKind::Check && a.state == AttemptState::Running {
            journal.finish_attempt(
                a.id,
                AttemptState::Interrupted,
                None,
                clock.now(),
                Some(&format!(
                    "runner (pid {} on {}) stopped while this check was running",
                    a.pid, a.host
                )),
            )?;
        }
        if a.kind == AttemptKind::Run {
            *known
                .earlier_attempts
                .entry((a.step_id, a.target))
                .or_default() += 1;
        }
    }
    Ok(())
}

/// Records the definitions, announces the run and its notices, and records accepted changes.
fn open_session(session: &Session<'_>, known: &Known) -> Result<(), EngineError> {
    let pb = session.pb;
    let defs: Vec<(String, String)> = pb
        .steps
        .iter()
        .flat_map(|s| {
            s.rendered
                .iter()
                .map(move |r| (format!("{}@{}", s.id, r.target), r.def_hash.clone()))
        })
        .collect();
    session.journal().record_definitions(&session.run, &defs)?;
    let run_dir = session.runlog.dir().to_path_buf();

    let pairs_total: usize = pb.steps.iter().map(|s| s.targets.len()).sum();
    let pairs_done = pb
        .steps
        .iter()
        .flat_map(|s| s.targets.iter().map(move |t| (s, t)))
        .filter(|(s, t)| is_done(&known.state_of(&s.id, t)))
        .count();
    session.emit(&Event::RunStarted {
        run_id: session.run.to_string(),
        command: "apply".into(),
        playbook: pb.path.display().to_string(),
        steps: pb.steps.len(),
        pairs_total,
        pairs_done,
        run_dir: run_dir.display().to_string(),
        business_hours_at: pb.window.next_business_start(session.clock.now()),
        simulated_clock: session.clock.simulated(),
    });
    if let Some(o) = &session.override_window {
        let remaining = pb.steps.iter().filter(|s| {
            s.targets
                .iter()
                .any(|t| !is_done(&known.state_of(&s.id, t)))
        });
        session.emit(&Event::Notice {
            text: o.describe(remaining),
        });
    }
    if let Some(old) = known.previous_owner.as_ref().filter(|old| **old != pb.name) {
        session.emit(&Event::Notice {
            text: format!(
                "--accept-changed: this journal belonged to the playbook `{old}`; it now belongs to `{}`",
                pb.name
            ),
        });
    }
    if !known.changed.is_empty() {
        record_accepted(session, &known.changed)?;
    }
    Ok(())
}

/// The decision is recorded as a `done` mark against the new definition and the target's
/// address now, so it is made once: the next apply does not ask again, and a later edit or
/// move is caught again.
fn record_accepted(
    session: &Session<'_>,
    changed: &[super::identity::Conflict],
) -> Result<(), EngineError> {
    let mut changed_text: Vec<String> = changed
        .iter()
        .map(|c| format!("`{}` on `{}`", c.step, c.target))
        .collect();
    changed_text.dedup();
    let mut seen = BTreeSet::new();
    let marks: Vec<NewMark> = changed
        .iter()
        .filter(|c| seen.insert((c.step.as_str(), c.target.as_str())))
        .map(|c| NewMark {
            run: Some(session.run.clone()),
            step_id: c.step.clone(),
            target: c.target.clone(),
            mark: MarkKind::Done,
            def_hash: c.def_hash.clone(),
            user: session.who.user.clone(),
            host: session.who.host.clone(),
            at: session.clock.now(),
            reason: Some(c.accepted_reason()),
        })
        .collect();
    session.journal().mark_all(&marks)?;
    session.emit(&Event::Notice {
        text: format!(
            "--accept-changed: keeping earlier results of changed steps: {}",
            changed_text.join(", ")
        ),
    });
    Ok(())
}

/// The steps in order; `Break` carries how the run stopped before the last one was done.
fn walk_steps(session: &Session<'_>, opts: &ApplyOptions, known: &Known) -> ControlFlow<Outcome> {
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

fn interrupted(s: &Session<'_>) -> Outcome {
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

enum Doubt {
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
fn resolve_doubt(
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
        None if step.idempotent => emit_doubt(s, step, target, Decision::Idempotent, Doubt::Run),
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
                let window_closed = match closed.lock() {
                    Ok(c) if resume.is_none() => *c,
                    _ => None,
                };
                // After the first Ctrl-C, pairs not yet started are not started.
                let end = if s.interrupt.stopping() {
                    PairEnd::Interrupted
                } else if let Some(next) = window_closed {
                    PairEnd::WindowClosed(next)
                } else {
                    let started = std::time::Instant::now();
                    let end = run_pair(s, step, t, *earlier, resume.clone());
                    s.emit(&Event::PairFinished {
                        step: step.id.clone(),
                        target: t.clone(),
                        ok: end == PairEnd::Done,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                    });
                    if let (PairEnd::WindowClosed(next), Ok(mut c)) = (&end, closed.lock()) {
                        c.get_or_insert(*next);
                    }
                    end
                };
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

enum ManualEnd {
    Confirmed,
    Waiting(Outcome),
    Failed(Outcome),
}

/// A manual step: ask the operator for `done` or `fail`; without one, stop (exit 5) and say
/// how to confirm with `runner mark`.
fn manual(s: &Session<'_>, step: &Step, operator: &dyn Operator) -> ManualEnd {
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
        return ManualEnd::Waiting(s.finish(
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
        ));
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
        ManualAnswer::Done => {
            let mark = NewMark {
                run: Some(s.run.clone()),
                step_id: step.id.clone(),
                target: target.to_string(),
                mark: MarkKind::Done,
                def_hash: r.def_hash.clone(),
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
        ManualAnswer::Fail => {
            let j = s.journal();
            let rec = j.begin_attempt(&NewAttempt {
                run: s.run.clone(),
                step_id: step.id.clone(),
                target: target.to_string(),
                kind: AttemptKind::Run,
                number: 1,
                started_at: s.clock.now(),
                pid: s.who.pid,
                host: s.who.host.clone(),
                def_hash: r.def_hash.clone(),
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
    }
}
