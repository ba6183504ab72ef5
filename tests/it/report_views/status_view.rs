//! `runner status` shows each pair's state, the counts and the next step, a live runner's pair as
//! running, all pending without a journal, the lock holder, pairs the playbook no longer names, and
//! the zone of every time.

use super::*;

fn pair<'a>(v: &'a status::StatusView, step: &str, target: &str) -> &'a status::PairView {
    v.steps
        .iter()
        .find(|s| s.id == step)
        .and_then(|s| s.pairs.iter().find(|p| p.target == target))
        .unwrap()
}

#[test]
fn status_shows_states_counts_and_next_step() {
    let f = fixture();
    let now = t(100_000);
    let v = status::status(&f.pb, Some(&f.journal), now, HOST, None).unwrap();
    assert!(v.applied);

    let stop1 = pair(&v, "stop-shares", "fs1");
    assert_eq!(stop1.status, PairStatus::Succeeded);
    assert_eq!(stop1.attempts, 1);
    assert_eq!(stop1.last_duration_secs, Some(30));
    assert_eq!(stop1.last_end, Some(t(30)));
    assert!(!stop1.definition_changed);

    assert_eq!(
        pair(&v, "stop-shares", "fs2").status,
        PairStatus::RolledBack
    );

    let copy = pair(&v, "copy-data", "fs2");
    assert_eq!(copy.status, PairStatus::Succeeded);
    // Two runs of the step; the check is not counted.
    assert_eq!(copy.attempts, 2);
    assert_eq!(copy.last_duration_secs, Some(600));
    assert_eq!(copy.last_end, Some(t(87_000)));

    let confirm = pair(&v, "confirm", "operator");
    assert_eq!(confirm.status, PairStatus::MarkedDone);
    let mark = confirm.mark.as_ref().unwrap();
    assert_eq!(mark.user, "bob");
    assert_eq!(mark.reason.as_deref(), Some("customer opened Q3.xlsx"));

    let dns = pair(&v, "switch-dns", "fs1");
    assert_eq!(dns.status, PairStatus::InDoubt);
    assert_eq!(dns.running.as_ref().unwrap().host, HOST);

    assert_eq!(pair(&v, "tell-dc", "dc1").status, PairStatus::Pending);

    let count = |s: PairStatus| v.counts[&s];
    assert_eq!(count(PairStatus::Succeeded), 2);
    assert_eq!(count(PairStatus::RolledBack), 1);
    assert_eq!(count(PairStatus::MarkedDone), 1);
    assert_eq!(count(PairStatus::InDoubt), 1);
    assert_eq!(count(PairStatus::Pending), 1);
    assert_eq!(count(PairStatus::Failed), 0);
    assert_eq!(v.counts.values().sum::<usize>(), 6);

    let last = v.last_run.as_ref().unwrap();
    assert_eq!(last.command, "rollback");
    assert_eq!(last.user, "alice");
    assert_eq!(last.outcome.as_deref(), Some("rolled back"));

    // The rolled-back pair makes the first step the next one; no business hours, so now.
    let next = v.next.as_ref().unwrap();
    assert_eq!(next.step, "stop-shares");
    assert_eq!(next.waiting.len(), 1);
    assert_eq!(next.waiting[0].target, "fs2");
    assert_eq!(next.earliest, Some(now));
    assert!(next.now);
    assert!(v.unknown_pairs.is_empty());

    let text = status::render_status_text(&v, &f.pb);
    assert!(text.contains("in doubt"), "{text}");
    assert!(text.contains("marked done"), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert!(text.contains("Next: stop-shares"), "{text}");
    assert!(text.contains("window allows it now"), "{text}");
    // The hint is the real command, ready to paste: the path as given, the real pair.
    assert!(
        text.contains(&format!(
            "runner mark {} switch-dns@fs1 done",
            f.pb.path.display()
        )),
        "{text}"
    );
    // The rest of the schedule, every step with work left, not only the next one.
    let left: Vec<(&str, Vec<String>)> = v
        .schedule
        .iter()
        .map(|s| (s.step.as_str(), s.targets.clone()))
        .collect();
    assert_eq!(
        left,
        [
            ("stop-shares", vec!["fs2".to_string()]),
            ("switch-dns", vec!["fs1".to_string()]),
            ("tell-dc", vec!["dc1".to_string()])
        ]
    );
    assert!(text.contains("Schedule of what is left"), "{text}");
    assert!(text.contains("3 steps left, expected to end"), "{text}");

    let json: serde_json::Value = serde_json::to_value(&v).unwrap();
    assert_eq!(json["counts"]["in_doubt"], 1);
    assert_eq!(json["steps"][3]["pairs"][0]["status"], "in_doubt");
}

#[test]
fn running_pair_of_a_live_runner_is_running_not_in_doubt() {
    let f = fixture();
    let live = attempt(
        &f,
        1,
        ("tell-dc", "dc1"),
        AttemptKind::Run,
        1,
        88_000,
        std::process::id(),
    );
    let v = status::status(&f.pb, Some(&f.journal), t(88_100), HOST, None).unwrap();
    assert_eq!(pair(&v, "tell-dc", "dc1").status, PairStatus::Running);
    // The same attempt seen from another host cannot be vouched for.
    let v = status::status(&f.pb, Some(&f.journal), t(88_100), "jump2", None).unwrap();
    assert_eq!(pair(&v, "tell-dc", "dc1").status, PairStatus::InDoubt);

    f.journal
        .finish_attempt(
            live,
            AttemptState::TimedOut,
            None,
            t(88_200),
            Some("no answer"),
        )
        .unwrap();
    let v = status::status(&f.pb, Some(&f.journal), t(88_300), HOST, None).unwrap();
    let p = pair(&v, "tell-dc", "dc1");
    assert_eq!(p.status, PairStatus::TimedOut);
    assert_eq!(p.message.as_deref(), Some("no answer"));
}

#[test]
fn status_without_journal_is_all_pending() {
    let dir = tempfile::tempdir().unwrap();
    let pb = load_playbook(dir.path());
    let now = t(0);
    let v = status::status(&pb, None, now, HOST, None).unwrap();
    assert!(!v.applied);
    assert!(v.last_run.is_none());
    let pairs: usize = v.steps.iter().map(|s| s.pairs.len()).sum();
    assert_eq!(pairs, 6);
    assert_eq!(v.counts[&PairStatus::Pending], 6);
    assert!(v
        .steps
        .iter()
        .flat_map(|s| &s.pairs)
        .all(|p| p.status == PairStatus::Pending && p.attempts == 0));
    // The manual step's single pair is the operator.
    let confirm = v.steps.iter().find(|s| s.id == "confirm").unwrap();
    assert!(confirm.manual);
    assert_eq!(confirm.pairs[0].target, "operator");
    let next = v.next.as_ref().unwrap();
    assert_eq!(next.step, "stop-shares");
    assert_eq!(next.waiting.len(), 2);
    let text = status::render_status_text(&v, &pb);
    assert!(text.contains("Never applied"), "{text}");
}

#[test]
fn status_reports_the_lock_holder() {
    let f = fixture();
    let holder = |pid: u32, host: &str| Holder {
        pid,
        host: host.into(),
        user: "alice".into(),
        since: t(86_400),
        command: "apply".into(),
    };
    let state = |h: &Holder| {
        status::status(&f.pb, Some(&f.journal), t(100_000), HOST, Some(h))
            .unwrap()
            .lock
            .unwrap()
            .state
    };
    assert_eq!(state(&holder(std::process::id(), HOST)), LockState::Held);
    assert_eq!(state(&holder(dead_pid(), HOST)), LockState::Stale);
    assert_eq!(
        state(&holder(std::process::id(), "jump2")),
        LockState::OtherHost
    );
}

#[test]
fn status_lists_journal_pairs_the_playbook_no_longer_names() {
    let f = fixture();
    finished(
        &f,
        1,
        ("copy-data", "fs9"),
        AttemptKind::Run,
        1,
        (87_100, 87_200),
        (AttemptState::Succeeded, Some(0), None),
    );
    let v = status::status(&f.pb, Some(&f.journal), t(100_000), HOST, None).unwrap();
    assert_eq!(v.unknown_pairs.len(), 1);
    assert_eq!(v.unknown_pairs[0].target, "fs9");
    assert_eq!(v.unknown_pairs[0].status, PairStatus::Succeeded);
    let text = status::render_status_text(&v, &f.pb);
    assert!(text.contains("copy-data @ fs9"), "{text}");
}

#[test]
fn status_names_the_zone_of_every_time_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: Rehearsal\nwindow:\n  timezone: America/Chicago\n  business_hours:\n    - { days: mon-fri, from: \"08:00\", to: \"18:00\" }\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: one\n    on: here\n    run: echo one\n";
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    let now = [("RUNNER_NOW", "2026-03-10T23:30:00Z")];
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = common_cli::runner(&["status", "p.yaml"], dir.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for label in [
        "Now: Tue 10 Mar 18:30 CDT",
        "started Tue 10 Mar 18:30 CDT",
        "ended Tue 10 Mar 18:30 CDT",
    ] {
        assert!(r.stdout.contains(label), "{label}:\n{}", r.stdout);
    }
}
