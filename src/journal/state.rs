//! The pure derivation of a step × target pair's state from its recorded history.

use jiff::Timestamp;

use super::process_alive;
use super::records::{Attempt, AttemptId, AttemptKind, AttemptState, Mark, MarkKind};

/// The effective state of one step × target pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairState {
    /// Never ran, marked retry, or nothing decisive recorded.
    Pending,
    Succeeded {
        at: Timestamp,
        def_hash: String,
        by_mark: bool,
        /// The identity of the target it succeeded on; `None` when the journal predates
        /// identities.
        target_identity: Option<String>,
    },
    /// Marked skip: counts as done, is never rolled back.
    Skipped {
        at: Timestamp,
    },
    Failed {
        at: Timestamp,
        state: AttemptState,
        exit_code: Option<i64>,
        message: Option<String>,
    },
    /// A run or rollback attempt is recorded as running. If `pid` is not alive on `host` (or
    /// `host` is another machine and we hold the lock), it is in doubt: the step may or may not
    /// have had its effect.
    Running {
        attempt: AttemptId,
        kind: AttemptKind,
        pid: u32,
        host: String,
        started_at: Timestamp,
    },
    RolledBack {
        at: Timestamp,
    },
    RollbackFailed {
        at: Timestamp,
        exit_code: Option<i64>,
    },
}

impl PairState {
    /// Whether this pair is `Running` but its runner cannot still be working on it: the pid is
    /// gone on this host, or the attempt was started on another machine. An attempt from another
    /// host counts as in doubt because the caller is expected to hold the state lock, which that
    /// runner would need too. In doubt means the step may or may not have had its effect; the
    /// engine must not silently re-run a non-idempotent step.
    pub fn is_in_doubt(&self, this_host: &str) -> bool {
        match self {
            PairState::Running { pid, host, .. } => host != this_host || !process_alive(*pid),
            _ => false,
        }
    }
}

/// One entry of a pair's history as [`derive_pair_state`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryEntry {
    Attempt(Attempt),
    Mark(Mark),
}

impl HistoryEntry {
    /// Position in the journal-wide start sequence.
    pub fn seq(&self) -> i64 {
        match self {
            HistoryEntry::Attempt(a) => a.id.0,
            HistoryEntry::Mark(m) => m.id,
        }
    }

    /// Position in the journal-wide completion sequence. An attempt that has not finished yet
    /// (or finished before this column existed) falls back to its start.
    pub(super) fn completion_seq(&self) -> i64 {
        match self {
            HistoryEntry::Attempt(a) => a.finish_seq.unwrap_or(a.id.0),
            HistoryEntry::Mark(m) => m.id,
        }
    }

    pub(super) fn step_target(&self) -> (&str, &str) {
        match self {
            HistoryEntry::Attempt(a) => (&a.step_id, &a.target),
            HistoryEntry::Mark(m) => (&m.step_id, &m.target),
        }
    }
}

/// The entry that decides a pair's state: the latest (by start sequence) entry that is not a
/// check attempt. Order-independent in its input.
pub(super) fn deciding(history: &[HistoryEntry]) -> Option<&HistoryEntry> {
    history
        .iter()
        .filter(|e| !matches!(e, HistoryEntry::Attempt(a) if a.kind == AttemptKind::Check))
        .max_by_key(|e| e.seq())
}

/// Derives a pair's state from its history (attempts and marks of that one step × target).
///
/// The rule: ignore check attempts (the engine records the run attempt's outcome itself), take
/// the entry with the highest sequence number, and map it:
///
/// | latest entry                                    | state                      |
/// |-------------------------------------------------|----------------------------|
/// | none                                            | `Pending`                  |
/// | forward attempt `running`                       | `Running`                  |
/// | forward attempt `succeeded`                     | `Succeeded { by_mark: false }` |
/// | forward attempt `failed`/`timed_out`/`interrupted` | `Failed`                |
/// | rollback attempt `running`                      | `Running { kind: Rollback }` |
/// | rollback attempt `succeeded`                    | `RolledBack`               |
/// | rollback attempt `failed`/`timed_out`/`interrupted` | `RollbackFailed`       |
/// | mark `done`                                     | `Succeeded { by_mark: true }` |
/// | mark `retry`                                    | `Pending`                  |
/// | mark `skip`                                     | `Skipped`                  |
///
/// "Forward" is every attempt kind except `check` and `rollback`: run, reboot, upload and any
/// kind a later runner adds. Ordering by *start* sequence (not end) matters: if an in-doubt
/// attempt is closed as interrupted after a newer attempt started, the newer one still decides.
pub fn derive_pair_state(history: &[HistoryEntry]) -> PairState {
    match deciding(history) {
        None => PairState::Pending,
        Some(HistoryEntry::Mark(m)) => match m.mark {
            MarkKind::Done => PairState::Succeeded {
                at: m.at,
                def_hash: m.def_hash.clone(),
                by_mark: true,
                target_identity: m.target_identity.clone(),
            },
            MarkKind::Retry => PairState::Pending,
            MarkKind::Skip => PairState::Skipped { at: m.at },
        },
        Some(HistoryEntry::Attempt(a)) => {
            // A finished attempt always has ended_at; falling back keeps a damaged row readable.
            let at = a.ended_at.unwrap_or(a.started_at);
            let rollback = a.kind == AttemptKind::Rollback;
            match a.state {
                AttemptState::Running => PairState::Running {
                    attempt: a.id,
                    kind: a.kind.clone(),
                    pid: a.pid,
                    host: a.host.clone(),
                    started_at: a.started_at,
                },
                AttemptState::Succeeded if rollback => PairState::RolledBack { at },
                AttemptState::Succeeded => PairState::Succeeded {
                    at,
                    def_hash: a.def_hash.clone(),
                    by_mark: false,
                    target_identity: a.target_identity.clone(),
                },
                AttemptState::Failed | AttemptState::TimedOut | AttemptState::Interrupted
                    if rollback =>
                {
                    PairState::RollbackFailed {
                        at,
                        exit_code: a.exit_code,
                    }
                }
                AttemptState::Failed | AttemptState::TimedOut | AttemptState::Interrupted => {
                    PairState::Failed {
                        at,
                        state: a.state,
                        exit_code: a.exit_code,
                        message: a.message.clone(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{EventKind, RunCommand, RunId};

    fn t(sec: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + sec).unwrap()
    }

    fn attempt(id: i64, kind: AttemptKind, state: AttemptState) -> HistoryEntry {
        let finished = state != AttemptState::Running;
        HistoryEntry::Attempt(Attempt {
            id: AttemptId(id),
            run: RunId("r".into()),
            step_id: "s".into(),
            target: "t".into(),
            kind,
            number: 1,
            state,
            exit_code: finished.then_some(id + 100),
            started_at: t(id),
            ended_at: finished.then(|| t(id + 1000)),
            pid: 4242,
            host: "jump".into(),
            message: finished.then(|| format!("m{id}")),
            def_hash: format!("h{id}"),
            finish_seq: finished.then_some(id + 10_000),
            target_identity: Some("local".into()),
        })
    }

    fn mark(id: i64, mark: MarkKind) -> HistoryEntry {
        HistoryEntry::Mark(Mark {
            id,
            run: None,
            step_id: "s".into(),
            target: "t".into(),
            mark,
            def_hash: format!("mh{id}"),
            user: "op".into(),
            host: "jump".into(),
            at: t(id + 2000),
            reason: None,
            target_identity: None,
        })
    }

    fn kinds() -> Vec<AttemptKind> {
        vec![
            AttemptKind::Run,
            AttemptKind::Check,
            AttemptKind::Rollback,
            AttemptKind::Reboot,
            AttemptKind::Upload,
            AttemptKind::Other("future".into()),
        ]
    }

    /// Every possible single entry with the given sequence number.
    fn all_entries(id: i64) -> Vec<HistoryEntry> {
        let mut out = Vec::new();
        for kind in kinds() {
            for &state in AttemptState::ALL {
                out.push(attempt(id, kind.clone(), state));
            }
        }
        for &m in MarkKind::ALL {
            out.push(mark(id, m));
        }
        out
    }

    /// The derivation table written out case by case, independently of the implementation.
    fn expected(entry: &HistoryEntry) -> Option<PairState> {
        let id = entry.seq();
        Some(match entry {
            HistoryEntry::Mark(m) => match m.mark {
                MarkKind::Done => PairState::Succeeded {
                    at: t(id + 2000),
                    def_hash: format!("mh{id}"),
                    by_mark: true,
                    target_identity: None,
                },
                MarkKind::Retry => PairState::Pending,
                MarkKind::Skip => PairState::Skipped { at: t(id + 2000) },
            },
            HistoryEntry::Attempt(a) if a.kind == AttemptKind::Check => return None,
            HistoryEntry::Attempt(a) => match (a.kind == AttemptKind::Rollback, a.state) {
                (_, AttemptState::Running) => PairState::Running {
                    attempt: AttemptId(id),
                    kind: a.kind.clone(),
                    pid: 4242,
                    host: "jump".into(),
                    started_at: t(id),
                },
                (false, AttemptState::Succeeded) => PairState::Succeeded {
                    at: t(id + 1000),
                    def_hash: format!("h{id}"),
                    by_mark: false,
                    target_identity: Some("local".into()),
                },
                (false, state) => PairState::Failed {
                    at: t(id + 1000),
                    state,
                    exit_code: Some(id + 100),
                    message: Some(format!("m{id}")),
                },
                (true, AttemptState::Succeeded) => PairState::RolledBack { at: t(id + 1000) },
                (true, _) => PairState::RollbackFailed {
                    at: t(id + 1000),
                    exit_code: Some(id + 100),
                },
            },
        })
    }

    #[test]
    fn empty_history_is_pending() {
        assert_eq!(derive_pair_state(&[]), PairState::Pending);
    }

    #[test]
    fn single_entry_follows_the_table() {
        let entries = all_entries(5);
        // 6 kinds x 5 states + 3 marks.
        assert_eq!(entries.len(), 33);
        for e in &entries {
            let want = expected(e).unwrap_or(PairState::Pending);
            assert_eq!(derive_pair_state(std::slice::from_ref(e)), want, "{e:?}");
        }
    }

    #[test]
    fn latest_decisive_entry_wins_over_every_earlier_one() {
        for earlier in all_entries(1) {
            for later in all_entries(2) {
                let Some(want) = expected(&later) else {
                    continue;
                };
                let forward = [earlier.clone(), later.clone()];
                assert_eq!(
                    derive_pair_state(&forward),
                    want,
                    "{earlier:?} then {later:?}"
                );
                // The input order does not matter, only the sequence numbers do.
                let backward = [later.clone(), earlier.clone()];
                assert_eq!(
                    derive_pair_state(&backward),
                    want,
                    "{earlier:?} then {later:?}"
                );
            }
        }
    }

    #[test]
    fn checks_never_change_the_state() {
        for earlier in all_entries(1) {
            let base = derive_pair_state(std::slice::from_ref(&earlier));
            for &state in AttemptState::ALL {
                let check = attempt(2, AttemptKind::Check, state);
                assert_eq!(
                    derive_pair_state(&[earlier.clone(), check]),
                    base,
                    "{earlier:?}"
                );
            }
        }
    }

    #[test]
    fn newer_attempt_decides_even_if_older_finished_later() {
        // An in-doubt attempt closed as interrupted after the retry started must not win.
        let mut old = attempt(1, AttemptKind::Run, AttemptState::Interrupted);
        if let HistoryEntry::Attempt(a) = &mut old {
            a.finish_seq = Some(99);
        }
        let new = attempt(2, AttemptKind::Run, AttemptState::Succeeded);
        assert!(matches!(
            derive_pair_state(&[old, new]),
            PairState::Succeeded { by_mark: false, .. }
        ));
    }

    #[test]
    fn in_doubt_needs_a_running_pair_without_its_runner() {
        let running = |pid: u32, host: &str| PairState::Running {
            attempt: AttemptId(1),
            kind: AttemptKind::Run,
            pid,
            host: host.into(),
            started_at: t(0),
        };
        let me = std::process::id();
        assert!(!running(me, "jump").is_in_doubt("jump"));
        assert!(running(me, "other").is_in_doubt("jump"));
        // pid 0 is never a live runner.
        assert!(running(0, "jump").is_in_doubt("jump"));
        assert!(!PairState::Pending.is_in_doubt("jump"));
        assert!(!PairState::RolledBack { at: t(0) }.is_in_doubt("jump"));
    }

    #[test]
    fn text_enums_round_trip() {
        for &s in AttemptState::ALL {
            assert_eq!(AttemptState::parse(s.as_str()), Some(s));
        }
        for &m in MarkKind::ALL {
            assert_eq!(MarkKind::parse(m.as_str()), Some(m));
        }
        for &k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        for &c in RunCommand::ALL {
            assert_eq!(RunCommand::parse(c.as_str()), Some(c));
        }
        for k in kinds() {
            assert_eq!(AttemptKind::parse(k.as_str()), k);
        }
        assert_eq!(AttemptState::parse("done"), None);
    }
}
