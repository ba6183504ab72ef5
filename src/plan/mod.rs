//! The review: when each step will start across nights, and what a reviewer should look at.
//!
//! A plan is computed, never executed: it connects to nothing. `apply` runs the same
//! playbook; `--plan` makes it refuse when a step, a file it sends, a target or the window changed since the
//! review (see [`saved`]).

pub mod history;
mod render;
pub mod saved;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::playbook::{BusinessHoursPolicy, Playbook, Step};
use crate::window::Window;

pub use render::{render_markdown, render_text};

use crate::duration::{human_duration, HORIZON};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub format: u32,
    pub name: String,
    pub playbook: String,
    pub playbook_sha256: String,
    /// A customer file's procedure, overrides and given variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub composition: Option<crate::playbook::Composition>,
    pub files: Vec<crate::playbook::FileRef>,
    /// Every target by name, with its address (`ssh admin@10.0.0.5:22`); `apply --plan`
    /// compares them.
    pub targets: std::collections::BTreeMap<String, String>,
    /// The window as a reviewer reads it (time zone, margin, hours, holidays, when closed);
    /// `apply --plan` compares it.
    pub window: Vec<String>,
    pub timezone: Option<String>,
    #[serde(skip)]
    pub start: Timestamp,
    #[serde(skip)]
    pub finish: Timestamp,
    /// RFC 3339 with the window's UTC offset, as are all times in the JSON.
    #[serde(rename = "start")]
    pub start_text: String,
    #[serde(rename = "finish")]
    pub finish_text: String,
    pub steps: Vec<PlannedStep>,
    pub nights: Vec<Night>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub id: String,
    pub name: String,
    pub phase: Option<String>,
    pub kind: &'static str,
    pub targets: Vec<String>,
    #[serde(skip)]
    pub start: Timestamp,
    #[serde(skip)]
    pub end: Timestamp,
    #[serde(rename = "start")]
    pub start_text: String,
    #[serde(rename = "end")]
    pub end_text: String,
    /// Estimate in seconds; None when the playbook gives none (counted as 0).
    pub estimate_secs: Option<i64>,
    pub timeout_secs: Option<i64>,
    pub retries: u32,
    pub idempotent: bool,
    pub point_of_no_return: bool,
    pub business_hours: BusinessHoursPolicy,
    /// The group (`Night::number`) this step starts in.
    pub night: usize,
    /// True when the step waits for the window rather than starting right after the previous one.
    pub waits_for_window: bool,
    /// The step as it will run on each target.
    pub rendered: Vec<crate::playbook::Rendered>,
    /// With history: the measured durations the estimate comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<history::Measured>,
}

/// A stretch of work between two business-hours intervals (a night), or a run of steps
/// allowed inside business hours (daytime).
#[derive(Debug, Clone, Serialize)]
pub struct Night {
    /// Position among all groups, from 1 (`PlannedStep::night` refers to it).
    pub number: usize,
    /// True for steps that run inside business hours because they are allowed to.
    pub daytime: bool,
    /// "Night 2: Mon 30 Nov 18:00 -> Tue 1 Dec 07:15", as the review shows it.
    pub title: String,
    /// When its first step starts.
    #[serde(skip)]
    pub start: Timestamp,
    /// When work must be over: the next business hours minus the margin (None: no limit).
    #[serde(skip)]
    pub closes: Option<Timestamp>,
    /// When its last step is expected to end.
    #[serde(skip)]
    pub finish: Timestamp,
    #[serde(rename = "start")]
    pub start_text: String,
    #[serde(rename = "closes")]
    pub closes_text: Option<String>,
    #[serde(rename = "finish")]
    pub finish_text: String,
    pub steps: Vec<String>,
    /// With history: how likely the night's work ends before `closes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit: Option<history::Fit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub step: Option<String>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("step `{step}` (line {line}) cannot be scheduled within 14 days of {after}: no gap between business hours is long enough for its estimate plus the margin\n  = help: split the step, shorten its estimate, or set `business_hours: allow` if it is read-only")]
    Unschedulable {
        step: String,
        line: usize,
        after: String,
    },
}

impl Plan {
    /// Nights, not counting daytime groups.
    pub fn night_count(&self) -> usize {
        self.nights.iter().filter(|n| !n.daytime).count()
    }
}

/// Places each step at its earliest allowed start after the previous one ends.
pub fn build(pb: &Playbook, start: Timestamp) -> Result<Plan, PlanError> {
    let w = &pb.window;
    let mut cursor = start;
    let mut steps: Vec<PlannedStep> = Vec::with_capacity(pb.steps.len());
    for step in &pb.steps {
        let s = earliest(w, step, cursor).ok_or_else(|| PlanError::Unschedulable {
            step: step.id.clone(),
            line: step.line,
            after: crate::window::local_label(cursor, w.time_zone()),
        })?;
        let end = s.saturating_add(step.gate_estimate()).unwrap_or(s);
        steps.push(PlannedStep {
            id: step.id.clone(),
            name: step.title().to_string(),
            phase: step.phase.clone(),
            kind: step.action.kind(),
            targets: step.targets.clone(),
            start: s,
            end,
            start_text: rfc3339(s, w),
            end_text: rfc3339(end, w),
            estimate_secs: step.estimate.map(|d| d.as_secs()),
            timeout_secs: step.timeout.map(|d| d.as_secs()),
            retries: step.retries,
            idempotent: step.idempotent,
            point_of_no_return: step.point_of_no_return,
            business_hours: step.business_hours,
            night: 0,
            waits_for_window: s > cursor,
            rendered: step.rendered.clone(),
            measured: None,
        });
        cursor = end;
    }
    let nights = group_nights(w, &mut steps);
    let warnings = warnings(pb, &steps);
    Ok(Plan {
        format: 1,
        name: pb.name.clone(),
        playbook: pb.path.display().to_string(),
        playbook_sha256: pb.sha256.clone(),
        composition: pb.composition.clone(),
        files: pb.files.clone(),
        targets: target_addresses(pb),
        window: window_lines(pb),
        timezone: pb.timezone.clone(),
        start,
        finish: cursor,
        start_text: rfc3339(start, w),
        finish_text: rfc3339(cursor, w),
        steps,
        nights,
        warnings,
    })
}

/// Every target's address by name.
pub fn target_addresses(pb: &Playbook) -> std::collections::BTreeMap<String, String> {
    pb.targets
        .iter()
        .map(|(n, t)| (n.clone(), t.address()))
        .collect()
}

/// The window in words, one fact a line: what a reviewed plan promises about when steps run.
pub fn window_lines(pb: &Playbook) -> Vec<String> {
    let Some(z) = &pb.timezone else {
        return vec!["no business hours".to_string()];
    };
    let mut v = vec![
        format!("time zone {z}"),
        format!("margin {}", human_duration(pb.window.margin())),
        format!(
            "when closed: {}",
            match pb.when_closed {
                crate::playbook::WhenClosed::Stop => "stop",
                crate::playbook::WhenClosed::Wait => "wait",
            }
        ),
    ];
    for r in pb.window.rules() {
        v.push(format!(
            "business hours {} {}-{}",
            r.days,
            r.from.strftime("%H:%M"),
            r.to.strftime("%H:%M")
        ));
    }
    if !pb.window.holidays().is_empty() {
        let days: Vec<String> = pb.window.holidays().iter().map(|d| d.to_string()).collect();
        v.push(format!("holidays {}", days.join(", ")));
    }
    v
}

/// An instant as RFC 3339 with the window's UTC offset at that instant.
pub fn rfc3339(t: Timestamp, w: &Window) -> String {
    t.to_zoned_datetime(w.time_zone().clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The earliest instant >= `t` at which `step` may start under the window.
pub fn earliest(w: &Window, step: &Step, t: Timestamp) -> Option<Timestamp> {
    match step.business_hours {
        BusinessHoursPolicy::Allow => Some(t),
        BusinessHoursPolicy::Refuse => w.earliest_start(t, step.gate_estimate(), HORIZON),
    }
}

/// A new night begins whenever business hours lie between the previous step's end and this
/// step's start. Steps that start inside business hours (`business_hours: allow`) form groups
/// of their own, shown as daytime work rather than as a night.
fn group_nights(w: &Window, steps: &mut [PlannedStep]) -> Vec<Night> {
    let mut groups: Vec<Night> = Vec::new();
    let mut prev_end: Option<Timestamp> = None;
    let mut nights = 0;
    for s in steps.iter_mut() {
        let second = s
            .start
            .saturating_add(SignedDuration::from_secs(1))
            .unwrap_or(s.start);
        let daytime = !w.business_intervals(s.start, second).is_empty();
        let new_group = match (prev_end, groups.last()) {
            (Some(pe), Some(g)) => {
                g.daytime != daytime
                    || (pe < s.start && !w.business_intervals(pe, s.start).is_empty())
            }
            _ => true,
        };
        if new_group {
            let closes = if daytime {
                None
            } else {
                w.next_business_start(s.start)
                    .and_then(|b| b.checked_sub(w.margin()).ok())
            };
            if !daytime {
                nights += 1;
            }
            groups.push(Night {
                number: groups.len() + 1,
                daytime,
                title: String::new(),
                start: s.start,
                closes,
                finish: s.end,
                start_text: rfc3339(s.start, w),
                closes_text: closes.map(|c| rfc3339(c, w)),
                finish_text: String::new(),
                steps: Vec::new(),
                fit: None,
            });
            if let Some(g) = groups.last_mut() {
                g.title = if daytime {
                    format!(
                        "In business hours (steps allowed then): {}",
                        crate::window::local_label(s.start, w.time_zone())
                    )
                } else {
                    format!(
                        "Night {nights}: {} -> {}",
                        crate::window::local_label(s.start, w.time_zone()),
                        closes
                            .map(|c| crate::window::local_label(c, w.time_zone()))
                            .unwrap_or_else(|| "no limit".into())
                    )
                };
            }
        }
        if let Some(g) = groups.last_mut() {
            g.steps.push(s.id.clone());
            g.finish = g.finish.max(s.end);
            g.finish_text = rfc3339(g.finish, w);
            s.night = g.number;
        }
        prev_end = Some(s.end);
    }
    groups
}

/// Notifications that cross the network readably.
fn notify_warnings(pb: &Playbook, out: &mut Vec<Warning>) {
    use crate::playbook::notify::{is_loopback, SinkKind, SmtpTls};
    for (i, sink) in pb.notify.iter().enumerate() {
        let n = i + 1;
        match &sink.kind {
            SinkKind::Email(e) if e.smtp.tls == SmtpTls::None && !is_loopback(&e.smtp.host) => {
                out.push(Warning {
                    code: "smtp-unencrypted",
                    step: None,
                    message: format!(
                        "notify entry {n} hands mail to {}:{} without TLS (`tls: none`): the messages{} cross the network readably",
                        e.smtp.host,
                        e.smtp.port,
                        if e.smtp.user.is_some() { " and the SMTP password" } else { "" }
                    ),
                })
            }
            SinkKind::Webhook(u) | SinkKind::Ntfy(u) if !u.https && !is_loopback(&u.host) => {
                out.push(Warning {
                    code: "notify-plain-http",
                    step: None,
                    message: format!(
                        "notify entry {n} posts to {} over plain HTTP: the notifications (step names, output tails) cross the network readably",
                        u.origin()
                    ),
                })
            }
            _ => {}
        }
    }
}

fn warnings(pb: &Playbook, planned: &[PlannedStep]) -> Vec<Warning> {
    let mut out = target_warnings(pb);
    notify_warnings(pb, &mut out);
    let last_ponr = pb.steps.iter().rposition(|s| s.point_of_no_return);
    for (i, step) in pb.steps.iter().enumerate() {
        if step.is_manual() {
            continue;
        }
        out.extend(check_warnings(step));
        out.extend(rollback_warning(pb, i, step, last_ponr));
        out.extend(unverified_warnings(pb, step));
        out.extend(estimate_warning(step));
    }
    out.extend(deadline_warnings(pb, planned));
    // Riskiest kind first; within a kind, playbook order (the sort is stable).
    out.sort_by_key(|w| warning_kind(w.code).rank);
    out
}

/// A warning about `step`.
fn warn(code: &'static str, step: &Step, message: String) -> Warning {
    Warning {
        code,
        step: Some(step.id.clone()),
        message,
    }
}

/// Targets whose connection can be read or impersonated on the network.
fn target_warnings(pb: &Playbook) -> Vec<Warning> {
    let mut out = Vec::new();
    for t in pb.targets.values() {
        if t.insecure {
            out.push(Warning {
                code: "insecure-tls",
                step: None,
                message: format!("target `{}` accepts any TLS certificate (`insecure: true`): whoever sits on the network path can impersonate it and read its password", t.name),
            });
        }
        if t.allow_unencrypted {
            out.push(Warning {
                code: "unencrypted",
                step: None,
                message: format!("target `{}` talks WinRM over plain HTTP without encryption (`allow_unencrypted: true`): its password and all output cross the network readably", t.name),
            });
        }
    }
    out
}

/// A step judged by its exit code alone, and one that then needs a person after an
/// interruption.
fn check_warnings(step: &Step) -> Vec<Warning> {
    let mut out = Vec::new();
    let verifies_itself =
        matches!(step.action, crate::playbook::Action::Upload { .. }) || step.transfers();
    if step.check.is_none() && !verifies_itself {
        out.push(warn(
            "no-check",
            step,
            format!(
                "`{}` has no check: success is judged by its exit code alone",
                step.id
            ),
        ));
        if !step.idempotent {
            out.push(warn("interruption-needs-human", step, format!("`{}` is not idempotent and has no check: if it is interrupted, an operator must inspect the target and use `runner mark`", step.id)));
        }
    }
    out
}

/// A step that changes something, before the point of no return, with no rollback.
fn rollback_warning(
    pb: &Playbook,
    i: usize,
    step: &Step,
    last_ponr: Option<usize>,
) -> Option<Warning> {
    // Read-only steps (allowed in business hours, or `changes: none`) have nothing to undo.
    let read_only = step.business_hours == BusinessHoursPolicy::Allow || step.changes_nothing;
    if step.rollback.is_none()
        && !read_only
        && last_ponr.is_some_and(|p| i < p)
        && !step.point_of_no_return
    {
        return Some(warn(
            "no-rollback-before-ponr",
            step,
            format!(
                "`{}` has no rollback and comes before the point of no return `{}`",
                step.id,
                pb.steps[last_ponr.unwrap_or(i)].id
            ),
        ));
    }
    None
}

/// Ways of running on Windows not yet tried on a real host: detached jobs, relays.
fn unverified_warnings(pb: &Playbook, step: &Step) -> Vec<Warning> {
    let mut out = Vec::new();
    let windows: Vec<&str> = step
        .targets
        .iter()
        .filter(|t| {
            pb.targets
                .get(*t)
                .is_some_and(|t| t.shell != crate::playbook::ShellKind::Sh && step.detached_on(t))
        })
        .map(String::as_str)
        .collect();
    if !windows.is_empty() {
        out.push(warn("detach-windows-unverified", step, format!("`{}` runs detached on Windows ({}) through a WMI-started wrapper that has not yet been run against a real Windows host: rehearse it first", step.id, windows.join(", "))));
    }
    let relayed = crate::playbook::relay::relayed_by_windows(pb, &step.targets);
    if !relayed.is_empty() {
        out.push(warn("relay-unverified", step, format!("`{}` runs on {} through a command line on a Windows target (e.g. psexec), unverified on real Windows 2000: rehearse that the output, the exit code and the quoting of the command come through", step.id, relayed.join(", "))));
    }
    out
}

/// A step the window gate cannot count, or one whose timeout comes before its estimate.
fn estimate_warning(step: &Step) -> Option<Warning> {
    match (step.estimate, step.timeout) {
        (None, _) => Some(warn("no-estimate", step, format!("`{}` has no estimate: the window gate counts it as 0 and it may run into business hours", step.id))),
        (Some(e), Some(t)) if t < e => Some(warn("timeout-below-estimate", step, format!("`{}` times out after {} but is estimated at {}", step.id, human_duration(t), human_duration(e)))),
        _ => None,
    }
}

/// Steps scheduled to end beyond their deadline after another step.
fn deadline_warnings(pb: &Playbook, planned: &[PlannedStep]) -> Vec<Warning> {
    let mut out = Vec::new();
    for (step, p) in pb.steps.iter().zip(planned) {
        if let Some(d) = &step.deadline {
            if let Some(after) = planned.iter().find(|x| x.id == d.after) {
                let limit = after.end.saturating_add(d.within).unwrap_or(after.end);
                if p.end > limit {
                    out.push(Warning {
                        code: "deadline-missed",
                        step: Some(step.id.clone()),
                        message: format!(
                            "`{}` is scheduled to end {} after `{}` ends, beyond its deadline of {}",
                            step.id,
                            human_duration(p.end.duration_since(after.end)),
                            d.after,
                            human_duration(d.within)
                        ),
                    });
                }
            }
        }
    }
    out
}

/// What a kind of review warning is called in the review and why it matters.
pub struct WarningKind {
    /// Lower is riskier: the order of kinds in the review.
    pub rank: u8,
    pub title: &'static str,
    pub why: &'static str,
}

/// Review warnings by kind, riskiest first: who can read the password, what cannot be undone,
/// what needs a person at night, what may overrun, and last what only weakens the evidence.
pub fn warning_kind(code: &str) -> WarningKind {
    let (rank, title, why) = match code {
        "insecure-tls" => (0, "Any TLS certificate accepted", "whoever sits on the network path can pose as the server and read its password"),
        "unencrypted" => (1, "WinRM without encryption", "the password and all output cross the network readably"),
        "smtp-unencrypted" => (1, "Mail without encryption", "the notifications and the SMTP password cross the network readably"),
        "notify-plain-http" => (1, "Notifications over plain HTTP", "the notifications, and any token in the URL, cross the network readably"),
        "no-rollback-before-ponr" => (2, "No rollback before a point of no return", "`runner rollback` will have to skip these steps: undoing them is manual (mark steps that only read with `changes: none`)"),
        "interruption-needs-human" => (3, "An interruption needs an operator", "not idempotent and without a check: if runner is interrupted during the step, a person must inspect the target and `runner mark` it"),
        "deadline-missed" => (4, "Deadline missed", "the plan as a whole takes too long"),
        "timeout-below-estimate" => (5, "Timeout shorter than the estimate", "the step would be stopped before it is expected to finish"),
        "no-estimate" => (6, "No estimate", "the window rule and the schedule count the step as 0 and it may run into business hours"),
        "detach-windows-unverified" => (7, "Detached on Windows, not yet proven", "the WMI-started wrapper has not been run against a real Windows host: rehearse it"),
        "relay-unverified" => (7, "Relayed through Windows, not yet proven", "a command line such as psexec on a Windows target carries the step: unverified on real Windows 2000, rehearse it"),
        "no-check" => (8, "No check", "success is judged by the exit code alone"),
        "estimate-vs-history" => (5, "Estimate and history disagree", "the guess and the measured runs differ by more than 2x; the plan uses the measured median"),
        _ => (9, "Other", ""),
    };
    WarningKind { rank, title, why }
}
