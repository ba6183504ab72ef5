//! `runner plan` and `apply --dry-run`: the schedule across nights in every format, the saved
//! plan, and `apply --plan` refusing a changed playbook.

mod common_cli;

use common_cli::{fixture, runner};
use std::path::Path;

/// Monday 30 November 2026, 17:00 in Chicago: half an hour before business hours end.
const MONDAY_5PM: &str = "2026-11-30T17:00:00-06:00";

fn copy_fixture(dir: &Path) {
    std::fs::copy(fixture("small.yaml"), dir.join("small.yaml")).unwrap();
}

#[test]
fn text_plan_places_steps_after_business_hours_grouped_by_night() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let r = runner(
        &["plan", "small.yaml", "--start", MONDAY_5PM],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    // copy-share (3h + 15m margin) cannot start at 17:00: it starts when business hours end.
    assert!(
        o.contains("Night 1: Mon 30 Nov 18:00 -> Tue 1 Dec 07:15"),
        "{o}"
    );
    assert!(o.contains("18:00-21:00  copy-share"), "{o}");
    // switch (10h) follows at once and ends 07:00, 30 minutes before business hours.
    assert!(o.contains("21:00-07:00  switch"), "{o}");
    assert!(o.contains("run: rsync -a /srv/company/ /mnt/new/"), "{o}");
    assert!(o.contains("check: test -d /mnt/new"), "{o}");
    assert!(o.contains("password { env: SMALL_PW }"), "{o}");
    assert!(o.contains("Finish: Tue 1 Dec 2026 07:00 CST"), "{o}");
    assert!(o.contains("[no-check] `switch` has no check"), "{o}");
    assert!(
        !o.contains("[no-rollback-before-ponr]"),
        "copy-share has a rollback: {o}"
    );
}

#[test]
fn a_long_step_waits_for_the_next_night_and_the_weekend() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("small.yaml"))
        .unwrap()
        .replace("estimate: 10h", "estimate: 20h");
    std::fs::write(dir.path().join("small.yaml"), text).unwrap();
    let r = runner(
        &[
            "plan",
            "small.yaml",
            "--start",
            MONDAY_5PM,
            "--format",
            "json",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["start"], "2026-11-30T18:00:00-06:00");
    assert_eq!(steps[0]["end"], "2026-11-30T21:00:00-06:00");
    // 20h + 15m fits no weeknight (13h30m): Friday 4 December 18:00 is the first start.
    assert_eq!(steps[1]["start"], "2026-12-04T18:00:00-06:00");
    assert_eq!(steps[1]["end"], "2026-12-05T14:00:00-06:00");
    assert_eq!(v["finish"], "2026-12-05T14:00:00-06:00");
    assert_eq!(v["nights"].as_array().unwrap().len(), 2);
    assert_eq!(steps[1]["targets"], serde_json::json!(["web"]));
}

#[test]
fn markdown_is_a_review_document() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let r = runner(
        &[
            "plan",
            "small.yaml",
            "--start",
            MONDAY_5PM,
            "--format",
            "markdown",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    let steps = o.find("## Steps").expect(o);
    let nights = o.find("## Nights").expect(o);
    let warnings = o.find("## Review warnings").expect(o);
    assert!(steps < nights && nights < warnings, "{o}");
    assert!(
        o.contains("| # | Step | Phase | On | Start | End | Check | Rollback | Notes |"),
        "{o}"
    );
    assert!(o.contains("POINT OF NO RETURN"), "{o}");
    assert!(
        o.contains("### Night 1: Mon 30 Nov 18:00 -> Tue 1 Dec 07:15"),
        "{o}"
    );
}

#[test]
fn dry_run_is_the_plan_and_connects_to_nothing() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let plan = runner(
        &["plan", "small.yaml", "--start", MONDAY_5PM],
        dir.path(),
        &[],
    );
    let dry = runner(
        &["apply", "small.yaml", "--dry-run", "--start", MONDAY_5PM],
        dir.path(),
        &[],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(plan.stdout, dry.stdout);
    // Nothing was written: no state folder.
    assert!(!dir.path().join(".runner").exists());
}

#[test]
fn runner_now_replaces_the_clock_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let r = runner(
        &["plan", "small.yaml", "--format", "json"],
        dir.path(),
        &[("RUNNER_NOW", MONDAY_5PM)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("RUNNER_NOW is set"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["steps"][0]["start"], "2026-11-30T18:00:00-06:00");

    let bad = runner(
        &["plan", "small.yaml"],
        dir.path(),
        &[("RUNNER_NOW", "yesterday")],
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("RUNNER_NOW"), "{}", bad.stderr);
}

#[test]
fn a_bad_start_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let r = runner(
        &["plan", "small.yaml", "--start", "monday"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--start"), "{}", r.stderr);
}

#[test]
fn apply_with_a_reviewed_plan_refuses_any_change() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let saved = runner(
        &["plan", "small.yaml", "--out", "reviewed.json"],
        dir.path(),
        &[],
    );
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("reviewed.json")).unwrap())
            .unwrap();
    assert_eq!(v["playbook_sha256"].as_str().unwrap().len(), 64);

    // Unchanged: the dry run against the reviewed plan passes.
    let same = runner(
        &[
            "apply",
            "small.yaml",
            "--plan",
            "reviewed.json",
            "--dry-run",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(same.code, 0, "{}", same.stderr);

    // One character changed in a command: refused with exit 4, nothing written.
    let p = dir.path().join("small.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("rsync -a", "rsync -az");
    std::fs::write(&p, text).unwrap();
    let changed = runner(
        &["apply", "small.yaml", "--plan", "reviewed.json"],
        dir.path(),
        &[],
    );
    assert_eq!(changed.code, 4, "{}", changed.stderr);
    assert!(
        changed.stderr.contains("the playbook file changed"),
        "{}",
        changed.stderr
    );
    assert!(
        changed
            .stderr
            .contains("step `copy-share` on `web` differs"),
        "{}",
        changed.stderr
    );
    assert!(!dir.path().join(".runner").exists());
}

#[test]
fn a_changed_script_file_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("go.sh"), "echo one\n").unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: S\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: go\n    on: here\n    script: go.sh\n",
    )
    .unwrap();
    assert_eq!(
        runner(&["plan", "p.yaml", "--out", "r.json"], dir.path(), &[]).code,
        0
    );
    std::fs::write(dir.path().join("go.sh"), "echo two\n").unwrap();
    let r = runner(&["apply", "p.yaml", "--plan", "r.json"], dir.path(), &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("`go.sh` changed"), "{}", r.stderr);
}

#[test]
fn the_flagship_plan_separates_daytime_checks_from_nights_and_meets_its_deadline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = runner(
        &[
            "plan",
            "playbooks/sbs2000-to-sbs2003.yaml",
            "--start",
            "2026-12-14T13:00:00-06:00",
        ],
        root,
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    let day = o
        .find("In business hours (steps allowed then): Mon 14 Dec 13:00")
        .expect(o);
    let night = o
        .find("Night 1: Mon 14 Dec 18:00 -> Tue 15 Dec 07:15")
        .expect(o);
    assert!(day < night);
    assert!(!o.contains("[deadline-missed]"), "{o}");
}

#[test]
fn a_missed_deadline_is_a_review_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        "name: D\nwindow:\n  timezone: UTC\n  business_hours:\n    - { days: mon-sun, from: \"08:00\", to: \"20:00\" }\ntargets:\n  h:\n    transport: local\nsteps:\n  - id: a\n    on: h\n    run: 'true'\n    estimate: 1h\n  - id: b\n    on: h\n    run: 'true'\n    estimate: 10h\n  - id: c\n    on: h\n    run: 'true'\n    estimate: 10h\n    deadline: { after: a, within: 12h }\n",
    )
    .unwrap();
    let r = runner(
        &["plan", "d.yaml", "--start", "2026-12-01T20:00:00Z"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("[deadline-missed] `c` is scheduled to end"),
        "{}",
        r.stdout
    );
}

/// Three local steps of an hour each; the second fails until `fixed` exists.
fn half_done(dir: &Path) {
    let yaml = format!(
        "name: half\nwindow:\n  timezone: America/Chicago\n  business_hours:\n    - {{ days: mon-fri, from: \"07:15\", to: \"18:00\" }}\n\
         targets:\n  here:\n    transport: local\n\
         steps:\n\
         - id: one\n  on: here\n  run: echo one\n  estimate: 1h\n\
         - id: two\n  on: here\n  run: test -e {}\n  estimate: 1h\n\
         - id: three\n  on: here\n  run: echo three\n  estimate: 1h\n",
        dir.join("fixed").display()
    );
    std::fs::write(dir.join("half.yaml"), yaml).unwrap();
    let r = runner(
        &["apply", "half.yaml"],
        dir,
        &[("RUNNER_NOW", "2026-11-30T19:00:00-06:00")],
    );
    assert_eq!(r.code, 1, "the second step fails: {}{}", r.stdout, r.stderr);
}

#[test]
fn plan_and_dry_run_with_a_half_done_journal_schedule_only_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    half_done(dir.path());
    for args in [
        &["plan", "half.yaml", "--start", "2026-11-30T20:00:00-06:00"][..],
        &[
            "apply",
            "half.yaml",
            "--dry-run",
            "--start",
            "2026-11-30T20:00:00-06:00",
        ][..],
    ] {
        let r = runner(args, dir.path(), &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let o = &r.stdout;
        assert!(o.contains("1 of 3 steps done"), "{o}");
        assert!(o.contains("  done:     one\n"), "{o}");
        assert!(o.contains("  in doubt: none\n"), "{o}");
        assert!(o.contains("  left:     two, three\n"), "{o}");
        assert!(
            o.contains(
                "2 steps left, expected to end 22:00 CST, business hours at Tue 1 Dec 07:15, margin 9h15m"
            ),
            "{o}"
        );
        // The schedule is of what is left: the done step is not scheduled again.
        assert!(o.contains("20:00-21:00  two"), "{o}");
        assert!(o.contains("21:00-22:00  three"), "{o}");
        assert!(!o.contains("  one  "), "{o}");
        assert!(o.contains("(2 steps, 1 night)"), "{o}");
    }
}
