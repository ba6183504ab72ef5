//! `runner validate` on good and bad playbooks: exit codes, positions, messages, and that an
//! invalid playbook changes nothing.

use crate::common::run::Run;
use crate::common_cli::fixture;
use std::path::Path;

mod keys;
mod messages;
mod reference;
mod robustness;
mod window_fit;

const BASE: &str = r#"name: T
window:
  timezone: America/Chicago
  business_hours:
    - days: mon-fri
      from: "07:30"
      to: "18:00"
  margin: 15m
vars:
  drive: 'D:'
targets:
  web:
    transport: ssh
    host: 127.0.0.1
    user: admin
  db:
    transport: local
groups:
  all: [web, db]
steps:
  - id: first
    on: web
    run: echo {{ drive }}
"#;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `runner validate c.yaml` on `text` in a fresh folder; validating writes no journal.
fn validate(text: &str) -> Run {
    Run::new()
        .playbook_named("c.yaml", text)
        .args(["validate", "c.yaml"])
        .expect_no_journal()
}

/// `validate` of an invalid playbook: exit 2, and nothing on stdout (the errors go to stderr).
fn invalid(text: &str) -> Run {
    validate(text).expect_exit(2).expect_stdout("")
}
