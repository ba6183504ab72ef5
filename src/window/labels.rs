//! Instants written for people, in the customer's zone and beside it the operator's.

use jiff::tz::TimeZone;
use jiff::Timestamp;

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
