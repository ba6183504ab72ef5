//! Validation of the business-hours window: durations, days and times, and whether each step fits.

use super::*;

/// Longest duration accepted: ten years, far beyond any cutover, well within time arithmetic.
pub(super) const MAX_DURATION_SECS: i64 = 3650 * 86_400;

/// Parses the documented form only: whole numbers, each with a unit `d`, `h`, `m` or `s`,
/// largest first, each unit once, no spaces (`90s`, `15m`, `1h30m`, `2d`). A day is 24 hours
/// here: durations are elapsed time. `2 hours`, `1.5h`, `PT2H` and `1mo` are refused, each
/// with the reason, so that what a playbook says is never a guess.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    const UNITS: [(char, i64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let t = text.trim();
    if t.is_empty() {
        return Err("it is empty".into());
    }
    if t.starts_with('-') {
        return Err("a duration cannot be negative".into());
    }
    if t.contains(char::is_whitespace) {
        return Err("write it without spaces".into());
    }
    if t.contains(['.', ',']) {
        return Err("whole numbers only, e.g. 1h30m rather than 1.5h".into());
    }
    if t.starts_with(['P', 'p']) {
        return Err("ISO 8601 durations such as PT2H are not used here".into());
    }
    let mut secs: i64 = 0;
    let mut last: Option<usize> = None;
    let mut digits = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        // The whole word, so that `1mo` names `mo`, not `o`.
        let mut word = c.to_string();
        while let Some(n) = chars.next_if(|n| n.is_alphabetic()) {
            word.push(n);
        }
        let rank = match word.chars().collect::<Vec<_>>()[..] {
            [u] => UNITS.iter().position(|(x, _)| *x == u),
            _ => None,
        };
        let Some(rank) = rank else {
            return Err(format!(
                "`{word}` is not a unit: the units are d, h, m and s (months, weeks and years vary in length)"
            ));
        };
        if digits.is_empty() {
            return Err(format!("`{c}` needs a number before it"));
        }
        if last.is_some_and(|l| rank <= l) {
            return Err("units go largest first, each once".into());
        }
        let n: i64 = digits.parse().map_err(|_| "the number is too large")?;
        secs = n
            .checked_mul(UNITS[rank].1)
            .and_then(|v| secs.checked_add(v))
            .filter(|v| *v <= MAX_DURATION_SECS)
            .ok_or("longer than ten years")?;
        digits.clear();
        last = Some(rank);
    }
    if !digits.is_empty() {
        return Err(format!("`{digits}` needs a unit: d, h, m or s"));
    }
    Ok(SignedDuration::from_secs(secs))
}

pub(super) fn parse_day(s: &str) -> Option<Weekday> {
    crate::window::weekday_from_name(s)
}

pub(super) const DAY_HELP: &str = "days are mon, tue, wed, thu, fri, sat, sun: one day, a range like mon-fri, or a list like [mon, wed, fri]";

pub(super) fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    Time::new(h, m, 0, 0).ok()
}

/// `validate`'s question for each step: is there a gap between business hours long enough for
/// it, on the real calendar, from `from` over the planning horizon (or up to the last listed
/// holiday, if later: holidays are listed because the work is planned around them)?
pub(super) struct Fit<'w> {
    window: &'w Window,
    from: super::super::FitFrom,
    horizon: SignedDuration,
    /// A step needing no more than this surely fits within the horizon, without searching:
    /// the longest regular weekly gap, less a day for daylight saving.
    surely_fits: SignedDuration,
}

impl<'w> Fit<'w> {
    pub(super) fn new(window: &'w Window, from: super::super::FitFrom) -> Fit<'w> {
        let mut horizon = crate::duration::HORIZON;
        let tz = window.time_zone();
        if let Some(last) = window.holidays().last() {
            let after = last
                .tomorrow()
                .ok()
                .and_then(|d| tz.to_timestamp(d.to_datetime(Time::midnight())).ok());
            if let Some(after) = after {
                horizon = horizon.max(from.at.duration_until(after));
            }
        }
        let surely_fits = window
            .longest_regular_gap()
            .map(|g| g - SignedDuration::from_hours(24))
            .unwrap_or(SignedDuration::ZERO);
        Fit {
            window,
            from,
            horizon,
            surely_fits,
        }
    }

    /// Why a step of this estimate cannot start within the horizon, or None if it can.
    pub(super) fn misfit(&self, id: &str, estimate: Option<SignedDuration>) -> Option<String> {
        let estimate = estimate.unwrap_or(SignedDuration::ZERO);
        let need = estimate.saturating_add(self.window.margin());
        if need <= self.surely_fits {
            return None;
        }
        let w = self.window;
        let at = self.from.at;
        if w.earliest_start(at, estimate, self.horizon).is_some() {
            return None;
        }
        let until = at.saturating_add(self.horizon).unwrap_or(at);
        let label = |t| crate::window::local_label_with_zone(t, w.time_zone());
        let days = (self.horizon.as_secs() + 86_399) / 86_400;
        let longest = match w.longest_gap(at, until) {
            Some(g) if g.end < jiff::Timestamp::MAX => format!(
                "; the longest is {} ({} to {})",
                crate::duration::human_duration(g.start.duration_until(g.end)),
                label(g.start),
                label(g.end)
            ),
            _ => String::new(),
        };
        Some(format!(
            "step `{id}` cannot start within {days} days from {} ({}): its estimate plus the window margin ({}) is longer than every gap between business hours in that time, holidays and daylight saving counted{longest}",
            label(at),
            if self.from.simulated { "RUNNER_NOW" } else { "the current time" },
            crate::duration::human_duration(need),
        ))
    }
}

impl Validator<'_> {
    pub(super) fn window(&mut self, raw: &RawPlaybook) -> (Option<Window>, Option<String>) {
        let w = &raw.window;
        let base = [key("window")];
        let at = |k: &str| vec![key("window"), key(k)];
        let margin = self
            .duration(&at("margin"), w.margin.as_deref())
            .unwrap_or(SignedDuration::ZERO);
        let mut ok = true;
        let mut holidays = Vec::new();
        for (i, h) in w.holidays.iter().enumerate() {
            match h.trim().parse::<Date>() {
                Ok(d) => holidays.push(d),
                Err(_) => {
                    ok = false;
                    self.err(
                        &[key("window"), key("holidays"), Seg::Index(i)],
                        format!("`{h}` is not a date"),
                        Some("write holidays as YYYY-MM-DD, e.g. 2026-12-24".into()),
                    );
                }
            }
        }
        let tz = match (&w.timezone, w.business_hours.is_empty()) {
            (None, true) => None,
            (None, false) => {
                self.err(
                    &base,
                    "the window has business hours but no `timezone`",
                    Some(
                        "add the customer's IANA time zone, e.g. `timezone: America/Chicago`"
                            .into(),
                    ),
                );
                ok = false;
                None
            }
            (Some(name), _) => {
                match TimeZone::get(name) {
                    Ok(tz) => Some((tz, name.clone())),
                    Err(_) => {
                        let names: Vec<String> =
                            jiff::tz::db().available().map(|n| n.to_string()).collect();
                        let help = match super::super::diagnostic::suggest(name, names.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "use an IANA time zone name such as America/Chicago or Europe/Berlin".into(),
                    };
                        self.err(
                            &at("timezone"),
                            format!("`{name}` is not a known IANA time zone"),
                            Some(help),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut rules = Vec::new();
        for (i, h) in w.business_hours.iter().enumerate() {
            let p = |k: &str| vec![key("window"), key("business_hours"), Seg::Index(i), key(k)];
            let days = self.days(&p("days"), &h.days);
            let from = parse_hhmm(&h.from);
            let to = parse_hhmm(&h.to);
            if from.is_none() {
                self.err(
                    &p("from"),
                    format!("`{}` is not a time of day", h.from),
                    Some("write times as \"HH:MM\" in 24-hour form, e.g. \"07:30\"".into()),
                );
            }
            if to.is_none() {
                self.err(
                    &p("to"),
                    format!("`{}` is not a time of day", h.to),
                    Some("write times as \"HH:MM\" in 24-hour form, e.g. \"18:00\"".into()),
                );
            }
            match (days, from, to) {
                (Some(days), Some(from), Some(to)) => rules.push(HoursRule { days, from, to }),
                _ => ok = false,
            }
        }
        if !ok {
            return (None, None);
        }
        match tz {
            None if !ok => (None, None),
            None => (Some(Window::unrestricted()), None),
            Some((tz, name)) => (Some(Window::new(tz, rules, holidays, margin)), Some(name)),
        }
    }

    pub(super) fn days(&mut self, path: &[Seg], days: &RawDays) -> Option<DaySet> {
        let mut set = DaySet::default();
        let items: Vec<(Vec<Seg>, &str)> = match days {
            RawDays::One(s) => vec![(path.to_vec(), s.as_str())],
            RawDays::List(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut p = path.to_vec();
                    p.push(Seg::Index(i));
                    (p, s.as_str())
                })
                .collect(),
        };
        let mut ok = true;
        for (p, item) in items {
            let parsed = match item.split_once('-') {
                Some((a, b)) => parse_day(a)
                    .zip(parse_day(b))
                    .map(|(a, b)| DaySet::range(a, b)),
                None => parse_day(item).map(DaySet::single),
            };
            match parsed {
                Some(d) => {
                    for w in [
                        Weekday::Monday,
                        Weekday::Tuesday,
                        Weekday::Wednesday,
                        Weekday::Thursday,
                        Weekday::Friday,
                        Weekday::Saturday,
                        Weekday::Sunday,
                    ] {
                        if d.contains(w) {
                            set.insert(w);
                        }
                    }
                }
                None => {
                    ok = false;
                    self.err(
                        &p,
                        format!("`{item}` is not a day or a range of days"),
                        Some(DAY_HELP.to_string()),
                    );
                }
            }
        }
        if ok && set.is_empty() {
            self.err(path, "no days given", Some(DAY_HELP.to_string()));
            return None;
        }
        ok.then_some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            SignedDuration::from_secs(90)
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_duration("2d").unwrap(),
            SignedDuration::from_hours(48)
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5m").is_err());
        for bad in [
            "2 hours",
            "1.5h",
            "PT2H",
            "1mo",
            "30m1h",
            "1h1h",
            "5",
            "h",
            "99999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("1d2h3m4s").unwrap(),
            SignedDuration::from_secs(86_400 + 7_200 + 184)
        );
    }

    #[test]
    fn times_and_days() {
        assert_eq!(parse_hhmm("07:30"), Some(Time::constant(7, 30, 0, 0)));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("7:5"), None);
        assert_eq!(parse_day("Fri"), Some(Weekday::Friday));
        assert_eq!(parse_day("fry"), None);
    }
}
