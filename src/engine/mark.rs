//! `runner mark FILE STEP[@TARGET] done|retry|skip`: an operator's decision about a pair,
//! recorded in the journal for the next apply.

use std::path::PathBuf;

use super::{EngineError, Outcome, Who};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::journal::{lock, Journal, MarkKind, NewMark};
use crate::playbook::{Playbook, Step};

pub struct MarkOptions {
    pub state: PathBuf,
    /// `STEP` or `STEP@TARGET`.
    pub pair: String,
    pub mark: MarkKind,
    pub reason: Option<String>,
}

pub fn mark(pb: &Playbook, opts: &MarkOptions, clock: Clock) -> Result<Outcome, EngineError> {
    let (step, targets) = marked_pairs(pb, &opts.pair)?;
    let who = Who::current();
    let held = lock_unless_awaited(opts, step, &targets, &who, clock)?;
    let awaited = held.is_none();
    let mut journal = Journal::open(&opts.state)?;
    if let Some(lock) = &held {
        journal.hold(lock);
    }
    // Another playbook's journal is not ours to decide about.
    super::identity::claim(&mut journal, pb, false)?;
    close_running(&mut journal, step, &targets, opts, clock)?;
    let reason = reason(opts, clock);
    let marks: Vec<NewMark> = targets
        .iter()
        .map(|t| NewMark {
            run: None,
            step_id: step.id.clone(),
            target: t.to_string(),
            mark: opts.mark,
            def_hash: step
                .rendered_for(t)
                .map(|r| r.def_hash.clone())
                .unwrap_or_default(),
            user: who.user.clone(),
            host: who.host.clone(),
            at: clock.now(),
            reason: reason.clone(),
        })
        .collect();
    journal.mark_all(&marks)?;
    Ok(recorded(pb, opts, step, &targets, awaited))
}

/// The step of `STEP[@TARGET]` and the targets marked: the one named, or all of the step's.
fn marked_pairs<'a>(
    pb: &'a Playbook,
    pair: &'a str,
) -> Result<(&'a Step, Vec<&'a str>), EngineError> {
    let (step_id, target) = match pair.split_once('@') {
        Some((s, t)) => (s, Some(t)),
        None => (pair, None),
    };
    let step = pb.steps.iter().find(|s| s.id == step_id).ok_or_else(|| {
        let ids: Vec<&str> = pb.steps.iter().map(|s| s.id.as_str()).collect();
        EngineError::Usage(format!(
            "`{step_id}` is not a step of {}; {}",
            pb.path.display(),
            crate::playbook::diagnostic::suggestion_or_choices(step_id, ids.iter().copied())
        ))
    })?;
    let targets: Vec<&str> = match target {
        Some(t) if step.targets.iter().any(|x| x == t) => vec![t],
        Some(t) => {
            return Err(EngineError::Usage(format!(
                "step `{}` does not run on `{t}`; it runs on {}",
                step.id,
                step.targets.join(", ")
            )))
        }
        None => step.targets.iter().map(String::as_str).collect(),
    };
    Ok((step, targets))
}

/// Marks change what the next apply does: never while an apply is running, except the one
/// answer a running apply waits for (a manual step in a background run), which takes no lock
/// (None).
fn lock_unless_awaited(
    opts: &MarkOptions,
    step: &Step,
    targets: &[&str],
    who: &Who,
    clock: Clock,
) -> Result<Option<lock::LockGuard>, EngineError> {
    let locked = lock::acquire(
        &opts.state,
        &lock::Holder::this_process("mark", &who.user, clock.now()),
    );
    Ok(match locked {
        Ok(l) => Some(l),
        Err(lock::LockError::Held {
            holder: Some(h), ..
        }) if targets == [crate::playbook::OPERATOR]
            && matches!(opts.mark, MarkKind::Done | MarkKind::Skip)
            && awaited_by(&opts.state, &h) == Some(step.id.clone()) =>
        {
            None
        }
        Err(e) => return Err(e.into()),
    })
}

/// An attempt still `running` was left by a runner that is gone (we hold the lock): the
/// operator's decision supersedes it, and the record should say that it ended.
fn close_running(
    journal: &mut Journal,
    step: &Step,
    targets: &[&str],
    opts: &MarkOptions,
    clock: Clock,
) -> Result<(), EngineError> {
    for t in targets {
        if let crate::journal::PairState::Running {
            attempt, pid, host, ..
        } = journal.pair(&step.id, t)?
        {
            journal.finish_attempt(
                attempt,
                crate::journal::AttemptState::Interrupted,
                None,
                clock.now(),
                Some(&format!(
                    "runner (pid {pid} on {host}) stopped while this ran; closed by `runner mark {}`",
                    opts.mark
                )),
            )?;
        }
    }
    Ok(())
}

/// The operator's reason; a mark belongs to no run, so a simulated clock is said in it.
fn reason(opts: &MarkOptions, clock: Clock) -> Option<String> {
    match (clock.simulated(), &opts.reason) {
        (None, r) => r.clone(),
        (Some(c), r) => Some(format!(
            "{}(recorded under a simulated clock, {}: its time is simulated)",
            r.as_deref().map(|r| format!("{r} ")).unwrap_or_default(),
            c.setting()
        )),
    }
}

/// What was recorded, and what happens next: the waiting run goes on, or the next apply
/// treats the pairs as the mark says.
fn recorded(
    pb: &Playbook,
    opts: &MarkOptions,
    step: &Step,
    targets: &[&str],
    awaited: bool,
) -> Outcome {
    if awaited {
        return Outcome {
            exit: Exit::Success,
            message: format!(
                "recorded `{}` for step `{}`; the run waiting for it (pid {}) goes on",
                opts.mark,
                step.id,
                read_awaited(&opts.state)
                    .map(|(p, _)| p)
                    .unwrap_or_default()
            ),
        };
    }
    Outcome {
        exit: Exit::Success,
        message: format!(
            "recorded `{}` for step `{}` on {}; the next `runner apply {}` {}",
            opts.mark,
            step.id,
            targets.join(", "),
            pb.path.display(),
            match opts.mark {
                MarkKind::Done => "treats it as done",
                MarkKind::Retry => "runs it again",
                MarkKind::Skip => "skips it",
            }
        ),
    }
}

/// The file beside the journal that says which manual step a running apply waits for:
/// `PID STEP`. It lets `runner mark` record that one answer while the apply holds the lock.
pub fn awaited_path(state: &std::path::Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".operator");
    PathBuf::from(p)
}

fn read_awaited(state: &std::path::Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(awaited_path(state)).ok()?;
    let (pid, step) = text.trim().split_once(' ')?;
    Some((pid.parse().ok()?, step.to_string()))
}

/// The step the lock's holder waits for an operator on, if it is alive and waits.
fn awaited_by(state: &std::path::Path, holder: &lock::Holder) -> Option<String> {
    let (pid, step) = read_awaited(state)?;
    let here = lock::host_name().ok()?;
    (pid == holder.pid && holder.host == here && crate::journal::process_alive(pid)).then_some(step)
}

/// Why a manual step was not confirmed by a mark.
pub(crate) enum NoMark {
    /// Ctrl-C or SIGTERM while waiting.
    Interrupted,
    /// The wait cannot be announced (the file beside the journal cannot be written): the
    /// step stops the run as without a terminal.
    CannotWait,
}

/// A manual step without a terminal, in a run that waits: the operator confirms it with
/// `runner mark FILE STEP done` (or `skip`) from any shell; the run polls the journal.
pub(crate) fn wait_for_mark(
    s: &super::Session<'_>,
    step: &crate::playbook::Step,
    state: &std::path::Path,
) -> Result<(), NoMark> {
    use super::event::Event;
    use crate::journal::PairState;
    let target = crate::playbook::OPERATOR;
    let instructions = match step.rendered_for(target).map(|r| &r.action) {
        Some(crate::playbook::RenderedAction::Manual { instructions }) => instructions.clone(),
        _ => String::new(),
    };
    let path = awaited_path(state);
    if let Err(e) = std::fs::write(&path, format!("{} {}\n", s.who.pid, step.id)) {
        tracing::warn!("cannot write {}: {e}", path.display());
        return Err(NoMark::CannotWait);
    }
    s.emit(&Event::OperatorNeeded {
        step: step.id.clone(),
        instructions: instructions.clone(),
    });
    s.emit(&Event::Notice {
        text: format!(
            "step `{}` waits for an operator:\n\n  {}\n\nwhen it is done, run `runner mark {} {} done` (or `skip`): this run goes on then",
            step.id,
            instructions.trim().replace('\n', "\n  "),
            s.pb.path.display(),
            step.id
        ),
    });
    let end = loop {
        let state = s.journal().pair(&step.id, target);
        match state {
            Ok(PairState::Succeeded { .. } | PairState::Skipped { .. }) => break Ok(()),
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot read the journal while waiting for an operator: {e}"),
        }
        if !s.interrupt.sleep(std::time::Duration::from_millis(500)) {
            break Err(NoMark::Interrupted);
        }
    };
    let _ = std::fs::remove_file(&path);
    end
}
