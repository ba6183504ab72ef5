//! Notifications: tell people what happens while nobody watches the terminal.
//!
//! The engine knows nothing of them. A [`Notifier`] is a [`Reporter`] placed beside the
//! terminal's: it derives notifications from the engine's events, renders each once
//! ([`cloudevent`]) and hands it to a background `worker` through a bounded queue, so a slow
//! or dead receiver never stops or slows the run. Every delivery try is journaled.
//!
//! Which engine events become which notifications:
//! - a pair that ended failed (its last attempt failed or timed out): `step-failed`;
//! - `OperatorNeeded` (a manual step, or in-doubt pairs that need `runner mark`):
//!   `operator-needed`;
//! - a step about to start whose estimate plus the estimates of every later step and the
//!   window's margin no longer fit before business hours: `window-closing`, once per night;
//! - the run starts waiting for the window (`when_closed: wait`): `night-done` if work ran
//!   tonight, else `window-closing`;
//! - the run stops for the window (exit 3): `run-stopped`, else `night-done`, else
//!   `window-closing`, else `run-finished`;
//! - any other end of the run: `run-finished`.
//!
//! One engine occurrence gives each sink at most one message: the first of these events (in
//! that order) that the sink subscribes to.

pub mod cloudevent;
pub use crate::playbook::notify as config;
mod http;
mod notifier;
mod smtp;
mod worker;

pub use cloudevent::{Data, Notice};
pub use config::{is_loopback, EmailSink, HttpUrl, NotifyEvent, Sink, SinkKind, Smtp, SmtpTls};
pub use notifier::Notifier;
pub use worker::{BACKOFF, QUEUE, TRY_LIMIT};

use crate::engine::event::Reporter;

/// Why a delivery try failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("HTTP failed: {0}")]
    Http(String),
    #[error("the receiver answered HTTP {status}{}", if answer.is_empty() { String::new() } else { format!(": {answer}") })]
    Status { status: u16, answer: String },
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(std::time::Duration),
    #[error("mail failed: {0}")]
    Smtp(String),
}

/// Why notifications cannot be set up: bad input, found before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify entry {index} ({sink}): {source}")]
    Secret {
        index: usize,
        sink: String,
        #[source]
        source: crate::secret::SecretError,
    },
    #[error("cannot start the notification worker: {0}")]
    Worker(#[source] std::io::Error),
}

/// Shows events to two reporters: the terminal's and the notifier.
pub struct Tee<'a>(pub &'a dyn Reporter, pub &'a dyn Reporter);

impl Reporter for Tee<'_> {
    fn event(&self, e: &crate::engine::event::Event) {
        self.0.event(e);
        self.1.event(e);
    }
}
