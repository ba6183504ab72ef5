//! `runner status`: where a cutover stands, computed from the playbook and the journal alone.
//!
//! Nothing here connects to a machine or writes anything, so an operator can run it at any
//! time, even while `apply` is working (the journal allows concurrent readers). The view is a
//! plain value: the CLI prints [`render_status_text`] or the view serialized as JSON.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use crate::duration::human_duration;
use crate::journal::{
    process_alive, Attempt, AttemptKind, AttemptState, Holder, Journal, JournalError, Mark,
    MarkKind, PairState, Run,
};
use crate::plan::earliest;
use crate::playbook::{Playbook, Step};

/// The state of one step × target pair as an operator needs to see it.
///
/// Finer than [`PairState`] in two ways: a failure says how it ended (failed, timed out,
/// interrupted), and a `Running` pair is split into "running" and "in doubt" depending on
/// whether its runner could still be working on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairStatus {
    Pending,
    Running,
    InDoubt,
    Succeeded,
    MarkedDone,
    Skipped,
    Failed,
    TimedOut,
    Interrupted,
    RolledBack,
    RollbackFailed,
}

impl PairStatus {
    pub const ALL: &'static [PairStatus] = &[
        PairStatus::Pending,
        PairStatus::Running,
        PairStatus::InDoubt,
        PairStatus::Succeeded,
        PairStatus::MarkedDone,
        PairStatus::Skipped,
        PairStatus::Failed,
        PairStatus::TimedOut,
        PairStatus::Interrupted,
        PairStatus::RolledBack,
        PairStatus::RollbackFailed,
    ];

    /// What the operator and the customer read.
    pub fn label(self) -> &'static str {
        match self {
            PairStatus::Pending => "pending",
            PairStatus::Running => "running",
            PairStatus::InDoubt => "in doubt",
            PairStatus::Succeeded => "succeeded",
            PairStatus::MarkedDone => "marked done",
            PairStatus::Skipped => "skipped",
            PairStatus::Failed => "failed",
            PairStatus::TimedOut => "timed out",
            PairStatus::Interrupted => "interrupted",
            PairStatus::RolledBack => "rolled back",
            PairStatus::RollbackFailed => "rollback failed",
        }
    }

    /// Whether the pair needs no more work going forward (a skip counts as done).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            PairStatus::Succeeded | PairStatus::MarkedDone | PairStatus::Skipped
        )
    }

    /// Whether something went wrong that a person has to look at.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            PairStatus::Failed
                | PairStatus::TimedOut
                | PairStatus::Interrupted
                | PairStatus::RollbackFailed
        )
    }

    /// Classifies a derived pair state. `this_host` decides whether a `Running` pair's runner
    /// could still be alive (see [`PairState::is_in_doubt`]).
    pub fn of(state: &PairState, this_host: &str) -> PairStatus {
        match state {
            PairState::Pending => PairStatus::Pending,
            PairState::Running { .. } if state.is_in_doubt(this_host) => PairStatus::InDoubt,
            PairState::Running { .. } => PairStatus::Running,
            PairState::Succeeded { by_mark: true, .. } => PairStatus::MarkedDone,
            PairState::Succeeded { .. } => PairStatus::Succeeded,
            PairState::Skipped { .. } => PairStatus::Skipped,
            PairState::Failed { state, .. } => match state {
                AttemptState::TimedOut => PairStatus::TimedOut,
                AttemptState::Interrupted => PairStatus::Interrupted,
                // `Running` and `Succeeded` never reach a Failed state; calling them failed is
                // the safe reading of a damaged row.
                _ => PairStatus::Failed,
            },
            PairState::RolledBack { .. } => PairStatus::RolledBack,
            PairState::RollbackFailed { .. } => PairStatus::RollbackFailed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The playbook's `name`.
    pub playbook: String,
    pub path: String,
    /// IANA zone the times are shown in; None when the window has no business hours (UTC).
    pub timezone: Option<String>,
    pub now: Timestamp,
    /// `now` comes from `RUNNER_NOW`, not the real clock (set by the caller).
    pub now_simulated: bool,
    /// False when there is no journal: the playbook was never applied.
    pub applied: bool,
    pub lock: Option<LockView>,
    pub last_run: Option<RunView>,
    /// Number of pairs in each state; every state is present, zero or not, so tools can
    /// index it without checking.
    pub counts: BTreeMap<PairStatus, usize>,
    pub steps: Vec<StepView>,
    /// The first step with a pair not done; None when everything is done.
    pub next: Option<NextView>,
    /// Pairs the journal has but the playbook no longer names (a step or target was renamed
    /// or removed since they ran). Shown so that a changed playbook cannot hide history.
    pub unknown_pairs: Vec<UnknownPair>,
    /// Every run whose clock `RUNNER_NOW` replaced: the times it recorded are simulated.
    pub simulated_runs: Vec<RunView>,
    /// Notifications of the latest run that sent any, one entry per notification and sink.
    pub notifications: Vec<crate::journal::DeliverySummary>,
    /// Every step with work left, with its planned start from now (what is done is not
    /// scheduled again).
    pub schedule: Vec<ScheduledStep>,
    /// Whether the rest fits before business hours, as a sentence ("3 steps left, expected to
    /// end 05:40 CST, business hours at 07:15, margin 1h35m"); None when it cannot be scheduled.
    pub fit: Option<String>,
    /// The rest ends before business hours begin (None: it cannot be scheduled).
    pub fits: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduledStep {
    pub step: String,
    pub title: String,
    /// Its targets with work left.
    pub targets: Vec<String>,
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    pub holder: Holder,
    pub state: LockState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// The holder process is alive on this host.
    Held,
    /// The lock file names a process on this host that no longer exists: the lock is free,
    /// the text is left over.
    Stale,
    /// The holder is on another host; whether it is alive cannot be checked from here.
    OtherHost,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub id: String,
    /// apply, rollback or mark.
    pub command: String,
    pub user: String,
    pub host: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// None while the run is open, or when its runner died before closing it.
    pub outcome: Option<String>,
    /// Set when the run's clock was simulated (`RUNNER_NOW`).
    pub simulated_clock: Option<crate::clock::Simulated>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// 1-based position in the playbook.
    pub number: usize,
    pub id: String,
    pub title: String,
    pub manual: bool,
    pub pairs: Vec<PairView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairView {
    pub target: String,
    pub status: PairStatus,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    /// Attempts that move the step forward (not checks, not rollbacks).
    pub attempts: usize,
    /// Duration of the last attempt that is not a check, if it ended.
    pub last_duration_secs: Option<i64>,
    /// When the pair reached its current state (or the last attempt ended).
    pub last_end: Option<Timestamp>,
    pub running: Option<RunningView>,
    /// The operator decision behind a marked-done or skipped pair.
    pub mark: Option<MarkView>,
    /// The pair succeeded, but the step as written now differs from what succeeded: a resume
    /// will not trust that success.
    pub definition_changed: bool,
    /// A run under a simulated clock (`RUNNER_NOW`) worked on or decided about this pair: some
    /// of its times are simulated.
    pub simulated_clock: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningView {
    pub kind: String,
    pub pid: u32,
    pub host: String,
    pub started_at: Timestamp,
    /// The folder of a detached job on the target, when the attempt runs detached.
    pub detached_job: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MarkView {
    pub user: String,
    pub host: String,
    pub at: Timestamp,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextView {
    pub step: String,
    pub title: String,
    /// Its pairs that are not done.
    pub waiting: Vec<WaitingPair>,
    /// Earliest start the business-hours window allows from now; None when no gap within the
    /// planning horizon is long enough.
    pub earliest: Option<Timestamp>,
    /// The window allows it right now.
    pub now: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitingPair {
    pub target: String,
    pub status: PairStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnknownPair {
    pub step: String,
    pub target: String,
    pub status: PairStatus,
}

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
    let mut job_dirs = HashMap::new();
    if let Some(j) = journal {
        for (_, _, st) in &pairs {
            if let PairState::Running { attempt, .. } = st {
                if let Some(dir) = j.notes(*attempt)?.get(crate::journal::notes::NOTE_JOB_DIR) {
                    job_dirs.insert(attempt.0, dir.clone());
                }
            }
        }
    }
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
        Some(j) => {
            let all = crate::journal::summarize_notifications(&j.notifications(None)?);
            let last = all.last().map(|d| d.run_id.clone());
            all.into_iter()
                .filter(|d| Some(&d.run_id) == last.as_ref())
                .collect()
        }
        None => Vec::new(),
    };
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
    let (schedule, fit, fits) = match crate::resume::remaining(pb, &is_done, now) {
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
    };
    Ok(StatusView {
        notifications,
        schedule,
        fit,
        fits,
        applied: journal.is_some(),
        lock: lock.map(|h| LockView {
            holder: h.clone(),
            state: if h.host != this_host {
                LockState::OtherHost
            } else if process_alive(h.pid) {
                LockState::Held
            } else {
                LockState::Stale
            },
        }),
        ..view
    })
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

    let mut counts: BTreeMap<PairStatus, usize> = PairStatus::ALL.iter().map(|&s| (s, 0)).collect();
    let mut known: HashSet<(&str, &str)> = HashSet::new();
    let mut steps = Vec::with_capacity(pb.steps.len());
    for step in &pb.steps {
        let mut pairs = Vec::with_capacity(step.targets.len());
        for target in &step.targets {
            let key = (step.id.as_str(), target.as_str());
            known.insert(key);
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
            if let Some(n) = counts.get_mut(&view.status) {
                *n += 1;
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

    let next = pb.steps.iter().zip(&steps).find_map(|(step, view)| {
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
    });

    let unknown_pairs = h
        .pairs
        .iter()
        .filter(|(s, t, _)| !known.contains(&(s.as_str(), t.as_str())))
        .map(|(s, t, st)| UnknownPair {
            step: s.clone(),
            target: t.clone(),
            status: PairStatus::of(st, this_host),
        })
        .collect();

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
        steps,
        next,
        unknown_pairs,
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
    let (exit_code, message, at) = match state {
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
    };
    let running = match state {
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
    };
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

/// "Mon 30 Nov 23:02" in the window's zone.
fn short(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %H:%M")
        .to_string()
}

/// Journal text is shown on a terminal: control characters (escape sequences) could rewrite
/// the screen, so they become `?`. Only the first line is kept; the report has the rest.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut out: String = first
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if first.chars().count() > max_chars || text.lines().nth(1).is_some() {
        out.push_str(" …");
    }
    out
}

fn state_text(p: &PairView) -> String {
    let mut s = p.status.label().to_owned();
    if p.running.as_ref().is_some_and(|r| r.detached_job.is_some()) {
        s.push_str(" (detached)");
    }
    if let Some(code) = p.exit_code {
        let _ = write!(s, " (exit {code})");
    }
    if p.definition_changed {
        s.push_str(", step changed since");
    }
    s
}

/// Pads to `width` characters (not bytes: names may be non-ASCII).
fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// The terminal view of `runner status`.
pub fn render_status_text(v: &StatusView, pb: &Playbook) -> String {
    let tz = pb.window.time_zone();
    let mut o = String::new();
    let _ = writeln!(o, "Playbook: {} ({})", v.playbook, v.path);
    let _ = writeln!(
        o,
        "Now: {} ({}){}",
        short(v.now, tz),
        v.timezone.as_deref().unwrap_or("UTC"),
        if v.now_simulated {
            " (simulated: RUNNER_NOW)"
        } else {
            ""
        }
    );

    if !v.applied {
        let _ = writeln!(o, "Never applied: no journal yet.");
    }
    match &v.last_run {
        Some(r) => {
            let ended = match (r.ended_at, &r.outcome) {
                (Some(e), Some(out)) => format!("ended {}: {}", short(e, tz), one_line(out, 200)),
                (Some(e), None) => format!("ended {}", short(e, tz)),
                (None, _) => "not closed (still running, or its runner stopped)".to_owned(),
            };
            let _ = writeln!(
                o,
                "Last run: {} by {} on {}, started {}, {}{}",
                r.command,
                r.user,
                r.host,
                short(r.started_at, tz),
                ended,
                if r.simulated_clock.is_some() {
                    " (simulated clock)"
                } else {
                    ""
                }
            );
        }
        None if v.applied => {
            let _ = writeln!(o, "Last run: none recorded");
        }
        None => {}
    }
    for r in &v.simulated_runs {
        if let Some(c) = &r.simulated_clock {
            let real = c
                .real_start
                .map(|t| format!("; it really started {}", short(t, tz)))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "Simulated clock: run {} ({}) ran with {}: the times it recorded are simulated{real}",
                r.id,
                r.command,
                c.setting()
            );
        }
    }
    if let Some(l) = &v.lock {
        let h = &l.holder;
        let who = format!(
            "runner {} (pid {}, user {}) on {} since {}",
            h.command,
            h.pid,
            h.user,
            h.host,
            short(h.since, tz)
        );
        let _ = match l.state {
            LockState::Held => writeln!(o, "Lock: held by {who}"),
            LockState::Stale => writeln!(o, "Lock: free (left over from {who}, which has exited)"),
            LockState::OtherHost => writeln!(
                o,
                "Lock: recorded for {who}; that is another host, so whether it still runs cannot be checked here"
            ),
        };
    }

    let summary: Vec<String> = v
        .counts
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(s, n)| format!("{n} {}", s.label()))
        .collect();
    let total: usize = v.counts.values().sum();
    let _ = writeln!(
        o,
        "Pairs: {total} ({})",
        if summary.is_empty() {
            "none".to_owned()
        } else {
            summary.join(", ")
        }
    );

    // One row per pair; step columns only on the step's first row.
    let mut rows: Vec<[String; 6]> = vec![[
        "#".into(),
        "STEP".into(),
        "TARGET".into(),
        "STATE".into(),
        "TRIES".into(),
        "LAST ENDED".into(),
    ]];
    let mut details: Vec<Option<String>> = vec![None];
    for s in &v.steps {
        for (i, p) in s.pairs.iter().enumerate() {
            let (num, id) = if i == 0 {
                (s.number.to_string(), s.id.clone())
            } else {
                (String::new(), String::new())
            };
            let last = match (p.last_duration_secs, p.last_end) {
                (Some(d), Some(e)) => format!(
                    "{} took {}",
                    short(e, tz),
                    human_duration(jiff::SignedDuration::from_secs(d))
                ),
                (None, Some(e)) => short(e, tz),
                _ => String::new(),
            };
            let last = if p.simulated_clock {
                format!("{last} (simulated clock)").trim_start().to_owned()
            } else {
                last
            };
            rows.push([
                num,
                id,
                p.target.clone(),
                state_text(p),
                p.attempts.to_string(),
                last,
            ]);
            details.push(detail_line(p, tz));
        }
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let _ = writeln!(o);
    for (r, d) in rows.iter().zip(&details) {
        let mut line = String::from(" ");
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            line.push(' ');
            if i == 4 {
                // Right-align the count.
                let _ = write!(line, "{c:>w$}");
            } else {
                line.push_str(&pad(c, w));
            }
            line.push(' ');
        }
        let _ = writeln!(o, "{}", line.trim_end());
        if let Some(d) = d {
            let _ = writeln!(o, "{}{d}", " ".repeat(widths[0] + widths[1] + 6));
        }
    }

    let in_doubt: Vec<(&str, &str)> = v
        .steps
        .iter()
        .flat_map(|s| s.pairs.iter().map(move |p| (s, p)))
        .filter(|(_, p)| p.status == PairStatus::InDoubt)
        .map(|(s, p)| (s.id.as_str(), p.target.as_str()))
        .collect();
    if !in_doubt.is_empty() {
        let list: Vec<String> = in_doubt
            .iter()
            .map(|(s, t)| format!("{s} on {t}"))
            .collect();
        let _ = writeln!(
            o,
            "\nIn doubt: {}. The runner that started it is gone: it may or may not have had its \
             effect. Inspect the target, then record what you found:",
            list.join(", ")
        );
        for (s, t) in &in_doubt {
            let _ = writeln!(
                o,
                "  runner mark {} {s}@{t} done    (or `retry`, or `skip`)",
                v.path
            );
        }
    }
    let left: Vec<(&str, &str)> = v
        .steps
        .iter()
        .flat_map(|s| s.pairs.iter().map(move |p| (s, p)))
        .filter(|(_, p)| {
            p.running.as_ref().is_some_and(|r| r.detached_job.is_some())
                && !matches!(v.lock.as_ref().map(|l| l.state), Some(LockState::Held))
        })
        .map(|(s, p)| (s.id.as_str(), p.target.as_str()))
        .collect();
    for (s, t) in &left {
        let _ = writeln!(
            o,
            "\nDetached: the job of {s} on {t} runs on the target without a runner following it; \
             `runner apply {}` reattaches to it (it is not started again).",
            v.path
        );
    }

    let _ = writeln!(o);
    match &v.next {
        None if v.steps.is_empty() => {
            let _ = writeln!(o, "The playbook has no steps.");
        }
        None => {
            let _ = writeln!(o, "All steps are done.");
        }
        Some(n) => {
            let waiting: Vec<String> = n
                .waiting
                .iter()
                .map(|w| format!("{} ({})", w.target, w.status.label()))
                .collect();
            let when = match n.earliest {
                _ if n.waiting.iter().any(|w| w.status == PairStatus::Running) => {
                    "it is running now".to_owned()
                }
                _ if n.now => "the window allows it now".to_owned(),
                Some(t) => format!(
                    "the window allows it from {}",
                    crate::window::label_for_people(t, tz)
                ),
                None => "the window has no long enough gap in the next 14 days".to_owned(),
            };
            let _ = writeln!(
                o,
                "Next: {} ({}) on {}; {when}",
                n.step,
                n.title,
                waiting.join(", ")
            );
        }
    }
    if !v.schedule.is_empty() {
        let _ = writeln!(
            o,
            "\nSchedule of what is left ({}):",
            v.timezone.as_deref().unwrap_or("UTC")
        );
        for st in &v.schedule {
            let _ = writeln!(
                o,
                "  {}-{}  {} ({}) on {}",
                short(st.start, tz),
                st.end.to_zoned_datetime(tz.clone()).strftime("%H:%M"),
                st.step,
                st.title,
                st.targets.join(", ")
            );
        }
    }
    if let Some(fit) = &v.fit {
        if !v.schedule.is_empty() {
            let _ = writeln!(o, "{}", capitalized(fit));
        }
    }
    if !v.unknown_pairs.is_empty() {
        let _ = writeln!(
            o,
            "\nThe journal also records {} pair(s) the playbook no longer names (renamed or removed since they ran):",
            v.unknown_pairs.len()
        );
        for u in &v.unknown_pairs {
            let _ = writeln!(o, "  {} @ {}: {}", u.step, u.target, u.status.label());
        }
    }
    if let Some(first) = v.notifications.first() {
        let delivered = v
            .notifications
            .iter()
            .filter(|d| d.outcome == "delivered")
            .count();
        let _ = writeln!(
            o,
            "\nNotifications (run {}): {delivered} of {} delivered",
            first.run_id,
            v.notifications.len()
        );
        for d in &v.notifications {
            let _ = writeln!(
                o,
                "  {} {} to {}: {} after {} tr{} ({})",
                short(d.at, tz),
                d.event,
                d.sink,
                d.outcome,
                d.tries,
                if d.tries == 1 { "y" } else { "ies" },
                one_line(&d.detail, 160)
            );
        }
    }
    o
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The second line under a pair: why it failed, who marked it, or which process runs it.
fn detail_line(p: &PairView, tz: &TimeZone) -> Option<String> {
    if let Some(r) = &p.running {
        let job = r
            .detached_job
            .as_deref()
            .map(|d| format!("; detached job in {d} on {}", p.target))
            .unwrap_or_default();
        return Some(format!(
            "{} started {} by pid {} on {}{job}",
            r.kind,
            short(r.started_at, tz),
            r.pid,
            r.host
        ));
    }
    if let Some(m) = &p.mark {
        let reason = m
            .reason
            .as_deref()
            .map(|r| format!(": {}", one_line(r, 200)))
            .unwrap_or_default();
        return Some(format!("by {} on {}{reason}", m.user, m.host));
    }
    p.message.as_deref().map(|m| one_line(m, 200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_neutralises_control_characters() {
        assert_eq!(one_line("a\x1b[2Jb", 100), "a?[2Jb");
        assert_eq!(one_line("first\nsecond", 100), "first …");
        assert_eq!(one_line("abcdef", 3), "abc …");
        assert_eq!(one_line("", 3), "");
    }

    #[test]
    fn done_and_failure_are_disjoint() {
        for &s in PairStatus::ALL {
            assert!(!(s.is_done() && s.is_failure()), "{s:?}");
        }
        assert!(PairStatus::Skipped.is_done());
        assert!(!PairStatus::RolledBack.is_done());
        assert!(PairStatus::TimedOut.is_failure());
        assert!(!PairStatus::InDoubt.is_failure());
    }
}
