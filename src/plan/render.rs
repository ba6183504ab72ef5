//! How a plan is shown: text for the terminal, markdown for the review document.
//! (JSON is the `Plan` itself, serialized.)

use std::fmt::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::{Plan, PlannedStep};
use crate::duration::human_duration;
use crate::playbook::{Playbook, Rendered, RenderedAction};

fn tz_of(pb: &Playbook) -> TimeZone {
    pb.window.time_zone().clone()
}

/// "Mon 30 Nov 18:00" in the window's zone.
fn short(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %H:%M")
        .to_string()
}

/// "Mon 30 Nov 2026 18:00 CST".
fn long(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %Y %H:%M %Z")
        .to_string()
}

fn hhmm(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%H:%M")
        .to_string()
}

fn flags(s: &PlannedStep, step: &crate::playbook::Step, pb: &Playbook) -> Vec<String> {
    let mut f = Vec::new();
    let by_customer = |key: &str| {
        pb.composition
            .as_ref()
            .and_then(|c| {
                c.overrides
                    .iter()
                    .find(|o| o.step == step.id && o.key == key)
            })
            .map(|o| match &o.procedure_value {
                Some(was) => format!(" (customer's, procedure {was})"),
                None => " (customer's)".to_string(),
            })
            .unwrap_or_default()
    };
    let secs = |x: i64| human_duration(jiff::SignedDuration::from_secs(x));
    match (&s.measured, step.estimate) {
        (Some(m), _) => f.push(format!(
            "est {} (median of {} measured run{}, {} to {}; playbook {})",
            secs(m.median_secs),
            m.runs,
            if m.runs == 1 { "" } else { "s" },
            secs(m.min_secs),
            secs(m.max_secs),
            m.playbook_secs.map(secs).unwrap_or_else(|| "none".into())
        )),
        (None, Some(e)) => f.push(format!(
            "est {}{}",
            human_duration(e),
            by_customer("estimate")
        )),
        (None, None) => f.push("no estimate".into()),
    }
    if let Some(t) = step.timeout {
        f.push(format!(
            "timeout {}{}",
            human_duration(t),
            by_customer("timeout")
        ));
    }
    if s.retries > 0 {
        f.push(format!(
            "retries {} every {}",
            s.retries,
            human_duration(step.retry_delay)
        ));
    }
    if step.ok_codes != [0] {
        f.push(format!(
            "ok codes {}",
            step.ok_codes
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if step
        .targets
        .iter()
        .any(|t| pb.targets.get(t).is_some_and(|t| step.detached_on(t)))
    {
        f.push(if step.detach == Some(true) {
            "detached".into()
        } else {
            "detached (estimate of 15m or more)".into()
        });
    }
    if s.idempotent {
        f.push("idempotent".into());
    }
    if step.changes_nothing {
        f.push("changes nothing".into());
    }
    if s.point_of_no_return {
        f.push("POINT OF NO RETURN".into());
    }
    if s.business_hours == crate::playbook::BusinessHoursPolicy::Allow {
        f.push("allowed in business hours".into());
    }
    if let Some(d) = &step.deadline {
        f.push(format!(
            "deadline {} after {}",
            human_duration(d.within),
            d.after
        ));
    }
    f
}

fn action_text(r: &Rendered) -> (String, String) {
    match &r.action {
        RenderedAction::Run { command } => ("run".into(), command.clone()),
        RenderedAction::Script { path, sha256 } => (
            "script".into(),
            format!(
                "{} (sha256 {})",
                path.display(),
                &sha256[..12.min(sha256.len())]
            ),
        ),
        RenderedAction::Upload {
            src,
            sha256,
            bytes,
            dest,
        } => (
            "upload".into(),
            format!(
                "{} -> {dest} ({bytes} bytes, sha256 {})",
                src.display(),
                &sha256[..12.min(sha256.len())]
            ),
        ),
        RenderedAction::Copy {
            from,
            from_address,
            path,
            dest,
        } => (
            "copy".into(),
            format!(
                "{path} on `{from}` ({from_address}) -> {dest} on `{}`, through this machine, SHA-256 verified",
                r.target
            ),
        ),
        RenderedAction::Fetch { path, dest } => (
            "fetch".into(),
            format!(
                "{path} on `{}` -> {} on this machine, SHA-256 verified",
                r.target,
                dest.display()
            ),
        ),
        RenderedAction::Manual { instructions } => ("manual".into(), instructions.clone()),
        RenderedAction::Reboot {
            command,
            boot_id_command,
            timeout_secs,
        } => (
            "reboot".into(),
            format!(
                "{command}, then wait up to {} until `{boot_id_command}` prints a new boot id",
                human_duration(jiff::SignedDuration::from_secs(*timeout_secs))
            ),
        ),
    }
}

/// What the command gets besides its text: `env: NAME = <secret from env VAR>` per variable,
/// `stdin: <secret from file PATH>`. Never a secret's value.
fn input_lines(r: &Rendered) -> Vec<String> {
    let mut out: Vec<String> = r.env.iter().map(|v| format!("env: {v}")).collect();
    if let Some(s) = &r.stdin {
        out.push(format!("stdin: {}", crate::playbook::secret_origin(s)));
    }
    out
}

/// Groups targets whose rendering is identical, so a fan-out to 200 hosts reads as one block.
fn rendering_groups(rendered: &[Rendered]) -> Vec<(Vec<&str>, &Rendered)> {
    let mut groups: Vec<(Vec<&str>, &Rendered)> = Vec::new();
    for r in rendered {
        match groups.iter_mut().find(|(_, g)| {
            g.action == r.action
                && g.check == r.check
                && g.rollback == r.rollback
                && g.env == r.env
                && g.stdin == r.stdin
        }) {
            Some((names, _)) => names.push(&r.target),
            None => groups.push((vec![&r.target], r)),
        }
    }
    groups
}

fn indent(text: &str, pad: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.trim_end().lines().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(pad);
        }
        out.push_str(line);
    }
    out
}

fn shell_name(s: crate::playbook::ShellKind) -> &'static str {
    match s {
        crate::playbook::ShellKind::Sh => "sh",
        crate::playbook::ShellKind::Cmd => "cmd",
        crate::playbook::ShellKind::Powershell => "powershell",
    }
}

fn targets_lines(pb: &Playbook) -> Vec<(String, String)> {
    pb.targets
        .values()
        .map(|t| {
            let mut d = format!("{}, shell {}", t.address(), shell_name(t.shell));
            if let Some(p) = &t.password {
                d.push_str(&format!(", password {p}"));
            }
            if let Some(k) = &t.key {
                d.push_str(&format!(", key {}", k.display()));
            }
            if let Some(j) = &t.jump {
                d.push_str(&format!(", through jump host {j}"));
            }
            if !t.from_ssh_config.is_empty() {
                d.push_str(&format!(
                    ", from ~/.ssh/config: {}",
                    t.from_ssh_config.join(", ")
                ));
            }
            if let Some(a) = t.auth {
                d.push_str(match a {
                    crate::playbook::WinrmAuth::Basic => ", auth basic",
                    crate::playbook::WinrmAuth::Ntlm => ", auth ntlm",
                });
            }
            (t.name.clone(), d)
        })
        .collect()
}

/// The `notify:` sinks as (where, details): no URL path or query (a webhook's token or an ntfy
/// topic lives there), secrets by reference only.
fn notify_lines(pb: &Playbook) -> Vec<(String, String)> {
    use crate::playbook::notify::SinkKind;
    pb.notify
        .iter()
        .map(|s| {
            let on: Vec<&str> = s.on.iter().map(|e| e.name()).collect();
            let mut d = String::new();
            if let SinkKind::Email(e) = &s.kind {
                d.push_str(&format!(
                    "from {} via {}:{} ({}",
                    e.from,
                    e.smtp.host,
                    e.smtp.port,
                    e.smtp.tls.name()
                ));
                if let Some(u) = &e.smtp.user {
                    d.push_str(&format!(", user {u}"));
                }
                if let Some(p) = &e.smtp.password {
                    d.push_str(&format!(", password {p}"));
                }
                d.push_str("), ");
            }
            d.push_str(&format!("on {}", on.join(", ")));
            (s.label(), d)
        })
        .collect()
}

/// With history: how likely the night's work fits before the window closes.
fn fit_line(night: &super::Night, tz: &TimeZone) -> Option<String> {
    let fit = night.fit.as_ref()?;
    let closes = night.closes?;
    Some(format!(
        "history: {}% likely to end by {} (90th percentile end {}; {} of {} steps measured, the others at their estimates)",
        fit.percent,
        short(closes, tz),
        short(fit.p90_end_at, tz),
        fit.measured_steps,
        fit.steps
    ))
}

/// Where a customer file's parts come from: its procedure, the steps it changes or leaves
/// out, and the variables given on the command line.
fn composition_lines(pb: &Playbook) -> Vec<String> {
    let Some(c) = &pb.composition else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(p) = &c.procedure {
        out.push(format!(
            "Procedure: {}{} (sha256 {})",
            p.path.display(),
            p.name
                .as_ref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default(),
            &p.sha256[..16.min(p.sha256.len())]
        ));
    }
    for f in &c.vars_files {
        out.push(format!(
            "Vars file: {} (sha256 {})",
            f.path.display(),
            &f.sha256[..16.min(f.sha256.len())]
        ));
    }
    for o in &c.overrides {
        out.push(format!(
            "  override: {} {} {} (procedure: {}) at {}",
            o.step,
            o.key,
            o.value,
            o.procedure_value.as_deref().unwrap_or("none"),
            o.at
        ));
    }
    for s in &c.skipped {
        out.push(format!("  skipped (optional): {} at {}", s.step, s.at));
    }
    for v in &c.given {
        out.push(format!(
            "  var given on the command line: {} = {} ({})",
            v.name, v.value, v.from
        ));
    }
    out
}

pub fn render_text(plan: &Plan, pb: &Playbook) -> String {
    let tz = tz_of(pb);
    let mut o = String::new();
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
    match &plan.timezone {
        Some(z) => {
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
                let days: Vec<String> =
                    pb.window.holidays().iter().map(|d| d.to_string()).collect();
                let _ = writeln!(o, "  holidays: {}", days.join(", "));
            }
        }
        None => {
            let _ = writeln!(o, "Window: no business hours (steps may start any time)");
        }
    }
    let _ = writeln!(o, "Simulated start: {}", long(plan.start, &tz));
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
    for night in &plan.nights {
        let _ = writeln!(
            o,
            "\n{}  (work expected to end {})",
            night.title,
            short(night.finish, &tz)
        );
        if let Some(line) = fit_line(night, &tz) {
            let _ = writeln!(o, "  {line}");
        }
        for ps in plan.steps.iter().filter(|s| s.night == night.number) {
            let Some(step) = pb.steps.iter().find(|s| s.id == ps.id) else {
                continue;
            };
            let _ = writeln!(
                o,
                "  {}-{}  {}  {}",
                hhmm(ps.start, &tz),
                hhmm(ps.end, &tz),
                ps.id,
                if ps.name != ps.id { &ps.name } else { "" }
            );
            // A copy runs on its destination and reads from its source: both are named.
            let on = match &step.action {
                crate::playbook::Action::Copy { from, to, .. } => format!("{to}, from {from}"),
                _ => ps.targets.join(", "),
            };
            let _ = writeln!(o, "      on {on}  [{}]", flags(ps, step, pb).join(", "));
            for (names, r) in rendering_groups(&ps.rendered) {
                let pad = "        ";
                if ps.targets.len() > 1 && rendering_groups(&ps.rendered).len() > 1 {
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
    }
    let _ = writeln!(
        o,
        "\nFinish: {}  ({} step{}, {} night{})",
        long(plan.finish, &tz),
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
    } else {
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
    o
}

/// "Points of no return: `a`, `b` (a rollback never goes past them)", if there are any.
fn points_of_no_return(pb: &Playbook) -> Option<String> {
    let ids: Vec<String> = pb
        .steps
        .iter()
        .filter(|s| s.point_of_no_return)
        .map(|s| format!("`{}`", s.id))
        .collect();
    (!ids.is_empty()).then(|| {
        format!(
            "Points of no return: {} (a rollback never goes past {})",
            ids.join(", "),
            if ids.len() == 1 { "it" } else { "them" }
        )
    })
}

/// The plan's warnings by kind, in the plan's order (riskiest kind first).
fn warning_groups(plan: &Plan) -> Vec<(super::WarningKind, Vec<&super::Warning>)> {
    let mut groups: Vec<(&str, Vec<&super::Warning>)> = Vec::new();
    for w in &plan.warnings {
        match groups.iter_mut().find(|(c, _)| *c == w.code) {
            Some((_, g)) => g.push(w),
            None => groups.push((w.code, vec![w])),
        }
    }
    groups.sort_by_key(|(c, _)| super::warning_kind(c).rank);
    groups
        .into_iter()
        .map(|(c, g)| (super::warning_kind(c), g))
        .collect()
}

/// The lines of a business-hours rule set: "mon-fri 07:30-18:00; sat 09:00-12:00".
fn hours_text(pb: &Playbook) -> String {
    let rules: Vec<String> = pb
        .window
        .rules()
        .iter()
        .map(|r| {
            format!(
                "{} {}-{}",
                r.days,
                r.from.strftime("%H:%M"),
                r.to.strftime("%H:%M")
            )
        })
        .collect();
    if rules.is_empty() {
        "none (steps may start any time)".into()
    } else {
        rules.join("; ")
    }
}

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
    let _ = writeln!(o, "| Planned start | {} |", long(plan.start, &tz));
    let _ = writeln!(o, "| Expected finish | {} |", long(plan.finish, &tz));
    let _ = writeln!(
        o,
        "| Steps / nights | {} / {} |",
        plan.steps.len(),
        plan.night_count()
    );
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
    let _ = writeln!(
        o,
        "\n## Steps\n\n| # | Step | Phase | On | Start | End | Check | Rollback | Notes |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (i, ps) in plan.steps.iter().enumerate() {
        let Some(step) = pb.steps.iter().find(|s| s.id == ps.id) else {
            continue;
        };
        let _ = writeln!(
            o,
            "| {} | **{}**<br>`{}` | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            md_cell(&ps.name),
            ps.id,
            md_cell(ps.phase.as_deref().unwrap_or("")),
            md_cell(&ps.targets.join(", ")),
            short(ps.start, &tz),
            short(ps.end, &tz),
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
    let _ = writeln!(o, "\n## Nights");
    for night in &plan.nights {
        let _ = writeln!(
            o,
            "\n### {}\n\nWork is expected to end {}.\n",
            night.title,
            short(night.finish, &tz)
        );
        if let Some(line) = fit_line(night, &tz) {
            let _ = writeln!(o, "{}\n", md_cell(&line));
        }
        for ps in plan.steps.iter().filter(|s| s.night == night.number) {
            let Some(step) = pb.steps.iter().find(|s| s.id == ps.id) else {
                continue;
            };
            let _ = writeln!(
                o,
                "#### {}-{} `{}`: {}\n",
                hhmm(ps.start, &tz),
                hhmm(ps.end, &tz),
                ps.id,
                ps.name
            );
            for (names, r) in rendering_groups(&ps.rendered) {
                let on = names.join(", ");
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
        }
    }
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
    let _ = writeln!(
        o,
        "\n## Sign-off\n\nThis plan was reviewed and approved to run as shown. `runner apply {} --plan PLAN.json` refuses to run if the playbook or any file it sends has changed since.\n\n| Role | Name | Signature | Date |\n|---|---|---|---|\n| Consultant | | | |\n| Customer | | | |",
        plan.playbook
    );
    o
}
