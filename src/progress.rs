//! Showing a run as it happens: bars on a terminal, plain lines elsewhere, JSON for tools.
//! Each is a [`Reporter`]; the engine does not know which one listens.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;

use crate::clock::Clock;
use crate::engine::event::{Event, Reporter};

/// `println!` that never panics: a closed stdout (`runner ... | head -1`) or a terminal that
/// hung up is no reason to end a run; what matters is in the journal and the run log.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `print!` that never panics (see [`outln!`]).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        let _ = write!(o, $($t)*);
        let _ = o.flush();
    }};
}

/// `eprintln!` that never panics (see [`outln!`]).
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// The reporter of a command run from a shell: it shows events until the terminal goes away
/// (SIGHUP), then nothing, so a run that lost its terminal goes on writing only its run log
/// and journal. Output to a file or a pipe is not a terminal and goes on.
pub struct Console {
    inner: Box<dyn Reporter>,
    on_terminal: bool,
    gone: std::sync::atomic::AtomicBool,
}

impl Console {
    pub fn new(inner: Box<dyn Reporter>, on_terminal: bool) -> Console {
        Console {
            inner,
            on_terminal,
            gone: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the terminal was reported gone.
    pub fn is_gone(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Reporter for Console {
    fn event(&self, e: &Event) {
        if !self.is_gone() {
            self.inner.event(e);
        }
    }

    fn hang_up(&self) {
        if self.on_terminal {
            self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
            self.inner.hang_up();
        }
    }
}

/// One JSON object per line on stdout.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn event(&self, e: &Event) {
        if let Ok(line) = serde_json::to_string(e) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Plain lines, for logs and pipes. `quiet` keeps only failures and the end.
pub struct Plain {
    pub quiet: bool,
    pub clock: Clock,
}

fn hhmmss(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

fn secs(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if d.as_secs() >= 60 {
        crate::duration::human_duration(jiff::SignedDuration::from_secs(d.as_secs() as i64))
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The human text for an event, or None if this event shows nothing by itself.
fn line(e: &Event, quiet: bool) -> Option<String> {
    let s = match e {
        Event::RunStarted {
            command,
            playbook,
            pairs_total,
            pairs_done,
            run_dir,
            ..
        } => {
            if quiet {
                return None;
            }
            format!("{command} {playbook}: {pairs_done} of {pairs_total} step x target pairs already done; output in {run_dir}")
        }
        Event::StepStarted {
            step,
            title,
            targets,
            ..
        } if !quiet => {
            format!("> {step} ({title}) on {}", targets.join(", "))
        }
        Event::PairSkipped {
            step,
            target,
            reason,
        } if !quiet => format!("  = {step} on {target}: {reason}"),
        Event::AttemptStarted {
            step,
            target,
            kind,
            attempt,
            of,
        } if !quiet && (*attempt > 1 || kind != "run") => {
            format!("  {kind} {step} on {target}: attempt {attempt} of {of}")
        }
        Event::Output {
            step, target, line, ..
        } if !quiet => format!("  {step}@{target} | {line}"),
        Event::AttemptFinished {
            step,
            target,
            kind,
            outcome,
            exit_code,
            elapsed_ms,
            message,
            ..
        } => {
            if outcome == "succeeded" {
                if quiet {
                    return None;
                }
                format!("  ok {kind} {step} on {target} ({})", secs(*elapsed_ms))
            } else {
                // The message already names the exit code when it matters; the code alone
                // can mislead (a run that exited 0 and then failed its check).
                let detail = match (message, exit_code) {
                    (Some(m), _) => m.clone(),
                    (None, Some(c)) => format!("exit code {c}"),
                    (None, None) => outcome.clone(),
                };
                format!(
                    "  FAILED {kind} {step} on {target}: {detail} ({})",
                    secs(*elapsed_ms)
                )
            }
        }
        Event::InDoubt {
            step,
            target,
            decision,
        } => format!("  ? {step} on {target} was in flight when runner stopped: {decision}"),
        Event::WindowClosed {
            step,
            next_start,
            action,
        } => format!(
            "  window closed for {step} ({action}); next allowed start {}",
            next_start
                .map(|t| t.to_string())
                .unwrap_or_else(|| "not within 14 days".into())
        ),
        // Plain output repeats the countdown about every ten minutes; the wait itself was
        // announced by WindowClosed.
        Event::Waiting {
            step,
            until,
            remaining_secs,
        } if !quiet && remaining_secs % 600 >= 570 => format!(
            "  waiting for the window: {step} may start at {until} (in {})",
            crate::duration::human_duration(jiff::SignedDuration::from_secs(*remaining_secs))
        ),
        Event::WindowOverride { step, reason } => {
            format!("  WINDOW OVERRIDDEN for {step}: {reason}")
        }
        Event::Overrun { step, target } => {
            format!("  OVERRUN: {step} on {target} ran into business hours (margin included)")
        }
        Event::OperatorNeeded { step, .. } if !quiet => format!("  operator needed for {step}"),
        Event::Notice { text } if !quiet => text.trim_end().to_string(),
        Event::RunFinished {
            outcome,
            simulated_clock,
            ..
        } if !quiet => match simulated_clock {
            Some(c) => format!("run {outcome} (simulated clock, {})", c.setting()),
            None => format!("run {outcome}"),
        },
        // Shown even with --quiet: a rehearsal's times must not pass for the real night's.
        Event::SimulatedClock { from, real_start } => {
            let real = real_start
                .map(|r| {
                    format!(
                        "; it really started at {}",
                        r.strftime("%Y-%m-%dT%H:%M:%SZ")
                    )
                })
                .unwrap_or_default();
            format!(
                "SIMULATED CLOCK: {}={from}: every time this run shows and records is simulated{real}",
                crate::clock::RUNNER_NOW
            )
        }
        _ => return None,
    };
    Some(s)
}

impl Reporter for Plain {
    fn event(&self, e: &Event) {
        if let Some(text) = line(e, self.quiet) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "[{}] {text}", hhmmss(self.clock.now()));
        }
    }
}

/// Bars on a terminal: the whole run (pairs done of total, time left before business hours)
/// and one line per running pair with its elapsed time and last output line.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    pairs: Mutex<BTreeMap<(String, String), ProgressBar>>,
    business_at: Mutex<Option<Timestamp>>,
    clock: Clock,
}

impl Bars {
    pub fn new(clock: Clock) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} pairs  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(500));
        Bars {
            multi,
            overall,
            pairs: Mutex::new(BTreeMap::new()),
            business_at: Mutex::new(None),
            clock,
        }
    }

    fn refresh_message(&self) {
        let at = self.business_at.lock().ok().and_then(|g| *g);
        let msg = match at {
            Some(t) => {
                let left = t.duration_since(self.clock.now());
                if left.is_negative() {
                    "business hours have begun".to_string()
                } else {
                    format!(
                        "{} before business hours",
                        crate::duration::human_duration(left)
                    )
                }
            }
            None => String::new(),
        };
        let msg = if self.clock.is_shifted() {
            format!("{msg} (simulated clock)").trim_start().to_string()
        } else {
            msg
        };
        self.overall.set_message(msg);
    }

    fn println(&self, text: String) {
        let _ = self.multi.println(text);
    }
}

impl Reporter for Bars {
    fn hang_up(&self) {
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
    }

    fn event(&self, e: &Event) {
        match e {
            Event::RunStarted {
                pairs_total,
                pairs_done,
                business_hours_at,
                ..
            } => {
                self.overall.set_length(*pairs_total as u64);
                self.overall.set_position(*pairs_done as u64);
                if let Ok(mut g) = self.business_at.lock() {
                    *g = *business_hours_at;
                }
                self.refresh_message();
                if let Some(t) = line(e, false) {
                    self.println(t);
                }
            }
            Event::AttemptStarted {
                step,
                target,
                kind,
                attempt,
                of,
            } => {
                let pb = self.multi.add(ProgressBar::new_spinner());
                pb.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix} [{elapsed}] {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                let tries = if *of > 1 {
                    format!(" ({attempt}/{of})")
                } else {
                    String::new()
                };
                pb.set_prefix(format!("{kind} {step}@{target}{tries}"));
                pb.enable_steady_tick(Duration::from_millis(200));
                if let Ok(mut m) = self.pairs.lock() {
                    if let Some(old) = m.insert((step.clone(), target.clone()), pb) {
                        old.finish_and_clear();
                    }
                }
            }
            Event::Output {
                step, target, line, ..
            } => {
                if let Ok(m) = self.pairs.lock() {
                    if let Some(pb) = m.get(&(step.clone(), target.clone())) {
                        pb.set_message(line.clone());
                    }
                }
            }
            Event::AttemptFinished { step, target, .. } => {
                if let Ok(mut m) = self.pairs.lock() {
                    if let Some(pb) = m.remove(&(step.clone(), target.clone())) {
                        pb.finish_and_clear();
                    }
                }
                if let Some(t) = line(e, false) {
                    self.println(t);
                }
                self.refresh_message();
            }
            Event::PairFinished { ok: true, .. } | Event::PairSkipped { .. } => {
                self.overall.inc(1);
                if let Some(t) = line(e, false) {
                    self.println(t);
                }
            }
            Event::Waiting {
                step,
                remaining_secs,
                ..
            } => {
                self.overall.set_message(format!(
                    "waiting for the window: {step} may start in {}",
                    crate::duration::human_duration(jiff::SignedDuration::from_secs(
                        *remaining_secs
                    ))
                ));
            }
            Event::RunFinished { .. } => {
                self.overall.finish_and_clear();
            }
            other => {
                if let Some(t) = line(other, false) {
                    self.println(t);
                }
            }
        }
    }
}
