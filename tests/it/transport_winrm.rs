//! The WinRM transport against recorded Windows messages and against the loopback test
//! server in `common/winrm_server.rs` (which behaves like Windows but is not Windows).

use crate::common::winrm_server;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::winrm_server::{Options, Out, Reply, WinrmServer};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use runner::transport::winrm::{
    parse_cert_sha256, response, soap, Credentials, TlsTrust, WinrmConfig, WinrmError,
    WinrmTransport,
};
use runner::transport::{CommandExit, Control, Secret, Shell, Stream, Transport, TransportError};

const USER: &str = "admin";
const PASSWORD: &str = "S3cret!pw";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrm")
}

fn start(ip: &str) -> WinrmServer {
    WinrmServer::start(
        ip,
        Options {
            user: USER.into(),
            password: PASSWORD.into(),
            ..Options::default()
        },
    )
}

fn transport_with(srv: &WinrmServer, password: &str, tls: Option<TlsTrust>) -> WinrmTransport {
    WinrmTransport::new(WinrmConfig {
        name: "win".into(),
        host: srv.host(),
        port: srv.port(),
        tls,
        credentials: Credentials::Basic {
            user: USER.into(),
            password: Secret::new(password),
        },
        connect_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(20),
    })
}

fn transport(srv: &WinrmServer) -> WinrmTransport {
    transport_with(srv, PASSWORD, None)
}

#[derive(Debug)]
struct Output {
    exit: CommandExit,
    stdout: String,
    stderr: String,
    chunks: Vec<(Stream, Vec<u8>)>,
}

fn run(
    t: &mut dyn Transport,
    script: &str,
    shell: Shell,
    ctl: &Control,
) -> Result<Output, TransportError> {
    let mut chunks = Vec::new();
    let exit = t.exec(script, shell, ctl, &mut |s, b| chunks.push((s, b.to_vec())))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    for (s, b) in &chunks {
        match s {
            Stream::Stdout => stdout.extend_from_slice(b),
            Stream::Stderr => stderr.extend_from_slice(b),
        }
    }
    Ok(Output {
        exit,
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
        chunks,
    })
}

fn cmd(t: &mut dyn Transport, script: &str) -> Result<Output, TransportError> {
    run(t, script, Shell::Cmd, &Control::new(None))
}

fn error_text(e: &TransportError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(" | ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

// ---------------------------------------------------------------- the exec protocol

#[test]
fn echo_runs_in_a_shell_that_is_signalled_and_deleted() {
    let srv = start("127.0.0.21");
    let mut t = transport(&srv);
    let out = cmd(&mut t, "echo hello").unwrap();
    assert_eq!(out.exit, CommandExit::Code(0));
    assert_eq!(out.stdout, "hello\r\n");
    assert_eq!(out.stderr, "");
    assert_eq!(srv.open_shells(), 0);
    assert_eq!(srv.created_and_deleted(), (1, 1));
    let signals = srv.signals();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert!(signals[0].1.ends_with("/signal/terminate"), "{signals:?}");
    let actions: Vec<String> = srv.requests().into_iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        ["Create", "Command", "Receive", "Signal", "Delete"],
        "{actions:?}"
    );
}

#[test]
fn output_over_several_receives_with_timeouts_between_is_streamed_in_order() {
    let srv = start("127.0.0.22");
    srv.program(
        "long-job",
        vec![
            Reply::stdout("part 1\r\n"),
            Reply::TimedOut,
            Reply::TimedOut,
            Reply::Output {
                chunks: vec![
                    (Out::Stdout, b"part 2\r\n".to_vec()),
                    (Out::Stderr, b"warning\r\n".to_vec()),
                ],
                done: None,
            },
            Reply::TimedOut,
            Reply::finish("part 3\r\n", "", 0),
        ],
    );
    let mut t = transport(&srv);
    let out = cmd(&mut t, "long-job").unwrap();
    assert_eq!(out.exit, CommandExit::Code(0));
    assert_eq!(out.stdout, "part 1\r\npart 2\r\npart 3\r\n");
    assert_eq!(out.stderr, "warning\r\n");
    // Streamed as it came, not collected at the end.
    let stdout_chunks: Vec<&[u8]> = out
        .chunks
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, b)| b.as_slice())
        .collect();
    assert_eq!(
        stdout_chunks,
        [&b"part 1\r\n"[..], b"part 2\r\n", b"part 3\r\n"]
    );
    let receives = srv
        .requests()
        .iter()
        .filter(|r| r.action == "Receive")
        .count();
    assert_eq!(receives, 6);
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn multibyte_characters_split_across_chunks_decode() {
    let srv = start("127.0.0.23");
    let text = "こんにちは, Grüße\r\n".as_bytes().to_vec();
    // Split inside the second character (3-byte sequences) and inside "ü".
    let (a, rest) = text.split_at(4);
    let ue = rest.iter().position(|&b| b == 0xc3).unwrap_or(0) + 1;
    let (b, c) = rest.split_at(ue);
    srv.program(
        "hello-jp",
        vec![
            Reply::Output {
                chunks: vec![(Out::Stdout, a.to_vec()), (Out::Stdout, b.to_vec())],
                done: None,
            },
            Reply::TimedOut,
            Reply::Output {
                chunks: vec![(Out::Stdout, c.to_vec())],
                done: Some(0),
            },
        ],
    );
    let mut t = transport(&srv);
    let out = cmd(&mut t, "hello-jp").unwrap();
    for (_, chunk) in &out.chunks {
        assert!(std::str::from_utf8(chunk).is_ok(), "{chunk:?}");
    }
    assert_eq!(out.stdout, "こんにちは, Grüße\r\n");
}

#[test]
fn exit_codes_are_unsigned_32_bit() {
    let srv = start("127.0.0.24");
    srv.program("reboot-needed", vec![Reply::done(3010)]);
    srv.program("crash", vec![Reply::done(4294967295)]);
    srv.program("access-violation", vec![Reply::done(3221225477)]);
    let mut t = transport(&srv);
    assert_eq!(
        cmd(&mut t, "reboot-needed").unwrap().exit,
        CommandExit::Code(3010)
    );
    assert_eq!(
        cmd(&mut t, "crash").unwrap().exit,
        CommandExit::Code(4294967295)
    );
    assert_eq!(
        cmd(&mut t, "access-violation").unwrap().exit,
        CommandExit::Code(3221225477)
    );
    let out = cmd(&mut t, "nonexistent-program /x").unwrap();
    assert_eq!(out.exit, CommandExit::Code(1));
    assert!(out.stderr.contains("is not recognized"), "{}", out.stderr);
}

#[test]
fn uuid_prefixed_shell_ids_are_echoed_exactly() {
    let srv = start("127.0.0.25");
    let mut t = transport(&srv);
    // The server alternates `uuid:`-prefixed (WinRM 1.1) and plain ids, and refuses any
    // selector that is not exactly the id it issued.
    for _ in 0..3 {
        assert_eq!(cmd(&mut t, "echo x").unwrap().exit, CommandExit::Code(0));
    }
    assert_eq!(srv.created_and_deleted(), (3, 3));
    let prefixed = srv
        .requests()
        .iter()
        .filter(|r| r.action == "Command")
        .filter(|r| r.body.contains("\"ShellId\">uuid:"))
        .count();
    assert_eq!(prefixed, 2);
}

#[test]
fn special_characters_and_unicode_reach_the_command_line_intact() {
    let srv = start("127.0.0.26");
    let line = "echo a&&b > \"c\" 'd' <e> é€";
    srv.program(line, vec![Reply::finish("ok\r\n", "", 0)]);
    let mut t = transport(&srv);
    let out = cmd(&mut t, line).unwrap();
    assert_eq!(out.stdout, "ok\r\n");
    assert_eq!(srv.delivered(), vec![(line.to_string(), false)]);
}

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
fn timeout_terminates_and_deletes_the_shell() {
    let srv = start("127.0.0.31");
    srv.program("hang", vec![Reply::stdout("started\r\n"), Reply::Hang]);
    let mut t = transport(&srv);
    let out = run(
        &mut t,
        "hang",
        Shell::Cmd,
        &Control::new(Some(Duration::from_millis(300))),
    )
    .unwrap();
    assert_eq!(out.exit, CommandExit::TimedOut);
    assert_eq!(out.stdout, "started\r\n");
    assert!(srv
        .signals()
        .iter()
        .any(|(_, code)| code.ends_with("/terminate")));
    assert_eq!(srv.open_shells(), 0);
    // The transport still works afterwards.
    assert_eq!(cmd(&mut t, "echo again").unwrap().stdout, "again\r\n");
}

#[test]
fn cancel_terminates_and_deletes_the_shell() {
    let srv = start("127.0.0.32");
    srv.program("hang", vec![Reply::stdout("started\r\n"), Reply::Hang]);
    let mut t = transport(&srv);
    let ctl = Control::new(None);
    let cancel = ctl.cancel.clone();
    // Cancel as soon as the command shows life: no sleeps, no races.
    let exit = t
        .exec("hang", Shell::Cmd, &ctl, &mut |_, _| {
            cancel.store(true, Ordering::SeqCst)
        })
        .unwrap();
    assert_eq!(exit, CommandExit::Cancelled);
    assert!(!srv.signals().is_empty());
    assert_eq!(srv.open_shells(), 0);
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

// ---------------------------------------------------------------- PowerShell and scripts

#[test]
fn powershell_runs_with_encoded_command() {
    let srv = start("127.0.0.34");
    let script = "Get-Service 'W32Time' | Select-Object -Expand Status";
    srv.program(script, vec![Reply::finish("Running\r\n", "", 0)]);
    let mut t = transport(&srv);
    let out = run(&mut t, script, Shell::PowerShell, &Control::new(None)).unwrap();
    assert_eq!(out.stdout, "Running\r\n");
    assert_eq!(srv.delivered(), vec![(script.to_string(), false)]);
    let command = srv
        .requests()
        .into_iter()
        .find(|r| r.action == "Command")
        .unwrap();
    assert!(
        command
            .body
            .contains("powershell.exe -NoProfile -NonInteractive -EncodedCommand "),
        "{}",
        command.body
    );
}

#[test]
fn powershell_clixml_on_stderr_becomes_readable_text() {
    let srv = start("127.0.0.47");
    // The stderr of the recorded pywinrm response, split across two Receives.
    let rec = response::parse(
        &std::fs::read(fixtures().join("pywinrm/receive_response_ps_stderr_clixml.xml")).unwrap(),
    )
    .unwrap();
    let stderr: Vec<u8> = rec
        .chunks
        .iter()
        .filter(|c| c.stream == Stream::Stderr)
        .flat_map(|c| c.data.clone())
        .collect();
    let (a, b) = stderr.split_at(40);
    srv.program(
        "Write-Error 'Error'",
        vec![
            Reply::Output {
                chunks: vec![(Out::Stderr, a.to_vec())],
                done: None,
            },
            Reply::Output {
                chunks: vec![(Out::Stderr, b.to_vec())],
                done: Some(1),
            },
        ],
    );
    srv.program(
        "cmd-error",
        vec![Reply::finish("", "#< CLIXML is just text here\r\n", 1)],
    );
    let mut t = transport(&srv);
    let out = run(
        &mut t,
        "Write-Error 'Error'",
        Shell::PowerShell,
        &Control::new(None),
    )
    .unwrap();
    assert_eq!(out.exit, CommandExit::Code(1));
    assert!(
        out.stderr.starts_with("Write-Error \"Error\" : Error\r\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("FullyQualifiedErrorId"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("_x000D_"), "{}", out.stderr);
    assert!(!out.stderr.contains("<S"), "{}", out.stderr);
    // cmd's stderr is never touched.
    let out = cmd(&mut t, "cmd-error").unwrap();
    assert_eq!(out.stderr, "#< CLIXML is just text here\r\n");
}

#[test]
fn long_scripts_go_through_a_temporary_file_that_is_removed() {
    let srv = start("127.0.0.35");
    let long: String = (0..400)
        .map(|i| format!("Write-Output 'line {i}'\n"))
        .collect();
    srv.program(&long, vec![Reply::finish("done\r\n", "", 0)]);
    let multi = "echo one\necho two";
    srv.program(multi, vec![Reply::finish("one\r\ntwo\r\n", "", 0)]);
    let mut t = transport(&srv);
    let out = run(&mut t, &long, Shell::PowerShell, &Control::new(None)).unwrap();
    assert_eq!(out.stdout, "done\r\n");
    let out = cmd(&mut t, multi).unwrap();
    assert_eq!(out.stdout, "one\r\ntwo\r\n");
    let delivered = srv.delivered();
    assert_eq!(
        delivered,
        vec![(long.clone(), true), (multi.to_string(), true)]
    );
    assert!(srv.files().is_empty(), "{:?}", srv.files());
    assert_eq!(srv.open_shells(), 0);
    // Nothing was cut: the command lines stayed short.
    for r in srv.requests().iter().filter(|r| r.action == "Command") {
        assert!(r.body.len() < 12_000, "{}", r.body.len());
    }
}

#[test]
fn run_script_uploads_runs_and_removes() {
    let srv = start("127.0.0.36");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("fix.ps1");
    let text = "Set-Content -Path C:\\Temp\\x.txt -Value 'é'\nexit 3010\n";
    std::fs::write(&local, text).unwrap();
    srv.program(text, vec![Reply::done(3010)]);
    let mut t = transport(&srv);
    let exit = t
        .run_script(
            &local,
            Shell::PowerShell,
            &Control::new(None),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(exit, CommandExit::Code(3010));
    assert_eq!(srv.delivered(), vec![(text.to_string(), true)]);
    assert!(srv.files().is_empty());
}

// ---------------------------------------------------------------- uploads

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn upload_is_written_in_chunks_and_verified() {
    let srv = start("127.0.0.37");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("payload.bin");
    let data = pseudo_random(300_000);
    std::fs::write(&src, &data).unwrap();
    let mut t = transport(&srv);
    let mut progress = Vec::new();
    t.upload(
        &src,
        &digest(&src),
        "C:\\Temp\\payload.bin",
        Shell::Cmd,
        &mut |n| {
            progress.push(n);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(srv.file("C:\\Temp\\payload.bin").unwrap(), data);
    assert!(progress.len() >= 3, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last(), Some(&300_000));
    // stdin is a pipe for the upload (a console would not deliver it to `$input`).
    let command = srv
        .requests()
        .into_iter()
        .find(|r| r.action == "Command")
        .unwrap();
    let options = winrm_server::parse_request(&command.body).options;
    assert_eq!(
        options.get("WINRS_CONSOLEMODE_STDIN").map(String::as_str),
        Some("FALSE")
    );
    let sends = srv.requests().iter().filter(|r| r.action == "Send").count();
    assert!(sends >= 3, "{sends}");
    for r in srv.requests() {
        assert!(r.body.len() < soap::MAX_ENVELOPE_SIZE, "{}", r.body.len());
    }
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn empty_upload_works() {
    let srv = start("127.0.0.38");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("empty");
    std::fs::write(&src, b"").unwrap();
    let mut t = transport(&srv);
    t.upload(
        &src,
        &digest(&src),
        "C:\\Temp\\empty",
        Shell::Cmd,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(srv.file("C:\\Temp\\empty").unwrap(), b"");
}

#[test]
fn upload_to_a_missing_directory_names_it() {
    let srv = start("127.0.0.39");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a");
    std::fs::write(&src, b"abc").unwrap();
    let mut t = transport(&srv);
    let e = t
        .upload(
            &src,
            &digest(&src),
            "D:\\nope\\a.txt",
            Shell::Cmd,
            &mut |_| Ok(()),
        )
        .unwrap_err();
    match e {
        TransportError::UploadParentMissing { parent, .. } => assert_eq!(parent, "D:\\nope"),
        other => panic!("{other:?}"),
    }
    assert_eq!(srv.open_shells(), 0);
}

#[test]
fn a_corrupted_upload_is_detected() {
    let srv = start("127.0.0.40");
    srv.set_corrupt_uploads(true);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a");
    std::fs::write(&src, b"important bytes").unwrap();
    let mut t = transport(&srv);
    // A good copy first: the corrupted one must not replace it.
    srv.set_corrupt_uploads(false);
    let old = dir.path().join("old");
    std::fs::write(&old, b"the old, longer content").unwrap();
    t.upload(&old, &digest(&old), "C:\\Temp\\a", Shell::Cmd, &mut |_| {
        Ok(())
    })
    .expect("the first upload");
    srv.set_corrupt_uploads(true);
    let e = t
        .upload(&src, &digest(&src), "C:\\Temp\\a", Shell::Cmd, &mut |_| {
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, TransportError::UploadVerify { .. }), "{e:?}");
    assert_eq!(
        srv.file("C:\\Temp\\a").as_deref(),
        Some(&b"the old, longer content"[..]),
        "a failed upload replaced the destination"
    );
}

// ---------------------------------------------------------------- HTTPS

fn start_tls(ip: &str) -> WinrmServer {
    WinrmServer::start(
        ip,
        Options {
            user: USER.into(),
            password: PASSWORD.into(),
            https: true,
            ..Options::default()
        },
    )
}

#[test]
fn https_with_a_pinned_certificate() {
    let srv = start_tls("127.0.0.41");
    let fp = srv.cert_sha256.clone().unwrap();
    let pin = parse_cert_sha256(&fp).unwrap();
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::Pinned(pin)));
    assert_eq!(
        t.describe(),
        format!("winrm+https admin@127.0.0.41:{}", srv.port())
    );
    assert_eq!(cmd(&mut t, "echo tls").unwrap().stdout, "tls\r\n");
}

#[test]
fn https_with_a_different_pin_is_refused_and_shows_the_real_fingerprint() {
    let srv = start_tls("127.0.0.42");
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::Pinned([7u8; 32])));
    let text = error_text(&cmd(&mut t, "echo tls").unwrap_err());
    assert!(text.contains("not the pinned one"), "{text}");
    assert!(text.contains(srv.cert_sha256.as_deref().unwrap()), "{text}");
    assert!(
        srv.requests().is_empty(),
        "nothing may be sent before trust"
    );
}

#[test]
fn https_self_signed_is_not_trusted_by_system_roots() {
    let srv = start_tls("127.0.0.43");
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::System));
    let text = error_text(&t.connect().unwrap_err());
    assert!(text.contains("not trusted"), "{text}");
    assert!(text.contains(srv.cert_sha256.as_deref().unwrap()), "{text}");
    assert!(srv.requests().is_empty());
}

#[test]
fn https_with_a_ca_file_and_insecure() {
    let srv = start_tls("127.0.0.44");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, srv.cert_pem.as_ref().unwrap()).unwrap();
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::CaFile(ca)));
    assert_eq!(cmd(&mut t, "echo ca").unwrap().stdout, "ca\r\n");
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::Insecure));
    assert_eq!(cmd(&mut t, "echo any").unwrap().stdout, "any\r\n");
    // A CA file that does not hold the server's certificate.
    let other = start_tls("127.0.0.45");
    let wrong = dir.path().join("other.pem");
    std::fs::write(&wrong, other.cert_pem.as_ref().unwrap()).unwrap();
    let mut t = transport_with(&srv, PASSWORD, Some(TlsTrust::CaFile(wrong)));
    assert!(error_text(&t.connect().unwrap_err()).contains("not trusted"));
}

// ---------------------------------------------------------------- recorded messages

/// Every (request, response) pair of the pypsrp recordings.
fn recorded_pairs() -> Vec<(String, String, String)> {
    let dir = fixtures().join("pypsrp");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for m in doc["messages"].as_sequence().unwrap() {
            out.push((
                file.clone(),
                m["request"].as_str().unwrap().to_string(),
                m["response"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn every_recorded_response_parses() {
    let pairs = recorded_pairs();
    assert!(pairs.len() >= 60, "{}", pairs.len());
    let mut unrelated = Vec::new();
    for (file, req, resp) in &pairs {
        let r = response::parse(resp.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Each reply names the request it answers (the config Get included)...
        let id = winrm_server::parse_request(req).message_id;
        assert!(r
            .relates_to
            .as_deref()
            .is_some_and(|x| x.starts_with("uuid:")));
        if r.relates_to.as_deref() != Some(id.as_str()) {
            unrelated.push(file.clone());
        }
    }
    // ...except the last one of the unicode recording, whose request was re-recorded.
    assert_eq!(unrelated, ["test_winrs_unicode.yml"]);
    for rel in [
        "winrb/open_shell_v1.xml",
        "winrb/open_shell_v2.xml",
        "winrb/wmi_error_v2.xml",
        "masterzen/create_shell_response.xml",
        "masterzen/command_fault_filename_too_long.xml",
        "masterzen/receive_fault_operation_timeout.xml",
        "pywinrm/open_shell_response.xml",
        "pywinrm/receive_response_ipconfig.xml",
        "pywinrm/receive_response_ps_stderr_clixml.xml",
    ] {
        let bytes = std::fs::read(fixtures().join(rel)).unwrap();
        response::parse(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
}

fn parse_fixture(rel: &str) -> response::Response {
    response::parse(&std::fs::read(fixtures().join(rel)).unwrap()).unwrap()
}

/// The responses of one recording, in order.
fn responses(file: &str) -> Vec<response::Response> {
    recorded_pairs()
        .into_iter()
        .filter(|(f, _, _)| f == file)
        .map(|(_, _, r)| response::parse(r.as_bytes()).unwrap())
        .collect()
}

fn stdout_of(rs: &[response::Response]) -> Vec<u8> {
    rs.iter()
        .flat_map(|r| r.chunks.iter())
        .filter(|c| c.stream == Stream::Stdout)
        .flat_map(|c| c.data.clone())
        .collect()
}

#[test]
fn recorded_responses_mean_what_they_should() {
    // The standard flow: shell id from the selector, "hi", exit 0.
    let std = responses("test_winrs_standard.yml");
    assert!(std[0].shell_id.as_deref().is_some_and(|s| s.len() == 36));
    assert!(std[1].command_id.is_some());
    assert_eq!(stdout_of(&std), b"hi\r\n");
    assert_eq!(std[2].done, Some(true));
    assert_eq!(std[2].exit_code, Some(0));

    let rc = responses("test_winrs_stderr_rc.yml");
    assert_eq!(rc[2].exit_code, Some(1));
    assert!(rc[2]
        .chunks
        .iter()
        .any(|c| c.stream == Stream::Stderr && !c.data.is_empty()));

    // Partial output, two TimedOut faults, then the rest and Done.
    let slow = responses("test_winrs_operation_timeout.yml");
    let receives: Vec<_> = slow
        .iter()
        .filter(|r| r.done.is_some() || r.fault.is_some())
        .collect();
    assert_eq!(receives[0].done, Some(false));
    assert!(receives[1].fault.as_ref().unwrap().is_timed_out());
    assert!(receives[2].fault.as_ref().unwrap().is_timed_out());
    assert_eq!(receives[3].done, Some(true));

    // UTF-8 split over two Stream elements decodes after joining.
    let uni = responses("test_winrs_unicode.yml");
    let text = String::from_utf8(stdout_of(&uni)).unwrap();
    assert!(text.contains("こんにちは"), "{text}");

    let bad = responses("test_winrs_bad_cmd_id.yml");
    let f = bad.iter().find_map(|r| r.fault.clone()).unwrap();
    assert_eq!(f.subcode.as_deref(), Some("InvalidSelectors"));
    assert_eq!(f.wsman_code, Some(2150858843));
    assert!(!f.is_timed_out());

    let poll = responses("test_winrs_fail_poll_process.yml");
    let f = poll.iter().find_map(|r| r.fault.clone()).unwrap();
    assert_eq!(f.wsman_code, Some(87));
    assert_eq!(f.provider.as_deref(), Some("Shell cmd plugin"));
    assert_eq!(f.message.as_deref(), Some("The parameter is incorrect."));

    let nocmd = responses("test_winrs_no_cmd_shell.yml");
    let f = nocmd.iter().find_map(|r| r.fault.clone()).unwrap();
    assert_eq!(f.wsman_code, Some(2147942402));
    assert!(f.hint().unwrap().contains("not found"));

    // WinRM 1.1: single quotes, `uuid:` prefix, no rsp:Shell.
    let v1 = parse_fixture("winrb/open_shell_v1.xml");
    assert_eq!(
        v1.shell_id.as_deref(),
        Some("uuid:739990FF-1492-4CDD-80BB-6E07ADB06D85")
    );
    let v2 = parse_fixture("winrb/open_shell_v2.xml");
    assert!(v2.shell_id.is_some());
    let quota = parse_fixture("winrb/wmi_error_v2.xml").fault.unwrap();
    assert_eq!(quota.subcode.as_deref(), Some("QuotaLimit"));
    assert_eq!(quota.wsman_code, Some(2150859173));
    assert!(quota.message.unwrap().contains("maximum number of 30"));

    let long = parse_fixture("masterzen/command_fault_filename_too_long.xml")
        .fault
        .unwrap();
    assert_eq!(long.wsman_code, Some(2147942606));
    assert!(long.hint().unwrap().contains("script"));
    let to = parse_fixture("masterzen/receive_fault_operation_timeout.xml")
        .fault
        .unwrap();
    assert!(to.is_timed_out());
    let created = parse_fixture("masterzen/create_shell_response.xml");
    assert!(created.shell_id.is_some());

    let ipconfig = parse_fixture("pywinrm/receive_response_ipconfig.xml");
    assert_eq!(ipconfig.done, Some(true));
    assert_eq!(ipconfig.exit_code, Some(0));
    assert!(String::from_utf8_lossy(&stdout_of(&[ipconfig])).contains("Windows IP Configuration"));
    let clixml = parse_fixture("pywinrm/receive_response_ps_stderr_clixml.xml");
    assert_eq!(clixml.exit_code, Some(1));
    let err: Vec<u8> = clixml
        .chunks
        .iter()
        .filter(|c| c.stream == Stream::Stderr)
        .flat_map(|c| c.data.clone())
        .collect();
    assert!(String::from_utf8_lossy(&err).starts_with("#< CLIXML"));
}

/// Element names (with namespace URIs) and the attribute names they carry, plus the names of
/// options and selectors: what a server looks at, without values.
fn shape(xml: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut reader = NsReader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    loop {
        let (ns, ev) = reader.read_resolved_event().unwrap();
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                path.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let name = format!("{{{ns}}}{local}");
        let joined = if path.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", path.join("/"))
        };
        out.insert(joined.clone());
        for a in e.attributes().flatten() {
            let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
            let is_xmlns = a.key.as_ref().starts_with(b"xmlns");
            if key == "mustUnderstand" || key == "lang" || is_xmlns {
                continue;
            }
            if key == "Name" {
                let v = a.unescape_value().unwrap().into_owned();
                out.insert(format!("{joined}[Name={v}]"));
            } else {
                out.insert(format!("{joined}@{key}"));
            }
        }
        if !empty {
            path.push(name);
        }
    }
    out
}

#[test]
fn our_requests_have_the_shape_of_recorded_ones() {
    let ep = soap::Endpoint {
        to: "http://192.0.2.1:5985/wsman".into(),
        operation_timeout_secs: 20,
    };
    let id = soap::message_id();
    let ours = [
        ("Create", soap::create_shell(&ep, &id, &[])),
        (
            "Command",
            soap::command(&ep, &id, "uuid:S", "echo hi", false),
        ),
        ("Send", soap::send(&ep, &id, "S", "C", b"data", true)),
        ("Receive", soap::receive(&ep, &id, "S", "C")),
        (
            "Signal",
            soap::signal(&ep, &id, "S", "C", soap::SIGNAL_TERMINATE),
        ),
        ("Delete", soap::delete_shell(&ep, &id, "S")),
    ];
    // Parts of recorded requests we deliberately leave out: the session id (optional), the
    // split of the command line into Arguments, and optional shell settings.
    let optional = [
        "SessionId",
        "}Arguments",
        "shell}Name",
        "WorkingDirectory",
        "IdleTimeOut",
        "Lifetime",
        "Environment",
        "Variable",
        "@MustComply",
    ];
    let mut checked = 0;
    for (file, req, _) in recorded_pairs() {
        let parsed = winrm_server::parse_request(&req);
        let action = parsed
            .action
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let Some((_, mine)) = ours.iter().find(|(a, _)| *a == action) else {
            continue;
        };
        let recorded = shape(&req);
        let mine_shape = shape(mine);
        for element in &recorded {
            if optional.iter().any(|o| element.contains(o)) {
                continue;
            }
            assert!(
                mine_shape.contains(element),
                "{file} {action}: we do not send {element}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 50, "{checked}");
    // And the server side of our own parser understands ours.
    let create = winrm_server::parse_request(&ours[0].1);
    assert_eq!(
        create.options.get("WINRS_CODEPAGE").map(String::as_str),
        Some("65001")
    );
    assert_eq!(
        create.options.get("WINRS_NOPROFILE").map(String::as_str),
        Some("TRUE")
    );
    let command = winrm_server::parse_request(&ours[1].1);
    assert_eq!(command.shell_id.as_deref(), Some("uuid:S"));
    assert_eq!(command.command.as_deref(), Some("echo hi"));
}

// ---------------------------------------------------------------- NTLM

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

fn digest(path: &std::path::Path) -> runner::transport::FileDigest {
    runner::transport::FileDigest::of_file(path).expect("digest of the source")
}

// ---------------------------------------------------------------- a command left behind

/// The shell a command runs in, from the Command request the server logged.
fn shell_of_command(srv: &WinrmServer) -> Option<String> {
    let req = srv.requests().into_iter().find(|r| r.action == "Command")?;
    let start = req.body.find("Name=\"ShellId\">")? + "Name=\"ShellId\">".len();
    let len = req.body[start..].find('<')?;
    Some(req.body[start..start + len].to_string())
}

#[test]
fn a_command_left_behind_is_stopped_by_deleting_its_shell() {
    use runner::transport::{Orphan, OrphanStop};
    let srv = start("127.0.0.67");
    srv.program("hang", vec![Reply::stdout("started\r\n"), Reply::Hang]);
    let mut first = transport(&srv);
    let mut second = transport(&srv);
    let ctl = Control::new(None);
    let cancel = ctl.cancel.clone();
    let mut found = None;
    // While the command runs, another connection stops it as the runner does after it lost
    // the first one.
    let _ = first.exec("hang", Shell::Cmd, &ctl, &mut |_, _| {
        if found.is_none() {
            let shell_id = shell_of_command(&srv).expect("the command's shell");
            let orphan = Orphan::WinrmShell { shell_id };
            found = Some((
                second.stop_orphan(&orphan).map_err(|e| error_text(&e)),
                srv.open_shells(),
                orphan,
            ));
        }
        cancel.store(true, Ordering::SeqCst);
    });
    let (stopped, open_after, orphan) = found.expect("the command started");
    assert_eq!(stopped, Ok(OrphanStop::ShellDeleted));
    assert_eq!(open_after, 0);
    // Asked again, the shell is gone: the command has ended.
    assert_eq!(
        second.stop_orphan(&orphan).map_err(|e| error_text(&e)),
        Ok(OrphanStop::Ended)
    );
}
