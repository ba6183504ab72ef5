//! `runner status`: what is done, in doubt, failed or next, from the journal.

use runner::clock::Clock;
use runner::exit::Exit;
use runner::journal::Journal;
use runner::out;
use runner::playbook;

use super::follow::follow_run;
use super::state::state_path;
use super::{warn_other_playbook, StatusArgs, TextOrJson};

/// `runner status`: the view once, as text or JSON, or (`--follow`) redrawn until the run ends.
pub(super) fn status(
    args: StatusArgs,
    clock: Clock,
    given: &playbook::GivenVars,
) -> anyhow::Result<Exit> {
    let pb = playbook::load_with(&args.file, given, None)?;
    let state = state_path(&pb, &args.state)?;
    let journal = Journal::open_for_reading(&state)?;
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
