//! The window is checked: its values, a time zone for business hours, every day name it reads, and
//! whether each step could ever fit between business hours (holiday and longer autumn weekends
//! included).

use super::*;

#[test]
fn bad_window_values_each_get_an_error() {
    let text = BASE
        .replace("days: mon-fri", "days: mon-fry")
        .replace("\"18:00\"", "\"25:00\"")
        .replace("margin: 15m", "margin: soon");
    invalid(&text)
        .expect_stderr_contains("`mon-fry` is not a day or a range of days")
        .expect_stderr_contains("`25:00` is not a time of day")
        .expect_stderr_contains("`soon` is not a duration")
        .run();
}

#[test]
fn business_hours_without_timezone() {
    invalid(&BASE.replace("  timezone: America/Chicago\n", ""))
        .expect_stderr_contains("the window has business hours but no `timezone`")
        .run();
}

/// `invalid` with the clock set to `now` (RUNNER_NOW).
fn invalid_at(text: &str, now: &str) -> Run {
    validate_at(text, now).expect_exit(2).expect_stdout("")
}

/// `validate` with the clock set to `now` (RUNNER_NOW).
fn validate_at(text: &str, now: &str) -> Run {
    validate(text).env("RUNNER_NOW", now)
}

#[test]
fn a_step_that_could_never_fit_between_business_hours() {
    // Weeknights are 13h30m; the weekend gap is 61h30m. 3d cannot fit anywhere.
    let text = BASE.replace("    run: echo {{ drive }}", "    run: x\n    estimate: 3d");
    invalid(&text)
        .expect_stderr_contains("step `first` cannot start within 14 days from")
        .expect_stderr_contains("(the current time)")
        .expect_stderr_contains("(3d15m)")
        .expect_stderr_contains("the longest is 2d13h30m")
        .run();
    // The same step is fine when it is allowed during business hours.
    let ok = BASE.replace(
        "    run: echo {{ drive }}",
        "    run: x\n    estimate: 3d\n    business_hours: allow",
    );
    validate(&ok).expect_exit(0).run();
}

/// BASE's window (weekdays 07:30-18:00 in Chicago, margin 15m) with these holidays, and one
/// step of this estimate.
fn long_step(estimate: &str, holidays: &str) -> String {
    BASE.replace(
        "  margin: 15m\n",
        &format!("  margin: 15m\n  holidays: {holidays}\n"),
    )
    .replace(
        "    run: echo {{ drive }}",
        &format!("    run: x\n    estimate: {estimate}"),
    )
}

#[test]
fn a_step_that_fits_only_a_holiday_weekend_is_valid() {
    // Thursday 24, Friday 25 and Monday 28 December are holidays: from Wednesday 23 at 18:00
    // nothing happens until Tuesday 29 at 07:30, 133h30m. An 80h step fits only then.
    let text = long_step("80h", "[2026-12-24, 2026-12-25, 2026-12-28]");
    for now in [
        "2026-12-20T12:00:00Z", // the holidays are within the next 14 days
        "2026-12-01T12:00:00Z", // they are listed, further ahead: still checked against them
    ] {
        validate_at(&text, now)
            .note(format!("RUNNER_NOW={now}"))
            .expect_exit(0)
            .run();
    }
    // The plan places it over the holidays.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", &text);
    Run::at(dir.path())
        .args(["plan", "c.yaml", "--start", "2026-12-21T18:00:00-06:00"])
        .expect_exit(0)
        .expect_stdout_contains("Wed 23 Dec 18:00")
        .run();
    // Once the holidays are past, no gap is long enough, and the message says from when it
    // looked and for how long.
    invalid_at(&text, "2027-01-04T12:00:00Z")
        .expect_stderr_contains(
            "step `first` cannot start within 14 days from Mon 4 Jan 2027 06:00 CST (RUNNER_NOW)",
        )
        .expect_stderr_contains("(3d8h15m)")
        .run();
}

#[test]
fn a_step_that_fits_only_the_longer_autumn_weekend_is_valid_before_it() {
    // Chicago falls back on Sunday 1 November 2026: Friday 30 October 18:00 CDT to Monday
    // 2 November 07:30 CST is 62h30m, an hour more than any other weekend. 62h plus the
    // 15m margin fits only that weekend.
    let text = long_step("62h", "[]");
    validate_at(&text, "2026-10-26T12:00:00Z")
        .expect_exit(0)
        .run();
    // After it, the next such weekend is a year away.
    invalid_at(&text, "2026-11-03T12:00:00Z")
        .expect_stderr_contains("cannot start within 14 days from Tue 3 Nov 2026 06:00 CST")
        .expect_stderr_contains("the longest is 2d13h30m")
        .run();
}

#[test]
fn every_day_name_the_window_reads_is_valid() {
    for days in ["tues", "thurs-fri", "Thur", "[mon, tues, wednesday]"] {
        let text = BASE.replace("days: mon-fri", &format!("days: {days}"));
        validate(&text)
            .note(format!("days: {days}"))
            .expect_exit(0)
            .run();
    }
}
