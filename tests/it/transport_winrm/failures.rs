//! Each failure says what it is and what to do: a quota fault, a vanished shell, a wrong password,
//! HTTP 500 on plain HTTP, nothing listening, `sh` on Windows; a connection the server closed while
//! idle is replaced.

use super::*;

#[test]
fn quota_fault_shows_code_and_fix() {
    let srv = start("127.0.0.27");
    srv.set_quota_exceeded(true);
    let mut t = transport(&srv);
    let e = cmd(&mut t, "echo x").unwrap_err();
    let text = error_text(&e);
    assert!(text.contains("QuotaLimit"), "{text}");
    assert!(text.contains("2150859173"), "{text}");
    assert!(text.contains("MaxShellsPerUser"), "{text}");
    assert!(text.contains("30 concurrent shells"), "{text}");
    // The cause stays typed: the WinRM fault itself, not a boxed I/O error to downcast.
    let TransportError::Winrm { source, .. } = &e else {
        panic!("not a WinRM error: {e:?}");
    };
    let WinrmError::Fault { fault } = source else {
        panic!("not a fault: {source:?}");
    };
    assert_eq!(fault.subcode.as_deref(), Some("QuotaLimit"));
    assert!(std::error::Error::source(&e).is_some_and(|c| c.is::<WinrmError>()));
}

#[test]
fn a_vanished_shell_is_an_invalid_selectors_error() {
    let srv = start("127.0.0.28");
    srv.program("job", vec![Reply::stdout("begun\r\n"), Reply::LoseShell]);
    let mut t = transport(&srv);
    let mut seen = Vec::new();
    let e = t
        .exec("job", Shell::Cmd, &Control::new(None), &mut |_, b| {
            seen.extend_from_slice(b)
        })
        .unwrap_err();
    let text = error_text(&e);
    assert!(text.contains("InvalidSelectors"), "{text}");
    assert!(text.contains("2150858843"), "{text}");
    assert!(text.contains("may or may not have finished"), "{text}");
    assert_eq!(seen, b"begun\r\n");
    // The Delete was still attempted after the error.
    assert!(srv.requests().iter().any(|r| r.action == "Delete"));
}

#[test]
fn wrong_password_is_an_auth_error() {
    let srv = start("127.0.0.29");
    let mut t = transport_with(&srv, "wrong", None);
    let e = cmd(&mut t, "echo x").unwrap_err();
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn http_500_on_plain_http_explains_message_encryption() {
    let srv = WinrmServer::start(
        "127.0.0.30",
        Options {
            user: USER.into(),
            password: PASSWORD.into(),
            require_encryption: true,
            ..Options::default()
        },
    );
    let mut t = transport(&srv);
    let text = error_text(&cmd(&mut t, "echo x").unwrap_err());
    assert!(text.contains("500"), "{text}");
    assert!(text.contains("AllowUnencrypted"), "{text}");
}

#[test]
fn a_connection_the_server_closed_while_idle_is_replaced() {
    let srv = WinrmServer::start(
        "127.0.0.46",
        Options {
            user: USER.into(),
            password: PASSWORD.into(),
            close_after_delete: true,
            ..Options::default()
        },
    );
    let mut t = transport(&srv);
    for i in 0..3 {
        let out = cmd(&mut t, &format!("echo {i}")).unwrap();
        assert_eq!(out.stdout, format!("{i}\r\n"));
    }
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn nothing_listening_is_a_connect_error_with_a_winrm_hint() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.48:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut t = WinrmTransport::new(WinrmConfig {
        name: "win".into(),
        host: "127.0.0.48".into(),
        port,
        tls: None,
        credentials: Credentials::Basic {
            user: USER.into(),
            password: Secret::new(PASSWORD),
        },
        connect_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(20),
    });
    let e = t.connect().unwrap_err();
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert!(e.is_connection_lost());
    assert!(e.to_string().contains("winrm quickconfig"), "{e}");
}

#[test]
fn sh_is_refused_on_windows_targets() {
    let srv = start("127.0.0.33");
    let mut t = transport(&srv);
    let e = run(&mut t, "ls", Shell::Sh, &Control::new(None)).unwrap_err();
    assert!(
        matches!(e, TransportError::ShellUnavailable { .. }),
        "{e:?}"
    );
    assert!(srv.requests().is_empty());
}
