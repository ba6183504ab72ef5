//! Estimates that learn: `runner plan` takes the durations measured in real journals (this
//! cutover's own, or others' with `--history`), says where each estimate comes from, warns
//! where guess and history disagree by more than 2x and how likely each night fits;
//! `runner report` shows estimate against actual. The journals come from real runs over the
//! local transport; no assertion depends on how long a command took.

use crate::common_cli::runner;
use std::path::Path;

const NOW: &str = "2026-12-01T20:00:00Z";

fn playbook(name: &str) -> String {
    format!(
        r#"name: {name}
window:
  timezone: UTC
  business_hours:
    - days: mon-fri
      from: "07:30"
      to: "18:00"
  margin: 15m
targets:
  box: {{ transport: local }}
steps:
  - id: copy
    on: box
    run: "true"
    estimate: 10m
    idempotent: true
  - id: guessed
    on: box
    run: test -f never-there
    estimate: 5m
"#
    )
}

fn run(dir: &Path, args: &[&str]) -> crate::common_cli::Run {
    runner(args, dir, &[("RUNNER_NOW", NOW)])
}

/// Applies `file` once: `copy` succeeds, `guessed` fails (exit 1).
fn apply_once(dir: &Path, file: &str) {
    let r = run(dir, &["apply", file]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
}

#[test]
fn plan_reads_its_own_journal_and_says_where_each_estimate_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), playbook("A")).unwrap();
    let before = run(dir.path(), &["plan", "a.yaml", "--start", NOW]);
    assert_eq!(before.code, 0, "{}", before.stderr);
    assert!(before.stdout.contains("[est 10m"), "{}", before.stdout);
    assert!(!before.stdout.contains("measured"), "{}", before.stdout);

    apply_once(dir.path(), "a.yaml");
    let r = run(dir.path(), &["mark", "a.yaml", "copy", "retry"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    apply_once(dir.path(), "a.yaml");
    // With a journal the plan schedules only what is left: run `copy` again tomorrow.
    let r = run(dir.path(), &["mark", "a.yaml", "copy", "retry"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    let r = run(dir.path(), &["plan", "a.yaml", "--start", NOW]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    assert!(o.contains("(median of 2 measured runs, "), "{o}");
    assert!(o.contains("; playbook 10m)"), "{o}");
    assert!(
        o.contains("[est 5m"),
        "the step never measured keeps its guess: {o}"
    );
    assert!(
        o.contains("[estimate-vs-history] `copy` is estimated at 10m but took"),
        "{o}"
    );
    assert!(
        o.contains("history: 100% likely to end by Wed 2 Dec 07:15"),
        "{o}"
    );
    assert!(o.contains("1 of 2 steps measured"), "{o}");

    let j = run(
        dir.path(),
        &["plan", "a.yaml", "--start", NOW, "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["steps"][0]["measured"]["runs"], 2);
    assert_eq!(v["steps"][0]["measured"]["playbook_secs"], 600);
    assert!(v["steps"][1].get("measured").is_none());
    assert_eq!(v["nights"][0]["fit"]["percent"], 100);

    let r = run(
        dir.path(),
        &["plan", "a.yaml", "--start", NOW, "--no-history"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("measured"), "{}", r.stdout);
}

#[test]
fn plan_learns_from_another_customers_journal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), playbook("A")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), playbook("B")).unwrap();
    apply_once(dir.path(), "a.yaml");
    let r = run(
        dir.path(),
        &[
            "plan",
            "b.yaml",
            "--start",
            NOW,
            "--history",
            ".runner/a.db",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("(median of 1 measured run, "),
        "{}",
        r.stdout
    );
    assert!(
        !dir.path().join(".runner/b.db").exists(),
        "planning wrote nothing"
    );

    let r = run(
        dir.path(),
        &["plan", "b.yaml", "--history", ".runner/missing.db"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the history journal .runner/missing.db does not exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn report_shows_estimate_against_actual_for_every_step() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), playbook("A")).unwrap();
    apply_once(dir.path(), "a.yaml");
    let r = run(dir.path(), &["report", "a.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    let at = o.find("## Estimates against actual").expect(o);
    let table = &o[at..];
    assert!(
        table.contains("| Estimate | Actual | Actual / estimate |"),
        "{table}"
    );
    assert!(table.contains("| 10m |"), "{table}");
    assert!(table.contains("| 5m | not done |"), "{table}");

    let j = run(dir.path(), &["report", "a.yaml", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["steps"][0]["estimate_secs"], 600);
    assert!(v["steps"][0]["actual_secs"].is_i64(), "{}", j.stdout);
    assert!(v["steps"][1]["actual_secs"].is_null(), "{}", j.stdout);
}
