//! The one clock everything asks, so that `RUNNER_NOW` can replace it for tests and rehearsals.

use jiff::Timestamp;

/// Environment variable holding an RFC 3339 instant that replaces the real clock.
pub const RUNNER_NOW: &str = "RUNNER_NOW";

/// Where "now" comes from. With `RUNNER_NOW` the clock starts at that instant and then advances
/// in real time, so a rehearsal behaves like the real night (waits end, timeouts fire).
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    System,
    Shifted {
        start: Timestamp,
        since: std::time::Instant,
        /// The real time when the clock started, so the record can say when work really ran.
        real_start: Timestamp,
    },
}

/// A clock replaced by `RUNNER_NOW`, as the journal, the progress output, `status` and
/// `report` show it: the simulated instant it started from, and the real time then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Simulated {
    pub from: Timestamp,
    /// None only when a damaged record lost it.
    pub real_start: Option<Timestamp>,
}

impl Simulated {
    /// "RUNNER_NOW=2026-03-10T23:00:00Z" for messages.
    pub fn setting(&self) -> String {
        format!("{RUNNER_NOW}={}", self.from)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{RUNNER_NOW}={value:?} is not an RFC 3339 instant (for example 2026-11-30T23:00:00-06:00): {source}")]
pub struct ClockError {
    value: String,
    source: jiff::Error,
}

impl Clock {
    /// Reads `RUNNER_NOW`; absent or empty means the system clock.
    pub fn from_env() -> Result<Clock, ClockError> {
        match std::env::var(RUNNER_NOW) {
            Ok(value) if !value.trim().is_empty() => parse_instant(&value)
                .map(Clock::starting_at)
                .map_err(|source| ClockError { value, source }),
            _ => Ok(Clock::System),
        }
    }

    /// A clock that reads `start` now and advances from there.
    pub fn starting_at(start: Timestamp) -> Clock {
        Clock::Shifted {
            start,
            since: std::time::Instant::now(),
            real_start: Timestamp::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Shifted { start, since, .. } => {
                let elapsed = jiff::SignedDuration::try_from(since.elapsed()).unwrap_or_default();
                start.saturating_add(elapsed).unwrap_or(*start)
            }
        }
    }

    /// True when `RUNNER_NOW` replaced the real clock (every command says so on stderr).
    pub fn is_shifted(&self) -> bool {
        matches!(self, Clock::Shifted { .. })
    }

    /// What a run records about its clock: None for the real clock.
    pub fn simulated(&self) -> Option<Simulated> {
        match self {
            Clock::System => None,
            Clock::Shifted {
                start, real_start, ..
            } => Some(Simulated {
                from: *start,
                real_start: Some(*real_start),
            }),
        }
    }
}

/// Parses an RFC 3339 instant; a bracketed zone annotation is accepted too.
pub fn parse_instant(text: &str) -> Result<Timestamp, jiff::Error> {
    text.trim().parse::<Timestamp>()
}
