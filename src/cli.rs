//! Command-line interface: argument definitions and dispatch to the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use runner::journal::pg;

use std::io::IsTerminal;

use runner::clock::{self, Clock};
use runner::engine::{self, event::Reporter, interrupt::Interrupt};
use runner::exit::Exit;
use runner::journal::{Journal, MarkKind};
use runner::notify::{Notifier, NotifyError, Tee};
use runner::plan::{self, saved::SavedPlanError, PlanError};
use runner::playbook::{self, LoadError, Playbook};
use runner::progress;
use runner::{errln, out, outln};

#[derive(Parser, Debug)]
#[command(
    name = "runner",
    version,
    about = "Run cutover playbooks over SSH, WinRM or locally: only outside business hours, checkpointed, resumable.",
    after_help = "Exit codes: 0 success, 1 a step failed, 2 invalid input, 3 stopped by the business-hours window, 4 conflict (locked state or changed plan), 5 waiting for an operator, 130 interrupted.\nRUNNER_NOW=<RFC 3339> replaces the clock (rehearsals and tests)."
)]
struct Cli {
    /// More log detail on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a playbook without touching any machine.
    Validate {
        /// The playbook (YAML).
        file: PathBuf,
    },
    /// Show the review: targets, rendered commands, a schedule across nights, warnings.
    Plan(PlanArgs),
    /// Run the playbook (or, with --dry-run, show what would run).
    Apply(ApplyArgs),
    /// Undo succeeded steps in reverse order, stopping before a point of no return.
    Rollback(RollbackArgs),
    /// Record an operator's decision about a step: done, retry or skip.
    Mark(MarkArgs),
    /// Show what is done, in doubt, failed or next, from the journal.
    Status(StatusArgs),
    /// Write the run record for the customer.
    Report(ReportArgs),
    /// Connect to every target (host key, authentication) and run a no-op.
    Ping(PingArgs),
    /// Record an SSH target's host key as trusted, after checking its fingerprint.
    Trust(TrustArgs),
    /// Print the JSON Schema of the playbook format, for editors.
    Schema,
    /// Move a cutover's journal between stores.
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Copy a cutover's journal from one store to another (an SQLite file or a
    /// postgres:// URL) and verify it, table by table: row counts and a SHA-256 of the rows.
    /// The destination must not hold runs of the cutover yet; both are locked meanwhile.
    Copy {
        /// Where the journal is now: an SQLite file or postgres://user@host:port/database.
        from: String,
        /// Where it goes.
        to: String,
        /// The cutover (its playbook's `name`); by default the name the SQLite side records.
        #[arg(long)]
        cutover: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct StateArg {
    /// The journal: an SQLite file (default `.runner/<playbook-stem>.db` beside the playbook),
    /// or a PostgreSQL server `postgres://user@host:port/database` shared by a team (the
    /// password from PGPASSWORD or ~/.pgpass / PGPASSFILE, never in the URL).
    #[arg(long, value_name = "PATH|URL", env = "RUNNER_STATE")]
    state: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct RollbackArgs {
    /// The playbook (YAML).
    file: PathBuf,
    /// Roll back only the steps after this one.
    #[arg(long, value_name = "STEP")]
    to: Option<String>,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long)]
    yes: bool,
    /// Also undo pairs in doubt (the runner stopped while they ran), with their rollback
    /// command; without it, pairs in doubt stop the rollback until `runner mark` decides.
    #[arg(long)]
    include_in_doubt: bool,
    /// Start even if the business-hours window is closed (needs --reason; journaled).
    #[arg(long, requires = "reason")]
    override_window: bool,
    /// Why the window is overridden (recorded with who and when).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    #[command(flatten)]
    state: StateArg,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
struct OutputArgs {
    /// Only failures and the result.
    #[arg(short, long)]
    quiet: bool,
    /// One JSON event per line on stdout, for tools.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum MarkValue {
    /// The step did its work (verified by a person).
    Done,
    /// Run the step again on the next apply.
    Retry,
    /// Do not run it; count it as done.
    Skip,
}

#[derive(clap::Args, Debug)]
struct MarkArgs {
    /// The playbook (YAML).
    file: PathBuf,
    /// STEP or STEP@TARGET.
    step: String,
    #[arg(value_enum)]
    mark: MarkValue,
    /// Why (recorded in the journal and the report).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum TextOrJson {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// The playbook (YAML).
    file: PathBuf,
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
    #[command(flatten)]
    state: StateArg,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ReportFormatArg {
    Markdown,
    Html,
    Json,
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// The playbook (YAML).
    file: PathBuf,
    #[arg(long, value_enum, default_value_t = ReportFormatArg::Markdown)]
    format: ReportFormatArg,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    state: StateArg,
}

#[derive(clap::Args, Debug)]
struct PingArgs {
    /// The playbook (YAML).
    file: PathBuf,
}

#[derive(clap::Args, Debug)]
struct TrustArgs {
    /// The playbook (YAML).
    file: PathBuf,
    /// Only this target (default: every ssh target).
    target: Option<String>,
    /// Trust without asking (only after checking the fingerprint another way).
    #[arg(long)]
    yes: bool,
}

#[derive(clap::Args, Debug)]
struct PlanArgs {
    /// The playbook (YAML).
    file: PathBuf,
    /// Simulate from this instant (RFC 3339, e.g. 2026-11-30T17:00:00-06:00); default now.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Also save the reviewed plan (JSON, with hashes) for `apply --plan`.
    #[arg(long, value_name = "PLAN.json")]
    out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ApplyArgs {
    /// The playbook (YAML).
    file: PathBuf,
    /// Show the plan and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Refuse to run unless the playbook and its files match this reviewed plan.
    #[arg(long, value_name = "PLAN.json")]
    plan: Option<PathBuf>,
    /// With --dry-run: simulate from this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// With --dry-run: output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// How many targets of one step run at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_parallel: u16,
    /// Start even if the business-hours window is closed (needs --reason; journaled).
    #[arg(long, requires = "reason")]
    override_window: bool,
    /// Why the window is overridden (recorded with who and when).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Keep earlier successes of steps that changed in the playbook since.
    #[arg(long)]
    accept_changed: bool,
    #[command(flatten)]
    state: StateArg,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PlanFormat {
    Text,
    Markdown,
    Json,
}

/// How long the end of a run waits for notifications still being delivered.
const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => Exit::InvalidInput.code(),
            };
        }
    };
    init_logging(cli.verbose);
    let clock = match Clock::from_env() {
        Ok(c) => c,
        Err(e) => {
            errln!("error: {e}");
            return Exit::InvalidInput.code();
        }
    };
    if clock.is_shifted() {
        errln!(
            "note: {} is set: the clock starts at {} instead of the real time",
            clock::RUNNER_NOW,
            clock.now()
        );
    }
    match run(cli.command, clock) {
        Ok(exit) => exit.code(),
        Err(e) => {
            let exit = exit_for(&e);
            errln!("{}", describe(&e));
            exit.code()
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Which exit code an error means. Unknown errors are failures (1).
fn exit_for(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        if cause.is::<LoadError>()
            || cause.is::<PlanError>()
            || cause.is::<InvalidArg>()
            || cause.is::<pg::UrlError>()
            || matches!(
                cause.downcast_ref::<NotifyError>(),
                Some(NotifyError::Secret { .. })
            )
        {
            return Exit::InvalidInput;
        }
        if let Some(e) = cause.downcast_ref::<engine::EngineError>() {
            return e.exit();
        }
        if let Some(j) = cause.downcast_ref::<runner::journal::JournalError>() {
            if engine::state_path_unusable(j) {
                return Exit::InvalidInput;
            }
        }
        if let Some(runner::journal::copy::CopyError::NotEmpty(_)) = cause.downcast_ref() {
            return Exit::Conflict;
        }
        if let Some(e) = cause.downcast_ref::<runner::ping::PingError>() {
            return e.exit();
        }
        if let Some(s) = cause.downcast_ref::<SavedPlanError>() {
            return match s {
                SavedPlanError::Mismatch { .. } => Exit::Conflict,
                SavedPlanError::Write { .. } => Exit::StepFailed,
                _ => Exit::InvalidInput,
            };
        }
    }
    Exit::StepFailed
}

fn describe(e: &anyhow::Error) -> String {
    // Load errors render themselves fully (with source lines); others get the usual chain.
    if let Some(l) = e.downcast_ref::<LoadError>() {
        return l.to_string();
    }
    let mut out = format!("error: {e}");
    for cause in e.chain().skip(1) {
        // Many errors already include their cause in their own text; say it once.
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
    }
    let unusable = e.chain().any(|c| {
        c.downcast_ref::<runner::journal::JournalError>()
            .is_some_and(engine::state_path_unusable)
            || matches!(
                c.downcast_ref::<engine::EngineError>(),
                Some(engine::EngineError::Journal(j)) if engine::state_path_unusable(j)
            )
    });
    if unusable {
        out.push_str(&format!("\n  = help: {}", engine::STATE_PATH_HELP));
    }
    out
}

/// A command-line value that is not valid.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidArg(String);

fn run(command: Command, clock: Clock) -> anyhow::Result<Exit> {
    match command {
        Command::Validate { file } => {
            let from = playbook::FitFrom {
                at: clock.now(),
                simulated: clock.is_shifted(),
            };
            let pb = playbook::load_checking_fit(&file, from)?;
            let pairs: usize = pb.steps.iter().map(|s| s.targets.len()).sum();
            outln!(
                "{}: valid ({} steps, {} step x target pairs, {} targets)",
                file.display(),
                pb.steps.len(),
                pairs,
                pb.targets.len()
            );
            Ok(Exit::Success)
        }
        Command::Schema => {
            outln!("{}", playbook::schema::json_schema());
            Ok(Exit::Success)
        }
        Command::Plan(args) => {
            let pb = playbook::load(&args.file)?;
            show_plan(
                &pb,
                args.start.as_deref(),
                args.format,
                args.out.as_deref(),
                &clock,
            )
        }
        Command::Apply(args) => {
            let pb = playbook::load(&args.file)?;
            if let Some(reviewed) = &args.plan {
                plan::saved::verify(reviewed, &pb)?;
            }
            if args.dry_run {
                return show_plan(&pb, args.start.as_deref(), args.format, None, &clock);
            }
            let state = state_path(&pb, &args.state)?;
            let opts = engine::ApplyOptions {
                runs_dir: runs_dir(&pb, &state),
                state,
                max_parallel: usize::from(args.max_parallel),
                override_reason: args.override_window.then(|| args.reason.clone()).flatten(),
                accept_changed: args.accept_changed,
                interactive: engine::stdin_is_terminal(),
                args: std::env::args().collect(),
            };
            let reporter = reporter(&args.output, clock);
            let notifier = Notifier::new(&pb, &opts.state, clock)?;
            let interrupt = interrupt(reporter.clone());
            let outcome = match &notifier {
                Some(n) => engine::apply(&pb, &opts, clock, &Tee(reporter.as_ref(), n), interrupt),
                None => engine::apply(&pb, &opts, clock, reporter.as_ref(), interrupt),
            };
            if let Some(n) = notifier {
                n.finish(NOTIFY_WAIT);
            }
            Ok(conclude(outcome?, args.output.json))
        }
        Command::Rollback(args) => {
            let pb = playbook::load(&args.file)?;
            let state = state_path(&pb, &args.state)?;
            let opts = engine::RollbackOptions {
                runs_dir: runs_dir(&pb, &state),
                state,
                to: args.to.clone(),
                yes: args.yes,
                interactive: engine::stdin_is_terminal(),
                override_reason: args.override_window.then(|| args.reason.clone()).flatten(),
                args: std::env::args().collect(),
                include_in_doubt: args.include_in_doubt,
            };
            let reporter = reporter(&args.output, clock);
            let notifier = Notifier::new(&pb, &opts.state, clock)?;
            let interrupt = interrupt(reporter.clone());
            let outcome = match &notifier {
                Some(n) => {
                    engine::rollback(&pb, &opts, clock, &Tee(reporter.as_ref(), n), interrupt)
                }
                None => engine::rollback(&pb, &opts, clock, reporter.as_ref(), interrupt),
            };
            if let Some(n) = notifier {
                n.finish(NOTIFY_WAIT);
            }
            Ok(conclude(outcome?, args.output.json))
        }
        Command::Mark(args) => {
            let pb = playbook::load(&args.file)?;
            let opts = engine::MarkOptions {
                state: state_path(&pb, &args.state)?,
                pair: args.step.clone(),
                mark: match args.mark {
                    MarkValue::Done => MarkKind::Done,
                    MarkValue::Retry => MarkKind::Retry,
                    MarkValue::Skip => MarkKind::Skip,
                },
                reason: args.reason.clone(),
            };
            Ok(conclude(engine::mark(&pb, &opts, clock)?, false))
        }
        Command::Status(args) => {
            let pb = playbook::load(&args.file)?;
            let state = state_path(&pb, &args.state)?;
            let journal = Journal::open_existing(&state)?;
            if let Some(j) = &journal {
                warn_other_playbook(j, &pb)?;
            }
            let host = runner::journal::lock::host_name().unwrap_or_default();
            let holder = runner::journal::lock::read_holder_of(&state);
            let mut view =
                runner::status::status(&pb, journal.as_ref(), clock.now(), &host, holder.as_ref())?;
            view.now_simulated = clock.is_shifted();
            let text = match args.format {
                TextOrJson::Text => runner::status::render_status_text(&view, &pb),
                TextOrJson::Json => serde_json::to_string_pretty(&view)? + "\n",
            };
            // What was recorded is masked already; this also covers older records.
            let text = engine::targets::Secrets::redactor_for(&pb).redact(&text);
            out!("{text}");
            Ok(Exit::Success)
        }
        Command::Report(args) => {
            let pb = playbook::load(&args.file)?;
            let state = state_path(&pb, &args.state)?;
            let Some(journal) = Journal::open_existing(&state)? else {
                anyhow::bail!(
                    "no journal at {}: the playbook has not been applied yet",
                    state.display()
                );
            };
            warn_other_playbook(&journal, &pb)?;
            let format = match args.format {
                ReportFormatArg::Markdown => runner::report::ReportFormat::Markdown,
                ReportFormatArg::Html => runner::report::ReportFormat::Html,
                ReportFormatArg::Json => runner::report::ReportFormat::Json,
            };
            let text = runner::report::report(&pb, &journal, &runs_dir(&pb, &state), format)?;
            let text = engine::targets::Secrets::redactor_for(&pb).redact(&text);
            match &args.out {
                Some(path) => {
                    std::fs::write(path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    errln!("wrote {}", path.display());
                }
                None => out!("{text}"),
            }
            Ok(Exit::Success)
        }
        Command::Ping(args) => {
            let pb = playbook::load(&args.file)?;
            Ok(runner::ping::ping(&pb)?)
        }
        Command::State(StateCommand::Copy { from, to, cutover }) => {
            state_copy(&from, &to, cutover.as_deref(), clock)
        }
        Command::Trust(args) => {
            let pb = playbook::load(&args.file)?;
            Ok(runner::ping::trust(&pb, args.target.as_deref(), args.yes)?)
        }
    }
}

/// `status` and `report` only read: they show another playbook's journal, but say so.
fn warn_other_playbook(journal: &Journal, pb: &Playbook) -> anyhow::Result<()> {
    if let Some(owner) = journal.playbook()?.filter(|o| *o != pb.name) {
        eprintln!(
            "warning: the journal {} belongs to the playbook `{owner}`, not to `{}`",
            journal.path().display(),
            pb.name
        );
    }
    Ok(())
}

/// The journal's real path (symlinks resolved): its lock, its runs folder and the file itself
/// are the same whichever path led to it.
///
/// A postgres:// URL stands for this playbook's cutover on that server: the playbook's `name`
/// identifies it, not a path on this machine.
fn state_path(pb: &Playbook, arg: &StateArg) -> anyhow::Result<PathBuf> {
    let given = arg
        .state
        .clone()
        .unwrap_or_else(|| engine::default_state_path(pb));
    if let Some(url) = given.to_str().filter(|s| pg::is_url(s)) {
        pg::check_url(url)?;
        return Ok(pg::location_path(url, &pb.name));
    }
    Ok(runner::journal::resolve_path(&given))
}

/// Where a run's logs go: beside the SQLite journal, or beside the playbook when the journal
/// is on a server (logs stay on the machine that ran the steps).
fn runs_dir(pb: &Playbook, state: &std::path::Path) -> PathBuf {
    if pg::parse_location(state).is_some() {
        engine::runs_dir(&engine::default_state_path(pb))
    } else {
        engine::runs_dir(state)
    }
}

/// `runner state copy`.
fn state_copy(from: &str, to: &str, cutover: Option<&str>, clock: Clock) -> anyhow::Result<Exit> {
    use runner::journal::lock;
    for url in [from, to].into_iter().filter(|s| pg::is_url(s)) {
        pg::check_url(url)?;
    }
    let name = match cutover {
        Some(n) => n.to_owned(),
        None => {
            let file = [from, to]
                .into_iter()
                .find(|s| !pg::is_url(s))
                .ok_or_else(|| {
                    InvalidArg(
                        "both sides are servers: say which cutover with --cutover NAME".into(),
                    )
                })?;
            Journal::open_existing(std::path::Path::new(file))?
                .map(|j| j.playbook())
                .transpose()?
                .flatten()
                .ok_or_else(|| {
                    InvalidArg(format!(
                        "{file} does not record its playbook's name: say which cutover with \
                         --cutover NAME"
                    ))
                })?
        }
    };
    let place = |s: &str| {
        if pg::is_url(s) {
            pg::location_path(s, &name)
        } else {
            PathBuf::from(s)
        }
    };
    let (from_path, to_path) = (place(from), place(to));
    let who = engine::Who::current();
    let holder = lock::Holder::this_process("state copy", &who.user, clock.now());
    let _from_lock = lock::acquire(&from_path, &holder).map_err(engine::EngineError::from)?;
    let to_lock = lock::acquire(&to_path, &holder).map_err(engine::EngineError::from)?;
    let Some(src) = Journal::open_existing(&from_path)? else {
        return Err(InvalidArg(format!("no journal at {from}")).into());
    };
    if let Some(owner) = src.playbook()?.filter(|o| *o != name) {
        return Err(InvalidArg(format!(
            "{from} belongs to the playbook `{owner}`, not to the cutover `{name}`"
        ))
        .into());
    }
    let mut dst = Journal::open(&to_path)?;
    dst.hold(&to_lock);
    let sums = src.copy_into(&dst)?;
    for s in &sums {
        out!("{:<18} {:>7} rows  sha256 {}\n", s.table, s.rows, s.sha256);
    }
    errln!("copied the cutover `{name}` from {from} to {to}: verified, every table identical");
    Ok(Exit::Success)
}

fn reporter(o: &OutputArgs, clock: Clock) -> Arc<progress::Console> {
    let on_terminal = std::io::stdout().is_terminal();
    let inner: Box<dyn Reporter> = if o.json {
        Box::new(progress::JsonLines)
    } else if !o.quiet && on_terminal {
        Box::new(progress::Bars::new(clock))
    } else {
        Box::new(progress::Plain {
            quiet: o.quiet,
            clock,
        })
    };
    Arc::new(progress::Console::new(inner, on_terminal))
}

/// Signal handling for a run. Ctrl-C or SIGTERM: the first stops new work, the second stops
/// running commands, a third ends the process at once (the journal keeps what was running as
/// in doubt). SIGHUP: the terminal is gone; the run goes on, writing only its run log.
fn interrupt(reporter: Arc<progress::Console>) -> Interrupt {
    use engine::interrupt::Signal;
    let i = Interrupt::new();
    let installed = i.install(move |sig, n| {
        if sig == Signal::HangUp {
            reporter.hang_up();
            tracing::info!("SIGHUP: the terminal is gone; the run goes on, see its run log");
            return;
        }
        let name = sig.name();
        match n {
            1 => errln!("\n{name} received: no new steps will start; running ones are allowed to finish. Press Ctrl-C again to stop them now."),
            2 => errln!("\n{name} received again: stopping running commands; they will be recorded as interrupted. Press Ctrl-C once more to exit at once."),
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

/// Prints an outcome's message and turns it into the exit code. With `--json` stdout carries
/// only JSON events (the message is in `run_finished`), so the text goes to stderr.
fn conclude(o: engine::Outcome, json: bool) -> Exit {
    if !o.message.is_empty() {
        if o.exit == Exit::Success && !json {
            outln!("{}", o.message.trim_end());
        } else {
            errln!("{}", o.message.trim_end());
        }
    }
    o.exit
}

fn show_plan(
    pb: &Playbook,
    start: Option<&str>,
    format: PlanFormat,
    out: Option<&Path>,
    clock: &Clock,
) -> anyhow::Result<Exit> {
    let start = match start {
        Some(s) => clock::parse_instant(s).map_err(|e| {
            InvalidArg(format!(
                "--start {s:?} is not an RFC 3339 instant (for example 2026-11-30T17:00:00-06:00): {e}"
            ))
        })?,
        None => clock.now(),
    };
    let p = plan::build(pb, start)?;
    if let Some(path) = out {
        plan::saved::save(&p, path)?;
        errln!("saved the reviewed plan to {}", path.display());
    }
    let text = match format {
        PlanFormat::Text => plan::render_text(&p, pb),
        PlanFormat::Markdown => plan::render_markdown(&p, pb),
        PlanFormat::Json => {
            serde_json::to_string_pretty(&p).context("serializing the plan")? + "\n"
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`runner plan x | head`) is not an error worth a message.
    let _ = stdout.write_all(text.as_bytes());
    Ok(Exit::Success)
}
