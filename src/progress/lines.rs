//! The plain text of the engine's events: one line each, shared by the plain output and the
//! lines printed above the bars.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::engine::event::{ActionKind, AttemptOutcome, Event};

fn secs(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if d.as_secs() >= 60 {
        crate::duration::human_duration(jiff::SignedDuration::from_secs(d.as_secs() as i64))
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Whether plain output shows a `Waiting` countdown (one comes about every 30 s): every ten
/// minutes while an hour or more is left, every five minutes within the hour, every minute
/// within the last ten.
pub(super) fn countdown_line_due(remaining_secs: i64) -> bool {
    match remaining_secs {
        r if r >= 3600 => r % 600 >= 570,
        r if r >= 600 => r % 300 >= 270,
        r => r % 60 >= 30,
    }
}

/// The human text for an event, or None if this event shows nothing by itself.
pub(super) fn line(e: &Event, quiet: bool, tz: &TimeZone) -> Option<String> {
    match e {
        Event::RunStarted { .. }
        | Event::OperatorNeeded { .. }
        | Event::Notice { .. }
        | Event::RunFinished { .. }
        | Event::SimulatedClock { .. } => run_line(e, quiet, tz),
        Event::StepStarted { .. }
        | Event::PairSkipped { .. }
        | Event::AttemptStarted { .. }
        | Event::Output { .. }
        | Event::AttemptFinished { .. }
        | Event::InDoubt { .. }
        | Event::Overrun { .. } => pair_line(e, quiet),
        Event::WindowClosed { .. } | Event::Waiting { .. } | Event::WindowOverride { .. } => {
            window_line(e, quiet, tz)
        }
        _ => None,
    }
}

/// The lines of the run as a whole: started, an operator needed, notices, finished, and the
/// simulated clock.
fn run_line(e: &Event, quiet: bool, tz: &TimeZone) -> Option<String> {
    let s = match e {
        Event::RunStarted {
            command,
            playbook,
            pairs_total,
            pairs_done,
            run_dir,
            ..
        } => {
            if quiet {
                return None;
            }
            format!("{command} {playbook}: {pairs_done} of {pairs_total} step x target pairs already done; output in {run_dir}")
        }
        Event::OperatorNeeded { step, .. } if !quiet => format!("  operator needed for {step}"),
        Event::Notice { text } if !quiet => text.trim_end().to_string(),
        Event::RunFinished {
            outcome,
            simulated_clock,
            ..
        } if !quiet => match simulated_clock {
            Some(c) => format!("run {outcome} (simulated clock, {})", c.setting()),
            None => format!("run {outcome}"),
        },
        // Shown even with --quiet: a rehearsal's times must not pass for the real night's.
        Event::SimulatedClock { from, real_start } => simulated_clock(from, real_start, tz),
        _ => return None,
    };
    Some(s)
}

/// The lines of steps and their pairs: started, skipped, attempts, output, results, in doubt,
/// overrun.
fn pair_line(e: &Event, quiet: bool) -> Option<String> {
    let s = match e {
        Event::StepStarted {
            step,
            title,
            targets,
            ..
        } if !quiet => {
            format!("> {step} ({title}) on {}", targets.join(", "))
        }
        Event::PairSkipped {
            step,
            target,
            reason,
        } if !quiet => format!("  = {step} on {target}: {reason}"),
        Event::AttemptStarted {
            step,
            target,
            kind,
            attempt,
            of,
        } if !quiet && (*attempt > 1 || *kind != ActionKind::Run) => {
            format!("  {kind} {step} on {target}: attempt {attempt} of {of}")
        }
        Event::Output {
            step, target, line, ..
        } if !quiet => format!("  {step}@{target} | {line}"),
        Event::AttemptFinished { .. } => attempt_finished(e, quiet)?,
        Event::InDoubt {
            step,
            target,
            decision,
        } => format!("  ? {step} on {target} was in flight when runner stopped: {decision}"),
        Event::Overrun { step, target } => {
            format!("  OVERRUN: {step} on {target} ran into business hours (margin included)")
        }
        _ => return None,
    };
    Some(s)
}

/// The lines of the business-hours window: closed, the countdown to its opening, overridden.
fn window_line(e: &Event, quiet: bool, tz: &TimeZone) -> Option<String> {
    let s = match e {
        Event::WindowClosed {
            step,
            next_start,
            action,
        } => format!(
            "  window closed for {step} ({action}); next allowed start {}",
            next_start
                .map(|t| crate::window::label_for_people(t, tz))
                .unwrap_or_else(|| "not within 14 days".into())
        ),
        // Plain output repeats the countdown at intervals that shrink as the start nears; the
        // wait itself was announced by WindowClosed.
        Event::Waiting {
            step,
            until,
            remaining_secs,
        } if !quiet && countdown_line_due(*remaining_secs) => format!(
            "  waiting for the window: {step} may start at {} (in {})",
            crate::window::label_for_people(*until, tz),
            crate::duration::human_duration(jiff::SignedDuration::from_secs(*remaining_secs))
        ),
        Event::WindowOverride { step, reason } => {
            format!("  WINDOW OVERRIDDEN for {step}: {reason}")
        }
        _ => return None,
    };
    Some(s)
}

/// An attempt's end: `ok` (not with --quiet) or `FAILED` with what went wrong.
fn attempt_finished(e: &Event, quiet: bool) -> Option<String> {
    let Event::AttemptFinished {
        step,
        target,
        kind,
        outcome,
        exit_code,
        elapsed_ms,
        message,
        ..
    } = e
    else {
        return None;
    };
    let s = if *outcome == AttemptOutcome::Succeeded {
        if quiet {
            return None;
        }
        format!("  ok {kind} {step} on {target} ({})", secs(*elapsed_ms))
    } else {
        // The message already names the exit code when it matters; the code alone
        // can mislead (a run that exited 0 and then failed its check).
        let detail = match (message, exit_code) {
            (Some(m), _) => m.clone(),
            (None, Some(c)) => format!("exit code {c}"),
            (None, None) => outcome.to_string(),
        };
        format!(
            "  FAILED {kind} {step} on {target}: {detail} ({})",
            secs(*elapsed_ms)
        )
    };
    Some(s)
}

/// The warning that a run's times are simulated, and when it really started.
fn simulated_clock(from: &Timestamp, real_start: &Option<Timestamp>, tz: &TimeZone) -> String {
    let real = real_start
        .map(|r| {
            format!(
                "; it really started at {}",
                r.to_zoned_datetime(tz.clone())
                    .strftime("%a %-d %b %Y %H:%M %Z")
            )
        })
        .unwrap_or_default();
    format!(
        "SIMULATED CLOCK: {}={from} ({}): every time this run shows and records is simulated{real}",
        crate::clock::RUNNER_NOW,
        from.to_zoned_datetime(tz.clone())
            .strftime("%a %-d %b %Y %H:%M %Z")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_countdown_lines_come_more_often_as_the_start_nears() {
        // Waiting events about every 30 s from 2h down to 0.
        let shown = |from: i64, to: i64| {
            (to..=from)
                .rev()
                .step_by(30)
                .filter(|r| countdown_line_due(*r))
                .count()
        };
        assert_eq!(shown(7199, 3600), 6);
        assert_eq!(shown(3599, 600), 10);
        assert_eq!(shown(599, 0), 10);
    }
}
