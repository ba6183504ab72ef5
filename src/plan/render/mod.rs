//! How a plan is shown: the pieces both views share (times in the window's zone, a step's
//! flags and action text, targets, notifications, warnings). The terminal's `text` and the
//! review's `markdown` each lay them out. (JSON is the `Plan` itself, serialized.)

mod markdown;
mod text;

pub use markdown::render_markdown;
pub use text::render_text;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::{Plan, PlannedStep};
use crate::duration::human_duration;
use crate::playbook::{Playbook, Rendered, RenderedAction};

pub(super) fn tz_of(pb: &Playbook) -> TimeZone {
    pb.window.time_zone().clone()
}

/// "Mon 30 Nov 18:00" in the window's zone.
pub(super) fn short(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %H:%M")
        .to_string()
}

/// "Mon 30 Nov 2026 18:00 CST".
pub(super) fn long(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %Y %H:%M %Z")
        .to_string()
}

pub(super) fn hhmm(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%H:%M")
        .to_string()
}

pub(super) fn flags(s: &PlannedStep, step: &crate::playbook::Step, pb: &Playbook) -> Vec<String> {
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

pub(super) fn action_text(r: &Rendered) -> (String, String) {
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
pub(super) fn input_lines(r: &Rendered) -> Vec<String> {
    let mut out: Vec<String> = r.env.iter().map(|v| format!("env: {v}")).collect();
    if let Some(s) = &r.stdin {
        out.push(format!("stdin: {}", crate::playbook::secret_origin(s)));
    }
    out
}

/// Groups targets whose rendering is identical, so a fan-out to 200 hosts reads as one block.
pub(super) fn rendering_groups(rendered: &[Rendered]) -> Vec<(Vec<&str>, &Rendered)> {
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

pub(super) fn indent(text: &str, pad: &str) -> String {
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

pub(super) fn shell_name(s: crate::playbook::ShellKind) -> &'static str {
    match s {
        crate::playbook::ShellKind::Sh => "sh",
        crate::playbook::ShellKind::Cmd => "cmd",
        crate::playbook::ShellKind::Powershell => "powershell",
    }
}

pub(super) fn targets_lines(pb: &Playbook) -> Vec<(String, String)> {
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
pub(super) fn notify_lines(pb: &Playbook) -> Vec<(String, String)> {
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
pub(super) fn fit_line(night: &super::Night, tz: &TimeZone) -> Option<String> {
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
pub(super) fn composition_lines(pb: &Playbook) -> Vec<String> {
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

/// "Points of no return: `a`, `b` (a rollback never goes past them)", if there are any.
pub(super) fn points_of_no_return(pb: &Playbook) -> Option<String> {
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
pub(super) fn warning_groups(plan: &Plan) -> Vec<(super::WarningKind, Vec<&super::Warning>)> {
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
pub(super) fn hours_text(pb: &Playbook) -> String {
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
