//! A step's `env` and `stdin`: secrets reach the command (over SSH, locally, over WinRM) and
//! are written nowhere: not in any process's command line on the target while the step runs,
//! not in the plan, the run folder, the journal (its SQLite file and WAL), status or report.

use crate::common::winrm_server;

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::Sshd;
use crate::common_cli::{runner, Run};
use sha2::{Digest, Sha256};

/// Values with characters a careless encoding would break: spaces, quotes, `$`, a backslash.
const ADMIN_PW: &str = "Quartz-8812 it's \"$HOME\" \\n back\\slash";
const FILE_PW: &str = "Oyster-4471-from-a-file";
const STDIN_PW: &str = "Lichen-5530 typed \\ on stdin";
/// What must appear nowhere: each secret, and a distinctive piece of each.
const NEEDLES: &[&str] = &[
    ADMIN_PW,
    FILE_PW,
    STDIN_PW,
    "Quartz-8812",
    "Oyster-4471",
    "Lichen-5530",
];

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        r.code, r.stdout, r.stderr
    )
}

#[track_caller]
fn assert_exit(r: &Run, code: i32) {
    assert_eq!(r.code, code, "unexpected exit code:\n{}", show(r));
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[track_caller]
fn assert_no_secret(what: &str, bytes: &[u8]) {
    for n in NEEDLES {
        assert!(
            !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
            "a secret ({n:?}) is written in {what}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// The step: records what it received (as SHA-256), its own and its parent's command line
/// and every process's command line on the machine while it runs, and prints the secret
/// (which the output must show masked).
fn steps_yaml(on: &str, out: &Path) -> String {
    let o = out.display();
    let run = format!(
        "printf '%s' \"$ADMIN_PW\" | sha256sum | cut -c1-64 > {o}/env.sha\n\
         printf '%s' \"$FILE_PW\" | sha256sum | cut -c1-64 > {o}/file.sha\n\
         IFS= read -r line; printf '%s' \"$line\" | sha256sum | cut -c1-64 > {o}/stdin.sha\n\
         printf '%s' \"$MODE\" > {o}/mode\n\
         cat /proc/$$/cmdline > {o}/self.cmdline\n\
         cat /proc/$PPID/cmdline > {o}/parent.cmdline\n\
         for f in /proc/[0-9]*/cmdline; do cat \"$f\" 2>/dev/null; echo; done > {o}/all.cmdline\n\
         printf 'shown: %s\\n' \"$ADMIN_PW\"\n"
    )
    .trim_end()
    .replace('\n', "; ");
    format!(
        "steps:\n\
         - id: use-secrets\n  on: {on}\n  run: {run}\n  check: {check}\n  env:\n    ADMIN_PW: {{ env: RUNNER_TEST_ADMIN_PW }}\n    FILE_PW: {{ file: file-pw.txt }}\n    MODE: fast\n  stdin: {{ env: RUNNER_TEST_STDIN_PW }}\n",
        run = q(&run),
        check = q(&format!(
            "[ \"$(printf '%s' \"$ADMIN_PW\" | sha256sum | cut -c1-64)\" = \"$(cat {o}/env.sha)\" ]"
        )),
    )
}

fn secret_env() -> [(&'static str, &'static str); 2] {
    [
        ("RUNNER_TEST_ADMIN_PW", ADMIN_PW),
        ("RUNNER_TEST_STDIN_PW", STDIN_PW),
    ]
}

/// Plans and applies `yaml` in `dir`, then checks what the command received and that no
/// secret was written anywhere.
fn apply_and_check(dir: &Path, yaml: &str, out: &Path, check_cmdlines: bool) {
    fs::write(dir.join("file-pw.txt"), format!("{FILE_PW}\n")).expect("write the secret file");
    let pb = dir.join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    let pb_s = pb.display().to_string();
    let env = secret_env();

    let plan = runner(&["plan", &pb_s], dir, &env);
    assert_exit(&plan, 0);
    assert!(
        plan.stdout
            .contains("env: ADMIN_PW = <secret from env RUNNER_TEST_ADMIN_PW>")
            && plan
                .stdout
                .contains("env: FILE_PW = <secret from file file-pw.txt>")
            && plan.stdout.contains("env: MODE = \"fast\"")
            && plan
                .stdout
                .contains("stdin: <secret from env RUNNER_TEST_STDIN_PW>"),
        "the plan names where each value comes from:\n{}",
        plan.stdout
    );
    let plan_json = runner(&["plan", &pb_s, "--format", "json"], dir, &env);
    assert_exit(&plan_json, 0);

    let applied = runner(&["apply", &pb_s], dir, &env);
    assert_exit(&applied, 0);
    let read = |name: &str| fs::read_to_string(out.join(name)).expect("the step wrote its record");
    assert_eq!(
        read("env.sha"),
        format!("{}\n", sha(ADMIN_PW)),
        "env secret"
    );
    assert_eq!(
        read("file.sha"),
        format!("{}\n", sha(FILE_PW)),
        "file secret"
    );
    assert_eq!(read("stdin.sha"), format!("{}\n", sha(STDIN_PW)), "stdin");
    assert_eq!(read("mode"), "fast", "plain value");
    assert!(
        applied.stdout.contains("shown: ********"),
        "printed secrets are masked:\n{}",
        show(&applied)
    );

    if check_cmdlines {
        for f in ["self.cmdline", "parent.cmdline", "all.cmdline"] {
            let bytes = fs::read(out.join(f)).expect("read a command line record");
            assert!(!bytes.is_empty(), "{f} is empty");
            assert_no_secret(f, &bytes);
        }
    }

    let status = runner(&["status", &pb_s, "--format", "json"], dir, &env);
    assert_exit(&status, 0);
    let mut shown = vec![
        ("plan", plan),
        ("plan --format json", plan_json),
        ("apply", applied),
        ("status", status),
    ];
    for format in ["markdown", "json", "html"] {
        let r = runner(&["report", &pb_s, "--format", format], dir, &env);
        assert_exit(&r, 0);
        shown.push(("report", r));
    }
    for (what, r) in &shown {
        assert_no_secret(what, r.stdout.as_bytes());
        assert_no_secret(what, r.stderr.as_bytes());
    }
    // The run folder and the journal, its WAL and shared memory included.
    let state = dir.join(".runner");
    let files = files_below(&state);
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "db")));
    for f in &files {
        assert_no_secret(
            &f.display().to_string(),
            &fs::read(f).expect("read a state file"),
        );
    }
    // Nothing else beside the playbook either (the secret file is the operator's own).
    for f in files_below(dir) {
        if f.file_name().is_some_and(|n| n == "file-pw.txt") || f.starts_with(out) {
            continue;
        }
        assert_no_secret(&f.display().to_string(), &fs::read(&f).expect("read"));
    }
}

#[test]
fn env_and_stdin_secrets_reach_an_ssh_command_and_are_written_nowhere() {
    let sshd = Sshd::start("127.0.16.1");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  a:\n    transport: ssh\n    host: {host}\n    port: {port}\n    user: {user}\n    key: {key}\n    known_hosts: {kh}\n{steps}",
        host = q(sshd.host()),
        port = sshd.port(),
        user = q(&sshd.user()),
        key = q(&sshd.user_key_path().display().to_string()),
        kh = q(&sshd.known_hosts_path().display().to_string()),
        steps = steps_yaml("a", out.path()),
    );
    apply_and_check(dir.path(), &yaml, out.path(), true);
}

#[test]
fn env_and_stdin_secrets_reach_a_local_command_and_are_written_nowhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n{}",
        steps_yaml("here", out.path()),
    );
    apply_and_check(dir.path(), &yaml, out.path(), true);
}

#[test]
fn a_long_script_gets_its_env_over_ssh_too() {
    // Past the inline limit the script is sent as a file; the wrapper reads the same input.
    let sshd = Sshd::start("127.0.16.2");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let filler = format!("# {}\n", "x".repeat(200)).repeat(600);
    let script = dir.path().join("long.sh");
    fs::write(
        &script,
        format!(
            "{filler}printf '%s' \"$ADMIN_PW\" | sha256sum | cut -c1-64 > {}/env.sha\nIFS= read -r l; printf '%s' \"$l\" | sha256sum | cut -c1-64 > {}/stdin.sha\n",
            out.path().display(),
            out.path().display()
        ),
    )
    .expect("write the script");
    let yaml = format!(
        "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  a:\n    transport: ssh\n    host: {host}\n    port: {port}\n    user: {user}\n    key: {key}\n    known_hosts: {kh}\nsteps:\n- id: long\n  on: a\n  script: long.sh\n  env:\n    ADMIN_PW: {{ env: RUNNER_TEST_ADMIN_PW }}\n  stdin: {{ env: RUNNER_TEST_STDIN_PW }}\n",
        host = q(sshd.host()),
        port = sshd.port(),
        user = q(&sshd.user()),
        key = q(&sshd.user_key_path().display().to_string()),
        kh = q(&sshd.known_hosts_path().display().to_string()),
    );
    let pb = dir.path().join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    let r = runner(
        &["apply", &pb.display().to_string()],
        dir.path(),
        &secret_env(),
    );
    assert_exit(&r, 0);
    let read = |name: &str| fs::read_to_string(out.path().join(name)).expect("record");
    assert_eq!(read("env.sha"), format!("{}\n", sha(ADMIN_PW)));
    assert_eq!(read("stdin.sha"), format!("{}\n", sha(STDIN_PW)));
}

#[test]
fn the_identity_of_a_step_holds_the_reference_not_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    let write = |var: &str| {
        fs::write(
            dir.path().join("cutover.yaml"),
            format!(
                "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\nsteps:\n- id: one\n  on: here\n  run: {}\n  env:\n    PW: {{ env: {var} }}\n",
                q(&format!("echo ran >> {}", ledger.display()))
            ),
        )
        .expect("write the playbook");
    };
    write("RUNNER_TEST_A");
    let pb = dir.path().join("cutover.yaml").display().to_string();
    let first = runner(
        &["apply", &pb],
        dir.path(),
        &[("RUNNER_TEST_A", "Value-1111")],
    );
    assert_exit(&first, 0);
    // Another value, same reference: the same work, already done.
    let again = runner(
        &["apply", &pb],
        dir.path(),
        &[("RUNNER_TEST_A", "Value-2222")],
    );
    assert_exit(&again, 0);
    assert_eq!(fs::read_to_string(&ledger).expect("ledger"), "ran\n");
    // Another reference: the step changed, and is not trusted as done.
    write("RUNNER_TEST_B");
    let changed = runner(
        &["apply", &pb],
        dir.path(),
        &[("RUNNER_TEST_B", "Value-3333")],
    );
    assert_eq!(changed.code, 4, "{}", show(&changed));
    assert!(
        changed.stderr.contains("`one`"),
        "the changed step is named:\n{}",
        show(&changed)
    );
}

#[test]
fn a_missing_env_secret_is_bad_input_and_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    fs::write(
        dir.path().join("cutover.yaml"),
        format!(
            "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\nsteps:\n- id: one\n  on: here\n  run: {}\n  env:\n    PW: {{ env: RUNNER_TEST_SURELY_UNSET_PW }}\n",
            q(&format!("echo ran >> {}", ledger.display()))
        ),
    )
    .expect("write the playbook");
    let r = runner(&["apply", "cutover.yaml"], dir.path(), &[]);
    assert_exit(&r, 2);
    assert!(
        r.stderr.contains("RUNNER_TEST_SURELY_UNSET_PW") && r.stderr.contains("`one`"),
        "{}",
        show(&r)
    );
    assert!(!ledger.exists());
    assert!(!dir.path().join(".runner").join("cutover.db").exists());
}

/// `runner validate` on `steps` (after a local and an ssh-with-cmd target): exit 2 and a
/// message at `line:column` containing `want`.
#[track_caller]
fn refused(steps: &str, want: &str, at: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("f"), "x").expect("write");
    let yaml = format!(
        "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n  win:\n    transport: ssh\n    host: 127.0.0.1\n    user: u\n    shell: cmd\nsteps:\n{steps}"
    );
    fs::write(dir.path().join("p.yaml"), &yaml).expect("write");
    let r = runner(&["validate", "p.yaml"], dir.path(), &[]);
    assert_exit(&r, 2);
    assert!(
        r.stderr.contains(want) && r.stderr.contains(at),
        "wanted {want:?} at {at:?}:\n{}",
        show(&r)
    );
    assert!(!r.stderr.contains("hunter2"), "{}", show(&r));
}

#[test]
fn env_and_stdin_mistakes_are_refused_with_their_position() {
    refused(
        "- id: a\n  on: here\n  run: x\n  env:\n    ADMIN_PASSWORD: hunter2\n",
        "looks like a literal secret",
        "p.yaml:17:",
    );
    refused(
        "- id: a\n  on: here\n  run: x\n  stdin: hunter2\n",
        "`stdin` is a literal secret",
        "p.yaml:16:",
    );
    refused(
        "- id: a\n  on: here\n  run: x\n  env:\n    1BAD: { env: X }\n",
        "not a valid environment variable name",
        "p.yaml:17:",
    );
    refused(
        "- id: a\n  on: here\n  upload: { src: f, dest: /tmp/f }\n  env:\n    PW: { env: X }\n",
        "`env` applies to `run` and `script` steps",
        "p.yaml:17:",
    );
    refused(
        "- id: a\n  on: here\n  run: x\n  estimate: 2h\n  stdin: { env: X }\n",
        "cannot run detached",
        "p.yaml:17:",
    );
    refused(
        "- id: a\n  on: win\n  run: x\n  env:\n    PW: { env: X }\n",
        "only with `shell: sh`",
        "p.yaml:17:",
    );
    refused(
        "- id: a\n  on: here\n  run: x\n  env:\n    PW: { env: X, file: y }\n",
        "exactly one",
        "p.yaml:17:",
    );
}

#[test]
fn env_and_stdin_secrets_reach_a_winrm_command_in_its_shell_environment() {
    const WINRM_PW: &str = "Apply!pw";
    let srv = winrm_server::WinrmServer::start(
        "127.0.16.3",
        winrm_server::Options {
            user: "admin".into(),
            password: WINRM_PW.into(),
            ..winrm_server::Options::default()
        },
    );
    srv.program(
        "type con > NUL",
        vec![winrm_server::Reply::finish("read\r\n", "", 0)],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("file-pw.txt"), format!("{FILE_PW}\n")).expect("write");
    let yaml = format!(
        "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  dc:\n    transport: winrm\n    host: {host}\n    port: {port}\n    user: admin\n    password: {{ env: RUNNER_TEST_WINRM_PW }}\n    auth: basic\n    allow_unencrypted: true\nsteps:\n\
         - id: show\n  on: dc\n  run: echo shown %ADMIN_PW% %MODE%\n  env:\n    ADMIN_PW: {{ env: RUNNER_TEST_ADMIN_PW }}\n    FILE_PW: {{ file: file-pw.txt }}\n    MODE: fast\n\
         - id: read\n  on: dc\n  run: type con > NUL\n  stdin: {{ env: RUNNER_TEST_STDIN_PW }}\n",
        host = srv.host(),
        port = srv.port(),
    );
    let pb = dir.path().join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    let pb_s = pb.display().to_string();
    let mut env = secret_env().to_vec();
    env.push(("RUNNER_TEST_WINRM_PW", WINRM_PW));
    let r = runner(&["apply", &pb_s], dir.path(), &env);
    assert_exit(&r, 0);
    assert!(
        r.stdout.contains("shown ******** fast"),
        "the command saw the variable, and its output is masked:\n{}",
        show(&r)
    );
    let started = srv.started();
    let show_cmd = started
        .iter()
        .find(|s| s.line.contains("shown"))
        .expect("the step's command started");
    assert_eq!(
        show_cmd.env.get("ADMIN_PW").map(String::as_str),
        Some(ADMIN_PW)
    );
    assert_eq!(
        show_cmd.env.get("FILE_PW").map(String::as_str),
        Some(FILE_PW)
    );
    assert_eq!(show_cmd.env.get("MODE").map(String::as_str), Some("fast"));
    let read_cmd = started
        .iter()
        .find(|s| s.line.contains("type con"))
        .expect("the stdin step's command started");
    assert_eq!(
        read_cmd.stdin.as_deref(),
        Some(format!("{STDIN_PW}\r\n").as_bytes()),
        "stdin holds the value and a newline, then ends"
    );
    for s in &started {
        assert_no_secret(&format!("the command line {:?}", s.line), s.line.as_bytes());
    }
    for f in files_below(&dir.path().join(".runner")) {
        assert_no_secret(&f.display().to_string(), &fs::read(&f).expect("read"));
    }
}

#[test]
fn ping_needs_only_the_targets_secrets_not_the_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("cutover.yaml"),
        "name: secrets\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\nsteps:\n- id: one\n  on: here\n  run: 'true'\n  env:\n    PW: { env: RUNNER_TEST_SURELY_UNSET_PW }\n",
    )
    .expect("write the playbook");
    let r = runner(&["ping", "cutover.yaml"], dir.path(), &[]);
    assert_exit(&r, 0);
}
