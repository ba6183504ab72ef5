//! `runner apply` and `runner rollback` of a playbook whose targets use WinRM, against the
//! loopback test server; and the WinRM target keys in `validate` and the plan.

use crate::common::winrm_server;
use crate::common_cli;

use std::path::Path;

use crate::common::winrm_server::{Options, Reply, WinrmServer};
use crate::common_cli::runner;

const PASSWORD: &str = "Apply!pw";
const PW_ENV: &str = "RUNNER_TEST_WINRM_PW";

fn start(ip: &str) -> WinrmServer {
    WinrmServer::start(
        ip,
        Options {
            user: "admin".into(),
            password: PASSWORD.into(),
            ..Options::default()
        },
    )
}

fn playbook(srv: &WinrmServer, steps: &str) -> String {
    format!(
        r#"name: WinRM cutover
window:
  business_hours: []
targets:
  dc:
    transport: winrm
    host: {host}
    port: {port}
    user: admin
    password: {{ env: {PW_ENV} }}
    auth: basic
    allow_unencrypted: true
  fs:
    transport: winrm
    host: {host}
    port: {port}
    user: admin
    password: {{ env: {PW_ENV} }}
    auth: basic
    allow_unencrypted: true
    shell: powershell
steps:
{steps}"#,
        host = srv.host(),
        port = srv.port()
    )
}

const STEPS: &str = r#"  - id: stop-service
    on: dc
    run: net stop W32Time
    check: sc query W32Time
    rollback: net start W32Time
    estimate: 1m
  - id: copy-tool
    on: fs
    upload: { src: tool.bin, dest: 'C:\Temp\tool.bin' }
    estimate: 1m
  - id: configure
    on: fs
    script: configure.ps1
    rollback: Remove-Item 'C:\Temp\configured.txt'
    estimate: 1m
"#;

fn write(dir: &Path, name: &str, content: &[u8]) {
    std::fs::write(dir.join(name), content).unwrap();
}

#[test]
fn apply_and_rollback_over_winrm() {
    let srv = start("127.0.0.51");
    srv.program(
        "net stop W32Time",
        vec![
            Reply::stdout("The Windows Time service is stopping.\r\n"),
            Reply::TimedOut,
            Reply::finish(
                "The Windows Time service was stopped successfully.\r\n",
                "",
                0,
            ),
        ],
    );
    srv.program(
        "sc query W32Time",
        vec![Reply::finish(
            "        STATE              : 1  STOPPED\r\n",
            "",
            0,
        )],
    );
    srv.program(
        "net start W32Time",
        vec![Reply::finish(
            "The Windows Time service was started successfully.\r\n",
            "",
            0,
        )],
    );
    let script = "Set-Content -Path 'C:\\Temp\\configured.txt' -Value 'ok'\r\nWrite-Output 'configured ü'\r\n";
    srv.program(script, vec![Reply::finish("configured ü\r\n", "", 0)]);
    srv.program(
        "Remove-Item 'C:\\Temp\\configured.txt'",
        vec![Reply::done(0)],
    );

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", playbook(&srv, STEPS).as_bytes());
    let tool: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    write(dir.path(), "tool.bin", &tool);
    write(dir.path(), "configure.ps1", script.as_bytes());
    let env = [(PW_ENV, PASSWORD)];

    let r = runner(&["apply", "c.yaml"], dir.path(), &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(!all.contains(PASSWORD), "the password leaked: {all}");
    assert_eq!(srv.file("C:\\Temp\\tool.bin").unwrap(), tool);
    assert_eq!(srv.open_shells(), 0);
    let ran: Vec<String> = srv.delivered().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        ran,
        ["net stop W32Time", "sc query W32Time", script],
        "{ran:?}"
    );

    // Applying again runs nothing: every step is done in the journal.
    let r = runner(&["apply", "c.yaml"], dir.path(), &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(srv.delivered().len(), 3);

    let r = runner(&["rollback", "c.yaml", "--yes"], dir.path(), &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ran: Vec<String> = srv.delivered().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        ran[3..],
        [
            "Remove-Item 'C:\\Temp\\configured.txt'".to_string(),
            "net start W32Time".to_string()
        ],
        "{ran:?}"
    );
    assert_eq!(srv.open_shells(), 0);
    let (created, deleted) = srv.created_and_deleted();
    assert_eq!(created, deleted);
}

#[test]
fn a_failing_winrm_step_stops_the_run_with_its_exit_code() {
    let srv = start("127.0.0.52");
    srv.program(
        "net stop W32Time",
        vec![Reply::finish("", "System error 5 has occurred.\r\n", 2)],
    );
    let dir = tempfile::tempdir().unwrap();
    let steps = r#"  - id: stop-service
    on: dc
    run: net stop W32Time
    estimate: 1m
  - id: never
    on: dc
    run: echo never
    estimate: 1m
"#;
    write(dir.path(), "c.yaml", playbook(&srv, steps).as_bytes());
    let r = runner(&["apply", "c.yaml"], dir.path(), &[(PW_ENV, PASSWORD)]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("stop-service"), "{all}");
    assert_eq!(srv.delivered().len(), 1, "the second step must not run");
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn wrong_password_fails_with_an_auth_message() {
    let srv = start("127.0.0.53");
    let dir = tempfile::tempdir().unwrap();
    let steps = "  - id: one\n    on: dc\n    run: echo hi\n    estimate: 1m\n";
    write(dir.path(), "c.yaml", playbook(&srv, steps).as_bytes());
    let r = runner(&["apply", "c.yaml"], dir.path(), &[(PW_ENV, "nope")]);
    assert_eq!(r.code, 1);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("401"), "{all}");
    assert!(srv.delivered().is_empty());
}

/// Starts `runner apply` and kills it (SIGKILL) once `script` runs on the target.
fn apply_killed_during(srv: &WinrmServer, dir: &Path, script: &str) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "c.yaml"])
        .current_dir(dir)
        .env(PW_ENV, PASSWORD)
        .env_remove("RUNNER_NOW")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = srv.wait_started(script, std::time::Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started, "{script} never started");
}

const KILL_STEPS: &str = r#"  - id: copy-data
    on: dc
    run: robocopy-job
    check: check-copy
    estimate: 1m
  - id: announce
    on: dc
    run: echo after
    estimate: 1m
"#;

#[test]
fn kill_9_during_a_winrm_step_then_resume_verifies_with_the_check() {
    let srv = start("127.0.0.54");
    srv.program(
        "robocopy-job",
        vec![Reply::stdout("copying\r\n"), Reply::Hang],
    );
    srv.program("check-copy", vec![Reply::finish("complete\r\n", "", 0)]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", playbook(&srv, KILL_STEPS).as_bytes());
    apply_killed_during(&srv, dir.path(), "robocopy-job");

    let r = runner(&["apply", "c.yaml"], dir.path(), &[(PW_ENV, PASSWORD)]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ran: Vec<String> = srv.delivered().into_iter().map(|(s, _)| s).collect();
    // The interrupted command is not run again: its check decides, once the shell it was
    // still running in (named in the journal before the command was sent) is deleted.
    assert_eq!(ran, ["robocopy-job", "check-copy", "echo after"], "{ran:?}");
    assert_eq!(
        srv.open_shells(),
        0,
        "the killed runner's command still runs"
    );
}

#[test]
fn kill_9_during_a_step_without_check_leaves_it_to_the_operator() {
    let srv = start("127.0.0.55");
    srv.program(
        "robocopy-job",
        vec![Reply::stdout("copying\r\n"), Reply::Hang],
    );
    let dir = tempfile::tempdir().unwrap();
    let steps = KILL_STEPS.replace("    check: check-copy\n", "");
    write(dir.path(), "c.yaml", playbook(&srv, &steps).as_bytes());
    apply_killed_during(&srv, dir.path(), "robocopy-job");

    let r = runner(&["apply", "c.yaml"], dir.path(), &[(PW_ENV, PASSWORD)]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let ran: Vec<String> = srv.delivered().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ran, ["robocopy-job"], "{ran:?}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("not run again blindly"), "{all}");
}

#[test]
fn ping_reaches_winrm_targets_and_reports_refusals() {
    let srv = start("127.0.0.56");
    let dir = tempfile::tempdir().unwrap();
    let steps = "  - id: one\n    on: dc\n    run: echo hi\n    estimate: 1m\n";
    write(dir.path(), "c.yaml", playbook(&srv, steps).as_bytes());
    let r = runner(&["ping", "c.yaml"], dir.path(), &[(PW_ENV, PASSWORD)]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("dc"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("port open; authentication accepted; whoami: acme\\administrator"),
        "{}",
        r.stdout
    );
    assert_eq!(srv.open_shells(), 0);
    let r = runner(&["ping", "c.yaml"], dir.path(), &[(PW_ENV, "bad")]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("401"), "{}", r.stdout);
}

#[test]
fn apply_and_rollback_with_ntlm_over_http_the_default() {
    let srv = WinrmServer::start(
        "127.0.0.57",
        Options {
            user: "ACME\\admin".into(),
            password: PASSWORD.into(),
            ntlm: true,
            ..Options::default()
        },
    );
    srv.program(
        "net stop W32Time",
        vec![Reply::finish("stopped\r\n", "", 0)],
    );
    srv.program(
        "net start W32Time",
        vec![Reply::finish("started\r\n", "", 0)],
    );
    let text = format!(
        r#"name: WinRM cutover over NTLM
window:
  business_hours: []
targets:
  dc:
    transport: winrm
    host: {host}
    port: {port}
    user: 'ACME\admin'
    password: {{ env: {PW_ENV} }}
steps:
  - id: stop-service
    on: dc
    run: net stop W32Time
    rollback: net start W32Time
    estimate: 1m
"#,
        host = srv.host(),
        port = srv.port()
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", text.as_bytes());
    let env = [(PW_ENV, PASSWORD)];
    let r = runner(&["apply", "c.yaml"], dir.path(), &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = runner(&["rollback", "c.yaml", "--yes"], dir.path(), &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ran: Vec<String> = srv.delivered().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ran, ["net stop W32Time", "net start W32Time"]);
    // Every SOAP message crossed the network sealed.
    assert_eq!(srv.sealed_requests(), srv.requests().len() as u64);
    assert_eq!(srv.open_shells(), 0);
    // The plan has no unencrypted warning for it.
    let r = runner(&["apply", "c.yaml", "--dry-run"], dir.path(), &env);
    assert!(!r.stdout.contains("without encryption"), "{}", r.stdout);
}

// ---------------------------------------------------------------- validate and plan

const HEAD: &str = r#"name: T
window:
  business_hours: []
targets:
  w:
    transport: winrm
    host: 127.0.0.1
    user: admin
    password: { env: X }
"#;
const TAIL: &str = r#"steps:
  - id: one
    on: w
    run: echo hi
    estimate: 1m
"#;

fn validate(extra: &str) -> common_cli::Run {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yaml",
        format!("{HEAD}{extra}{TAIL}").as_bytes(),
    );
    runner(&["validate", "c.yaml"], dir.path(), &[])
}

#[test]
fn winrm_tls_keys_are_checked() {
    let fp = "AB:".repeat(31) + "CD";
    let ok = [
        "    https: true\n".to_string(),
        "    https: true\n    auth: basic\n".to_string(),
        format!("    https: true\n    cert_sha256: '{fp}'\n"),
        "    https: true\n    ca_file: ca.pem\n".to_string(),
        "    https: true\n    insecure: true\n".to_string(),
        "    auth: basic\n    allow_unencrypted: true\n".to_string(),
        "    auth: ntlm\n".to_string(),
    ];
    for extra in &ok {
        let r = validate(extra);
        assert_eq!(r.code, 0, "{extra}: {}{}", r.stdout, r.stderr);
    }
    let bad = [
        ("    auth: basic\n", "plain HTTP"),
        ("    cert_sha256: 'ab'\n", "https: true"),
        ("    https: true\n    cert_sha256: 'xyz'\n", "not a SHA-256"),
        ("    insecure: true\n", "https: true"),
        (
            "    https: true\n    insecure: true\n    ca_file: a.pem\n",
            "keep one",
        ),
        (
            "    https: true\n    allow_unencrypted: true\n",
            "no effect",
        ),
        ("    allow_unencrypted: true\n", "always encrypts"),
    ];
    for (extra, expect) in bad {
        let r = validate(extra);
        assert_eq!(r.code, 2, "{extra}");
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(all.contains(expect), "{extra}: {all}");
    }
    // The keys belong to winrm targets only.
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{TAIL}",
        HEAD.replace("transport: winrm", "transport: ssh")
            .replace("    password: { env: X }\n", "    insecure: true\n")
    );
    write(dir.path(), "c.yaml", text.as_bytes());
    let r = runner(&["validate", "c.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 2);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("only to winrm"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn the_plan_warns_about_insecure_and_unencrypted_targets() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{HEAD}    https: true\n    insecure: true\n  v:\n    transport: winrm\n    host: 127.0.0.2\n    user: admin\n    password: {{ env: X }}\n    auth: basic\n    allow_unencrypted: true\n{TAIL}"
    );
    write(dir.path(), "c.yaml", text.as_bytes());
    let r = runner(&["apply", "c.yaml", "--dry-run"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("accepts any TLS certificate"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("without encryption"), "{}", r.stdout);
}

// ---- detached steps on Windows --------------------------------------------------------

/// The Windows job wrapper, as far as a test server can take it: runner launches the job
/// through WMI, polls its status and output files over WinRM, keeps Windows' unsigned exit
/// codes, and stops it with taskkill on timeout. (The server plays the files and processes.)
#[test]
fn detached_steps_on_windows_are_launched_polled_and_stopped_over_winrm() {
    let srv = start("127.0.0.57");
    srv.job(
        "robocopy D:\\Data \\\\new\\Data /MIR",
        winrm_server::JobProgram {
            chunks: vec![
                (winrm_server::Out::Stdout, b"copied 1 of 2\r\n".to_vec()),
                (
                    winrm_server::Out::Stderr,
                    b"retrying a locked file\r\n".to_vec(),
                ),
                (winrm_server::Out::Stdout, b"copied 2 of 2\r\n".to_vec()),
            ],
            code: Some(3),
        },
    );
    srv.job(
        "exit /b 4294967295",
        winrm_server::JobProgram {
            chunks: vec![],
            code: Some(4_294_967_295),
        },
    );
    srv.job(
        "ping -t localhost",
        winrm_server::JobProgram {
            chunks: vec![(winrm_server::Out::Stdout, b"Reply from ::1\r\n".to_vec())],
            code: None,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let steps = "  - id: copy\n    on: dc\n    detach: true\n    run: robocopy D:\\Data \\\\new\\Data /MIR\n    ok_codes: [0, 1, 2, 3]\n  - id: odd\n    on: dc\n    detach: true\n    run: exit /b 4294967295\n    ok_codes: [4294967295]\n  - id: forever\n    on: dc\n    detach: true\n    timeout: 2s\n    run: ping -t localhost\n";
    write(dir.path(), "p.yaml", playbook(&srv, steps).as_bytes());
    let r = runner(&["apply", "p.yaml"], dir.path(), &[(PW_ENV, PASSWORD)]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    // copy: all output, in order, each line once; exit 3 is a success here.
    let out = &r.stdout;
    let a = out.find("copy@dc | copied 1 of 2").expect(out);
    let b = out.find("copy@dc | retrying a locked file").expect(out);
    let c = out.find("copy@dc | copied 2 of 2").expect(out);
    assert!(a < c && b > 0, "{out}");
    assert_eq!(out.matches("copied 2 of 2").count(), 1, "{out}");
    assert!(out.contains("ok run copy on dc"), "{out}");
    // odd: cmd reports -1; runner records Windows' 4294967295 and accepts it.
    assert!(out.contains("ok run odd on dc"), "{out}");
    // forever: stopped by the timeout with taskkill, recorded as timed out.
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    // Every job folder is removed once its result is recorded; the timed-out job was killed
    // first.
    assert_eq!(srv.jobs(), vec![], "job folders left behind");
    let killed = srv.killed_jobs();
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert!(
        killed[0].starts_with("%SystemRoot%\\Temp\\runner-jobs\\"),
        "{killed:?}"
    );
}

/// The network to the WinRM server fails while a command runs, and stays down while the runner
/// tries to delete the command's shell: the step is left in doubt with a note about the shell,
/// never checked or retried while the command may still run. The next `apply` deletes that
/// shell first, and only then runs the idempotent step again.
#[test]
fn a_shell_left_open_by_a_lost_connection_is_deleted_before_the_step_runs_again() {
    let srv = start("127.0.0.71");
    srv.program("long-job", vec![Reply::stdout("working\r\n"), Reply::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let steps = "  - id: job\n    on: dc\n    run: long-job\n    idempotent: true\n    retries: 1\n    estimate: 1m\n";
    write(dir.path(), "c.yaml", playbook(&srv, steps).as_bytes());

    let child = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "c.yaml"])
        .current_dir(dir.path())
        .env(PW_ENV, PASSWORD)
        .env_remove("RUNNER_NOW")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        srv.wait_started("long-job", std::time::Duration::from_secs(60)),
        "long-job never started"
    );
    srv.set_unreachable(true);
    let out = child.wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("may still be running"), "{all}");
    assert!(all.contains("runner mark"), "{all}");
    // The command still runs in its shell: nothing deleted it, nothing ran it again.
    assert_eq!(srv.open_shells(), 1);
    let ran: Vec<String> = srv.delivered().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ran, ["long-job"], "{ran:?}");

    // The network is back; the command, were it run again, would now finish.
    srv.set_unreachable(false);
    srv.program("long-job", vec![Reply::finish("done\r\n", "", 0)]);
    let first_run = srv.requests();
    let old_shell = shell_selector(
        &first_run
            .iter()
            .find(|r| r.action == "Command")
            .expect("the first Command")
            .body,
    );
    let r = runner(&["apply", "c.yaml"], dir.path(), &[(PW_ENV, PASSWORD)]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(srv.open_shells(), 0, "the old shell was not deleted");
    let ran: Vec<String> = srv.delivered().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ran, ["long-job", "long-job"], "{ran:?}");
    // The second apply deleted the old shell before it ran anything.
    let second_run = &srv.requests()[first_run.len()..];
    let actions: Vec<&str> = second_run.iter().map(|r| r.action.as_str()).collect();
    let delete = actions.iter().position(|a| *a == "Delete");
    let command = actions.iter().position(|a| *a == "Command");
    assert!(
        matches!((delete, command), (Some(d), Some(c)) if d < c),
        "{actions:?}"
    );
    let deleted = delete.map(|d| shell_selector(&second_run[d].body));
    assert_eq!(deleted, Some(old_shell));
}

/// The ShellId selector of a request.
fn shell_selector(body: &str) -> String {
    let start =
        body.find("Name=\"ShellId\">").expect("a ShellId selector") + "Name=\"ShellId\">".len();
    let len = body[start..].find('<').expect("the selector's end");
    body[start..start + len].to_string()
}
