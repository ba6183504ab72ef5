//! A run under a simulated clock (`RUNNER_NOW`) says so in the journal, progress, status and
//! report, shown in the customer's zone and as the user wrote it.

use super::*;

const SIMULATED: &str = "2026-03-10T23:00:00Z";

fn simulated_playbook(dir: &Path) {
    let text = "name: Rehearsal\nwindow:\n  timezone: UTC\n  business_hours:\n    - { days: mon-fri, from: \"08:00\", to: \"18:00\" }\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: one\n    on: here\n    run: echo one\n";
    std::fs::write(dir.join("p.yaml"), text).unwrap();
}

/// Runs `runner` with stdout on a terminal (so that it draws its progress bars), through
/// `script`.
fn runner_on_a_terminal(args: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_runner")),
        "/dev/null",
    ])
    .current_dir(dir)
    .env_remove("RUNNER_NOW");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_run_under_a_simulated_clock_says_so_in_the_journal_progress_status_and_report() {
    let dir = tempfile::tempdir().unwrap();
    simulated_playbook(dir.path());
    let now = [("RUNNER_NOW", SIMULATED)];

    // Plain progress: said before the first step.
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let warned = r
        .stdout
        .find("SIMULATED CLOCK: RUNNER_NOW=2026-03-10T23:00:00Z");
    let first_step = r.stdout.find("> one");
    assert!(
        warned.is_some() && first_step.is_some() && warned < first_step,
        "{}",
        r.stdout
    );
    // Even --quiet says so.
    let quiet = tempfile::tempdir().unwrap();
    simulated_playbook(quiet.path());
    let r = common_cli::runner(&["apply", "p.yaml", "--quiet"], quiet.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("SIMULATED CLOCK"), "{}", r.stdout);
    // JSON progress: the first event carries it, and so does the last.
    let json = tempfile::tempdir().unwrap();
    simulated_playbook(json.path());
    let r = common_cli::runner(&["apply", "p.yaml", "--json"], json.path(), &now);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_step = events
        .iter()
        .position(|e| e["event"] == "step_started")
        .unwrap();
    assert!(
        events[..first_step]
            .iter()
            .any(|e| e["event"] == "simulated_clock" && e["from"] == SIMULATED),
        "{}",
        r.stdout
    );
    let started = events.iter().find(|e| e["event"] == "run_started").unwrap();
    assert_eq!(started["simulated_clock"]["from"], SIMULATED);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["simulated_clock"]["from"], SIMULATED);
    // Progress bars on a terminal.
    let bars = tempfile::tempdir().unwrap();
    simulated_playbook(bars.path());
    let out = runner_on_a_terminal("apply p.yaml", bars.path(), &now);
    assert!(out.contains("SIMULATED CLOCK"), "{out}");

    // The journal records it on the run.
    let db = rusqlite::Connection::open(dir.path().join(".runner/p.db")).unwrap();
    let (from, real): (Option<String>, Option<String>) = db
        .query_row(
            "SELECT simulated_from, real_started_at FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(from.as_deref(), Some(SIMULATED));
    let real: Timestamp = real.expect("the real start is recorded").parse().unwrap();
    assert!(real > SIMULATED.parse::<Timestamp>().unwrap());
    drop(db);

    // A later run on the real clock (nothing left to do) is not marked.
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("SIMULATED"), "{}", r.stdout);

    // status and report, read later on the real clock, say which run was simulated.
    let st = common_cli::runner(&["status", "p.yaml"], dir.path(), &[]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(
        st.stdout.contains("Simulated clock: run ")
            && st.stdout.contains("RUNNER_NOW=2026-03-10T23:00:00Z"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("(simulated clock)"), "{}", st.stdout);
    let st = common_cli::runner(&["status", "p.yaml", "--format", "json"], dir.path(), &[]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["simulated_runs"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["simulated_runs"][0]["simulated_clock"]["from"], SIMULATED);
    assert_eq!(v["steps"][0]["pairs"][0]["simulated_clock"], true, "{v}");
    assert_eq!(v["last_run"]["simulated_clock"], serde_json::Value::Null);

    let md = common_cli::runner(&["report", "p.yaml"], dir.path(), &[]).stdout;
    assert!(md.contains("**Simulated clock**"), "{md}");
    assert!(md.contains("RUNNER_NOW=2026-03-10T23:00:00Z"), "{md}");
    assert!(md.contains("(simulated clock)"), "{md}");
    let html =
        common_cli::runner(&["report", "p.yaml", "--format", "html"], dir.path(), &[]).stdout;
    assert!(html.contains("Simulated clock"), "{html}");
    assert!(html.contains("RUNNER_NOW=2026-03-10T23:00:00Z"), "{html}");
    let json =
        common_cli::runner(&["report", "p.yaml", "--format", "json"], dir.path(), &[]).stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["summary"]["simulated_runs"], 1, "{v}");
    assert_eq!(v["runs"][0]["simulated_clock"]["from"], SIMULATED, "{v}");
    assert_eq!(
        v["runs"][1]["simulated_clock"],
        serde_json::Value::Null,
        "{v}"
    );

    // `status` itself under RUNNER_NOW says its "now" is simulated.
    let st = common_cli::runner(&["status", "p.yaml"], dir.path(), &now);
    assert!(
        st.stdout.contains("(simulated: RUNNER_NOW)"),
        "{}",
        st.stdout
    );
}

#[test]
fn a_simulated_clock_is_shown_in_the_customers_zone_and_as_the_user_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: Rehearsal\nwindow:\n  timezone: America/Chicago\n  business_hours:\n    - { days: mon-fri, from: \"08:00\", to: \"18:00\" }\ntargets:\n  here:\n    transport: local\nsteps:\n  - id: one\n    on: here\n    run: echo one\n";
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    let given = "2026-03-10T18:30:00-05:00";
    let r = common_cli::runner(&["apply", "p.yaml"], dir.path(), &[("RUNNER_NOW", given)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The note before the playbook is read repeats the setting as given, not in UTC.
    assert!(
        r.stderr
            .contains(&format!("note: RUNNER_NOW={given} is set")),
        "{}",
        r.stderr
    );
    // The progress names the simulated instant in the customer's zone, with its abbreviation.
    assert!(
        r.stdout.contains(
            "SIMULATED CLOCK: RUNNER_NOW=2026-03-10T23:30:00Z (Tue 10 Mar 2026 18:30 CDT)"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("23:30:00Z"), "{}", r.stderr);
}
