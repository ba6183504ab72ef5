//! `runner plan` and `apply --dry-run`: the schedule across nights in every format, the saved
//! plan, and `apply --plan` refusing a changed playbook.

use crate::common::run::Run;
use crate::common_cli::fixture;
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
    Run::at(dir.path())
        .args(["plan", "small.yaml", "--start", MONDAY_5PM])
        .expect_exit(0)
        // copy-share (3h + 15m margin) cannot start at 17:00: it starts when business hours end.
        .expect_stdout_contains("Night 1: Mon 30 Nov 18:00 -> Tue 1 Dec 07:15")
        .expect_stdout_contains("18:00-21:00  copy-share")
        // switch (10h) follows at once and ends 07:00, 30 minutes before business hours.
        .expect_stdout_contains("21:00-07:00  switch")
        .expect_stdout_contains("run: rsync -a /srv/company/ /mnt/new/")
        .expect_stdout_contains("check: test -d /mnt/new")
        .expect_stdout_contains("password { env: SMALL_PW }")
        .expect_stdout_contains("Finish: Tue 1 Dec 2026 07:00 CST")
        .expect_stdout_contains("[no-check] `switch` has no check")
        // `copy-share` has a rollback.
        .expect_stdout_lacks("[no-rollback-before-ponr]")
        .run();
}

#[test]
fn a_long_step_waits_for_the_next_night_and_the_weekend() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("small.yaml"))
        .unwrap()
        .replace("estimate: 10h", "estimate: 20h");
    std::fs::write(dir.path().join("small.yaml"), text).unwrap();
    let r = Run::at(dir.path())
        .args([
            "plan",
            "small.yaml",
            "--start",
            MONDAY_5PM,
            "--format",
            "json",
        ])
        .expect_exit(0)
        .run();
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
    let r = Run::at(dir.path())
        .args([
            "plan",
            "small.yaml",
            "--start",
            MONDAY_5PM,
            "--format",
            "markdown",
        ])
        .expect_exit(0)
        .run();
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
    let plan = Run::at(dir.path())
        .args(["plan", "small.yaml", "--start", MONDAY_5PM])
        .expect_exit(0)
        .run();
    let dry = Run::at(dir.path())
        .args(["apply", "small.yaml", "--dry-run", "--start", MONDAY_5PM])
        .expect_exit(0)
        .run();
    assert_eq!(plan.stdout, dry.stdout);
    // Nothing was written: no state folder.
    assert!(!dir.path().join(".runner").exists());
}

#[test]
fn runner_now_replaces_the_clock_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let r = Run::at(dir.path())
        .args(["plan", "small.yaml", "--format", "json"])
        .env("RUNNER_NOW", MONDAY_5PM)
        .expect_exit(0)
        .expect_stderr_contains(format!("RUNNER_NOW={MONDAY_5PM} is set"))
        .run();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["steps"][0]["start"], "2026-11-30T18:00:00-06:00");

    Run::at(dir.path())
        .args(["plan", "small.yaml"])
        .env("RUNNER_NOW", "yesterday")
        .expect_exit(2)
        .expect_stderr_contains("RUNNER_NOW")
        .run();
}

#[test]
fn a_bad_start_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    Run::at(dir.path())
        .args(["plan", "small.yaml", "--start", "monday"])
        .expect_exit(2)
        .expect_stderr_contains("--start")
        .run();
}

#[test]
fn apply_with_a_reviewed_plan_refuses_any_change() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    Run::at(dir.path())
        .args(["plan", "small.yaml", "--out", "reviewed.json"])
        .expect_exit(0)
        .run();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("reviewed.json")).unwrap())
            .unwrap();
    assert_eq!(v["playbook_sha256"].as_str().unwrap().len(), 64);

    // Unchanged: the dry run against the reviewed plan passes.
    Run::at(dir.path())
        .args([
            "apply",
            "small.yaml",
            "--plan",
            "reviewed.json",
            "--dry-run",
        ])
        .expect_exit(0)
        .run();

    // One character changed in a command: refused with exit 4, nothing written.
    let p = dir.path().join("small.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("rsync -a", "rsync -az");
    std::fs::write(&p, text).unwrap();
    let changed = Run::at(dir.path())
        .args(["apply", "small.yaml", "--plan", "reviewed.json"])
        .expect_exit(4)
        .run();
    assert!(
        changed.stderr.contains(
            "step `copy-share` on `web`: its command changed (reviewed: `rsync -a /srv/company/ /mnt/new/`; now: `rsync -az /srv/company/ /mnt/new/`)"
        ),
        "{}",
        changed.stderr
    );
    assert!(
        !changed.stderr.contains("the playbook file changed"),
        "{}",
        changed.stderr
    );
    assert!(!dir.path().join(".runner").exists());
}

const REVIEWED: &str = "name: R
# reviewed on Monday
window:
  business_hours: []
targets:
  here:
    transport: local
steps:
  - id: prepare
    on: here
    run: echo prepared >> ledger
  - id: go
    on: here
    script: go.sh
    rollback: echo undo >> ledger
";

fn reviewed_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("go.sh"), "echo go >> ledger\n").unwrap();
    std::fs::write(dir.path().join("p.yaml"), REVIEWED).unwrap();
    Run::at(dir.path())
        .args(["plan", "p.yaml", "--out", "r.json"])
        .expect_exit(0)
        .run();
    dir
}

#[test]
fn a_reviewed_plan_still_applies_after_a_comment_changes() {
    let dir = reviewed_dir();
    let edited = REVIEWED
        .replace(
            "# reviewed on Monday",
            "# reviewed on Monday, signed Tuesday",
        )
        .replace(
            "    run: echo prepared >> ledger",
            "    # the first step\n    run: 'echo prepared >> ledger'",
        );
    std::fs::write(dir.path().join("p.yaml"), edited).unwrap();
    Run::at(dir.path())
        .args(["apply", "p.yaml", "--plan", "r.json"])
        .expect_exit(0)
        .run();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ledger")).unwrap(),
        "prepared\ngo\n"
    );
}

#[test]
fn a_reviewed_plan_refuses_a_changed_step_and_names_it() {
    let dir = reviewed_dir();
    let edited = REVIEWED
        .replace("echo prepared >> ledger", "echo prepared twice >> ledger")
        .replace("echo undo", "echo UNDO");
    std::fs::write(dir.path().join("p.yaml"), edited).unwrap();
    Run::at(dir.path()).args(["apply", "p.yaml", "--plan", "r.json"])
        .expect_exit(4)
        .expect_stderr_contains("step `prepare` on `here`: its command changed (reviewed: `echo prepared >> ledger`; now: `echo prepared twice >> ledger`)")
        .expect_stderr_contains("step `go` on `here`: its rollback changed")
        .run();
    assert!(!dir.path().join("ledger").exists(), "nothing ran");
}

#[test]
fn a_reviewed_plan_names_added_removed_steps_targets_and_the_window() {
    let dir = reviewed_dir();
    let edited = REVIEWED
        .replace("business_hours: []", "timezone: Europe/Paris\n  business_hours:\n    - days: mon-fri\n      from: \"08:00\"\n      to: \"18:00\"")
        .replace("  - id: prepare\n", "  - id: warm-up\n")
        .replace("    transport: local\n", "    transport: local\n  there:\n    transport: local\n");
    std::fs::write(dir.path().join("p.yaml"), edited).unwrap();
    let r = Run::at(dir.path())
        .args(["apply", "p.yaml", "--plan", "r.json"])
        .expect_exit(4)
        .run();
    for want in [
        "step `prepare` was removed since the review",
        "step `warm-up` was added since the review",
        "target `there` (local) was not in the reviewed plan",
        "the window changed (reviewed: no business hours; now: time zone Europe/Paris",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
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
    Run::at(dir.path())
        .args(["plan", "p.yaml", "--out", "r.json"])
        .expect_exit(0)
        .run();
    std::fs::write(dir.path().join("go.sh"), "echo two\n").unwrap();
    Run::at(dir.path())
        .args(["apply", "p.yaml", "--plan", "r.json"])
        .expect_exit(4)
        .expect_stderr_contains("`go.sh` changed")
        .run();
}

#[test]
fn the_flagship_plan_separates_daytime_checks_from_nights_and_meets_its_deadline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = Run::at(root)
        .args([
            "plan",
            "playbooks/customers/acme.yaml",
            "--start",
            "2026-12-14T13:00:00-06:00",
        ])
        .expect_exit(0)
        .run();
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

/// The flagship reaches Windows 2000 only through paths that exist (no step runs on old-sbs,
/// which has no WinRM), follows KB 884453's order, keeps Exchange 2000 until every Outlook
/// profile has moved, is scheduled within the 7-day grace period, and keeps its review short
/// enough that a reviewer reads every warning.
#[test]
fn the_flagship_runs_nothing_on_windows_2000_follows_kb884453_and_keeps_its_review_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = |format: &'static str| {
        [
            "plan",
            "playbooks/customers/acme.yaml",
            "--format",
            format,
            "--start",
            "2026-12-14T13:00:00-06:00",
        ]
    };
    let r = Run::at(root).args(args("json")).expect_exit(0).run();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    for s in steps {
        let targets = s["targets"].as_array().unwrap();
        assert!(
            !targets.iter().any(|t| t == "old-sbs"),
            "{} runs on old-sbs",
            s["id"]
        );
    }
    let pos = |id: &str| {
        steps
            .iter()
            .position(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("the flagship has no step {id}"))
    };
    for (before, after) in [
        ("schema-fix-kb314649", "adprep-forestprep"),
        ("adprep-domainprep", "promote-new"),
        ("promote-new", "transfer-fsmo"),
        ("transfer-fsmo", "sbs-setup-new"),
        ("sbs-setup-new", "remote-management-new"),
        ("connect-internet-wizard", "dhcp-stop-old"),
        ("raise-store-limit-new", "move-mailboxes-batch-1"),
        ("outlook-profiles-redirected", "remove-exchange-2000"),
        ("demote-old", "dhcp-dns-new-only"),
    ] {
        assert!(
            pos(before) < pos(after),
            "{before} must come before {after}"
        );
    }
    assert!(
        !steps.iter().any(|s| s["id"] == "exchange-forestprep"),
        "SBS Setup runs Exchange ForestPrep itself"
    );
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.len() <= 5, "{warnings:#?}");
    assert!(!warnings.iter().any(|w| w["code"] == "deadline-missed"));

    Run::at(root)
        .args(args("text"))
        .expect_exit(0)
        .expect_stdout_contains("deadline 7d after transfer-fsmo")
        .expect_stdout_lacks("deadline 21d")
        .run();
}

#[test]
fn a_missed_deadline_is_a_review_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        "name: D\nwindow:\n  timezone: UTC\n  business_hours:\n    - { days: mon-sun, from: \"08:00\", to: \"20:00\" }\ntargets:\n  h:\n    transport: local\nsteps:\n  - id: a\n    on: h\n    run: 'true'\n    estimate: 1h\n  - id: b\n    on: h\n    run: 'true'\n    estimate: 10h\n  - id: c\n    on: h\n    run: 'true'\n    estimate: 10h\n    deadline: { after: a, within: 12h }\n",
    )
    .unwrap();
    Run::at(dir.path())
        .args(["plan", "d.yaml", "--start", "2026-12-01T20:00:00Z"])
        .expect_exit(0)
        .expect_stdout_contains("[deadline-missed] `c` is scheduled to end")
        .run();
}

/// A review fixture of our own: business hours and holidays, a detached step, a script, an
/// upload, a manual step, read-only checks and a point of no return.
const REVIEW: &str = r#"name: Review
window:
  timezone: America/Chicago
  business_hours:
    - { days: mon-fri, from: "07:30", to: "18:00" }
    - { days: sat, from: "09:00", to: "12:00" }
  holidays: [2026-12-24, 2026-12-25]
  margin: 15m
targets:
  web:
    transport: local
steps:
  - id: inventory
    on: web
    run: df -h
    check: 'true'
    changes: none
    estimate: 1m
  - id: stage
    on: web
    upload: { src: payload.bin, dest: /tmp/payload.bin }
    estimate: 1m
  - id: migrate
    on: web
    script: migrate.sh
    check: test -f /tmp/done
    estimate: 10m
  - id: long-copy
    on: web
    run: cp -a /a /b
    check: test -d /b
    detach: true
    estimate: 2h
  - id: confirm
    manual: Ask the customer to open Q3.xlsx
  - id: switch
    on: web
    run: ln -sfn /b /cur
    check: test -L /cur
    estimate: 5m
    point_of_no_return: true
"#;

fn review_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), REVIEW).unwrap();
    std::fs::write(dir.path().join("payload.bin"), b"payload").unwrap();
    std::fs::write(
        dir.path().join("migrate.sh"),
        "#!/bin/sh\nset -e\necho 'moving <data> | `now`'\ntouch /tmp/done\n",
    )
    .unwrap();
    dir
}

fn review(dir: &Path, format: &str) -> String {
    let r = Run::at(dir)
        .args(["plan", "r.yaml", "--start", MONDAY_5PM, "--format", format])
        .expect_exit(0)
        .run();
    r.stdout
}

#[test]
fn markdown_review_shows_business_hours_holidays_and_detach() {
    let dir = review_dir();
    let o = review(dir.path(), "markdown");
    assert!(
        o.contains("| Business hours | mon-fri 07:30-18:00; sat 09:00-12:00 |"),
        "{o}"
    );
    assert!(o.contains("| Holidays | 2026-12-24, 2026-12-25 |"), "{o}");
    assert!(
        o.contains("| When closed | stop (checkpoint and exit) |"),
        "{o}"
    );
    let row = o
        .lines()
        .find(|l| l.contains("`long-copy`"))
        .unwrap_or_else(|| panic!("no long-copy row: {o}"));
    assert!(row.contains("detached"), "{row}");
    assert!(
        o.contains(
            "On web, run detached (it survives a dropped connection):\n\n```\ncp -a /a /b\n```"
        ),
        "{o}"
    );
    // Key/value tables have real headers, never an empty header row.
    assert!(!o.contains("| | |\n|---|---|"), "{o}");
    assert!(o.contains("| Item | Value |"), "{o}");
}

#[test]
fn markdown_review_shows_script_content_folded_with_full_sha256() {
    let dir = review_dir();
    let o = review(dir.path(), "markdown");
    let sha = runner::playbook::sha256_hex(&std::fs::read(dir.path().join("migrate.sh")).unwrap());
    assert!(o.contains(&sha), "full SHA-256 {sha} missing: {o}");
    assert!(o.contains("<details>"), "{o}");
    assert!(o.contains("<summary>"), "{o}");
    // The content as it is, inside a fence, so a reviewer reads every line.
    assert!(
        o.contains("echo 'moving <data> | `now`'\ntouch /tmp/done\n"),
        "{o}"
    );
    let up = runner::playbook::sha256_hex(b"payload");
    assert!(o.contains(&up), "upload's full SHA-256 missing: {o}");
}

#[test]
fn markdown_review_says_the_operator_confirms_manual_steps() {
    let dir = review_dir();
    let o = review(dir.path(), "markdown");
    let row = o
        .lines()
        .find(|l| l.contains("`confirm`"))
        .unwrap_or_else(|| panic!("no confirm row: {o}"));
    assert!(row.contains("operator confirms"), "{row}");
    assert!(
        o.contains("The operator carries out, then confirms:\n\n```\nAsk the customer to open Q3.xlsx\n```"),
        "{o}"
    );
    assert!(!row.contains("**no**"), "{row}");
}

#[test]
fn review_warnings_are_grouped_riskiest_first_and_spare_changes_none() {
    let dir = review_dir();
    let text = review(dir.path(), "text");
    // Read-only `inventory` is not listed for a missing rollback; the upload and the script are.
    assert!(!text.contains("`inventory` has no rollback"), "{text}");
    assert!(text.contains("`stage` has no rollback"), "{text}");
    assert!(text.contains("`migrate` has no rollback"), "{text}");
    // One heading per kind with its count, the rollback group before the estimate-free ones.
    assert!(
        text.contains("No rollback before a point of no return (3)"),
        "{text}"
    );
    assert!(text.contains("Points of no return: `switch`"), "{text}");
    let ponr = text.find("Points of no return").unwrap();
    let rollback = text
        .find("No rollback before a point of no return")
        .unwrap();
    assert!(ponr < rollback, "{text}");
    let md = review(dir.path(), "markdown");
    assert!(
        md.contains("### No rollback before a point of no return (3)"),
        "{md}"
    );
    // JSON keeps every warning, riskiest kind first.
    let json: serde_json::Value = serde_json::from_str(&review(dir.path(), "json")).unwrap();
    let codes: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes[0], "no-rollback-before-ponr", "{codes:?}");
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
    Run::at(dir)
        .args(["apply", "half.yaml"])
        .env("RUNNER_NOW", "2026-11-30T19:00:00-06:00")
        // The second step fails.
        .expect_exit(1)
        .run();
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
        Run::at(dir.path())
            .args(args)
            .expect_exit(0)
            .expect_stdout_contains("1 of 3 steps done")
            .expect_stdout_contains("  done:     one\n")
            .expect_stdout_contains("  in doubt: none\n")
            .expect_stdout_contains("  left:     two, three\n")
            .expect_stdout_contains(
                "2 steps left, expected to end 22:00 CST, business hours at Tue 1 Dec 07:15, margin 9h15m",
            )
            // The schedule is of what is left: the done step is not scheduled again.
            .expect_stdout_contains("20:00-21:00  two")
            .expect_stdout_contains("21:00-22:00  three")
            .expect_stdout_lacks("  one  ")
            .expect_stdout_contains("(2 steps, 1 night)")
            .run();
    }
}

#[test]
fn the_night_of_docs_night_md_stops_before_the_long_step_at_0540() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = Run::at(root)
        .args([
            "plan",
            "playbooks/night.yaml",
            "--start",
            "2026-12-08T05:40:00-06:00",
        ])
        .expect_exit(0)
        .run();
    let night2 = r.stdout.find("Night 2: Tue 8 Dec 18:00").expect(&r.stdout);
    let moved = r.stdout.find("move-mailboxes  Move").expect(&r.stdout);
    let manual = r.stdout.find("confirm-snapshot  Check").expect(&r.stdout);
    assert!(manual < night2 && night2 < moved, "{}", r.stdout);
}
