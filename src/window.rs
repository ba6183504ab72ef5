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
use std::fmt;

use jiff::civil::{self, Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

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

/// A set of weekdays (Monday..Sunday).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DaySet(u8);

impl DaySet {
    pub fn single(w: Weekday) -> Self {
        let mut set = DaySet::default();
        set.insert(w);
        set
    }

    /// Days from `from` to `to` inclusive, wrapping over the weekend: `fri-mon` is
    /// fri, sat, sun, mon. `mon-mon` is just Monday.
    pub fn range(from: Weekday, to: Weekday) -> Self {
        let mut set = DaySet::single(from);
        let mut w = from;
        while w != to {
            w = w.next();
            set.insert(w);
        }
        set
    }

    pub fn insert(&mut self, w: Weekday) {
        self.0 |= Self::bit(w);
    }

    pub fn contains(&self, w: Weekday) -> bool {
        self.0 & Self::bit(w) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The days in the set, Monday first.
    pub fn iter(&self) -> impl Iterator<Item = Weekday> + '_ {
        let set = *self;
        Weekday::Monday
            .cycle_forward()
            .take(7)
            .filter(move |w| set.contains(*w))
    }

    fn bit(w: Weekday) -> u8 {
        1 << w.to_monday_zero_offset()
    }
}

/// The one reader of a weekday's name (`mon`, `Tues`, `thursday`, ...): the playbook's
/// `days:` are read with it.
pub fn weekday_from_name(name: &str) -> Option<Weekday> {
    let lower = name.trim().to_ascii_lowercase();
    let w = match lower.as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tues" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    };
    Some(w)
}

fn weekday_short(w: Weekday) -> &'static str {
    match w {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

/// Writes the set compactly (`mon-fri`, `sat,sun`, `mon,wed-fri`), Monday first, so the dry
/// run shows the same spelling a consultant would write.
impl fmt::Display for DaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let days: Vec<Weekday> = self.iter().collect();
        let mut first = true;
        let mut i = 0;
        while i < days.len() {
            let mut j = i;
            while j + 1 < days.len()
                && days[j + 1].to_monday_zero_offset() == days[j].to_monday_zero_offset() + 1
            {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(weekday_short(days[i]))?;
            if j > i + 1 {
                write!(f, "-{}", weekday_short(days[j]))?;
            } else if j == i + 1 {
                write!(f, ",{}", weekday_short(days[j]))?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

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

/// Human text for an instant in the window's zone, short enough for a table column:
/// "Mon 30 Nov 18:00".
pub fn local_label(t: Timestamp, tz: &TimeZone) -> String {
    format_in_zone(t, tz, "%a %-d %b %H:%M")
}

/// Like [`local_label`] with the year and the zone abbreviation, for messages that must not be
/// misread across a DST change or a year end: "Mon 30 Nov 2026 18:00 CST".
pub fn local_label_with_zone(t: Timestamp, tz: &TimeZone) -> String {
    format_in_zone(t, tz, "%a %-d %b %Y %H:%M %Z")
}

/// A time as a person reads it: in the customer's zone (the window's) with the year and the
/// zone, and the operator's own clock beside it when it reads differently:
/// "Wed 9 Dec 2026 18:00 CST (Thu 01:00 CET here)". The operator's zone is the system's (`TZ`).
pub fn label_for_people(t: Timestamp, tz: &TimeZone) -> String {
    label_for_people_here(t, tz, &TimeZone::system())
}

/// [`label_for_people`] with the operator's zone given.
pub fn label_for_people_here(t: Timestamp, tz: &TimeZone, here: &TimeZone) -> String {
    let theirs = local_label_with_zone(t, tz);
    if here.to_offset(t) == tz.to_offset(t) {
        return theirs;
    }
    format!("{theirs} ({} here)", format_in_zone(t, here, "%a %H:%M %Z"))
}

/// "18:12:13 CST": the time of day in the customer's zone, for progress lines.
pub fn clock_label(t: Timestamp, tz: &TimeZone) -> String {
    format_in_zone(t, tz, "%H:%M:%S %Z")
}

fn format_in_zone(t: Timestamp, tz: &TimeZone, format: &str) -> String {
    let zoned = t.to_zoned_datetime(tz.clone());
    // Formatting can only fail for exotic zones without an abbreviation; fall back to the
    // unambiguous RFC 3339 instant rather than print nothing.
    jiff::fmt::strtime::format(format, &zoned).unwrap_or_else(|_| zoned.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    #[test]
    fn a_time_for_people_is_the_customers_with_the_operators_beside_it() {
        let chicago = TimeZone::get("America/Chicago").unwrap();
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let t: Timestamp = "2026-12-10T00:00:00Z".parse().unwrap();
        assert_eq!(
            label_for_people_here(t, &chicago, &paris),
            "Wed 9 Dec 2026 18:00 CST (Thu 01:00 CET here)"
        );
        assert_eq!(
            label_for_people_here(t, &chicago, &chicago),
            "Wed 9 Dec 2026 18:00 CST"
        );
        assert_eq!(clock_label(t, &chicago), "18:00:00 CST");
    }

    const HOUR: SignedDuration = SignedDuration::from_hours(1);
    const MIN: SignedDuration = SignedDuration::from_mins(1);
    const TWO_WEEKS: SignedDuration = SignedDuration::from_hours(14 * 24);

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn local(tz: &TimeZone, d: Date, h: i8, m: i8) -> Timestamp {
        tz.to_timestamp(d.at(h, m, 0, 0)).unwrap()
    }

    /// `mon-fri`, `sun`, `all`: the few spellings these tests use (the playbook's reader is
    /// in playbook/validate.rs).
    fn days(s: &str) -> DaySet {
        let day = |d: &str| weekday_from_name(d).unwrap();
        match s.split_once('-') {
            Some((a, b)) => DaySet::range(day(a), day(b)),
            None if s == "all" => DaySet::range(Weekday::Monday, Weekday::Sunday),
            None => DaySet::single(day(s)),
        }
    }

    fn rule(d: &str, from: Time, to: Time) -> HoursRule {
        HoursRule {
            days: days(d),
            from,
            to,
        }
    }

    /// Mon-Fri 07:30-18:00 in Chicago, the shape most playbooks have.
    fn office(margin: SignedDuration, holidays: Vec<Date>) -> Window {
        Window::new(
            tz("America/Chicago"),
            vec![rule("mon-fri", time(7, 30, 0, 0), time(18, 0, 0, 0))],
            holidays,
            margin,
        )
    }

    #[test]
    fn calendar_facts_used_below() {
        assert_eq!(date(2026, 3, 8).weekday(), Weekday::Sunday);
        assert_eq!(date(2026, 3, 29).weekday(), Weekday::Sunday);
        assert_eq!(date(2026, 10, 25).weekday(), Weekday::Sunday);
        assert_eq!(date(2026, 11, 1).weekday(), Weekday::Sunday);
        assert_eq!(date(2026, 11, 30).weekday(), Weekday::Monday);
        assert_eq!(date(2026, 12, 23).weekday(), Weekday::Wednesday);
    }

    #[test]
    fn day_set_display_and_wrap() {
        let wrap = DaySet::range(Weekday::Friday, Weekday::Monday);
        let expected: Vec<Weekday> = vec![
            Weekday::Monday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ];
        assert_eq!(wrap.iter().collect::<Vec<_>>(), expected);
        assert_eq!(wrap.to_string(), "mon,fri-sun");
        assert_eq!(days("mon-fri").to_string(), "mon-fri");
        let mut weekend = DaySet::single(Weekday::Saturday);
        weekend.insert(Weekday::Sunday);
        assert_eq!(weekend.to_string(), "sat,sun");
        let mut split = DaySet::range(Weekday::Wednesday, Weekday::Friday);
        split.insert(Weekday::Monday);
        assert_eq!(split.to_string(), "mon,wed-fri");
        assert_eq!(days("all").to_string(), "mon-sun");
        assert_eq!(
            DaySet::range(Weekday::Tuesday, Weekday::Tuesday),
            DaySet::single(Weekday::Tuesday)
        );
        assert!(DaySet::default().is_empty());
        assert!(!days("all").is_empty());
        assert_eq!(DaySet::default().to_string(), "none");
    }

    #[test]
    fn weekday_names_one_reader() {
        for name in ["tue", "Tues", "TUESDAY", " tuesday "] {
            assert_eq!(weekday_from_name(name), Some(Weekday::Tuesday), "{name}");
        }
        assert_eq!(weekday_from_name("thurs"), Some(Weekday::Thursday));
        assert_eq!(weekday_from_name("fry"), None);
    }

    #[test]
    fn weeknight_step_runs_after_close() {
        let w = office(SignedDuration::ZERO, vec![]);
        let chi = w.time_zone().clone();
        let tue = date(2026, 6, 16);
        let close = local(&chi, tue, 18, 0);
        let open_wed = local(&chi, date(2026, 6, 17), 7, 30);
        // At 14:00 a 2h step waits for the evening.
        let afternoon = local(&chi, tue, 14, 0);
        assert_eq!(
            w.earliest_start(afternoon, 2 * HOUR, TWO_WEEKS),
            Some(close)
        );
        // The night is 13.5h: a step of exactly that fits, a minute more does not.
        assert_eq!(
            w.earliest_start(close, 13 * HOUR + 30 * MIN, TWO_WEEKS),
            Some(close)
        );
        let friday_close = local(&chi, date(2026, 6, 19), 18, 0);
        assert_eq!(
            w.earliest_start(close, 13 * HOUR + 31 * MIN, TWO_WEEKS),
            Some(friday_close)
        );
        assert_eq!(
            w.business_intervals(afternoon, close),
            vec![Interval {
                start: local(&chi, tue, 7, 30),
                end: close
            }]
        );
        assert_eq!(w.next_business_start(afternoon), Some(open_wed));
        assert_eq!(w.next_business_start(close), Some(open_wed));
    }

    #[test]
    fn friday_evening_to_monday_and_long_step_waits_for_weekend() {
        let w = office(SignedDuration::ZERO, vec![]);
        let chi = w.time_zone().clone();
        let fri_close = local(&chi, date(2026, 6, 19), 18, 0);
        let mon_open = local(&chi, date(2026, 6, 22), 7, 30);
        let weekend = fri_close.duration_until(mon_open);
        assert_eq!(weekend, 61 * HOUR + 30 * MIN);
        // From Tuesday evening, a 20h step is too long for any weeknight.
        let tue_evening = local(&chi, date(2026, 6, 16), 19, 0);
        assert_eq!(
            w.earliest_start(tue_evening, 20 * HOUR, TWO_WEEKS),
            Some(fri_close)
        );
        // Saturday noon: the rest of the weekend is free, the step starts right away.
        let sat_noon = local(&chi, date(2026, 6, 20), 12, 0);
        assert_eq!(
            w.earliest_start(sat_noon, 20 * HOUR, TWO_WEEKS),
            Some(sat_noon)
        );
        // Longer than any gap: nothing within the horizon.
        assert_eq!(
            w.earliest_start(tue_evening, weekend + MIN, TWO_WEEKS),
            None
        );
        assert_eq!(w.longest_regular_gap(), Some(weekend));
        // A horizon that ends before Friday finds nothing either.
        assert_eq!(w.earliest_start(tue_evening, 20 * HOUR, 24 * HOUR), None);
    }

    #[test]
    fn margin_is_added_to_every_step() {
        let w = office(15 * MIN, vec![]);
        let chi = w.time_zone().clone();
        let wed_open = local(&chi, date(2026, 6, 17), 7, 30);
        let t = local(&chi, date(2026, 6, 17), 5, 0);
        // 2h15m + 15m margin ends exactly at 07:30: allowed.
        assert_eq!(w.gate(t, 2 * HOUR + 15 * MIN, TWO_WEEKS), Gate::Open);
        // One more minute and the margin reaches into business hours.
        let Gate::Closed {
            blocked_by,
            next_start,
        } = w.gate(t, 2 * HOUR + 16 * MIN, TWO_WEEKS)
        else {
            panic!("expected closed");
        };
        assert_eq!(blocked_by.start, wed_open);
        assert_eq!(next_start, Some(local(&chi, date(2026, 6, 17), 18, 0)));
        // A step without estimate still needs the margin.
        let t = local(&chi, date(2026, 6, 17), 7, 16);
        assert!(matches!(
            w.gate(t, SignedDuration::ZERO, TWO_WEEKS),
            Gate::Closed { .. }
        ));
        assert_eq!(w.margin(), 15 * MIN);
        // Negative margins are not allowed to shrink the protection.
        assert_eq!(office(-HOUR, vec![]).margin(), SignedDuration::ZERO);
    }

    #[test]
    fn half_open_edges() {
        let w = office(SignedDuration::ZERO, vec![]);
        let chi = w.time_zone().clone();
        let d = date(2026, 6, 17);
        let open = local(&chi, d, 7, 30);
        let close = local(&chi, d, 18, 0);
        // Ending exactly at the business start is fine.
        assert_eq!(w.gate(open - HOUR, HOUR, TWO_WEEKS), Gate::Open);
        // Starting exactly at the business end is fine.
        assert_eq!(w.gate(close, HOUR, TWO_WEEKS), Gate::Open);
        // A zero-length step may start at the start? No: it would start inside business.
        assert!(matches!(
            w.gate(open, SignedDuration::ZERO, TWO_WEEKS),
            Gate::Closed { .. }
        ));
        // One nanosecond before the end is still inside.
        let just_before = close - SignedDuration::from_nanos(1);
        assert_eq!(
            w.earliest_start(just_before, SignedDuration::ZERO, TWO_WEEKS),
            Some(close)
        );
        // business_intervals is half-open too: [close, ...) does not include the day.
        assert!(w.business_intervals(close, close + HOUR).is_empty());
        assert!(w.business_intervals(open - HOUR, open).is_empty());
        assert_eq!(w.business_intervals(open - HOUR, open + MIN).len(), 1);
    }

    #[test]
    fn overnight_rule_crosses_midnight_and_belongs_to_its_start_day() {
        // A night shift Mon-Fri 22:00-06:00: the Friday shift ends Saturday morning.
        let w = Window::new(
            tz("Europe/Berlin"),
            vec![rule("mon-fri", time(22, 0, 0, 0), time(6, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        let ber = w.time_zone().clone();
        let fri = date(2026, 6, 19);
        let sat = date(2026, 6, 20);
        let sat_2am = local(&ber, sat, 2, 0);
        let shift = Interval {
            start: local(&ber, fri, 22, 0),
            end: local(&ber, sat, 6, 0),
        };
        assert_eq!(w.business_intervals(sat_2am, sat_2am + HOUR), vec![shift]);
        assert_eq!(w.earliest_start(sat_2am, HOUR, TWO_WEEKS), Some(shift.end));
        // No Sunday shift: Sunday evening to Monday 22:00 is free.
        let sun_23 = local(&ber, date(2026, 6, 21), 23, 0);
        assert_eq!(w.earliest_start(sun_23, 20 * HOUR, TWO_WEEKS), Some(sun_23));
        // The Monday-morning hours belong to no shift (Sunday has none).
        let mon_1am = local(&ber, date(2026, 6, 22), 1, 0);
        assert_eq!(w.gate(mon_1am, HOUR, TWO_WEEKS), Gate::Open);
        // Saturday 06:00 to Monday 22:00 is the longest gap.
        assert_eq!(w.longest_regular_gap(), Some(64 * HOUR));
    }

    #[test]
    fn adjacent_rules_merge() {
        let w = Window::new(
            tz("America/Chicago"),
            vec![
                rule("mon-fri", time(8, 0, 0, 0), time(12, 0, 0, 0)),
                rule("mon-fri", time(12, 0, 0, 0), time(17, 0, 0, 0)),
                rule("mon-fri", time(16, 0, 0, 0), time(18, 0, 0, 0)),
            ],
            [],
            SignedDuration::ZERO,
        );
        let chi = w.time_zone().clone();
        let d = date(2026, 6, 17);
        assert_eq!(
            w.business_intervals(local(&chi, d, 0, 0), local(&chi, d, 23, 0)),
            vec![Interval {
                start: local(&chi, d, 8, 0),
                end: local(&chi, d, 18, 0)
            }]
        );
    }

    #[test]
    fn around_the_clock_weekdays_report_the_whole_run() {
        let w = Window::new(
            tz("America/Chicago"),
            vec![rule("mon-fri", time(0, 0, 0, 0), time(0, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        let chi = w.time_zone().clone();
        let wed = local(&chi, date(2026, 6, 17), 12, 0);
        let run = Interval {
            start: local(&chi, date(2026, 6, 15), 0, 0),
            end: local(&chi, date(2026, 6, 20), 0, 0),
        };
        assert_eq!(w.business_intervals(wed, wed + HOUR), vec![run]);
        assert!(matches!(
            w.gate(wed, HOUR, TWO_WEEKS),
            Gate::Closed { blocked_by, next_start: Some(n) } if blocked_by == run && n == run.end
        ));
        assert_eq!(w.longest_regular_gap(), Some(48 * HOUR));
        assert_eq!(
            w.next_business_start(wed),
            Some(local(&chi, date(2026, 6, 22), 0, 0))
        );
    }

    #[test]
    fn business_every_hour_of_the_week_never_allows_a_start() {
        let w = Window::new(
            tz("Europe/Berlin"),
            vec![rule("all", time(9, 0, 0, 0), time(9, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        let t = ts("2026-03-20T10:00:00Z");
        assert_eq!(w.earliest_start(t, MIN, TWO_WEEKS), None);
        assert_eq!(w.longest_regular_gap(), Some(SignedDuration::ZERO));
        assert_eq!(w.next_business_start(t), None);
        // Reported run is cut, but it covers the asked range on both sides.
        let run = w.business_intervals(t, t + HOUR);
        assert_eq!(run.len(), 1);
        assert!(run[0].start < t - 7 * 24 * HOUR && run[0].end > t + 7 * 24 * HOUR);
    }

    #[test]
    fn holidays_make_a_long_gap() {
        let christmas = vec![date(2026, 12, 24), date(2026, 12, 25)];
        let w = office(SignedDuration::ZERO, christmas);
        let chi = w.time_zone().clone();
        let wed_close = local(&chi, date(2026, 12, 23), 18, 0);
        let mon_open = local(&chi, date(2026, 12, 28), 7, 30);
        assert_eq!(wed_close.duration_until(mon_open), 109 * HOUR + 30 * MIN);
        let wed_morning = local(&chi, date(2026, 12, 23), 9, 0);
        // A 100h cutover fits only over Christmas.
        assert_eq!(
            w.earliest_start(wed_morning, 100 * HOUR, TWO_WEEKS),
            Some(wed_close)
        );
        assert_eq!(w.next_business_start(wed_close), Some(mon_open));
        assert_eq!(
            w.longest_gap(wed_morning, wed_morning + TWO_WEEKS),
            Some(Interval {
                start: wed_close,
                end: mon_open
            })
        );
        // Without the holidays it would never fit.
        let plain = office(SignedDuration::ZERO, vec![]);
        assert_eq!(
            plain.earliest_start(wed_morning, 100 * HOUR, TWO_WEEKS),
            None
        );
        // Holidays do not count as a regular gap.
        assert_eq!(w.longest_regular_gap(), Some(61 * HOUR + 30 * MIN));
    }

    #[test]
    fn holiday_keeps_the_overnight_shift_starting_the_evening_before() {
        let w = Window::new(
            tz("America/Chicago"),
            vec![rule("all", time(22, 0, 0, 0), time(6, 0, 0, 0))],
            [date(2026, 12, 25)],
            SignedDuration::ZERO,
        );
        let chi = w.time_zone().clone();
        let xmas_3am = local(&chi, date(2026, 12, 25), 3, 0);
        // The shift starting on the 24th still runs into the 25th.
        assert_eq!(
            w.earliest_start(xmas_3am, HOUR, TWO_WEEKS),
            Some(local(&chi, date(2026, 12, 25), 6, 0))
        );
        // The shift starting on the 25th is gone: 06:00 on the 25th to 22:00 on the 26th.
        let xmas_23 = local(&chi, date(2026, 12, 25), 23, 0);
        assert_eq!(w.gate(xmas_23, 20 * HOUR, TWO_WEEKS), Gate::Open);
    }

    #[test]
    fn no_business_hours_means_unrestricted() {
        let w = Window::new(
            tz("America/Chicago"),
            vec![],
            [date(2026, 12, 25)],
            15 * MIN,
        );
        assert!(w.is_unrestricted());
        assert!(Window::unrestricted().is_unrestricted());
        assert!(!office(SignedDuration::ZERO, vec![]).is_unrestricted());
        let t = ts("2026-06-17T15:00:00Z");
        assert_eq!(w.gate(t, 1000 * HOUR, SignedDuration::ZERO), Gate::Open);
        assert_eq!(w.earliest_start(t, 1000 * HOUR, TWO_WEEKS), Some(t));
        assert!(w.business_intervals(t, t + 1000 * HOUR).is_empty());
        assert_eq!(w.longest_regular_gap(), None);
        assert_eq!(w.next_business_start(t), None);
    }

    #[test]
    fn sunday_is_23_and_25_hours_long_in_chicago() {
        let w = Window::new(
            tz("America/Chicago"),
            vec![rule("sun", time(0, 0, 0, 0), time(0, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        let spring = w.business_intervals(ts("2026-03-08T12:00:00Z"), ts("2026-03-08T13:00:00Z"));
        assert_eq!(
            spring,
            vec![Interval {
                start: ts("2026-03-08T06:00:00Z"),
                end: ts("2026-03-09T05:00:00Z"),
            }]
        );
        assert_eq!(spring[0].start.duration_until(spring[0].end), 23 * HOUR);
        let fall = w.business_intervals(ts("2026-11-01T12:00:00Z"), ts("2026-11-01T13:00:00Z"));
        assert_eq!(
            fall,
            vec![Interval {
                start: ts("2026-11-01T05:00:00Z"),
                end: ts("2026-11-02T06:00:00Z"),
            }]
        );
        assert_eq!(fall[0].start.duration_until(fall[0].end), 25 * HOUR);
    }

    #[test]
    fn sunday_is_23_and_25_hours_long_in_berlin() {
        let w = Window::new(
            tz("Europe/Berlin"),
            vec![rule("sun", time(0, 0, 0, 0), time(0, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        assert_eq!(
            w.business_intervals(ts("2026-03-29T12:00:00Z"), ts("2026-03-29T13:00:00Z")),
            vec![Interval {
                start: ts("2026-03-28T23:00:00Z"),
                end: ts("2026-03-29T22:00:00Z"),
            }]
        );
        assert_eq!(
            w.business_intervals(ts("2026-10-25T12:00:00Z"), ts("2026-10-25T13:00:00Z")),
            vec![Interval {
                start: ts("2026-10-24T22:00:00Z"),
                end: ts("2026-10-25T23:00:00Z"),
            }]
        );
    }

    #[test]
    fn dst_weekends_in_chicago_change_what_fits() {
        let w = office(SignedDuration::ZERO, vec![]);
        // Spring forward: Fri 6 Mar 18:00 CST to Mon 9 Mar 07:30 CDT is 60.5h, not 61.5h.
        let fri = ts("2026-03-07T00:00:00Z");
        assert_eq!(w.next_business_start(fri), Some(ts("2026-03-09T12:30:00Z")));
        // A 61h step does not fit that weekend and waits for the next Friday (CDT now).
        assert_eq!(
            w.earliest_start(fri, 61 * HOUR, TWO_WEEKS),
            Some(ts("2026-03-13T23:00:00Z"))
        );
        // Fall back: Fri 30 Oct 18:00 CDT to Mon 2 Nov 07:30 CST is 62.5h; a 62h step that
        // fits no ordinary weekend fits this one.
        let fri_before = ts("2026-10-23T23:00:00Z");
        assert_eq!(
            w.earliest_start(fri_before, 62 * HOUR, TWO_WEEKS),
            Some(ts("2026-10-30T23:00:00Z"))
        );
        assert_eq!(
            w.earliest_start(ts("2026-10-30T23:00:00Z"), 62 * HOUR + 31 * MIN, TWO_WEEKS),
            None
        );
    }

    #[test]
    fn dst_nights_in_berlin_with_an_overnight_rule() {
        // Business 18:00-08:00 every day (a 24/7 support desk's staffed hours, say).
        let w = Window::new(
            tz("Europe/Berlin"),
            vec![rule("all", time(18, 0, 0, 0), time(8, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        // Sat 28 Mar 18:00 CET = 17:00Z to Sun 29 Mar 08:00 CEST = 06:00Z: 13h, not 14h.
        let night = w.business_intervals(ts("2026-03-29T00:00:00Z"), ts("2026-03-29T00:01:00Z"));
        assert_eq!(
            night,
            vec![Interval {
                start: ts("2026-03-28T17:00:00Z"),
                end: ts("2026-03-29T06:00:00Z"),
            }]
        );
        // Sat 24 Oct 18:00 CEST = 16:00Z to Sun 25 Oct 08:00 CET = 07:00Z: 15h.
        let night = w.business_intervals(ts("2026-10-25T00:00:00Z"), ts("2026-10-25T00:01:00Z"));
        assert_eq!(
            night,
            vec![Interval {
                start: ts("2026-10-24T16:00:00Z"),
                end: ts("2026-10-25T07:00:00Z"),
            }]
        );
        // A 10h step at 07:00Z on the fall-back Sunday waits for the 08:00 CET end.
        assert_eq!(
            w.earliest_start(ts("2026-10-25T06:00:00Z"), 10 * HOUR, TWO_WEEKS),
            Some(ts("2026-10-25T07:00:00Z"))
        );
    }

    #[test]
    fn business_start_at_a_nonexistent_local_time_moves_later() {
        // 02:30 does not exist in Chicago on 8 Mar 2026: it becomes 03:30 CDT = 08:30Z.
        let w = Window::new(
            tz("America/Chicago"),
            vec![rule("sun", time(2, 30, 0, 0), time(6, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        let iv = w.business_intervals(ts("2026-03-08T00:00:00Z"), ts("2026-03-09T00:00:00Z"));
        assert_eq!(
            iv,
            vec![Interval {
                start: ts("2026-03-08T08:30:00Z"),
                end: ts("2026-03-08T11:00:00Z"),
            }]
        );
        // 01:30 CST + 1h ends exactly at the shifted start: allowed; a minute later is not.
        assert_eq!(
            w.gate(ts("2026-03-08T07:30:00Z"), HOUR, TWO_WEEKS),
            Gate::Open
        );
        assert!(matches!(
            w.gate(ts("2026-03-08T07:31:00Z"), HOUR, TWO_WEEKS),
            Gate::Closed { .. }
        ));
        // An ambiguous start (01:30 on 1 Nov) takes the earlier instant, 01:30 CDT = 06:30Z.
        let w = Window::new(
            tz("America/Chicago"),
            vec![rule("sun", time(1, 30, 0, 0), time(6, 0, 0, 0))],
            [],
            SignedDuration::ZERO,
        );
        assert_eq!(
            w.next_business_start(ts("2026-11-01T00:00:00Z")),
            Some(ts("2026-11-01T06:30:00Z"))
        );
    }

    #[test]
    fn rule_inside_the_spring_gap_shifts_or_vanishes_that_night() {
        let chicago_sunday = |from: Time, to: Time| {
            Window::new(
                tz("America/Chicago"),
                vec![rule("sun", from, to)],
                [],
                SignedDuration::ZERO,
            )
        };
        let that_sunday = (ts("2026-03-08T00:00:00Z"), ts("2026-03-09T00:00:00Z"));
        // 02:15-02:45 never happens; both ends move an hour later, to 03:15-03:45 CDT.
        let w = chicago_sunday(time(2, 15, 0, 0), time(2, 45, 0, 0));
        assert_eq!(
            w.business_intervals(that_sunday.0, that_sunday.1),
            vec![Interval {
                start: ts("2026-03-08T08:15:00Z"),
                end: ts("2026-03-08T08:45:00Z"),
            }]
        );
        // 02:30-03:00: the start moves to 03:30 CDT, after the end at 03:00 CDT; nothing left.
        let w = chicago_sunday(time(2, 30, 0, 0), time(3, 0, 0, 0));
        assert!(w
            .business_intervals(that_sunday.0, that_sunday.1)
            .is_empty());
        // The following Sunday it is back.
        assert_eq!(
            w.business_intervals(ts("2026-03-15T00:00:00Z"), ts("2026-03-16T00:00:00Z")),
            vec![Interval {
                start: ts("2026-03-15T07:30:00Z"),
                end: ts("2026-03-15T08:00:00Z"),
            }]
        );
    }

    #[test]
    fn labels() {
        let chi = tz("America/Chicago");
        let t = ts("2026-12-01T00:00:00Z");
        assert_eq!(local_label(t, &chi), "Mon 30 Nov 18:00");
        assert_eq!(local_label_with_zone(t, &chi), "Mon 30 Nov 2026 18:00 CST");
        let ber = tz("Europe/Berlin");
        assert_eq!(
            local_label_with_zone(ts("2026-07-03T06:05:00Z"), &ber),
            "Fri 3 Jul 2026 08:05 CEST"
        );
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let w = office(15 * MIN, vec![]);
        let _ = w.earliest_start(Timestamp::MAX, HOUR, TWO_WEEKS);
        assert_eq!(
            w.earliest_start(Timestamp::MIN, SignedDuration::MAX, TWO_WEEKS),
            None
        );
        assert!(w
            .earliest_start(Timestamp::MIN, HOUR, SignedDuration::MAX)
            .is_some());
        let _ = w.gate(Timestamp::MAX, SignedDuration::MAX, TWO_WEEKS);
        let _ = w.business_intervals(Timestamp::MIN, Timestamp::MIN + 48 * HOUR);
        let _ = w.next_business_start(Timestamp::MAX);
        assert_eq!(
            w.earliest_start(ts("2026-06-17T12:00:00Z"), -HOUR, TWO_WEEKS),
            w.earliest_start(ts("2026-06-17T12:00:00Z"), SignedDuration::ZERO, TWO_WEEKS)
        );
    }
}
