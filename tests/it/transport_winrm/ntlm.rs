//! NTLM seals every message over HTTP and not over HTTPS, works with a local account, refuses a
//! wrong password at connect, re-authenticates when the server drops the connection, and says what
//! a Basic-only server offers.

use super::*;

fn start_ntlm(ip: &str, user: &str, https: bool) -> WinrmServer {
    WinrmServer::start(
        ip,
        Options {
            user: user.into(),
            password: PASSWORD.into(),
            ntlm: true,
            https,
            close_after_delete: false,
            ..Options::default()
        },
    )
}

fn ntlm_transport(srv: &WinrmServer, user: &str, password: &str) -> WinrmTransport {
    WinrmTransport::new(WinrmConfig {
        name: "win".into(),
        host: srv.host(),
        port: srv.port(),
        tls: srv
            .cert_sha256
            .as_deref()
            .map(|fp| TlsTrust::Pinned(parse_cert_sha256(fp).unwrap())),
        credentials: Credentials::Ntlm {
            user: user.into(),
            password: Secret::new(password),
        },
        connect_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(20),
    })
}

#[test]
fn ntlm_over_http_seals_every_message() {
    let srv = start_ntlm("127.0.0.61", "TEST\\admin", false);
    srv.program(
        "long-job",
        vec![
            Reply::stdout("part 1 é\r\n"),
            Reply::TimedOut,
            Reply::finish("part 2\r\n", "warn\r\n", 3010),
        ],
    );
    let mut t = ntlm_transport(&srv, "TEST\\admin", PASSWORD);
    t.connect().unwrap();
    let out = cmd(&mut t, "long-job").unwrap();
    assert_eq!(out.exit, CommandExit::Code(3010));
    assert_eq!(out.stdout, "part 1 é\r\npart 2\r\n");
    assert_eq!(out.stderr, "warn\r\n");
    // Several commands and an upload on the one authenticated connection.
    assert_eq!(cmd(&mut t, "echo again").unwrap().stdout, "again\r\n");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.bin");
    let data = pseudo_random(200_000);
    std::fs::write(&src, &data).unwrap();
    t.upload(
        &src,
        &digest(&src),
        "C:\\Temp\\f.bin",
        Shell::Cmd,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(srv.file("C:\\Temp\\f.bin").unwrap(), data);
    let soap_requests = srv.requests().len() as u64;
    assert!(soap_requests > 10);
    assert_eq!(srv.sealed_requests(), soap_requests);
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn ntlm_local_account_and_timeout_cleanup() {
    let srv = start_ntlm("127.0.0.62", "admin", false);
    srv.program("hang", vec![Reply::stdout("started\r\n"), Reply::Hang]);
    let mut t = ntlm_transport(&srv, "admin", PASSWORD);
    let out = run(
        &mut t,
        "hang",
        Shell::Cmd,
        &Control::new(Some(Duration::from_millis(300))),
    )
    .unwrap();
    assert_eq!(out.exit, CommandExit::TimedOut);
    // The abandoned Receive cost the connection; Signal and Delete went out on a new,
    // newly authenticated one.
    assert!(!srv.signals().is_empty());
    assert_eq!(srv.open_shells(), 0);
    assert_eq!(cmd(&mut t, "echo after").unwrap().stdout, "after\r\n");
}

#[test]
fn ntlm_wrong_password_is_refused_at_connect() {
    let srv = start_ntlm("127.0.0.63", "TEST\\admin", false);
    let mut t = ntlm_transport(&srv, "TEST\\admin", "wrong");
    let e = t.connect().unwrap_err();
    assert!(
        matches!(e, TransportError::Auth { method: "NTLM", .. }),
        "{e:?}"
    );
    assert!(srv.requests().is_empty());
    let mut t = ntlm_transport(&srv, "OTHER\\admin", PASSWORD);
    assert!(matches!(t.connect(), Err(TransportError::Auth { .. })));
}

#[test]
fn ntlm_reauthenticates_when_the_server_drops_the_connection() {
    let srv = WinrmServer::start(
        "127.0.0.64",
        Options {
            user: "admin".into(),
            password: PASSWORD.into(),
            ntlm: true,
            close_after_delete: true,
            ..Options::default()
        },
    );
    let mut t = ntlm_transport(&srv, "admin", PASSWORD);
    for i in 0..3 {
        assert_eq!(
            cmd(&mut t, &format!("echo {i}")).unwrap().stdout,
            format!("{i}\r\n")
        );
    }
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn ntlm_over_https_authenticates_without_sealing() {
    let srv = start_ntlm("127.0.0.65", "admin", true);
    let mut t = ntlm_transport(&srv, "admin", PASSWORD);
    assert_eq!(cmd(&mut t, "echo tls").unwrap().stdout, "tls\r\n");
    assert_eq!(srv.sealed_requests(), 0);
    assert!(srv.requests().iter().all(|r| r.authorized));
}

#[test]
fn ntlm_against_a_basic_only_server_says_what_it_offers() {
    let srv = start("127.0.0.66");
    let mut t = ntlm_transport(&srv, USER, PASSWORD);
    let e = t.connect().unwrap_err();
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("did not offer an NTLM challenge"), "{text}");
    assert!(text.contains("Basic"), "{text}");
}
