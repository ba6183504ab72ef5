//! SshTransport against a real OpenSSH server on loopback. The target is this machine, so
//! tests can check remote effects (files, processes) directly.

use crate::common;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::{
    pseudo_random_bytes, read_pid, run_sh, ssh_config, stops_within, Sshd, EXIT_GRACE,
};
use runner::transport::upload_buffer::UploadBuffer;
use runner::transport::{
    scan_host_key, trust, CommandExit, Control, FileDigest, HostKey, Shell, SshAuth, SshTransport,
    Stream, Transport, TransportError, TrustOutcome,
};
use sha2::{Digest, Sha256};

fn transport(sshd: &Sshd) -> SshTransport {
    SshTransport::new(ssh_config(sshd))
}

/// The fingerprint as OpenSSH itself prints it.
fn openssh_fingerprint(pub_path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_path)
        .output()
        .expect("run ssh-keygen -lf");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_string()
}

#[test]
fn exec_reports_exit_codes_and_separates_streams() {
    let sshd = Sshd::start("127.0.0.2");
    let mut t = transport(&sshd);
    t.connect().expect("connect");

    let out = run_sh(&mut t, "echo out; echo err >&2; exit 3", None).expect("exec");
    assert_eq!(out.exit, CommandExit::Code(3));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(
        out.stderr, "err\n",
        "the PID marker must not leak into stderr"
    );

    assert_eq!(
        run_sh(&mut t, "true", None).expect("exec").exit,
        CommandExit::Code(0)
    );
    assert_eq!(
        run_sh(&mut t, "exit 255", None).expect("exec").exit,
        CommandExit::Code(255)
    );

    // Quoting survives the trip: single quotes, $, backslashes, newlines.
    let out = run_sh(
        &mut t,
        "x='it'\\''s $HOME'\nprintf '%s\\n' \"$x\" 'a\\b'",
        None,
    )
    .expect("exec");
    assert_eq!(out.stdout, "it's $HOME\na\\b\n");

    // Plenty of output on both streams at once must neither block nor get lost.
    let out = run_sh(
        &mut t,
        "head -c 3000000 /dev/zero | tr '\\0' o & head -c 2000000 /dev/zero | tr '\\0' e >&2; wait",
        None,
    )
    .expect("exec");
    assert_eq!(out.exit, CommandExit::Code(0));
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stdout.bytes().all(|b| b == b'o'));
    assert_eq!(out.stderr.len(), 2_000_000);
    assert!(out.stderr.bytes().all(|b| b == b'e'));
}

#[test]
fn output_is_streamed_while_the_command_runs() {
    let sshd = Sshd::start("127.0.0.3");
    let mut t = transport(&sshd);
    let flag = sshd.dir().join("seen-first");
    // The command only prints "second" if the test saw "first" while the command still ran.
    let script = format!(
        "echo first\n\
         i=0; while [ ! -e '{f}' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n\
         [ -e '{f}' ] && echo second",
        f = flag.display()
    );
    let ctl = Control::new(Some(Duration::from_secs(60)));
    let mut stdout = String::new();
    let exit = t
        .exec(&script, Shell::Sh, &ctl, &mut |s, b| {
            if s == Stream::Stdout {
                stdout.push_str(&String::from_utf8_lossy(b));
                if stdout.contains("first") && !flag.exists() {
                    fs::write(&flag, b"").expect("create flag");
                }
            }
        })
        .expect("exec");
    assert_eq!(exit, CommandExit::Code(0));
    assert_eq!(stdout, "first\nsecond\n");
}

#[test]
fn sequential_execs_reuse_one_session() {
    let sshd = Sshd::start("127.0.0.4");
    let mut t = transport(&sshd);
    // The command's parent is runner's wrapper; the wrapper's parent is sshd's per-connection
    // process: one value means one session.
    let mut parents = Vec::new();
    for i in 0..25 {
        let script = format!("cut -d' ' -f4 /proc/$PPID/stat; exit {}", i % 3);
        let out = run_sh(&mut t, &script, None).expect("exec");
        assert_eq!(out.exit, CommandExit::Code(i64::from(i % 3)));
        parents.push(out.stdout.trim().to_string());
    }
    parents.dedup();
    assert_eq!(parents.len(), 1, "several sessions: {parents:?}");
}

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start("127.0.0.5");
    let empty = sshd.dir().join("empty_known_hosts");
    fs::write(&empty, "").expect("write");
    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = empty.clone();
    let mut t = SshTransport::new(cfg.clone());
    let err = t.connect().expect_err("must refuse an unknown key");
    let fingerprint = openssh_fingerprint(&sshd.host_pub_path());
    match &err {
        TransportError::HostKeyUnknown {
            fingerprint: f,
            port,
            ..
        } => {
            assert_eq!(f, &fingerprint);
            assert_eq!(*port, sshd.port());
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&fingerprint), "{msg}");
    assert!(msg.contains("runner trust"), "{msg}");
    assert!(!err.is_connection_lost());

    // A missing file is no different from an empty one.
    cfg.known_hosts = sshd.dir().join("does-not-exist");
    let err = SshTransport::new(cfg).connect().expect_err("must refuse");
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err:?}"
    );
}

#[test]
fn changed_host_key_is_refused() {
    let sshd = Sshd::start("127.0.0.6");
    // Another ed25519 key recorded for the same [host]:port.
    let other = sshd.dir().join("other_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let other_pub = fs::read_to_string(other.with_extension("pub")).expect("read");
    let mut fields = other_pub.split_whitespace();
    let (kt, b64) = (fields.next().expect("type"), fields.next().expect("key"));
    let kh = sshd.dir().join("changed_known_hosts");
    fs::write(
        &kh,
        format!("[{}]:{} {kt} {b64}\n", sshd.host(), sshd.port()),
    )
    .expect("write");

    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh.clone();
    let err = SshTransport::new(cfg.clone())
        .connect()
        .expect_err("must refuse a changed key");
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains(&openssh_fingerprint(&sshd.host_pub_path())));

    // Trusting cannot paper over a changed key either.
    let key = scan_host_key(sshd.host(), sshd.port(), Duration::from_secs(10)).expect("scan");
    assert!(matches!(
        trust(&kh, sshd.host(), sshd.port(), &key),
        Err(TransportError::HostKeyChanged { .. })
    ));
    let err = SshTransport::new(cfg).connect().expect_err("still refused");
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
}

#[test]
fn hashed_known_hosts_entries_work() {
    let sshd = Sshd::start("127.0.0.7");
    let kh = sshd.dir().join("hashed_known_hosts");
    fs::copy(sshd.known_hosts_path(), &kh).expect("copy");
    let status = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(status.status.success());
    let text = fs::read_to_string(&kh).expect("read");
    assert!(text.starts_with("|1|"), "not hashed: {text}");
    assert!(!text.contains(sshd.host()));

    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh;
    let mut t = SshTransport::new(cfg);
    let out = run_sh(&mut t, "echo ok", None).expect("exec");
    assert_eq!(out.stdout, "ok\n");
}

#[test]
fn scan_and_trust_then_connect() {
    let sshd = Sshd::start("127.0.0.8");
    let key = scan_host_key(sshd.host(), sshd.port(), Duration::from_secs(10)).expect("scan");
    let (kt, b64) = sshd.host_key();
    assert_eq!(key.key_type(), kt);
    assert_eq!(key.base64(), b64);
    assert_eq!(
        key.fingerprint_sha256(),
        openssh_fingerprint(&sshd.host_pub_path())
    );
    assert_eq!(HostKey::from_openssh(&kt, &b64).as_ref(), Some(&key));

    let kh = sshd.dir().join("trusted_known_hosts");
    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh.clone();
    let err = SshTransport::new(cfg.clone())
        .connect()
        .expect_err("not trusted yet");
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err:?}"
    );

    assert_eq!(
        trust(&kh, sshd.host(), sshd.port(), &key).expect("trust"),
        TrustOutcome::Added
    );
    assert_eq!(
        trust(&kh, sshd.host(), sshd.port(), &key).expect("trust again"),
        TrustOutcome::AlreadyTrusted
    );
    // The line is one OpenSSH itself accepts.
    let out = Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[{}]:{}", sshd.host(), sshd.port()))
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -F");
    assert!(out.status.success(), "ssh-keygen -F did not find the entry");

    let mut t = SshTransport::new(cfg);
    assert_eq!(
        run_sh(&mut t, "echo trusted", None).expect("exec").stdout,
        "trusted\n"
    );
}

#[test]
fn timeout_kills_the_remote_process_tree() {
    let sshd = Sshd::start("127.0.0.9");
    let mut t = transport(&sshd);
    let d = sshd.dir().display().to_string();
    let script = format!("sleep 300 & echo $! > '{d}/child'; echo $$ > '{d}/shell'; wait");
    let out = run_sh(&mut t, &script, Some(Duration::from_secs(1))).expect("exec");
    assert_eq!(out.exit, CommandExit::TimedOut);
    let shell = read_pid(sshd.dir(), "shell");
    let child = read_pid(sshd.dir(), "child");
    assert!(
        stops_within(shell, EXIT_GRACE),
        "the shell {shell} still runs"
    );
    assert!(
        stops_within(child, EXIT_GRACE),
        "its child {child} still runs"
    );
    assert!(!out.stderr.contains("runner-pid"), "{:?}", out.stderr);

    // The session is still good for the next step.
    assert_eq!(
        run_sh(&mut t, "echo next", None).expect("exec").stdout,
        "next\n"
    );
}

#[test]
fn cancel_kills_the_remote_process_tree() {
    let sshd = Sshd::start("127.0.0.10");
    let mut t = transport(&sshd);
    let d = sshd.dir().display().to_string();
    // The child ignores SIGTERM, so stopping it needs the SIGKILL that follows the grace.
    let script = format!(
        "(trap '' TERM; sleep 300) & echo $! > '{d}/child'; echo $$ > '{d}/shell'; echo ready; wait"
    );
    let ctl = Control::new(None);
    let cancel = ctl.cancel.clone();
    let mut stdout = String::new();
    let exit = t
        .exec(&script, Shell::Sh, &ctl, &mut |s, b| {
            if s == Stream::Stdout {
                stdout.push_str(&String::from_utf8_lossy(b));
                if stdout.contains("ready") {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        })
        .expect("exec");
    assert_eq!(exit, CommandExit::Cancelled);
    let shell = read_pid(sshd.dir(), "shell");
    let child = read_pid(sshd.dir(), "child");
    assert!(
        stops_within(shell, EXIT_GRACE),
        "the shell {shell} still runs"
    );
    assert!(
        stops_within(child, EXIT_GRACE),
        "its child {child} still runs"
    );
}

#[test]
fn upload_verifies_size_and_sha256_on_the_target() {
    let sshd = Sshd::start("127.0.0.11");
    let mut t = transport(&sshd);
    let data = pseudo_random_bytes(5 * 1024 * 1024 + 123, 42);
    let src = sshd.dir().join("payload.bin");
    fs::write(&src, &data).expect("write payload");
    let dest = sshd.dir().join("dest").join("payload.copy");
    fs::create_dir(dest.parent().expect("parent")).expect("mkdir");

    let mut reports = Vec::new();
    t.upload(
        &src,
        &digest(&src),
        &dest.display().to_string(),
        Shell::Sh,
        &mut |n| {
            reports.push(n);
            Ok(())
        },
    )
    .expect("upload");
    assert_eq!(digest(&dest).sha256, runner_hex(&Sha256::digest(&data)));
    assert_eq!(fs::read(&dest).expect("read dest"), data);
    assert_eq!(reports.last().copied(), Some(data.len() as u64));
    assert!(
        reports.windows(2).all(|w| w[0] <= w[1]),
        "progress must not go back"
    );

    // Uploading again overwrites.
    let small = b"small".to_vec();
    fs::write(&src, &small).expect("write");
    t.upload(
        &src,
        &digest(&src),
        &dest.display().to_string(),
        Shell::Sh,
        &mut |_| Ok(()),
    )
    .expect("upload again");
    assert_eq!(fs::read(&dest).expect("read"), small);

    // A destination in a directory that does not exist is an error naming that directory.
    let missing_dir = sshd.dir().join("no-such-dir");
    let bad = missing_dir.join("x.bin");
    let err = t
        .upload(
            &src,
            &digest(&src),
            &bad.display().to_string(),
            Shell::Sh,
            &mut |_| Ok(()),
        )
        .expect_err("missing parent");
    match &err {
        TransportError::UploadParentMissing { parent, .. } => {
            assert_eq!(parent, &missing_dir.display().to_string())
        }
        other => panic!("expected UploadParentMissing, got {other:?}"),
    }
    assert!(err.to_string().contains(&missing_dir.display().to_string()));
    assert!(!missing_dir.exists(), "the directory must not be created");

    // The session survives the failed upload.
    assert_eq!(
        run_sh(&mut t, "echo after", None).expect("exec").stdout,
        "after\n"
    );
}

/// Larger than the upload's buffer, and not a whole number of its blocks, so the unsent rest
/// moves to the buffer's front several times and the last read is a short one.
#[test]
fn upload_larger_than_its_buffer_arrives_intact() {
    let sshd = Sshd::start("127.0.5.31");
    let mut t = transport(&sshd);
    let data = pseudo_random_bytes(41 * 1024 * 1024 + 4321, 7);
    let src = sshd.dir().join("large.bin");
    fs::write(&src, &data).expect("write payload");
    let dest = sshd.dir().join("large.copy");
    let upload = |t: &mut SshTransport, progress: runner::transport::Pace<'_>| {
        let _ = fs::remove_file(&dest);
        t.upload(
            &src,
            &digest(&src),
            &dest.display().to_string(),
            Shell::Sh,
            progress,
        )
        .expect("upload");
        assert!(
            fs::read(&dest).expect("read dest") == data,
            "the copy differs"
        );
    };
    let mut last = 0;
    upload(&mut t, &mut |n| {
        last = n;
        Ok(())
    });
    assert_eq!(last, data.len() as u64);

    // Again with the smallest buffer, which a wide fan-out of uploads gets: hold shares until
    // the budget is spent. (Other tests here may give one back meanwhile; then this upload
    // takes a larger size, which is tested above.)
    let mut held = Vec::new();
    while held
        .last()
        .is_none_or(|b: &UploadBuffer| b.window > 256 * 1024)
    {
        held.push(UploadBuffer::reserve());
    }
    upload(&mut t, &mut |_| Ok(()));
    drop(held);
}

fn runner_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn run_script_runs_the_file_and_removes_it() {
    let sshd = Sshd::start("127.0.0.12");
    let mut t = transport(&sshd);
    let d = sshd.dir().display().to_string();
    let script = sshd.dir().join("step.sh");
    fs::write(
        &script,
        format!("echo \"$0\" > '{d}/script-path'\necho from-script\necho oops >&2\nexit 4\n"),
    )
    .expect("write script");
    let ctl = Control::new(Some(Duration::from_secs(60)));
    let mut chunks = Vec::new();
    let exit = t
        .run_script(&script, Shell::Sh, &ctl, &mut |s, b| {
            chunks.push((s, b.to_vec()))
        })
        .expect("run_script");
    let out = common::collect(exit, chunks);
    assert_eq!(out.exit, CommandExit::Code(4));
    assert_eq!(out.stdout, "from-script\n");
    assert_eq!(out.stderr, "oops\n");
    let remote_path = fs::read_to_string(sshd.dir().join("script-path")).expect("read");
    let remote_path = remote_path.trim();
    assert!(remote_path.starts_with("/tmp/runner-"), "{remote_path}");
    assert!(
        !Path::new(remote_path).exists(),
        "{remote_path} was not removed"
    );

    // Removed also when the script is stopped.
    fs::write(
        &script,
        format!("echo \"$0\" > '{d}/script-path2'\nsleep 300\n"),
    )
    .expect("write script");
    let ctl = Control::new(Some(Duration::from_secs(1)));
    let exit = t
        .run_script(&script, Shell::Sh, &ctl, &mut |_, _| {})
        .expect("run_script");
    assert_eq!(exit, CommandExit::TimedOut);
    let remote_path = fs::read_to_string(sshd.dir().join("script-path2")).expect("read");
    assert!(!Path::new(remote_path.trim()).exists());
}

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

#[test]
fn a_recorded_key_of_another_type_is_negotiated_not_reported_as_changed() {
    let sshd = Sshd::start("127.0.0.16");
    // Only the server's ECDSA key is on record; the runner prefers ed25519, so it must connect
    // again asking for ECDSA instead of calling the ed25519 key "unknown" or "changed".
    let (kt, b64) = sshd.ecdsa_host_key();
    let kh = sshd.dir().join("ecdsa_known_hosts");
    fs::write(
        &kh,
        format!("[{}]:{} {kt} {b64}\n", sshd.host(), sshd.port()),
    )
    .expect("write");
    let mut cfg = ssh_config(&sshd);
    cfg.known_hosts = kh;
    let mut t = SshTransport::new(cfg.clone());
    assert_eq!(
        run_sh(&mut t, "echo ecdsa", None).expect("exec").stdout,
        "ecdsa\n"
    );

    // A different ECDSA key on record is a changed key, even though ed25519 is offered too.
    let other = sshd.dir().join("other_ecdsa");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let (kt, b64) = common::sshd::read_pub(&other.with_extension("pub"));
    let kh = sshd.dir().join("wrong_ecdsa_known_hosts");
    fs::write(
        &kh,
        format!("[{}]:{} {kt} {b64}\n", sshd.host(), sshd.port()),
    )
    .expect("write");
    cfg.known_hosts = kh;
    let err = SshTransport::new(cfg).connect().expect_err("changed");
    assert!(
        matches!(err, TransportError::HostKeyChanged { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&openssh_fingerprint(&sshd.ecdsa_host_pub_path())),
        "{err}"
    );
}

#[test]
fn upload_fails_when_the_target_reports_another_hash() {
    // The target's sha256sum lies: verification must catch it rather than trust the transfer.
    let sshd = Sshd::start_with("127.0.0.17", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let bin = sshd.dir().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    // Every tool the verification may use lies the same way.
    let fake = lying_tool(&bin, "sha256sum", &format!("{}  -", "0".repeat(64)));
    lying_tool(
        &bin,
        "openssl",
        &format!("SHA2-256(stdin)= {}", "0".repeat(64)),
    );
    let mut t = transport(&sshd);
    assert_eq!(
        run_sh(&mut t, "command -v sha256sum", None)
            .expect("exec")
            .stdout
            .trim(),
        fake.display().to_string(),
        "the session's PATH must pick the fake"
    );

    let src = sshd.dir().join("small.bin");
    fs::write(&src, b"payload").expect("write");
    let dest = sshd.dir().join("small.copy");
    // What the destination held before must survive an upload that did not verify.
    fs::write(&dest, b"the old, longer content").expect("write the old file");
    let err = t
        .upload(
            &src,
            &digest(&src),
            &dest.display().to_string(),
            Shell::Sh,
            &mut |_| Ok(()),
        )
        .expect_err("the hash does not match");
    match &err {
        TransportError::UploadVerify {
            expected_bytes,
            actual_bytes,
            actual_sha256,
            ..
        } => {
            assert_eq!(*expected_bytes, 7);
            assert_eq!(*actual_bytes, 7);
            assert_eq!(actual_sha256, &"0".repeat(64));
        }
        other => panic!("expected UploadVerify, got {other:?}"),
    }
    assert!(err.to_string().contains("local file is unchanged"), "{err}");
    match &err {
        TransportError::UploadVerify { .. } => {}
        other => panic!("{other:?}"),
    }
    assert_old_file_kept(&dest, b"the old, longer content");
}

/// `dest` still holds `old`, and no temporary file of the upload is left beside it.
fn assert_old_file_kept(dest: &Path, old: &[u8]) {
    assert_eq!(
        fs::read(dest).expect("read the destination"),
        old,
        "the destination was overwritten by an upload that failed"
    );
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let dir = dest.parent().expect("a parent");
    let left: Vec<_> = fs::read_dir(dir)
        .expect("read the folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.runner-")))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn upload_stops_when_the_source_changed_since_the_plan() {
    // The plan hashed 1 MiB; by the time the step runs the file is 6 MiB. The target must not
    // end up with an unreviewed file reported as fine, and the error must say to review again.
    let sshd = Sshd::start("127.0.0.18");
    let mut t = transport(&sshd);
    let src = sshd.dir().join("grows.bin");
    fs::write(&src, pseudo_random_bytes(1024 * 1024, 5)).expect("write");
    let planned = digest(&src);
    fs::write(&src, pseudo_random_bytes(6 * 1024 * 1024, 6)).expect("rewrite");
    let dest_path = sshd.dir().join("grows.copy");
    fs::write(&dest_path, b"reviewed earlier").expect("write the old file");
    let dest = dest_path.display().to_string();
    let changed = |t: &mut SshTransport, planned: &FileDigest| {
        t.upload(&src, planned, &dest, Shell::Sh, &mut |_| Ok(()))
            .expect_err("the source changed")
    };
    let err = changed(&mut t, &planned);
    match &err {
        TransportError::UploadSourceChanged(c) => {
            assert_eq!(c.expected_bytes, 1024 * 1024);
            assert!(
                c.now.starts_with(&format!("{} bytes", 6 * 1024 * 1024)),
                "{}",
                c.now
            );
        }
        other => panic!("expected UploadSourceChanged, got {other:?}"),
    }
    assert!(err.to_string().contains("runner plan"), "{err}");
    assert_old_file_kept(&dest_path, b"reviewed earlier");

    // Same size, other content, large enough to be hashed while written: that hash differs,
    // the finished file's too, and the local file is read again to tell the cause.
    let len = 9 * 1024 * 1024;
    fs::write(&src, pseudo_random_bytes(len, 1)).expect("write");
    let planned = digest(&src);
    fs::write(&src, pseudo_random_bytes(len, 2)).expect("rewrite");
    let err = changed(&mut t, &planned);
    assert!(
        matches!(err, TransportError::UploadSourceChanged(_)),
        "{err:?}"
    );
    assert_old_file_kept(&dest_path, b"reviewed earlier");

    // The session is still usable afterwards.
    assert_eq!(
        run_sh(&mut t, "echo after", None).expect("exec").stdout,
        "after\n"
    );
}

/// A large upload is hashed on the target while it is written (by Python, following the
/// file). That hash is taken when it matches; anything else goes to the usual hash of the
/// finished file, so a wrong follower can neither fail a good upload nor pass a bad one.
#[test]
fn upload_takes_the_hash_made_while_writing_only_when_it_matches() {
    let sshd = Sshd::start_with("127.0.5.32", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let bin = sshd.dir().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    let liar = |name: &str| lying_tool(&bin, name, &format!("{}  -", "0".repeat(64)));
    let mut t = transport(&sshd);
    let data = pseudo_random_bytes(9 * 1024 * 1024 + 11, 8);
    let src = sshd.dir().join("big.bin");
    fs::write(&src, &data).expect("write");
    let dest = sshd.dir().join("big.copy");
    let upload = |t: &mut SshTransport| {
        let _ = fs::remove_file(&dest);
        let result = t.upload(
            &src,
            &digest(&src),
            &dest.display().to_string(),
            Shell::Sh,
            &mut |_| Ok(()),
        );
        assert!(
            fs::read(&dest).expect("read dest") == data,
            "the copy differs"
        );
        result
    };

    // The follower lies: the hash of the finished file decides, and it matches.
    liar("python3");
    upload(&mut t).expect("a wrong follower must not fail a good upload");

    // Now the tools for the finished file lie and the follower is the real python3: the
    // upload passes only because the follower's hash was taken.
    fs::remove_file(bin.join("python3")).expect("remove the fake python3");
    for tool in ["openssl", "sha256sum", "shasum"] {
        liar(tool);
    }
    upload(&mut t).expect("the follower's matching hash");
}

/// An executable `name` in `bin` that reads its input and prints `output`, whatever it got.
fn lying_tool(bin: &Path, name: &str, output: &str) -> std::path::PathBuf {
    let path = bin.join(name);
    fs::write(
        &path,
        format!("#!/bin/sh\ncat >/dev/null\necho '{output}'\n"),
    )
    .expect("write a lying tool");
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    path
}

fn digest(path: &std::path::Path) -> runner::transport::FileDigest {
    runner::transport::FileDigest::of_file(path).expect("digest of the source")
}
