//! Command-line interface: argument definitions and dispatch to the library.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use runner::clock::{self, Clock};
use runner::exit::Exit;
use runner::plan::{self, saved::SavedPlanError, PlanError};
use runner::playbook::{self, LoadError, Playbook};

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
    /// Print the JSON Schema of the playbook format, for editors.
    Schema,
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
    init_logging(cli.verbose);
    let clock = match Clock::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::InvalidInput.code();
        }
    };
    if clock.is_shifted() {
        eprintln!(
            "note: {} is set: the clock starts at {} instead of the real time",
            clock::RUNNER_NOW,
            clock.now()
        );
    }
    match run(cli.command, clock) {
        Ok(exit) => exit.code(),
        Err(e) => {
            let exit = exit_for(&e);
            eprintln!("{}", describe(&e));
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
        if cause.is::<LoadError>() || cause.is::<PlanError>() || cause.is::<InvalidArg>() {
            return Exit::InvalidInput;
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
        out.push_str(&format!("\n  caused by: {cause}"));
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
            let pb = playbook::load(&file)?;
            let pairs: usize = pb.steps.iter().map(|s| s.targets.len()).sum();
            println!(
                "{}: valid ({} steps, {} step x target pairs, {} targets)",
                file.display(),
                pb.steps.len(),
                pairs,
                pb.targets.len()
            );
            Ok(Exit::Success)
        }
        Command::Schema => {
            println!("{}", playbook::schema::json_schema());
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
            anyhow::bail!("apply is not available yet: use --dry-run")
        }
    }
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
        eprintln!("saved the reviewed plan to {}", path.display());
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
