//! Durations as people read them, and how far ahead anything is planned.
//!
//! A leaf: the playbook (validation), the plan, the engine and every view read it, and it
//! reads nothing of theirs.

use jiff::SignedDuration;

/// How far ahead a step may be pushed before the plan calls it unschedulable (and how far
/// `validate` and the engine look for a gap between business hours).
pub const HORIZON: SignedDuration = SignedDuration::from_hours(14 * 24);

/// `1d2h`, `1h30m`, `45m`, `90s` → compact text, largest units first, seconds only when needed.
pub fn human_duration(d: SignedDuration) -> String {
    let mut secs = d.as_secs().max(0);
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = secs / len;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            secs %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(SignedDuration::from_mins(90)), "1h30m");
        assert_eq!(
            human_duration(SignedDuration::from_secs(86_400 + 61)),
            "1d1m1s"
        );
        assert_eq!(human_duration(SignedDuration::ZERO), "0s");
    }
}
