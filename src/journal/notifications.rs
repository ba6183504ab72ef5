//! Notification deliveries in the journal: one row per try, so `status` and the report can
//! say what reached whom, and what did not.

use jiff::Timestamp;
use serde::Serialize;

use super::{require_run, Journal, JournalError, RunId};

/// One delivery try, as recorded.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub run: RunId,
    /// The CloudEvent id: the tries of one notification share it.
    pub event_id: String,
    /// The event name (`step-failed`, ...).
    pub event: String,
    /// The sink's label (no URL path, no secret).
    pub sink: String,
    pub attempt: u32,
    pub at: Timestamp,
    /// `delivered`, `failed`, `given-up` or `dropped`.
    pub outcome: &'static str,
    /// What the receiver said, or why it could not be reached; masked by the caller.
    pub detail: String,
}

/// A recorded delivery try.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub run_id: String,
    pub event_id: String,
    pub event: String,
    pub sink: String,
    pub attempt: u32,
    pub at: Timestamp,
    pub outcome: String,
    pub detail: String,
}

impl Journal {
    pub fn record_notification(&self, n: &NewNotification) -> Result<(), JournalError> {
        self.write(|tx| {
            require_run(tx, &n.run)?;
            tx.exec(
                "INSERT INTO notifications (run_id, event_id, event, sink, attempt, at, outcome, \
                 detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &[
                    (&n.run.0).into(),
                    (&n.event_id).into(),
                    (&n.event).into(),
                    (&n.sink).into(),
                    n.attempt.into(),
                    n.at.into(),
                    n.outcome.into(),
                    (&n.detail).into(),
                ],
            )?;
            Ok(())
        })
    }

    /// Delivery tries in the order recorded, all of them or one run's.
    pub fn notifications(&self, run: Option<&RunId>) -> Result<Vec<Notification>, JournalError> {
        self.read(|tx| {
            tx.rows(
                "SELECT run_id, event_id, event, sink, attempt, at, outcome, detail \
                 FROM notifications WHERE CAST(?1 AS TEXT) IS NULL OR run_id = ?1 ORDER BY id",
                &[run.map(|r| r.0.as_str()).into()],
            )?
            .iter()
            .map(|r| {
                Ok(Notification {
                    run_id: r.text(0)?,
                    event_id: r.text(1)?,
                    event: r.text(2)?,
                    sink: r.text(3)?,
                    attempt: r.u32(4)?,
                    at: r.ts(5)?,
                    outcome: r.text(6)?,
                    detail: r.text(7)?,
                })
            })
            .collect()
        })
    }
}

/// One notification to one sink, with all its tries folded into where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct DeliverySummary {
    pub run_id: String,
    pub event_id: String,
    pub event: String,
    pub sink: String,
    /// `delivered`, `given-up`, `dropped`, or `failed` (a retry was still due when the record
    /// ends: the runner may still be running, or died).
    pub outcome: String,
    pub tries: u32,
    /// The last try.
    pub at: Timestamp,
    /// What the last try got.
    pub detail: String,
}

/// Folds tries into one line per notification and sink, in the order they were first tried.
pub fn summarize(records: &[Notification]) -> Vec<DeliverySummary> {
    let mut out: Vec<DeliverySummary> = Vec::new();
    for r in records {
        match out
            .iter_mut()
            .find(|s| s.event_id == r.event_id && s.sink == r.sink)
        {
            Some(s) => {
                s.outcome = r.outcome.clone();
                s.tries = s.tries.max(r.attempt);
                s.at = r.at;
                s.detail = r.detail.clone();
            }
            None => out.push(DeliverySummary {
                run_id: r.run_id.clone(),
                event_id: r.event_id.clone(),
                event: r.event.clone(),
                sink: r.sink.clone(),
                outcome: r.outcome.clone(),
                tries: r.attempt,
                at: r.at,
                detail: r.detail.clone(),
            }),
        }
    }
    out
}
