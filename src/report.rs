//! `runner report`: the record of a cutover for the customer.
//!
//! Built from the playbook, the journal and the per-pair output logs in the run folders; it
//! reads and never writes. The content is assembled once into [`Report`] (which is also the
//! JSON form) and then laid out as a small document model, so Markdown and HTML show the same
//! things and all escaping happens in one place per format.
//!
//! Secrets: the engine masks everything it writes to the journal and the logs, and this module
//! adds nothing that could hold one: targets are shown by address only (never credentials or
//! credential references), and run arguments are left out.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::duration::human_duration;
use crate::journal::{self, Attempt, AttemptKind, AttemptState, EventKind, Journal, JournalError};
use crate::playbook::Playbook;
use crate::status::PairStatus;

/// Output lines shown per pair and run.
pub const TAIL_LINES: usize = 15;
/// At most this much of the end of a log file is read: logs can be gigabytes, and fifteen
/// lines are almost always in the last few KiB.
const TAIL_BYTES: u64 = 256 * 1024;
/// Sort rank of steps and targets the playbook does not name (any larger than a real index).
const UNKNOWN: usize = usize::MAX / 2;
/// Longer output lines are cut; a single line of a binary dump must not make the report huge.
const MAX_LINE_CHARS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The whole record; serialized as is for `--format json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: u32,
    pub playbook: PlaybookInfo,
    pub summary: Summary,
    pub targets: Vec<TargetInfo>,
    /// The final state of every step of the playbook.
    pub steps: Vec<StepRecord>,
    pub runs: Vec<RunRecord>,
    /// Operator decisions not tied to a run recorded in the journal.
    pub other_marks: Vec<MarkRecord>,
    /// Every notification sent (or not) to a `notify:` sink, one entry per notification and
    /// sink, tries folded in.
    pub notifications: Vec<journal::DeliverySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaybookInfo {
    pub name: String,
    pub description: Option<String>,
    pub path: String,
    pub sha256: String,
    /// The zone times are shown in; None means UTC (no business hours).
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub first_start: Option<Timestamp>,
    pub last_end: Option<Timestamp>,
    /// From the first run's start to the last run's end, nights between included.
    pub elapsed_secs: Option<i64>,
    /// The runs' durations added up: the time the runner was actually at work.
    pub working_secs: i64,
    pub steps: usize,
    pub steps_done: usize,
    pub steps_failed: usize,
    pub steps_in_doubt: usize,
    pub steps_running: usize,
    pub steps_rolled_back: usize,
    pub steps_pending: usize,
    pub attempts: usize,
    pub failed_attempts: usize,
    pub rollback_attempts: usize,
    pub marks: usize,
    pub overrides: usize,
    pub overruns: usize,
    /// Runs whose clock `RUNNER_NOW` replaced: their times are simulated, not real.
    pub simulated_runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub name: String,
    /// e.g. `ssh admin@10.0.0.5:22`; never a credential.
    pub connection: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    Failed,
    InDoubt,
    Running,
    RolledBack,
    Pending,
}

impl StepOutcome {
    pub fn label(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Failed => "failed",
            StepOutcome::InDoubt => "in doubt",
            StepOutcome::Running => "running",
            StepOutcome::RolledBack => "rolled back",
            StepOutcome::Pending => "pending",
        }
    }

    /// A step's outcome from its pairs: any failure makes the step failed, then any doubt,
    /// then any work in progress; it is done only when every pair is.
    fn of(pairs: &[FinalPair]) -> StepOutcome {
        let any = |f: fn(PairStatus) -> bool| pairs.iter().any(|p| f(p.status));
        if any(PairStatus::is_failure) {
            StepOutcome::Failed
        } else if any(|s| s == PairStatus::InDoubt) {
            StepOutcome::InDoubt
        } else if any(|s| s == PairStatus::Running) {
            StepOutcome::Running
        } else if pairs.iter().all(|p| p.status.is_done()) {
            StepOutcome::Done
        } else if any(|s| s == PairStatus::RolledBack) {
            StepOutcome::RolledBack
        } else {
            StepOutcome::Pending
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// 1-based position in the playbook.
    pub number: usize,
    pub id: String,
    pub title: String,
    pub phase: Option<String>,
    pub outcome: StepOutcome,
    pub pairs: Vec<FinalPair>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinalPair {
    pub target: String,
    pub status: PairStatus,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// 1-based, in start order.
    pub number: usize,
    pub id: String,
    /// apply, rollback or mark.
    pub command: String,
    pub user: String,
    pub host: String,
    pub runner_version: String,
    pub started_at: Timestamp,
    /// None when the runner stopped without closing the run (killed, power cut) or is still
    /// at work.
    pub ended_at: Option<Timestamp>,
    /// The latest thing the journal records for this run.
    pub last_activity: Option<Timestamp>,
    /// To `ended_at`, or to `last_activity` for a run that was never closed.
    pub duration_secs: i64,
    pub outcome: Option<String>,
    /// Some attempt in this run failed, timed out or was interrupted.
    pub had_failures: bool,
    /// Business-hours window decisions.
    pub events: Vec<EventRecord>,
    /// Steps this run worked on, in playbook order.
    pub steps: Vec<RunStep>,
    pub marks: Vec<MarkRecord>,
    /// Set when the run's clock was simulated (`RUNNER_NOW`): every time above is simulated.
    pub simulated_clock: Option<crate::clock::Simulated>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunStep {
    pub id: String,
    pub title: String,
    pub pairs: Vec<RunPair>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunPair {
    pub target: String,
    pub attempts: Vec<AttemptRecord>,
    pub output: OutputTail,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub id: i64,
    /// 1 for the first try.
    pub number: u32,
    /// run, check, rollback, ...
    pub kind: String,
    /// running, succeeded, failed, timed_out or interrupted.
    pub state: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_secs: Option<i64>,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub failed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputTail {
    /// Relative to the runs directory: `<run-id>/<step>@<target>.log`.
    pub file: String,
    pub status: OutputStatus,
    /// Why an existing file could not be read.
    pub error: Option<String>,
    pub lines: Vec<OutputLine>,
    /// Earlier lines exist that are not shown.
    pub earlier_omitted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStatus {
    Recorded,
    Empty,
    Missing,
    Unreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputLine {
    /// stdout, stderr, ... as the engine wrote it; empty for a line not in the log format.
    pub stream: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MarkRecord {
    pub run: Option<String>,
    pub step: String,
    pub target: String,
    /// done, retry or skip.
    pub decision: String,
    pub user: String,
    pub host: String,
    pub at: Timestamp,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub at: Timestamp,
    /// stopped, waited, override or overrun.
    pub kind: String,
    pub step: Option<String>,
    pub detail: String,
}

/// Renders the report in `format`. `runs_dir` holds one folder per run with the output logs.
pub fn report(
    pb: &Playbook,
    journal: &Journal,
    runs_dir: &Path,
    format: ReportFormat,
) -> Result<String, ReportError> {
    let r = build_report(pb, journal, runs_dir)?;
    let tz = pb.window.time_zone();
    Ok(match format {
        ReportFormat::Markdown => render_markdown(&document(&r, tz)),
        ReportFormat::Html => render_html(&r.playbook.name, &document(&r, tz)),
        ReportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&r)?;
            s.push('\n');
            s
        }
    })
}

/// Collects everything the report shows.
pub fn build_report(
    pb: &Playbook,
    journal: &Journal,
    runs_dir: &Path,
) -> Result<Report, ReportError> {
    let runs = journal.runs()?;
    let attempts = journal.attempts(None)?;
    let marks = journal.marks()?;
    let events = journal.events(None)?;
    let pairs = journal.pairs()?;
    // Only decides whether a running attempt could still be alive; an unknown host name
    // makes every running attempt read as in doubt, which is the cautious reading.
    let this_host = journal::host_name().unwrap_or_default();

    let states: HashMap<(&str, &str), &journal::PairState> = pairs
        .iter()
        .map(|(s, t, st)| ((s.as_str(), t.as_str()), st))
        .collect();
    let steps: Vec<StepRecord> = pb
        .steps
        .iter()
        .map(|step| {
            let pairs: Vec<FinalPair> = step
                .targets
                .iter()
                .map(|t| {
                    let state = states
                        .get(&(step.id.as_str(), t.as_str()))
                        .copied()
                        .unwrap_or(&journal::PairState::Pending);
                    final_pair(t, state, &this_host, &attempts)
                })
                .collect();
            StepRecord {
                number: step.index + 1,
                id: step.id.clone(),
                title: step.title().to_owned(),
                phase: step.phase.clone(),
                outcome: StepOutcome::of(&pairs),
                pairs,
            }
        })
        .collect();

    let run_ids: HashMap<&str, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.0.as_str(), i))
        .collect();
    let mut run_records: Vec<RunRecord> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| RunRecord {
            number: i + 1,
            id: r.id.0.clone(),
            command: r.command.as_str().to_owned(),
            user: r.user.clone(),
            host: r.host.clone(),
            runner_version: r.runner_version.clone(),
            started_at: r.started_at,
            ended_at: r.ended_at,
            last_activity: r.ended_at,
            duration_secs: 0,
            outcome: r.outcome.clone(),
            had_failures: false,
            events: Vec::new(),
            steps: Vec::new(),
            marks: Vec::new(),
            simulated_clock: r.simulated,
        })
        .collect();
    let touch = |rec: &mut RunRecord, t: Timestamp| {
        rec.last_activity = Some(rec.last_activity.map_or(t, |l| l.max(t)));
    };

    let mut other_marks = Vec::new();
    for m in &marks {
        let rec = MarkRecord {
            run: m.run.as_ref().map(|r| r.0.clone()),
            step: m.step_id.clone(),
            target: m.target.clone(),
            decision: m.mark.as_str().to_owned(),
            user: m.user.clone(),
            host: m.host.clone(),
            at: m.at,
            reason: m.reason.clone(),
        };
        match m.run.as_ref().and_then(|r| run_ids.get(r.0.as_str())) {
            Some(&i) => {
                touch(&mut run_records[i], m.at);
                run_records[i].marks.push(rec);
            }
            None => other_marks.push(rec),
        }
    }
    for e in &events {
        if let Some(&i) = run_ids.get(e.run.0.as_str()) {
            touch(&mut run_records[i], e.at);
            run_records[i].events.push(EventRecord {
                at: e.at,
                kind: e.kind.as_str().to_owned(),
                step: e.step_id.clone(),
                detail: e.detail.clone(),
            });
        }
    }

    // Attempts grouped per run, then per step and target in playbook order; steps and
    // targets the playbook no longer names go last, in the order they appear.
    let step_pos: HashMap<&str, usize> = pb
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    // Positions of what the playbook does not name: after everything it does, in the order
    // of first appearance.
    let mut first_seen: HashMap<(&str, &str), usize> = HashMap::new();
    // Per run: (step rank, target rank, step, target) -> attempts.
    type ByPair<'a> = BTreeMap<(usize, usize, &'a str, &'a str), Vec<&'a Attempt>>;
    let mut grouped: Vec<ByPair<'_>> = vec![BTreeMap::new(); run_records.len()];
    for a in &attempts {
        let Some(&i) = run_ids.get(a.run.0.as_str()) else {
            continue;
        };
        touch(&mut run_records[i], a.started_at);
        if let Some(end) = a.ended_at {
            touch(&mut run_records[i], end);
        }
        let n = first_seen.len();
        let step_seen = UNKNOWN + *first_seen.entry((&a.step_id, "")).or_insert(n);
        let n = first_seen.len();
        let pair_seen = UNKNOWN + *first_seen.entry((&a.step_id, &a.target)).or_insert(n);
        let step = step_pos.get(a.step_id.as_str()).copied();
        let step_rank = step.unwrap_or(step_seen);
        let target_rank = step
            .and_then(|s| pb.steps[s].targets.iter().position(|t| *t == a.target))
            .unwrap_or(pair_seen);
        grouped[i]
            .entry((step_rank, target_rank, &a.step_id, &a.target))
            .or_default()
            .push(a);
    }
    for (rec, pairs) in run_records.iter_mut().zip(grouped) {
        for ((_, _, step_id, target), list) in pairs {
            let records: Vec<AttemptRecord> = list.iter().map(|a| attempt_record(a)).collect();
            rec.had_failures |= records.iter().any(|a| a.failed);
            let pair = RunPair {
                target: target.to_owned(),
                attempts: records,
                output: read_output(runs_dir, &rec.id, step_id, target),
            };
            match rec.steps.last_mut().filter(|s| s.id == step_id) {
                Some(s) => s.pairs.push(pair),
                None => rec.steps.push(RunStep {
                    id: step_id.to_owned(),
                    title: step_pos
                        .get(step_id)
                        .map_or(step_id, |&i| pb.steps[i].title())
                        .to_owned(),
                    pairs: vec![pair],
                }),
            }
        }
        let end = rec.ended_at.or(rec.last_activity).unwrap_or(rec.started_at);
        rec.duration_secs = end.duration_since(rec.started_at).as_secs().max(0);
    }

    let count = |o: StepOutcome| steps.iter().filter(|s| s.outcome == o).count();
    let first_start = run_records.iter().map(|r| r.started_at).min();
    let last_end = run_records
        .iter()
        .filter_map(|r| r.ended_at.or(r.last_activity))
        .max();
    let summary = Summary {
        runs: run_records.len(),
        first_start,
        last_end,
        elapsed_secs: first_start
            .zip(last_end)
            .map(|(a, b)| b.duration_since(a).as_secs().max(0)),
        working_secs: run_records.iter().map(|r| r.duration_secs).sum(),
        steps: steps.len(),
        steps_done: count(StepOutcome::Done),
        steps_failed: count(StepOutcome::Failed),
        steps_in_doubt: count(StepOutcome::InDoubt),
        steps_running: count(StepOutcome::Running),
        steps_rolled_back: count(StepOutcome::RolledBack),
        steps_pending: count(StepOutcome::Pending),
        attempts: attempts.len(),
        failed_attempts: attempts.iter().filter(|a| attempt_failed(a)).count(),
        rollback_attempts: attempts
            .iter()
            .filter(|a| a.kind == AttemptKind::Rollback)
            .count(),
        marks: marks.len(),
        overrides: events
            .iter()
            .filter(|e| e.kind == EventKind::Override)
            .count(),
        overruns: events
            .iter()
            .filter(|e| e.kind == EventKind::Overrun)
            .count(),
        simulated_runs: run_records
            .iter()
            .filter(|r| r.simulated_clock.is_some())
            .count(),
    };

    Ok(Report {
        format: 1,
        playbook: PlaybookInfo {
            name: pb.name.clone(),
            description: pb.description.clone(),
            path: pb.path.display().to_string(),
            sha256: pb.sha256.clone(),
            timezone: pb.timezone.clone(),
        },
        summary,
        targets: pb
            .targets
            .values()
            .map(|t| TargetInfo {
                name: t.name.clone(),
                connection: t.address(),
            })
            .collect(),
        steps,
        runs: run_records,
        other_marks,
        notifications: journal::summarize_notifications(&journal.notifications(None)?),
    })
}

fn attempt_failed(a: &Attempt) -> bool {
    matches!(
        a.state,
        AttemptState::Failed | AttemptState::TimedOut | AttemptState::Interrupted
    )
}

fn attempt_record(a: &Attempt) -> AttemptRecord {
    AttemptRecord {
        id: a.id.0,
        number: a.number,
        kind: a.kind.as_str().to_owned(),
        state: a.state.as_str().to_owned(),
        started_at: a.started_at,
        ended_at: a.ended_at,
        duration_secs: a
            .ended_at
            .map(|e| e.duration_since(a.started_at).as_secs().max(0)),
        exit_code: a.exit_code,
        message: a.message.clone(),
        failed: attempt_failed(a),
    }
}

fn final_pair(
    target: &str,
    state: &journal::PairState,
    this_host: &str,
    attempts: &[Attempt],
) -> FinalPair {
    use journal::PairState as P;
    let (exit_code, message) = match state {
        P::Failed {
            exit_code, message, ..
        } => (*exit_code, message.clone()),
        P::RollbackFailed { exit_code, .. } => (*exit_code, None),
        _ => (None, None),
    };
    // A failed rollback's message lives on its attempt only.
    let message = message.or_else(|| match state {
        P::RollbackFailed { .. } => attempts
            .iter()
            .rev()
            .find(|a| a.target == target && a.kind == AttemptKind::Rollback && attempt_failed(a))
            .and_then(|a| a.message.clone()),
        _ => None,
    });
    FinalPair {
        target: target.to_owned(),
        status: PairStatus::of(state, this_host),
        exit_code,
        message,
    }
}

/// A journal value used as a file name component. Anything that could leave the run folder
/// is refused, so a damaged or hostile journal cannot make the report read other files.
fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

fn read_output(runs_dir: &Path, run: &str, step: &str, target: &str) -> OutputTail {
    let name = format!("{step}@{target}.log");
    let mut tail = OutputTail {
        file: format!("{run}/{name}"),
        status: OutputStatus::Missing,
        error: None,
        lines: Vec::new(),
        earlier_omitted: false,
    };
    if !safe_component(run) || !safe_component(&name) || !safe_component(step) {
        return tail;
    }
    match read_tail(&runs_dir.join(run).join(&name), TAIL_LINES) {
        Ok(None) => {}
        Ok(Some((lines, omitted))) => {
            tail.status = if lines.is_empty() {
                OutputStatus::Empty
            } else {
                OutputStatus::Recorded
            };
            tail.lines = lines.iter().map(|l| parse_line(l)).collect();
            tail.earlier_omitted = omitted;
        }
        Err(e) => {
            tail.status = OutputStatus::Unreadable;
            tail.error = Some(e.to_string());
        }
    }
    tail
}

/// The last `max` lines of a file (`None` if it does not exist) and whether earlier lines were
/// left out.
fn read_tail(path: &Path, max: usize) -> io::Result<Option<(Vec<String>, bool)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    // The engine may still be appending; read no more than was there when we looked.
    file.take(len - start).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut omitted = false;
    if start > 0 && !lines.is_empty() {
        // The first line read is probably the end of a longer one.
        lines.remove(0);
        omitted = true;
    }
    if lines.len() > max {
        lines.drain(..lines.len() - max);
        omitted = true;
    }
    Ok(Some((
        lines
            .into_iter()
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
            .collect(),
        omitted,
    )))
}

/// `<RFC3339> <stream> | <text>`; a line in another shape is kept whole as text.
fn parse_line(line: &str) -> OutputLine {
    let parsed = line.split_once(' ').and_then(|(at, rest)| {
        at.parse::<Timestamp>().ok()?;
        let (stream, text) = rest.split_once('|')?;
        let stream = stream.trim();
        if stream.is_empty() || stream.contains(char::is_whitespace) {
            return None;
        }
        Some(OutputLine {
            stream: stream.to_owned(),
            text: cut(text.strip_prefix(' ').unwrap_or(text)),
        })
    });
    parsed.unwrap_or_else(|| OutputLine {
        stream: String::new(),
        text: cut(line),
    })
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_LINE_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_LINE_CHARS).collect();
    out.push_str(" …");
    out
}

// ---------------------------------------------------------------------------------------------
// Layout: one document model, two renderers.

/// A piece of inline text. Everything is escaped by the renderer.
enum Inline {
    Text(String),
    Code(String),
    Strong(String),
}

type Cell = Vec<Inline>;

struct Row {
    cells: Vec<Cell>,
    mark: RowMark,
}

/// How a table row stands out in HTML (Markdown tables cannot colour rows; there the
/// important cell is bold instead).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowMark {
    Plain,
    Fail,
    Rollback,
}

enum Block {
    Heading(u8, Vec<Inline>),
    Para(Vec<Inline>),
    /// The playbook author's description: Markdown passes it through (the author wrote it for
    /// the review document); HTML escapes it and keeps its line breaks.
    Authored(String),
    /// A two-column table without a header (key, value).
    Facts(Vec<(String, Cell)>),
    Table {
        head: Vec<&'static str>,
        rows: Vec<Row>,
    },
    /// Something a reader must not miss: failures and business-hours overrides.
    Alert(Vec<Inline>),
    /// Command output: (is stderr, line).
    Pre(Vec<(bool, String)>),
}

fn t(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}

fn code(s: impl Into<String>) -> Inline {
    Inline::Code(s.into())
}

fn strong(s: impl Into<String>) -> Inline {
    Inline::Strong(s.into())
}

/// "Mon 30 Nov 2026 23:00 CET".
fn long(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %Y %H:%M %Z")
        .to_string()
}

/// "Mon 30 Nov 23:00:05": attempts are short, seconds matter.
fn short(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %H:%M:%S")
        .to_string()
}

fn secs(s: i64) -> String {
    if s > 0 && s < 60 {
        format!("{s}s")
    } else {
        human_duration(SignedDuration::from_secs(s))
    }
}

fn attempt_state_label(a: &AttemptRecord) -> &'static str {
    match AttemptState::parse(&a.state) {
        Some(AttemptState::Running) => "no outcome recorded",
        Some(AttemptState::Succeeded) => "succeeded",
        Some(AttemptState::Failed) => "failed",
        Some(AttemptState::TimedOut) => "timed out",
        Some(AttemptState::Interrupted) => "interrupted",
        None => "unknown",
    }
}

fn event_label(kind: &str) -> &'static str {
    match EventKind::parse(kind) {
        Some(EventKind::Stopped) => "stopped for business hours",
        Some(EventKind::Waited) => "waited for the window",
        Some(EventKind::Override) => "BUSINESS-HOURS OVERRIDE",
        Some(EventKind::Overrun) => "ran into business hours",
        None => "window event",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn document(r: &Report, tz: &TimeZone) -> Vec<Block> {
    let mut d = Vec::new();
    let s = &r.summary;
    d.push(Block::Heading(
        1,
        vec![t(format!("Cutover report: {}", r.playbook.name))],
    ));
    if let Some(desc) = r.playbook.description.as_deref().map(str::trim) {
        if !desc.is_empty() {
            d.push(Block::Authored(desc.to_owned()));
        }
    }
    d.push(Block::Facts(vec![
        ("Playbook".into(), vec![code(&r.playbook.path)]),
        ("Playbook SHA-256".into(), vec![code(&r.playbook.sha256)]),
        (
            "Times shown in".into(),
            vec![t(match &r.playbook.timezone {
                Some(z) => z.clone(),
                None => "UTC".to_owned(),
            })],
        ),
    ]));

    // Summary first: most readers stop here.
    d.push(Block::Heading(2, vec![t("Summary")]));
    let mut result: Cell = Vec::new();
    let mut parts: Vec<String> = vec![format!("{} of {} done", s.steps_done, s.steps)];
    for (n, what) in [
        (s.steps_in_doubt, "in doubt"),
        (s.steps_running, "running"),
        (s.steps_rolled_back, "rolled back"),
        (s.steps_pending, "pending"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    if s.steps_failed > 0 {
        result.push(strong(format!(
            "{} failed",
            plural(s.steps_failed, "step", "steps")
        )));
        result.push(t(format!(", {}", parts.join(", "))));
    } else {
        result.push(t(format!("Steps: {}", parts.join(", "))));
    }
    let mut facts = vec![("Result".to_owned(), result)];
    facts.push((
        "Runs".into(),
        vec![t(match (s.first_start, s.last_end) {
            (Some(a), Some(b)) => format!(
                "{}: first started {}, last activity {}",
                s.runs,
                long(a, tz),
                long(b, tz)
            ),
            _ => "none recorded: the playbook was never applied".to_owned(),
        })],
    ));
    if s.simulated_runs > 0 {
        facts.push((
            "Simulated clock".into(),
            vec![strong(format!(
                "{} under RUNNER_NOW: their times are simulated",
                plural(s.simulated_runs, "run", "runs")
            ))],
        ));
    }
    facts.push((
        "Working time".into(),
        vec![t(match s.elapsed_secs {
            Some(e) => format!(
                "{} (elapsed {} from first start to last activity)",
                secs(s.working_secs),
                secs(e)
            ),
            None => secs(s.working_secs),
        })],
    ));
    let mut attempts: Cell = vec![t(format!("{}", s.attempts))];
    if s.failed_attempts > 0 {
        attempts.push(t(", "));
        attempts.push(strong(format!("{} failed", s.failed_attempts)));
    }
    if s.rollback_attempts > 0 {
        attempts.push(t(format!(
            ", {}",
            plural(s.rollback_attempts, "rollback", "rollbacks")
        )));
    }
    facts.push(("Attempts".into(), attempts));
    facts.push(("Operator decisions".into(), vec![t(s.marks.to_string())]));
    facts.push((
        "Business-hours overrides".into(),
        vec![if s.overrides > 0 {
            strong(s.overrides.to_string())
        } else {
            t("0")
        }],
    ));
    if s.overruns > 0 {
        facts.push((
            "Ran into business hours".into(),
            vec![strong(s.overruns.to_string())],
        ));
    }
    d.push(Block::Facts(facts));
    // A rehearsal's times must not pass for a real night's.
    for run in &r.runs {
        if let Some(c) = &run.simulated_clock {
            d.push(Block::Alert(simulated_inlines(run, c, tz)));
        }
    }
    // Overrides and failures stand out at the top, not only deep in the run they belong to.
    for run in &r.runs {
        for e in run.events.iter().filter(|e| e.kind == "override") {
            d.push(Block::Alert(override_inlines(run, e, tz)));
        }
    }
    for step in r.steps.iter().filter(|s| s.outcome == StepOutcome::Failed) {
        for p in step.pairs.iter().filter(|p| p.status.is_failure()) {
            let mut a = vec![
                strong(format!("Step {} {}", step.number, p.status.label())),
                t(" "),
                code(&step.id),
                t(" on "),
                code(&p.target),
            ];
            if let Some(c) = p.exit_code {
                a.push(t(format!(", exit code {c}")));
            }
            if let Some(m) = &p.message {
                a.push(t(format!(": {m}")));
            }
            d.push(Block::Alert(a));
        }
    }

    d.push(Block::Heading(2, vec![t("Final state")]));
    let mut rows = Vec::new();
    for step in &r.steps {
        for (i, p) in step.pairs.iter().enumerate() {
            let first = i == 0;
            let fail = p.status.is_failure() || p.status == PairStatus::InDoubt;
            rows.push(Row {
                cells: vec![
                    if first {
                        vec![t(step.number.to_string())]
                    } else {
                        vec![]
                    },
                    if first {
                        titled(&step.title, &step.id)
                    } else {
                        vec![]
                    },
                    vec![code(&p.target)],
                    vec![if fail {
                        strong(p.status.label())
                    } else {
                        t(p.status.label())
                    }],
                    vec![t(p.exit_code.map(|c| c.to_string()).unwrap_or_default())],
                    vec![t(p.message.clone().unwrap_or_default())],
                ],
                mark: if fail { RowMark::Fail } else { RowMark::Plain },
            });
        }
    }
    d.push(Block::Table {
        head: vec!["#", "Step", "Target", "State", "Exit code", "Message"],
        rows,
    });

    if !r.targets.is_empty() {
        d.push(Block::Heading(2, vec![t("Targets")]));
        d.push(Block::Table {
            head: vec!["Target", "Connection"],
            rows: r
                .targets
                .iter()
                .map(|tg| Row {
                    cells: vec![vec![code(&tg.name)], vec![t(&tg.connection)]],
                    mark: RowMark::Plain,
                })
                .collect(),
        });
    }

    for run in &r.runs {
        run_blocks(&mut d, run, r.runs.len(), tz);
    }

    if !r.other_marks.is_empty() {
        d.push(Block::Heading(
            2,
            vec![t("Operator decisions outside a run")],
        ));
        d.push(marks_table(&r.other_marks, tz));
    }

    if !r.notifications.is_empty() {
        let delivered = r
            .notifications
            .iter()
            .filter(|n| n.outcome == "delivered")
            .count();
        d.push(Block::Heading(2, vec![t("Notifications")]));
        d.push(Block::Para(vec![t(format!(
            "{delivered} of {} delivered.",
            r.notifications.len()
        ))]));
        d.push(Block::Table {
            head: vec!["Time", "Event", "Sink", "Outcome", "Tries", "Detail"],
            rows: r
                .notifications
                .iter()
                .map(|n| {
                    let fail = n.outcome != "delivered";
                    Row {
                        cells: vec![
                            vec![t(short(n.at, tz))],
                            vec![code(&n.event)],
                            vec![t(&n.sink)],
                            vec![if fail {
                                strong(&n.outcome)
                            } else {
                                t(&n.outcome)
                            }],
                            vec![t(n.tries.to_string())],
                            vec![t(&n.detail)],
                        ],
                        mark: if fail { RowMark::Fail } else { RowMark::Plain },
                    }
                })
                .collect(),
        });
    }
    d
}

/// "Stop the shares `stop-shares`", or just the id when the step has no name.
fn titled(title: &str, id: &str) -> Cell {
    if title == id {
        vec![code(id)]
    } else {
        vec![t(format!("{title} ")), code(id)]
    }
}

fn simulated_inlines(run: &RunRecord, c: &crate::clock::Simulated, tz: &TimeZone) -> Vec<Inline> {
    let real = c
        .real_start
        .map(|r| format!(" It really started {}.", long(r, tz)))
        .unwrap_or_default();
    vec![
        strong("Simulated clock"),
        t(format!(" in run {} (", run.number)),
        code(&run.id),
        t(format!(
            "): it ran with {}, so the times recorded for it are simulated, not when the work happened.{real}",
            c.setting()
        )),
    ]
}

fn override_inlines(run: &RunRecord, e: &EventRecord, tz: &TimeZone) -> Vec<Inline> {
    let mut a = vec![
        strong("Business-hours override"),
        t(format!(" at {} (run {}", long(e.at, tz), run.number)),
    ];
    if let Some(step) = &e.step {
        a.push(t(", step "));
        a.push(code(step));
    }
    a.push(t("): "));
    a.extend(with_code_spans(&e.detail));
    a
}

/// Text in which `backticked` words are code (event details name steps that way): those
/// become code spans, so that a document shows `copy-data` as code and not as escaped
/// backticks. An unpaired backtick stays text.
fn with_code_spans(text: &str) -> Vec<Inline> {
    let parts: Vec<&str> = text.split('`').collect();
    let paired = parts.len() % 2 == 1;
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if i % 2 == 1 && (paired || !last) && !part.is_empty() {
            out.push(code(*part));
        } else if i % 2 == 1 {
            out.push(t(format!("`{part}")));
        } else if !part.is_empty() {
            out.push(t(*part));
        }
    }
    out
}

fn run_blocks(d: &mut Vec<Block>, run: &RunRecord, total: usize, tz: &TimeZone) {
    d.push(Block::Heading(
        2,
        vec![t(format!(
            "Run {} of {total}: {} by {} on {}{}",
            run.number,
            run.command,
            run.user,
            run.host,
            if run.simulated_clock.is_some() {
                " (simulated clock)"
            } else {
                ""
            }
        ))],
    ));
    let ended = match (run.ended_at, run.last_activity) {
        (Some(e), _) => vec![t(long(e, tz))],
        (None, Some(l)) => vec![
            strong("not recorded"),
            t(format!(
                " (the runner stopped without closing the run, or is still running; last activity {})",
                long(l, tz)
            )),
        ],
        (None, None) => vec![strong("not recorded")],
    };
    let outcome = match &run.outcome {
        Some(o) if run.had_failures => vec![strong(o)],
        Some(o) => vec![t(o)],
        None => vec![strong("none recorded")],
    };
    let mut facts: Vec<(String, Cell)> = Vec::new();
    if let Some(c) = &run.simulated_clock {
        facts.push(("Clock".into(), simulated_inlines(run, c, tz)));
    }
    facts.extend(vec![
        ("Run id".into(), vec![code(&run.id)]),
        (
            "By".into(),
            vec![t(format!("{} on {}", run.user, run.host))],
        ),
        ("Started".into(), vec![t(long(run.started_at, tz))]),
        ("Ended".into(), ended),
        ("Duration".into(), vec![t(secs(run.duration_secs))]),
        ("Outcome".into(), outcome),
        ("Runner version".into(), vec![t(&run.runner_version)]),
    ]);
    d.push(Block::Facts(facts));

    if !run.events.is_empty() {
        d.push(Block::Heading(3, vec![t("Business-hours window")]));
        let rows = run
            .events
            .iter()
            .map(|e| {
                let is_override = e.kind == "override";
                Row {
                    cells: vec![
                        vec![t(short(e.at, tz))],
                        vec![if is_override {
                            strong(event_label(&e.kind))
                        } else {
                            t(event_label(&e.kind))
                        }],
                        e.step.as_deref().map(|s| vec![code(s)]).unwrap_or_default(),
                        with_code_spans(&e.detail),
                    ],
                    mark: if is_override || e.kind == "overrun" {
                        RowMark::Fail
                    } else {
                        RowMark::Plain
                    },
                }
            })
            .collect();
        d.push(Block::Table {
            head: vec!["When", "Decision", "Step", "Detail"],
            rows,
        });
    }

    for step in &run.steps {
        let mut heading = vec![t("Step "), code(&step.id)];
        if step.title != step.id {
            heading.push(t(format!(": {}", step.title)));
        }
        d.push(Block::Heading(3, heading));
        let targets: Vec<&str> = step.pairs.iter().map(|p| p.target.as_str()).collect();
        d.push(Block::Para(vec![t(format!(
            "Targets: {}",
            targets.join(", ")
        ))]));
        let mut rows = Vec::new();
        for p in &step.pairs {
            for a in &p.attempts {
                let fail = a.failed || a.state == "running";
                let label = attempt_state_label(a);
                rows.push(Row {
                    cells: vec![
                        vec![code(&p.target)],
                        vec![t(a.number.to_string())],
                        vec![t(&a.kind)],
                        vec![t(short(a.started_at, tz))],
                        vec![t(a.duration_secs.map(secs).unwrap_or_default())],
                        vec![if fail { strong(label) } else { t(label) }],
                        vec![t(a.exit_code.map(|c| c.to_string()).unwrap_or_default())],
                        vec![t(a.message.clone().unwrap_or_default())],
                    ],
                    mark: if fail {
                        RowMark::Fail
                    } else if a.kind == AttemptKind::Rollback.as_str() {
                        RowMark::Rollback
                    } else {
                        RowMark::Plain
                    },
                });
            }
        }
        d.push(Block::Table {
            head: vec![
                "Target",
                "Try",
                "Kind",
                "Started",
                "Duration",
                "Result",
                "Exit code",
                "Message",
            ],
            rows,
        });
        for p in &step.pairs {
            let o = &p.output;
            let mut head = vec![t("Output on "), code(&p.target)];
            match o.status {
                OutputStatus::Recorded => {
                    head.push(t(if o.earlier_omitted {
                        format!(" (last {} lines):", o.lines.len())
                    } else {
                        ":".to_owned()
                    }));
                    d.push(Block::Para(head));
                    d.push(Block::Pre(
                        o.lines
                            .iter()
                            .map(|l| {
                                let text = if l.stream.is_empty() {
                                    l.text.clone()
                                } else {
                                    format!("{} | {}", l.stream, l.text)
                                };
                                (l.stream == "stderr", text)
                            })
                            .collect(),
                    ));
                }
                OutputStatus::Empty => {
                    head.push(t(": the command printed nothing."));
                    d.push(Block::Para(head));
                }
                OutputStatus::Missing => {
                    head.push(t(": no output recorded."));
                    d.push(Block::Para(head));
                }
                OutputStatus::Unreadable => {
                    head.push(t(format!(
                        ": the output file {} could not be read ({}).",
                        o.file,
                        o.error.as_deref().unwrap_or("unknown error")
                    )));
                    d.push(Block::Para(head));
                }
            }
        }
    }

    if !run.marks.is_empty() {
        d.push(Block::Heading(3, vec![t("Operator decisions")]));
        d.push(marks_table(&run.marks, tz));
    }
}

fn marks_table(marks: &[MarkRecord], tz: &TimeZone) -> Block {
    Block::Table {
        head: vec!["When", "Step", "Target", "Decision", "By", "Reason"],
        rows: marks
            .iter()
            .map(|m| Row {
                cells: vec![
                    vec![t(short(m.at, tz))],
                    vec![code(&m.step)],
                    vec![code(&m.target)],
                    vec![strong(&m.decision)],
                    vec![t(format!("{} on {}", m.user, m.host))],
                    vec![t(m.reason.clone().unwrap_or_default())],
                ],
                mark: RowMark::Plain,
            })
            .collect(),
    }
}

/// Control characters from command output (escape sequences, NULs) mean nothing in a document
/// and some are invalid in HTML; they become `?`. Tabs and line breaks stay.
fn visible(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

// --- Markdown ---

/// Escapes text so Markdown shows it literally: no emphasis, links, HTML or table breaks
/// from journal text. Line breaks become `<br>` so table rows stay on one line.
///
/// Characters that are only special in some positions are escaped only there, so that
/// `C:\data` and `file_not_found` stay readable in the raw file too.
fn md_text(s: &str) -> String {
    let chars: Vec<char> = visible(s).chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(i + 1).copied();
        let escape = match c {
            '`' | '*' | '[' | ']' | '<' | '>' | '|' | '~' => true,
            // A backslash only escapes punctuation.
            '\\' => next.is_some_and(|n| n.is_ascii_punctuation()),
            // Intraword underscores never make emphasis.
            '_' => {
                !(prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric))
            }
            // Only an entity-like `&name;` or `&#..;` would be decoded.
            '&' => {
                let name = chars[i + 1..]
                    .iter()
                    .take_while(|n| n.is_ascii_alphanumeric() || **n == '#')
                    .count();
                name > 0 && chars.get(i + 1 + name) == Some(&';')
            }
            _ => false,
        };
        match c {
            '\r' => {}
            '\n' => out.push_str("<br>"),
            c => {
                if escape {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// A code span that survives backticks and pipes in its content.
fn md_code(s: &str) -> String {
    let s = visible(s).replace(['\n', '\r'], " ").replace('|', "\\|");
    let longest = longest_run(&s, '`');
    let ticks = "`".repeat(longest + 1);
    if longest > 0 || s.starts_with(' ') || s.ends_with(' ') {
        format!("{ticks} {s} {ticks}")
    } else {
        format!("{ticks}{s}{ticks}")
    }
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        cur = if c == ch { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

fn md_inlines(parts: &[Inline]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Inline::Text(s) => out.push_str(&md_text(s)),
            Inline::Code(s) => out.push_str(&md_code(s)),
            Inline::Strong(s) if s.is_empty() => {}
            Inline::Strong(s) => {
                let _ = write!(out, "**{}**", md_text(s));
            }
        }
    }
    out
}

fn render_markdown(doc: &[Block]) -> String {
    let mut o = String::new();
    for b in doc {
        match b {
            Block::Heading(level, parts) => {
                let _ = writeln!(
                    o,
                    "{} {}\n",
                    "#".repeat(usize::from(*level)),
                    md_inlines(parts)
                );
            }
            Block::Para(parts) => {
                let _ = writeln!(o, "{}\n", md_inlines(parts));
            }
            Block::Authored(text) => {
                let _ = writeln!(o, "{text}\n");
            }
            Block::Facts(facts) => {
                let _ = writeln!(o, "| Item | Value |\n|---|---|");
                for (k, v) in facts {
                    let _ = writeln!(o, "| {} | {} |", md_text(k), md_inlines(v));
                }
                o.push('\n');
            }
            Block::Table { head, rows } => {
                let _ = writeln!(o, "| {} |", head.join(" | "));
                let _ = writeln!(o, "|{}", "---|".repeat(head.len()));
                for r in rows {
                    let cells: Vec<String> = r.cells.iter().map(|c| md_inlines(c)).collect();
                    let _ = writeln!(o, "| {} |", cells.join(" | "));
                }
                o.push('\n');
            }
            Block::Alert(parts) => {
                let _ = writeln!(o, "> {}\n", md_inlines(parts));
            }
            Block::Pre(lines) => {
                let body: Vec<String> = lines.iter().map(|(_, l)| visible(l)).collect();
                let longest = body.iter().map(|l| longest_run(l, '`')).max().unwrap_or(0);
                let fence = "`".repeat(longest.max(2) + 1);
                let _ = writeln!(o, "{fence}text");
                for l in &body {
                    let _ = writeln!(o, "{l}");
                }
                let _ = writeln!(o, "{fence}\n");
            }
        }
    }
    o
}

// --- HTML ---

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_inlines(parts: &[Inline]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Inline::Text(s) => out.push_str(&html_escape(&visible(s)).replace('\n', "<br>")),
            Inline::Code(s) => {
                let _ = write!(out, "<code>{}</code>", html_escape(&visible(s)));
            }
            Inline::Strong(s) => {
                let _ = write!(out, "<strong>{}</strong>", html_escape(&visible(s)));
            }
        }
    }
    out
}

const CSS: &str = "\
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:75em;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #444;padding-bottom:.2em}
h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
table.facts td:first-child{font-weight:600;background:#f7f7f7}
tr.fail td{background:#fde8e8}
tr.rollback td{background:#fff4db}
code{font-family:Consolas,Menlo,monospace;background:#f3f3f3;padding:0 .2em}
pre{font-family:Consolas,Menlo,monospace;background:#f6f6f6;border:1px solid #ddd;padding:.6em;overflow-x:auto;white-space:pre-wrap}
pre .stderr{color:#a00}
.alert{border-left:6px solid #c00;background:#fde8e8;padding:.5em 1em;margin:.6em 0}
.authored{white-space:pre-wrap}
@media print{body{max-width:none}}
";

fn render_html(title: &str, doc: &[Block]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Cutover report: {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>",
        html_escape(&visible(title))
    );
    for b in doc {
        match b {
            Block::Heading(level, parts) => {
                let _ = writeln!(o, "<h{level}>{}</h{level}>", html_inlines(parts));
            }
            Block::Para(parts) => {
                let _ = writeln!(o, "<p>{}</p>", html_inlines(parts));
            }
            Block::Authored(text) => {
                let _ = writeln!(
                    o,
                    "<p class=\"authored\">{}</p>",
                    html_escape(&visible(text))
                );
            }
            Block::Facts(facts) => {
                let _ = writeln!(o, "<table class=\"facts\">");
                for (k, v) in facts {
                    let _ = writeln!(
                        o,
                        "<tr><td>{}</td><td>{}</td></tr>",
                        html_escape(k),
                        html_inlines(v)
                    );
                }
                let _ = writeln!(o, "</table>");
            }
            Block::Table { head, rows } => {
                let _ = write!(o, "<table>\n<tr>");
                for h in head {
                    let _ = write!(o, "<th>{}</th>", html_escape(h));
                }
                let _ = writeln!(o, "</tr>");
                for r in rows {
                    let class = match r.mark {
                        RowMark::Plain => "",
                        RowMark::Fail => " class=\"fail\"",
                        RowMark::Rollback => " class=\"rollback\"",
                    };
                    let _ = write!(o, "<tr{class}>");
                    for c in &r.cells {
                        let _ = write!(o, "<td>{}</td>", html_inlines(c));
                    }
                    let _ = writeln!(o, "</tr>");
                }
                let _ = writeln!(o, "</table>");
            }
            Block::Alert(parts) => {
                let _ = writeln!(o, "<div class=\"alert\">{}</div>", html_inlines(parts));
            }
            Block::Pre(lines) => {
                let _ = write!(o, "<pre>");
                for (stderr, l) in lines {
                    let l = html_escape(&visible(l));
                    if *stderr {
                        let _ = writeln!(o, "<span class=\"stderr\">{l}</span>");
                    } else {
                        let _ = writeln!(o, "{l}");
                    }
                }
                let _ = writeln!(o, "</pre>");
            }
        }
    }
    let _ = writeln!(o, "</body>\n</html>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_split_into_stream_and_text() {
        let l = parse_line("2026-11-30T23:00:01Z stdout | copied 3 files | done");
        assert_eq!(l.stream, "stdout");
        assert_eq!(l.text, "copied 3 files | done");
        let l = parse_line("2026-11-30T23:00:01Z stderr |");
        assert_eq!((l.stream.as_str(), l.text.as_str()), ("stderr", ""));
        let l = parse_line("not a log line | at all");
        assert_eq!(l.stream, "");
        assert_eq!(l.text, "not a log line | at all");
    }

    #[test]
    fn long_lines_are_cut() {
        let l = parse_line(&format!(
            "2026-11-30T23:00:01Z stdout | {}",
            "x".repeat(5000)
        ));
        assert_eq!(l.text.chars().count(), MAX_LINE_CHARS + 2);
    }

    #[test]
    fn tail_reads_only_the_end_of_a_big_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let mut text = String::new();
        let mut n = 0;
        while (text.len() as u64) < TAIL_BYTES * 2 {
            let _ = writeln!(text, "2026-11-30T23:00:01Z stdout | line {n}");
            n += 1;
        }
        std::fs::write(&path, &text).unwrap();
        let (lines, omitted) = read_tail(&path, 3).unwrap().unwrap();
        assert!(omitted);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].ends_with(&format!("line {}", n - 1)));
        assert!(lines[0].ends_with(&format!("line {}", n - 3)));

        assert!(read_tail(&dir.path().join("none.log"), 3)
            .unwrap()
            .is_none());
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_tail(&path, 3).unwrap(), Some((vec![], false)));
    }

    #[test]
    fn path_components_from_the_journal_cannot_escape() {
        assert!(safe_component("migrate@dc1.log"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "a\0b"] {
            assert!(!safe_component(bad), "{bad:?}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(
            html_escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(md_text("a|b*c\nd"), "a\\|b\\*c<br>d");
        assert_eq!(
            md_text(r"C:\data file_not_found _x_"),
            r"C:\data file_not_found \_x\_"
        );
        assert_eq!(md_text(r"\* R&D &amp;"), r"\\\* R&D \&amp;");
        assert_eq!(md_code("a`b"), "`` a`b ``");
        assert_eq!(md_code("id"), "`id`");
        assert_eq!(visible("a\x1b[0mb\tc"), "a?[0mb\tc");
    }
}
