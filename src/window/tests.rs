//! The window checked against real calendars: weekday sets, overnight rules, holidays, DST.

use super::*;
use jiff::civil::{date, time, Weekday};

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
/// in playbook/validate/window.rs, through weekday_from_name).
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
