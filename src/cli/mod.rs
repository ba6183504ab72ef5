//! Command-line interface: argument definitions and dispatch to the library.

mod apply;
mod describe;
mod follow;
mod plan_view;
mod report;
mod serve;
mod state;
mod status;

use apply::conclude;
use describe::{describe, exit_for};
use serve::serve;
use state::{state_copy, state_path};

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use runner::clock::{self, Clock};
use runner::engine;
use runner::exit::Exit;
use runner::journal::{Journal, MarkKind};
use runner::playbook::{self, Playbook};
use runner::{errln, outln};

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
    /// The journal: an SQLite file when serving one playbook (default
    /// `.runner/<playbook-stem>.db` beside each), or a PostgreSQL server, which holds every
    /// playbook's cutover under its `name`.
    #[arg(long, value_name = "PATH|URL", env = "RUNNER_STATE")]
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
    #[command(flatten)]
    state: StateArg,
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
        // As the user wrote it: the playbook, and so the customer's zone, is not read yet.
        let given = std::env::var(clock::RUNNER_NOW).unwrap_or_default();
        errln!(
            "note: {}={} is set: the clock starts there instead of the real time",
            clock::RUNNER_NOW,
            given.trim()
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

fn run(
    command: Command,
    clock: Clock,
    announcer: Option<runner::background::Announcer>,
    given: &playbook::GivenVars,
) -> anyhow::Result<Exit> {
    match command {
        Command::Validate { file } => validate(&file, clock, given),
        Command::Schema => {
            outln!("{}", playbook::schema::json_schema());
            Ok(Exit::Success)
        }
        Command::Plan(args) => plan_view::plan(args, clock, given),
        Command::Apply(args) => apply::apply(args, clock, announcer, given),
        Command::Rollback(args) => apply::rollback(args, clock, given),
        Command::Mark(args) => mark(args, clock, given),
        Command::Status(args) => status::status(args, clock, given),
        Command::Report(args) => report::report(args, given),
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

/// `runner validate`: loads the playbook (checking that its window fits from now) and says
/// what it holds.
fn validate(file: &Path, clock: Clock, given: &playbook::GivenVars) -> anyhow::Result<Exit> {
    let from = playbook::FitFrom {
        at: clock.now(),
        simulated: clock.is_shifted(),
    };
    let pb = playbook::load_with(file, given, Some(from))?;
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

/// `runner mark`: records the operator's decision about one step in the journal.
fn mark(args: MarkArgs, clock: Clock, given: &playbook::GivenVars) -> anyhow::Result<Exit> {
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

/// `status` and `report` only read: they show another playbook's journal, but say so.
pub(super) fn warn_other_playbook(journal: &Journal, pb: &Playbook) -> anyhow::Result<()> {
    if let Some(owner) = journal.playbook()?.filter(|o| *o != pb.name) {
        eprintln!(
            "warning: the journal {} belongs to the playbook `{owner}`, not to `{}`",
            journal.path().display(),
            pb.name
        );
    }
    Ok(())
}
