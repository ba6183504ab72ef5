//! Journal locations and `runner state copy`.

use std::path::PathBuf;

use runner::journal::pg;

use runner::clock::Clock;
use runner::engine;
use runner::exit::Exit;
use runner::journal::Journal;
use runner::playbook::Playbook;
use runner::{errln, out};

use super::describe::InvalidArg;
use super::StateArg;

/// The journal's real path (symlinks resolved): its lock, its runs folder and the file itself
/// are the same whichever path led to it.
///
/// A postgres:// URL stands for this playbook's cutover on that server: the playbook's `name`
/// identifies it, not a path on this machine.
pub(super) fn state_path(pb: &Playbook, arg: &StateArg) -> anyhow::Result<PathBuf> {
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
    if let Some(to) = dangling_link(&given) {
        return Err(InvalidArg(format!(
            "the journal {} is a symbolic link to {}, which does not exist (is the disk that \
             holds it not mounted?); starting a new journal would run the steps already done \
             again\n  = help: make {} reachable again, then rerun; to start a new journal there \
             on purpose, remove the link and pass --state {}",
            given.display(),
            to.display(),
            to.display(),
            to.display()
        ))
        .into());
    }
    let real = runner::journal::resolve_path(&given);
    if let Some(names) = extra_names(&real) {
        return Err(InvalidArg(format!(
            "the journal {} has {names} names (hard links): SQLite keeps a journal's log and \
             lock per name, so two runs through two names could both think they hold it and \
             damage it\n  = help: find the other names with `find / -xdev -samefile {}` and \
             remove all but one (`rm` of a hard link removes only that name)",
            real.display(),
            real.display()
        ))
        .into());
    }
    Ok(real)
}

/// How many names the file at `path` has, when it has more than one.
fn extra_names(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    (m.is_file() && m.nlink() > 1).then_some(m.nlink())
}

/// Where `path` finally points when it is a symbolic link (or a chain of them) to nothing.
/// A journal reached through a link is often on another disk; a link to nowhere means that disk
/// is missing, not that the cutover starts afresh.
fn dangling_link(path: &std::path::Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    let mut linked = false;
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&p).ok()?;
                p = p.parent().map(|d| d.join(&to)).unwrap_or(to);
                linked = true;
            }
            Ok(_) => return None,
            Err(_) => break,
        }
    }
    linked.then_some(p)
}

/// Where a run's logs go: beside the SQLite journal, or beside the playbook when the journal
/// is on a server (logs stay on the machine that ran the steps).
pub(super) fn runs_dir(pb: &Playbook, state: &std::path::Path) -> PathBuf {
    if pg::parse_location(state).is_some() {
        engine::runs_dir(&engine::default_state_path(pb))
    } else {
        engine::runs_dir(state)
    }
}

/// `runner state copy`.
pub(super) fn state_copy(
    from: &str,
    to: &str,
    cutover: Option<&str>,
    clock: Clock,
) -> anyhow::Result<Exit> {
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
