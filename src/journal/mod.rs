//! The journal: what ran, where, when and how it ended: one SQLite file per cutover, or one
//! schema per cutover on a PostgreSQL server (`pg`), behind the same API and the same SQL (`sql`).
//!
//! It is the only thing that lets a cutover resume after a kill -9, a reboot of the jump host or
//! a power cut, so it is written defensively:
//!
//! - WAL with `synchronous=FULL` (SQLite), a committed transaction (PostgreSQL): once a write
//!   function has returned, the row is on disk.
//! - Every write is one short transaction, committed before returning; on PostgreSQL it first
//!   checks the lease's fencing counter, so a runner that lost its lease records nothing.
//! - Intent before action: [`Journal::begin_attempt`] records a `running` row *before* the
//!   engine touches a target. A `running` row whose runner is gone is therefore "in doubt", never
//!   silently "not started".
//! - The state of a step × target pair is never stored; it is derived from the history by
//!   [`derive_pair_state`], so there is no second copy that could disagree.
//!
//! Only the CLI chooses where the file lives; the journal creates the directory.
//!
//! This file is the [`Journal`] API; the record types are in `records`, the pair-state
//! derivation in `state`, opening a store in `store`, its errors in `error`.

pub mod copy;
pub mod lock;
pub mod notes;
mod notifications;
pub mod pg;
mod schema;
pub mod sql;

pub use notifications::{
    summarize as summarize_notifications, DeliverySummary, NewNotification, Notification,
};

pub use lock::{
    acquire, host_name, lock_path, process_alive, read_holder_of, Holder, LockError, LockGuard,
};

mod error;
mod records;
mod state;
mod store;

pub use error::JournalError;
pub use records::*;
pub use state::{derive_pair_state, HistoryEntry, PairState};
pub(crate) use store::pg_text;
use store::Db;
pub use store::{resolve_path, schema_version, Settings};

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use jiff::Timestamp;

use sql::{Row, Tx};
use state::deciding;

pub struct Journal {
    db: Db,
    path: PathBuf,
    /// Device and inode of the file at `path` when it was opened: every write first checks
    /// that the path still names that file.
    file: Option<(u64, u64)>,
    /// Set once the file was found deleted or replaced: where its content was saved.
    lost: std::cell::RefCell<Option<(bool, Result<PathBuf, String>)>>,
    /// Target name -> identity, recorded with every attempt and mark written from now on.
    targets: std::collections::BTreeMap<String, String>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

const ATTEMPT_COLUMNS: &str = "id, run_id, step_id, target, kind, number, state, exit_code, \
     started_at, ended_at, pid, host, message, def_hash, finish_seq, target_identity";
const MARK_COLUMNS: &str =
    "id, run_id, step_id, target, mark, def_hash, \"user\", host, at, reason, target_identity";

impl Journal {
    /// Binds target names to their identities (see the engine's identity rules): every attempt
    /// and mark written through this connection from now on records the identity of its target,
    /// so that a success is tied to where it happened.
    pub fn bind_targets(&mut self, identities: std::collections::BTreeMap<String, String>) {
        self.targets = identities;
    }

    /// This journal's random id, made when it was created (or migrated to schema 3).
    pub fn journal_id(&self) -> Result<Option<String>, JournalError> {
        self.meta("journal_id")
    }

    /// The name of the playbook this journal belongs to; `None` until a run claims it.
    pub fn playbook(&self) -> Result<Option<String>, JournalError> {
        self.meta("playbook")
    }

    /// Records which playbook this journal belongs to.
    pub fn set_playbook(&self, name: &str) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.exec(
                "INSERT INTO journal_meta (key, value) VALUES ('playbook', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[name.into()],
            )?;
            Ok(())
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.read(|tx| {
            tx.row(
                "SELECT value FROM journal_meta WHERE key = ?1",
                &[key.into()],
            )?
            .map(|r| r.text(0))
            .transpose()
        })
    }

    /// Records the start of a run and returns its id.
    pub fn begin_run(&self, r: &NewRun) -> Result<RunId, JournalError> {
        let base = format!("{}-{}", r.started_at.strftime("%Y%m%dT%H%M%SZ"), r.pid);
        let args = serde_json::to_string(&r.args)
            .map_err(|e| JournalError::BadRow(format!("run arguments: {e}")))?;
        self.write(|tx| {
            // The same pid can start two runs within a second (a `mark` right after an aborted
            // `apply` in one process, or tests); suffix instead of failing.
            let mut id = base.clone();
            let mut n = 1u32;
            while run_exists(tx, &id)? {
                n += 1;
                id = format!("{base}-{n}");
            }
            tx.exec(
                "INSERT INTO runs (id, command, playbook_path, playbook_sha256, started_at, \
                 \"user\", host, pid, runner_version, args, simulated_from, real_started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                &[
                    id.as_str().into(),
                    r.command.as_str().into(),
                    r.playbook_path.to_string_lossy().into_owned().into(),
                    (&r.playbook_sha256).into(),
                    r.started_at.into(),
                    (&r.user).into(),
                    (&r.host).into(),
                    r.pid.into(),
                    env!("CARGO_PKG_VERSION").into(),
                    args.as_str().into(),
                    r.simulated.map(|c| c.from).into(),
                    r.simulated.and_then(|c| c.real_start).into(),
                ],
            )?;
            Ok(RunId(id))
        })
    }

    pub fn end_run(&self, run: &RunId, outcome: &str, at: Timestamp) -> Result<(), JournalError> {
        self.write(|tx| {
            let n = tx.exec(
                "UPDATE runs SET ended_at = ?1, outcome = ?2 WHERE id = ?3",
                &[at.into(), outcome.into(), (&run.0).into()],
            )?;
            if n == 0 {
                return Err(JournalError::UnknownRun(run.0.clone()));
            }
            Ok(())
        })
    }

    /// Records each step's definition hash as seen by this run: `(step_id, def_hash)`.
    /// Recording a step again replaces its hash.
    pub fn record_definitions(
        &self,
        run: &RunId,
        defs: &[(String, String)],
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            require_run(tx, run)?;
            for (step, hash) in defs {
                tx.exec(
                    "INSERT INTO step_definitions (run_id, step_id, def_hash) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (run_id, step_id) DO UPDATE SET def_hash = excluded.def_hash",
                    &[(&run.0).into(), step.into(), hash.into()],
                )?;
            }
            Ok(())
        })
    }

    /// The definition hashes recorded for a run, by step id.
    pub fn definitions(&self, run: &RunId) -> Result<Vec<(String, String)>, JournalError> {
        self.read(|tx| {
            tx.rows(
                "SELECT step_id, def_hash FROM step_definitions WHERE run_id = ?1 ORDER BY step_id",
                &[(&run.0).into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
    }

    /// Records the intent to act: the `running` row is committed to disk before this returns,
    /// and only then may the engine touch the target.
    pub fn begin_attempt(&self, a: &NewAttempt) -> Result<AttemptId, JournalError> {
        self.begin_attempt_noted(a, &[])
    }

    /// [`Journal::begin_attempt`] with notes on the attempt, committed together: what must be
    /// durable before the attempt's command starts costs no second write.
    pub fn begin_attempt_noted(
        &self,
        a: &NewAttempt,
        notes: &[(&str, &str)],
    ) -> Result<AttemptId, JournalError> {
        self.write(|tx| {
            require_run(tx, &a.run)?;
            let id = next_seq(tx)?;
            tx.exec(
                "INSERT INTO attempts (id, run_id, step_id, target, kind, number, state, \
                 started_at, pid, host, def_hash, target_identity) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                &[
                    id.into(),
                    (&a.run.0).into(),
                    (&a.step_id).into(),
                    (&a.target).into(),
                    a.kind.as_str().into(),
                    a.number.into(),
                    AttemptState::Running.as_str().into(),
                    a.started_at.into(),
                    a.pid.into(),
                    (&a.host).into(),
                    (&a.def_hash).into(),
                    self.targets.get(&a.target).into(),
                ],
            )?;
            for (key, value) in notes {
                put_note(tx, id, key, value)?;
            }
            Ok(AttemptId(id))
        })
    }

    /// Records how a running attempt ended. Only a `running` attempt can be finished, exactly
    /// once: a second outcome for the same attempt would mean two parties think they own it.
    pub fn finish_attempt(
        &self,
        id: AttemptId,
        state: AttemptState,
        exit_code: Option<i64>,
        at: Timestamp,
        message: Option<&str>,
    ) -> Result<(), JournalError> {
        if state == AttemptState::Running {
            return Err(JournalError::FinishAsRunning(id));
        }
        self.write(|tx| {
            let current: Option<AttemptState> = tx
                .row("SELECT state FROM attempts WHERE id = ?1", &[id.0.into()])?
                .map(|r| r.parse(0, AttemptState::parse))
                .transpose()?;
            match current {
                None => return Err(JournalError::UnknownAttempt(id)),
                Some(AttemptState::Running) => {}
                Some(state) => return Err(JournalError::AttemptNotRunning { id, state }),
            }
            let seq = next_seq(tx)?;
            tx.exec(
                "UPDATE attempts SET state = ?1, exit_code = ?2, ended_at = ?3, message = ?4, \
                 finish_seq = ?5 WHERE id = ?6",
                &[
                    state.as_str().into(),
                    exit_code.into(),
                    at.into(),
                    message.into(),
                    seq.into(),
                    id.0.into(),
                ],
            )?;
            Ok(())
        })
    }

    /// Records one operator decision.
    pub fn mark(&self, m: &NewMark) -> Result<(), JournalError> {
        self.mark_all(std::slice::from_ref(m))
    }

    /// Records several decisions atomically: `runner mark FILE STEP done` on a step with many
    /// targets must not leave half of them marked if the disk fills up.
    pub fn mark_all(&self, marks: &[NewMark]) -> Result<(), JournalError> {
        self.write(|tx| {
            for m in marks {
                if let Some(run) = &m.run {
                    require_run(tx, run)?;
                }
                let id = next_seq(tx)?;
                tx.exec(
                    "INSERT INTO marks (id, run_id, step_id, target, mark, def_hash, \"user\", \
                     host, at, reason, target_identity) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    &[
                        id.into(),
                        m.run.as_ref().map(|r| r.0.as_str()).into(),
                        (&m.step_id).into(),
                        (&m.target).into(),
                        m.mark.as_str().into(),
                        (&m.def_hash).into(),
                        (&m.user).into(),
                        (&m.host).into(),
                        m.at.into(),
                        m.reason.as_deref().into(),
                        self.targets.get(&m.target).into(),
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Records a note on an attempt (replacing an earlier value of the same key), durably,
    /// before the action it describes is taken.
    pub fn set_note(&self, attempt: AttemptId, key: &str, value: &str) -> Result<(), JournalError> {
        self.write(|tx| put_note(tx, attempt.0, key, value))
    }

    /// The notes of an attempt.
    pub fn notes(
        &self,
        attempt: AttemptId,
    ) -> Result<std::collections::BTreeMap<String, String>, JournalError> {
        self.read(|tx| {
            tx.rows(
                "SELECT key, value FROM attempt_notes WHERE attempt_id = ?1",
                &[attempt.0.into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
    }

    pub fn record_event(&self, e: &NewEvent) -> Result<(), JournalError> {
        self.write(|tx| {
            require_run(tx, &e.run)?;
            tx.exec(
                "INSERT INTO events (run_id, at, step_id, kind, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    (&e.run.0).into(),
                    e.at.into(),
                    e.step_id.as_deref().into(),
                    e.kind.as_str().into(),
                    (&e.detail).into(),
                ],
            )?;
            Ok(())
        })
    }

    /// The effective state of one step × target pair; see [`derive_pair_state`].
    pub fn pair(&self, step: &str, target: &str) -> Result<PairState, JournalError> {
        let history = self.read(|tx| {
            let mut history = Vec::new();
            let key = [step.into(), target.into()];
            for r in tx.rows(
                &format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE step_id = ?1 AND target = ?2"
                ),
                &key,
            )? {
                history.push(HistoryEntry::Attempt(attempt_from_row(&r)?));
            }
            for r in tx.rows(
                &format!("SELECT {MARK_COLUMNS} FROM marks WHERE step_id = ?1 AND target = ?2"),
                &key,
            )? {
                history.push(HistoryEntry::Mark(mark_from_row(&r)?));
            }
            Ok(history)
        })?;
        Ok(derive_pair_state(&history))
    }

    /// Every pair the journal knows of, in the order it first appeared.
    pub fn pairs(&self) -> Result<Vec<(String, String, PairState)>, JournalError> {
        Ok(self
            .histories()?
            .into_iter()
            .map(|(step, target, history)| {
                let state = derive_pair_state(&history);
                (step, target, state)
            })
            .collect())
    }

    /// Pairs that are currently succeeded (by an attempt or a `done` mark; not skipped, not
    /// rolled back), in the order they completed, with the completion time. A rollback walks
    /// this list backwards.
    pub fn completion_order(&self) -> Result<Vec<(String, String, Timestamp)>, JournalError> {
        let mut done: Vec<(i64, String, String, Timestamp)> = Vec::new();
        for (step, target, history) in self.histories()? {
            let Some(entry) = deciding(&history) else {
                continue;
            };
            if let PairState::Succeeded { at, .. } = derive_pair_state(&history) {
                done.push((entry.completion_seq(), step, target, at));
            }
        }
        done.sort_by_key(|d| d.0);
        Ok(done.into_iter().map(|(_, s, t, at)| (s, t, at)).collect())
    }

    /// All histories grouped by pair, pairs in order of first appearance.
    fn histories(&self) -> Result<Vec<(String, String, Vec<HistoryEntry>)>, JournalError> {
        let (attempts, marks) = self.read(|tx| {
            let attempts = query_attempts(tx, None)?;
            let marks = query_marks(tx)?;
            Ok((attempts, marks))
        })?;
        let mut entries: Vec<HistoryEntry> = attempts
            .into_iter()
            .map(HistoryEntry::Attempt)
            .chain(marks.into_iter().map(HistoryEntry::Mark))
            .collect();
        entries.sort_by_key(HistoryEntry::seq);

        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut out: Vec<(String, String, Vec<HistoryEntry>)> = Vec::new();
        for entry in entries {
            let (step, target) = entry.step_target();
            let key = (step.to_owned(), target.to_owned());
            match index.get(&key) {
                Some(&i) => out[i].2.push(entry),
                None => {
                    index.insert(key.clone(), out.len());
                    out.push((key.0, key.1, vec![entry]));
                }
            }
        }
        Ok(out)
    }

    /// Attempts in start order, all of them or one run's.
    pub fn attempts(&self, run: Option<&RunId>) -> Result<Vec<Attempt>, JournalError> {
        self.read(|tx| query_attempts(tx, run))
    }

    /// Runs in start order.
    pub fn runs(&self) -> Result<Vec<Run>, JournalError> {
        let rows = self.read(|tx| {
            tx.rows(
                "SELECT id, command, playbook_path, playbook_sha256, started_at, ended_at, \
                 outcome, \"user\", host, pid, runner_version, args, simulated_from, \
                 real_started_at FROM runs ORDER BY seq",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let args: Vec<String> = serde_json::from_str(&r.text(11)?)
                    .map_err(|e| JournalError::BadRow(format!("run arguments: {e}")))?;
                Ok(Run {
                    id: RunId(r.text(0)?),
                    command: r.parse(1, RunCommand::parse)?,
                    playbook_path: r.text(2)?,
                    playbook_sha256: r.text(3)?,
                    started_at: r.ts(4)?,
                    ended_at: r.opt_ts(5)?,
                    outcome: r.opt_text(6)?,
                    user: r.text(7)?,
                    host: r.text(8)?,
                    pid: r.u32(9)?,
                    runner_version: r.text(10)?,
                    args,
                    simulated: r.opt_ts(12)?.map(|from| crate::clock::Simulated {
                        from,
                        real_start: r.opt_ts(13).ok().flatten(),
                    }),
                })
            })
            .collect()
    }

    /// Window events in the order recorded, all of them or one run's.
    pub fn events(&self, run: Option<&RunId>) -> Result<Vec<Event>, JournalError> {
        self.read(|tx| {
            tx.rows(
                "SELECT id, run_id, at, step_id, kind, detail FROM events \
                 WHERE CAST(?1 AS TEXT) IS NULL OR run_id = ?1 ORDER BY id",
                &[run.map(|r| r.0.as_str()).into()],
            )?
            .iter()
            .map(|r| {
                Ok(Event {
                    id: r.int(0)?,
                    run: RunId(r.text(1)?),
                    at: r.ts(2)?,
                    step_id: r.opt_text(3)?,
                    kind: r.parse(4, EventKind::parse)?,
                    detail: r.text(5)?,
                })
            })
            .collect()
        })
    }

    /// Operator decisions in the order made.
    pub fn marks(&self) -> Result<Vec<Mark>, JournalError> {
        self.read(query_marks)
    }
}

fn run_exists(tx: &dyn Tx, id: &str) -> Result<bool, JournalError> {
    Ok(tx
        .row("SELECT 1 FROM runs WHERE id = ?1", &[id.into()])?
        .is_some())
}

fn require_run(tx: &dyn Tx, run: &RunId) -> Result<(), JournalError> {
    if run_exists(tx, &run.0)? {
        Ok(())
    } else {
        Err(JournalError::UnknownRun(run.0.clone()))
    }
}

/// The next number of the journal-wide sequence; call inside a write transaction.
fn next_seq(tx: &dyn Tx) -> Result<i64, JournalError> {
    tx.row(
        "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value",
        &[],
    )?
    .ok_or_else(|| JournalError::BadRow("the counter row is missing".into()))?
    .int(0)
}

fn put_note(tx: &dyn Tx, attempt: i64, key: &str, value: &str) -> Result<(), JournalError> {
    tx.exec(
        "INSERT INTO attempt_notes (attempt_id, key, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (attempt_id, key) DO UPDATE SET value = excluded.value",
        &[attempt.into(), key.into(), value.into()],
    )?;
    Ok(())
}

fn query_attempts(tx: &dyn Tx, run: Option<&RunId>) -> Result<Vec<Attempt>, JournalError> {
    tx.rows(
        &format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE CAST(?1 AS TEXT) IS NULL OR run_id = ?1 ORDER BY id"
        ),
        &[run.map(|r| r.0.as_str()).into()],
    )?
    .iter()
    .map(attempt_from_row)
    .collect()
}

fn query_marks(tx: &dyn Tx) -> Result<Vec<Mark>, JournalError> {
    tx.rows(
        &format!("SELECT {MARK_COLUMNS} FROM marks ORDER BY id"),
        &[],
    )?
    .iter()
    .map(mark_from_row)
    .collect()
}

fn attempt_from_row(r: &Row) -> Result<Attempt, JournalError> {
    Ok(Attempt {
        id: AttemptId(r.int(0)?),
        run: RunId(r.text(1)?),
        step_id: r.text(2)?,
        target: r.text(3)?,
        kind: AttemptKind::parse(&r.text(4)?),
        number: r.u32(5)?,
        state: r.parse(6, AttemptState::parse)?,
        exit_code: r.opt_int(7)?,
        started_at: r.ts(8)?,
        ended_at: r.opt_ts(9)?,
        pid: r.u32(10)?,
        host: r.text(11)?,
        message: r.opt_text(12)?,
        def_hash: r.text(13)?,
        finish_seq: r.opt_int(14)?,
        target_identity: r.opt_text(15)?,
    })
}

fn mark_from_row(r: &Row) -> Result<Mark, JournalError> {
    Ok(Mark {
        id: r.int(0)?,
        run: r.opt_text(1)?.map(RunId),
        step_id: r.text(2)?,
        target: r.text(3)?,
        mark: r.parse(4, MarkKind::parse)?,
        def_hash: r.text(5)?,
        user: r.text(6)?,
        host: r.text(7)?,
        at: r.ts(8)?,
        reason: r.opt_text(9)?,
        target_identity: r.opt_text(10)?,
    })
}
