//! Relay targets (`transport: relay`): a machine runner cannot reach itself, whose commands
//! another target (`via`) runs through a command line of the playbook's (`run`). Here the
//! `via` target is a real sshd and the line `sh -c {command}`, or `ssh` to a second sshd;
//! psexec on Windows is the same mechanism with `cmd` quoting (unit-tested in the transport).

use std::fs;
use std::path::Path;

use crate::common::Sshd;
use crate::common_cli::{runner, Run};

/// YAML single-quoted scalar: everything literal, `'` doubled.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// YAML double-quoted scalar (JSON's), for text with line breaks.
fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string is JSON")
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

/// An ssh target logging into `sshd` with the harness key and known_hosts.
fn ssh_target(name: &str, sshd: &Sshd) -> String {
    format!(
        "  {name}:\n    transport: ssh\n    host: {host}\n    port: {port}\n    user: {user}\n    key: {key}\n    known_hosts: {kh}\n",
        host = q(sshd.host()),
        port = sshd.port(),
        user = q(&sshd.user()),
        key = q(&sshd.user_key_path().display().to_string()),
        kh = q(&sshd.known_hosts_path().display().to_string()),
    )
}

fn relay_target(name: &str, via: &str, run: &str) -> String {
    format!(
        "  {name}:\n    transport: relay\n    via: {via}\n    run: {}\n",
        q(run)
    )
}

fn playbook(targets: &str, steps: &str) -> String {
    format!("name: relay\nwindow:\n  business_hours: []\ntargets:\n{targets}steps:\n{steps}")
}

fn write(dir: &Path, yaml: &str) -> String {
    let pb = dir.join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    pb.display().to_string()
}

/// `line:column` (1-based) of the first `needle` in `text`.
fn pos_of(text: &str, needle: &str) -> String {
    let at = text.find(needle).expect("the needle is in the text");
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}")
}

/// A command that no careless quoting survives: both quotes, `$` to be expanded by the far
/// shell and `$` to stay, spaces, a backslash and a line break.
const AWKWARD: &str = "X='a  b'; printf '%s|' \"$X\" 'it'\\''s' '$HOME stays' \"back\\\\slash\" > OUT/awkward\necho \"line two: $((6*7))\" >> OUT/awkward\necho 'to stdout'";

#[test]
fn a_relay_runs_its_steps_on_via_passing_output_and_exit_codes() {
    let sshd = Sshd::start("127.0.31.1");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let awkward = AWKWARD.replace("OUT", &out.path().display().to_string());
    let steps = format!(
        "- id: awkward\n  on: old\n  run: {}\n- id: seven\n  on: old\n  run: 'echo before-seven; echo on-stderr >&2; exit 7'\n- id: never\n  on: old\n  run: 'echo never'\n",
        json(&awkward)
    );
    let yaml = playbook(
        &(ssh_target("new", &sshd) + &relay_target("old", "new", "sh -c {command}")),
        &steps,
    );
    let pb = write(dir.path(), &yaml);

    let plan = runner(&["plan", &pb], dir.path(), &[]);
    assert_exit(&plan, 0);
    assert!(
        !plan.stdout.contains("relay-unverified") && !plan.stdout.contains("not yet proven"),
        "a relay through sh is not the unproven Windows kind:\n{}",
        plan.stdout
    );

    let r = runner(&["apply", &pb], dir.path(), &[]);
    assert_exit(&r, 1);
    assert_eq!(
        fs::read_to_string(out.path().join("awkward")).expect("the relayed command ran"),
        "a  b|it's|$HOME stays|back\\slash|line two: 42\n"
    );
    let all = format!("{}{}", r.stdout, r.stderr);
    for seen in ["to stdout", "before-seven", "on-stderr"] {
        assert!(
            all.contains(seen),
            "{seen} is passed through:\n{}",
            show(&r)
        );
    }
    assert!(
        !all.contains("never\n"),
        "nothing runs after the failure:\n{}",
        show(&r)
    );

    // Journaled as steps on `old`, with the exit code of the relayed command.
    let status = runner(&["status", &pb, "--format", "json"], dir.path(), &[]);
    assert_exit(&status, 0);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status is JSON");
    let text = v.to_string();
    assert!(text.contains("\"old\""), "{text}");
    assert!(
        text.contains("exit code 7") || text.contains("exit 7"),
        "{text}"
    );
}

#[test]
fn changing_via_or_run_shows_done_steps_as_changed() {
    let sshd = Sshd::start("127.0.31.2");
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    let steps = format!(
        "- id: once\n  on: old\n  run: {}\n",
        q(&format!("echo ran >> {}", ledger.display()))
    );
    let targets = |run: &str| ssh_target("new", &sshd) + &relay_target("old", "new", run);
    let pb = write(dir.path(), &playbook(&targets("sh -c {command}"), &steps));
    assert_exit(&runner(&["apply", &pb], dir.path(), &[]), 0);
    assert_exit(&runner(&["apply", &pb], dir.path(), &[]), 0);
    assert_eq!(fs::read_to_string(&ledger).expect("ledger"), "ran\n");

    // Another command line on `via`: maybe another machine at the far end.
    write(
        dir.path(),
        &playbook(&targets("exec sh -c {command}"), &steps),
    );
    let changed = runner(&["apply", &pb], dir.path(), &[]);
    assert_exit(&changed, 4);
    assert!(
        changed
            .stderr
            .contains("relay(exec sh -c {command}) via ssh://"),
        "the new identity names the relay chain:\n{}",
        show(&changed)
    );
    assert_eq!(fs::read_to_string(&ledger).expect("ledger"), "ran\n");
}

#[test]
fn a_relay_through_ssh_to_a_second_server_reaches_it() {
    let first = Sshd::start("127.0.31.3");
    let second = Sshd::start("127.0.31.4");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    // OpenSSH's client on the first server logs into the second one; its login shell runs
    // the command, which the first server's `sh` received as one word.
    let run = format!(
        "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={kh} -i {key} -p {port} {user}@{host} {{command}}",
        kh = second.known_hosts_path().display(),
        key = second.user_key_path().display(),
        port = second.port(),
        user = second.user(),
        host = second.host(),
    );
    let awkward = AWKWARD.replace("OUT", &out.path().display().to_string());
    let steps = format!(
        "- id: where\n  on: far\n  run: {}\n- id: awkward\n  on: far\n  run: {}\n- id: seven\n  on: far\n  run: 'exit 7'\n",
        q(&format!(
            "echo \"$SSH_CONNECTION\" > {}/where",
            out.path().display()
        )),
        json(&awkward),
    );
    let yaml = playbook(
        &(ssh_target("first", &first) + &relay_target("far", "first", &run)),
        &steps,
    );
    let pb = write(dir.path(), &yaml);
    let r = runner(&["apply", &pb], dir.path(), &[]);
    assert_exit(&r, 1);
    let conn = fs::read_to_string(out.path().join("where")).expect("the far command ran");
    let server = conn
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let port = conn
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        (server.as_str(), port.as_str()),
        (second.host(), second.port().to_string().as_str()),
        "{conn}"
    );
    assert_eq!(
        fs::read_to_string(out.path().join("awkward")).expect("the awkward command ran"),
        "a  b|it's|$HOME stays|back\\slash|line two: 42\n"
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("to stdout"),
        "{}",
        show(&r)
    );
}

/// A playbook with a relay that is wrong in one way: exit 2, nothing runs, and the message
/// points at the line and column of what is wrong.
#[track_caller]
fn refused(yaml: &str, at: &str, says: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = write(dir.path(), yaml);
    for cmd in ["validate", "apply"] {
        let r = runner(&[cmd, &pb], dir.path(), &[]);
        assert_exit(&r, 2);
        let want = format!("cutover.yaml:{}", pos_of(yaml, at));
        assert!(r.stderr.contains(&want), "{want} in:\n{}", show(&r));
        assert!(r.stderr.contains(says), "{says:?} in:\n{}", show(&r));
    }
    assert!(!dir.path().join(".runner").exists(), "nothing was written");
}

const HERE: &str = "  here:\n    transport: local\n";
const STEP: &str = "- id: one\n  on: old\n  run: 'echo one'\n";

#[test]
fn bad_relays_are_refused_with_their_position() {
    // `via` names nothing.
    let yaml = playbook(
        &(HERE.to_string() + &relay_target("old", "hree", "sh -c {command}")),
        STEP,
    );
    refused(&yaml, "hree", "`via` names `hree`, which is not a target");
    // A circle: a -> b -> a.
    let yaml = playbook(
        &(relay_target("old", "other", "sh -c {command}")
            + &relay_target("other", "old", "sh -c {command}")),
        STEP,
    );
    refused(
        &yaml,
        "other\n",
        "go round in a circle: old -> other -> old",
    );
    // No `{command}` in `run`.
    let yaml = playbook(
        &(HERE.to_string() + &relay_target("old", "here", "sh -c true")),
        STEP,
    );
    refused(
        &yaml,
        "'sh -c true'",
        "`run` must contain `{command}` exactly once",
    );
    // No `via` at all.
    let yaml = playbook(
        &(HERE.to_string() + "  old:\n    transport: relay\n    run: 'sh -c {command}'\n"),
        STEP,
    );
    refused(&yaml, "transport: relay", "relay target `old` has no `via`");
    // `via` on a target that is no relay.
    let yaml = playbook(
        &(HERE.to_string() + "    via: here\n"),
        "- id: one\n  on: here\n  run: 'echo one'\n",
    );
    refused(&yaml, "here\n", "`via` applies only to relay targets");
}

#[test]
fn what_a_command_line_cannot_carry_is_refused_on_relays() {
    let targets = HERE.to_string() + &relay_target("old", "here", "sh -c {command}");
    let step = |extra: &str| format!("- id: one\n  on: old\n  run: 'echo one'\n{extra}");
    let yaml = playbook(&targets, &step("  env:\n    PW: { env: RUNNER_TEST_PW }\n"));
    refused(
        &yaml,
        "PW:",
        "`env` and `stdin` cannot reach a command on relay target `old`",
    );
    let yaml = playbook(&targets, &step("  detach: true\n"));
    refused(&yaml, "true\n", "cannot run detached");
    fs::create_dir_all(std::env::temp_dir()).expect("temp dir");
    let yaml = playbook(&targets, "- id: one\n  on: old\n  reboot: {}\n");
    refused(
        &yaml,
        "{}",
        "`reboot` steps cannot run on relay target `old`",
    );

    // Files cannot go through a command line: a copy from or to a relay, a fetch from one.
    let yaml = playbook(
        &targets,
        "- id: one\n  copy: { from: old, path: /a, to: here, dest: /b }\n",
    );
    refused(
        &yaml,
        "{ from: old",
        "a relay target cannot send or receive files: `old`",
    );
    let yaml = playbook(
        &targets,
        "- id: one\n  on: old\n  fetch: { path: /a, dest: b }\n",
    );
    refused(
        &yaml,
        "{ path: /a",
        "a relay target cannot send files: `old`",
    );

    // A long step on a relay runs attached: no `detach` needed, no job folder.
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    let pb = write(
        dir.path(),
        &playbook(
            &targets,
            &format!(
                "- id: long\n  on: old\n  estimate: 2h\n  run: {}\n",
                q(&format!("echo ran >> {}", ledger.display()))
            ),
        ),
    );
    let r = runner(&["apply", &pb], dir.path(), &[]);
    assert_exit(&r, 0);
    assert_eq!(fs::read_to_string(&ledger).expect("ledger"), "ran\n");
    assert!(!dir.path().join(".runner/jobs").exists(), "{}", show(&r));
}

/// psexec-style: the relay's `via` runs `cmd`. What cmd cannot pass literally is refused
/// before anything runs, and the plan says the route is unproven.
#[test]
fn cmd_relays_refuse_what_cmd_would_change_and_are_flagged_unverified() {
    let win = "  new-sbs:\n    transport: winrm\n    host: 192.0.2.3\n    user: administrator\n    password: { env: RUNNER_TEST_UNSET_PW }\n";
    let targets = win.to_string()
        + &relay_target(
            "old",
            "new-sbs",
            "psexec \\\\old-sbs -accepteula -nobanner cmd /c {command}",
        );
    let yaml = playbook(
        &targets,
        "- id: one\n  on: old\n  run: 'echo %COMPUTERNAME%'\n",
    );
    refused(&yaml, "'echo %COMPUTERNAME%'", "holds `%`");

    let dir = tempfile::tempdir().expect("tempdir");
    let pb = write(
        dir.path(),
        &playbook(
            &targets,
            "- id: one\n  on: old\n  run: 'netdom query fsmo'\n  estimate: 1m\n  check: 'ver'\n",
        ),
    );
    let plan = runner(&["plan", &pb], dir.path(), &[]);
    assert_exit(&plan, 0);
    assert!(
        plan.stdout.contains("unverified on real Windows 2000"),
        "{}",
        show(&plan)
    );
}

/// `runner ping` on a relay reaches its `via` and runs `whoami` at the far end through it.
#[test]
fn ping_runs_whoami_through_the_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = dir.path().join("relayed");
    let run = format!("touch {}; sh -c {{command}}", seen.display());
    let pb = write(
        dir.path(),
        &playbook(
            &(HERE.to_string() + &relay_target("old", "here", &run)),
            STEP,
        ),
    );
    let r = runner(&["ping", &pb], dir.path(), &[]);
    assert_exit(&r, 0);
    assert!(
        seen.exists(),
        "whoami went through the `run` line:\n{}",
        show(&r)
    );
    assert!(
        r.stdout.contains("reached `here`, the relay's `via`")
            && r.stdout
                .contains(&format!("whoami: {}", crate::common::sshd::current_user())),
        "{}",
        show(&r)
    );
    // A relay whose far end fails: ping fails (exit 1) and says so.
    let pb = write(
        dir.path(),
        &playbook(
            &(HERE.to_string() + &relay_target("old", "here", "false {command}")),
            STEP,
        ),
    );
    let r = runner(&["ping", &pb], dir.path(), &[]);
    assert_exit(&r, 1);
}

/// A relay may be reached through another relay: the command is quoted once per hop.
#[test]
fn a_chain_of_relays_quotes_the_command_at_each_hop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let awkward = AWKWARD.replace("OUT", &out.path().display().to_string());
    let targets = HERE.to_string()
        + &relay_target("mid", "here", "sh -c {command}")
        + &relay_target("far", "mid", "sh -c {command}");
    let pb = write(
        dir.path(),
        &playbook(
            &targets,
            &format!("- id: one\n  on: far\n  run: {}\n", json(&awkward)),
        ),
    );
    let r = runner(&["apply", &pb], dir.path(), &[]);
    assert_exit(&r, 0);
    assert_eq!(
        fs::read_to_string(out.path().join("awkward")).expect("the command ran"),
        "a  b|it's|$HOME stays|back\\slash|line two: 42\n"
    );
    let status = runner(&["status", &pb, "--format", "json"], dir.path(), &[]);
    assert_exit(&status, 0);
}
