//! `runner status`: where a cutover stands, computed from the playbook and the journal alone.
//!
//! Nothing here connects to a machine or writes anything, so an operator can run it at any
//! time, even while `apply` is working (the journal allows concurrent readers). The view is a
//! plain value: the CLI prints [`render_status_text`] or the view serialized as JSON.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;

use crate::journal::{
    process_alive, Attempt, AttemptKind, Holder, Journal, JournalError, Mark, MarkKind, PairState,
    Run,
};
use crate::plan::earliest;
use crate::playbook::{Playbook, Step};

mod model;
mod render;

pub use model::{
    LockState, LockView, MarkView, NextView, PairStatus, PairView, RunView, RunningView,
    ScheduledStep, StatusView, StepView, UnknownPair, WaitingPair,
};
pub(crate) use render::one_line;
pub use render::render_status_text;

/// Computes the status view.
///
/// `this_host` decides whether running attempts are alive or in doubt; `lock` is the holder
/// read from the lock file (`journal::read_holder_of`), if any. Without a journal (never
/// applied) every pair is pending.
pub fn status(
    pb: &Playbook,
    journal: Option<&Journal>,
    now: Timestamp,
    this_host: &str,
    lock: Option<&Holder>,
) -> Result<StatusView, JournalError> {
    let (runs, attempts, marks, pairs) = match journal {
        Some(j) => (j.runs()?, j.attempts(None)?, j.marks()?, j.pairs()?),
        None => Default::default(),
    };
    let job_dirs = match journal {
        Some(j) => job_dirs(j, &pairs)?,
        None => HashMap::new(),
    };
    let view = build(
        pb,
        &History {
            runs: &runs,
            attempts: &attempts,
            marks: &marks,
            pairs: &pairs,
            job_dirs: &job_dirs,
        },
        now,
        this_host,
    );
    let notifications = match journal {
        Some(j) => last_run_notifications(j)?,
        None => Vec::new(),
    };
    let (schedule, fit, fits) = schedule_left(pb, &view, now);
    Ok(StatusView {
        notifications,
        schedule,
        fit,
        fits,
        applied: journal.is_some(),
        lock: lock.map(|h| lock_view(h, this_host)),
        ..view
    })
}

/// The job folders of running detached attempts, by attempt id.
fn job_dirs(
    j: &Journal,
    pairs: &[(String, String, PairState)],
) -> Result<HashMap<i64, String>, JournalError> {
    let mut job_dirs = HashMap::new();
    for (_, _, st) in pairs {
        if let PairState::Running { attempt, .. } = st {
            if let Some(dir) = j.notes(*attempt)?.get(crate::journal::notes::NOTE_JOB_DIR) {
                job_dirs.insert(attempt.0, dir.clone());
            }
        }
    }
    Ok(job_dirs)
}

/// The notifications of the last run that sent any.
fn last_run_notifications(
    j: &Journal,
) -> Result<Vec<crate::journal::DeliverySummary>, JournalError> {
    let all = crate::journal::summarize_notifications(&j.notifications(None)?);
    let last = all.last().map(|d| d.run_id.clone());
    Ok(all
        .into_iter()
        .filter(|d| Some(&d.run_id) == last.as_ref())
        .collect())
}

/// What is left placed against the window from `now`, the sentence saying whether it fits,
/// and whether it does; nothing when it cannot be placed.
fn schedule_left(
    pb: &Playbook,
    view: &StatusView,
    now: Timestamp,
) -> (Vec<ScheduledStep>, Option<String>, Option<bool>) {
    let done: HashSet<(String, String)> = view
        .steps
        .iter()
        .flat_map(|s| {
            s.pairs
                .iter()
                .filter(|p| p.status.is_done())
                .map(move |p| (s.id.clone(), p.target.clone()))
        })
        .collect();
    let is_done = |s: &str, t: &str| done.contains(&(s.to_string(), t.to_string()));
    match crate::resume::remaining(pb, &is_done, now) {
        Ok(r) => (
            r.plan
                .steps
                .iter()
                .map(|p| ScheduledStep {
                    step: p.id.clone(),
                    title: p.name.clone(),
                    targets: p
                        .targets
                        .iter()
                        .filter(|t| !is_done(&p.id, t))
                        .cloned()
                        .collect(),
                    start: p.start,
                    end: p.end,
                })
                .collect(),
            Some(r.summary(pb, now)),
            Some(r.fits()),
        ),
        Err(_) => (Vec::new(), None, None),
    }
}

/// The lock's holder, and whether it still holds it as far as can be told from here.
fn lock_view(h: &Holder, this_host: &str) -> LockView {
    LockView {
        holder: h.clone(),
        state: if h.host != this_host {
            LockState::OtherHost
        } else if process_alive(h.pid) {
            LockState::Held
        } else {
            LockState::Stale
        },
    }
}

/// Everything read from the journal, borrowed so the builder needs no database.
struct History<'a> {
    runs: &'a [Run],
    attempts: &'a [Attempt],
    marks: &'a [Mark],
    pairs: &'a [(String, String, PairState)],
    /// Job folders of running detached attempts, by attempt id.
    job_dirs: &'a HashMap<i64, String>,
}

fn build(pb: &Playbook, h: &History<'_>, now: Timestamp, this_host: &str) -> StatusView {
    let steps = step_views(pb, h, this_host);
    let mut counts: BTreeMap<PairStatus, usize> = PairStatus::ALL.iter().map(|&s| (s, 0)).collect();
    for p in steps.iter().flat_map(|s| &s.pairs) {
        if let Some(n) = counts.get_mut(&p.status) {
            *n += 1;
        }
    }
    StatusView {
        playbook: pb.name.clone(),
        path: pb.path.display().to_string(),
        timezone: pb.timezone.clone(),
        now,
        now_simulated: false,
        applied: false,
        lock: None,
        last_run: h.runs.last().map(run_view),
        counts,
        next: next_view(pb, &steps, now),
        steps,
        unknown_pairs: unknown_pairs(pb, h, this_host),
        notifications: Vec::new(),
        simulated_runs: h
            .runs
            .iter()
            .filter(|r| r.simulated.is_some())
            .map(run_view)
            .collect(),
        schedule: Vec::new(),
        fit: None,
        fits: None,
    }
}

/// Each step of the playbook with the view of each of its pairs.
fn step_views(pb: &Playbook, h: &History<'_>, this_host: &str) -> Vec<StepView> {
    let states: HashMap<(&str, &str), &PairState> = h
        .pairs
        .iter()
        .map(|(s, t, st)| ((s.as_str(), t.as_str()), st))
        .collect();
    let mut by_pair: HashMap<(&str, &str), Vec<&Attempt>> = HashMap::new();
    for a in h.attempts {
        by_pair
            .entry((a.step_id.as_str(), a.target.as_str()))
            .or_default()
            .push(a);
    }
    // Marks come in id order, so the last one inserted is the latest decision.
    let mut last_mark: HashMap<(&str, &str), &Mark> = HashMap::new();
    for m in h.marks {
        last_mark.insert((m.step_id.as_str(), m.target.as_str()), m);
    }
    let simulated_pairs = simulated_pairs(h);
    let mut steps = Vec::with_capacity(pb.steps.len());
    for step in &pb.steps {
        let mut pairs = Vec::with_capacity(step.targets.len());
        for target in &step.targets {
            let key = (step.id.as_str(), target.as_str());
            let state = states.get(&key).copied().unwrap_or(&PairState::Pending);
            let history = by_pair.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let mut view = pair_view(
                step,
                target,
                state,
                history,
                last_mark.get(&key).copied(),
                this_host,
            );
            view.simulated_clock = simulated_pairs.contains(&key);
            // A detached job runs on the target whatever happens to runner: say where.
            if let (PairState::Running { attempt, .. }, Some(r)) = (state, view.running.as_mut()) {
                r.detached_job = h.job_dirs.get(&attempt.0).cloned();
                // Its runner may be gone, the job is not: the next apply follows it to its
                // end. Nothing about it is in doubt.
                if r.detached_job.is_some() {
                    view.status = PairStatus::Running;
                }
            }
            pairs.push(view);
        }
        steps.push(StepView {
            number: step.index + 1,
            id: step.id.clone(),
            title: step.title().to_owned(),
            manual: step.is_manual(),
            pairs,
        });
    }
    steps
}

/// The pairs with an attempt or a mark made under a simulated clock.
fn simulated_pairs<'a>(h: &History<'a>) -> HashSet<(&'a str, &'a str)> {
    let simulated: HashSet<&str> = h
        .runs
        .iter()
        .filter(|r| r.simulated.is_some())
        .map(|r| r.id.0.as_str())
        .collect();
    let mut simulated_pairs: HashSet<(&str, &str)> = HashSet::new();
    for (key, run) in h
        .attempts
        .iter()
        .map(|a| ((a.step_id.as_str(), a.target.as_str()), Some(&a.run)))
        .chain(
            h.marks
                .iter()
                .map(|m| ((m.step_id.as_str(), m.target.as_str()), m.run.as_ref())),
        )
    {
        if run.is_some_and(|r| simulated.contains(r.0.as_str())) {
            simulated_pairs.insert(key);
        }
    }
    simulated_pairs
}

/// The first step with a pair not done, and when the window allows it.
fn next_view(pb: &Playbook, steps: &[StepView], now: Timestamp) -> Option<NextView> {
    pb.steps.iter().zip(steps).find_map(|(step, view)| {
        let waiting: Vec<WaitingPair> = view
            .pairs
            .iter()
            .filter(|p| !p.status.is_done())
            .map(|p| WaitingPair {
                target: p.target.clone(),
                status: p.status,
            })
            .collect();
        if waiting.is_empty() {
            return None;
        }
        let at = earliest(&pb.window, step, now);
        Some(NextView {
            step: step.id.clone(),
            title: step.title().to_owned(),
            waiting,
            earliest: at,
            now: at == Some(now),
        })
    })
}

/// Pairs of the journal that the playbook no longer names.
fn unknown_pairs(pb: &Playbook, h: &History<'_>, this_host: &str) -> Vec<UnknownPair> {
    let known: HashSet<(&str, &str)> = pb
        .steps
        .iter()
        .flat_map(|s| s.targets.iter().map(|t| (s.id.as_str(), t.as_str())))
        .collect();
    h.pairs
        .iter()
        .filter(|(s, t, _)| !known.contains(&(s.as_str(), t.as_str())))
        .map(|(s, t, st)| UnknownPair {
            step: s.clone(),
            target: t.clone(),
            status: PairStatus::of(st, this_host),
        })
        .collect()
}

fn run_view(r: &Run) -> RunView {
    RunView {
        id: r.id.0.clone(),
        command: r.command.as_str().to_owned(),
        user: r.user.clone(),
        host: r.host.clone(),
        started_at: r.started_at,
        ended_at: r.ended_at,
        outcome: r.outcome.clone(),
        simulated_clock: r.simulated,
    }
}

fn pair_view(
    step: &Step,
    target: &str,
    state: &PairState,
    history: &[&Attempt],
    mark: Option<&Mark>,
    this_host: &str,
) -> PairView {
    let status = PairStatus::of(state, this_host);
    let forward = |a: &&&Attempt| !matches!(a.kind, AttemptKind::Check | AttemptKind::Rollback);
    let last = history
        .iter()
        .rev()
        .find(|a| a.kind != AttemptKind::Check)
        .copied();
    let (exit_code, message, at) = ending(state, history);
    let running = running_view(state);
    let mark = match status {
        PairStatus::MarkedDone | PairStatus::Skipped => mark
            .filter(|m| matches!(m.mark, MarkKind::Done | MarkKind::Skip))
            .map(|m| MarkView {
                user: m.user.clone(),
                host: m.host.clone(),
                at: m.at,
                reason: m.reason.clone(),
            }),
        _ => None,
    };
    let definition_changed = match state {
        PairState::Succeeded { def_hash, .. } => step
            .rendered_for(target)
            .is_some_and(|r| &r.def_hash != def_hash),
        _ => false,
    };
    PairView {
        target: target.to_owned(),
        status,
        exit_code,
        message,
        attempts: history.iter().filter(forward).count(),
        last_duration_secs: last
            .and_then(|a| a.ended_at.map(|e| e.duration_since(a.started_at).as_secs())),
        last_end: at.or_else(|| last.and_then(|a| a.ended_at)),
        running,
        mark,
        definition_changed,
        simulated_clock: false,
    }
}

/// How the pair ended, as far as it did: the exit code, the message and when.
fn ending(
    state: &PairState,
    history: &[&Attempt],
) -> (Option<i64>, Option<String>, Option<Timestamp>) {
    match state {
        PairState::Failed {
            at,
            exit_code,
            message,
            ..
        } => (*exit_code, message.clone(), Some(*at)),
        // The pair state keeps no message for a failed rollback; the attempt that decided
        // it is the last rollback attempt.
        PairState::RollbackFailed { at, exit_code } => (
            *exit_code,
            history
                .iter()
                .rev()
                .find(|a| a.kind == AttemptKind::Rollback)
                .and_then(|a| a.message.clone()),
            Some(*at),
        ),
        PairState::Succeeded { at, .. }
        | PairState::Skipped { at }
        | PairState::RolledBack { at } => (None, None, Some(*at)),
        PairState::Pending | PairState::Running { .. } => (None, None, None),
    }
}

/// The attempt under way, if any.
fn running_view(state: &PairState) -> Option<RunningView> {
    match state {
        PairState::Running {
            kind,
            pid,
            host,
            started_at,
            ..
        } => Some(RunningView {
            kind: kind.as_str().to_owned(),
            pid: *pid,
            host: host.clone(),
            started_at: *started_at,
            detached_job: None,
        }),
        _ => None,
    }
}
