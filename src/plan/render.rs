//! How a plan is shown: text for the terminal, markdown for the review document.
//! (JSON is the `Plan` itself, serialized.)

use std::fmt::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::{human_duration, Plan, PlannedStep};
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

fn flags(s: &PlannedStep, step: &crate::playbook::Step) -> Vec<String> {
    let mut f = Vec::new();
    match step.estimate {
        Some(e) => f.push(format!("est {}", human_duration(e))),
        None => f.push("no estimate".into()),
    }
    if let Some(t) = step.timeout {
        f.push(format!("timeout {}", human_duration(t)));
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
    if s.idempotent {
        f.push("idempotent".into());
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
    use crate::notify::SinkKind;
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
            let _ = writeln!(
                o,
                "      on {}  [{}]",
                ps.targets.join(", "),
                flags(ps, step).join(", ")
            );
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
    if plan.warnings.is_empty() {
        let _ = writeln!(o, "\nNo review warnings.");
    } else {
        let _ = writeln!(o, "\nReview warnings ({})", plan.warnings.len());
        for w in &plan.warnings {
            let _ = writeln!(o, "  - [{}] {}", w.code, w.message);
        }
    }
    o
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
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| Playbook | `{}` |", plan.playbook);
    let _ = writeln!(o, "| Playbook SHA-256 | `{}` |", plan.playbook_sha256);
    let _ = writeln!(
        o,
        "| Time zone | {} |",
        plan.timezone
            .as_deref()
            .unwrap_or("none (no business hours)")
    );
    let _ = writeln!(
        o,
        "| Margin before business hours | {} |",
        human_duration(pb.window.margin())
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
            if step.check.is_some() {
                "yes"
            } else {
                "**no**"
            },
            if step.rollback.is_some() { "yes" } else { "no" },
            md_cell(&flags(ps, step).join(", "))
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
        for ps in plan.steps.iter().filter(|s| s.night == night.number) {
            let _ = writeln!(
                o,
                "#### {}-{} `{}`: {}\n",
                hhmm(ps.start, &tz),
                hhmm(ps.end, &tz),
                ps.id,
                ps.name
            );
            for (names, r) in rendering_groups(&ps.rendered) {
                let (kind, text) = action_text(r);
                let _ = writeln!(
                    o,
                    "On {}, {kind}:\n\n```\n{}\n```\n",
                    names.join(", "),
                    text.trim_end()
                );
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
    if plan.warnings.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for w in &plan.warnings {
        let _ = writeln!(o, "- **{}**: {}", w.code, md_cell(&w.message));
    }
    let _ = writeln!(
        o,
        "\n## Sign-off\n\nThis plan was reviewed and approved to run as shown. `runner apply {} --plan PLAN.json` refuses to run if the playbook or any file it sends has changed since.\n\n| Role | Name | Signature | Date |\n|---|---|---|---|\n| Consultant | | | |\n| Customer | | | |",
        plan.playbook
    );
    o
}
