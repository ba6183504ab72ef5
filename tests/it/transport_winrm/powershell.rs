//! PowerShell runs as an encoded command with CLIXML errors made readable, and long scripts go
//! through a temporary file that is removed.

use super::*;

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
