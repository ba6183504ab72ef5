//! Property tests of the business-hours window through its public API.
//!
//! Random rules (1-3, random days, quarter-hour times, some overnight), random holidays,
//! margins, estimates and start instants across 2026 with extra weight on DST weeks, in zones
//! with different DST habits (none, half-hour offsets, southern hemisphere, transitions at
//! local midnight). The checks are stated against `business_intervals` and against an
//! independent re-derivation of the rule from the specification, never against the search
//! code itself.

use jiff::civil::{self, Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use proptest::prelude::*;
use runner::window::{DaySet, Gate, HoursRule, Interval, Window};

const ZONES: &[&str] = &[
    "America/Chicago",
    "Europe/Berlin",
    "Australia/Sydney",
    "America/St_Johns",
    "Asia/Kolkata",
    "America/Santiago",
];

/// DST transitions of 2026 in the zones above, to aim start instants at.
const TRANSITIONS: &[&str] = &[
    "2026-03-08T08:00:00Z", // Chicago spring
    "2026-11-01T07:00:00Z", // Chicago fall
    "2026-03-29T01:00:00Z", // Berlin spring
    "2026-10-25T01:00:00Z", // Berlin fall
    "2026-04-04T16:00:00Z", // Sydney fall (southern)
    "2026-10-03T16:00:00Z", // Sydney spring
    "2026-03-08T05:30:00Z", // St John's spring
    "2026-11-01T04:30:00Z", // St John's fall
    "2026-04-05T03:00:00Z", // Santiago fall (at local midnight)
    "2026-09-06T04:00:00Z", // Santiago spring (at local midnight)
];

const HORIZON: SignedDuration = SignedDuration::from_hours(14 * 24);
const DAY: SignedDuration = SignedDuration::from_hours(24);
const NANO: SignedDuration = SignedDuration::from_nanos(1);

#[derive(Clone, Debug)]
struct Case {
    zone: &'static str,
    rules: Vec<HoursRule>,
    holidays: Vec<Date>,
    margin: SignedDuration,
    estimate: SignedDuration,
    t: Timestamp,
}

impl Case {
    fn tz(&self) -> TimeZone {
        TimeZone::get(self.zone).unwrap()
    }

    fn window(&self) -> Window {
        Window::new(
            self.tz(),
            self.rules.clone(),
            self.holidays.clone(),
            self.margin,
        )
    }

    /// What the step occupies; an empty step still occupies its first instant.
    fn need(&self) -> SignedDuration {
        (self.estimate.max(SignedDuration::ZERO) + self.margin).max(NANO)
    }
}

fn quarter_hour(q: i8) -> Time {
    civil::time(q / 4, q % 4 * 15, 0, 0)
}

fn day_set(bits: u8) -> DaySet {
    let mut set = DaySet::default();
    for (i, w) in Weekday::Monday.cycle_forward().take(7).enumerate() {
        if bits & (1 << i) != 0 {
            set.insert(w);
        }
    }
    set
}

/// Mostly ordinary rules; sometimes a whole-day rule (`from == to`), often on every day, so
/// that business hours running for days on end (and holidays breaking them) are exercised.
fn rule_strategy() -> impl Strategy<Value = HoursRule> {
    let days = prop_oneof![1u8..=127, Just(127u8)];
    let ordinary = (1u8..=127, 0i8..96, 0i8..96).prop_map(|(bits, from, to)| HoursRule {
        days: day_set(bits),
        from: quarter_hour(from),
        to: quarter_hour(to),
    });
    let whole_day = (days, 0i8..96).prop_map(|(bits, at)| HoursRule {
        days: day_set(bits),
        from: quarter_hour(at),
        to: quarter_hour(at),
    });
    prop_oneof![3 => ordinary, 1 => whole_day]
}

fn instant_strategy() -> impl Strategy<Value = Timestamp> {
    let year_start = "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap();
    let anywhere = (0i64..365 * 24 * 60, 0i64..60).prop_map(move |(min, sec)| {
        year_start + SignedDuration::from_mins(min) + SignedDuration::from_secs(sec)
    });
    let near_dst = (
        0usize..TRANSITIONS.len(),
        -5 * 24 * 60i64..5 * 24 * 60,
        prop_oneof![Just(0i64), 0i64..60],
    )
        .prop_map(|(i, min, sec)| {
            TRANSITIONS[i].parse::<Timestamp>().unwrap()
                + SignedDuration::from_mins(min)
                + SignedDuration::from_secs(sec)
        });
    prop_oneof![anywhere, near_dst]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let holidays = prop::collection::vec(0i32..366, 0..4).prop_map(|days| {
        days.into_iter()
            .map(|d| civil::date(2026, 1, 1).saturating_add(d.days()))
            .collect::<Vec<_>>()
    });
    let estimate =
        prop_oneof![Just(0i64), 0i64..=180, 0i64..=72 * 60,].prop_map(SignedDuration::from_mins);
    (
        prop::sample::select(ZONES),
        prop::collection::vec(rule_strategy(), 1..=3),
        holidays,
        prop_oneof![Just(0i64), 0i64..=120].prop_map(SignedDuration::from_mins),
        estimate,
        instant_strategy(),
    )
        .prop_map(|(zone, rules, holidays, margin, estimate, t)| Case {
            zone,
            rules,
            holidays,
            margin,
            estimate,
            t,
        })
}

/// Does a step occupying `[x, x + need)` touch business hours?
fn blocked(x: Timestamp, need: SignedDuration, intervals: &[Interval]) -> bool {
    let need_end = x + need;
    intervals.iter().any(|iv| iv.start < need_end && iv.end > x)
}

/// The rule re-derived from the specification: per local date and rule, one interval from the
/// date at `from` to the same or next date at `to`, holidays dropped, not merged.
fn raw_intervals(case: &Case, from: Timestamp, until: Timestamp) -> Vec<Interval> {
    let tz = case.tz();
    let first = tz.to_datetime(from).date().saturating_add((-3).days());
    let last = tz.to_datetime(until).date().saturating_add(3.days());
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        if !case.holidays.contains(&day) {
            for rule in &case.rules {
                if !rule.days.contains(day.weekday()) {
                    continue;
                }
                let end_day = if rule.to <= rule.from {
                    day.tomorrow().unwrap()
                } else {
                    day
                };
                let start = day.to_datetime(rule.from).to_zoned_datetime(tz.clone());
                let end = end_day.to_datetime(rule.to).to_zoned_datetime(tz.clone());
                let (start, end) = (start.unwrap().timestamp(), end.unwrap().timestamp());
                if start < end {
                    out.push(Interval { start, end });
                }
            }
        }
        day = day.tomorrow().unwrap();
    }
    out
}

/// Instants spread evenly over `[from, to]`, both ends included.
fn samples(from: Timestamp, to: Timestamp, n: i32) -> Vec<Timestamp> {
    let span = from.duration_until(to);
    (0..=n).map(|i| from + span / n * i).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// (1) An allowed start touches no business hours, within the horizon.
    #[test]
    fn earliest_start_never_overlaps_business(case in case_strategy()) {
        let w = case.window();
        let need = case.need();
        if let Some(r) = w.earliest_start(case.t, case.estimate, HORIZON) {
            prop_assert!(r >= case.t);
            prop_assert!(r <= case.t + HORIZON);
            let around = w.business_intervals(r - DAY, r + need + DAY);
            prop_assert!(!blocked(r, need, &around), "{r} overlaps {around:?}");
            let raw = raw_intervals(&case, r - DAY, r + need + DAY);
            prop_assert!(!blocked(r, need, &raw), "{r} overlaps raw {raw:?}");
        }
    }

    /// (2) It is the earliest: nothing before it (or in the whole horizon, when there is no
    /// answer) is allowed, neither at sample instants nor at any interval end, which is where
    /// allowed starts begin.
    #[test]
    fn earliest_start_is_the_earliest(case in case_strategy()) {
        let w = case.window();
        let need = case.need();
        let found = w.earliest_start(case.t, case.estimate, HORIZON);
        // Instants that must all be blocked.
        let last = match found {
            Some(r) if r == case.t => return Ok(()),
            Some(r) => r - NANO,
            None => case.t + HORIZON,
        };
        let intervals = w.business_intervals(case.t - DAY, last + need + DAY);
        let raw = raw_intervals(&case, case.t - DAY, last + need + DAY);
        let mut candidates = samples(case.t, last, 97);
        candidates.extend(
            intervals
                .iter()
                .map(|iv| iv.end)
                .filter(|e| *e >= case.t && *e <= last),
        );
        candidates.extend(
            raw.iter().map(|iv| iv.end).filter(|e| *e >= case.t && *e <= last),
        );
        for x in candidates {
            prop_assert!(blocked(x, need, &intervals), "{x} allowed before {found:?}");
            prop_assert!(blocked(x, need, &raw), "{x} allowed (raw) before {found:?}");
        }
    }

    /// (3) The gate is open exactly when the step may start right now, and a closed gate
    /// names an interval in the way and the same next start.
    #[test]
    fn gate_agrees_with_earliest_start(case in case_strategy()) {
        let w = case.window();
        let need = case.need();
        let earliest = w.earliest_start(case.t, case.estimate, HORIZON);
        match w.gate(case.t, case.estimate, HORIZON) {
            Gate::Open => prop_assert_eq!(earliest, Some(case.t)),
            Gate::Closed { blocked_by, next_start } => {
                prop_assert_ne!(earliest, Some(case.t));
                prop_assert_eq!(next_start, earliest);
                prop_assert!(blocked(case.t, need, &[blocked_by]));
                let around = w.business_intervals(case.t - DAY, case.t + need + DAY);
                let same_run = around
                    .iter()
                    .find(|iv| iv.start < blocked_by.end && iv.end > blocked_by.start);
                prop_assert!(same_run.is_some(), "{blocked_by:?} not in {around:?}");
                // Runs of more than a month are reported cut, where depends on the question.
                if blocked_by.start.duration_until(blocked_by.end) < 30 * DAY {
                    prop_assert_eq!(same_run, Some(&blocked_by));
                }
            }
        }
    }

    /// business_intervals is the sorted, merged union of the rule's intervals.
    #[test]
    fn business_intervals_merge_the_rules(case in case_strategy(), hours in 1i64..200) {
        let w = case.window();
        let from = case.t;
        let until = case.t + SignedDuration::from_hours(hours);
        let got = w.business_intervals(from, until);
        for pair in got.windows(2) {
            prop_assert!(pair[0].end < pair[1].start, "not merged: {pair:?}");
        }
        for iv in &got {
            prop_assert!(iv.start < iv.end && iv.start < until && iv.end > from);
        }
        // Compare membership at every raw boundary inside the range and just before it.
        let raw = raw_intervals(&case, from - 40 * DAY, until + 40 * DAY);
        let inside = |ivs: &[Interval], x: Timestamp| ivs.iter().any(|iv| iv.start <= x && x < iv.end);
        let mut points = samples(from, until - NANO, 50);
        for iv in &raw {
            points.extend([iv.start, iv.start - NANO, iv.end, iv.end - NANO]);
        }
        for x in points.into_iter().filter(|x| *x >= from && *x < until) {
            prop_assert_eq!(inside(&got, x), inside(&raw, x), "at {}", x);
        }
        // A reported start or end is a real edge of business hours, not where a search
        // stopped (for runs shorter than the follow-up limit).
        for iv in &got {
            if iv.start.duration_until(iv.end) < 30 * DAY {
                prop_assert!(!inside(&raw, iv.start - NANO), "start {} not an edge", iv.start);
                prop_assert!(!inside(&raw, iv.end), "end {} not an edge", iv.end);
            }
        }
    }

    /// next_business_start is the first merged start at or after t.
    #[test]
    fn next_business_start_is_the_next_edge(case in case_strategy()) {
        let w = case.window();
        let Some(s) = w.next_business_start(case.t) else {
            // With at least one weekday ruled and few holidays there is always a next start,
            // unless business never stops.
            prop_assert_eq!(w.longest_regular_gap(), Some(SignedDuration::ZERO));
            return Ok(());
        };
        prop_assert!(s >= case.t);
        let raw = raw_intervals(&case, case.t - 40 * DAY, s + 40 * DAY);
        let inside = |x: Timestamp| raw.iter().any(|iv| iv.start <= x && x < iv.end);
        prop_assert!(inside(s) && !inside(s - NANO), "{s} is not a business start");
        // No other business start in [t, s).
        for iv in &raw {
            let x = iv.start;
            if x >= case.t && x < s {
                prop_assert!(inside(x - NANO), "missed start {x} before {s}");
            }
        }
    }

    /// Without DST or holidays, a step as long as the longest regular gap fits within two
    /// weeks and a nanosecond more never does.
    #[test]
    fn longest_regular_gap_is_tight(
        rules in prop::collection::vec(rule_strategy(), 1..=3),
        t in instant_strategy(),
    ) {
        let w = Window::new(TimeZone::UTC, rules, [], SignedDuration::ZERO);
        let gap = w.longest_regular_gap().unwrap();
        if gap > SignedDuration::ZERO {
            prop_assert!(w.earliest_start(t, gap, HORIZON).is_some());
        }
        prop_assert_eq!(w.earliest_start(t, gap + NANO, HORIZON), None);
    }
}
