//! What the page shows of one cutover, as JSON: its status, what is left placed against the
//! window, its window events.

use jiff::Timestamp;
use serde::Serialize;

use super::Cutover;
use crate::clock::Clock;
use crate::journal::{self, Journal, JournalError};
use crate::playbook::Playbook;
use crate::status::{self, StatusView};

/// What the page shows of one cutover; `status` is exactly `runner status --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct PageCutover {
    pub status: Option<StatusView>,
    /// The journal could not be read (shown on the page instead of the status).
    pub error: Option<String>,
    /// What is left, placed against the business hours from now.
    pub schedule: Option<Schedule>,
    /// Window events (overrides, stops, waits, overruns) in the order recorded.
    pub events: Vec<WindowEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub steps: Vec<PageStep>,
    pub nights: Vec<ScheduledNight>,
    /// Expected end of everything left.
    pub finish: String,
    /// Why what is left cannot be placed, when it cannot.
    pub problem: Option<String>,
}

/// A step of what is left, as the page shows it (times as text in the playbook's zone);
/// `status` has its own [`crate::status::ScheduledStep`] with instants.
#[derive(Debug, Clone, Serialize)]
pub struct PageStep {
    pub id: String,
    pub name: String,
    pub start: String,
    pub end: String,
    pub night: usize,
    pub estimate_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduledNight {
    pub title: String,
    pub daytime: bool,
    pub finish: String,
    /// When business hours (minus the margin) begin; None without a limit.
    pub closes: Option<String>,
    /// Expected to end before `closes`.
    pub fits: bool,
    /// Minutes between the expected end and `closes`.
    pub margin_minutes: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowEvent {
    pub at: Timestamp,
    pub kind: String,
    pub step: Option<String>,
    pub detail: String,
}

/// Reads one cutover's status as `runner status` does, from a read-only journal.
pub(super) fn read_status(
    c: &Cutover,
    clock: &Clock,
    host: &str,
) -> Result<StatusView, JournalError> {
    let journal = Journal::open_read_only(&c.state)?;
    status_of(c, journal.as_ref(), clock, host)
}

pub(super) fn status_of(
    c: &Cutover,
    journal: Option<&Journal>,
    clock: &Clock,
    host: &str,
) -> Result<StatusView, JournalError> {
    let holder = match journal {
        Some(j) => j.holder(),
        None => journal::lock::read_holder_of(&c.state),
    };
    let mut view = status::status(&c.playbook, journal, clock.now(), host, holder.as_ref())?;
    view.now_simulated = clock.is_shifted();
    Ok(view)
}

pub(super) fn page_cutover(
    c: &Cutover,
    journal: Option<&Journal>,
    clock: &Clock,
    host: &str,
) -> PageCutover {
    let view = match status_of(c, journal, clock, host) {
        Ok(v) => v,
        Err(e) => {
            return PageCutover {
                status: None,
                error: Some(e.to_string()),
                schedule: None,
                events: Vec::new(),
            }
        }
    };
    let events = journal
        .and_then(|j| j.events(None).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| WindowEvent {
            at: e.at,
            kind: e.kind.as_str().to_owned(),
            step: e.step_id,
            detail: e.detail,
        })
        .collect();
    PageCutover {
        schedule: schedule_left(&c.playbook, &view),
        status: Some(view),
        error: None,
        events,
    }
}

/// The page data without what changes with the clock alone: "now", and the next step's
/// earliest start when that is now. Two readings equal in this are the same news.
pub(super) fn still(p: &PageCutover) -> PageCutover {
    let mut p = p.clone();
    if let Some(s) = p.status.as_mut() {
        s.now = Timestamp::UNIX_EPOCH;
        if let Some(n) = s.next.as_mut().filter(|n| n.now) {
            n.earliest = None;
        }
    }
    p
}

/// Places the steps not done yet against the business hours, from the view's "now" (to the
/// minute, so that the schedule does not change with every reading).
pub(super) fn schedule_left(pb: &Playbook, view: &StatusView) -> Option<Schedule> {
    let mut left = pb.clone();
    left.steps.retain(|s| {
        view.steps
            .iter()
            .find(|v| v.id == s.id)
            .is_none_or(|v| v.pairs.iter().any(|p| !p.status.is_done()))
    });
    if left.steps.is_empty() {
        return None;
    }
    let from = view
        .now
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or(view.now);
    let plan = match crate::plan::build(&left, from) {
        Ok(p) => p,
        Err(e) => {
            return Some(Schedule {
                steps: Vec::new(),
                nights: Vec::new(),
                finish: String::new(),
                problem: Some(e.to_string()),
            })
        }
    };
    Some(Schedule {
        steps: plan
            .steps
            .iter()
            .map(|s| PageStep {
                id: s.id.clone(),
                name: s.name.clone(),
                start: s.start_text.clone(),
                end: s.end_text.clone(),
                night: s.night,
                estimate_secs: s.estimate_secs,
            })
            .collect(),
        nights: plan
            .nights
            .iter()
            .map(|n| ScheduledNight {
                title: n.title.clone(),
                daytime: n.daytime,
                finish: n.finish_text.clone(),
                closes: n.closes_text.clone(),
                fits: n.closes.is_none_or(|c| n.finish <= c),
                margin_minutes: n.closes.map(|c| c.duration_since(n.finish).as_secs() / 60),
            })
            .collect(),
        finish: plan.finish_text.clone(),
        problem: None,
    })
}
