//! What a resume will do: the schedule of only the work that is left (what the journal says is
//! done is not scheduled again), and whether it still fits before business hours. Shared by
//! `plan` and `apply --dry-run` with a journal, `status` and `status --follow`.

use jiff::{SignedDuration, Timestamp};

use crate::duration::human_duration;
use crate::plan::{self, Plan, PlanError};
use crate::playbook::Playbook;

/// The rest of the work, scheduled from a given instant.
#[derive(Debug, Clone)]
pub struct Remaining {
    /// The schedule of the steps with work left (an empty plan when nothing is left).
    pub plan: Plan,
    /// Steps with at least one pair not done.
    pub steps_left: usize,
    /// When business hours next begin after the remaining work starts (None: no business hours).
    pub business_hours_at: Option<Timestamp>,
}

/// The playbook reduced to the steps that still have a pair not done.
pub fn left_playbook(pb: &Playbook, done: &dyn Fn(&str, &str) -> bool) -> Playbook {
    let mut left = pb.clone();
    left.steps
        .retain(|s| s.targets.iter().any(|t| !done(&s.id, t)));
    left
}

/// Schedules what is left from `from`.
pub fn remaining(
    pb: &Playbook,
    done: &dyn Fn(&str, &str) -> bool,
    from: Timestamp,
) -> Result<Remaining, PlanError> {
    let left = left_playbook(pb, done);
    let plan = plan::build(&left, from)?;
    let first = plan.steps.first().map(|s| s.start).unwrap_or(from);
    Ok(Remaining {
        steps_left: left.steps.len(),
        business_hours_at: pb.window.next_business_start(first),
        plan,
    })
}

impl Remaining {
    /// When the last remaining step is expected to end.
    pub fn end(&self) -> Timestamp {
        self.plan.finish
    }

    /// Whether the rest ends before business hours begin.
    pub fn fits(&self) -> bool {
        self.business_hours_at.is_none_or(|b| self.end() <= b)
    }

    /// "3 steps left, expected to end 05:40 CST, business hours at 07:15, margin 1h35m", or
    /// what does not fit, in the playbook's time zone.
    pub fn summary(&self, pb: &Playbook, now: Timestamp) -> String {
        if self.steps_left == 0 {
            return "nothing left to do".into();
        }
        let tz = pb.window.time_zone();
        let label = |t: Timestamp, zone: bool| {
            let z = t.to_zoned_datetime(tz.clone());
            let same_day = z.date() == now.to_zoned_datetime(tz.clone()).date();
            let fmt = match (same_day, zone) {
                (true, true) => "%H:%M %Z",
                (true, false) => "%H:%M",
                (false, true) => "%a %-d %b %H:%M %Z",
                (false, false) => "%a %-d %b %H:%M",
            };
            z.strftime(fmt).to_string()
        };
        let steps = if self.steps_left == 1 {
            "1 step left".to_string()
        } else {
            format!("{} steps left", self.steps_left)
        };
        let end = self.end();
        match self.business_hours_at {
            None => format!(
                "{steps}, expected to end {} (no business hours)",
                label(end, true)
            ),
            Some(b) if end <= b => format!(
                "{steps}, expected to end {}, business hours at {}, margin {}",
                label(end, true),
                label(b, false),
                human_duration(SignedDuration::from_secs(
                    b.duration_since(end).as_secs().max(0) / 60 * 60
                ))
            ),
            Some(b) => format!(
                "{steps}, expected to end {}: it does not fit before business hours at {} ({} night(s) of work)",
                label(end, true),
                label(b, false),
                self.plan.night_count().max(1)
            ),
        }
    }
}
