//! The plan as the review document in markdown: a summary table, the targets, one row per
//! step, each night's steps with everything they run (scripts folded in), the review warnings
//! and a sign-off table.

use std::fmt::Write;

use jiff::tz::TimeZone;

use super::super::{Night, Plan, PlannedStep};
use super::{
    action_text, composition_lines, fit_line, flags, hhmm, hours_text, input_lines, long,
    notify_lines, points_of_no_return, rendering_groups, short, targets_lines, tz_of,
    warning_groups,
};
use crate::duration::human_duration;
use crate::playbook::{Playbook, Rendered, RenderedAction, Step};

/// Largest script shown in the review; longer ones are named with their hash only.
const MAX_SHOWN_SCRIPT: u64 = 256 * 1024;

/// A script's content for the review, folded, with its full SHA-256; or why it is not shown.
fn script_block(path: &std::path::Path, sha256: &str) -> String {
    let shown = std::fs::metadata(path)
        .map_err(|e| format!("cannot be read now: {e}"))
        .and_then(|m| {
            if m.len() > MAX_SHOWN_SCRIPT {
                Err(format!(
                    "{} bytes, too long to show here; compare its SHA-256",
                    m.len()
                ))
            } else {
                std::fs::read(path).map_err(|e| format!("cannot be read now: {e}"))
            }
        })
        .and_then(|bytes| {
            if crate::digest::sha256_hex(&bytes) != sha256 {
                return Err("changed since the playbook was loaded: plan again".into());
            }
            String::from_utf8(bytes).map_err(|_| "not text; compare its SHA-256".to_string())
        });
    match shown {
        Ok(text) => {
            let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
            let fence = "`".repeat(longest.max(2) + 1);
            let lines = text.lines().count();
            let mut body = text;
            if !body.ends_with('\n') {
                body.push('\n');
            }
            format!(
                "<details>\n<summary>The script ({lines} line{})</summary>\n\n{fence}\n{body}{fence}\n\n</details>\n",
                if lines == 1 { "" } else { "s" }
            )
        }
        Err(why) => format!("(The script is not shown: {why}.)\n"),
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

pub fn render_markdown(plan: &Plan, pb: &Playbook) -> String {
    let tz = tz_of(pb);
    let mut o = String::new();
    let _ = writeln!(o, "# Cutover plan: {}\n", plan.name);
    if let Some(d) = &pb.description {
        let _ = writeln!(o, "{}\n", d.trim());
    }
    summary(&mut o, plan, pb, &tz);
    targets(&mut o, pb);
    steps_table(&mut o, plan, pb, &tz);
    let _ = writeln!(o, "\n## Nights");
    for night in &plan.nights {
        night_md(&mut o, plan, pb, night, &tz);
    }
    warnings(&mut o, plan, pb);
    let _ = writeln!(
        o,
        "\n## Sign-off\n\nThis plan was reviewed and approved to run as shown. `runner apply {} --plan PLAN.json` refuses to run if the playbook or any file it sends has changed since.\n\n| Role | Name | Signature | Date |\n|---|---|---|---|\n| Consultant | | | |\n| Customer | | | |",
        plan.playbook
    );
    o
}

/// The table of what the plan is about: playbook, window, start, finish.
fn summary(o: &mut String, plan: &Plan, pb: &Playbook, tz: &TimeZone) {
    let _ = writeln!(o, "| Item | Value |\n|---|---|");
    let _ = writeln!(o, "| Playbook | `{}` |", plan.playbook);
    let _ = writeln!(o, "| Playbook SHA-256 | `{}` |", plan.playbook_sha256);
    for line in composition_lines(pb) {
        let line = line.trim();
        let (k, v) = line.split_once(": ").unwrap_or(("", line));
        let _ = writeln!(o, "| {} | {} |", md_cell(k), md_cell(v));
    }
    let _ = writeln!(
        o,
        "| Time zone | {} |",
        plan.timezone
            .as_deref()
            .unwrap_or("none (no business hours)")
    );
    let _ = writeln!(o, "| Business hours | {} |", md_cell(&hours_text(pb)));
    let holidays: Vec<String> = pb.window.holidays().iter().map(|d| d.to_string()).collect();
    let _ = writeln!(
        o,
        "| Holidays | {} |",
        if holidays.is_empty() {
            "none".to_string()
        } else {
            holidays.join(", ")
        }
    );
    let _ = writeln!(
        o,
        "| Margin before business hours | {} |",
        human_duration(pb.window.margin())
    );
    let _ = writeln!(
        o,
        "| When closed | {} |",
        match pb.when_closed {
            crate::playbook::WhenClosed::Stop => "stop (checkpoint and exit)",
            crate::playbook::WhenClosed::Wait => "wait until a step may start",
        }
    );
    let _ = writeln!(o, "| Planned start | {} |", long(plan.start, tz));
    let _ = writeln!(o, "| Expected finish | {} |", long(plan.finish, tz));
    let _ = writeln!(
        o,
        "| Steps / nights | {} / {} |",
        plan.steps.len(),
        plan.night_count()
    );
}

/// The targets and where notifications go.
fn targets(o: &mut String, pb: &Playbook) {
    let _ = writeln!(o, "\n## Targets\n\n| Target | Connection |\n|---|---|");
    for (name, d) in targets_lines(pb) {
        let _ = writeln!(o, "| `{name}` | {} |", md_cell(&d));
    }
    if !pb.notify.is_empty() {
        let _ = writeln!(o, "\n## Notifications\n\n| Where | Details |\n|---|---|");
        for (sink, d) in notify_lines(pb) {
            let _ = writeln!(o, "| {} | {} |", md_cell(&sink), md_cell(&d));
        }
    }
}

/// One row per step: when, where, and whether it has a check and a rollback.
fn steps_table(o: &mut String, plan: &Plan, pb: &Playbook, tz: &TimeZone) {
    let _ = writeln!(
        o,
        "\n## Steps\n\n| # | Step | Phase | On | Start | End | Check | Rollback | Notes |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (i, ps) in plan.steps.iter().enumerate() {
        if let Some(step) = pb.steps.iter().find(|s| s.id == ps.id) {
            step_row(o, i, ps, step, pb, tz);
        }
    }
}

fn step_row(o: &mut String, i: usize, ps: &PlannedStep, step: &Step, pb: &Playbook, tz: &TimeZone) {
    let _ = writeln!(
        o,
        "| {} | **{}**<br>`{}` | {} | {} | {} | {} | {} | {} | {} |",
        i + 1,
        md_cell(&ps.name),
        ps.id,
        md_cell(ps.phase.as_deref().unwrap_or("")),
        md_cell(&ps.targets.join(", ")),
        short(ps.start, tz),
        short(ps.end, tz),
        match step.action {
            _ if step.check.is_some() => "yes",
            crate::playbook::Action::Manual(_) => "operator confirms",
            crate::playbook::Action::Upload { .. }
            | crate::playbook::Action::Copy { .. }
            | crate::playbook::Action::Fetch { .. } => "SHA-256 verified",
            crate::playbook::Action::Reboot { .. } => "new boot id",
            _ => "**no**",
        },
        match step.action {
            _ if step.rollback.is_some() => "yes",
            _ if step.changes_nothing => "not needed (changes nothing)",
            crate::playbook::Action::Manual(_) => "by hand",
            _ => "no",
        },
        md_cell(&flags(ps, step, pb).join(", "))
    );
}

/// One night: when its work ends, whether it fits, and each step with what it runs.
fn night_md(o: &mut String, plan: &Plan, pb: &Playbook, night: &Night, tz: &TimeZone) {
    let _ = writeln!(
        o,
        "\n### {}\n\nWork is expected to end {}.\n",
        night.title,
        short(night.finish, tz)
    );
    if let Some(line) = fit_line(night, tz) {
        let _ = writeln!(o, "{}\n", md_cell(&line));
    }
    for ps in plan.steps.iter().filter(|s| s.night == night.number) {
        let Some(step) = pb.steps.iter().find(|s| s.id == ps.id) else {
            continue;
        };
        let _ = writeln!(
            o,
            "#### {}-{} `{}`: {}\n",
            hhmm(ps.start, tz),
            hhmm(ps.end, tz),
            ps.id,
            ps.name
        );
        for (names, r) in rendering_groups(&ps.rendered) {
            rendering(o, &names.join(", "), r, step, pb);
        }
    }
}

/// What a step runs on the targets `on`, with its inputs, check and rollback.
fn rendering(o: &mut String, on: &str, r: &Rendered, step: &Step, pb: &Playbook) {
    match &r.action {
        RenderedAction::Script { path, sha256 } => {
            let _ = writeln!(
                o,
                "On {on}, script `{}`, SHA-256 `{sha256}`:\n\n{}",
                path.display(),
                script_block(path, sha256)
            );
        }
        RenderedAction::Upload {
            src,
            sha256,
            bytes,
            dest,
        } => {
            let _ = writeln!(
                o,
                "On {on}, upload `{}` ({bytes} bytes, SHA-256 `{sha256}`) to:\n\n```\n{dest}\n```\n",
                src.display()
            );
        }
        _ => {
            let (kind, text) = action_text(r);
            let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
            let fence = "`".repeat(longest.max(2) + 1);
            let intro = match &r.action {
                RenderedAction::Manual { .. } => {
                    "The operator carries out, then confirms:".to_string()
                }
                RenderedAction::Run { .. }
                    if pb
                        .targets
                        .get(&r.target)
                        .is_some_and(|t| step.detached_on(t)) =>
                {
                    format!("On {on}, run detached (it survives a dropped connection):")
                }
                _ => format!("On {on}, {kind}:"),
            };
            let _ = writeln!(o, "{intro}\n\n{fence}\n{}\n{fence}\n", text.trim_end());
        }
    }
    for line in input_lines(r) {
        let _ = writeln!(o, "- {}", line.replace('`', "'"));
    }
    if !input_lines(r).is_empty() {
        let _ = writeln!(o);
    }
    if let Some(c) = &r.check {
        let _ = writeln!(o, "Check:\n\n```\n{}\n```\n", c.trim_end());
    }
    if let Some(c) = &r.rollback {
        let _ = writeln!(o, "Rollback:\n\n```\n{}\n```\n", c.trim_end());
    }
}

/// The points of no return and the review warnings, riskiest kind first.
fn warnings(o: &mut String, plan: &Plan, pb: &Playbook) {
    let _ = writeln!(o, "## Review warnings\n");
    if let Some(line) = points_of_no_return(pb) {
        let _ = writeln!(o, "{line}.\n");
    }
    if plan.warnings.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let groups = warning_groups(plan);
        let _ = writeln!(
            o,
            "{} warning{} of {} kind{}, riskiest first. Steps marked `changes: none` are not asked for a rollback.",
            plan.warnings.len(),
            if plan.warnings.len() == 1 { "" } else { "s" },
            groups.len(),
            if groups.len() == 1 { "" } else { "s" }
        );
        for (kind, group) in groups {
            let _ = writeln!(
                o,
                "\n### {} ({})\n\n`{}`: {}.\n",
                kind.title,
                group.len(),
                group[0].code,
                kind.why
            );
            for w in group {
                let _ = writeln!(o, "- {}", md_cell(&w.message));
            }
        }
    }
}
