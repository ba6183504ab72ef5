//! Each run of the report laid out: its facts, its business-hours decisions, every attempt
//! and the output of each pair.

use jiff::tz::TimeZone;

use super::document::{
    attempt_state_label, code, event_label, long, marks_table, secs, short, simulated_inlines,
    strong, t, with_code_spans, Block, Cell, Row, RowMark,
};
use super::{OutputStatus, RunPair, RunRecord, RunStep};
use crate::journal::AttemptKind;

pub(super) fn run_blocks(d: &mut Vec<Block>, run: &RunRecord, total: usize, tz: &TimeZone) {
    run_facts(d, run, total, tz);
    window_events(d, run, tz);
    for step in &run.steps {
        step_attempts(d, step, tz);
        for p in &step.pairs {
            output(d, p);
        }
    }
    if !run.marks.is_empty() {
        d.push(Block::Heading(3, vec![t("Operator decisions")]));
        d.push(marks_table(&run.marks, tz));
    }
}

/// The run's heading and facts: who, when, how long, how it ended.
fn run_facts(d: &mut Vec<Block>, run: &RunRecord, total: usize, tz: &TimeZone) {
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
}

/// The run's business-hours decisions (waits, stops, overrides, overruns).
fn window_events(d: &mut Vec<Block>, run: &RunRecord, tz: &TimeZone) {
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
}

/// A step of the run: its targets and every attempt on each.
fn step_attempts(d: &mut Vec<Block>, step: &RunStep, tz: &TimeZone) {
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
}

/// The last lines a pair's command printed, or why there are none.
fn output(d: &mut Vec<Block>, p: &RunPair) {
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
