//! `state:` in the playbook: where the journal is, for a team that sets it once. `--state` and
//! RUNNER_STATE win over it; a password in it is refused like one in `--state`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::postgres::Postgres;
use crate::common_cli::runner;

fn playbook(dir: &Path, state: Option<&str>) -> PathBuf {
    let state = state.map(|s| format!("state: {s}\n")).unwrap_or_default();
    let yaml = format!(
        "name: night\n{state}window:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n\
         steps:\n- id: one\n  on: here\n  run: echo one >> {d}/ledger\n",
        d = dir.display()
    );
    let path = dir.join("night.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

#[test]
fn the_playbooks_state_setting_places_the_journal_relative_to_the_playbook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), Some("journals/night.db"));
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let run = runner(&["apply", pb.to_str().unwrap()], elsewhere.path(), &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(dir.path().join("journals/night.db").exists());
    assert!(!dir.path().join(".runner/night.db").exists());
    // Every command reads the same journal: the step is done.
    let again = runner(&["apply", pb.to_str().unwrap()], elsewhere.path(), &[]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let ledger = fs::read_to_string(dir.path().join("ledger")).expect("ledger");
    assert_eq!(ledger, "one\n");
}

#[test]
fn state_option_and_runner_state_win_over_the_playbooks_state_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), Some("journals/night.db"));
    let pb = pb.to_str().unwrap();
    let option = dir.path().join("option.db");
    let run = runner(
        &["apply", pb, "--state", option.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(option.exists());
    let env = dir.path().join("env.db");
    let run = runner(
        &["apply", pb],
        dir.path(),
        &[("RUNNER_STATE", env.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(env.exists());
    assert!(!dir.path().join("journals/night.db").exists());
}

#[test]
fn a_password_in_the_playbooks_state_setting_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(
        dir.path(),
        Some("postgres://alice:s3cr3t-pw@127.0.0.1:1/runner"),
    );
    let run = runner(&["apply", pb.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("night.yaml:2"), "{}", run.stderr);
    assert!(run.stderr.contains("password"), "{}", run.stderr);
    assert!(run.stderr.contains("PGPASSWORD"), "{}", run.stderr);
    assert!(!dir.path().join(".runner").exists());
    assert!(!dir.path().join("ledger").exists());
}

#[test]
fn a_postgres_url_in_the_playbooks_state_setting_keeps_the_journal_on_the_server() {
    let server = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), Some(&server.url()));
    let run = runner(&["apply", pb.to_str().unwrap()], dir.path(), &server.env());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!dir.path().join(".runner/night.db").exists());
    // A second apply reads the server's journal: nothing runs again.
    let again = runner(&["apply", pb.to_str().unwrap()], dir.path(), &server.env());
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let ledger = fs::read_to_string(dir.path().join("ledger")).expect("ledger");
    assert_eq!(ledger, "one\n");
}

#[test]
fn a_customer_files_state_setting_replaces_the_procedures() {
    let dir = tempfile::tempdir().expect("tempdir");
    playbook(dir.path(), Some("journals/procedure.db"));
    let customer = dir.path().join("acme.yaml");
    fs::write(
        &customer,
        "name: acme night\nprocedure: night.yaml\nstate: journals/acme.db\n",
    )
    .expect("write the customer file");
    let run = runner(&["apply", customer.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(dir.path().join("journals/acme.db").exists());
    assert!(!dir.path().join("journals/procedure.db").exists());
}

/// A journal kept on another disk through a symbolic link, with that disk not mounted: the link
/// points nowhere. Starting a new journal there would run every step already done again, so
/// every command refuses (exit 2), names the link and where it points, and creates nothing.
#[test]
fn a_journal_link_that_points_nowhere_is_refused_and_nothing_runs_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), Some("night.db"));
    let pb_s = pb.to_str().unwrap();
    let run = runner(&["apply", pb_s], dir.path(), &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // The journal moves to a "disk" reached through a link; then the disk goes away.
    let disk = dir.path().join("disk");
    fs::create_dir(&disk).expect("disk");
    fs::rename(dir.path().join("night.db"), disk.join("night.db")).expect("move the journal");
    std::os::unix::fs::symlink(disk.join("night.db"), dir.path().join("night.db")).expect("link");
    fs::rename(&disk, dir.path().join("unmounted")).expect("unmount");
    for args in [
        vec!["apply", pb_s],
        vec!["status", pb_s],
        vec!["report", pb_s],
        vec!["plan", pb_s],
    ] {
        let run = runner(&args, dir.path(), &[]);
        assert_eq!(run.code, 2, "{args:?}\n{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("night.db")
                && run.stderr.contains("symbolic link")
                && run
                    .stderr
                    .contains(&disk.join("night.db").display().to_string())
                && run.stderr.contains("not mounted"),
            "{args:?} names the link, where it points and the likely cause:\n{}",
            run.stderr
        );
    }
    assert!(!disk.exists(), "nothing was created where the link points");
    let ledger = fs::read_to_string(dir.path().join("ledger")).expect("ledger");
    assert_eq!(ledger, "one\n", "the step ran once");
}

/// A hard link gives one journal two names, and SQLite keeps its write-ahead log and lock per
/// name: two runs through the two names would each think they hold the journal alone and could
/// corrupt it. The journal with a second name is refused (exit 2) until the extra name is gone.
#[test]
fn a_journal_with_a_second_hard_link_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path(), Some("night.db"));
    let pb_s = pb.to_str().unwrap();
    let run = runner(&["apply", pb_s], dir.path(), &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    fs::hard_link(dir.path().join("night.db"), dir.path().join("alias.db")).expect("hard link");
    for args in [
        vec!["apply", pb_s],
        vec!["apply", pb_s, "--state", "alias.db"],
        vec!["status", pb_s],
    ] {
        let run = runner(&args, dir.path(), &[]);
        assert_eq!(run.code, 2, "{args:?}\n{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("hard link") && run.stderr.contains("2 names"),
            "{args:?}:\n{}",
            run.stderr
        );
    }
    fs::remove_file(dir.path().join("alias.db")).expect("remove the second name");
    let run = runner(&["apply", pb_s], dir.path(), &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let ledger = fs::read_to_string(dir.path().join("ledger")).expect("ledger");
    assert_eq!(ledger, "one\n", "the step ran once");
}
