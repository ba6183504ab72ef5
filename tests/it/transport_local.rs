//! LocalTransport with real processes.

use crate::common;
use crate::common::transport_checks as checks;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::{pseudo_random_bytes, run_sh, stops_within, EXIT_GRACE};
use runner::transport::{CommandExit, Control, LocalTransport, Shell, Transport, TransportError};
use sha2::{Digest, Sha256};

fn local(dir: &Path) -> LocalTransport {
    LocalTransport::new(dir.to_path_buf())
}

#[test]
fn exit_codes_and_separate_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = local(dir.path());
    t.connect().expect("connect is a no-op");
    checks::exit_codes_and_separate_streams(&mut t);
    // Killed by a signal: 128 + N, as shells report it.
    assert_eq!(
        run_sh(&mut t, "kill -s KILL $$", None).expect("exec").exit,
        CommandExit::Code(128 + 9)
    );
}

#[test]
fn output_is_streamed_while_the_command_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    checks::output_is_streamed_while_the_command_runs(&mut local(dir.path()), dir.path());
}

#[test]
fn timeout_kills_the_process_group_including_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    checks::timeout_stops_the_process_tree(&mut local(dir.path()), dir.path());
}

#[test]
fn cancel_escalates_to_sigkill_for_processes_ignoring_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    checks::cancel_stops_the_process_tree(
        &mut local(dir.path()),
        dir.path(),
        "trap '' TERM; sleep 300 & echo $! > {dir}/child; echo $$ > {dir}/shell; echo ready; wait",
    );
}

#[test]
fn working_directory_is_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = local(dir.path());
    let out = run_sh(&mut t, "pwd -P; echo hi > made-here", None).expect("exec");
    let expected = dir.path().canonicalize().expect("canonicalize");
    assert_eq!(out.stdout.trim(), expected.display().to_string());
    assert!(dir.path().join("made-here").exists());
    assert!(t.describe().starts_with("local"));

    let mut gone = local(&dir.path().join("missing"));
    assert!(run_sh(&mut gone, "true", None).is_err());
}

#[test]
fn upload_copies_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = local(dir.path());
    let data = pseudo_random_bytes(3 * 1024 * 1024 + 7, 7);
    let src = dir.path().join("src.bin");
    fs::write(&src, &data).expect("write");
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let mut last = 0;
    t.upload(&src, &digest(&src), "sub/copy.bin", Shell::Sh, &mut |n| {
        last = n;
        Ok(())
    })
    .expect("upload");
    let expected: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest(&dir.path().join("sub/copy.bin")).sha256, expected);
    assert_eq!(last, data.len() as u64);
    assert_eq!(
        fs::read(dir.path().join("sub/copy.bin")).expect("read"),
        data
    );

    let err = t
        .upload(&src, &digest(&src), "nope/copy.bin", Shell::Sh, &mut |_| {
            Ok(())
        })
        .expect_err("missing parent");
    assert!(
        matches!(err, TransportError::UploadParentMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn upload_refuses_a_source_that_changed_since_the_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = local(dir.path());
    let src = dir.path().join("src.bin");
    fs::write(&src, b"reviewed content").expect("write");
    let planned = digest(&src);
    // Same size, other bytes: only the hash can tell.
    fs::write(&src, b"replaced content").expect("rewrite");
    // The destination's earlier content must survive the failed upload.
    fs::write(dir.path().join("copy.bin"), b"the old, longer content").expect("old file");
    let err = t
        .upload(&src, &planned, "copy.bin", Shell::Sh, &mut |_| Ok(()))
        .expect_err("the source changed");
    match &err {
        TransportError::UploadSourceChanged(c) => {
            assert!(c.now.contains(&digest(&src).sha256), "{}", c.now)
        }
        other => panic!("expected UploadSourceChanged, got {other:?}"),
    }
    assert!(err.to_string().contains("review the plan again"), "{err}");
    assert_eq!(
        fs::read(dir.path().join("copy.bin")).expect("read"),
        b"the old, longer content",
        "a failed upload overwrote the destination"
    );
    let left: Vec<_> = fs::read_dir(dir.path())
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".copy.bin.runner-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn run_script_runs_the_file_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = local(dir.path());
    let script = dir.path().join("step.sh");
    fs::write(&script, "echo \"in $(pwd -P)\"\necho bad >&2\nexit 5\n").expect("write");
    let ctl = Control::new(None);
    let mut chunks = Vec::new();
    let exit = t
        .run_script(&script, Shell::Sh, &ctl, &mut |s, b| {
            chunks.push((s, b.to_vec()))
        })
        .expect("run_script");
    let out = common::collect(exit, chunks);
    assert_eq!(out.exit, CommandExit::Code(5));
    let expected = dir.path().canonicalize().expect("canonicalize");
    assert_eq!(out.stdout, format!("in {}\n", expected.display()));
    assert_eq!(out.stderr, "bad\n");
    assert!(script.exists(), "the caller's script must be left alone");
}

#[test]
fn unavailable_shell_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = local(dir.path());
    if cfg!(unix) {
        let ctl = Control::new(None);
        let err = t
            .exec("dir", Shell::Cmd, &ctl, &mut |_, _| {})
            .expect_err("no cmd.exe here");
        assert!(
            matches!(err, TransportError::ShellUnavailable { .. }),
            "{err:?}"
        );
    }
}

fn digest(path: &std::path::Path) -> runner::transport::FileDigest {
    runner::transport::FileDigest::of_file(path).expect("digest of the source")
}

/// A step's command carries the token it is given (the engine journals it before the
/// command starts), and that token is enough to find and stop it later, as a leftover of a
/// runner that died; another token finds nothing.
#[test]
fn a_local_command_can_be_found_and_stopped_by_its_token() {
    use runner::transport::{Identity, Orphan, OrphanStop};
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "0123456789abcdef01234567";
    let workdir = dir.path().to_path_buf();
    let held = std::thread::spawn(move || {
        let mut never = |o: &Orphan| Err(format!("a local command is not announced: {o:?}"));
        local(&workdir).exec_identified(
            "echo $$ > pid.tmp; mv pid.tmp pid; sleep 300",
            Shell::Sh,
            &Control::new(None),
            Identity {
                token,
                announce: &mut never,
            },
            &mut |_, _| {},
        )
    });
    let pid = read_pid_when_written(dir.path());
    let by_token = |t: &str| Orphan::Process {
        pid: None,
        token: t.to_string(),
    };
    assert_eq!(
        local(dir.path())
            .stop_orphan(&by_token("fedcba9876543210fedcba98"))
            .expect("stop"),
        OrphanStop::Ended
    );
    // With the PID too, another token is another command: left alone.
    let other = Orphan::Process {
        pid: Some(pid),
        token: "fedcba9876543210fedcba98".into(),
    };
    assert_eq!(
        local(dir.path()).stop_orphan(&other).expect("stop"),
        OrphanStop::PidReused
    );
    assert_eq!(
        local(dir.path())
            .stop_orphan(&by_token(token))
            .expect("stop"),
        OrphanStop::Stopped
    );
    assert!(stops_within(pid, EXIT_GRACE), "{pid} still runs");
    let end = held.join().expect("exec thread").expect("exec");
    assert_ne!(end, CommandExit::Code(0));
}

/// The PID a command wrote to `pid` in `dir` (renamed into place, so never half written).
fn read_pid_when_written(dir: &Path) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = fs::read_to_string(dir.join("pid")) {
            return text.trim().parse().expect("a pid");
        }
        assert!(std::time::Instant::now() < deadline, "no pid written");
        std::thread::sleep(Duration::from_millis(10));
    }
}
