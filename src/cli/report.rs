//! `runner report`: the run record for the customer.

use anyhow::Context;

use runner::exit::Exit;
use runner::journal::Journal;
use runner::playbook;
use runner::{errln, out};

use super::state::{runs_dir, state_path};
use super::{warn_other_playbook, ReportArgs, ReportFormatArg};

/// `runner report`: the record of an applied playbook, written to `--out` or stdout.
pub(super) fn report(args: ReportArgs, given: &playbook::GivenVars) -> anyhow::Result<Exit> {
    let pb = playbook::load_with(&args.file, given, None)?;
    let state = state_path(&pb, &args.state)?;
    let Some(journal) = Journal::open_for_reading(&state)? else {
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
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            errln!("wrote {}", path.display());
        }
        None => out!("{text}"),
    }
    Ok(Exit::Success)
}
