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
    /// Set a template variable for this run (text; repeatable; wins over the files' vars).
    /// Shown in the plan; part of the reviewed plan's hash.
    #[arg(long = "var", global = true, value_name = "NAME=VALUE")]
    var: Vec<String>,
    /// Read template variables from a YAML mapping (repeatable; `--var` wins).
    #[arg(long = "vars", global = true, value_name = "FILE")]
    vars: Vec<PathBuf>,
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
    /// Serve a read-only live web page (and JSON) of one or more cutovers.
    Serve(ServeArgs),
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
    #[command(flatten)]
    window: WindowOverrideArgs,
    #[command(flatten)]
    state: StateArg,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::Args, Debug)]
struct WindowOverrideArgs {
    /// Let this step start even if the business-hours window is closed (repeatable; needs
    /// --reason; journaled). Other steps still wait for the window.
    #[arg(long, value_name = "STEP", requires = "reason")]
    override_window: Vec<String>,
    /// Let every remaining step start even if the window is closed, points of no return
    /// included; the steps it covers are listed before the first starts (needs --reason).
    #[arg(long, requires = "reason", conflicts_with = "override_window")]
    override_window_all: bool,
    /// Why the window is overridden (recorded with who and when).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

impl WindowOverrideArgs {
    fn get(&self) -> Option<engine::WindowOverride> {
        let reason = self.reason.clone()?;
        if self.override_window_all {
            Some(engine::WindowOverride {
                reason,
                steps: None,
            })
        } else if !self.override_window.is_empty() {
            Some(engine::WindowOverride {
                reason,
                steps: Some(self.override_window.iter().cloned().collect()),
            })
        } else {
            None
        }
    }
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
    /// Follow the run live until it ends (Ctrl-C leaves, the run goes on).
    #[arg(long, conflicts_with = "format")]
    follow: bool,
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
struct ServeArgs {
    /// The playbooks (YAML), one cutover each.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Address to listen on; a token is required unless it is loopback.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Read the access token from this file (then it is required even on loopback); without
    /// it, a non-loopback address gets a random token, printed once.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The journal, when serving one playbook; default `.runner/<playbook-stem>.db` beside it.
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
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
    /// Estimate from the durations measured in these journals (other customers', a
    /// rehearsal's), besides this cutover's own journal.
    #[arg(long, value_name = "JOURNAL", num_args = 1..)]
    history: Vec<PathBuf>,
    /// Use the playbook's estimates only, not even this cutover's journal.
    #[arg(long, conflicts_with = "history")]
    no_history: bool,
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
    #[command(flatten)]
    window: WindowOverrideArgs,
    /// Keep earlier successes of steps that changed in the playbook since.
    #[arg(long)]
    accept_changed: bool,
    /// Run detached from this terminal (its own session; output to `runner.log` in the run's
    /// folder); print the run id and return once the run has started.
    #[arg(long, conflicts_with = "dry_run")]
    background: bool,
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
    // A night's run must not die of a closed terminal in the moments before its signal
    // handlers exist (loading a large playbook takes tens of milliseconds): SIGHUP is ignored
    // from here on; `interrupt()` later installs the handler that only silences the output.
    if matches!(cli.command, Command::Apply(_) | Command::Rollback(_)) {
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions; no other
        // thread exists yet.
        unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
        }
    }
    // Before any thread exists: the variable is read and removed from the environment.
    let announcer = runner::background::Announcer::from_env();
    init_logging(cli.verbose);
    let clock = match Clock::from_env() {
        Ok(c) => c,
        Err(e) => {
            errln!("error: {e}");
            return Exit::InvalidInput.code();
        }
    };
    // A background run's starting command has said it already.
    if clock.is_shifted() && announcer.is_none() {
        errln!(
            "note: {} is set: the clock starts at {} instead of the real time",
            clock::RUNNER_NOW,
            clock.now()
        );
    }
    let given = playbook::GivenVars {
        files: cli.vars,
        vars: cli.var,
    };
    match run(cli.command, clock, announcer, &given) {
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
            || cause.is::<plan::history::HistoryError>()
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

fn run(
    command: Command,
    clock: Clock,
    announcer: Option<runner::background::Announcer>,
    given: &playbook::GivenVars,
) -> anyhow::Result<Exit> {
    match command {
        Command::Validate { file } => {
            let from = playbook::FitFrom {
                at: clock.now(),
                simulated: clock.is_shifted(),
            };
            let pb = playbook::load_with(&file, given, Some(from))?;
            let pairs: usize = pb.steps.iter().map(|s| s.targets.len()).sum();
            outln!(
                "{}: valid ({} steps, {} step x target pairs, {} targets)",
                file.display(),
                pb.steps.len(),
                pairs,
                pb.targets.len()
            );
            if let Some(p) = pb.composition.as_ref().and_then(|c| c.procedure.as_ref()) {
                outln!("  procedure: {}", p.path.display());
            }
            Ok(Exit::Success)
        }
        Command::Schema => {
            outln!("{}", playbook::schema::json_schema());
            Ok(Exit::Success)
        }
        Command::Plan(args) => {
            let pb = playbook::load_with(&args.file, given, None)?;
            let journal = state_path(&pb, &StateArg { state: None })?;
            let mut journals = Vec::new();
            if !args.no_history {
                let own = engine::default_state_path(&pb);
                if own.exists() {
                    journals.push(own);
                }
                journals.extend(args.history.iter().cloned());
            }
            let history = plan::history::History::read(&journals)?;
            if !history.is_empty() {
                let (learned, measured) = history.apply(&pb);
                return show_plan_with(
                    &learned,
                    args.start.as_deref(),
                    args.format,
                    args.out.as_deref(),
                    &clock,
                    Some(&journal),
                    Some((&history, &measured)),
                );
            }
            show_plan(
                &pb,
                args.start.as_deref(),
                args.format,
                args.out.as_deref(),
                &clock,
                Some(&journal),
            )
        }
        Command::Apply(args) => {
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
            let state = state_path(&pb, &args.state)?;
            // No step beyond the file limit: raise it, and cap the fan-out to what it allows.
            let widest = pb.steps.iter().map(|s| s.targets.len()).max().unwrap_or(1);
            let (max_parallel, said) = runner::fdlimit::plan(
                usize::from(args.max_parallel),
                widest,
                runner::fdlimit::raise(),
            );
            if let Some(said) = said {
                errln!("runner: {said}");
            }
            let reporter = reporter(&args.output, clock, &pb);
            let interrupt = interrupt(reporter.clone());
            let opts = engine::ApplyOptions {
                runs_dir: runs_dir(&pb, &state),
                state,
                max_parallel,
                override_window: args.window.get(),
                accept_changed: args.accept_changed,
                operator: operator(&reporter, &interrupt),
                args: std::env::args().collect(),
                // Unattended: a manual step waits for `runner mark` from any shell.
                wait_for_operator: announcer.is_some(),
            };
            let notifier = Notifier::new(&pb, &opts.state, clock)?;
            let background = announcer.map(|announcer| runner::background::Child {
                inner: reporter.clone(),
                announcer,
            });
            let shown: &dyn Reporter = match &background {
                Some(b) => b,
                None => reporter.as_ref(),
            };
            let outcome = match &notifier {
                Some(n) => engine::apply(&pb, &opts, clock, &Tee(shown, n), interrupt),
                None => engine::apply(&pb, &opts, clock, shown, interrupt),
            };
            if let Some(n) = notifier {
                n.finish(NOTIFY_WAIT);
            }
            Ok(conclude(outcome?, args.output.json))
        }
        Command::Rollback(args) => {
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
            let pb = playbook::load_with(&args.file, given, None)?;
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
            let pb = playbook::load_with(&args.file, given, None)?;
            let state = state_path(&pb, &args.state)?;
            let journal = Journal::open_existing(&state)?;
            if let Some(j) = &journal {
                warn_other_playbook(j, &pb)?;
            }
            if args.follow {
                drop(journal);
                return follow_run(&pb, &args.file, state, &clock);
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
            let text = runner::targets::Secrets::redactor_for(&pb).redact(&text);
            out!("{text}");
            Ok(Exit::Success)
        }
        Command::Report(args) => {
            let pb = playbook::load_with(&args.file, given, None)?;
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
            let text = runner::targets::Secrets::redactor_for(&pb).redact(&text);
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
        Command::Serve(args) => serve(args, clock),
        Command::Ping(args) => {
            let pb = playbook::load_with(&args.file, given, None)?;
            Ok(runner::ping::ping(&pb)?)
        }
        Command::State(StateCommand::Copy { from, to, cutover }) => {
            state_copy(&from, &to, cutover.as_deref(), clock)
        }
        Command::Trust(args) => {
            let pb = playbook::load_with(&args.file, given, None)?;
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

fn serve(args: ServeArgs, clock: Clock) -> anyhow::Result<Exit> {
    use runner::serve;
    if args.state.is_some() && args.files.len() > 1 {
        return Err(InvalidArg(
            "--state names one journal: give one playbook with it, or none and let each playbook use its default journal".into(),
        )
        .into());
    }
    let listen =
        serve::parse_listen(&args.listen).map_err(|e| InvalidArg(format!("--listen {e}")))?;
    let mut cutovers = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let pb = playbook::load(file)?;
        let state = state_path(
            &pb,
            &StateArg {
                state: args.state.clone(),
            },
        )?;
        cutovers.push(serve::Cutover {
            runs_dir: runs_dir(&pb, &state),
            state,
            playbook: pb,
        });
    }
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                InvalidArg(format!(
                    "--token-file {}: cannot read it: {e}",
                    path.display()
                ))
            })?;
            let token = text.trim().to_owned();
            if token.is_empty()
                || token
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ';')
            {
                return Err(InvalidArg(format!(
                    "--token-file {}: the token must be one non-empty word (no spaces, no `;`)",
                    path.display()
                ))
                .into());
            }
            Some(token)
        }
        None if listen.ip().is_loopback() => None,
        None => {
            let token = serve::generate_token().context("generating an access token")?;
            println!("access token (shown once): {token}");
            println!(
                "open http://{listen}/?token={token} once; the browser then keeps it in a cookie"
            );
            Some(token)
        }
    };
    serve::serve(serve::ServeOptions {
        cutovers,
        listen,
        token,
        clock,
    })?;
    Ok(Exit::Success)
}

/// The journal's real path (symlinks resolved): its lock, its runs folder and the file itself
/// are the same whichever path led to it.
///
/// A postgres:// URL stands for this playbook's cutover on that server: the playbook's `name`
/// identifies it, not a path on this machine.
fn state_path(pb: &Playbook, arg: &StateArg) -> anyhow::Result<PathBuf> {
    // `--state` (or RUNNER_STATE), then the playbook's `state:`, then beside the playbook.
    let given = arg
        .state
        .clone()
        .or_else(|| pb.state.clone())
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

/// The reporter of a run; times are shown in the customer's zone (the playbook window's).
fn reporter(o: &OutputArgs, clock: Clock, pb: &Playbook) -> Arc<progress::Console> {
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
fn operator(
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

/// When a journal exists: the playbook reduced to what is left, and the text that says what is
/// done, in doubt and left, and whether the rest fits before business hours.
fn resume_from_journal(
    pb: &Playbook,
    state: &Path,
    start: jiff::Timestamp,
) -> anyhow::Result<Option<(Playbook, String)>> {
    let Some(journal) = Journal::open_existing(state)? else {
        return Ok(None);
    };
    let host = runner::journal::lock::host_name().unwrap_or_default();
    let view = runner::status::status(pb, Some(&journal), start, &host, None)?;
    if view.last_run.is_none() {
        return Ok(None);
    }
    let mut done = Vec::new();
    let mut in_doubt = Vec::new();
    let mut left = Vec::new();
    let mut done_pairs = std::collections::HashSet::new();
    for s in &view.steps {
        for p in &s.pairs {
            if p.status.is_done() {
                done_pairs.insert((s.id.clone(), p.target.clone()));
            } else if p.status == runner::status::PairStatus::InDoubt {
                in_doubt.push(format!("{} on {}", s.id, p.target));
            }
        }
        if s.pairs.iter().all(|p| p.status.is_done()) {
            done.push(s.id.clone());
        } else {
            left.push(s.id.clone());
        }
    }
    let is_done = |s: &str, t: &str| done_pairs.contains(&(s.to_string(), t.to_string()));
    let remaining = runner::resume::remaining(pb, &is_done, start)?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut text = format!(
        "From the journal {}: {} of {} steps done\n  done:     {}\n  in doubt: {}\n  left:     {}\n",
        state.display(),
        done.len(),
        view.steps.len(),
        list(&done),
        list(&in_doubt),
        list(&left),
    );
    if !in_doubt.is_empty() {
        text.push_str(&format!(
            "  (`runner status {}` says how to decide about what is in doubt)\n",
            pb.path.display()
        ));
    }
    let summary = remaining.summary(pb, start);
    let mut chars = summary.chars();
    let first: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    text.push_str(&format!("{first}{}\n\n", chars.as_str()));
    Ok(Some((runner::resume::left_playbook(pb, &is_done), text)))
}

/// `status --follow`: redraws the run's view until it ends (exit 0) or the viewer leaves
/// (Ctrl-C, exit 0; the run goes on). On a terminal the screen is redrawn; elsewhere the view is
/// printed again when it changes (at most once a minute when only the clock moves).
fn follow_run(pb: &Playbook, file: &Path, state: PathBuf, clock: &Clock) -> anyhow::Result<Exit> {
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

/// `apply --background`: the same command again, detached from this terminal.
fn start_background(file: &Path) -> anyhow::Result<Exit> {
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
    journal: Option<&Path>,
) -> anyhow::Result<Exit> {
    show_plan_with(pb, start, format, out, clock, journal, None)
}

type Learned<'a> = (
    &'a plan::history::History,
    &'a std::collections::BTreeMap<String, plan::history::Measured>,
);

fn show_plan_with(
    pb: &Playbook,
    start: Option<&str>,
    format: PlanFormat,
    out: Option<&Path>,
    clock: &Clock,
    journal: Option<&Path>,
    learned: Option<Learned<'_>>,
) -> anyhow::Result<Exit> {
    let start = match start {
        Some(s) => clock::parse_instant(s).map_err(|e| {
            InvalidArg(format!(
                "--start {s:?} is not an RFC 3339 instant (for example 2026-11-30T17:00:00-06:00): {e}"
            ))
        })?,
        None => clock.now(),
    };
    let mut p = plan::build(pb, start)?;
    if let Some((history, measured)) = learned {
        history.annotate(&mut p, measured, pb);
    }
    if let Some(path) = out {
        plan::saved::save(&p, path)?;
        errln!("saved the reviewed plan to {}", path.display());
    }
    // With a journal, what is done is not scheduled again: the schedule is of what is left.
    let resume = match journal {
        Some(j) => resume_from_journal(pb, j, start)?,
        None => None,
    };
    let mut shown_pb = pb;
    let left_pb;
    let mut preface = String::new();
    if let Some((left, text)) = resume {
        left_pb = left;
        p = plan::build(&left_pb, start)?;
        if let Some((history, measured)) = learned {
            history.annotate(&mut p, measured, &left_pb);
        }
        shown_pb = &left_pb;
        preface = text;
    }
    let pb = shown_pb;
    let text = match format {
        PlanFormat::Text => preface + &plan::render_text(&p, pb),
        PlanFormat::Markdown => {
            let preface = if preface.is_empty() {
                preface
            } else {
                format!("## Resume from the journal\n\n```\n{preface}```\n\n")
            };
            preface + &plan::render_markdown(&p, pb)
        }
        PlanFormat::Json => {
            serde_json::to_string_pretty(&p).context("serializing the plan")? + "\n"
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`runner plan x | head`) is not an error worth a message.
    let _ = stdout.write_all(text.as_bytes());
    Ok(Exit::Success)
}
