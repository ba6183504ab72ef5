//! A step still running when business hours (less the margin) begin is not killed: it is
//! reported as an overrun, in the journal and in the customer's report.

use crate::common_cli::runner;

#[test]
fn a_step_that_runs_into_the_margin_is_reported_as_an_overrun() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: Overrun\nwindow:\n  timezone: UTC\n  business_hours:\n    - { days: mon-fri, from: \"07:30\", to: \"18:00\" }\n  margin: 15m\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: slow\n    on: here\n    run: sleep 2; echo done\n    estimate: 0s\n";
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    // Tuesday 07:14:59: the step may start (0s + 15m margin ends 07:29:59), and it ends
    // inside the margin before business hours.
    let r = runner(
        &["apply", "p.yaml"],
        dir.path(),
        &[("RUNNER_NOW", "2026-03-10T07:14:59Z")],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("OVERRUN: slow on here"), "{}", r.stdout);
    let db = rusqlite::Connection::open(dir.path().join(".runner/p.db")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'overrun' AND step_id = 'slow'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    let report = runner(&["report", "p.yaml"], dir.path(), &[]);
    assert!(
        report.stdout.to_lowercase().contains("overrun"),
        "{}",
        report.stdout
    );

    // The same step started a minute earlier has room and is not an overrun.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::write(dir2.path().join("p.yaml"), text).unwrap();
    let r = runner(
        &["apply", "p.yaml"],
        dir2.path(),
        &[("RUNNER_NOW", "2026-03-10T07:13:00Z")],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("OVERRUN"), "{}", r.stdout);
}
