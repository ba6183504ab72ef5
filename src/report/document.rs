//! The document model: the report laid out once as headings, paragraphs, tables, alerts and
//! output, for the renderers in `markdown` and `html` (which do all escaping).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::runs::run_blocks;
use super::{AttemptRecord, EventRecord, MarkRecord, Report, RunRecord, StepOutcome, Summary};
use crate::duration::human_duration;
use crate::journal::{AttemptState, EventKind};
use crate::status::PairStatus;

/// A piece of inline text. Everything is escaped by the renderer.
pub(super) enum Inline {
    Text(String),
    Code(String),
    Strong(String),
}

pub(super) type Cell = Vec<Inline>;

pub(super) struct Row {
    pub(super) cells: Vec<Cell>,
    pub(super) mark: RowMark,
}

/// How a table row stands out in HTML (Markdown tables cannot colour rows; there the
/// important cell is bold instead).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RowMark {
    Plain,
    Fail,
    Rollback,
}

pub(super) enum Block {
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

pub(super) fn t(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}

pub(super) fn code(s: impl Into<String>) -> Inline {
    Inline::Code(s.into())
}

pub(super) fn strong(s: impl Into<String>) -> Inline {
    Inline::Strong(s.into())
}

/// "Mon 30 Nov 2026 23:00 CET".
pub(super) fn long(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %Y %H:%M %Z")
        .to_string()
}

/// "Mon 30 Nov 23:00:05": attempts are short, seconds matter.
pub(super) fn short(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %H:%M:%S")
        .to_string()
}

pub(super) fn secs(s: i64) -> String {
    if s > 0 && s < 60 {
        format!("{s}s")
    } else {
        human_duration(SignedDuration::from_secs(s))
    }
}

pub(super) fn attempt_state_label(a: &AttemptRecord) -> &'static str {
    match AttemptState::parse(&a.state) {
        Some(AttemptState::Running) => "no outcome recorded",
        Some(AttemptState::Succeeded) => "succeeded",
        Some(AttemptState::Failed) => "failed",
        Some(AttemptState::TimedOut) => "timed out",
        Some(AttemptState::Interrupted) => "interrupted",
        None => "unknown",
    }
}

pub(super) fn event_label(kind: &str) -> &'static str {
    match EventKind::parse(kind) {
        Some(EventKind::Stopped) => "stopped for business hours",
        Some(EventKind::Waited) => "waited for the window",
        Some(EventKind::Override) => "BUSINESS-HOURS OVERRIDE",
        Some(EventKind::Overrun) => "ran into business hours",
        None => "window event",
    }
}

pub(super) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(super) fn document(r: &Report, tz: &TimeZone) -> Vec<Block> {
    let mut d = Vec::new();
    title(&mut d, r);
    summary(&mut d, r, tz);
    alerts(&mut d, r, tz);
    final_state(&mut d, r);
    estimates(&mut d, r);
    targets(&mut d, r);
    for run in &r.runs {
        run_blocks(&mut d, run, r.runs.len(), tz);
    }
    other_marks(&mut d, r, tz);
    notifications(&mut d, r, tz);
    d
}

/// The title, the playbook's description and where it is.
fn title(d: &mut Vec<Block>, r: &Report) {
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
}

/// The summary: the result, the runs, the working time, attempts and decisions.
fn summary(d: &mut Vec<Block>, r: &Report, tz: &TimeZone) {
    let s = &r.summary;
    // Summary first: most readers stop here.
    d.push(Block::Heading(2, vec![t("Summary")]));
    let mut facts = vec![("Result".to_owned(), result_cell(s))];
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
    facts.push(("Attempts".into(), attempts_cell(s)));
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
}

/// "2 steps failed, 5 of 8 done, 1 pending", or "Steps: 8 of 8 done".
fn result_cell(s: &Summary) -> Cell {
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
    result
}

/// How many attempts, how many failed, how many were rollbacks.
fn attempts_cell(s: &Summary) -> Cell {
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
    attempts
}

/// What must not be missed: simulated clocks, business-hours overrides, failed steps.
fn alerts(d: &mut Vec<Block>, r: &Report, tz: &TimeZone) {
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
}

/// Each pair's final state.
fn final_state(d: &mut Vec<Block>, r: &Report) {
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
}

/// What each step was expected to take and what it took, to correct the procedure.
fn estimates(d: &mut Vec<Block>, r: &Report) {
    d.push(Block::Heading(2, vec![t("Estimates against actual")]));
    d.push(Block::Table {
        head: vec!["#", "Step", "Estimate", "Actual", "Actual / estimate"],
        rows: r
            .steps
            .iter()
            .map(|step| {
                let ratio = match (step.estimate_secs, step.actual_secs) {
                    (Some(e), Some(a)) if e > 0 => format!("{:.1}x", a as f64 / e as f64),
                    _ => String::new(),
                };
                let off = match (step.estimate_secs, step.actual_secs) {
                    (Some(e), Some(a)) => a > e.saturating_mul(2) || a.saturating_mul(2) < e,
                    _ => false,
                };
                Row {
                    cells: vec![
                        vec![t(step.number.to_string())],
                        titled(&step.title, &step.id),
                        vec![t(step
                            .estimate_secs
                            .map(secs)
                            .unwrap_or_else(|| "none".into()))],
                        vec![t(step
                            .actual_secs
                            .map(secs)
                            .unwrap_or_else(|| "not done".into()))],
                        vec![if off { strong(ratio) } else { t(ratio) }],
                    ],
                    mark: RowMark::Plain,
                }
            })
            .collect(),
    });
}

/// The targets and how they were reached.
fn targets(d: &mut Vec<Block>, r: &Report) {
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
}

/// Operator decisions made outside a run.
fn other_marks(d: &mut Vec<Block>, r: &Report, tz: &TimeZone) {
    if !r.other_marks.is_empty() {
        d.push(Block::Heading(
            2,
            vec![t("Operator decisions outside a run")],
        ));
        d.push(marks_table(&r.other_marks, tz));
    }
}

/// The notifications sent, and how each went.
fn notifications(d: &mut Vec<Block>, r: &Report, tz: &TimeZone) {
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
}

/// "Stop the shares `stop-shares`", or just the id when the step has no name.
pub(super) fn titled(title: &str, id: &str) -> Cell {
    if title == id {
        vec![code(id)]
    } else {
        vec![t(format!("{title} ")), code(id)]
    }
}

pub(super) fn simulated_inlines(
    run: &RunRecord,
    c: &crate::clock::Simulated,
    tz: &TimeZone,
) -> Vec<Inline> {
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

pub(super) fn override_inlines(run: &RunRecord, e: &EventRecord, tz: &TimeZone) -> Vec<Inline> {
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
pub(super) fn with_code_spans(text: &str) -> Vec<Inline> {
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

pub(super) fn marks_table(marks: &[MarkRecord], tz: &TimeZone) -> Block {
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
pub(super) fn visible(s: &str) -> String {
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
