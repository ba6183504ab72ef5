//! Detached steps with `env:` secrets over real sshd: the launcher reads the values from its
//! standard input (as an attached command does), exports them and starts the job in its own
//! session, so the job has them in memory only. They are in no file of the job folder, no
//! command line on the target, not in the journal, the run folder or runner's output, and a
//! runner killed with -9 is followed by one that reattaches to the same job without sending
//! them again. Windows targets, whose detached jobs inherit nothing, are refused (exit 2).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{wait_until, Sshd};
use crate::common_cli::{runner, Run};
use sha2::{Digest, Sha256};

/// A value a careless encoding would break, and a distinctive piece of it.
const JOB_PW: &str = "Garnet-7301 it's \"$HOME\" \\ back\\slash";
const NEEDLES: &[&str] = &[JOB_PW, "Garnet-7301"];
/// What the restarted runner is given instead: the job must not get it.
const OTHER_PW: &str = "Basalt-2209-second-run";

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[track_caller]
fn assert_no_secret(what: &str, bytes: &[u8]) {
    for n in NEEDLES {
        assert!(
            !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
            "the secret ({n:?}) is written in {what}"
        );
    }
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Every process's command line on this machine (the target is on loopback).
fn all_command_lines() -> Vec<u8> {
    let mut out = Vec::new();
    for p in fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(bytes) = fs::read(p.path().join("cmdline")) {
            out.extend(bytes);
            out.push(b'\n');
        }
    }
    out
}

/// Starts `runner apply` in the background with the secret `pw` in its environment.
fn spawn_apply(dir: &Path, pw: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "p.yaml"])
        .current_dir(dir)
        .env_remove("RUNNER_NOW")
        .env("RUNNER_TEST_JOB_PW", pw)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts")
}

fn kill9(child: &mut Child) -> (String, String) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (out, err)
}

fn run_logs(dir: &Path) -> String {
    files_below(&dir.join(".runner/runs"))
        .iter()
        .map(|f| fs::read_to_string(f).unwrap_or_default())
        .collect()
}

/// The job folder the run logs name ("output and status in DIR on the target").
fn job_folder(dir: &Path) -> Option<PathBuf> {
    let logs = run_logs(dir);
    let rest = &logs[logs.find("output and status in ")? + "output and status in ".len()..];
    Some(PathBuf::from(&rest[..rest.find(" on the target")?]))
}

/// The step: hashes what it got, waits for `go` (so the runner can be killed meanwhile),
/// and records each start and end in `ledger`.
fn playbook(dir: &Path, sshd: &Sshd) {
    let d = dir.display();
    let yaml = format!(
        "name: detached env\nwindow:\n  business_hours: []\ntargets:\n  box:\n    transport: ssh\n    host: {host}\n    port: {port}\n    user: {user}\n    key: {key}\n    known_hosts: {kh}\nsteps:\n\
         - id: long\n  on: box\n  detach: true\n  env:\n    JOB_PW: {{ env: RUNNER_TEST_JOB_PW }}\n    MODE: plain\n  run: |\n    echo start >> {d}/ledger\n    printf '%s' \"$JOB_PW\" | sha256sum | cut -c1-64 > {d}/env.sha\n    printf '%s' \"$MODE\" > {d}/mode\n    echo first half\n    touch {d}/started\n    while [ ! -f {d}/go ]; do sleep 0.1; done\n    printf '%s' \"$JOB_PW\" | sha256sum | cut -c1-64 > {d}/env-after.sha\n    echo second half\n    echo end >> {d}/ledger\n",
        host = q(sshd.host()),
        port = sshd.port(),
        user = q(&sshd.user()),
        key = q(&sshd.user_key_path().display().to_string()),
        kh = q(&sshd.known_hosts_path().display().to_string()),
    );
    fs::write(dir.join("p.yaml"), yaml).expect("write the playbook");
}

#[test]
fn a_detached_job_gets_its_env_secret_in_memory_only_and_survives_a_killed_runner() {
    let sshd = Sshd::start("127.0.31.11");
    let dir = tempfile::tempdir().expect("tempdir");
    playbook(dir.path(), &sshd);
    let plan = runner(
        &["plan", "p.yaml"],
        dir.path(),
        &[("RUNNER_TEST_JOB_PW", JOB_PW)],
    );
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);

    let mut first = spawn_apply(dir.path(), JOB_PW);
    wait_until("the job to start", || dir.path().join("started").exists());
    let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    assert_eq!(
        read("env.sha"),
        format!("{}\n", sha(JOB_PW)),
        "the job got the secret"
    );
    assert_eq!(read("mode"), "plain");

    // While the job runs: nowhere in its folder, in no command line.
    let folder = job_folder(dir.path()).expect("the run log names the job folder");
    let in_folder = files_below(&folder);
    assert!(
        in_folder.iter().any(|f| f.ends_with("cmd.sh")),
        "{in_folder:?}"
    );
    for f in &in_folder {
        assert_no_secret(&f.display().to_string(), &fs::read(f).unwrap_or_default());
    }
    assert_no_secret("a command line on the target", &all_command_lines());

    let (out1, err1) = kill9(&mut first);
    // A new runner with another value: it follows the job, which keeps the first value.
    let second = spawn_apply(dir.path(), OTHER_PW);
    wait_until("the resume to follow the job", || {
        run_logs(dir.path()).contains("following the detached job in")
    });
    assert_no_secret("a command line on the target", &all_command_lines());
    fs::write(dir.path().join("go"), "").expect("let the job finish");
    let done = second.wait_with_output().expect("the second runner ends");
    let (out2, err2) = (
        String::from_utf8_lossy(&done.stdout).into_owned(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    );
    assert_eq!(done.status.code(), Some(0), "{out2}\n{err2}");
    assert!(out2.contains("second half") || run_logs(dir.path()).contains("second half"));

    // The job ran once, with the value it was started with.
    assert_eq!(read("ledger"), "start\nend\n");
    assert_eq!(read("env-after.sha"), format!("{}\n", sha(JOB_PW)));
    assert!(!folder.exists(), "the job folder is removed at the end");

    for (what, text) in [
        ("first stdout", out1),
        ("first stderr", err1),
        ("second stdout", out2),
        ("second stderr", err2),
    ] {
        assert_no_secret(what, text.as_bytes());
    }
    // The journal (SQLite file, WAL), the run folders and their logs.
    let state = files_below(&dir.path().join(".runner"));
    assert!(state
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "db")));
    for f in &state {
        assert_no_secret(&f.display().to_string(), &fs::read(f).unwrap_or_default());
    }
    let status = runner(&["status", "p.yaml", "--format", "json"], dir.path(), &[]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("\"succeeded\""), "{}", status.stdout);
}

#[track_caller]
fn refused(yaml: &str, at: &str, says: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("p.yaml"), yaml).expect("write");
    let r = runner(&["validate", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("p.yaml:{at}")) && r.stderr.contains(says),
        "wanted {says:?} at {at}:\n{}",
        r.stderr
    );
    r
}

#[test]
fn detached_env_on_windows_and_detached_stdin_are_refused_saying_why() {
    let head = "name: x\nwindow:\n  business_hours: []\ntargets:\n  dc:\n    transport: winrm\n    host: 192.0.2.3\n    user: administrator\n    password: { env: RUNNER_TEST_UNSET }\n  here:\n    transport: local\nsteps:\n";
    let r = refused(
        &format!("{head}- id: a\n  on: dc\n  estimate: 1h\n  run: robocopy a b\n  env:\n    PW: {{ env: X }}\n"),
        "18:5",
        "Win32_Process.Create",
    );
    assert!(
        r.stderr.contains("job folder on the target's disk"),
        "{}",
        r.stderr
    );
    refused(
        &format!("{head}- id: a\n  on: here\n  detach: true\n  run: cat\n  stdin: {{ env: X }}\n"),
        "17:10",
        "cannot run detached",
    );
    // The same step attached is fine, and on an `sh` target detached too.
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("p.yaml"),
        format!("{head}- id: a\n  on: dc\n  detach: false\n  estimate: 1h\n  run: robocopy a b\n  env:\n    PW: {{ env: X }}\n- id: b\n  on: here\n  estimate: 1h\n  run: 'true'\n  env:\n    PW: {{ env: X }}\n"),
    )
    .expect("write");
    let ok = runner(&["validate", "p.yaml"], dir.path(), &[]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
}
