//! The window gate is asked by every pair start (step x target), not once per step: a target
//! that starts late in a fan-out (`--max-parallel` smaller than the number of targets) may not
//! run into business hours because its siblings went first.
//!
//! These tests use a simulated clock (`RUNNER_NOW`), which advances in real time from the
//! given instant. They are built so that the outcome does not depend on how fast the machine
//! is: each target's command sleeps longer than the room left before business hours, so any
//! target that starts after another one has finished cannot fit, whatever the timing. The first
//! target only needs to start within a few seconds of the process starting.

use crate::common_cli::runner;
use std::path::Path;

/// Business hours start at 08:00 UTC on Tuesday 10 March 2026. A step estimated at one hour
/// and started at 06:59:55 has five seconds of room; each target's command takes six.
const START: &str = "2026-03-10T06:59:55Z";

fn playbook(dir: &Path) -> String {
    let ledger = dir.join("ledger.txt");
    format!(
        r#"name: Fan-out against the window
window:
  timezone: UTC
  business_hours:
    - {{ days: mon-fri, from: "08:00", to: "18:00" }}
targets:
  a: {{ transport: local }}
  b: {{ transport: local }}
  c: {{ transport: local }}
steps:
  - id: migrate
    on: [a, b, c]
    run: echo {{{{ target.name }}}} >> {ledger}; sleep 6
    estimate: 1h
"#,
        ledger = ledger.display()
    )
}

fn ledger(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ledger.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn stopped_events(dir: &Path) -> i64 {
    let db = rusqlite::Connection::open(dir.join(".runner/p.db")).unwrap();
    db.query_row(
        "SELECT count(*) FROM events WHERE kind = 'stopped' AND step_id = 'migrate'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_late_target_of_a_one_at_a_time_step_is_not_started_into_business_hours() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), playbook(dir.path())).unwrap();
    let r = runner(
        &["apply", "p.yaml", "--max-parallel", "1"],
        dir.path(),
        &[("RUNNER_NOW", START)],
    );
    // `a` started with room to spare; `b` and `c` could only start after `a`'s six seconds,
    // when one hour of work would reach 08:00.
    assert_eq!(ledger(dir.path()), vec!["a"], "{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("stopped before `migrate`")
            && r.stderr.contains("It may start Tue 10 Mar 2026 18:00"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("OVERRUN"), "{}", r.stdout);
    assert!(stopped_events(dir.path()) >= 1);

    // The next night the two targets that did not start run; `a` is not run again.
    let r = runner(
        &["apply", "p.yaml", "--max-parallel", "1"],
        dir.path(),
        &[("RUNNER_NOW", "2026-03-10T18:00:00Z")],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(ledger(dir.path()), vec!["a", "b", "c"]);
}

#[test]
fn targets_beyond_max_parallel_pass_the_gate_when_they_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), playbook(dir.path())).unwrap();
    let r = runner(
        &["apply", "p.yaml", "--max-parallel", "2"],
        dir.path(),
        &[("RUNNER_NOW", START)],
    );
    // `a` and `b` start together at once; `c` waits for a free slot, six seconds later.
    let mut ran = ledger(dir.path());
    ran.sort();
    assert_eq!(ran, vec!["a", "b"], "{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("It may start Tue 10 Mar 2026 18:00"),
        "{}",
        r.stderr
    );
}
