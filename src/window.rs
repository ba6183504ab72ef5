//! TEMPORARY STUB
use jiff::{civil, tz::TimeZone, SignedDuration, Timestamp};
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DaySet(u8);
impl DaySet {
    pub fn single(w: civil::Weekday) -> Self {
        DaySet(1 << w.to_monday_zero_offset())
    }
    pub fn range(a: civil::Weekday, b: civil::Weekday) -> Self {
        let mut s = DaySet(0);
        let mut d = a;
        loop {
            s.insert(d);
            if d == b {
                break;
            }
            d = d.next();
        }
        s
    }
    pub fn insert(&mut self, w: civil::Weekday) {
        self.0 |= 1 << w.to_monday_zero_offset()
    }
    pub fn contains(&self, w: civil::Weekday) -> bool {
        self.0 & (1 << w.to_monday_zero_offset()) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}
pub struct HoursRule {
    pub days: DaySet,
    pub from: civil::Time,
    pub to: civil::Time,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
}
pub enum Gate {
    Open,
    Closed {
        blocked_by: Interval,
        next_start: Option<Timestamp>,
    },
}
#[derive(Clone, Debug)]
pub struct Window {
    tz: TimeZone,
    margin: SignedDuration,
}
impl Window {
    pub fn new(
        tz: TimeZone,
        _rules: Vec<HoursRule>,
        _h: impl IntoIterator<Item = civil::Date>,
        margin: SignedDuration,
    ) -> Window {
        Window { tz, margin }
    }
    pub fn unrestricted() -> Window {
        Window {
            tz: TimeZone::UTC,
            margin: SignedDuration::ZERO,
        }
    }
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
    pub fn margin(&self) -> SignedDuration {
        self.margin
    }
    pub fn is_unrestricted(&self) -> bool {
        true
    }
    pub fn business_intervals(&self, _f: Timestamp, _u: Timestamp) -> Vec<Interval> {
        vec![]
    }
    pub fn gate(&self, _t: Timestamp, _e: SignedDuration, _h: SignedDuration) -> Gate {
        Gate::Open
    }
    pub fn earliest_start(
        &self,
        t: Timestamp,
        _e: SignedDuration,
        _h: SignedDuration,
    ) -> Option<Timestamp> {
        Some(t)
    }
    pub fn longest_regular_gap(&self) -> Option<SignedDuration> {
        None
    }
    pub fn next_business_start(&self, _t: Timestamp) -> Option<Timestamp> {
        None
    }
}
pub fn local_label(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %H:%M")
        .to_string()
}
