//! `runner plan` output and the resume preface drawn from a journal.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use runner::clock::{self, Clock};
use runner::errln;
use runner::exit::Exit;
use runner::journal::Journal;
use runner::plan;
use runner::playbook::{self, Playbook};

use super::describe::InvalidArg;
use super::state::state_path;
use super::{PlanArgs, PlanFormat};

/// When a journal exists: the playbook reduced to what is left, and the text that says what is
/// done, in doubt and left, and whether the rest fits before business hours.
pub(super) fn resume_from_journal(
    pb: &Playbook,
    state: &Path,
    start: jiff::Timestamp,
) -> anyhow::Result<Option<(Playbook, String)>> {
    let Some(journal) = Journal::open_for_reading(state)? else {
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

pub(super) fn show_plan(
    pb: &Playbook,
    start: Option<&str>,
    format: PlanFormat,
    out: Option<&Path>,
    clock: &Clock,
    journal: Option<&Path>,
) -> anyhow::Result<Exit> {
    show_plan_with(pb, start, format, out, clock, journal, None)
}

pub(super) type Learned<'a> = (
    &'a plan::history::History,
    &'a std::collections::BTreeMap<String, plan::history::Measured>,
);

pub(super) fn show_plan_with(
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

/// `runner plan`: the review, with durations learned from the journals it was given (and from
/// the one `apply` would use: what is done there is not planned again).
pub(super) fn plan(
    args: PlanArgs,
    clock: Clock,
    given: &playbook::GivenVars,
) -> anyhow::Result<Exit> {
    let pb = playbook::load_with(&args.file, given, None)?;
    // The same journal `apply` would use: what is done is not planned again, and its
    // measured durations are this cutover's history.
    let journal = state_path(&pb, &args.state)?;
    let history = plan::history::History::read(&history_journals(&args, &journal))?;
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

/// The journals whose measured durations the plan learns from: this cutover's own (when it
/// exists) and those named by `--history`; none with `--no-history`.
fn history_journals(args: &PlanArgs, journal: &Path) -> Vec<PathBuf> {
    let mut journals = Vec::new();
    if !args.no_history {
        if journal.exists() || runner::journal::pg::parse_location(journal).is_some() {
            journals.push(journal.to_path_buf());
        }
        journals.extend(args.history.iter().cloned());
    }
    journals
}
