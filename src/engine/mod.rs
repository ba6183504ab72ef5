//! The engine: apply, resume and rollback, with the journal beside it.
//!
//! Invariants (each one a promise to the person asleep while this runs):
//! 1. Intent before action: an attempt is committed to the journal as `running` before its
//!    command starts, and its outcome after. A crash leaves at worst a `running` row, which
//!    the next apply treats as *in doubt*, never as done.
//! 2. Nothing starts inside business hours: the window gate is asked before every attempt,
//!    including retries, rollbacks and manual steps (unless the step is `business_hours:
//!    allow` or the operator overrode the window, which is journaled with a reason).
//! 3. A step without `idempotent: true` is never run twice silently: in doubt, it is verified
//!    with its `check` or left to an operator (`runner mark`).
//! 4. One apply or rollback per state file: an advisory lock the kernel releases when the
//!    process dies, so a crash never blocks the resume.
//! 5. Secrets are masked in everything that leaves a command (logs, events, journal, report).

pub mod event;
pub mod interrupt;
pub mod operator;
pub mod runlog;

mod apply;
mod attempt;
mod beside;
mod copy;
mod detach;
mod doubt;
pub mod identity;
mod manual;
mod mark;
mod output;
mod pair;
mod reboot;
mod rollback;
mod transfer_limit;
mod walk;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};

pub use apply::{apply, ApplyOptions};
pub use mark::{mark, MarkOptions};
pub use rollback::{rollback, RollbackOptions};

use crate::clock::Clock;
use crate::exit::Exit;
use crate::journal::{self, EventKind, Journal, NewEvent, RunId};
use crate::playbook::{BusinessHoursPolicy, Playbook, Step, WhenClosed};
use crate::secret::Redactor;
use crate::targets::{Pool, Secrets};
use event::{Event, Reporter};
use interrupt::Interrupt;
use runlog::RunLog;

/// How a command ended, for the CLI to print and exit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit: Exit,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error("{0}\n  = help: wait for it to finish; if that process is gone, the lock is already free and this message will not repeat")]
    Locked(journal::lock::LockError),
    /// The state folder (or the lock file in it) cannot be used: not a waiting matter.
    #[error("cannot use {path}: {why}\n  = help: {help}")]
    StateUnusable {
        path: PathBuf,
        why: String,
        help: String,
    },
    #[error(transparent)]
    Target(#[from] crate::targets::TargetError),
    #[error("these earlier results no longer match the playbook:\n{}\n  = help: review them; to keep every earlier result listed (a renamed step counts as done), run `runner apply` with --accept-changed; or decide each pair with the command shown", .0.iter().map(|s| format!("  - {s}")).collect::<Vec<_>>().join("\n"))]
    Changed(Vec<identity::Conflict>),
    /// Another journal beside this one already changed the machines this run would change.
    #[error("{0}")]
    ChangedBeside(String),
    #[error("the journal {} belongs to the playbook `{owner}`, not to `{playbook}` ({file}); refusing to mix their results\n  = help: give this playbook its own journal (another --state); if it is the same cutover and only its `name` changed, run `runner apply {file} --accept-changed` to record the new name", journal.display())]
    OtherPlaybook {
        journal: PathBuf,
        owner: String,
        playbook: String,
        file: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("cannot create the run folder {path}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EngineError {
    pub fn exit(&self) -> Exit {
        match self {
            EngineError::Locked(_)
            | EngineError::Changed(_)
            | EngineError::ChangedBeside(_)
            | EngineError::OtherPlaybook { .. }
            | EngineError::Journal(journal::JournalError::RescuedCopy { .. }) => Exit::Conflict,
            EngineError::Target(_) | EngineError::Usage(_) | EngineError::StateUnusable { .. } => {
                Exit::InvalidInput
            }
            EngineError::Journal(j) if state_path_unusable(j) => Exit::InvalidInput,
            EngineError::Journal(_) | EngineError::RunDir { .. } => Exit::StepFailed,
        }
    }
}

impl From<journal::lock::LockError> for EngineError {
    fn from(e: journal::lock::LockError) -> Self {
        match e {
            journal::lock::LockError::Io { path, source } => state_unusable(&path, &source),
            journal::lock::LockError::Store { location, message } => EngineError::Journal(
                journal::JournalError::Store(format!("{location}: {message}")),
            ),
            held => EngineError::Locked(held),
        }
    }
}

/// What to do when the journal's path cannot be used (see [`state_path_unusable`]).
pub const STATE_PATH_HELP: &str = "the journal's folder or file cannot be used there (a file or folder in the way, a symbolic link to nowhere, no write permission): move it out of the way or repair it, or keep the state elsewhere with --state PATH";

/// Whether a journal error is about its path (a folder that cannot be created, a file that
/// cannot be opened or written) rather than its contents: bad input to fix, not a failure.
pub fn state_path_unusable(e: &journal::JournalError) -> bool {
    use rusqlite::ErrorCode;
    match e {
        journal::JournalError::CreateDir { .. } => true,
        journal::JournalError::Open {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } => matches!(
            f.code,
            ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied
        ),
        _ => false,
    }
}

/// Why the lock file `lock` (beside the journal) cannot be created or opened, said about the
/// path that is wrong: a file where a folder should be, a symbolic link to nowhere, a folder
/// without write permission.
fn state_unusable(lock: &std::path::Path, source: &std::io::Error) -> EngineError {
    let help = "move it out of the way or repair it, or keep the state elsewhere with --state PATH"
        .to_string();
    for dir in lock.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            continue;
        };
        if meta.file_type().is_symlink() && std::fs::metadata(dir).is_err() {
            let to = std::fs::read_link(dir)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            return EngineError::StateUnusable {
                path: dir.to_path_buf(),
                why: format!("it is a symbolic link to {to}, which does not exist"),
                help,
            };
        }
        if meta.file_type().is_symlink() || meta.is_dir() {
            // The first folder that exists: the cause is below, or the folder itself.
            break;
        }
        return EngineError::StateUnusable {
            path: dir.to_path_buf(),
            why: "it is a file where the state folder should be".into(),
            help,
        };
    }
    EngineError::StateUnusable {
        path: lock.to_path_buf(),
        why: format!("the state cannot be written there ({source})"),
        help:
            "make the folder writable for this user, or keep the state elsewhere with --state PATH"
                .into(),
    }
}

/// Who is running this, for the journal and the customer's report.
#[derive(Debug, Clone)]
pub struct Who {
    pub user: String,
    pub host: String,
    pub pid: u32,
}

impl Who {
    pub fn current() -> Who {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(account_name);
        Who {
            user,
            host: journal::lock::host_name().unwrap_or_else(|_| "unknown".into()),
            pid: std::process::id(),
        }
    }
}

/// The name of the account this process runs as, from the password database (cron jobs and
/// services often have no `USER`).
fn account_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name out at
    // once and nothing else in this process calls getpwuid concurrently during startup.
    unsafe {
        let uid = libc::geteuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return format!("uid {uid}");
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Where a playbook's state lives unless `--state` says otherwise: `.runner/<stem>.db`
/// beside the playbook.
/// The playbook's real file decides (symlinks resolved): one playbook reached by two paths has
/// one journal.
pub fn default_state_path(pb: &Playbook) -> PathBuf {
    let real = journal::resolve_path(&pb.path);
    let stem = real
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "playbook".into());
    let dir = real
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| pb.dir.clone());
    dir.join(".runner").join(format!("{stem}.db"))
}

/// The runs folder of a journal: `runs/<journal name>/` beside it, so that the playbooks of one
/// folder (each with its own journal in `.runner/`) keep their runs apart.
pub fn runs_dir(state: &std::path::Path) -> PathBuf {
    let parent = state
        .parent()
        .map(|p| p.join("runs"))
        .unwrap_or_else(|| PathBuf::from("runs"));
    match state.file_stem() {
        Some(stem) => parent.join(stem),
        None => parent,
    }
}

/// Everything one run shares across its threads.
pub(crate) struct Session<'a> {
    pub pb: &'a Playbook,
    journal: Mutex<Journal>,
    pub run: RunId,
    pub clock: Clock,
    reporter: &'a dyn Reporter,
    pub runlog: RunLog,
    pub redactor: Redactor,
    pub secrets: Secrets,
    pub pool: Pool,
    pub interrupt: Interrupt,
    pub who: Who,
    /// `--override-window`: which steps start even when the window is closed, journaled.
    pub override_window: Option<WindowOverride>,
}

/// `--override-window STEP` (repeatable) or `--override-window-all`, with `--reason`: the
/// steps that may start although the window is closed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowOverride {
    pub reason: String,
    /// None: every step.
    pub steps: Option<std::collections::BTreeSet<String>>,
}

impl WindowOverride {
    /// Whether the window is opened for this step.
    pub fn covers(&self, step: &str) -> bool {
        self.steps.as_ref().is_none_or(|s| s.contains(step))
    }

    /// Refuses step ids the playbook does not have (bad input, nothing written).
    pub fn check(&self, pb: &Playbook) -> Result<(), EngineError> {
        let unknown: Vec<&String> = self
            .steps
            .iter()
            .flatten()
            .filter(|id| !pb.steps.iter().any(|s| &s.id == *id))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(EngineError::Usage(format!(
            "--override-window names {} that the playbook does not have; its steps are: {}",
            unknown
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", "),
            pb.steps
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// What the override opens, said before the first step starts: the steps it covers among
    /// `remaining`, points of no return named.
    pub fn describe<'s>(&self, remaining: impl Iterator<Item = &'s Step>) -> String {
        let list: Vec<String> = remaining
            .filter(|s| self.covers(&s.id))
            .map(|s| {
                if s.point_of_no_return {
                    format!("{} (point of no return)", s.id)
                } else {
                    s.id.clone()
                }
            })
            .collect();
        let list = if list.is_empty() {
            "no remaining step".to_string()
        } else {
            list.join(", ")
        };
        match self.steps {
            None => format!(
                "--override-window-all opens the window for every remaining step: {list}; reason: {}",
                self.reason
            ),
            Some(_) => format!(
                "--override-window opens the window for: {list}; reason: {}; every other step waits for the window",
                self.reason
            ),
        }
    }
}

/// Why a step may not start now.
pub(crate) enum Blocked {
    /// The window is closed and `when_closed: stop`; carries when the step may start.
    Window(Option<Timestamp>),
    Interrupted,
}

/// What a run needs before it can start: [`Session::start`] records the run in the journal
/// and opens its folder.
pub(crate) struct Start<'a> {
    pub pb: &'a Playbook,
    pub journal: Journal,
    pub command: journal::RunCommand,
    pub runs_dir: &'a std::path::Path,
    pub args: &'a [String],
    pub clock: Clock,
    pub reporter: &'a dyn Reporter,
    pub redactor: Redactor,
    pub secrets: Secrets,
    pub interrupt: Interrupt,
    pub who: Who,
    pub override_window: Option<WindowOverride>,
}

impl<'a> Session<'a> {
    /// Records the run in the journal and creates its folder.
    pub fn start(s: Start<'a>) -> Result<Session<'a>, EngineError> {
        let run = s.journal.begin_run(&journal::NewRun {
            command: s.command,
            playbook_path: s.pb.path.clone(),
            playbook_sha256: s.pb.sha256.clone(),
            started_at: s.clock.now(),
            user: s.who.user.clone(),
            host: s.who.host.clone(),
            pid: s.who.pid,
            args: s.args.to_vec(),
            simulated: s.clock.simulated(),
        })?;
        let run_dir = s.runs_dir.join(run.as_str());
        let runlog = RunLog::create(run_dir.clone()).map_err(|source| EngineError::RunDir {
            path: run_dir,
            source,
        })?;
        if let Some(c) = s.clock.simulated() {
            let e = Event::SimulatedClock {
                from: c.from,
                real_start: c.real_start,
            };
            runlog.event(&e);
            s.reporter.event(&e);
        }
        Ok(Session {
            pb: s.pb,
            journal: Mutex::new(s.journal),
            run,
            clock: s.clock,
            reporter: s.reporter,
            runlog,
            redactor: s.redactor,
            secrets: s.secrets,
            pool: Pool::new(s.pb.targets.keys().map(String::as_str)),
            interrupt: s.interrupt,
            who: s.who,
            override_window: s.override_window,
        })
    }

    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        // A thread that panicked while holding the journal left it consistent: every write is
        // its own transaction. Carry on with it.
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn emit(&self, e: &Event) {
        self.runlog.event(e);
        self.reporter.event(e);
    }

    pub fn record(&self, step: Option<&str>, kind: EventKind, detail: String) {
        let e = NewEvent {
            run: self.run.clone(),
            at: self.clock.now(),
            step_id: step.map(str::to_string),
            kind,
            detail: self.redactor.redact(&detail),
        };
        if let Err(err) = self.journal().record_event(&e) {
            tracing::error!("cannot record a window decision in the journal: {err}");
        }
    }

    /// The window gate, asked before every attempt. With `when_closed: wait` it sleeps until
    /// the step may start (interruptible); with `stop` it reports when.
    pub fn gate(&self, step: &Step) -> Result<(), Blocked> {
        if step.business_hours == BusinessHoursPolicy::Allow {
            return Ok(());
        }
        let w = &self.pb.window;
        let mut waited = false;
        loop {
            if self.interrupt.stopping() {
                return Err(Blocked::Interrupted);
            }
            let now = self.clock.now();
            let next = match w.gate(now, step.gate_estimate(), crate::duration::HORIZON) {
                crate::window::Gate::Open => return Ok(()),
                crate::window::Gate::Closed { next_start, .. } => next_start,
            };
            if let Some(reason) = self
                .override_window
                .as_ref()
                .filter(|o| o.covers(&step.id))
                .map(|o| &o.reason)
            {
                let detail = format!(
                    "window overridden by {} on {} for step `{}`: {reason}",
                    self.who.user, self.who.host, step.id
                );
                self.record(Some(&step.id), EventKind::Override, detail);
                self.emit(&Event::WindowOverride {
                    step: step.id.clone(),
                    reason: reason.clone(),
                });
                return Ok(());
            }
            match self.pb.when_closed {
                WhenClosed::Stop => {
                    let when = next
                        .map(|t| crate::window::local_label(t, w.time_zone()))
                        .unwrap_or_else(|| "not within 14 days".into());
                    self.record(
                        Some(&step.id),
                        EventKind::Stopped,
                        format!("window closed for `{}`; next allowed start {when}", step.id),
                    );
                    self.emit(&Event::WindowClosed {
                        step: step.id.clone(),
                        next_start: next,
                        action: event::ClosedAction::Stop,
                    });
                    return Err(Blocked::Window(next));
                }
                WhenClosed::Wait => {
                    let Some(next) = next else {
                        return Err(Blocked::Window(None));
                    };
                    if !waited {
                        waited = true;
                        self.record(
                            Some(&step.id),
                            EventKind::Waited,
                            format!(
                                "waiting for the window: `{}` may start {}",
                                step.id,
                                crate::window::local_label(next, w.time_zone())
                            ),
                        );
                        self.emit(&Event::WindowClosed {
                            step: step.id.clone(),
                            next_start: Some(next),
                            action: event::ClosedAction::Wait,
                        });
                    }
                    // Sleep in slices so the countdown stays visible and current.
                    let left = next
                        .duration_since(now)
                        .max(SignedDuration::from_millis(10));
                    self.emit(&Event::Waiting {
                        step: step.id.clone(),
                        until: next,
                        remaining_secs: left.as_secs(),
                    });
                    let slice = left.min(SignedDuration::from_secs(30));
                    let d = std::time::Duration::try_from(slice).unwrap_or_default();
                    if !self.interrupt.sleep(d) {
                        return Err(Blocked::Interrupted);
                    }
                }
            }
        }
    }

    /// Ends the run in the journal and reports it.
    pub fn finish(&self, exit: Exit, outcome: event::RunOutcome, message: String) -> Outcome {
        let message = self.redactor.redact(&message);
        let (mut exit, mut outcome, mut message) = (exit, outcome, message);
        match self
            .journal()
            .end_run(&self.run, outcome.as_str(), self.clock.now())
        {
            Ok(()) => {}
            // Whatever this run did, its record is not where the next run will look: that is
            // the outcome, whatever else happened.
            Err(e @ journal::JournalError::Replaced { .. }) => {
                // What the run would have said ("run apply again to resume") is wrong now.
                message = e.to_string();
                exit = Exit::StepFailed;
                outcome = event::RunOutcome::JournalLost;
            }
            Err(e) => tracing::error!("cannot record the end of the run: {e}"),
        }
        self.emit(&Event::RunFinished {
            outcome,
            exit_code: exit.code(),
            message: message.clone(),
            simulated_clock: self.clock.simulated(),
        });
        Outcome { exit, message }
    }
}

/// "Mon 30 Nov 2026 18:00 CST (Tue 01:00 CET here)" for messages.
pub(crate) fn when(pb: &Playbook, t: Option<Timestamp>) -> String {
    match t {
        Some(t) => crate::window::label_for_people(t, pb.window.time_zone()),
        None => "no time within 14 days".into(),
    }
}
