//! The terminal text of `runner status`.

use std::fmt::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::duration::human_duration;
use crate::playbook::Playbook;

use super::{LockState, PairStatus, PairView, StatusView};

/// "Mon 30 Nov 23:02 CST" in the window's zone: every time names its zone (a consultant
/// reads the customer's status from another zone).
fn short(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b %H:%M %Z")
        .to_string()
}

/// Journal text is shown on a terminal: control characters (escape sequences) could rewrite
/// the screen, so they become `?`. Only the first line is kept; the report has the rest.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut out: String = first
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if first.chars().count() > max_chars || text.lines().nth(1).is_some() {
        out.push_str(" …");
    }
    out
}

fn state_text(p: &PairView) -> String {
    let mut s = p.status.label().to_owned();
    if p.running.as_ref().is_some_and(|r| r.detached_job.is_some()) {
        s.push_str(" (detached)");
    }
    if let Some(code) = p.exit_code {
        let _ = write!(s, " (exit {code})");
    }
    if p.definition_changed {
        s.push_str(", step changed since");
    }
    s
}

/// Pads to `width` characters (not bytes: names may be non-ASCII).
fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// The terminal view of `runner status`.
pub fn render_status_text(v: &StatusView, pb: &Playbook) -> String {
    let tz = pb.window.time_zone();
    let mut o = String::new();
    header(&mut o, v, tz);
    last_runs(&mut o, v, tz);
    lock(&mut o, v, tz);
    pair_counts(&mut o, v);
    pair_table(&mut o, v, tz);
    needs_attention(&mut o, v);
    next_step(&mut o, v, tz);
    schedule(&mut o, v, tz);
    unknown_pairs(&mut o, v);
    notifications(&mut o, v, tz);
    o
}

/// Which playbook, and when; whether it was ever applied.
fn header(o: &mut String, v: &StatusView, tz: &TimeZone) {
    let _ = writeln!(o, "Playbook: {} ({})", v.playbook, v.path);
    let _ = writeln!(
        o,
        "Now: {} ({}){}",
        short(v.now, tz),
        v.timezone.as_deref().unwrap_or("UTC"),
        if v.now_simulated {
            " (simulated: RUNNER_NOW)"
        } else {
            ""
        }
    );
    if !v.applied {
        let _ = writeln!(o, "Never applied: no journal yet.");
    }
}

/// The last run, and the runs made with a simulated clock.
fn last_runs(o: &mut String, v: &StatusView, tz: &TimeZone) {
    match &v.last_run {
        Some(r) => {
            let ended = match (r.ended_at, &r.outcome) {
                (Some(e), Some(out)) => format!("ended {}: {}", short(e, tz), one_line(out, 200)),
                (Some(e), None) => format!("ended {}", short(e, tz)),
                (None, _) => "not closed (still running, or its runner stopped)".to_owned(),
            };
            let _ = writeln!(
                o,
                "Last run: {} by {} on {}, started {}, {}{}",
                r.command,
                r.user,
                r.host,
                short(r.started_at, tz),
                ended,
                if r.simulated_clock.is_some() {
                    " (simulated clock)"
                } else {
                    ""
                }
            );
        }
        None if v.applied => {
            let _ = writeln!(o, "Last run: none recorded");
        }
        None => {}
    }
    for r in &v.simulated_runs {
        if let Some(c) = &r.simulated_clock {
            let real = c
                .real_start
                .map(|t| format!("; it really started {}", short(t, tz)))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "Simulated clock: run {} ({}) ran with {}: the times it recorded are simulated{real}",
                r.id,
                r.command,
                c.setting()
            );
        }
    }
}

/// Who holds the lock, or left it.
fn lock(o: &mut String, v: &StatusView, tz: &TimeZone) {
    if let Some(l) = &v.lock {
        let h = &l.holder;
        let who = format!(
            "runner {} (pid {}, user {}) on {} since {}",
            h.command,
            h.pid,
            h.user,
            h.host,
            short(h.since, tz)
        );
        let _ = match l.state {
            LockState::Held => writeln!(o, "Lock: held by {who}"),
            LockState::Stale => writeln!(o, "Lock: free (left over from {who}, which has exited)"),
            LockState::OtherHost => writeln!(
                o,
                "Lock: recorded for {who}; that is another host, so whether it still runs cannot be checked here"
            ),
        };
    }
}

/// How many pairs are in each state.
fn pair_counts(o: &mut String, v: &StatusView) {
    let summary: Vec<String> = v
        .counts
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(s, n)| format!("{n} {}", s.label()))
        .collect();
    let total: usize = v.counts.values().sum();
    let _ = writeln!(
        o,
        "Pairs: {total} ({})",
        if summary.is_empty() {
            "none".to_owned()
        } else {
            summary.join(", ")
        }
    );
}

/// One row per pair (step columns only on the step's first row), each with its detail line.
fn pair_table(o: &mut String, v: &StatusView, tz: &TimeZone) {
    let mut rows: Vec<[String; 6]> = vec![[
        "#".into(),
        "STEP".into(),
        "TARGET".into(),
        "STATE".into(),
        "TRIES".into(),
        "LAST ENDED".into(),
    ]];
    let mut details: Vec<Option<String>> = vec![None];
    for s in &v.steps {
        for (i, p) in s.pairs.iter().enumerate() {
            let (num, id) = if i == 0 {
                (s.number.to_string(), s.id.clone())
            } else {
                (String::new(), String::new())
            };
            let last = match (p.last_duration_secs, p.last_end) {
                (Some(d), Some(e)) => format!(
                    "{} took {}",
                    short(e, tz),
                    human_duration(jiff::SignedDuration::from_secs(d))
                ),
                (None, Some(e)) => short(e, tz),
                _ => String::new(),
            };
            let last = if p.simulated_clock {
                format!("{last} (simulated clock)").trim_start().to_owned()
            } else {
                last
            };
            rows.push([
                num,
                id,
                p.target.clone(),
                state_text(p),
                p.attempts.to_string(),
                last,
            ]);
            details.push(detail_line(p, tz));
        }
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let _ = writeln!(o);
    for (r, d) in rows.iter().zip(&details) {
        let mut line = String::from(" ");
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            line.push(' ');
            if i == 4 {
                // Right-align the count.
                let _ = write!(line, "{c:>w$}");
            } else {
                line.push_str(&pad(c, w));
            }
            line.push(' ');
        }
        let _ = writeln!(o, "{}", line.trim_end());
        if let Some(d) = d {
            let _ = writeln!(o, "{}{d}", " ".repeat(widths[0] + widths[1] + 6));
        }
    }
}

/// Pairs in doubt and detached jobs no runner follows, with what to do about them.
fn needs_attention(o: &mut String, v: &StatusView) {
    let in_doubt: Vec<(&str, &str)> = v
        .steps
        .iter()
        .flat_map(|s| s.pairs.iter().map(move |p| (s, p)))
        .filter(|(_, p)| p.status == PairStatus::InDoubt)
        .map(|(s, p)| (s.id.as_str(), p.target.as_str()))
        .collect();
    if !in_doubt.is_empty() {
        let list: Vec<String> = in_doubt
            .iter()
            .map(|(s, t)| format!("{s} on {t}"))
            .collect();
        let _ = writeln!(
            o,
            "\nIn doubt: {}. The runner that started it is gone: it may or may not have had its \
             effect. Inspect the target, then record what you found:",
            list.join(", ")
        );
        for (s, t) in &in_doubt {
            let _ = writeln!(
                o,
                "  runner mark {} {s}@{t} done    (or `retry`, or `skip`)",
                v.path
            );
        }
    }
    let left: Vec<(&str, &str)> = v
        .steps
        .iter()
        .flat_map(|s| s.pairs.iter().map(move |p| (s, p)))
        .filter(|(_, p)| {
            p.running.as_ref().is_some_and(|r| r.detached_job.is_some())
                && !matches!(v.lock.as_ref().map(|l| l.state), Some(LockState::Held))
        })
        .map(|(s, p)| (s.id.as_str(), p.target.as_str()))
        .collect();
    for (s, t) in &left {
        let _ = writeln!(
            o,
            "\nDetached: the job of {s} on {t} runs on the target without a runner following it; \
             `runner apply {}` reattaches to it (it is not started again).",
            v.path
        );
    }
}

/// The next step and when the window allows it.
fn next_step(o: &mut String, v: &StatusView, tz: &TimeZone) {
    let _ = writeln!(o);
    match &v.next {
        None if v.steps.is_empty() => {
            let _ = writeln!(o, "The playbook has no steps.");
        }
        None => {
            let _ = writeln!(o, "All steps are done.");
        }
        Some(n) => {
            let waiting: Vec<String> = n
                .waiting
                .iter()
                .map(|w| format!("{} ({})", w.target, w.status.label()))
                .collect();
            let when = match n.earliest {
                _ if n.waiting.iter().any(|w| w.status == PairStatus::Running) => {
                    "it is running now".to_owned()
                }
                _ if n.now => "the window allows it now".to_owned(),
                Some(t) => format!(
                    "the window allows it from {}",
                    crate::window::label_for_people(t, tz)
                ),
                None => "the window has no long enough gap in the next 14 days".to_owned(),
            };
            let _ = writeln!(
                o,
                "Next: {} ({}) on {}; {when}",
                n.step,
                n.title,
                waiting.join(", ")
            );
        }
    }
}

/// What is left placed against the window, and whether it fits.
fn schedule(o: &mut String, v: &StatusView, tz: &TimeZone) {
    if !v.schedule.is_empty() {
        let _ = writeln!(
            o,
            "\nSchedule of what is left ({}):",
            v.timezone.as_deref().unwrap_or("UTC")
        );
        for st in &v.schedule {
            let _ = writeln!(
                o,
                "  {}-{}  {} ({}) on {}",
                st.start
                    .to_zoned_datetime(tz.clone())
                    .strftime("%a %-d %b %H:%M"),
                st.end.to_zoned_datetime(tz.clone()).strftime("%H:%M %Z"),
                st.step,
                st.title,
                st.targets.join(", ")
            );
        }
    }
    if let Some(fit) = &v.fit {
        if !v.schedule.is_empty() {
            let _ = writeln!(o, "{}", capitalized(fit));
        }
    }
}

/// Pairs of the journal the playbook no longer names.
fn unknown_pairs(o: &mut String, v: &StatusView) {
    if !v.unknown_pairs.is_empty() {
        let _ = writeln!(
            o,
            "\nThe journal also records {} pair(s) the playbook no longer names (renamed or removed since they ran):",
            v.unknown_pairs.len()
        );
        for u in &v.unknown_pairs {
            let _ = writeln!(o, "  {} @ {}: {}", u.step, u.target, u.status.label());
        }
    }
}

/// The last run's notifications and how each went.
fn notifications(o: &mut String, v: &StatusView, tz: &TimeZone) {
    if let Some(first) = v.notifications.first() {
        let delivered = v
            .notifications
            .iter()
            .filter(|d| d.outcome == "delivered")
            .count();
        let _ = writeln!(
            o,
            "\nNotifications (run {}): {delivered} of {} delivered",
            first.run_id,
            v.notifications.len()
        );
        for d in &v.notifications {
            let _ = writeln!(
                o,
                "  {} {} to {}: {} after {} tr{} ({})",
                short(d.at, tz),
                d.event,
                d.sink,
                d.outcome,
                d.tries,
                if d.tries == 1 { "y" } else { "ies" },
                one_line(&d.detail, 160)
            );
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The second line under a pair: why it failed, who marked it, or which process runs it.
fn detail_line(p: &PairView, tz: &TimeZone) -> Option<String> {
    if let Some(r) = &p.running {
        let job = r
            .detached_job
            .as_deref()
            .map(|d| format!("; detached job in {d} on {}", p.target))
            .unwrap_or_default();
        return Some(format!(
            "{} started {} by pid {} on {}{job}",
            r.kind,
            short(r.started_at, tz),
            r.pid,
            r.host
        ));
    }
    if let Some(m) = &p.mark {
        let reason = m
            .reason
            .as_deref()
            .map(|r| format!(": {}", one_line(r, 200)))
            .unwrap_or_default();
        return Some(format!("by {} on {}{reason}", m.user, m.host));
    }
    p.message.as_deref().map(|m| one_line(m, 200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_neutralises_control_characters() {
        assert_eq!(one_line("a\x1b[2Jb", 100), "a?[2Jb");
        assert_eq!(one_line("first\nsecond", 100), "first …");
        assert_eq!(one_line("abcdef", 3), "abc …");
        assert_eq!(one_line("", 3), "");
    }
}
