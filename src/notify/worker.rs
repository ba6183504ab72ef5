//! The delivery worker: one background thread behind a bounded queue, so that a slow or dead
//! receiver never stops or slows the run. Each delivery is tried now, then after 30 s, then
//! after 2 min; every try is journaled. At the end of the run the runner waits a bounded time
//! for what is still queued; retries not yet due are tried once more at once, and what is
//! still not delivered is journaled as given up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cloudevent::{header_text, Notice, CLOUDEVENTS_JSON};
use super::config::{Sink, SinkKind};
use super::DeliveryError;
use crate::clock::Clock;
use crate::journal::{Journal, NewNotification, RunId};
use crate::secret::{Redactor, Secret};

/// Pauses before the second and third tries.
pub const BACKOFF: &[Duration] = &[Duration::from_secs(30), Duration::from_secs(120)];
/// Longest one try may take (connect, TLS, answer).
pub const TRY_LIMIT: Duration = Duration::from_secs(10);
/// Notifications waiting for the worker; more are dropped (and journaled as dropped).
pub const QUEUE: usize = 64;

/// One notification for one sink.
pub(crate) struct Delivery {
    pub run: RunId,
    pub sink: usize,
    pub notice: Arc<Notice>,
}

enum Msg {
    Deliver(Delivery),
    Finish,
}

/// What the worker and the waiting runner share: deliveries not yet settled.
#[derive(Default)]
struct Outstanding {
    /// (event id, sink index) -> (run, event, sink label, tries so far).
    open: BTreeMap<(String, usize), (RunId, String, String, u32)>,
}

pub(crate) struct Worker {
    tx: SyncSender<Msg>,
    done: Mutex<Receiver<()>>,
    outstanding: Arc<Mutex<Outstanding>>,
    ctx: Arc<Context>,
}

/// What every try needs.
struct Context {
    sinks: Vec<Sink>,
    /// SMTP passwords, by sink index.
    passwords: BTreeMap<usize, Secret>,
    redactor: Redactor,
    state: PathBuf,
    clock: Clock,
}

impl Context {
    fn journal(&self, n: NewNotification) {
        let n = NewNotification {
            detail: self.redactor.redact(&n.detail),
            ..n
        };
        let written = Journal::open_existing(&self.state).and_then(|j| match j {
            Some(j) => j.record_notification(&n),
            None => Ok(()),
        });
        if let Err(e) = written {
            tracing::warn!("cannot journal a notification delivery: {e}");
        }
    }

    fn deliver(&self, rt: &tokio::runtime::Runtime, d: &Delivery) -> Result<String, DeliveryError> {
        let Some(sink) = self.sinks.get(d.sink) else {
            return Err(DeliveryError::Http("unknown sink".into()));
        };
        let n = &d.notice;
        match &sink.kind {
            SinkKind::Webhook(url) => super::http::post(
                rt,
                url,
                &[(
                    hyper::header::CONTENT_TYPE.as_str(),
                    CLOUDEVENTS_JSON.to_string(),
                )],
                n.cloud_event_json().into_bytes(),
                TRY_LIMIT,
            ),
            SinkKind::Ntfy(url) => super::http::post(
                rt,
                url,
                &[
                    ("content-type", "text/plain; charset=utf-8".to_string()),
                    ("title", header_text(&n.title())),
                    ("priority", n.ntfy_priority().to_string()),
                    ("tags", n.ntfy_tags()),
                ],
                n.text().into_bytes(),
                TRY_LIMIT,
            ),
            SinkKind::Email(e) => super::smtp::send(
                e,
                self.passwords.get(&d.sink),
                &n.mail_subject(),
                &n.text(),
                TRY_LIMIT,
            ),
        }
    }
}

impl Worker {
    pub fn start(
        sinks: Vec<Sink>,
        passwords: BTreeMap<usize, Secret>,
        redactor: Redactor,
        state: PathBuf,
        clock: Clock,
    ) -> Result<Worker, std::io::Error> {
        let (tx, rx) = sync_channel(QUEUE);
        let (done_tx, done_rx) = sync_channel(1);
        let outstanding: Arc<Mutex<Outstanding>> = Arc::default();
        let ctx = Arc::new(Context {
            sinks,
            passwords,
            redactor,
            state,
            clock,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::clone(&outstanding);
        let c = Arc::clone(&ctx);
        std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                run(&c, &rt, &rx, &shared);
                let _ = done_tx.send(());
            })?;
        Ok(Worker {
            tx,
            done: Mutex::new(done_rx),
            outstanding,
            ctx,
        })
    }

    /// Queues a delivery without waiting; a full queue drops it (journaled).
    pub fn submit(&self, d: Delivery) {
        let key = (d.notice.id.clone(), d.sink);
        let label = self.label(d.sink);
        let run = d.run.clone();
        let event = d.notice.event.name().to_string();
        if let Ok(mut o) = self.outstanding.lock() {
            o.open
                .insert(key.clone(), (run.clone(), event.clone(), label.clone(), 0));
        }
        match self.tx.try_send(Msg::Deliver(d)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if let Ok(mut o) = self.outstanding.lock() {
                    o.open.remove(&key);
                }
                self.ctx.journal(NewNotification {
                    run,
                    event_id: key.0,
                    event,
                    sink: label,
                    attempt: 0,
                    at: self.ctx.clock.now(),
                    outcome: "dropped",
                    detail: format!(
                        "more than {QUEUE} notifications were waiting; this one was not sent"
                    ),
                });
            }
        }
    }

    fn label(&self, sink: usize) -> String {
        self.ctx
            .sinks
            .get(sink)
            .map(Sink::label)
            .unwrap_or_default()
    }

    /// Waits up to `wait` for the queue to drain, then journals what was not delivered.
    pub fn finish(self, wait: Duration) {
        send_within(&self.tx, Msg::Finish, wait);
        let finished = self
            .done
            .lock()
            .map(|rx| rx.recv_timeout(wait).is_ok())
            .unwrap_or(false);
        if finished {
            return;
        }
        let open: Vec<_> = self
            .outstanding
            .lock()
            .map(|mut o| std::mem::take(&mut o.open))
            .unwrap_or_default()
            .into_iter()
            .collect();
        for ((event_id, _), (run, event, sink, tries)) in open {
            self.ctx.journal(NewNotification {
                run,
                event_id,
                event,
                sink,
                attempt: tries,
                at: self.ctx.clock.now(),
                outcome: "given-up",
                detail: format!(
                    "not delivered within {}s of the end of the run; the runner exited",
                    wait.as_secs()
                ),
            });
        }
    }
}

/// `SyncSender::send` with a bound: the queue may be full while the worker is busy.
fn send_within(tx: &SyncSender<Msg>, mut m: Msg, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        match tx.try_send(m) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return;
                }
                m = back;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn run(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    rx: &Receiver<Msg>,
    outstanding: &Mutex<Outstanding>,
) {
    // Failed deliveries waiting for their next try.
    let mut retries: Vec<Retry> = Vec::new();
    let try_once = |d: Delivery, tries_before: u32, last_chance: bool| {
        try_once(ctx, rt, outstanding, d, tries_before, last_chance)
    };
    loop {
        let wait = retries
            .iter()
            .map(|(due, _, _)| due.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(Msg::Deliver(d)) => retries.extend(try_once(d, 0, false)),
            Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => {
                // The run is over: what is queued gets its tries now, retries one last try.
                while let Ok(Msg::Deliver(d)) = rx.try_recv() {
                    retries.extend(try_once(d, 0, false));
                }
                for (_, d, tries) in retries.drain(..) {
                    try_once(d, tries, true);
                }
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) =
                    retries.drain(..).partition(|(due, _, _)| *due <= now);
                retries = later;
                for (_, d, tries) in due {
                    retries.extend(try_once(d, tries, false));
                }
            }
        }
    }
}

/// A failed delivery waiting for its next try: when, what, and how many tries so far.
type Retry = (Instant, Delivery, u32);

/// One try of a delivery, journaled; the retry it needs, if it failed and may be tried again
/// (never after `last_chance`).
fn try_once(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    outstanding: &Mutex<Outstanding>,
    d: Delivery,
    tries_before: u32,
    last_chance: bool,
) -> Option<Retry> {
    let attempt = tries_before + 1;
    let result = ctx.deliver(rt, &d);
    let label = ctx.sinks.get(d.sink).map(Sink::label).unwrap_or_default();
    let key = (d.notice.id.clone(), d.sink);
    let base = NewNotification {
        run: d.run.clone(),
        event_id: d.notice.id.clone(),
        event: d.notice.event.name().to_string(),
        sink: label,
        attempt,
        at: ctx.clock.now(),
        outcome: "delivered",
        detail: String::new(),
    };
    let e = match result {
        Ok(answer) => {
            ctx.journal(NewNotification {
                detail: answer,
                ..base
            });
            if let Ok(mut o) = outstanding.lock() {
                o.open.remove(&key);
            }
            return None;
        }
        Err(e) => e,
    };
    let more = !last_chance && (attempt as usize) <= BACKOFF.len();
    let detail = if more {
        let pause = BACKOFF[attempt as usize - 1];
        format!("{e}; next try in {}s", pause.as_secs())
    } else {
        format!("{e}; no more tries")
    };
    ctx.journal(NewNotification {
        outcome: if more { "failed" } else { "given-up" },
        detail,
        ..base
    });
    if let Ok(mut o) = outstanding.lock() {
        if more {
            if let Some(entry) = o.open.get_mut(&key) {
                entry.3 = attempt;
            }
        } else {
            o.open.remove(&key);
        }
    }
    more.then(|| (Instant::now() + BACKOFF[attempt as usize - 1], d, attempt))
}
