//! The connection: it is re-made after the server restarts, a loss during a command is reported as
//! a loss, and a wrong key or refused port are told apart.

use super::*;

#[test]
fn reconnects_after_the_server_restarts() {
    let mut sshd = Sshd::start("127.0.0.13");
    let mut t = transport(&sshd);
    let before = run_sh(&mut t, "echo $PPID", None).expect("exec").stdout;
    sshd.restart();
    t.connect().expect("reconnect");
    let after = run_sh(&mut t, "echo $PPID", None).expect("exec after restart");
    assert_eq!(after.exit, CommandExit::Code(0));
    assert_ne!(before, after.stdout, "must be a new session");
}

#[test]
fn connection_lost_during_a_command_is_reported_as_such() {
    let mut sshd = Sshd::start("127.0.0.14");
    let mut t = transport(&sshd);
    t.connect().expect("connect");
    let ctl = Control::new(Some(Duration::from_secs(120)));
    let mut restarted = false;
    let err = t
        .exec("echo started; sleep 300", Shell::Sh, &ctl, &mut |s, b| {
            if s == Stream::Stdout && b.starts_with(b"started") && !restarted {
                restarted = true;
                sshd.restart();
            }
        })
        .expect_err("the connection dropped");
    assert!(err.is_connection_lost(), "{err:?}");
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err:?}"
    );
    // And the next connect() brings it back.
    t.connect().expect("reconnect");
    assert_eq!(
        run_sh(&mut t, "echo back", None).expect("exec").stdout,
        "back\n"
    );
}

#[test]
fn wrong_key_is_an_auth_error_and_refused_port_a_connect_error() {
    let sshd = Sshd::start("127.0.0.15");
    let wrong = sshd.dir().join("wrong_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let mut cfg = ssh_config(&sshd);
    cfg.auth = SshAuth::Key {
        path: wrong,
        passphrase: None,
    };
    let err = SshTransport::new(cfg.clone())
        .connect()
        .expect_err("wrong key");
    assert!(matches!(err, TransportError::Auth { .. }), "{err:?}");
    assert!(!err.is_connection_lost());

    cfg.auth = SshAuth::Key {
        path: sshd.dir().join("no-such-key"),
        passphrase: None,
    };
    let err = SshTransport::new(cfg.clone())
        .connect()
        .expect_err("missing key");
    assert!(err.to_string().contains("no-such-key"), "{err}");

    // Nothing listens on this port any more.
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.15", 0)).expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = ssh_config(&sshd);
    cfg.port = port;
    let err = SshTransport::new(cfg).connect().expect_err("refused");
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert!(err.is_connection_lost());
}
