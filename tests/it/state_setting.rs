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
