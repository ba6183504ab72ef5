//! The exec protocol: a command runs in a shell that is signalled and deleted, its output is
//! streamed in order across receives and chunks, exit codes are unsigned 32-bit, shell ids are
//! echoed exactly and the command line arrives intact.

use super::*;

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
