//! A fan-out beyond the open-file limit: the runner raises its soft limit to the hard one, caps
//! the targets at once to what the hard limit allows, and says so once, before the first step.
//! The hard limit is lowered with `prlimit` (util-linux) for the runner alone.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common_cli::Run;

const TARGETS: usize = 40;

fn playbook(dir: &Path) -> std::path::PathBuf {
    let mut yaml = String::from("name: wide\nwindow:\n  business_hours: []\ntargets:\n");
    for i in 0..TARGETS {
        let _ = write!(yaml, "  t{i}:\n    transport: local\n");
    }
    let names: Vec<String> = (0..TARGETS).map(|i| format!("t{i}")).collect();
    let _ = write!(
        yaml,
        "steps:\n- id: touch\n  on: [{}]\n  run: touch {}/done-{{{{ target.name }}}}\n",
        names.join(", "),
        dir.display()
    );
    let path = dir.join("wide.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

/// `runner ARGS` with its open-file limit at `soft:hard`.
fn runner_with_nofile(soft: u64, hard: u64, args: &[&str], dir: &Path) -> Run {
    let out = Command::new("prlimit")
        .arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUNNER_NOW")
        .output()
        .expect("prlimit (util-linux) runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn done(dir: &Path) -> usize {
    (0..TARGETS)
        .filter(|i| dir.join(format!("done-t{i}")).exists())
        .count()
}

#[test]
fn a_hard_file_limit_too_low_for_the_fan_out_is_said_once_and_the_run_still_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path());
    let pb = pb.to_str().expect("utf-8 path");
    let run = runner_with_nofile(128, 128, &["apply", pb, "--max-parallel", "40"], dir.path());
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(done(dir.path()), TARGETS);
    let said = run.stderr.matches("open-file limit (128)").count();
    assert_eq!(said, 1, "said once:\n{}", run.stderr);
    assert!(run.stderr.contains("40 targets at once"), "{}", run.stderr);
    assert!(run.stderr.contains("ulimit -n"), "{}", run.stderr);
    assert!(run.stderr.contains("--max-parallel 10"), "{}", run.stderr);
}

#[test]
fn a_low_soft_limit_is_raised_to_the_hard_one_and_nothing_is_said() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path());
    let pb = pb.to_str().expect("utf-8 path");
    // A soft limit of 64 files would cap 40 targets at once; the hard limit allows them all.
    let run = runner_with_nofile(64, 4096, &["apply", pb, "--max-parallel", "40"], dir.path());
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(done(dir.path()), TARGETS);
    assert!(!run.stderr.contains("open-file limit"), "{}", run.stderr);
}

#[test]
fn a_fan_out_chosen_within_the_hard_limit_is_not_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = playbook(dir.path());
    let pb = pb.to_str().expect("utf-8 path");
    let run = runner_with_nofile(128, 128, &["apply", pb, "--max-parallel", "10"], dir.path());
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(done(dir.path()), TARGETS);
    assert!(!run.stderr.contains("open-file limit"), "{}", run.stderr);
}
