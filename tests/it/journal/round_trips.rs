//! What is written is read back as written: runs, definitions, attempts, marks and events, with
//! misuse of an attempt refused, `mark all` atomic, and a success or mark recording the identity of
//! its target.

use super::*;

#[test]
fn runs_round_trip() {
    for s in stores() {
        let j = s.open();
        let nr = new_run(RunCommand::Apply, 0);
        let id = j.begin_run(&nr).unwrap();
        assert_eq!(id.as_str(), "20261130T230000Z-4242");
        // Same second, same pid: a distinct id, not an error.
        let id2 = j.begin_run(&new_run(RunCommand::Rollback, 0)).unwrap();
        assert_eq!(id2.as_str(), "20261130T230000Z-4242-2");

        j.end_run(&id, "completed", t(3600)).unwrap();
        let runs = j.runs().unwrap();
        assert_eq!(runs.len(), 2);
        let r = &runs[0];
        assert_eq!(r.id, id);
        assert_eq!(r.command, RunCommand::Apply);
        assert_eq!(r.playbook_path, "plays/cutover.yaml");
        assert_eq!(r.playbook_sha256, nr.playbook_sha256);
        assert_eq!(r.started_at, t(0));
        assert_eq!(r.ended_at, Some(t(3600)));
        assert_eq!(r.outcome.as_deref(), Some("completed"));
        assert_eq!(r.user, "alice");
        assert_eq!(r.host, "jump1");
        assert_eq!(r.pid, 4242);
        assert_eq!(r.runner_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(r.args, nr.args);
        assert_eq!(runs[1].command, RunCommand::Rollback);
        assert_eq!(runs[1].ended_at, None);
        assert_eq!(runs[1].outcome, None);

        let unknown = RunId("nope".into());
        assert!(matches!(
            j.end_run(&unknown, "x", t(1)),
            Err(JournalError::UnknownRun(ref r)) if r == "nope"
        ));
    }
}

#[test]
fn definitions_round_trip_and_replace() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let defs = vec![
            ("stop-app".to_string(), "h1".to_string()),
            ("copy-db".to_string(), "h2".to_string()),
        ];
        j.record_definitions(&run, &defs).unwrap();
        j.record_definitions(&run, &[("copy-db".into(), "h3".into())])
            .unwrap();
        assert_eq!(
            j.definitions(&run).unwrap(),
            vec![
                ("copy-db".to_string(), "h3".to_string()),
                ("stop-app".to_string(), "h1".to_string()),
            ]
        );
        assert!(matches!(
            j.record_definitions(&RunId("nope".into()), &defs),
            Err(JournalError::UnknownRun(_))
        ));
    }
}

#[test]
fn attempts_round_trip() {
    for s in stores() {
        let j = s.open();
        let run1 = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let run2 = j.begin_run(&new_run(RunCommand::Apply, 10)).unwrap();

        let mut na = new_attempt(&run1, "copy-db", "db1", AttemptKind::Run, 5);
        na.number = 2;
        let a1 = j.begin_attempt(&na).unwrap();
        // Intent is visible before any outcome.
        let running = j.attempts(None).unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].state, AttemptState::Running);
        assert_eq!(running[0].ended_at, None);
        assert_eq!(running[0].finish_seq, None);

        j.finish_attempt(a1, AttemptState::Failed, Some(3), t(6), Some("disk full"))
            .unwrap();
        let kinds = [
            AttemptKind::Check,
            AttemptKind::Rollback,
            AttemptKind::Reboot,
            AttemptKind::Upload,
            AttemptKind::Other("snapshot".into()),
        ];
        for kind in &kinds {
            j.begin_attempt(&new_attempt(&run2, "copy-db", "db1", kind.clone(), 11))
                .unwrap();
        }

        let all = j.attempts(None).unwrap();
        assert_eq!(all.len(), 6);
        let a = &all[0];
        assert_eq!(a.id, a1);
        assert_eq!(a.run, run1);
        assert_eq!(a.step_id, "copy-db");
        assert_eq!(a.target, "db1");
        assert_eq!(a.kind, AttemptKind::Run);
        assert_eq!(a.number, 2);
        assert_eq!(a.state, AttemptState::Failed);
        assert_eq!(a.exit_code, Some(3));
        assert_eq!(a.started_at, t(5));
        assert_eq!(a.ended_at, Some(t(6)));
        assert_eq!(a.pid, 4242);
        assert_eq!(a.host, "jump1");
        assert_eq!(a.message.as_deref(), Some("disk full"));
        assert_eq!(a.def_hash, "def-copy-db");
        assert!(a.finish_seq.is_some_and(|s| s > a1.0));
        let got: Vec<AttemptKind> = all[1..].iter().map(|a| a.kind.clone()).collect();
        assert_eq!(got, kinds);
        // Ids grow in start order.
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));

        let only2 = j.attempts(Some(&run2)).unwrap();
        assert_eq!(only2.len(), 5);
        assert!(only2.iter().all(|a| a.run == run2));
    }
}

#[test]
fn finish_attempt_refuses_misuse() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let id = j
            .begin_attempt(&new_attempt(&run, "s", "t", AttemptKind::Run, 1))
            .unwrap();

        assert!(matches!(
            j.finish_attempt(id, AttemptState::Running, None, t(2), None),
            Err(JournalError::FinishAsRunning(i)) if i == id
        ));
        j.finish_attempt(id, AttemptState::Succeeded, Some(0), t(2), None)
            .unwrap();
        let again = j.finish_attempt(id, AttemptState::Failed, Some(1), t(3), None);
        assert!(matches!(
            again,
            Err(JournalError::AttemptNotRunning { id: i, state: AttemptState::Succeeded }) if i == id
        ));
        // The refused second outcome changed nothing.
        assert_eq!(j.attempts(None).unwrap()[0].state, AttemptState::Succeeded);

        assert!(matches!(
            j.finish_attempt(AttemptId(999), AttemptState::Failed, None, t(3), None),
            Err(JournalError::UnknownAttempt(AttemptId(999)))
        ));
        let bad = new_attempt(&RunId("nope".into()), "s", "t", AttemptKind::Run, 1);
        assert!(matches!(
            j.begin_attempt(&bad),
            Err(JournalError::UnknownRun(_))
        ));
    }
}

#[test]
fn marks_round_trip() {
    for s in stores() {
        let j = s.open();
        let run = j.begin_run(&new_run(RunCommand::Mark, 0)).unwrap();
        let mut m1 = new_mark("copy-db", "db1", MarkKind::Done, 1);
        m1.run = Some(run.clone());
        j.mark(&m1).unwrap();
        let mut m2 = new_mark("copy-db", "db2", MarkKind::Skip, 2);
        m2.reason = None;
        let m3 = new_mark("copy-db", "db3", MarkKind::Retry, 2);
        j.mark_all(&[m2.clone(), m3]).unwrap();

        let marks = j.marks().unwrap();
        assert_eq!(marks.len(), 3);
        let m = &marks[0];
        assert_eq!(m.run.as_ref(), Some(&run));
        assert_eq!(m.step_id, "copy-db");
        assert_eq!(m.target, "db1");
        assert_eq!(m.mark, MarkKind::Done);
        assert_eq!(m.def_hash, "mark-def-copy-db");
        assert_eq!(m.user, "bob");
        assert_eq!(m.host, "jump2");
        assert_eq!(m.at, t(1));
        assert_eq!(m.reason.as_deref(), Some("checked by hand"));
        assert_eq!(marks[1].mark, MarkKind::Skip);
        assert_eq!(marks[1].reason, None);
        assert_eq!(marks[1].run, None);
        assert_eq!(marks[2].mark, MarkKind::Retry);
    }
}

#[test]
fn mark_all_is_atomic() {
    for s in stores() {
        let j = s.open();
        let good = new_mark("s", "a", MarkKind::Done, 1);
        let mut bad = new_mark("s", "b", MarkKind::Done, 1);
        bad.run = Some(RunId("missing".into()));
        assert!(matches!(
            j.mark_all(&[good, bad]),
            Err(JournalError::UnknownRun(_))
        ));
        assert!(j.marks().unwrap().is_empty());
        assert_eq!(j.pair("s", "a").unwrap(), PairState::Pending);
    }
}

#[test]
fn events_round_trip() {
    for s in stores() {
        let j = s.open();
        let run1 = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        let run2 = j.begin_run(&new_run(RunCommand::Apply, 100)).unwrap();
        let e1 = NewEvent {
            run: run1.clone(),
            at: t(5),
            step_id: Some("copy-db".into()),
            kind: EventKind::Override,
            detail: "override by alice: customer approved".into(),
        };
        let e2 = NewEvent {
            run: run2.clone(),
            at: t(105),
            step_id: None,
            kind: EventKind::Stopped,
            detail: "window closes at 06:00".into(),
        };
        j.record_event(&e1).unwrap();
        j.record_event(&e2).unwrap();
        for kind in [EventKind::Waited, EventKind::Overrun] {
            j.record_event(&NewEvent { kind, ..e2.clone() }).unwrap();
        }

        let all = j.events(None).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].run, run1);
        assert_eq!(all[0].at, t(5));
        assert_eq!(all[0].step_id.as_deref(), Some("copy-db"));
        assert_eq!(all[0].kind, EventKind::Override);
        assert_eq!(all[0].detail, e1.detail);
        assert_eq!(all[1].step_id, None);
        let kinds: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Override,
                EventKind::Stopped,
                EventKind::Waited,
                EventKind::Overrun
            ]
        );
        let only1 = j.events(Some(&run1)).unwrap();
        assert_eq!(only1.len(), 1);
        assert!(matches!(
            j.record_event(&NewEvent {
                run: RunId("nope".into()),
                ..e1
            }),
            Err(JournalError::UnknownRun(_))
        ));
    }
}

#[test]
fn a_success_and_a_mark_record_the_identity_of_their_target() {
    for s in stores() {
        let mut j = s.open();
        j.bind_targets(
            [("db1".to_string(), "ssh://root@10.0.0.1:22".to_string())]
                .into_iter()
                .collect(),
        );
        let run = j.begin_run(&new_run(RunCommand::Apply, 0)).unwrap();
        run_step(
            &j,
            &run,
            "copy-db",
            "db1",
            AttemptKind::Run,
            AttemptState::Succeeded,
            1,
        );
        let identity = |st: PairState| match st {
            PairState::Succeeded {
                target_identity, ..
            } => target_identity,
            other => panic!("expected a success, got {other:?}"),
        };
        assert_eq!(
            identity(j.pair("copy-db", "db1").unwrap()).as_deref(),
            Some("ssh://root@10.0.0.1:22")
        );
        // A target the run did not bind is recorded as unknown, not as something else.
        j.mark(&new_mark("copy-db", "db2", MarkKind::Done, 2))
            .unwrap();
        assert_eq!(identity(j.pair("copy-db", "db2").unwrap()), None);

        assert!(j.journal_id().unwrap().is_some_and(|id| id.len() == 32));
        assert_eq!(j.playbook().unwrap(), None);
        j.set_playbook("Acme cutover").unwrap();
        drop(j);
        let j = s.open();
        assert_eq!(j.playbook().unwrap().as_deref(), Some("Acme cutover"));
    }
}
