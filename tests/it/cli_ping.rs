//! `runner ping`: every target is connected (host key, authentication) and runs a no-op.

use crate::common::run::Run;
use crate::common::scene::{step, Scene};
use crate::common::Sshd;
use crate::common_cli::runner;
use std::path::Path;

fn ssh_target(name: &str, sshd: &Sshd, known_hosts: &std::path::Path) -> String {
    format!(
        "  {name}:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    key: {}\n    known_hosts: {}\n",
        sshd.host(),
        sshd.port(),
        sshd.user(),
        sshd.user_key_path().display(),
        known_hosts.display()
    )
}

#[test]
fn ping_tells_a_closed_port_apart_from_login_problems() {
    // A port nobody listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.92:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name: Ping\nwindow:\n  business_hours: []\ntargets:\n  gone:\n    transport: ssh\n    host: 127.0.0.92\n    port: {port}\n    user: x\nsteps:\n  - id: a\n    on: gone\n    run: 'true'\n"
    );
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    Run::at(dir.path())
        .args(["ping", "p.yaml"])
        .expect_exit(1)
        .expect_stdout_contains(format!(
            "FAILED at port {port} on 127.0.0.92 does not answer"
        ))
        .run();
}

#[test]
fn ping_reports_each_target_and_fails_if_any_fails() {
    let sshd = Sshd::start("127.0.0.91");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let targets = format!(
        "{}{}  here:\n    transport: local\n",
        ssh_target("good", &sshd, &sshd.known_hosts_path()),
        ssh_target("stranger", &sshd, &empty)
    );
    let text = format!(
        "name: Ping\nwindow:\n  business_hours: []\ntargets:\n{targets}steps:\n  - id: a\n    on: good\n    run: 'true'\n"
    );
    std::fs::write(dir.path().join("p.yaml"), &text).unwrap();
    let r = Run::at(dir.path())
        .args(["ping", "p.yaml"])
        .expect_exit(1)
        .run();
    let row = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {}", r.stdout))
            .to_string()
    };
    assert!(row("good").contains(" ok "), "{}", r.stdout);
    assert!(
        row("good").contains(&format!(
            "port open; host key and login accepted; whoami: {}",
            sshd.user()
        )),
        "{}",
        r.stdout
    );
    assert!(row("here").contains(" ok "), "{}", r.stdout);
    let stranger = row("stranger");
    assert!(stranger.contains("FAILED"), "{}", r.stdout);
    assert!(
        stranger.contains("not trusted") && stranger.contains("SHA256:"),
        "{}",
        r.stdout
    );
    assert!(
        stranger.contains("port open; FAILED at connect"),
        "{}",
        r.stdout
    );
    // Nothing is written by a ping.
    assert!(!dir.path().join(".runner").exists());

    // Without the stranger, everything answers: exit 0.
    let only_good = text.replace(&ssh_target("stranger", &sshd, &empty), "");
    std::fs::write(dir.path().join("p.yaml"), only_good).unwrap();
    Run::at(dir.path())
        .args(["ping", "p.yaml"])
        .expect_exit(0)
        .run();
}

/// Without `key` or `password`, the ssh-agent named by SSH_AUTH_SOCK logs in.
#[test]
fn ssh_agent_authentication_is_used_when_no_key_is_given() {
    let sshd = Sshd::start("127.0.0.93");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent runs");
    // The agent is ready once ssh-add can talk to it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let added = std::process::Command::new("ssh-add")
            .arg(sshd.user_key_path())
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .expect("ssh-add runs");
        if added.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = format!(
        "name: Agent\nwindow:\n  business_hours: []\ntargets:\n  box:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    known_hosts: {}\nsteps:\n  - id: a\n    on: box\n    run: echo via-agent > {}/out\n",
        sshd.host(),
        sshd.port(),
        sshd.user(),
        sshd.known_hosts_path().display(),
        dir.path().display()
    );
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    let sock_text = sock.display().to_string();
    let r = runner(
        &["apply", "p.yaml"],
        dir.path(),
        &[("SSH_AUTH_SOCK", &sock_text)],
    );
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        "via-agent\n"
    );
}

/// Removes the throwaway account when the test ends, however it ends.
struct Account(String);

impl Drop for Account {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg("-f")
            .arg(&self.0)
            .status();
    }
}

/// Password login, with the password from the environment, never shown.
#[test]
#[ignore = "needs root to create a throwaway account; scripts/test.sh runs it when root (as CI does)"]
fn ssh_password_authentication_logs_in_and_never_shows_the_password() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root to create a throwaway account"
    );
    let name = format!("rnpw{}", std::process::id() % 100_000);
    let password = "Pw-for-the-test-4711";
    let made = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/tmp",
            "--shell",
            "/bin/sh",
        ])
        .arg(&name)
        .status()
        .expect("useradd runs");
    assert!(made.success(), "useradd failed");
    let _account = Account(name.clone());
    let mut chpasswd = std::process::Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("chpasswd runs");
    std::io::Write::write_all(
        chpasswd.stdin.as_mut().unwrap(),
        format!("{name}:{password}\n").as_bytes(),
    )
    .unwrap();
    drop(chpasswd.stdin.take());
    assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");

    let sshd = Sshd::start_with(
        "127.0.0.94",
        &format!("Match User {name}\n    PasswordAuthentication yes\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name: Password\nwindow:\n  business_hours: []\ntargets:\n  box:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {name}\n    password: {{ env: RUNNER_TEST_SSH_PW }}\n    known_hosts: {}\nsteps:\n  - id: a\n    on: box\n    run: echo \"I am $(id -un)\"; echo {password}\n",
        sshd.host(),
        sshd.port(),
        sshd.known_hosts_path().display(),
    );
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    let r = runner(
        &["apply", "p.yaml"],
        dir.path(),
        &[("RUNNER_TEST_SSH_PW", password)],
    );
    // The server's log tells why a login failed.
    assert_eq!(r.code, 0, "{}{}\n{}", r.stdout, r.stderr, sshd.log());
    assert!(r.stdout.contains(&format!("I am {name}")), "{}", r.stdout);
    // The command echoed the password: it is masked.
    assert!(
        !r.stdout.contains(password) && !r.stderr.contains(password),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("********"), "{}", r.stdout);

    // A wrong password is refused, and the wrong value is not shown either.
    Run::at(dir.path())
        .args(["ping", "p.yaml"])
        .env("RUNNER_TEST_SSH_PW", "not-the-password")
        .expect_exit(1)
        .expect_stdout_lacks("not-the-password")
        .run();
}

/// `p.yaml` whose one target, `box`, is a new sshd on `ip` whose key is not in the (empty)
/// `known_hosts` file of the folder, named in the playbook as `known_hosts`.
fn untrusted(ip: &str, known_hosts: &str) -> Scene {
    let scene = Scene::new("Trust")
        .file_name("p.yaml")
        .ssh("box", ip)
        .known_hosts("box", Path::new(known_hosts))
        .step(step("a", "box", "true"));
    std::fs::write(scene.path("known_hosts"), "").unwrap();
    scene.write();
    scene
}

#[test]
fn trust_without_a_terminal_shows_the_fingerprint_and_fails_until_yes() {
    let scene = untrusted("127.0.0.96", "./known_hosts");
    let dir = scene.dir();

    // ping names the real command, not placeholders.
    scene
        .run(["ping", "p.yaml"])
        .expect_exit(1)
        .expect_stdout_contains("`runner trust p.yaml box`")
        .expect_stdout_lacks("PLAYBOOK")
        .expect_stdout_lacks("././")
        .run();
    // So does apply, refused by the same unknown key.
    let apply = scene
        .run(["apply", "p.yaml", "--quiet"])
        .expect_exit(1)
        .run();
    let shown = format!("{}{}", apply.stdout, apply.stderr);
    assert!(shown.contains("`runner trust p.yaml box`"), "{shown}");
    assert!(!shown.contains("PLAYBOOK"), "{shown}");

    // No terminal, no --yes: the fingerprint is shown, nothing is recorded, exit 1.
    scene
        .run(["trust", "p.yaml"])
        .expect_exit(1)
        .expect_stdout_contains("box: 127.0.0.96:")
        .expect_stdout_contains("SHA256:")
        .expect_stdout_contains("box: not trusted")
        .expect_stderr_contains("--yes")
        .run();
    assert_eq!(
        std::fs::read_to_string(dir.join("known_hosts")).unwrap(),
        ""
    );

    // With --yes after checking: recorded, with a clean path; ping then passes.
    scene
        .run(["trust", "p.yaml", "--yes"])
        .expect_exit(0)
        .expect_stdout_contains("box: recorded in ./known_hosts\n")
        .expect_stdout_lacks("././")
        .run();
    scene.run(["ping", "p.yaml"]).expect_exit(0).run();
}

/// Runs `runner ARGS` on a pseudo-terminal (util-linux `script`), typing `input`; returns
/// the exit code and what the terminal showed.
fn on_a_terminal(args: &str, dir: &std::path::Path, input: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_runner")),
            "/dev/null",
        ])
        .current_dir(dir)
        .env_remove("RUNNER_NOW")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux script runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

#[test]
fn trust_on_a_terminal_takes_y_and_answers_anything_else() {
    let scene = untrusted("127.0.0.97", "known_hosts");
    let dir = scene.dir();

    let (code, screen) = on_a_terminal("trust p.yaml", dir, "ok\n");
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("SHA256:"), "{screen}");
    assert!(screen.contains("Type `yes` to trust it"), "{screen}");
    assert!(
        screen.contains("box: not trusted (the answer was `ok`, not `yes`)"),
        "{screen}"
    );

    let (code, screen) = on_a_terminal("trust p.yaml", dir, "y\n");
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("box: recorded in ./known_hosts"),
        "{screen}"
    );
    scene.run(["ping", "p.yaml"]).expect_exit(0).run();
}
