//! `runner report`: the record of a cutover for the customer.
//!
//! Built from the playbook, the journal and the per-pair output logs in the run folders; it
//! reads and never writes. The content is assembled once into [`Report`] (which is also the
//! JSON form) and then laid out as a small document model, so Markdown and HTML show the same
//! things and all escaping happens in one place per format.
//!
//! Here: how the record is collected; `record` is the record ([`Report`]), `log` reads the
//! output logs, `document` lays the record out (`runs` each run), `markdown` and `html` write
//! that layout; JSON is the record serialized as is.
//!
//! Secrets: the engine masks everything it writes to the journal and the logs, and this module
//! adds nothing that could hold one: targets are shown by address only (never credentials or
//! credential references), and run arguments are left out.

mod document;
mod html;
mod log;
mod markdown;
mod record;
mod runs;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use jiff::Timestamp;

use crate::journal::{self, Attempt, AttemptKind, AttemptState, EventKind, Journal, JournalError};
use crate::playbook::Playbook;
use crate::status::PairStatus;
use document::document;
pub use html::html_escape;
use html::render_html;
use log::read_output;
use markdown::render_markdown;

/// Output lines shown per pair and run.
pub const TAIL_LINES: usize = 15;
/// Sort rank of steps and targets the playbook does not name (any larger than a real index).
const UNKNOWN: usize = usize::MAX / 2;

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

pub use record::{
    AttemptRecord, EventRecord, FinalPair, MarkRecord, OutputLine, OutputStatus, OutputTail,
    PlaybookInfo, Report, RunPair, RunRecord, RunStep, StepOutcome, StepRecord, Summary,
    TargetInfo,
};

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
    let steps = step_records(pb, &pairs, &attempts);
    let run_ids: HashMap<&str, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.0.as_str(), i))
        .collect();
    let mut run_records = run_records(&runs);
    let other_marks = add_marks_and_events(&mut run_records, &run_ids, &marks, &events);
    let grouped = group_attempts(pb, &mut run_records, &run_ids, &attempts);
    add_attempts(pb, &mut run_records, grouped, runs_dir);
    let summary = summary(&steps, &run_records, &attempts, &marks, &events);
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

/// Each step of the playbook with its pairs' final states.
fn step_records(
    pb: &Playbook,
    pairs: &[(String, String, journal::PairState)],
    attempts: &[Attempt],
) -> Vec<StepRecord> {
    // Only decides whether a running attempt could still be alive; an unknown host name
    // makes every running attempt read as in doubt, which is the cautious reading.
    let this_host = journal::host_name().unwrap_or_default();

    let states: HashMap<(&str, &str), &journal::PairState> = pairs
        .iter()
        .map(|(s, t, st)| ((s.as_str(), t.as_str()), st))
        .collect();
    pb.steps
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
                    final_pair(t, state, &this_host, attempts)
                })
                .collect();
            StepRecord {
                number: step.index + 1,
                id: step.id.clone(),
                title: step.title().to_owned(),
                phase: step.phase.clone(),
                outcome: StepOutcome::of(&pairs),
                pairs,
                estimate_secs: step.estimate.map(|e| e.as_secs()),
                actual_secs: actual_secs(&step.id, attempts),
            }
        })
        .collect()
}

/// One record per run, before its marks, events and attempts are added.
fn run_records(runs: &[journal::Run]) -> Vec<RunRecord> {
    runs.iter()
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
        .collect()
}

/// Something happened in the run at `t`.
fn touch(rec: &mut RunRecord, t: Timestamp) {
    rec.last_activity = Some(rec.last_activity.map_or(t, |l| l.max(t)));
}

/// Adds each mark and event to its run; returns the marks made outside a run.
fn add_marks_and_events(
    run_records: &mut [RunRecord],
    run_ids: &HashMap<&str, usize>,
    marks: &[journal::Mark],
    events: &[journal::Event],
) -> Vec<MarkRecord> {
    let mut other_marks = Vec::new();
    for m in marks {
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
    for e in events {
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
    other_marks
}

/// Per run: (step rank, target rank, step, target) -> attempts.
type ByPair<'a> = BTreeMap<(usize, usize, &'a str, &'a str), Vec<&'a Attempt>>;

/// Attempts grouped per run, then per step and target in playbook order; steps and targets
/// the playbook no longer names go last, in the order they appear.
fn group_attempts<'a>(
    pb: &Playbook,
    run_records: &mut [RunRecord],
    run_ids: &HashMap<&str, usize>,
    attempts: &'a [Attempt],
) -> Vec<ByPair<'a>> {
    let step_pos: HashMap<&str, usize> = pb
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    // Positions of what the playbook does not name: after everything it does, in the order
    // of first appearance.
    let mut first_seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut grouped: Vec<ByPair<'_>> = vec![BTreeMap::new(); run_records.len()];
    for a in attempts {
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
    grouped
}

/// Adds each run's grouped attempts with their output, and the run's duration.
fn add_attempts(
    pb: &Playbook,
    run_records: &mut [RunRecord],
    grouped: Vec<ByPair<'_>>,
    runs_dir: &Path,
) {
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
                    title: pb
                        .steps
                        .iter()
                        .find(|s| s.id == step_id)
                        .map_or(step_id, |s| s.title())
                        .to_owned(),
                    pairs: vec![pair],
                }),
            }
        }
        let end = rec.ended_at.or(rec.last_activity).unwrap_or(rec.started_at);
        rec.duration_secs = end.duration_since(rec.started_at).as_secs().max(0);
    }
}

/// The figures at the top of the report.
fn summary(
    steps: &[StepRecord],
    run_records: &[RunRecord],
    attempts: &[Attempt],
    marks: &[journal::Mark],
    events: &[journal::Event],
) -> Summary {
    let count = |o: StepOutcome| steps.iter().filter(|s| s.outcome == o).count();
    let first_start = run_records.iter().map(|r| r.started_at).min();
    let last_end = run_records
        .iter()
        .filter_map(|r| r.ended_at.or(r.last_activity))
        .max();
    Summary {
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
    }
}

/// Each target's last succeeded attempt of the step that moved it forward, the longest.
fn actual_secs(step: &str, attempts: &[Attempt]) -> Option<i64> {
    let mut last: HashMap<&str, i64> = HashMap::new();
    for a in attempts.iter().filter(|a| {
        a.step_id == step
            && a.state == journal::AttemptState::Succeeded
            && !matches!(
                a.kind,
                journal::AttemptKind::Check | journal::AttemptKind::Rollback
            )
    }) {
        if let Some(end) = a.ended_at {
            last.insert(&a.target, a.started_at.duration_until(end).as_secs().max(0));
        }
    }
    last.into_values().max()
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

#[cfg(test)]
mod tests {
    use super::document::visible;
    use super::html_escape;
    use super::markdown::{md_code, md_text};

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
