//! `runner status FILE --follow`: a running run, live, from any terminal. Everything comes from
//! the journal and the run's folder (its events file and each pair's output file), so the view
//! can be left and entered again at will and never disturbs the run.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::engine::runlog::RunLog;
use crate::journal::{lock, process_alive, Journal, JournalError, Run};
use crate::playbook::Playbook;
use crate::status::{self, PairStatus, StatusView};

/// How many lines of each running pair's output are shown.
pub const TAIL_LINES: usize = 5;

/// One look at the run.
#[derive(Debug, Clone)]
pub struct Frame {
    pub text: String,
    /// The same without what changes every second (the clock, countdowns): output is redrawn
    /// on a plain (non-terminal) stdout only when this changes.
    pub key: String,
    /// Set once the run followed has ended, with how it ended.
    pub ended: Option<String>,
}

/// What `--follow` watches: the state file and the folder of its runs.
pub struct Follow<'a> {
    pub pb: &'a Playbook,
    pub state: PathBuf,
    pub runs_dir: PathBuf,
    pub host: String,
    /// The run followed: the last one in the journal when following began.
    pub run: Option<String>,
}

impl Follow<'_> {
    /// Reads the journal and the run's folder once.
    pub fn frame(&mut self, now: Timestamp) -> Result<Frame, JournalError> {
        let journal = Journal::open_for_reading(&self.state)?;
        let holder = lock::read_holder_of(&self.state);
        let view = status::status(self.pb, journal.as_ref(), now, &self.host, holder.as_ref())?;
        let runs = match &journal {
            Some(j) => j.runs()?,
            None => Vec::new(),
        };
        if self.run.is_none() {
            self.run = runs.last().map(|r| r.id.0.clone());
        }
        let run = self
            .run
            .as_ref()
            .and_then(|id| runs.iter().find(|r| &r.id.0 == id));
        let tz = self.pb.window.time_zone();
        let (head, ended) = head(&view, run, &self.host, tz, now);
        let mut live = now_line(&view, tz, now);
        let mut body = String::new();
        let run_dir = run.map(|r| crate::paths::run_folder(&self.runs_dir, &r.id.0));
        let mut waiting = String::new();
        if ended.is_none() {
            if let Some((key, line)) = run_dir.as_deref().and_then(|d| window_wait(d, tz, now)) {
                waiting = key;
                live.push_str(&line);
            }
            if let Some(step) = run_dir.as_deref().and_then(waiting_for_operator) {
                let _ = writeln!(
                    body,
                    "waiting for an operator: manual step `{step}`; when it is done, run `runner mark {} {step} done` (or `skip`)",
                    view.path
                );
            }
        }
        render_pairs(&view, run_dir.as_deref(), tz, now, &mut body);
        if ended.is_none() {
            render_next(&view, tz, now, &mut body);
        }
        if let Some(how) = &ended {
            let _ = writeln!(body, "\nThe run ended: {how}");
        }
        Ok(Frame {
            text: format!("{head}{live}{body}"),
            key: format!("{head}{waiting}{body}"),
            ended,
        })
    }
}

/// The playbook and the run followed (none yet, or who started it and when), and how the run
/// ended (None while it goes on).
fn head(
    view: &StatusView,
    run: Option<&Run>,
    this_host: &str,
    tz: &TimeZone,
    now: Timestamp,
) -> (String, Option<String>) {
    let mut head = String::new();
    let _ = writeln!(head, "Playbook: {} ({})", view.playbook, view.path);
    let ended = match run {
        None => {
            let _ = writeln!(head, "No run yet: nothing to follow.");
            Some("no run has started".to_string())
        }
        Some(r) => {
            let _ = writeln!(
                head,
                "Run {} ({} by {}, pid {} on {}), started {}",
                r.id.0,
                r.command.as_str(),
                r.user,
                r.pid,
                r.host,
                label(r.started_at, tz, now)
            );
            run_end(r, this_host)
        }
    };
    (head, ended)
}

/// The clock line, saying when it is simulated.
fn now_line(view: &StatusView, tz: &TimeZone, now: Timestamp) -> String {
    let mut live = String::new();
    let _ = writeln!(
        live,
        "Now: {}{}",
        label(now, tz, now),
        if view.now_simulated {
            " (simulated: RUNNER_NOW)"
        } else {
            ""
        }
    );
    live
}

/// A wait for the window still ahead: what the redraw key says of it (a wait that begins is
/// news; its countdown ticking is not), and the line with the countdown.
fn window_wait(run_dir: &Path, tz: &TimeZone, now: Timestamp) -> Option<(String, String)> {
    let (step, until) = waiting_for_window(run_dir)?;
    if until <= now {
        return None;
    }
    let key = format!("waiting for `{step}` until {until}\n");
    let mut line = String::new();
    let _ = writeln!(
        line,
        "waiting for the window: `{step}` may start at {} (in {})",
        label(until, tz, now),
        countdown(until.duration_since(now))
    );
    Some((key, line))
}

/// What comes next (the steps not running, when they may start) and whether it fits.
fn render_next(view: &StatusView, tz: &TimeZone, now: Timestamp, body: &mut String) {
    let Some(fit) = &view.fit else {
        return;
    };
    if view.schedule.is_empty() {
        return;
    }
    let _ = writeln!(body, "\nNext:");
    for s in view
        .schedule
        .iter()
        .filter(|s| !running_step(view, &s.step))
    {
        let _ = writeln!(
            body,
            "  {}  {} ({}) on {}",
            label(s.start, tz, now),
            s.step,
            s.title,
            s.targets.join(", ")
        );
    }
    let _ = writeln!(body, "{fit}");
}

/// Whether any pair of `step` runs now.
fn running_step(v: &StatusView, step: &str) -> bool {
    v.steps
        .iter()
        .any(|s| s.id == step && s.pairs.iter().any(|p| p.status == PairStatus::Running))
}

/// How the run ended, or None while it goes on.
fn run_end(r: &Run, this_host: &str) -> Option<String> {
    if let Some(out) = &r.outcome {
        return Some(out.clone());
    }
    if r.ended_at.is_some() {
        return Some("ended".into());
    }
    if r.host == this_host && !process_alive(r.pid) {
        return Some(format!(
            "its runner (pid {}) is gone without closing the run; `runner apply` resumes it",
            r.pid
        ));
    }
    None
}

fn render_pairs(
    v: &StatusView,
    run_dir: Option<&Path>,
    tz: &TimeZone,
    now: Timestamp,
    o: &mut String,
) {
    let total: usize = v.counts.values().sum();
    let done: usize = v
        .counts
        .iter()
        .filter(|(s, _)| s.is_done())
        .map(|(_, n)| n)
        .sum();
    let _ = writeln!(o, "Done: {done} of {total} step x target pairs");
    let mut any = false;
    for s in &v.steps {
        for p in &s.pairs {
            let show = matches!(p.status, PairStatus::Running | PairStatus::InDoubt)
                || p.status.is_failure();
            if !show {
                continue;
            }
            if !any {
                let _ = writeln!(o, "\nNow running:");
                any = true;
            }
            let mut state = p.status.label().to_string();
            if let Some(r) = &p.running {
                if r.detached_job.is_some() {
                    state.push_str(" (detached)");
                }
                let _ = write!(state, " since {}", label(r.started_at, tz, now));
            }
            let _ = writeln!(o, "  {} on {}: {state}", s.id, p.target);
            if let Some(dir) = run_dir {
                for line in tail(&dir.join(RunLog::output_name(&s.id, &p.target)), TAIL_LINES) {
                    let _ = writeln!(o, "    | {line}");
                }
            }
        }
    }
    if !any {
        let _ = writeln!(o, "\nNow running: nothing");
    }
}

/// The last `n` lines of a pair's output file, without their timestamps, made safe for a
/// terminal.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = read_tail(path, 16 * 1024);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            // "2026-12-06T01:12:13Z stdout | text"
            let shown = l.split_once(" | ").map(|(_, t)| t).unwrap_or(l);
            status::one_line(shown, 160)
        })
        .collect()
}

/// Up to the last `max` bytes of a file, from a line start.
fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(max);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    if from > 0 {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    }
}

/// The step the run waits for and until when, if the run's last event (output aside) is a
/// wait for the window (`when_closed: wait`).
fn waiting_for_window(run_dir: &Path) -> Option<(String, Timestamp)> {
    let last = last_event(run_dir)?;
    let until = match last["event"].as_str()? {
        "waiting" => last["until"].as_str()?,
        "window_closed" if last["action"] == "wait" => last["next_start"].as_str()?,
        _ => return None,
    };
    Some((last["step"].as_str()?.to_string(), until.parse().ok()?))
}

/// The run's last event other than output and notices.
fn last_event(run_dir: &Path) -> Option<serde_json::Value> {
    let text = read_tail(&run_dir.join("events.jsonl"), 64 * 1024);
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] != "output" && e["event"] != "notice")
}

/// The manual step the run waits for an operator on, if that is what it does now.
fn waiting_for_operator(run_dir: &Path) -> Option<String> {
    let last = last_event(run_dir)?;
    (last["event"] == "operator_needed").then(|| last["step"].as_str().map(str::to_string))?
}

/// "18:00 CST" today, "Mon 7 Dec 18:00 CST" another day, in the playbook's zone.
fn label(t: Timestamp, tz: &TimeZone, now: Timestamp) -> String {
    let z = t.to_zoned_datetime(tz.clone());
    let fmt = if z.date() == now.to_zoned_datetime(tz.clone()).date() {
        "%H:%M %Z"
    } else {
        "%a %-d %b %H:%M %Z"
    };
    z.strftime(fmt).to_string()
}

/// "2h 13m", "4m 05s", "12s".
fn countdown(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_read_as_hours_and_minutes() {
        assert_eq!(
            countdown(SignedDuration::from_secs(2 * 3600 + 13 * 60 + 5)),
            "2h 13m"
        );
        assert_eq!(countdown(SignedDuration::from_secs(245)), "4m 05s");
        assert_eq!(countdown(SignedDuration::from_secs(12)), "12s");
        assert_eq!(countdown(SignedDuration::from_secs(-3)), "0s");
    }
}
