//! Sets of weekdays, and the one reader of a weekday's name.

use std::fmt;

use jiff::civil::Weekday;

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
