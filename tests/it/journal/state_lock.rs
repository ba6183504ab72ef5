//! The state lock is exclusive, released on drop, names its holder when refused and is freed when
//! its process is killed with SIGKILL, which leaves a running attempt in doubt.

use super::*;

#[test]
fn lock_is_exclusive_and_released_on_drop() {
    for s in stores() {
        let state = s.path.clone();
        let guard = acquire(&state, &holder("apply")).unwrap();
        if s.is_pg() {
            assert!(guard.lease().is_some());
        } else {
            assert_eq!(guard.path(), journal::lock_path(&state));
        }
        assert_eq!(journal::read_holder_of(&state), Some(holder("apply")));

        // A second open file description conflicts even inside one process.
        match acquire(&state, &holder("rollback")) {
            Err(LockError::Held {
                holder: Some(h), ..
            }) => {
                assert_eq!(h, holder("apply"));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(guard);
        assert_eq!(journal::read_holder_of(&state), None);
        let again = acquire(&state, &holder("rollback")).unwrap();
        assert_eq!(again.holder().command, "rollback");
        drop(again);
        if !s.is_pg() {
            // The lock file stays (see lock.rs on why it is never deleted).
            assert!(journal::lock_path(&state).exists());
        }
    }
}

// No store: the message of a refusal.
#[test]
fn held_error_names_the_holder() {
    let h = Holder {
        pid: 4242,
        host: "jump1".into(),
        user: "alice".into(),
        since: t(900),
        command: "apply".into(),
    };
    let err = LockError::Held {
        path: PathBuf::from("cutover.db.lock"),
        holder: Some(h),
    };
    let text = err.to_string();
    assert!(text.contains("pid 4242 on host jump1"), "{text}");
    assert!(text.contains("2026-11-30T23:15:00Z"), "{text}");
    assert!(text.contains("runner apply"), "{text}");
}

/// Starts a copy of this test binary that runs `child_helper` with `action`, and waits until it
/// reports that it has done its part.
fn spawn_child(action: &str, path: &Path) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "journal::child_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{action}:{}", path.display()))
        // A lease the child leaves behind when killed runs out soon.
        .env("RUNNER_PG_LEASE_MS", "500")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "child exited before it was ready");
        if line.contains(READY) {
            break;
        }
    }
    (child, out)
}

fn kill_and_reap(mut child: Child) -> u32 {
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL: no destructors, no cleanup.
    let status = child.wait().unwrap();
    assert!(!status.success());
    pid
}

#[test]
fn lock_held_by_another_process_is_freed_by_kill_9() {
    for s in stores() {
        let state = s.path.clone();
        let (child, _out) = spawn_child("lock", &state);
        let child_pid = child.id();

        match acquire(&state, &holder("apply")) {
            Err(LockError::Held {
                holder: Some(h), ..
            }) => {
                assert_eq!(h.pid, child_pid);
                assert_eq!(h.command, "apply");
            }
            other => panic!("expected Held by the child, got {other:?}"),
        }
        assert!(process_alive(child_pid));

        let pid = kill_and_reap(child);
        assert!(!process_alive(pid));
        let guard = if s.is_pg() {
            // Nobody released the lease: it is free once it has run out.
            let mut guard = None;
            common::wait_until("the dead holder's lease to run out", || {
                match acquire(&state, &holder("apply")) {
                    Ok(g) => guard = Some(g),
                    Err(LockError::Held { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                guard.is_some()
            });
            guard.unwrap()
        } else {
            // The kernel dropped the flock with its process.
            acquire(&state, &holder("apply")).unwrap()
        };
        assert_eq!(guard.holder().pid, std::process::id());
    }
}

#[test]
fn running_attempt_survives_kill_9_and_is_in_doubt() {
    for s in stores() {
        let path = s.path.clone();
        let (child, _out) = spawn_child("attempt", &path);
        let pid = kill_and_reap(child);

        let j = Journal::open_existing(&path).unwrap().unwrap();
        match j.pair("copy-db", "db1").unwrap() {
            PairState::Running {
                pid: recorded,
                kind,
                ..
            } => {
                assert_eq!(recorded, pid);
                assert_eq!(kind, AttemptKind::Run);
                assert!(!process_alive(recorded), "the runner is gone");
                let state = j.pair("copy-db", "db1").unwrap();
                assert!(state.is_in_doubt(&journal::host_name().unwrap()));
            }
            other => panic!("expected Running, got {other:?}"),
        }
        let runs = j.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].ended_at, None);
    }
}
