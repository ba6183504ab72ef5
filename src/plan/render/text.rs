//! The plan on the terminal: the window and targets, then each night's steps with what they
//! run, then the finish, the points of no return and the review warnings.

use std::fmt::Write;

use jiff::tz::TimeZone;

use super::super::{Night, Plan, PlannedStep};
use super::{
    action_text, composition_lines, fit_line, flags, hhmm, indent, input_lines, long, notify_lines,
    points_of_no_return, rendering_groups, short, targets_lines, tz_of, warning_groups,
};
use crate::duration::human_duration;
use crate::playbook::{Playbook, Step};

pub fn render_text(plan: &Plan, pb: &Playbook) -> String {
    let tz = tz_of(pb);
    let mut o = String::new();
    header(&mut o, plan, pb, &tz);
    for night in &plan.nights {
        night_text(&mut o, plan, pb, night, &tz);
    }
    footer(&mut o, plan, pb, &tz);
    o
}

/// The plan's name, the playbook, the window, the targets and the notifications.
fn header(o: &mut String, plan: &Plan, pb: &Playbook, tz: &TimeZone) {
    let _ = writeln!(o, "Plan: {}", plan.name);
    let _ = writeln!(
        o,
        "Playbook: {} (sha256 {})",
        plan.playbook,
        &plan.playbook_sha256[..16]
    );
    for line in composition_lines(pb) {
        let _ = writeln!(o, "{line}");
    }
    window(o, plan, pb);
    let _ = writeln!(o, "Simulated start: {}", long(plan.start, tz));
    let _ = writeln!(o, "\nTargets");
    for (name, d) in targets_lines(pb) {
        let _ = writeln!(o, "  {name:<16} {d}");
    }
    if !pb.notify.is_empty() {
        let _ = writeln!(o, "\nNotifications");
        for (sink, d) in notify_lines(pb) {
            let _ = writeln!(o, "  {sink}\n      {d}");
        }
    }
}

/// The business hours, holidays, margin and what happens when the window closes.
fn window(o: &mut String, plan: &Plan, pb: &Playbook) {
    let Some(z) = &plan.timezone else {
        let _ = writeln!(o, "Window: no business hours (steps may start any time)");
        return;
    };
    let _ = writeln!(
        o,
        "Window: business hours in {z}, margin {}, when closed: {}",
        human_duration(pb.window.margin()),
        match pb.when_closed {
            crate::playbook::WhenClosed::Stop => "stop (checkpoint and exit)",
            crate::playbook::WhenClosed::Wait => "wait",
        }
    );
    for r in pb.window.rules() {
        let _ = writeln!(
            o,
            "  business hours: {} {}-{}",
            r.days,
            r.from.strftime("%H:%M"),
            r.to.strftime("%H:%M")
        );
    }
    if !pb.window.holidays().is_empty() {
        let days: Vec<String> = pb.window.holidays().iter().map(|d| d.to_string()).collect();
        let _ = writeln!(o, "  holidays: {}", days.join(", "));
    }
}

/// One night: when its work ends, whether it fits, and its steps.
fn night_text(o: &mut String, plan: &Plan, pb: &Playbook, night: &Night, tz: &TimeZone) {
    let _ = writeln!(
        o,
        "\n{}  (work expected to end {})",
        night.title,
        short(night.finish, tz)
    );
    if let Some(line) = fit_line(night, tz) {
        let _ = writeln!(o, "  {line}");
    }
    for ps in plan.steps.iter().filter(|s| s.night == night.number) {
        if let Some(step) = pb.steps.iter().find(|s| s.id == ps.id) {
            step_text(o, ps, step, pb, tz);
        }
    }
}

/// One step: its times, targets and flags, then what it runs on each group of targets.
fn step_text(o: &mut String, ps: &PlannedStep, step: &Step, pb: &Playbook, tz: &TimeZone) {
    let _ = writeln!(
        o,
        "  {}-{}  {}  {}",
        hhmm(ps.start, tz),
        hhmm(ps.end, tz),
        ps.id,
        if ps.name != ps.id { &ps.name } else { "" }
    );
    // A copy runs on its destination and reads from its source: both are named.
    let on = match &step.action {
        crate::playbook::Action::Copy { from, to, .. } => format!("{to}, from {from}"),
        _ => ps.targets.join(", "),
    };
    let _ = writeln!(o, "      on {on}  [{}]", flags(ps, step, pb).join(", "));
    let groups = rendering_groups(&ps.rendered);
    for (names, r) in &groups {
        let pad = "        ";
        if ps.targets.len() > 1 && groups.len() > 1 {
            let _ = writeln!(o, "      for {}:", names.join(", "));
        }
        let (kind, text) = action_text(r);
        let _ = writeln!(o, "      {kind}: {}", indent(&text, pad));
        for line in input_lines(r) {
            let _ = writeln!(o, "      {line}");
        }
        if let Some(c) = &r.check {
            let _ = writeln!(o, "      check: {}", indent(c, pad));
        }
        if let Some(c) = &r.rollback {
            let _ = writeln!(o, "      rollback: {}", indent(c, pad));
        }
    }
}

/// The finish, the points of no return and the review warnings, riskiest kind first.
fn footer(o: &mut String, plan: &Plan, pb: &Playbook, tz: &TimeZone) {
    let _ = writeln!(
        o,
        "\nFinish: {}  ({} step{}, {} night{})",
        long(plan.finish, tz),
        plan.steps.len(),
        if plan.steps.len() == 1 { "" } else { "s" },
        plan.night_count(),
        if plan.night_count() == 1 { "" } else { "s" }
    );
    if let Some(line) = points_of_no_return(pb) {
        let _ = writeln!(o, "\n{line}");
    }
    if plan.warnings.is_empty() {
        let _ = writeln!(o, "\nNo review warnings.");
        return;
    }
    let _ = writeln!(
        o,
        "\nReview warnings ({}, riskiest kind first)",
        plan.warnings.len()
    );
    for (kind, group) in warning_groups(plan) {
        let _ = writeln!(o, "  {} ({}): {}", kind.title, group.len(), kind.why);
        for w in group {
            let _ = writeln!(o, "    - [{}] {}", w.code, w.message);
        }
    }
}
