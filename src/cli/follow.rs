//! `runner status --follow`: redraws a run's view until it ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use std::io::IsTerminal;

use runner::clock::Clock;
use runner::exit::Exit;
use runner::playbook::Playbook;
use runner::{out, outln};

use super::state::runs_dir;

/// `status --follow`: redraws the run's view until it ends (exit 0) or the viewer leaves
/// (Ctrl-C, exit 0; the run goes on). On a terminal the screen is redrawn; elsewhere the view is
/// printed again when it changes (at most once a minute when only the clock moves).
pub(super) fn follow_run(
    pb: &Playbook,
    file: &Path,
    state: PathBuf,
    clock: &Clock,
) -> anyhow::Result<Exit> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing Ctrl-C handling")?;
    }
    let tty = std::io::stdout().is_terminal();
    let redactor = runner::targets::Secrets::redactor_for(pb);
    let mut follow = runner::follow::Follow {
        pb,
        runs_dir: runs_dir(pb, &state),
        state,
        host: runner::journal::lock::host_name().unwrap_or_default(),
        run: None,
    };
    let mut shown = String::new();
    let mut shown_key = String::new();
    let mut shown_at = Instant::now();
    let mut first = true;
    loop {
        let frame = follow.frame(clock.now())?;
        let text = redactor.redact(&frame.text);
        if tty {
            if text != shown {
                out!("\x1b[H\x1b[2J{text}");
            }
        } else if first
            || frame.key != shown_key
            || shown_at.elapsed() >= Duration::from_secs(60)
            || frame.ended.is_some()
        {
            if !first {
                outln!();
            }
            out!("{text}");
            shown_at = Instant::now();
        }
        first = false;
        shown = text;
        shown_key = frame.key;
        if frame.ended.is_some() {
            return Ok(Exit::Success);
        }
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if stop.load(Ordering::SeqCst) {
            outln!(
                "\nLeft the live view; the run goes on. `runner status {} --follow` shows it again.",
                file.display()
            );
            return Ok(Exit::Success);
        }
    }
}
