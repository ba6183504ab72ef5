use super::*;

#[test]
fn sh_quote_keeps_everything_literal() {
    assert_eq!(sh_quote("echo hi"), "'echo hi'");
    assert_eq!(sh_quote("it's"), r"'it'\''s'");
    assert_eq!(sh_quote("$HOME `x` \\n"), "'$HOME `x` \\n'");
    assert_eq!(sh_quote("a\nb"), "'a\nb'");
    assert_eq!(sh_quote(""), "''");
}

#[test]
fn sh_quote_round_trips_through_a_real_shell() {
    let nasty = "it's $HOME `id` \"q\" \\ \n second line; exit 3";
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {}", sh_quote(nasty)))
        .output()
        .expect("sh runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
}

/// The follower against a file that grows while it runs, as under an upload.
#[test]
fn follow_sha256_hashes_a_growing_file() {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("it's growing.bin");
    let data: Vec<u8> = (0..9 * 1024 * 1024 + 5)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let (first, rest) = data.split_at(5 * 1024 * 1024 + 3);
    std::fs::write(&path, first).expect("write the first part");

    let line = command_line(
        Shell::Sh,
        &follow_sha256_command(&path.display().to_string()),
    );
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the follower");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{}", first.len()).expect("note");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open to append");
    f.write_all(rest).expect("append the rest");
    drop(f);
    drop(stdin); // the upload is complete
    let out = child.wait_with_output().expect("follower output");
    assert!(out.status.success(), "{:?}", out.status);
    let expected: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        parse_sha256(&String::from_utf8_lossy(&out.stdout)),
        Some(expected)
    );

    // Without python3 it says so by its exit code, and the upload hashes the file instead.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    std::os::unix::fs::symlink("/bin/sh", bin.join("sh")).expect("link sh");
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&line)
        .env("PATH", &bin)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run without python3");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn command_lines() {
    assert_eq!(
        command_line(Shell::Sh, "echo 'a'"),
        r"sh -c 'echo '\''a'\'''"
    );
    assert_eq!(command_line(Shell::Cmd, "dir C:\\"), "cmd.exe /c dir C:\\");
    assert_eq!(
        command_line(Shell::PowerShell, "dir"),
        "powershell.exe -NoProfile -NonInteractive -EncodedCommand ZABpAHIA"
    );
}

#[test]
fn encoded_command_is_base64_of_utf16le() {
    // "Hi" = 48 00 69 00 -> base64 "SABpAA==" (worked out by hand from the bytes).
    assert_eq!(powershell_encode("Hi"), "SABpAA==");
    // "é" (U+00E9) = E9 00 -> "6QA=".
    assert_eq!(powershell_encode("é"), "6QA=");
    // A character outside the BMP becomes a surrogate pair: U+1F600 = D83D DE00
    // -> bytes 3D D8 00 DE -> "PdgA3g==".
    assert_eq!(powershell_encode("\u{1f600}"), "PdgA3g==");
}

#[test]
fn ps_quote_doubles_all_single_quotes() {
    assert_eq!(ps_quote("a'b"), "'a''b'");
    assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
    assert_eq!(ps_quote("$x"), "'$x'");
}

#[test]
fn tracked_sh_reports_pid_and_keeps_exit_code_and_output() {
    let line = tracked_command_line(
        Shell::Sh,
        Payload::Inline("echo out; echo err >&2; exit 7"),
        "t",
    );
    // Like an SSH channel, stdin stays open while the command runs.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take();
    let out = child.wait_with_output().expect("sh ends");
    drop(stdin);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(out.stdout, b"out\n");
    let mut filter = PidMarkerFilter::new();
    let mut shown = filter.feed(&out.stderr);
    shown.extend(filter.finish());
    assert_eq!(shown, b"err\n");
    assert!(filter.pid().is_some());
}

/// Runs an inline script through the tracked wrapper as sshd would, stdin kept open.
fn run_tracked_locally(script: &str) -> (Option<i32>, String) {
    let line = tracked_command_line(Shell::Sh, Payload::Inline(script), "t");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take();
    let out = child.wait_with_output().expect("sh ends");
    drop(stdin);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The script runs in a subshell of the wrapper: it must still behave as under `sh -c`,
/// and nothing it does may disturb the wrapper (which disarms the watcher afterwards).
#[test]
fn tracked_sh_script_behaves_as_under_sh_c() {
    // No positional parameters, although the wrapper got the script as $1.
    assert_eq!(
        run_tracked_locally("echo \"$# [$*]\""),
        (Some(0), "0 []\n".into())
    );
    // `exit`, an EXIT trap and `set -e` are the script's own.
    assert_eq!(
        run_tracked_locally("trap 'echo bye' EXIT; exit 3"),
        (Some(3), "bye\n".into())
    );
    assert_eq!(
        run_tracked_locally("set -e; false; echo unreachable"),
        (Some(1), String::new())
    );
    // The wrapper's own variables are out of reach: were `w` the wrapper's, it would
    // "disarm the watcher" by killing itself.
    assert_eq!(run_tracked_locally("s=9; w=$$"), (Some(0), String::new()));
    // A syntax error is reported as sh -c reports it: status 2.
    assert_eq!(run_tracked_locally("if then fi").0, Some(2));
    // Multi-line scripts and quotes pass through untouched.
    assert_eq!(
        run_tracked_locally("a='x y'\necho \"$a\" 'it''s'"),
        (Some(0), "x y its\n".into())
    );
}

/// Runs `payload` through the wrapper as sshd would, then closes the channel (stdin), as
/// a dying runner does. Returns how the wrapper ended.
fn cut_off_tracked(payload: Payload<'_>) -> std::process::ExitStatus {
    let (mut child, stdin) = tracked_here(payload, "t");
    drop(stdin);
    child.wait().expect("sh ends")
}

/// When the channel (stdin) goes away, as when the runner dies, the command goes too.
#[test]
fn tracked_sh_dies_with_its_channel() {
    let status = cut_off_tracked(Payload::Inline("sleep 300; exit 0"));
    // Killed by SIGTERM (the wrapper reports 128 + 15, or dies by the signal itself).
    assert_ne!(status.code(), Some(0), "{status:?}");
}

/// A script file is removed when the channel goes away before it ends.
#[test]
fn tracked_sh_file_is_removed_when_its_channel_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("runner-x.sh");
    std::fs::write(&script, "sleep 300\n").expect("write script");
    let path = script.display().to_string();
    let status = cut_off_tracked(Payload::File(&path));
    assert_ne!(status.code(), Some(0), "{status:?}");
    assert!(!script.exists(), "{path} is still there");
}

#[test]
fn tracked_cmd_carries_token() {
    let line = tracked_command_line(Shell::Cmd, Payload::Inline("dir"), "abc");
    assert_eq!(line, "cmd.exe /d /c set \"RUNNER_RUN=abc\" & dir");
    let kill = kill_command_line(Shell::Cmd, None, "abc");
    assert!(kill.is_some());
    assert_eq!(kill_command_line(Shell::Sh, None, "abc"), None);
}

#[test]
fn sha256_parsing() {
    let h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(parse_sha256(&format!("{h}  -\n")).as_deref(), Some(h));
    assert_eq!(
        parse_sha256(&format!("SHA2-256(stdin)= {h}\n")).as_deref(),
        Some(h)
    );
    assert_eq!(parse_sha256(&h.to_uppercase()).as_deref(), Some(h));
    let pairs: Vec<String> = h
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let certutil = format!(
        "SHA256 hash of file x:\r\n{}\r\nCertUtil: -hashfile command completed successfully.\r\n",
        pairs.join(" ")
    );
    assert_eq!(parse_sha256(&certutil).as_deref(), Some(h));
    assert_eq!(parse_sha256("no hash here"), None);
    assert_eq!(parse_sha256(&h[..63]), None);
}

#[test]
fn marker_is_stripped_even_when_split_across_chunks() {
    let mut f = PidMarkerFilter::new();
    let mut shown = f.feed(b"motd line\n\x1erunner-");
    shown.extend(f.feed(b"pid:4242"));
    shown.extend(f.feed(b"\nreal error\n"));
    shown.extend(f.finish());
    assert_eq!(shown, b"motd line\nreal error\n");
    assert_eq!(f.pid(), Some(4242));
    // After the marker, a second one is ordinary output.
    assert_eq!(f.feed(b"\x1erunner-pid:1\n"), b"\x1erunner-pid:1\n");
}

#[test]
fn marker_filter_passes_other_rs_bytes() {
    let mut f = PidMarkerFilter::new();
    let mut shown = f.feed(b"a\x1eb\n");
    shown.extend(f.feed(b"\x1erunner-pid:x\n"));
    shown.extend(f.finish());
    assert_eq!(shown, b"a\x1eb\n\x1erunner-pid:x\n");
    assert_eq!(f.pid(), None);
}

/// Runs `stop_orphan_command_line` here, as the target would, and returns its answer.
fn stop_here(pid: Option<u32>, token: &str) -> Result<crate::transport::OrphanStop, String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(stop_orphan_command_line(pid, token))
        .output()
        .expect("sh runs");
    parse_orphan_stop(&String::from_utf8_lossy(&out.stdout))
}

/// A tracked command running here in its own process group, as sshd would start it, with
/// its stdin (the channel) held open so that its watcher stays quiet. Returns once the
/// wrapper announced itself: the watcher is in place and the token in its command line.
fn tracked_here(
    payload: Payload<'_>,
    token: &str,
) -> (std::process::Child, Option<std::process::ChildStdin>) {
    use std::os::unix::process::CommandExt;
    let line = tracked_command_line(Shell::Sh, payload, token);
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut err = child.stderr.take().expect("stderr");
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut err, &mut first).expect("the pid marker");
    let stdin = child.stdin.take();
    (child, stdin)
}

#[test]
fn orphan_with_another_token_is_not_signalled() {
    // The PID is live, but its command line does not carry the token: as if the PID had
    // been reused by an unrelated process after the command ended.
    let (mut child, _stdin) = tracked_here(Payload::Inline("sleep 300"), "0123456789abcdef");
    let answer = stop_here(Some(child.id()), "fedcba9876543210");
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer, Ok(crate::transport::OrphanStop::PidReused));
    assert!(still_running, "a process without the token was signalled");
}

#[test]
fn orphan_with_its_token_is_stopped_with_its_group() {
    let (mut child, _stdin) = tracked_here(Payload::Inline("sleep 300"), "0a0a0a0a0b0b0b0b");
    let answer = stop_here(Some(child.id()), "0a0a0a0a0b0b0b0b");
    let status = child.wait().expect("wait");
    assert_eq!(answer, Ok(crate::transport::OrphanStop::Stopped));
    assert_ne!(status.code(), Some(0), "{status:?}");
}

#[test]
fn orphan_without_a_pid_is_found_by_its_token() {
    let (mut child, _stdin) = tracked_here(Payload::Inline("sleep 300"), "0c0c0c0c0d0d0d0d");
    let answer = stop_here(None, "0c0c0c0c0d0d0d0d");
    let status = child.wait().expect("wait");
    assert_eq!(answer, Ok(crate::transport::OrphanStop::Stopped));
    assert_ne!(status.code(), Some(0), "{status:?}");
    // Once the whole group is gone (the wrapper's `sleep` may outlive it by a moment, and
    // asking again stops it too), asking again finds nothing to stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match stop_here(None, "0c0c0c0c0d0d0d0d") {
            Ok(crate::transport::OrphanStop::Ended) => break,
            Ok(crate::transport::OrphanStop::Stopped) => {
                assert!(std::time::Instant::now() < deadline, "never ended");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn orphan_that_ended_is_reported_ended() {
    let (mut child, stdin) = tracked_here(Payload::Inline("sleep 300"), "0e0e0e0e0f0f0f0f");
    let pid = child.id();
    drop(stdin); // the watcher stops it, as when sshd closes the channel
    let _ = child.wait();
    assert_eq!(
        stop_here(Some(pid), "0e0e0e0e0f0f0f0f"),
        Ok(crate::transport::OrphanStop::Ended)
    );
    // PIDs 0 and 1 are never used as a process group, whatever a note says.
    assert_eq!(
        stop_here(Some(1), "0e0e0e0e0f0f0f0f"),
        Ok(crate::transport::OrphanStop::Ended)
    );
}

#[test]
fn kill_line_for_sh_targets_the_group() {
    let line = kill_command_line(Shell::Sh, Some(1234), "t").unwrap_or_default();
    assert!(line.contains("kill -s TERM -- -$p"), "{line}");
    assert!(line.contains("p=1234"), "{line}");
}
