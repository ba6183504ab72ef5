//! The notifier: a [`Reporter`] that turns the engine's events into notifications (see the
//! module documentation of [`crate::notify`] for which and when) and queues them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::cloudevent::{utc, Data, Notice};
use super::config::{NotifyEvent, Sink, SinkKind};
use super::worker::{Delivery, Worker};
use super::NotifyError;
use crate::clock::Clock;
use crate::engine::event::{AttemptOutcome, ClosedAction, Decision, Event, Reporter, RunOutcome};
use crate::journal::RunId;
use crate::playbook::{BusinessHoursPolicy, Playbook};
use crate::secret::Redactor;
use crate::window::Window;

/// Lines of output kept per step and target for a notification.
const OUTPUT_LINES: usize = 10;
/// Longest output line in a notification, in characters.
const LINE_CHARS: usize = 300;

struct StepInfo {
    id: String,
    title: String,
    manual: bool,
    /// What the window gate counts for it (zero for `business_hours: allow`).
    estimate: SignedDuration,
}

pub struct Notifier {
    playbook: String,
    file: String,
    source: String,
    host: String,
    sinks: Vec<Sink>,
    steps: Vec<StepInfo>,
    window: Window,
    clock: Clock,
    redactor: Redactor,
    worker: Worker,
    track: Mutex<Track>,
}

#[derive(Default)]
struct Track {
    run: Option<RunId>,
    seq: u64,
    output: HashMap<(String, String), VecDeque<String>>,
    /// The last attempt of each pair: outcome, exit code.
    last: HashMap<(String, String), (AttemptOutcome, Option<i64>)>,
    /// An attempt started since the run began or since it last waited for the window.
    worked_tonight: bool,
    /// `window-closing` was sent for this night.
    closing_sent: bool,
    /// In-doubt pairs left to an operator, by step.
    in_doubt: BTreeMap<String, Vec<String>>,
    next_start: Option<Timestamp>,
}

/// A path as a shell word.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-+=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Notifier {
    /// None when the playbook has no `notify:` entries. Resolves SMTP passwords now: a missing
    /// one is bad input, found before anything runs.
    pub fn new(pb: &Playbook, state: &Path, clock: Clock) -> Result<Option<Notifier>, NotifyError> {
        if pb.notify.is_empty() {
            return Ok(None);
        }
        let mut redactor = Redactor::new();
        let mut passwords = BTreeMap::new();
        for (i, sink) in pb.notify.iter().enumerate() {
            if let SinkKind::Email(e) = &sink.kind {
                if let Some(r) = &e.smtp.password {
                    let secret = r.resolve(&pb.dir).map_err(|source| NotifyError::Secret {
                        index: i + 1,
                        sink: sink.label(),
                        source,
                    })?;
                    redactor.add(&secret);
                    passwords.insert(i, secret);
                }
            }
        }
        // The targets' secrets too, where they can be read: the engine masks output with them
        // already, and a notification is masked again on its way out.
        for t in pb.targets.values() {
            for r in [&t.password, &t.passphrase].into_iter().flatten() {
                if let Ok(s) = r.resolve(&pb.dir) {
                    redactor.add(&s);
                }
            }
        }
        let host = crate::journal::lock::host_name().unwrap_or_else(|_| "localhost".into());
        let stem = pb
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "playbook".into());
        let worker = Worker::start(
            pb.notify.clone(),
            passwords,
            redactor.clone(),
            state.to_path_buf(),
            clock,
        )
        .map_err(NotifyError::Worker)?;
        Ok(Some(Notifier {
            playbook: pb.name.clone(),
            file: pb.path.display().to_string(),
            source: format!(
                "runner://{}/{}",
                percent_encode(&host),
                percent_encode(&stem)
            ),
            host,
            sinks: pb.notify.clone(),
            steps: pb
                .steps
                .iter()
                .map(|s| StepInfo {
                    id: s.id.clone(),
                    title: s.title().to_string(),
                    manual: s.is_manual(),
                    estimate: if s.business_hours == BusinessHoursPolicy::Allow {
                        SignedDuration::ZERO
                    } else {
                        s.gate_estimate()
                    },
                })
                .collect(),
            window: pb.window.clone(),
            clock,
            redactor,
            worker,
            track: Mutex::new(Track::default()),
        }))
    }

    /// Waits up to `wait` for queued deliveries, then journals what was not delivered.
    pub fn finish(self, wait: Duration) {
        self.worker.finish(wait);
    }

    fn data(&self, run: &RunId, summary: String) -> Data {
        Data {
            playbook: self.playbook.clone(),
            playbook_file: self.file.clone(),
            run_id: run.to_string(),
            host: self.host.clone(),
            summary: self.redactor.redact(&summary),
            step: None,
            step_title: None,
            target: None,
            exit_code: None,
            outcome: None,
            business_hours_at: None,
            next_start: None,
            output: Vec::new(),
            next: String::new(),
        }
    }

    fn with_step(&self, mut d: Data, step: &str) -> Data {
        d.step = Some(step.to_string());
        d.step_title = self
            .steps
            .iter()
            .find(|s| s.id == step)
            .map(|s| s.title.clone());
        d
    }

    fn apply_cmd(&self) -> String {
        format!("runner apply {}", shell_word(&self.file))
    }

    fn status_cmd(&self) -> String {
        format!("runner status {}", shell_word(&self.file))
    }

    fn local(&self, t: Timestamp) -> String {
        crate::window::local_label_with_zone(t, self.window.time_zone())
    }

    /// Queues one message per sink: the first of `candidates` it subscribes to.
    fn send(&self, track: &mut Track, candidates: &[NotifyEvent], data: Data) {
        let Some(run) = track.run.clone() else {
            return;
        };
        track.seq += 1;
        let mut notices: HashMap<NotifyEvent, Arc<Notice>> = HashMap::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            let Some(event) = candidates.iter().copied().find(|e| sink.wants(*e)) else {
                continue;
            };
            let notice = notices
                .entry(event)
                .or_insert_with(|| {
                    Arc::new(Notice {
                        event,
                        id: format!("{}.{}.{}", run, track.seq, event.name()),
                        source: self.source.clone(),
                        time: self.clock.now(),
                        data: data.clone(),
                    })
                })
                .clone();
            self.worker.submit(Delivery {
                run: run.clone(),
                sink: i,
                notice,
            });
        }
    }

    fn on_event(&self, t: &mut Track, e: &Event) {
        match e {
            Event::RunStarted { run_id, .. } => {
                *t = Track {
                    run: Some(RunId(run_id.clone())),
                    ..Track::default()
                };
            }
            Event::Output {
                step, target, line, ..
            } => keep_output(t, step, target, line),
            Event::AttemptStarted { .. } => t.worked_tonight = true,
            Event::AttemptFinished {
                step,
                target,
                outcome,
                exit_code,
                ..
            } => {
                t.last
                    .insert((step.clone(), target.clone()), (*outcome, *exit_code));
            }
            Event::PairFinished {
                step,
                target,
                ok: false,
                ..
            } => self.step_failed(t, step, target),
            Event::InDoubt {
                step,
                target,
                decision,
            } if *decision == Decision::Operator => {
                t.in_doubt
                    .entry(step.clone())
                    .or_default()
                    .push(target.clone());
            }
            Event::OperatorNeeded { step, instructions } => {
                self.operator_needed(t, step, instructions)
            }
            Event::StepStarted { step, index, .. } => self.check_fit(t, step, *index),
            Event::WindowClosed {
                step,
                next_start,
                action,
            } => self.window_closed(t, step, *next_start, *action),
            Event::RunFinished {
                outcome,
                exit_code,
                message,
                ..
            } => self.run_finished(t, *outcome, *exit_code, message),
            _ => {}
        }
    }

    /// `step-failed` when a pair's last attempt failed or timed out (not when it was
    /// interrupted or stopped for the window), with the end of its output.
    fn step_failed(&self, t: &mut Track, step: &str, target: &str) {
        let key = (step.to_string(), target.to_string());
        let Some((outcome, code)) = t.last.get(&key).cloned() else {
            return;
        };
        let how = match (outcome, code) {
            (AttemptOutcome::Failed, Some(c)) => format!("exit code {c}"),
            (AttemptOutcome::Failed, None) => "failed".to_string(),
            (AttemptOutcome::TimedOut, _) => "timed out".to_string(),
            _ => return, // interrupted, or stopped for the window: not a failure
        };
        let Some(run) = t.run.clone() else { return };
        let mut d = self.with_step(
            self.data(&run, format!("step `{step}` failed on `{target}` ({how})")),
            step,
        );
        d.target = Some(target.to_string());
        d.exit_code = code;
        d.output = t
            .output
            .get(&key)
            .map(|b| b.iter().map(|l| self.redactor.redact(l)).collect())
            .unwrap_or_default();
        d.next = format!("fix the cause, then: {}", self.apply_cmd());
        self.send(t, &[NotifyEvent::StepFailed], d);
    }

    /// `operator-needed`: a manual step waits, or a step is in doubt on the pairs gathered
    /// for it since it started.
    fn operator_needed(&self, t: &mut Track, step: &str, instructions: &str) {
        let Some(run) = t.run.clone() else { return };
        let manual = self.steps.iter().any(|s| s.id == step && s.manual);
        let d = if manual {
            self.manual_step(&run, step, instructions)
        } else {
            let targets = t.in_doubt.remove(step).unwrap_or_default();
            self.in_doubt(&run, step, instructions, &targets)
        };
        self.send(t, &[NotifyEvent::OperatorNeeded], d);
    }

    /// What a manual step's operator is told: its instructions and the `mark` that goes on.
    fn manual_step(&self, run: &RunId, step: &str, instructions: &str) -> Data {
        let file = shell_word(&self.file);
        let mut d = self.with_step(
            self.data(run, format!("manual step `{step}` waits for an operator")),
            step,
        );
        d.target = Some(crate::playbook::OPERATOR.to_string());
        d.output = instructions
            .lines()
            .map(|l| self.redactor.redact(l))
            .collect();
        d.next = format!(
            "carry out the instructions, then: runner mark {file} {step} done && {}",
            self.apply_cmd()
        );
        d
    }

    /// What the operator of a step in doubt on `targets` is told: which pairs, and the `mark`
    /// that decides about them.
    fn in_doubt(&self, run: &RunId, step: &str, instructions: &str, targets: &[String]) -> Data {
        let file = shell_word(&self.file);
        let on = if targets.is_empty() {
            String::new()
        } else {
            format!(
                " on {}",
                targets
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut d = self.with_step(
            self.data(
                run,
                format!("step `{step}` is in doubt{on}: an operator must decide"),
            ),
            step,
        );
        if targets.len() == 1 {
            d.target = targets.first().cloned();
        }
        d.output = instructions
            .lines()
            .map(|l| self.redactor.redact(l))
            .collect();
        let pair = match targets {
            [one] => format!("{step}@{one}"),
            _ => format!("{step}@TARGET"),
        };
        d.next = format!(
            "inspect the target, then: runner mark {file} {pair} done|retry|skip && {}",
            self.apply_cmd()
        );
        d
    }

    /// The window closed: remembers when the run may go on and, when it waits for that,
    /// says so (`night-done` if work ran tonight, else `window-closing`); a new night begins.
    fn window_closed(
        &self,
        t: &mut Track,
        step: &str,
        next_start: Option<Timestamp>,
        action: ClosedAction,
    ) {
        t.next_start = next_start;
        if action != ClosedAction::Wait {
            return;
        }
        let Some(run) = t.run.clone() else { return };
        let when = next_start
            .map(|n| self.local(n))
            .unwrap_or_else(|| "no time within 14 days".into());
        let mut d = self.with_step(
            self.data(
                &run,
                format!("the window is closed: the run waits; `{step}` may start {when}"),
            ),
            step,
        );
        d.next_start = next_start.map(utc);
        d.next = format!(
            "nothing: the run goes on by itself; to watch: {}",
            self.status_cmd()
        );
        let events: &[NotifyEvent] = if t.worked_tonight {
            &[NotifyEvent::NightDone, NotifyEvent::WindowClosing]
        } else {
            &[NotifyEvent::WindowClosing]
        };
        self.send(t, events, d);
        // Whatever runs after the wait belongs to the next night.
        t.worked_tonight = false;
        t.closing_sent = false;
    }

    /// The run ended: `run-finished`, or, when it stopped for business hours, the first of
    /// `run-stopped`, `night-done`, `window-closing` and `run-finished` a sink wants.
    fn run_finished(&self, t: &mut Track, outcome: RunOutcome, exit_code: i32, message: &str) {
        let Some(run) = t.run.clone() else { return };
        let first = message.lines().next().unwrap_or_default().to_string();
        let mut d = self.data(&run, format!("run {outcome}: {first}"));
        d.outcome = Some(outcome.as_str().to_string());
        d.exit_code = Some(i64::from(exit_code));
        let events: &[NotifyEvent] = if outcome == RunOutcome::StoppedWindow {
            self.stopped_window(t, &mut d);
            &[
                NotifyEvent::RunStopped,
                NotifyEvent::NightDone,
                NotifyEvent::WindowClosing,
                NotifyEvent::RunFinished,
            ]
        } else {
            d.next = match outcome {
                RunOutcome::Succeeded => format!(
                    "nothing left to run; the record: runner report {} --format html -o report.html",
                    shell_word(&self.file)
                ),
                RunOutcome::Failed => format!("fix the cause, then: {}", self.apply_cmd()),
                RunOutcome::Interrupted => self.apply_cmd(),
                _ => format!("see what waits: {}", self.status_cmd()),
            };
            &[NotifyEvent::RunFinished]
        };
        self.send(t, events, d);
    }

    /// A run stopped for business hours: when it may go on, when business hours begin, and
    /// the `apply` that goes on.
    fn stopped_window(&self, t: &Track, d: &mut Data) {
        let when = t
            .next_start
            .map(|n| self.local(n))
            .unwrap_or_else(|| "no time within 14 days".into());
        d.summary = self.redactor.redact(&format!(
            "stopped for business hours with work left; it may go on {when}"
        ));
        d.next_start = t.next_start.map(utc);
        d.business_hours_at = self.window.next_business_start(self.clock.now()).map(utc);
        d.next = match t.next_start {
            Some(n) => format!("from {}: {}", self.local(n), self.apply_cmd()),
            None => self.apply_cmd(),
        };
    }

    /// `window-closing` when the work left no longer fits before business hours: this step's
    /// estimate and every later step's, plus the margin. Once per night.
    fn check_fit(&self, t: &mut Track, step: &str, index: usize) {
        if t.closing_sent
            || !self
                .sinks
                .iter()
                .any(|s| s.wants(NotifyEvent::WindowClosing))
        {
            return;
        }
        let now = self.clock.now();
        let Some(bh) = self.window.next_business_start(now) else {
            return;
        };
        let left: Vec<&StepInfo> = self.steps.iter().skip(index).collect();
        let work = left
            .iter()
            .fold(SignedDuration::ZERO, |a, s| a.saturating_add(s.estimate));
        let need = work.saturating_add(self.window.margin());
        let end = now.checked_add(need).unwrap_or(Timestamp::MAX);
        if end <= bh {
            return;
        }
        let Some(run) = t.run.clone() else { return };
        t.closing_sent = true;
        let mut d = self.with_step(
            self.data(
                &run,
                format!(
                    "the work left ({} step{}, about {}) no longer fits before business hours at {}",
                    left.len(),
                    if left.len() == 1 { "" } else { "s" },
                    crate::duration::human_duration(work),
                    self.local(bh)
                ),
            ),
            step,
        );
        d.business_hours_at = Some(utc(bh));
        d.next = format!(
            "nothing yet: steps that cannot finish in time will not start; to watch: {}",
            self.status_cmd()
        );
        self.send(t, &[NotifyEvent::WindowClosing], d);
    }
}

/// Keeps the last `OUTPUT_LINES` lines of a pair's output, each cut to `LINE_CHARS`.
fn keep_output(t: &mut Track, step: &str, target: &str, line: &str) {
    let buf = t
        .output
        .entry((step.to_string(), target.to_string()))
        .or_default();
    if buf.len() == OUTPUT_LINES {
        buf.pop_front();
    }
    buf.push_back(line.chars().take(LINE_CHARS).collect());
}

impl Reporter for Notifier {
    fn event(&self, e: &Event) {
        let mut t = self.track.lock().unwrap_or_else(|p| p.into_inner());
        self.on_event(&mut t, e);
    }
}
