//! Error descriptions and the exit code each error means.

use runner::journal::pg;

use runner::engine;
use runner::exit::Exit;
use runner::notify::NotifyError;
use runner::plan::{self, saved::SavedPlanError, PlanError};
use runner::playbook::LoadError;

/// Which exit code an error means. Unknown errors are failures (1).
pub(super) fn exit_for(e: &anyhow::Error) -> Exit {
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

pub(super) fn describe(e: &anyhow::Error) -> String {
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
pub(super) struct InvalidArg(pub(super) String);
