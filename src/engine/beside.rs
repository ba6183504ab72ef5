//! Journals beside this one: a copied playbook starts with an empty journal and would run
//! everything again, points of no return included, on machines another journal in the same
//! folder already changed. Before the first step, `apply` looks at the other SQLite journals
//! in the journal's folder and in the playbook's `.runner` folder, and stops when one of them
//! recorded a success of a step that changes something on a machine this run is about to
//! change. A copy for another customer (other machines) is not bothered; `local` targets are
//! this machine, which every playbook may share.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::journal::{AttemptKind, AttemptState, Journal, JournalError};
use crate::playbook::{Playbook, OPERATOR};

/// What another journal already changed on one machine this run is about to change.
#[derive(Debug, Clone)]
pub struct Changed {
    pub journal: PathBuf,
    /// The other journal's playbook name, as it recorded it.
    pub playbook: Option<String>,
    /// The playbook file beside the journal that is probably its own (`<stem>.yaml`).
    pub file: Option<String>,
    pub identity: String,
    /// This playbook's targets with that identity.
    pub targets: Vec<String>,
    /// The steps that succeeded there, in the other journal's order.
    pub steps: Vec<String>,
}

/// The SQLite journals beside `state`, `state` itself left out.
fn candidates(pb: &Playbook, state: &Path) -> Vec<PathBuf> {
    let me = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = state.parent() {
        dirs.push(d.to_path_buf());
    }
    dirs.push(pb.dir.join(".runner"));
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "db") && p.is_file())
            .collect();
        files.sort();
        for f in files {
            let real = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if real != me && seen.insert(real) {
                out.push(f);
            }
        }
    }
    out
}

/// `pending` is every (step, target) this run may still run; only steps that change
/// something (not `idempotent`, not `changes: none`) count. Identities this journal has
/// already worked on are left out: the operator decided for them before.
pub fn changed_elsewhere(
    pb: &Playbook,
    state: &Path,
    pending: &[(String, String)],
    identities: &BTreeMap<String, String>,
    mine: &BTreeSet<String>,
) -> Result<Vec<Changed>, JournalError> {
    let mut about: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (step, target) in pending {
        let Some(s) = pb.steps.iter().find(|s| &s.id == step) else {
            continue;
        };
        if s.idempotent || s.changes_nothing || target == OPERATOR {
            continue;
        }
        let Some(id) = identities.get(target) else {
            continue;
        };
        if id == "local" || id == OPERATOR || mine.contains(id) {
            continue;
        }
        about.entry(id.clone()).or_default().insert(target.clone());
    }
    if about.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for path in candidates(pb, state) {
        // A file that is not a journal of this version is not ours to judge.
        let Ok(Some(other)) = Journal::open_read_only(&path) else {
            continue;
        };
        let playbook = other.playbook().ok().flatten();
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in other.attempts(None)? {
            if a.state != AttemptState::Succeeded
                || matches!(a.kind, AttemptKind::Check | AttemptKind::Rollback)
            {
                continue;
            }
            // The same step id here says it changes nothing: so did it there.
            if pb
                .steps
                .iter()
                .any(|s| s.id == a.step_id && (s.idempotent || s.changes_nothing))
            {
                continue;
            }
            let Some(id) = a.target_identity.filter(|id| about.contains_key(id)) else {
                continue;
            };
            let steps = found.entry(id).or_default();
            if !steps.contains(&a.step_id) {
                steps.push(a.step_id);
            }
        }
        let file = path.file_stem().and_then(|stem| {
            ["yaml", "yml"]
                .iter()
                .map(|x| format!("{}.{x}", stem.to_string_lossy()))
                .find(|f| pb.dir.join(f).is_file())
        });
        for (identity, steps) in found {
            out.push(Changed {
                journal: path.clone(),
                playbook: playbook.clone(),
                file: file.clone(),
                targets: about[&identity].iter().cloned().collect(),
                identity,
                steps,
            });
        }
    }
    Ok(out)
}

/// The message for exit 4: which journal, which steps, which machine, and how to go on.
pub fn message(pb: &Playbook, found: &[Changed]) -> String {
    let mut o = String::from(
        "another journal beside this one already changed machines this run is about to change; nothing was run:\n",
    );
    for c in found {
        let shown = c.journal.strip_prefix(&pb.dir).unwrap_or(&c.journal);
        let owner = c
            .playbook
            .as_deref()
            .map(|p| format!(" (playbook `{p}`)"))
            .unwrap_or_default();
        let steps: Vec<String> = c.steps.iter().map(|s| format!("`{s}`")).collect();
        let targets: Vec<String> = c.targets.iter().map(|t| format!("target `{t}`")).collect();
        o.push_str(&format!(
            "  - {}{owner}: {} succeeded on {} ({} here)\n",
            shown.display(),
            steps.join(", "),
            c.identity,
            targets.join(", ")
        ));
    }
    let resume = found
        .iter()
        .find_map(|c| c.file.as_deref())
        .map(|f| format!("`runner apply {f}`"))
        .unwrap_or_else(|| "`runner apply` on the playbook that owns that journal".to_string());
    o.push_str(&format!(
        "  = help: if this is the same cutover, go on with {resume}: its journal knows what is done; \
         if this playbook is a copy for another customer, point its targets at that customer's machines; \
         to run its steps on these machines anyway, run `runner apply {} --accept-changed`",
        pb.path.display()
    ));
    o
}
