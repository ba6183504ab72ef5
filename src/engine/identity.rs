//! Identity rules: when an earlier result still counts for what the playbook says now.
//!
//! A success in the journal means "this work, on this machine, for this cutover":
//!
//! - the work is the step's definition fingerprint (`def_hash`: the rendered action, its check
//!   and ok codes), not its id: a done step renamed to another id is recognised by its
//!   fingerprint and not run again silently;
//! - the machine is the target's identity (transport, host, port, user), recorded with every
//!   attempt and mark: a target whose address changed keeps none of its successes silently;
//! - the cutover is the playbook's `name`, recorded in the journal by the first run: another
//!   playbook's journal is refused.
//!
//! Each change is shown and decided like a changed step: `--accept-changed` keeps the earlier
//! results, `runner mark FILE STEP@TARGET retry|done` decides one pair; otherwise exit 4.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::EngineError;
use crate::journal::{Attempt, AttemptKind, AttemptState, Journal, PairState};
use crate::playbook::{Playbook, Rendered, Target, TransportKind, OPERATOR};

/// A target's identity as the journal records it, e.g. `ssh://administrator@192.168.16.3:22`.
/// Part of the journal format: never change it without a migration.
pub fn target_identity(t: &Target) -> String {
    let scheme = match t.transport {
        TransportKind::Local => return "local".to_string(),
        // Only with its chain: see `identity_in`.
        TransportKind::Relay => return "relay".to_string(),
        TransportKind::Ssh => "ssh",
        TransportKind::Winrm if t.https => "winrm+https",
        TransportKind::Winrm => "winrm",
    };
    let host = t.host.as_deref().unwrap_or("").to_ascii_lowercase();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let user = t
        .user
        .as_deref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    match t.port {
        Some(p) => format!("{scheme}://{user}{host}:{p}"),
        None => format!("{scheme}://{user}{host}"),
    }
}

/// A target's identity within its playbook: a relay's names the whole chain that reaches it,
/// each relay's `run` line and the identity of the target at its end, e.g.
/// `relay(psexec \\old-sbs cmd /c {command}) via winrm://administrator@192.168.16.3`: changing
/// `via`, `run` or the far target's address shows its done steps as changed.
pub fn identity_in(pb: &Playbook, t: &Target) -> String {
    crate::playbook::relay::chain(&pb.targets, &t.name)
        .iter()
        .map(|hop| match &hop.relay {
            Some(r) => format!("relay({}) via ", r.run),
            None => target_identity(hop),
        })
        .collect()
}

/// Every target of the playbook with its identity; the operator (manual steps) too.
pub fn identities(pb: &Playbook) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = pb
        .targets
        .iter()
        .map(|(name, t)| (name.clone(), identity_in(pb, t)))
        .collect();
    out.insert(OPERATOR.to_string(), OPERATOR.to_string());
    out
}

/// Prepares a journal for a run that will write to it: binds the targets' identities (every
/// attempt and mark records where it happened), and refuses a journal that belongs to another
/// playbook unless `accept` (the same cutover, renamed). A journal that belongs to no playbook
/// yet (new, or migrated from schema 2) is claimed. Returns the previous owner's name when it
/// was replaced.
pub fn claim(
    journal: &mut Journal,
    pb: &Playbook,
    accept: bool,
) -> Result<Option<String>, EngineError> {
    journal.bind_targets(identities(pb));
    match journal.playbook()? {
        Some(name) if name == pb.name => Ok(None),
        Some(name) if !accept => Err(EngineError::OtherPlaybook {
            journal: journal.path().to_path_buf(),
            owner: name,
            playbook: pb.name.clone(),
            file: pb.path.display().to_string(),
        }),
        old => {
            journal.set_playbook(&pb.name)?;
            Ok(old)
        }
    }
}

/// An earlier result that no longer matches the playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub step: String,
    pub target: String,
    /// The step's fingerprint now, for the `done` mark that `--accept-changed` records.
    pub def_hash: String,
    pub kind: ConflictKind,
    /// The playbook file, for the commands in the message.
    file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictKind {
    /// Succeeded with another definition.
    Changed,
    /// Succeeded on another machine than the target names now.
    Moved { from: String, to: String },
    /// Never ran under this id, but a step with the same definition on the same machine, no
    /// longer in the playbook, is done.
    Renamed {
        old_step: String,
        old_target: String,
        /// When it was done (or started, if in doubt), in the customer's time zone.
        at: String,
        /// The old pair did not end: it was left running or interrupted. Only an operator can
        /// say whether it did its work; `--accept-changed` does not decide it.
        in_doubt: bool,
    },
}

impl Conflict {
    /// Why `--accept-changed` kept the earlier result, for the journal.
    pub fn accepted_reason(&self) -> String {
        match &self.kind {
            ConflictKind::Changed => {
                "--accept-changed: the earlier result of a step changed since was kept".into()
            }
            ConflictKind::Moved { from, to } => {
                format!("--accept-changed: the earlier result on {from} was kept for {to}")
            }
            ConflictKind::Renamed {
                old_step,
                old_target,
                ..
            } => format!(
                "--accept-changed: same definition as `{old_step}` on `{old_target}`, done earlier"
            ),
        }
    }

    /// Whether the earlier result was on another machine.
    pub fn is_moved(&self) -> bool {
        matches!(self.kind, ConflictKind::Moved { .. })
    }

    /// Whether only an operator can decide (`--accept-changed` does not).
    pub fn needs_operator(&self) -> bool {
        matches!(self.kind, ConflictKind::Renamed { in_doubt: true, .. })
    }

    /// `true` if the pair has no result of its own: accepting makes it done.
    pub fn is_renamed(&self) -> bool {
        matches!(self.kind, ConflictKind::Renamed { .. })
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, t, file) = (&self.step, &self.target, &self.file);
        let retry = format!("`runner mark {file} {s}@{t} retry`");
        match &self.kind {
            ConflictKind::Changed => write!(
                f,
                "`{s}` on `{t}`: succeeded earlier, its definition changed since; to run it again: {retry}"
            ),
            ConflictKind::Moved { from, to } => write!(
                f,
                "`{s}` on `{t}`: succeeded on {from}, but `{t}` is now {to}; to run it there: {retry}"
            ),
            ConflictKind::Renamed {
                old_step,
                old_target,
                at,
                in_doubt: false,
            } => write!(
                f,
                "`{s}` on `{t}`: has the same definition as `{old_step}` on `{old_target}`, done {at} and no longer in the playbook; if it is that step renamed: `runner mark {file} {s}@{t} done`; to run it again anyway: {retry}"
            ),
            ConflictKind::Renamed {
                old_step,
                old_target,
                at,
                in_doubt: true,
            } => write!(
                f,
                "`{s}` on `{t}`: has the same definition as `{old_step}` on `{old_target}`, which was left in doubt (started {at}: it may have done its work) and is no longer in the playbook; inspect the target, then `runner mark {file} {s}@{t} done` (it did its work), `retry` (run it) or `skip` (--accept-changed does not decide this one)"
            ),
        }
    }
}

/// Every earlier result that no longer matches the playbook: changed definitions, moved
/// targets, and done steps that reappear under another id (only for steps that are not
/// idempotent: an idempotent step may simply run again).
///
/// `attempts` are the journal's attempts (for the definition of a pair left in doubt); a
/// caller that only looks for moved targets may pass none.
pub fn conflicts(
    pb: &Playbook,
    pairs: &[(String, String, PairState)],
    attempts: &[Attempt],
    ids: &BTreeMap<String, String>,
) -> Vec<Conflict> {
    let file = pb.path.display().to_string();
    let states: BTreeMap<(&str, &str), &PairState> = pairs
        .iter()
        .map(|(s, t, st)| ((s.as_str(), t.as_str()), st))
        .collect();
    let gone = gone_pairs(pb, pairs, attempts);
    let mut out = Vec::new();
    for step in &pb.steps {
        for r in &step.rendered {
            let here = ids.get(&r.target);
            let kinds: Vec<ConflictKind> = match states.get(&(step.id.as_str(), r.target.as_str()))
            {
                Some(PairState::Succeeded {
                    def_hash,
                    target_identity,
                    ..
                }) => changed_or_moved(r, def_hash, target_identity, here),
                Some(_) => Vec::new(),
                None if step.idempotent || step.is_manual() => Vec::new(),
                None => renamed(pb, &gone, r, here).into_iter().collect(),
            };
            out.extend(kinds.into_iter().map(|kind| Conflict {
                step: step.id.clone(),
                target: r.target.clone(),
                def_hash: r.def_hash.clone(),
                kind,
                file: file.clone(),
            }));
        }
    }
    out
}

/// Pairs no longer in the playbook that are done or in doubt, by fingerprint: what a renamed
/// step could have been.
fn gone_pairs<'a>(
    pb: &Playbook,
    pairs: &'a [(String, String, PairState)],
    attempts: &'a [Attempt],
) -> BTreeMap<&'a str, Vec<Gone<'a>>> {
    let in_playbook: BTreeSet<(&str, &str)> = pb
        .steps
        .iter()
        .flat_map(|s| s.targets.iter().map(move |t| (s.id.as_str(), t.as_str())))
        .collect();
    // The last attempt that moves each pair forward: it decides a pair left in doubt.
    let last: BTreeMap<(&str, &str), &Attempt> = attempts
        .iter()
        .filter(|a| !matches!(a.kind, AttemptKind::Check | AttemptKind::Rollback))
        .map(|a| ((a.step_id.as_str(), a.target.as_str()), a))
        .collect();
    let mut gone: BTreeMap<&str, Vec<Gone<'_>>> = BTreeMap::new();
    for (s, t, st) in pairs {
        if in_playbook.contains(&(s.as_str(), t.as_str())) {
            continue;
        }
        let found = fingerprint(st, last.get(&(s.as_str(), t.as_str())).copied());
        if let Some((def_hash, identity, at, in_doubt)) = found {
            gone.entry(def_hash).or_default().push(Gone {
                step: s,
                target: t,
                identity,
                at,
                in_doubt,
            });
        }
    }
    gone
}

/// What identifies a pair gone from the playbook: its definition, its target's address, when
/// it ran and whether it was left in doubt (then its `last` attempt says); None unless done
/// or in doubt.
fn fingerprint<'a>(
    st: &'a PairState,
    last: Option<&'a Attempt>,
) -> Option<(&'a str, Option<&'a str>, jiff::Timestamp, bool)> {
    let in_doubt = || {
        last.map(|a| {
            (
                a.def_hash.as_str(),
                a.target_identity.as_deref(),
                a.started_at,
                true,
            )
        })
    };
    match st {
        PairState::Succeeded {
            def_hash,
            target_identity,
            at,
            ..
        } => Some((def_hash.as_str(), target_identity.as_deref(), *at, false)),
        PairState::Running { kind, .. } if *kind != AttemptKind::Rollback => in_doubt(),
        PairState::Failed {
            state: AttemptState::Interrupted,
            ..
        } => in_doubt(),
        _ => None,
    }
}

/// A done pair whose definition changed, or whose target now has another address.
fn changed_or_moved(
    r: &Rendered,
    def_hash: &str,
    target_identity: &Option<String>,
    here: Option<&String>,
) -> Vec<ConflictKind> {
    let mut kinds = Vec::new();
    if def_hash != r.def_hash {
        kinds.push(ConflictKind::Changed);
    }
    if let (Some(from), Some(to)) = (target_identity, here) {
        if from != to {
            kinds.push(ConflictKind::Moved {
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    kinds
}

/// A pair not yet done whose definition is that of a done (or in doubt) pair no longer in the
/// playbook: the same target name counts unless its address is known to differ; another name
/// only if both addresses are known and equal.
fn renamed(
    pb: &Playbook,
    gone: &BTreeMap<&str, Vec<Gone<'_>>>,
    r: &Rendered,
    here: Option<&String>,
) -> Option<ConflictKind> {
    let candidates = gone.get(r.def_hash.as_str()).map(Vec::as_slice);
    let old = candidates
        .unwrap_or_default()
        .iter()
        .find(|g| match g.identity {
            Some(id) => Some(id) == here.map(String::as_str),
            None => g.target == r.target,
        })?;
    Some(ConflictKind::Renamed {
        old_step: old.step.to_string(),
        old_target: old.target.to_string(),
        at: crate::window::local_label(old.at, pb.window.time_zone()),
        in_doubt: old.in_doubt,
    })
}

/// A pair no longer in the playbook that a renamed step could be.
struct Gone<'a> {
    step: &'a str,
    target: &'a str,
    identity: Option<&'a str>,
    at: jiff::Timestamp,
    in_doubt: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_name_transport_user_host_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            "name: ids\nwindow:\n  business_hours: []\ntargets:\n\
             \x20 dc:\n    transport: ssh\n    host: DC1.Example.LAN\n    user: administrator\n\
             \x20 v6:\n    transport: ssh\n    host: '::1'\n    port: 2222\n    user: root\n\
             \x20 win:\n    transport: winrm\n    host: 10.0.0.5\n    https: true\n    user: u\n    password: { env: P }\n\
             \x20 here:\n    transport: local\n\
             steps:\n  - id: s\n    on: here\n    run: 'true'\n",
        )
        .unwrap();
        let pb = crate::playbook::load(&path).unwrap();
        let ids = identities(&pb);
        assert_eq!(ids["dc"], "ssh://administrator@dc1.example.lan:22");
        assert_eq!(ids["v6"], "ssh://root@[::1]:2222");
        assert_eq!(ids["win"], "winrm+https://u@10.0.0.5:5986");
        assert_eq!(ids["here"], "local");
        assert_eq!(ids[OPERATOR], OPERATOR);
    }
}
