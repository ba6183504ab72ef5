//! `runner mark FILE STEP[@TARGET] done|retry|skip`: an operator's decision about a pair,
//! recorded in the journal for the next apply.

use std::path::PathBuf;

use super::{EngineError, Outcome, Who};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::journal::{lock, Journal, MarkKind, NewMark};
use crate::playbook::Playbook;

pub struct MarkOptions {
    pub state: PathBuf,
    /// `STEP` or `STEP@TARGET`.
    pub pair: String,
    pub mark: MarkKind,
    pub reason: Option<String>,
}

pub fn mark(pb: &Playbook, opts: &MarkOptions, clock: Clock) -> Result<Outcome, EngineError> {
    let (step_id, target) = match opts.pair.split_once('@') {
        Some((s, t)) => (s, Some(t)),
        None => (opts.pair.as_str(), None),
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
    let who = Who::current();
    // Marks change what the next apply does: never while an apply is running.
    let _lock = lock::acquire(
        &opts.state,
        &lock::Holder::this_process("mark", &who.user, clock.now()),
    )?;
    let mut journal = Journal::open(&opts.state)?;
    journal.hold(&_lock);
    // Another playbook's journal is not ours to decide about.
    super::identity::claim(&mut journal, pb, false)?;
    // An attempt still `running` was left by a runner that is gone (we hold the lock): the
    // operator's decision supersedes it, and the record should say that it ended.
    for t in &targets {
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
    // A mark belongs to no run, so a simulated clock is said in its reason.
    let reason = match (clock.simulated(), &opts.reason) {
        (None, r) => r.clone(),
        (Some(c), r) => Some(format!(
            "{}(recorded under a simulated clock, {}: its time is simulated)",
            r.as_deref().map(|r| format!("{r} ")).unwrap_or_default(),
            c.setting()
        )),
    };
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
    Ok(Outcome {
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
    })
}
