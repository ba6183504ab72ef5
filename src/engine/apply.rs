//! `runner apply`: run the steps in order, skipping what the journal says is done, deciding
//! safely about what was in flight, and stopping cleanly for the window, an operator, a
//! failure or Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use super::event::{Event, Reporter, RunOutcome};
use super::interrupt::Interrupt;
use super::operator::Operator;
use super::walk::walk_steps;
use super::{EngineError, Outcome, Session, Start, Who};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::journal::{
    lock, AttemptId, AttemptKind, AttemptState, Journal, MarkKind, NewMark, PairState, RunCommand,
};
use crate::playbook::Playbook;
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
pub(super) fn is_done(state: &PairState) -> bool {
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
pub(super) struct Known {
    /// The playbook this journal belonged to, if it now changes hands (`--accept-changed`).
    pub(super) previous_owner: Option<String>,
    pub(super) changed: Vec<super::identity::Conflict>,
    pub(super) states: BTreeMap<(String, String), PairState>,
    pub(super) earlier_attempts: BTreeMap<(String, String), u32>,
    /// The last attempt of each pair other than a check: an in-doubt pair's notes are on it.
    pub(super) last_attempt: BTreeMap<(String, String), (AttemptId, bool)>,
}

impl Known {
    pub(super) fn state_of(&self, step: &str, target: &str) -> PairState {
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
