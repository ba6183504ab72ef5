//! The customer's business hours, and when a step may start without touching them.
//!
//! A playbook names the hours during which nothing may run (the customer is working). A step
//! attempt may start at instant `t` only if `[t, t + estimate + margin)` overlaps no
//! business-hours interval. Everything here is pure calendar arithmetic on [`jiff`]: no clock,
//! no I/O, so the planner, the engine and `validate` all get the same answers.
//!
//! Conventions the rest of the crate relies on:
//! - Intervals are half-open `[start, end)`: a step may end exactly when business starts and may
//!   start exactly when business ends.
//! - A rule's interval belongs to the local date on which it *starts*; a holiday removes the
//!   intervals starting on that date (an overnight shift starting the evening before a holiday
//!   still happens).
//! - Local times become instants with jiff's "compatible" disambiguation: a start in a DST gap
//!   moves later, an ambiguous time in a fold takes the earlier instant. A rule whose local times
//!   collapse on a DST night (in Chicago, `02:30`–`03:00` on the spring-forward night becomes
//!   03:30 CDT to 03:00 CDT) produces no interval that night.
//! - A step whose estimate plus margin is zero still may not start *inside* business hours:
//!   the empty range `[t, t)` is treated as the instant `t`.

use std::collections::BTreeSet;

use jiff::civil::{self, Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

mod days;
mod labels;
#[cfg(test)]
mod tests;

pub use days::{weekday_from_name, DaySet};
pub use labels::{
    clock_label, label_for_people, label_for_people_here, local_label, local_label_with_zone,
};

/// Shortest range a step occupies, so that a zero-length step is still checked at its start.
const MIN_NEED: SignedDuration = SignedDuration::from_nanos(1);

/// How far past the asked range one search chunk looks. A week plus a day holds a whole weekly
/// pattern, so most searches finish in one chunk.
const CHUNK: SignedDuration = SignedDuration::from_hours(8 * 24);

/// Days of slack when turning an instant range into local dates. A rule's interval can start a
/// day before the asked range and run past midnight; DST transitions shift local times by at
/// most a few hours, well inside the slack.
const PAD_BEFORE_DAYS: i32 = 3;
const PAD_AFTER_DAYS: i32 = 2;

/// How many days beyond the asked range [`Window::business_intervals`] follows an unbroken run
/// of business hours (a 24/7 schedule never ends) before reporting it cut.
const MAX_CHAIN_DAYS: i32 = 35;

/// A reference Monday for the "typical fortnight" of [`Window::longest_regular_gap`].
const REFERENCE_MONDAY: Date = civil::date(2024, 1, 1);

/// One `business_hours` entry: on each of `days`, business runs from `from` to `to`; a `to` at
/// or before `from` ends on the next day (so `from == to` is a full 24-hour day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoursRule {
    pub days: DaySet,
    pub from: Time,
    pub to: Time,
}

impl HoursRule {
    fn is_overnight(&self) -> bool {
        self.to <= self.from
    }
}

/// A half-open span of instants `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Interval {
    /// Does `[t, t + need)` touch this interval? Callers pass a `need` of at least `MIN_NEED`.
    fn blocks(&self, t: Timestamp, need_end: Timestamp) -> bool {
        self.start < need_end && self.end > t
    }
}

/// The answer to "may this step start now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    Closed {
        /// The business interval the step would run into (the first one, if several).
        blocked_by: Interval,
        /// The earliest allowed start within the horizon, if any.
        next_start: Option<Timestamp>,
    },
}

/// The business-hours window of one playbook.
#[derive(Clone, Debug)]
pub struct Window {
    tz: TimeZone,
    rules: Vec<HoursRule>,
    holidays: BTreeSet<Date>,
    margin: SignedDuration,
}

impl Window {
    /// A negative margin is treated as zero: a margin exists to keep distance from business
    /// hours, never to eat into them. (The playbook loader should reject it before this.)
    pub fn new(
        tz: TimeZone,
        rules: Vec<HoursRule>,
        holidays: impl IntoIterator<Item = Date>,
        margin: SignedDuration,
    ) -> Window {
        Window {
            tz,
            rules,
            holidays: holidays.into_iter().collect(),
            margin: margin.max(SignedDuration::ZERO),
        }
    }

    /// No business hours: everything allowed.
    pub fn unrestricted() -> Window {
        Window::new(TimeZone::UTC, Vec::new(), [], SignedDuration::ZERO)
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    pub fn margin(&self) -> SignedDuration {
        self.margin
    }

    pub fn rules(&self) -> &[HoursRule] {
        &self.rules
    }

    pub fn holidays(&self) -> &BTreeSet<Date> {
        &self.holidays
    }

    /// True when no rule names any day, so no instant is ever business hours.
    pub fn is_unrestricted(&self) -> bool {
        self.rules.iter().all(|r| r.days.is_empty())
    }

    /// Merged business intervals overlapping `[from, until)`, sorted.
    ///
    /// Intervals are reported whole, even where they reach outside the asked range, so the
    /// user sees e.g. the full weekend. An unbroken run of business hours is followed for at
    /// most five weeks beyond the range and reported cut there.
    pub fn business_intervals(&self, from: Timestamp, until: Timestamp) -> Vec<Interval> {
        if until <= from || self.is_unrestricted() {
            return Vec::new();
        }
        let first_day = self.local_date(from);
        let last_day = self.local_date(until);
        let mut before = PAD_BEFORE_DAYS;
        let mut after = PAD_AFTER_DAYS;
        loop {
            let d0 = first_day.saturating_add((-before).days());
            let d1 = last_day.saturating_add(after.days());
            let selected: Vec<Interval> = self
                .merged_for_dates(d0, d1)
                .into_iter()
                .filter(|iv| iv.blocks(from, until))
                .collect();
            // Intervals from dates before d0 end before midnight of d0+2, and intervals from
            // dates after d1 start after midnight of d1 (a day of slack for DST). Past those
            // marks, a reported start or end is real and not an artefact of where we stopped.
            let start_is_real = selected.first().is_none_or(|iv| {
                self.midnight(d0.saturating_add(2.days()))
                    .is_some_and(|m| iv.start > m)
            });
            let end_is_real = selected
                .last()
                .is_none_or(|iv| self.midnight(d1).is_some_and(|m| iv.end < m));
            let low_done =
                start_is_real || before >= PAD_BEFORE_DAYS + MAX_CHAIN_DAYS || d0 == Date::MIN;
            let high_done =
                end_is_real || after >= PAD_AFTER_DAYS + MAX_CHAIN_DAYS || d1 == Date::MAX;
            if low_done && high_done {
                return selected;
            }
            if !low_done {
                before += 7;
            }
            if !high_done {
                after += 7;
            }
        }
    }

    /// May a step with this estimate start at `t`? (margin added inside.) When it may not,
    /// says which interval is in the way and the earliest start within `horizon`.
    pub fn gate(&self, t: Timestamp, estimate: SignedDuration, horizon: SignedDuration) -> Gate {
        if self.is_unrestricted() {
            return Gate::Open;
        }
        let need_end = saturating_add(t, self.need(estimate));
        let Some(first) = self.first_touching(t, need_end) else {
            return Gate::Open;
        };
        // Ask again around the interval's start to report the whole run, not a piece of it.
        let blocked_by = self
            .business_intervals(first.start, saturating_add(first.start, MIN_NEED))
            .first()
            .copied()
            .unwrap_or(first);
        Gate::Closed {
            blocked_by,
            next_start: self.earliest_start(t, estimate, horizon),
        }
    }

    /// The earliest instant >= t at which such a step may start, searching no further than
    /// t + horizon; None if there is none (the plan calls that an error after 14 days).
    ///
    /// Allowed starts can only be `t` itself or the end of a business interval, so this hops
    /// from interval end to interval end, a week or so of calendar at a time, rather than
    /// scanning time. The work grows with the horizon (a week of calendar per hop at most),
    /// not with the estimate: keep the horizon to the weeks the plan cares about.
    pub fn earliest_start(
        &self,
        t: Timestamp,
        estimate: SignedDuration,
        horizon: SignedDuration,
    ) -> Option<Timestamp> {
        if self.is_unrestricted() {
            return Some(t);
        }
        let need = self.need(estimate);
        let limit = saturating_add(t, horizon.max(SignedDuration::ZERO));
        let mut t = t;
        let mut scan_from = t;
        loop {
            let chunk_end = saturating_add(scan_from, CHUNK);
            // Every business interval touching [scan_from, chunk_end) is in this list; one
            // that starts later may be missing its predecessors, so it waits for its chunk.
            let intervals = self.covering(scan_from, chunk_end);
            for iv in &intervals {
                if iv.end <= t || iv.start >= chunk_end {
                    continue;
                }
                if iv.start >= saturating_add(t, need) {
                    return Some(t);
                }
                // Merged intervals never touch, so the next possible start is this end.
                t = iv.end;
                if t > limit {
                    return None;
                }
            }
            if saturating_add(t, need) <= chunk_end {
                return Some(t);
            }
            scan_from = chunk_end.max(t);
        }
    }

    /// The longest gap between business intervals in a typical fortnight (ignoring holidays),
    /// which `validate` uses to skip the calendar search for steps that surely fit; None when
    /// unrestricted.
    ///
    /// Measured in wall-clock time (as if the zone had no DST), so a gap spanning a DST night
    /// can really be an hour shorter or longer than this. `Some(ZERO)` means business never
    /// stops (apart from holidays).
    pub fn longest_regular_gap(&self) -> Option<SignedDuration> {
        if self.is_unrestricted() {
            return None;
        }
        let civil_week = Window::new(TimeZone::UTC, self.rules.clone(), [], SignedDuration::ZERO);
        let from = REFERENCE_MONDAY.saturating_add((-7).days());
        let until = REFERENCE_MONDAY.saturating_add(21.days());
        let intervals = civil_week.merged_for_dates(from, until);
        let (Some(lo), Some(hi)) = (
            civil_week.midnight(REFERENCE_MONDAY),
            civil_week.midnight(REFERENCE_MONDAY.saturating_add(14.days())),
        ) else {
            return None;
        };
        // The pattern repeats weekly, so every kind of gap begins somewhere in [lo, hi), and
        // the dates generated around it make sure the following interval is known.
        let longest = intervals
            .windows(2)
            .filter(|pair| pair[0].end >= lo && pair[0].end < hi)
            .map(|pair| pair[0].end.duration_until(pair[1].start))
            .max()
            .unwrap_or(SignedDuration::ZERO);
        Some(longest)
    }

    /// The longest stretch without business hours that begins in `[from, until]` (a stretch
    /// already under way at `from` counts from `from`), with its real end: the next business
    /// start, even past `until`. This is the calendar as it is (holidays, daylight saving),
    /// for saying why [`Window::earliest_start`] found nothing. None when unrestricted or when
    /// `until` is before `from`; an end of `Timestamp::MAX` means business hours never resume.
    pub fn longest_gap(&self, from: Timestamp, until: Timestamp) -> Option<Interval> {
        if self.is_unrestricted() || until < from {
            return None;
        }
        // Past this, a gap without a following business interval is taken as endless (only a
        // rule that no date ever produces gets here; a weekly rule recurs within days).
        let give_up = saturating_add(until, SignedDuration::from_hours(24 * 35));
        let mut best: Option<Interval> = None;
        let mut keep = |gap: Interval| {
            if best
                .is_none_or(|b| b.start.duration_until(b.end) < gap.start.duration_until(gap.end))
            {
                best = Some(gap);
            }
        };
        // Same walk as `earliest_start`: `cursor` is where the current gap began (or business
        // ends), and intervals are read a chunk at a time.
        let mut cursor = from;
        let mut scan_from = from;
        loop {
            let chunk_end = saturating_add(scan_from, CHUNK);
            for iv in self.covering(scan_from, chunk_end) {
                if iv.end <= cursor || iv.start >= chunk_end {
                    continue;
                }
                if iv.start > cursor {
                    keep(Interval {
                        start: cursor,
                        end: iv.start,
                    });
                }
                cursor = iv.end;
                if cursor > until {
                    return best;
                }
            }
            if chunk_end >= give_up || chunk_end == Timestamp::MAX {
                keep(Interval {
                    start: cursor,
                    end: Timestamp::MAX,
                });
                return best;
            }
            scan_from = chunk_end.max(cursor);
        }
    }

    /// The start of the next business interval starting at or after `t` (for "time left before
    /// business hours"). If `t` is inside business hours, that is the start of a later one.
    /// None when unrestricted, or when business hours never restart (a 24/7 schedule).
    pub fn next_business_start(&self, t: Timestamp) -> Option<Timestamp> {
        if self.is_unrestricted() {
            return None;
        }
        // Past the last holiday, every weekly pattern shows a start within two weeks.
        let after_holidays = self
            .holidays
            .last()
            .and_then(|d| self.midnight(d.saturating_add(2.days())))
            .map_or(t, |m| m.max(t));
        let give_up = saturating_add(after_holidays, SignedDuration::from_hours(15 * 24));
        let mut from = t;
        loop {
            let until = saturating_add(from, CHUNK);
            // A run reaching back before `from` may show a start where generation began, not
            // where the run began; starts inside [from, until) are real.
            let found = self
                .covering(from, until)
                .into_iter()
                .find(|iv| iv.start >= from && iv.start < until);
            if let Some(iv) = found {
                return Some(iv.start);
            }
            if until >= give_up || until == Timestamp::MAX {
                return None;
            }
            from = until;
        }
    }

    /// How long a step keeps the window busy: estimate (never negative) plus margin, and at
    /// least a nanosecond so a zero-length step cannot start inside business hours.
    fn need(&self, estimate: SignedDuration) -> SignedDuration {
        estimate
            .max(SignedDuration::ZERO)
            .saturating_add(self.margin)
            .max(MIN_NEED)
    }

    /// The first business interval touching `[t, until)`, looked for a chunk at a time so a
    /// huge estimate does not make us lay out years of calendar. It may be a cut piece of a
    /// longer run.
    fn first_touching(&self, t: Timestamp, until: Timestamp) -> Option<Interval> {
        let mut from = t;
        loop {
            let chunk_end = saturating_add(from, CHUNK).min(until);
            let found = self
                .covering(from, chunk_end)
                .into_iter()
                .find(|iv| iv.end > t && iv.start < chunk_end);
            if found.is_some() || chunk_end >= until || chunk_end == Timestamp::MAX {
                return found;
            }
            from = chunk_end;
        }
    }

    fn local_date(&self, t: Timestamp) -> Date {
        self.tz.to_datetime(t).date()
    }

    fn midnight(&self, d: Date) -> Option<Timestamp> {
        self.tz.to_timestamp(d.to_datetime(Time::midnight())).ok()
    }

    /// Merged intervals including every business interval that touches `[from, until)`.
    /// Runs reaching outside the range may be reported cut where generation stopped.
    fn covering(&self, from: Timestamp, until: Timestamp) -> Vec<Interval> {
        let d0 = self
            .local_date(from)
            .saturating_add((-PAD_BEFORE_DAYS).days());
        let d1 = self.local_date(until).saturating_add(PAD_AFTER_DAYS.days());
        self.merged_for_dates(d0, d1)
    }

    /// The intervals of every rule starting on the local dates `first..=last`, holidays
    /// removed, sorted and merged (overlapping or adjacent intervals become one).
    fn merged_for_dates(&self, first: Date, last: Date) -> Vec<Interval> {
        let mut raw = Vec::new();
        let mut day = first;
        while day <= last {
            if !self.holidays.contains(&day) {
                for rule in &self.rules {
                    if let Some(iv) = self.rule_interval(rule, day) {
                        raw.push(iv);
                    }
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        merge(raw)
    }

    fn rule_interval(&self, rule: &HoursRule, day: Date) -> Option<Interval> {
        if !rule.days.contains(day.weekday()) {
            return None;
        }
        let end_day = if rule.is_overnight() {
            day.tomorrow().ok()?
        } else {
            day
        };
        let start = self.tz.to_timestamp(day.to_datetime(rule.from)).ok()?;
        let end = self.tz.to_timestamp(end_day.to_datetime(rule.to)).ok()?;
        // On a spring-forward night a rule lying wholly inside the gap maps to nothing.
        (start < end).then_some(Interval { start, end })
    }
}

fn saturating_add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.saturating_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

fn merge(mut raw: Vec<Interval>) -> Vec<Interval> {
    raw.sort_by_key(|iv| iv.start);
    let mut merged: Vec<Interval> = Vec::with_capacity(raw.len());
    for iv in raw {
        match merged.last_mut() {
            Some(last) if iv.start <= last.end => last.end = last.end.max(iv.end),
            _ => merged.push(iv),
        }
    }
    merged
}
