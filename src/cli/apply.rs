//! Apply and rollback wiring: reporter, interrupt, operator, background start and outcome.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use std::io::IsTerminal;

use runner::clock::Clock;
use runner::engine::{self, event::Reporter, interrupt::Interrupt};
use runner::exit::Exit;
use runner::notify::{Notifier, Tee};
use runner::plan;
use runner::playbook::{self, Playbook};
use runner::progress;
use runner::{errln, outln};

use super::plan_view::show_plan;
use super::state::{runs_dir, state_path};
use super::{ApplyArgs, OutputArgs, RollbackArgs};

/// How long the end of a run waits for notifications still being delivered.
pub(super) const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The reporter of a run; times are shown in the customer's zone (the playbook window's).
pub(super) fn reporter(o: &OutputArgs, clock: Clock, pb: &Playbook) -> Arc<progress::Console> {
    let on_terminal = std::io::stdout().is_terminal();
    let tz = pb.window.time_zone().clone();
    let inner: Box<dyn Reporter> = if o.json {
        Box::new(progress::JsonLines)
    } else if !o.quiet && on_terminal {
        Box::new(progress::Bars::new(clock, tz))
    } else {
        Box::new(progress::Plain {
            quiet: o.quiet,
            clock,
            tz,
        })
    };
    Arc::new(progress::Console::new(inner, on_terminal))
}

/// Who answers the engine's questions: the terminal's owner when stdin is a terminal,
/// otherwise nobody (manual steps stop with exit 5, rollback needs `--yes`).
pub(super) fn operator(
    screen: &Arc<progress::Console>,
    interrupt: &Interrupt,
) -> Arc<dyn engine::operator::Operator> {
    if std::io::stdin().is_terminal() {
        Arc::new(progress::Terminal::new(screen.clone(), interrupt.clone()))
    } else {
        Arc::new(engine::operator::Absent)
    }
}

/// Signal handling for a run. Ctrl-C or SIGTERM: the first stops new work, the second stops
/// running commands, a third ends the process at once (the journal keeps what was running as
/// in doubt). SIGHUP: the terminal is gone; the run goes on, writing only its run log.
pub(super) fn interrupt(reporter: Arc<progress::Console>) -> Interrupt {
    use engine::interrupt::Signal;
    let i = Interrupt::new();
    let installed = i.install(move |sig, n| {
        if sig == Signal::HangUp {
            reporter.hang_up();
            tracing::info!("SIGHUP: the terminal is gone; the run goes on, see its run log");
            return;
        }
        let name = sig.name();
        let again = match sig {
            Signal::Terminate => "Send SIGTERM again (or press Ctrl-C)",
            _ => "Press Ctrl-C again",
        };
        match n {
            1 => errln!("\n{name} received: no new steps will start; running commands are allowed to finish, detached jobs are left running on their targets. {again} to stop them now."),
            2 => errln!("\n{name} received again: stopping running commands; they will be recorded as interrupted. {again} to exit at once."),
            _ => {
                errln!("\n{name} received a third time: exiting now. What was running stays in the journal as in doubt; the next `runner apply` decides about it.");
                std::process::exit(Exit::Interrupted.code());
            }
        }
    });
    if let Err(e) = installed {
        tracing::warn!("cannot install the signal handlers: {e}");
    }
    i
}

/// `apply --background`: the same command again, detached from this terminal.
pub(super) fn start_background(file: &Path) -> anyhow::Result<Exit> {
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--background")
        .collect();
    let launched = runner::background::launch(&args, &mut std::io::stderr())
        .context("starting the run in the background")?;
    match launched {
        runner::background::Launch::Started(s) => {
            outln!(
                "started run {} in the background (pid {})\n  log:    {}\n  watch:  runner status {} --follow\n  stop:   kill -TERM {} (no new step starts; running ones finish)",
                s.run_id,
                s.pid,
                s.log.display(),
                file.display(),
                s.pid
            );
            Ok(Exit::Success)
        }
        runner::background::Launch::Failed(code) => Ok(Exit::from_code(code)),
    }
}

/// Prints an outcome's message and turns it into the exit code. With `--json` stdout carries
/// only JSON events (the message is in `run_finished`), so the text goes to stderr.
pub(super) fn conclude(o: engine::Outcome, json: bool) -> Exit {
    if !o.message.is_empty() {
        if o.exit == Exit::Success && !json {
            outln!("{}", o.message.trim_end());
        } else {
            errln!("{}", o.message.trim_end());
        }
    }
    o.exit
}

/// `runner apply`: checks the reviewed plan, then shows it (`--dry-run`), starts the run in the
/// background, or runs it here.
pub(super) fn apply(
    args: ApplyArgs,
    clock: Clock,
    announcer: Option<runner::background::Announcer>,
    given: &playbook::GivenVars,
) -> anyhow::Result<Exit> {
    let pb = playbook::load_with(&args.file, given, None)?;
    if let Some(reviewed) = &args.plan {
        plan::saved::verify(reviewed, &pb)?;
    }
    if args.dry_run {
        let journal = state_path(&pb, &args.state)?;
        return show_plan(
            &pb,
            args.start.as_deref(),
            args.format,
            None,
            &clock,
            Some(&journal),
        );
    }
    if args.background {
        return start_background(&args.file);
    }
    run_apply(&pb, &args, clock, announcer)
}

/// The run itself: options, reporter (shown through the background child when there is one),
/// notifications, and the outcome as an exit code.
fn run_apply(
    pb: &Playbook,
    args: &ApplyArgs,
    clock: Clock,
    announcer: Option<runner::background::Announcer>,
) -> anyhow::Result<Exit> {
    let state = state_path(pb, &args.state)?;
    let max_parallel = fan_out(pb, args.max_parallel);
    let reporter = reporter(&args.output, clock, pb);
    let interrupt = interrupt(reporter.clone());
    let opts = engine::ApplyOptions {
        runs_dir: runs_dir(pb, &state),
        state,
        max_parallel,
        override_window: args.window.get(),
        accept_changed: args.accept_changed,
        operator: operator(&reporter, &interrupt),
        args: std::env::args().collect(),
        // Unattended: a manual step waits for `runner mark` from any shell.
        wait_for_operator: announcer.is_some(),
    };
    let notifier = Notifier::new(pb, &opts.state, clock)?;
    let background = announcer.map(|announcer| runner::background::Child {
        inner: reporter.clone(),
        announcer,
    });
    let shown: &dyn Reporter = match &background {
        Some(b) => b,
        None => reporter.as_ref(),
    };
    let outcome = notified(notifier, shown, |r| {
        engine::apply(pb, &opts, clock, r, interrupt)
    });
    Ok(conclude(outcome?, args.output.json))
}

/// No step beyond the file limit: raises it, and caps the fan-out to what it allows (saying so).
fn fan_out(pb: &Playbook, asked: u16) -> usize {
    let widest = pb.steps.iter().map(|s| s.targets.len()).max().unwrap_or(1);
    let (max_parallel, said) =
        runner::fdlimit::plan(usize::from(asked), widest, runner::fdlimit::raise());
    if let Some(said) = said {
        errln!("runner: {said}");
    }
    max_parallel
}

/// `runner rollback`: undoes succeeded steps in reverse order.
pub(super) fn rollback(
    args: RollbackArgs,
    clock: Clock,
    given: &playbook::GivenVars,
) -> anyhow::Result<Exit> {
    let pb = playbook::load_with(&args.file, given, None)?;
    let state = state_path(&pb, &args.state)?;
    let reporter = reporter(&args.output, clock, &pb);
    let interrupt = interrupt(reporter.clone());
    let opts = engine::RollbackOptions {
        runs_dir: runs_dir(&pb, &state),
        state,
        to: args.to.clone(),
        yes: args.yes,
        operator: operator(&reporter, &interrupt),
        override_window: args.window.get(),
        args: std::env::args().collect(),
        include_in_doubt: args.include_in_doubt,
    };
    let notifier = Notifier::new(&pb, &opts.state, clock)?;
    let outcome = notified(notifier, reporter.as_ref(), |r| {
        engine::rollback(&pb, &opts, clock, r, interrupt)
    });
    Ok(conclude(outcome?, args.output.json))
}

/// Runs `work` with its events shown and, when the playbook has notifications, also given to
/// the notifier, which then has `NOTIFY_WAIT` to deliver what is left.
fn notified<T>(
    notifier: Option<Notifier>,
    shown: &dyn Reporter,
    work: impl FnOnce(&dyn Reporter) -> T,
) -> T {
    let outcome = match &notifier {
        Some(n) => work(&Tee(shown, n)),
        None => work(shown),
    };
    if let Some(n) = notifier {
        n.finish(NOTIFY_WAIT);
    }
    outcome
}
