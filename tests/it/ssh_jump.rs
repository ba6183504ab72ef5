//! SSH through jump hosts (`jump:`): real sshd servers on loopback, each with its own host key,
//! each hop checked against its own known_hosts.

use crate::common::winrm_server;

use std::fs;
use std::path::Path;

use crate::common::Sshd;
use crate::common_cli::{runner, Run};

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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

/// An ssh target for `sshd`, checked against `known_hosts`, through `jump` if given.
fn target(name: &str, sshd: &Sshd, known_hosts: &Path, jump: Option<&str>) -> String {
    let mut t = format!(
        "  {name}:\n    transport: ssh\n    host: {host}\n    port: {port}\n    user: {user}\n    key: {key}\n    known_hosts: {kh}\n",
        host = q(sshd.host()),
        port = sshd.port(),
        user = q(&sshd.user()),
        key = q(&sshd.user_key_path().display().to_string()),
        kh = q(&known_hosts.display().to_string()),
    );
    if let Some(j) = jump {
        t.push_str(&format!("    jump: {j}\n"));
    }
    t
}

fn accepted(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

#[test]
fn a_target_behind_two_jump_hosts_runs_its_steps_and_needs_every_hop() {
    // c is reached directly, b through c, a through b (and so through c).
    let a = Sshd::start("127.0.16.11");
    let b = Sshd::start("127.0.16.12");
    let mut c = Sshd::start("127.0.16.13");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ran-on-a");
    let yaml = format!(
        "name: jumps\nwindow:\n  business_hours: []\ntargets:\n{}{}{}steps:\n- id: on-a\n  on: a\n  run: {}\n",
        target("a", &a, &a.known_hosts_path(), Some("b")),
        target("b", &b, &b.known_hosts_path(), Some("c")),
        target("c", &c, &c.known_hosts_path(), None),
        q(&format!("echo \"$SSH_CONNECTION\" > {}", out.display())),
    );
    let pb = dir.path().join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    let pb_s = pb.display().to_string();

    let plan = runner(&["plan", &pb_s], dir.path(), &[]);
    assert_exit(&plan, 0);
    assert!(
        plan.stdout.contains("through jump host b") && plan.stdout.contains("through jump host c"),
        "the plan shows the jumps:\n{}",
        plan.stdout
    );

    let (a0, b0, c0) = (accepted(&a), accepted(&b), accepted(&c));
    let r = runner(&["apply", &pb_s], dir.path(), &[]);
    assert_exit(&r, 0);
    let seen = fs::read_to_string(&out).expect("the step ran on a");
    assert!(
        seen.contains(&format!(" {} {}", a.host(), a.port())),
        "{seen}"
    );
    assert!(accepted(&a) > a0, "a logged a session");
    assert!(
        accepted(&b) > b0,
        "b was logged into: it carried a's connection"
    );
    assert!(
        accepted(&c) > c0,
        "c was logged into: it carried b's connection"
    );

    // Without the first hop, a cannot be reached: the connection really goes through it.
    c.stop();
    fs::remove_file(&out).expect("remove the record");
    fs::write(
        &pb,
        fs::read_to_string(&pb)
            .expect("read")
            .replace("id: on-a", "id: on-a-again")
            .replace(" > ", " >> "),
    )
    .expect("rewrite the playbook");
    let r = runner(&["apply", &pb_s], dir.path(), &[]);
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(!out.exists(), "nothing ran on a without its jump hosts");
    assert!(
        r.stdout.contains("jump host") || r.stderr.contains("jump host"),
        "the error says the jump host failed:\n{}",
        show(&r)
    );
}

#[test]
fn a_wrong_host_key_on_the_second_hop_is_refused_naming_that_hop() {
    let a = Sshd::start("127.0.16.14");
    let b = Sshd::start("127.0.16.15");
    let c = Sshd::start("127.0.16.16");
    let dir = tempfile::tempdir().expect("tempdir");
    // b's known_hosts records another server's key for b's address.
    let (key_type, other_key) = a.host_key();
    let wrong = dir.path().join("b_known_hosts");
    fs::write(
        &wrong,
        format!("[{}]:{} {key_type} {other_key}\n", b.host(), b.port()),
    )
    .expect("write known_hosts");
    let out = dir.path().join("ran-on-a");
    let yaml = format!(
        "name: jumps\nwindow:\n  business_hours: []\ntargets:\n{}{}{}steps:\n- id: on-a\n  on: a\n  run: {}\n",
        target("a", &a, &a.known_hosts_path(), Some("b")),
        target("b", &b, &wrong, Some("c")),
        target("c", &c, &c.known_hosts_path(), None),
        q(&format!("touch {}", out.display())),
    );
    let pb = dir.path().join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    let b0 = accepted(&b);
    let r = runner(&["apply", &pb.display().to_string()], dir.path(), &[]);
    assert_eq!(r.code, 1, "{}", show(&r));
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(
        text.contains("THE HOST KEY OF")
            && text.contains(&format!("{} PORT {}", b.host(), b.port()))
            && text.contains("jump host b"),
        "the refusal names the second hop:\n{}",
        show(&r)
    );
    assert!(!out.exists(), "nothing ran on a");
    assert_eq!(accepted(&b), b0, "nothing logged into b");
}

#[test]
fn jump_mistakes_are_refused_with_their_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = |name: &str, jump: &str| {
        format!(
            "  {name}:\n    transport: ssh\n    host: 127.0.0.1\n    user: u\n    jump: {jump}\n"
        )
    };
    let cases = [
        (
            format!("{}{}{}", t("a", "b"), t("b", "c"), t("c", "a")),
            "go round in a circle: a -> b -> c -> a",
            "p.yaml:9:11",
        ),
        (
            t("a", "nowhere"),
            "`jump` names `nowhere`, which is not a target",
            "p.yaml:9:11",
        ),
        (
            format!("{}  here:\n    transport: local\n", t("a", "here")),
            "which is not an `ssh` target",
            "p.yaml:9:11",
        ),
    ];
    for (targets, want, at) in cases {
        let yaml = format!(
            "name: jumps\nwindow:\n  business_hours: []\ntargets:\n{targets}steps:\n- id: x\n  on: a\n  run: x\n"
        );
        fs::write(dir.path().join("p.yaml"), yaml).expect("write");
        let r = runner(&["validate", "p.yaml"], dir.path(), &[]);
        assert_exit(&r, 2);
        assert!(
            r.stderr.contains(want) && r.stderr.contains(at),
            "wanted {want:?} at {at}:\n{}",
            show(&r)
        );
    }
}

#[test]
fn ssh_config_gives_what_the_target_does_not_set_and_its_proxyjump_is_followed() {
    let a = Sshd::start("127.0.16.21");
    let gw = Sshd::start("127.0.16.22");
    let home = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(home.path().join(".ssh")).expect("mkdir");
    // `~/` in IdentityFile is the temporary HOME.
    fs::copy(gw.user_key_path(), home.path().join(".ssh").join("gw_key")).expect("copy key");
    fs::write(
        home.path().join(".ssh").join("config"),
        format!(
            "Host inner\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  ProxyJump jumpbox\n\
             Host jumpbox\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile ~/.ssh/gw_key\n\
             Host *\n  User nobody-else\n",
            a.host(),
            a.port(),
            a.user(),
            a.user_key_path().display(),
            gw.host(),
            gw.port(),
            gw.user(),
        ),
    )
    .expect("write ~/.ssh/config");
    // One known_hosts for the target and its jump host, as a user's own would be.
    let kh = dir.path().join("known_hosts");
    fs::write(
        &kh,
        fs::read_to_string(a.known_hosts_path()).expect("read")
            + &fs::read_to_string(gw.known_hosts_path()).expect("read"),
    )
    .expect("write known_hosts");
    let out = dir.path().join("ran");
    let yaml = format!(
        "name: config\nwindow:\n  business_hours: []\ntargets:\n  a:\n    transport: ssh\n    host: inner\n    ssh_config: true\n    known_hosts: {}\nsteps:\n- id: one\n  on: a\n  run: {}\n",
        q(&kh.display().to_string()),
        q(&format!("echo \"$SSH_CONNECTION\" > {}", out.display())),
    );
    let pb = dir.path().join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    let pb_s = pb.display().to_string();
    let home_s = home.path().display().to_string();
    let env = [("HOME", home_s.as_str())];

    let plan = runner(&["plan", &pb_s], dir.path(), &env);
    assert_exit(&plan, 0);
    for want in [
        format!("HostName {}", a.host()),
        format!("Port {}", a.port()),
        format!("User {}", a.user()),
        "ProxyJump jumpbox".to_string(),
    ] {
        assert!(
            plan.stdout.contains(&want),
            "the plan shows what came from ~/.ssh/config ({want}):\n{}",
            plan.stdout
        );
    }
    let g0 = accepted(&gw);
    let r = runner(&["apply", &pb_s], dir.path(), &env);
    assert_exit(&r, 0);
    let seen = fs::read_to_string(&out).expect("the step ran on a");
    assert!(
        seen.contains(&format!(" {} {}", a.host(), a.port())),
        "{seen}"
    );
    assert!(
        accepted(&gw) > g0,
        "the ProxyJump host carried the connection"
    );

    // Without the file, `ssh_config: true` is bad input at its key.
    let empty = tempfile::tempdir().expect("tempdir");
    let r = runner(
        &["validate", &pb_s],
        dir.path(),
        &[("HOME", &empty.path().display().to_string())],
    );
    assert_exit(&r, 2);
    assert!(
        r.stderr.contains("cutover.yaml:8:") && r.stderr.contains(".ssh/config"),
        "{}",
        show(&r)
    );
}

#[test]
fn a_winrm_target_is_reached_through_an_ssh_jump_host() {
    const WINRM_PW: &str = "Jump!pw";
    let srv = winrm_server::WinrmServer::start(
        "127.0.16.31",
        winrm_server::Options {
            user: "admin".into(),
            password: WINRM_PW.into(),
            ..winrm_server::Options::default()
        },
    );
    let mut gw = Sshd::start("127.0.16.32");
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "name: winrm jump\nwindow:\n  business_hours: []\ntargets:\n{}  dc:\n    transport: winrm\n    host: {}\n    port: {}\n    user: admin\n    password: {{ env: RUNNER_TEST_WINRM_PW }}\n    auth: basic\n    allow_unencrypted: true\n    jump: gw\nsteps:\n- id: hello\n  on: dc\n  run: echo hello through the jump\n",
        target("gw", &gw, &gw.known_hosts_path(), None),
        srv.host(),
        srv.port(),
    );
    let pb = dir.path().join("cutover.yaml");
    fs::write(&pb, yaml).expect("write the playbook");
    let pb_s = pb.display().to_string();
    let env = [("RUNNER_TEST_WINRM_PW", WINRM_PW)];
    let g0 = accepted(&gw);
    let r = runner(&["apply", &pb_s], dir.path(), &env);
    assert_exit(&r, 0);
    assert!(r.stdout.contains("hello through the jump"), "{}", show(&r));
    assert!(
        accepted(&gw) > g0,
        "the jump host carried the WinRM connection"
    );

    // Without the jump host the Windows server is not reached.
    gw.stop();
    fs::write(
        &pb,
        fs::read_to_string(&pb)
            .expect("read")
            .replace("id: hello", "id: hello-again")
            .replace("through the jump", "again"),
    )
    .expect("rewrite");
    let r = runner(&["apply", &pb_s], dir.path(), &env);
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("jump host"),
        "{}",
        show(&r)
    );
}
