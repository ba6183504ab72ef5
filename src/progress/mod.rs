//! Showing a run as it happens: bars on a terminal, plain lines elsewhere, JSON for tools.
//! Each is a [`Reporter`]; the engine does not know which one listens.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::clock::Clock;
use crate::engine::event::{Decision, Event, Reporter};
use crate::engine::interrupt::Interrupt;
use crate::engine::operator::{
    parse_manual, Confirmation, Confirmed, ManualAnswer, ManualTask, Operator,
};

mod lines;
use lines::line;

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

    fn suspend(&self, f: &mut dyn FnMut()) {
        self.inner.suspend(f)
    }
}

/// The operator at the terminal the run was started from: the reporter that owns the screen
/// shows the question with its drawing suspended (the prompt is not drawn over), and a wrong
/// answer gets a reply saying what is valid.
pub struct Terminal {
    screen: Arc<Console>,
    interrupt: Interrupt,
}

impl Terminal {
    /// `interrupt` ends a question unanswered: Ctrl-C at the prompt stops the run.
    pub fn new(screen: Arc<Console>, interrupt: Interrupt) -> Terminal {
        Terminal { screen, interrupt }
    }

    /// One line from stdin; None at the end of input, on an error, or once the run is
    /// interrupted while it waits.
    fn read_answer(&self) -> Option<String> {
        use std::os::fd::AsRawFd;
        let stdin = std::io::stdin();
        loop {
            if self.interrupt.stopping() {
                return None;
            }
            let mut fd = libc::pollfd {
                fd: stdin.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd that lives for the whole call.
            let rc = unsafe { libc::poll(&mut fd, 1, 200) };
            if rc == 0
                || (rc < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
            {
                continue;
            }
            let mut line = String::new();
            return match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line),
            };
        }
    }
}

impl Operator for Terminal {
    fn present(&self) -> bool {
        true
    }

    fn manual(&self, task: &ManualTask) -> ManualAnswer {
        let mut answer = ManualAnswer::Wait;
        self.screen.suspend(&mut || {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "\n== Manual step `{}`: {}\n\n  {}\n",
                task.step,
                task.title,
                task.instructions.replace('\n', "\n  ")
            );
            answer = loop {
                let _ = write!(err, "Type `done` when it is finished, or `fail`: ");
                let _ = err.flush();
                let Some(line) = self.read_answer() else {
                    break ManualAnswer::Wait;
                };
                match parse_manual(&line) {
                    Ok(a) => break a,
                    Err(reply) => {
                        let _ = writeln!(err, "  {reply}");
                    }
                }
            };
        });
        answer
    }

    fn confirm(&self, q: &Confirmation) -> Confirmed {
        let mut answer = Confirmed::No;
        self.screen.suspend(&mut || {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}Proceed? Type `{}` to roll back: ", q.plan, q.word);
            let _ = err.flush();
            if self.read_answer().is_some_and(|l| l.trim() == q.word) {
                answer = Confirmed::Yes;
            }
        });
        answer
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

/// Plain lines, for logs and pipes. `quiet` keeps only failures and the end. Times are in
/// `tz`, the customer's zone (the playbook window's).
pub struct Plain {
    pub quiet: bool,
    pub clock: Clock,
    pub tz: TimeZone,
}

impl Reporter for Plain {
    fn event(&self, e: &Event) {
        if let Some(text) = line(e, self.quiet, &self.tz) {
            let mut out = std::io::stdout().lock();
            let now = crate::window::clock_label(self.clock.now(), &self.tz);
            let _ = writeln!(out, "[{now}] {text}");
        }
    }
}

/// What the whole-run bar says: the time left before business hours, or the wait for the
/// window; computed from `now` each time it is drawn, so it ticks.
#[derive(Debug, Clone, Default)]
struct Countdown {
    business_at: Option<Timestamp>,
    /// `when_closed: wait`: the step waiting and when it may start.
    waiting: Option<(String, Timestamp)>,
    simulated: bool,
}

impl Countdown {
    fn message(&self, now: Timestamp) -> String {
        let msg = match (&self.waiting, self.business_at) {
            (Some((step, until)), _) if *until > now => format!(
                "waiting for the window: {step} may start in {}",
                crate::duration::human_duration(until.duration_since(now))
            ),
            (_, Some(t)) => {
                let left = t.duration_since(now);
                if left.is_negative() {
                    "business hours have begun".to_string()
                } else {
                    format!(
                        "{} before business hours",
                        crate::duration::human_duration(left)
                    )
                }
            }
            (_, None) => String::new(),
        };
        if self.simulated {
            format!("{msg} (simulated clock)").trim_start().to_string()
        } else {
            msg
        }
    }
}

/// How often the bar's countdown is recomputed.
const TICK: Duration = Duration::from_secs(1);

/// Bars on a terminal: the whole run (pairs done of total, time left before business hours)
/// and one line per running pair with its elapsed time and last output line.
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    pairs: Mutex<BTreeMap<(String, String), ProgressBar>>,
    countdown: Arc<Mutex<Countdown>>,
    clock: Clock,
    tz: TimeZone,
    hung_up: AtomicBool,
    stop_ticking: Arc<AtomicBool>,
}

impl Bars {
    pub fn new(clock: Clock, tz: TimeZone) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} pairs  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(500));
        let countdown = Arc::new(Mutex::new(Countdown {
            simulated: clock.is_shifted(),
            ..Countdown::default()
        }));
        let stop_ticking = Arc::new(AtomicBool::new(false));
        // The countdown moves with the clock, not only when an event comes.
        {
            let (bar, countdown, stop) = (overall.clone(), countdown.clone(), stop_ticking.clone());
            let spawned = std::thread::Builder::new()
                .name("bar-countdown".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(TICK);
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let msg = countdown.lock().ok().map(|c| c.message(clock.now()));
                        if let Some(m) = msg {
                            bar.set_message(m);
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("the countdown of the progress bar will not tick: {e}");
            }
        }
        Bars {
            multi,
            overall,
            pairs: Mutex::new(BTreeMap::new()),
            countdown,
            clock,
            tz,
            hung_up: AtomicBool::new(false),
            stop_ticking,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Countdown)) {
        let msg = match self.countdown.lock() {
            Ok(mut c) => {
                f(&mut c);
                c.message(self.clock.now())
            }
            Err(_) => return,
        };
        self.overall.set_message(msg);
    }

    fn refresh_message(&self) {
        self.update(|_| {});
    }

    fn println(&self, text: String) {
        let _ = self.multi.println(text);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.stop_ticking.store(true, Ordering::SeqCst);
    }
}

impl Reporter for Bars {
    fn hang_up(&self) {
        self.hung_up.store(true, Ordering::SeqCst);
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
    }

    /// The bars are cleared and not drawn while `f` runs (a question to the operator), then
    /// drawn again below what it printed.
    fn suspend(&self, f: &mut dyn FnMut()) {
        if self.hung_up.load(Ordering::SeqCst) {
            f();
        } else {
            self.multi.suspend(f);
        }
    }

    fn event(&self, e: &Event) {
        let tz = &self.tz;
        match e {
            Event::RunStarted {
                pairs_total,
                pairs_done,
                business_hours_at,
                ..
            } => {
                self.overall.set_length(*pairs_total as u64);
                self.overall.set_position(*pairs_done as u64);
                self.update(|c| c.business_at = *business_hours_at);
                if let Some(t) = line(e, false, tz) {
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
                self.update(|c| c.waiting = None);
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
                if let Some(t) = line(e, false, tz) {
                    self.println(t);
                }
                self.refresh_message();
            }
            // A pair skipped as done was counted in `pairs_done` when the run started; one
            // found done by its check after an interruption was not.
            Event::PairFinished { ok: true, .. } => {
                self.overall.inc(1);
            }
            Event::InDoubt {
                decision: Decision::CheckPassed,
                ..
            } => {
                self.overall.inc(1);
                if let Some(t) = line(e, false, tz) {
                    self.println(t);
                }
            }
            Event::Waiting { step, until, .. } => {
                self.update(|c| c.waiting = Some((step.clone(), *until)));
            }
            Event::StepStarted { .. } => {
                self.update(|c| c.waiting = None);
                if let Some(t) = line(e, false, tz) {
                    self.println(t);
                }
            }
            Event::RunFinished { .. } => {
                self.stop_ticking.store(true, Ordering::SeqCst);
                self.overall.finish_and_clear();
            }
            other => {
                if let Some(t) = line(other, false, tz) {
                    self.println(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_countdowns_move_with_the_clock() {
        let mut c = Countdown {
            business_at: Some(ts("2026-12-09T14:00:00Z")),
            ..Countdown::default()
        };
        assert_eq!(
            c.message(ts("2026-12-09T13:00:00Z")),
            "1h before business hours"
        );
        assert_eq!(
            c.message(ts("2026-12-09T13:00:01Z")),
            "59m59s before business hours"
        );
        c.waiting = Some(("a".into(), ts("2026-12-09T00:00:30Z")));
        c.simulated = true;
        assert_eq!(
            c.message(ts("2026-12-09T00:00:01Z")),
            "waiting for the window: a may start in 29s (simulated clock)"
        );
        assert_eq!(
            c.message(ts("2026-12-09T00:00:02Z")),
            "waiting for the window: a may start in 28s (simulated clock)"
        );
    }
}
