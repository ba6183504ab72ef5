//! A pair's state follows its history in the database, pairs are listed in first-appearance order,
//! and completion order is by completion, not start.

use super::*;

#[test]
fn pair_state_follows_history_in_the_database() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        assert_eq!(j.pair("copy-db", "db1").unwrap(), PairState::Pending);

        let a = j
            .begin_attempt(&new_attempt(&run, "copy-db", "db1", AttemptKind::Run, 1))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Running {
                attempt: a,
                kind: AttemptKind::Run,
                pid: 4242,
                host: "jump1".into(),
                started_at: t(1),
            }
        );
        j.finish_attempt(a, AttemptState::TimedOut, None, t(2), Some("timeout 600s"))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Failed {
                at: t(2),
                state: AttemptState::TimedOut,
                exit_code: None,
                message: Some("timeout 600s".into()),
            }
        );
        // A check afterwards does not change it.
        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Check,
            AttemptState::Succeeded,
            3,
        );
        assert!(matches!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Failed { .. }
        ));

        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Run,
            AttemptState::Succeeded,
            4,
        );
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Succeeded {
                at: t(5),
                def_hash: "def-copy-db".into(),
                by_mark: false,
                target_identity: None,
            }
        );
        // Other pairs are untouched.
        assert_eq!(j.pair("copy-db", "db2").unwrap(), PairState::Pending);

        let rb = j
            .begin_attempt(&new_attempt(
                &run,
                "copy-db",
                "db1",
                AttemptKind::Rollback,
                6,
            ))
            .unwrap();
        assert!(matches!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Running { kind: AttemptKind::Rollback, attempt, .. } if attempt == rb
        ));
        j.finish_attempt(rb, AttemptState::Failed, Some(2), t(7), None)
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::RollbackFailed {
                at: t(7),
                exit_code: Some(2)
            }
        );
        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Rollback,
            AttemptState::Succeeded,
            8,
        );
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::RolledBack { at: t(9) }
        );

        j.mark(&new_mark("copy-db", "db1", MarkKind::Done, 10))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Succeeded {
                at: t(10),
                def_hash: "mark-def-copy-db".into(),
                by_mark: true,
                target_identity: None,
            }
        );
        j.mark(&new_mark("copy-db", "db1", MarkKind::Retry, 11))
            .unwrap();
        assert_eq!(j.pair("copy-db", "db1").unwrap(), PairState::Pending);
        j.mark(&new_mark("copy-db", "db1", MarkKind::Skip, 12))
            .unwrap();
        assert_eq!(
            j.pair("copy-db", "db1").unwrap(),
            PairState::Skipped { at: t(12) }
        );
    }
}

#[test]
fn pairs_lists_every_pair_in_first_appearance_order() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        run_step(
            &j,
            &run,
            "b",
            "x",
            AttemptKind::Run,
            AttemptState::Succeeded,
            1,
        );
        j.mark(&new_mark("a", "y", MarkKind::Skip, 2)).unwrap();
        run_step(
            &j,
            &run,
            "b",
            "x",
            AttemptKind::Run,
            AttemptState::Failed,
            3,
        );
        let pairs = j.pairs().unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[0].0.as_str(), pairs[0].1.as_str()), ("b", "x"));
        assert!(matches!(pairs[0].2, PairState::Failed { .. }));
        assert_eq!((pairs[1].0.as_str(), pairs[1].1.as_str()), ("a", "y"));
        assert_eq!(pairs[1].2, PairState::Skipped { at: t(2) });
    }
}

#[test]
fn completion_order_is_by_completion_not_start() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        // Two targets in parallel: db1 starts first, db2 finishes first.
        let a1 = j
            .begin_attempt(&new_attempt(&run, "copy", "db1", AttemptKind::Run, 1))
            .unwrap();
        let a2 = j
            .begin_attempt(&new_attempt(&run, "copy", "db2", AttemptKind::Run, 2))
            .unwrap();
        j.finish_attempt(a2, AttemptState::Succeeded, Some(0), t(3), None)
            .unwrap();
        j.finish_attempt(a1, AttemptState::Succeeded, Some(0), t(4), None)
            .unwrap();
        // Marked done counts; skipped, failed and rolled back do not.
        j.mark(&new_mark("manual", "db1", MarkKind::Done, 5))
            .unwrap();
        j.mark(&new_mark("optional", "db1", MarkKind::Skip, 6))
            .unwrap();
        run_step(
            &j,
            &run,
            "broken",
            "db1",
            AttemptKind::Run,
            AttemptState::Failed,
            7,
        );
        run_step(
            &j,
            &run,
            "undone",
            "db1",
            AttemptKind::Run,
            AttemptState::Succeeded,
            9,
        );
        run_step(
            &j,
            &run,
            "undone",
            "db1",
            AttemptKind::Rollback,
            AttemptState::Succeeded,
            11,
        );
        run_step(
            &j,
            &run,
            "last",
            "db1",
            AttemptKind::Reboot,
            AttemptState::Succeeded,
            13,
        );

        let order = j.completion_order().unwrap();
        let got: Vec<(&str, &str, Timestamp)> = order
            .iter()
            .map(|(s, t, at)| (s.as_str(), t.as_str(), *at))
            .collect();
        assert_eq!(
            got,
            vec![
                ("copy", "db2", t(3)),
                ("copy", "db1", t(4)),
                ("manual", "db1", t(5)),
                ("last", "db1", t(14)),
            ]
        );
    }
}
