//! Upload, copy and fetch steps keep the limits a command keeps: the step's `timeout`, and
//! the second Ctrl-C. Against real sshd servers whose SFTP server is slowed (both ways) while
//! a gate file exists, so that a transfer lasts long enough to be stopped whatever the
//! machine's speed, and local targets: the transfer stops, its temporary files are gone on
//! both ends, the destination is as it was, the journal says why; an interrupted copy is
//! done by the next apply.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use runner::transport::winrm::{Credentials, WinrmConfig};
use runner::transport::{
    FileDigest, Halt, LocalTransport, Secret, Shell, Transport, TransportError, WinrmTransport,
};

use crate::common::winrm_server::{parse_request, Options, WinrmServer};
use crate::common::{pseudo_random_bytes, wait_until, Sshd};
use crate::common_cli::{runner, Run};

/// Where Debian and Red Hat keep OpenSSH's SFTP server.
const SFTP_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
];

/// Size of the files moved: at the slowed SFTP server's pace, minutes of transfer.
const BIG: usize = 64 * 1024 * 1024;

/// An SFTP server that passes at most 32 KiB per 20 ms each way while `DIR/slow` exists.
const SLOW_SFTP: &str = r#"#!/usr/bin/python3
import os, subprocess, sys, threading, time
here = os.path.dirname(os.path.abspath(__file__))
gate = os.path.join(here, "slow")
server = subprocess.Popen([sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

def pump(src, dst, close):
    while True:
        b = os.read(src, 32768)
        if not b:
            break
        os.write(dst, b)
        if os.path.exists(gate):
            time.sleep(0.02)
    close()

up = threading.Thread(target=pump, args=(0, server.stdin.fileno(), server.stdin.close))
up.daemon = True
up.start()
pump(server.stdout.fileno(), 1, lambda: None)
sys.exit(server.wait())
"#;

/// An sshd whose SFTP server is slow until [`open_gate`] (a lane of its own in `ip`).
fn slow_sshd(ip: &str) -> Sshd {
    let server = SFTP_SERVERS
        .iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("no OpenSSH sftp-server in {SFTP_SERVERS:?}"));
    let sshd = Sshd::start_with(ip, &format!("Subsystem sftp {{dir}}/slow-sftp {server}"));
    let script = sshd.dir().join("slow-sftp");
    fs::write(&script, SLOW_SFTP).expect("write the slow SFTP server");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(sshd.dir().join("slow"), b"").expect("close the gate");
    sshd
}

/// The SFTP server of `sshd` goes at full speed from now on.
fn open_gate(sshd: &Sshd) {
    fs::remove_file(sshd.dir().join("slow")).expect("open the gate");
}

/// YAML single-quoted scalar.
fn q(s: impl AsRef<str>) -> String {
    format!("'{}'", s.as_ref().replace('\'', "''"))
}

fn ssh_target(name: &str, sshd: &Sshd) -> String {
    format!(
        "  {name}:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    key: {}\n    known_hosts: {}\n",
        q(sshd.host()),
        sshd.port(),
        q(sshd.user()),
        q(sshd.user_key_path().display().to_string()),
        q(sshd.known_hosts_path().display().to_string()),
    )
}

/// A playbook without business hours, in `dir/cutover.yaml`.
fn write_playbook(dir: &Path, targets: &[String], steps: &str) -> PathBuf {
    let yaml = format!(
        "name: limits\nwindow:\n  business_hours: []\ntargets:\n{}steps:\n{steps}",
        targets.concat()
    );
    let path = dir.join("cutover.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

fn apply(dir: &Path) -> Run {
    runner(&["apply", "cutover.yaml"], dir, &[])
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        r.code, r.stdout, r.stderr
    )
}

/// `BIG` bytes: a random MiB, repeated (random enough for a transfer, quick to make).
fn big_content() -> Vec<u8> {
    let block = pseudo_random_bytes(1024 * 1024, 77);
    block.repeat(BIG / block.len())
}

/// Files in `dir` whose name says they are the temporary file of a transfer.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read the folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".runner-") || n.ends_with(".part"))
        .collect()
}

/// Spool files left in any run folder of `dir/cutover.yaml`'s journal.
fn spool_files(dir: &Path) -> Vec<String> {
    let runs = dir.join(".runner").join("runs").join("cutover");
    fs::read_dir(&runs)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .flat_map(|run| leftovers(&run.path()))
                .collect()
        })
        .unwrap_or_default()
}

/// The state and message of every attempt of `step`, in order.
fn attempts(dir: &Path, step: &str) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(dir.join(".runner").join("cutover.db")).expect("journal");
    let mut stmt = db
        .prepare("SELECT state, coalesce(message, '') FROM attempts WHERE step_id = ?1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([step], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// A folder `import` in `root` holding `name` with old content; returns the file's path.
fn old_destination(root: &Path, name: &str) -> PathBuf {
    let folder = root.join("import");
    fs::create_dir_all(&folder).expect("mkdir");
    let dest = folder.join(name);
    fs::write(&dest, b"last week's export").expect("write the old destination");
    dest
}

/// Asserts that `dest` still holds what [`old_destination`] wrote.
fn assert_unchanged(dest: &Path, context: &str) {
    let now = fs::read(dest).expect("the destination");
    assert!(
        now == b"last week's export",
        "{} was replaced ({} bytes now): {context}",
        dest.display(),
        now.len()
    );
}

/// Asserts the end of a transfer the step's timeout stopped.
fn assert_timed_out(dir: &Path, r: &Run, step: &str, dest: &Path) {
    assert_eq!(r.code, 1, "{}", show(r));
    assert_unchanged(dest, &show(r));
    let folder = dest.parent().expect("folder");
    assert_eq!(leftovers(folder), Vec::<String>::new(), "{}", show(r));
    assert_eq!(spool_files(dir), Vec::<String>::new());
    let rows = attempts(dir, step);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "timed_out", "{rows:?}");
    assert!(rows[0].1.contains("destination is as it was"), "{rows:?}");
}

#[test]
fn an_upload_over_ssh_that_outlasts_its_timeout_is_stopped_and_leaves_the_destination() {
    let sshd = slow_sshd("127.0.77.1");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("export.bin"), big_content()).expect("write the source");
    let dest = old_destination(sshd.dir(), "export.bin");
    let steps = format!(
        "  - id: send\n    on: box\n    timeout: 2s\n    upload: {{ src: export.bin, dest: {} }}\n",
        q(dest.display().to_string())
    );
    write_playbook(dir.path(), &[ssh_target("box", &sshd)], &steps);
    let r = apply(dir.path());
    assert_timed_out(dir.path(), &r, "send", &dest);
}

#[test]
fn a_copy_whose_upload_outlasts_its_timeout_is_stopped_and_leaves_the_destination() {
    let to = slow_sshd("127.0.77.2");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("export.bin");
    fs::write(&src, big_content()).expect("write the source");
    let dest = old_destination(to.dir(), "export.bin");
    let steps = format!(
        "  - id: move\n    timeout: 2s\n    copy: {{ from: here, path: {}, to: far, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    write_playbook(
        dir.path(),
        &[
            "  here:\n    transport: local\n".to_string(),
            ssh_target("far", &to),
        ],
        &steps,
    );
    let r = apply(dir.path());
    assert_timed_out(dir.path(), &r, "move", &dest);
}

#[test]
fn a_copy_to_a_local_target_whose_read_outlasts_its_timeout_is_stopped() {
    let from = slow_sshd("127.0.77.3");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = from.dir().join("export.bin");
    fs::write(&src, big_content()).expect("write the source");
    let dest = old_destination(dir.path(), "export.bin");
    let steps = format!(
        "  - id: move\n    timeout: 2s\n    copy: {{ from: far, path: {}, to: here, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    write_playbook(
        dir.path(),
        &[
            ssh_target("far", &from),
            "  here:\n    transport: local\n".to_string(),
        ],
        &steps,
    );
    let r = apply(dir.path());
    assert_timed_out(dir.path(), &r, "move", &dest);
}

#[test]
fn a_fetch_that_outlasts_its_timeout_is_stopped_and_leaves_the_local_file() {
    let from = slow_sshd("127.0.77.4");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = from.dir().join("export.bin");
    fs::write(&src, big_content()).expect("write the source");
    let dest = old_destination(dir.path(), "export.bin");
    let steps = format!(
        "  - id: bring\n    on: far\n    timeout: 2s\n    fetch: {{ path: {}, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    write_playbook(dir.path(), &[ssh_target("far", &from)], &steps);
    let r = apply(dir.path());
    assert_timed_out(dir.path(), &r, "bring", &dest);
}

/// `runner apply` in `dir`, its standard error piped.
fn spawn_apply(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "cutover.yaml"])
        .current_dir(dir)
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runner")
}

/// Waits for a temporary file in `folder`, then presses Ctrl-C twice (the second once the
/// first was acknowledged); returns the exit code and what runner printed.
fn interrupt_twice_during_the_transfer(mut run: Child, folder: &Path) -> (Option<i32>, String) {
    wait_until("the transfer's temporary file", || {
        !leftovers(folder).is_empty()
    });
    let pid = run.id() as i32;
    let sigint = || unsafe {
        libc::kill(pid, libc::SIGINT);
    };
    sigint();
    let mut err = BufReader::new(run.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "runner ended before acknowledging Ctrl-C: {seen}");
        seen.push_str(&line);
        if line.contains("no new steps will start") {
            break;
        }
    }
    sigint();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read stderr");
    seen.push_str(&rest);
    let status = run.wait().expect("wait for runner");
    (status.code(), seen)
}

#[test]
fn a_second_ctrl_c_stops_a_copys_upload_and_the_next_apply_does_it() {
    let to = slow_sshd("127.0.77.5");
    let dir = tempfile::tempdir().expect("tempdir");
    let content = big_content();
    let src = dir.path().join("export.bin");
    fs::write(&src, &content).expect("write the source");
    let dest = old_destination(to.dir(), "export.bin");
    let folder = dest.parent().expect("folder").to_path_buf();
    let steps = format!(
        "  - id: move\n    copy: {{ from: here, path: {}, to: far, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    write_playbook(
        dir.path(),
        &[
            "  here:\n    transport: local\n".to_string(),
            ssh_target("far", &to),
        ],
        &steps,
    );
    let (code, seen) = interrupt_twice_during_the_transfer(spawn_apply(dir.path()), &folder);
    assert_eq!(code, Some(130), "{seen}");
    assert_unchanged(&dest, &seen);
    assert_eq!(leftovers(&folder), Vec::<String>::new(), "{seen}");
    assert_eq!(spool_files(dir.path()), Vec::<String>::new());
    let rows = attempts(dir.path(), "move");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "interrupted", "{rows:?}");

    open_gate(&to);
    let r = apply(dir.path());
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(fs::read(&dest).expect("dest") == content, "{}", show(&r));
    assert_eq!(leftovers(&folder), Vec::<String>::new());
}

#[test]
fn a_second_ctrl_c_stops_an_upload_step_and_the_next_apply_does_it() {
    let sshd = slow_sshd("127.0.77.6");
    let dir = tempfile::tempdir().expect("tempdir");
    let content = big_content();
    fs::write(dir.path().join("export.bin"), &content).expect("write the source");
    let dest = old_destination(sshd.dir(), "export.bin");
    let folder = dest.parent().expect("folder").to_path_buf();
    let steps = format!(
        "  - id: send\n    on: box\n    upload: {{ src: export.bin, dest: {} }}\n",
        q(dest.display().to_string())
    );
    write_playbook(dir.path(), &[ssh_target("box", &sshd)], &steps);
    let (code, seen) = interrupt_twice_during_the_transfer(spawn_apply(dir.path()), &folder);
    assert_eq!(code, Some(130), "{seen}");
    assert_unchanged(&dest, &seen);
    assert_eq!(leftovers(&folder), Vec::<String>::new(), "{seen}");
    let rows = attempts(dir.path(), "send");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "interrupted", "{rows:?}");

    open_gate(&sshd);
    let r = apply(dir.path());
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(fs::read(&dest).expect("dest") == content, "{}", show(&r));
    assert_eq!(leftovers(&folder), Vec::<String>::new());
}

#[test]
fn a_second_ctrl_c_stops_a_fetch_and_the_next_apply_does_it() {
    let from = slow_sshd("127.0.77.9");
    let dir = tempfile::tempdir().expect("tempdir");
    let content = big_content();
    let src = from.dir().join("export.bin");
    fs::write(&src, &content).expect("write the source");
    let dest = old_destination(dir.path(), "export.bin");
    let folder = dest.parent().expect("folder").to_path_buf();
    let steps = format!(
        "  - id: bring\n    on: far\n    fetch: {{ path: {}, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    write_playbook(dir.path(), &[ssh_target("far", &from)], &steps);
    let (code, seen) = interrupt_twice_during_the_transfer(spawn_apply(dir.path()), &folder);
    assert_eq!(code, Some(130), "{seen}");
    assert_unchanged(&dest, &seen);
    assert_eq!(leftovers(&folder), Vec::<String>::new(), "{seen}");
    let rows = attempts(dir.path(), "bring");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "interrupted", "{rows:?}");

    open_gate(&from);
    let r = apply(dir.path());
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(fs::read(&dest).expect("dest") == content, "{}", show(&r));
    assert_eq!(leftovers(&folder), Vec::<String>::new());
}

// ---- the transports themselves: a pace that says stop ------------------------------------

/// A pace that lets the first block go and stops the upload after it.
fn stop_after_the_first_block(seen: &mut Vec<u64>) -> impl FnMut(u64) -> Result<(), Halt> + '_ {
    move |n| {
        seen.push(n);
        if n > 0 {
            Err(Halt::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_local_upload_stopped_by_its_pace_removes_its_temporary_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("export.bin");
    fs::write(&src, big_content()).expect("write the source");
    let dest = old_destination(dir.path(), "export.bin");
    let mut t = LocalTransport::new(dir.path().to_path_buf());
    let mut seen = Vec::new();
    let e = t
        .upload(
            &src,
            &FileDigest::of_file(&src).expect("digest"),
            "import/export.bin",
            Shell::Sh,
            &mut stop_after_the_first_block(&mut seen),
        )
        .expect_err("stopped");
    assert!(
        matches!(
            e,
            TransportError::Halted {
                halt: Halt::Cancelled,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(seen.len() == 2 && seen[1] < BIG as u64, "{seen:?}");
    assert_unchanged(&dest, &e.to_string());
    assert_eq!(
        leftovers(dest.parent().expect("folder")),
        Vec::<String>::new()
    );
}

#[test]
fn a_winrm_upload_stopped_by_its_pace_deletes_its_shell_and_removes_its_temporary_file() {
    let srv = WinrmServer::start(
        "127.0.77.7",
        Options {
            user: "admin".into(),
            password: "Limits!pw".into(),
            ..Options::default()
        },
    );
    srv.put_file("C:\\Temp\\a.zip", b"last week's export");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("a.zip");
    fs::write(&src, pseudo_random_bytes(1024 * 1024, 7)).expect("write the source");
    let mut t = WinrmTransport::new(WinrmConfig {
        name: "win".into(),
        host: srv.host(),
        port: srv.port(),
        tls: None,
        credentials: Credentials::Basic {
            user: "admin".into(),
            password: Secret::new("Limits!pw"),
        },
        connect_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(20),
    });
    let mut seen = Vec::new();
    let e = t
        .upload(
            &src,
            &FileDigest::of_file(&src).expect("digest"),
            "C:\\Temp\\a.zip",
            Shell::Cmd,
            &mut stop_after_the_first_block(&mut seen),
        )
        .expect_err("stopped");
    assert!(
        matches!(
            e,
            TransportError::Halted {
                halt: Halt::Cancelled,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        srv.file("C:\\Temp\\a.zip").as_deref(),
        Some(&b"last week's export"[..])
    );
    assert_eq!(srv.open_shells(), 0);
    let removal = srv
        .requests()
        .into_iter()
        .filter_map(|r| parse_request(&r.body).command)
        .find(|c| c.starts_with("del /f /q "));
    assert!(
        removal
            .as_deref()
            .is_some_and(|c| c.contains("C:\\Temp\\.a.zip.runner-")),
        "{removal:?}"
    );
}

#[test]
fn a_copy_whose_source_is_still_being_hashed_at_its_timeout_is_stopped() {
    // An `openssl` first on the source's PATH that never finishes hashing.
    let from = Sshd::start_with("127.0.77.8", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let bin = from.dir().join("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    let pid_file = from.dir().join("hasher.pid");
    fs::write(
        bin.join("openssl"),
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 3600\n",
            pid_file.display()
        ),
    )
    .expect("write the fake openssl");
    fs::set_permissions(bin.join("openssl"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = from.dir().join("export.bin");
    fs::write(&src, b"this week's export").expect("write the source");
    let dest = old_destination(dir.path(), "export.bin");
    let steps = format!(
        "  - id: move\n    timeout: 2s\n    copy: {{ from: far, path: {}, to: here, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    write_playbook(
        dir.path(),
        &[
            ssh_target("far", &from),
            "  here:\n    transport: local\n".to_string(),
        ],
        &steps,
    );
    let r = apply(dir.path());
    assert_timed_out(dir.path(), &r, "move", &dest);
    let pid = crate::common::read_pid(from.dir(), "hasher.pid");
    wait_until("the hasher on the source to be stopped", || {
        !crate::common::sshd::process_running(pid)
    });
}
