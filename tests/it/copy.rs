//! `copy` (target to target through the runner) and `fetch` (target to this machine) steps,
//! end to end: real sshd servers, a local target, the WinRM test server; what arrives is
//! compared byte for byte, and a file that changes while it is read never replaces the old
//! destination.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::winrm_server::{Options, WinrmServer};
use crate::common::{pseudo_random_bytes, wait_until, Sshd};
use crate::common_cli::{runner, Run};

const WINRM_PASSWORD: &str = "Copy!pw";
const WINRM_PW_ENV: &str = "RUNNER_TEST_COPY_WINRM_PW";

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

fn local_target(name: &str) -> String {
    format!("  {name}:\n    transport: local\n")
}

fn winrm_target(name: &str, srv: &WinrmServer) -> String {
    format!(
        "  {name}:\n    transport: winrm\n    host: {}\n    port: {}\n    user: admin\n    password: {{ env: {WINRM_PW_ENV} }}\n    auth: basic\n    allow_unencrypted: true\n",
        srv.host(),
        srv.port()
    )
}

/// A playbook without business hours, in `dir/cutover.yaml`.
fn write_playbook(dir: &Path, targets: &[String], steps: &str) -> PathBuf {
    let yaml = format!(
        "name: copies\nwindow:\n  business_hours: []\ntargets:\n{}steps:\n{steps}",
        targets.concat()
    );
    let path = dir.join("cutover.yaml");
    fs::write(&path, yaml).expect("write the playbook");
    path
}

fn run(cmd: &str, pb: &Path) -> Run {
    runner(
        &[cmd, &pb.display().to_string()],
        pb.parent().expect("folder"),
        &[(WINRM_PW_ENV, WINRM_PASSWORD)],
    )
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        r.code, r.stdout, r.stderr
    )
}

/// Binary content with NUL bytes, longer than 64 KiB (several blocks of every transport).
fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut b = pseudo_random_bytes(len, seed);
    b[0] = 0;
    b[65_536] = 0;
    b[len - 1] = 0;
    b
}

/// Files in `dir` whose name says they are the temporary file of a copy or fetch.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".runner-") || n.ends_with(".part"))
                .collect()
        })
        .unwrap_or_default()
}

/// Every spool file left in any run folder of `dir/cutover.yaml`'s journal.
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

/// A fake `openssl` on `sshd`'s PATH that hashes as the real one does, then runs `after`
/// (a shell command): the file then changes between its hash and its read.
fn openssl_then(sshd: &Sshd, after: &str) {
    let bin = sshd.dir().join("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    let fake = bin.join("openssl");
    fs::write(
        &fake,
        format!("#!/bin/sh\n/usr/bin/openssl \"$@\"\ncode=$?\n{after}\nexit $code\n"),
    )
    .expect("write the fake openssl");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn two_ssh_targets_copy_a_binary_file_byte_for_byte_through_the_runner() {
    let a = Sshd::start("127.0.41.1");
    let b = Sshd::start("127.0.41.2");
    let dir = tempfile::tempdir().expect("tempdir");
    let content = binary(300_001, 41);
    let src = a.dir().join("export.bin");
    fs::write(&src, &content).expect("write the source");
    let dest_dir = b.dir().join("import");
    fs::create_dir(&dest_dir).expect("mkdir");
    let dest = dest_dir.join("export.bin");
    fs::write(&dest, b"an older export").expect("write the old destination");
    let steps = format!(
        "  - id: move-export\n    copy: {{ from: old, path: {}, to: new, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    let pb = write_playbook(
        dir.path(),
        &[ssh_target("old", &a), ssh_target("new", &b)],
        &steps,
    );

    let r = run("apply", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(
        fs::read(&dest).expect("read the copy") == content,
        "the copy differs from the source"
    );
    assert_eq!(fs::read(&src).expect("read the source"), content);
    assert_eq!(leftovers(&dest_dir), Vec::<String>::new());
    assert_eq!(spool_files(dir.path()), Vec::<String>::new());

    // Done once: the next apply leaves it alone.
    let again = run("apply", &pb);
    assert_eq!(again.code, 0, "{}", show(&again));
    assert!(
        again.stdout.contains("done in an earlier run")
            || again.stderr.contains("done in an earlier run"),
        "{}",
        show(&again)
    );

    // Its definition covers where the file comes from and goes: another source is other work.
    let other = a.dir().join("other.bin");
    fs::write(&other, b"other").expect("write");
    let steps = steps.replace(&src.display().to_string(), &other.display().to_string());
    let pb = write_playbook(
        dir.path(),
        &[ssh_target("old", &a), ssh_target("new", &b)],
        &steps,
    );
    let changed = run("apply", &pb);
    assert_eq!(changed.code, 4, "{}", show(&changed));
    assert!(changed.stderr.contains("move-export"), "{}", show(&changed));
    assert!(fs::read(&dest).expect("read the copy") == content);
}

#[test]
fn a_source_that_changes_while_read_fails_the_copy_and_keeps_the_old_destination() {
    let a = Sshd::start_with("127.0.41.3", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let b = Sshd::start("127.0.41.4");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = a.dir().join("growing.log");
    fs::write(&src, binary(70_000, 43)).expect("write the source");
    openssl_then(
        &a,
        &format!("printf 'written late' >> {}", q(src.display().to_string())),
    );
    let dest = b.dir().join("growing.log");
    fs::write(&dest, b"the old copy").expect("write the old destination");
    let steps = format!(
        "  - id: copy-log\n    copy: {{ from: old, path: {}, to: new, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    let pb = write_playbook(
        dir.path(),
        &[ssh_target("old", &a), ssh_target("new", &b)],
        &steps,
    );

    let r = run("apply", &pb);
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(r.stderr.contains("did not arrive intact"), "{}", show(&r));
    assert_eq!(fs::read(&dest).expect("read"), b"the old copy");
    assert_eq!(leftovers(b.dir()), Vec::<String>::new());
    assert_eq!(spool_files(dir.path()), Vec::<String>::new());
}

#[test]
fn a_copy_to_a_missing_folder_fails_naming_it() {
    let a = Sshd::start("127.0.41.5");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = a.dir().join("a.bin");
    fs::write(&src, b"x").expect("write");
    let missing = a.dir().join("no-such-folder");
    let steps = format!(
        "  - id: copy-a\n    copy: {{ from: one, path: {}, to: one, dest: {} }}\n",
        q(src.display().to_string()),
        q(missing.join("a.bin").display().to_string())
    );
    let pb = write_playbook(dir.path(), &[ssh_target("one", &a)], &steps);
    let r = run("apply", &pb);
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(
        r.stderr.contains(&missing.display().to_string()),
        "{}",
        show(&r)
    );
    assert!(!missing.exists());
}

#[test]
fn a_copy_onto_a_folder_fails_and_leaves_the_folder_alone() {
    let a = Sshd::start("127.0.41.10");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = a.dir().join("a.bin");
    fs::write(&src, b"x").expect("write");
    let folder = a.dir().join("a-folder");
    fs::create_dir(&folder).expect("mkdir");
    let steps = format!(
        "  - id: copy-a\n    copy: {{ from: one, path: {}, to: one, dest: {} }}\n",
        q(src.display().to_string()),
        q(folder.display().to_string())
    );
    let pb = write_playbook(dir.path(), &[ssh_target("one", &a)], &steps);
    let r = run("apply", &pb);
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(r.stderr.contains("a folder is in the way"), "{}", show(&r));
    assert_eq!(
        fs::read_dir(&folder).expect("list").count(),
        0,
        "the copy went into the folder"
    );
    assert_eq!(leftovers(a.dir()), Vec::<String>::new());
}

#[test]
fn a_copy_killed_part_way_is_done_again_on_resume() {
    let a = Sshd::start_with("127.0.41.6", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let b = Sshd::start("127.0.41.7");
    let dir = tempfile::tempdir().expect("tempdir");
    let content = binary(100_000, 47);
    let src = a.dir().join("db.bak");
    fs::write(&src, &content).expect("write the source");
    let hashed = a.dir().join("hashed");
    let go = a.dir().join("go");
    // The source's hash waits (bounded) for the test once it has marked that it ran.
    openssl_then(
        &a,
        &format!(
            "echo x >> {h}; i=0; until [ -e {g} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
            h = q(hashed.display().to_string()),
            g = q(go.display().to_string())
        ),
    );
    let dest = b.dir().join("db.bak");
    let steps = format!(
        "  - id: copy-backup\n    copy: {{ from: old, path: {}, to: new, dest: {} }}\n",
        q(src.display().to_string()),
        q(dest.display().to_string())
    );
    let pb = write_playbook(
        dir.path(),
        &[ssh_target("old", &a), ssh_target("new", &b)],
        &steps,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", &pb.display().to_string()])
        .current_dir(dir.path())
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runner");
    wait_until("the copy to hash its source", || hashed.exists());
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(!dest.exists());

    fs::write(&go, b"").expect("let the hash go on");
    let r = run("apply", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(fs::read(&dest).expect("read the copy") == content);
    assert!(
        r.stdout.contains("idempotent") || r.stderr.contains("idempotent"),
        "the in-doubt copy is redone because it is idempotent: {}",
        show(&r)
    );
    // The killed run's spool file is gone too.
    assert_eq!(spool_files(dir.path()), Vec::<String>::new());
}

#[test]
fn fetch_from_local_targets_writes_one_verified_file_per_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let content = binary(200_000, 53);
    let src = dir.path().join("inventory.bin");
    fs::write(&src, &content).expect("write the source");
    fs::create_dir(dir.path().join("got")).expect("mkdir");
    // An earlier fetch's file is replaced by the new one, atomically.
    fs::write(dir.path().join("got/l1.bin"), b"last week's").expect("write");
    let steps = format!(
        "  - id: get-inventory\n    on: [l1, l2]\n    fetch: {{ path: {}, dest: 'got/{{{{ target.name }}}}.bin' }}\n",
        q(src.display().to_string())
    );
    let pb = write_playbook(
        dir.path(),
        &[local_target("l1"), local_target("l2")],
        &steps,
    );

    let r = run("apply", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    for t in ["l1", "l2"] {
        let got = fs::read(dir.path().join(format!("got/{t}.bin"))).expect("read");
        assert!(got == content, "{t}'s fetched file differs");
    }
    assert_eq!(leftovers(&dir.path().join("got")), Vec::<String>::new());
}

/// A fetch makes the folders its file goes into, private (0700: what is fetched is often the
/// customer's data), as `ansible`'s fetch and `scp -r` users expect; an existing folder keeps
/// its mode.
#[test]
fn a_fetch_makes_the_folders_of_its_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("inventory.txt");
    fs::write(&src, b"inventory\n").expect("write the source");
    let steps = format!(
        "  - id: get\n    on: [l1]\n    fetch: {{ path: {}, dest: 'evidence/acme/{{{{ target }}}}.txt' }}\n",
        q(src.display().to_string())
    );
    let pb = write_playbook(dir.path(), &[local_target("l1")], &steps);
    let r = run("apply", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    let got = fs::read(dir.path().join("evidence/acme/l1.txt")).expect("the fetched file");
    assert_eq!(got, b"inventory\n");
    for made in ["evidence", "evidence/acme"] {
        let mode = fs::metadata(dir.path().join(made))
            .expect("made")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{made}");
    }
}

/// `{{ target }}` alone is the target's name (its details are `target.host`, `target.user`…),
/// in a fetch's file name as in a command.
#[test]
fn a_bare_target_in_a_template_is_the_targets_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("inventory.txt");
    fs::write(&src, b"inventory\n").expect("write the source");
    fs::create_dir(dir.path().join("got")).expect("mkdir");
    let steps = format!(
        "  - id: get\n    on: [l1, l2]\n    fetch: {{ path: {}, dest: 'got/{{{{ target }}}}.txt' }}\n  - id: say\n    on: [l1, l2]\n    run: echo {{{{ target }}}} on {{{{ target.transport }}}} >> {}\n",
        q(src.display().to_string()),
        q(dir.path().join("said").display().to_string())
    );
    let pb = write_playbook(
        dir.path(),
        &[local_target("l1"), local_target("l2")],
        &steps,
    );
    let r = run("apply", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    for t in ["l1", "l2"] {
        let got = fs::read(dir.path().join(format!("got/{t}.txt"))).expect("read");
        assert_eq!(got, b"inventory\n");
    }
    let mut said: Vec<String> = fs::read_to_string(dir.path().join("said"))
        .expect("said")
        .lines()
        .map(str::to_string)
        .collect();
    said.sort();
    assert_eq!(said, ["l1 on local", "l2 on local"]);
}

#[test]
fn a_fetch_of_a_file_that_changes_while_read_keeps_the_old_local_file() {
    let a = Sshd::start_with("127.0.41.8", "SetEnv PATH={dir}/bin:/usr/bin:/bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = a.dir().join("users.csv");
    fs::write(&src, binary(80_000, 59)).expect("write the source");
    openssl_then(
        &a,
        &format!("printf 'x' >> {}", q(src.display().to_string())),
    );
    fs::write(dir.path().join("users.csv"), b"the old export").expect("write");
    let steps = format!(
        "  - id: get-users\n    on: dc\n    fetch: {{ path: {}, dest: users.csv }}\n",
        q(src.display().to_string())
    );
    let pb = write_playbook(dir.path(), &[ssh_target("dc", &a)], &steps);

    let r = run("apply", &pb);
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(r.stderr.contains("did not arrive intact"), "{}", show(&r));
    assert_eq!(
        fs::read(dir.path().join("users.csv")).expect("read"),
        b"the old export"
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn fetch_and_copy_from_a_winrm_target() {
    let srv = WinrmServer::start(
        "127.0.41.9",
        Options {
            user: "admin".into(),
            password: WINRM_PASSWORD.into(),
            ..Options::default()
        },
    );
    let content = binary(150_000, 61);
    srv.put_file("C:\\Exports\\users.csv", &content);
    let dir = tempfile::tempdir().expect("tempdir");
    let copied = dir.path().join("copied.csv");
    // `dc` is only a copy's source here: its password is still resolved for the run.
    let steps = format!(
        "  - id: copy-users\n    copy: {{ from: dc, path: 'C:\\Exports\\users.csv', to: here, dest: {} }}\n",
        q(copied.display().to_string())
    );
    let pb = write_playbook(
        dir.path(),
        &[winrm_target("dc", &srv), local_target("here")],
        &steps,
    );
    // Without it the run does not start: a missing secret is bad input.
    let r = runner(
        &["apply", &pb.display().to_string()],
        dir.path(),
        &[(WINRM_PW_ENV, "")],
    );
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(r.stderr.contains(WINRM_PW_ENV), "{}", show(&r));
    assert!(!copied.exists());
    let r = run("apply", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(fs::read(&copied).expect("read") == content);

    let steps =
        "  - id: get-users\n    on: dc\n    fetch: { path: 'C:\\Exports\\users.csv', dest: users.csv }\n";
    let pb = write_playbook(dir.path(), &[winrm_target("dc", &srv)], steps);
    let r = run("apply", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(fs::read(dir.path().join("users.csv")).expect("read") == content);

    // A file that is not there fails the step, naming it.
    let steps = "  - id: get-missing\n    on: dc\n    fetch: { path: 'C:\\Exports\\none.csv', dest: none.csv }\n";
    let pb = write_playbook(dir.path(), &[winrm_target("dc", &srv)], steps);
    let r = run("apply", &pb);
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(r.stderr.contains("none.csv"), "{}", show(&r));
    assert!(!dir.path().join("none.csv").exists());
}

/// `runner validate` of a playbook with two local targets and `steps`.
fn validate(steps: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = write_playbook(dir.path(), &[local_target("a"), local_target("b")], steps);
    run("validate", &pb)
}

#[test]
fn bad_copy_and_fetch_steps_are_refused_with_their_position() {
    // 9 lines of header and targets come before the steps: a step's second line is line 11.
    let r = validate("  - id: c\n    copy: { from: a, path: /x, to: nosuch, dest: /y }\n");
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(r.stderr.contains("cutover.yaml:11:36"), "{}", show(&r));
    assert!(
        r.stderr.contains("`copy.to` names `nosuch`"),
        "{}",
        show(&r)
    );

    let r = validate("  - id: c\n    on: a\n    copy: { from: a, path: /x, to: b, dest: /y }\n");
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(r.stderr.contains("cutover.yaml:11:9"), "{}", show(&r));
    assert!(r.stderr.contains("a copy step has no `on`"), "{}", show(&r));

    let r = validate("  - id: c\n    copy: { from: a, path: /x, to: b }\n");
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(r.stderr.contains("cutover.yaml:11:11"), "{}", show(&r));
    assert!(r.stderr.contains("missing `dest` in copy"), "{}", show(&r));

    let r = validate("  - id: f\n    on: [a, b]\n    fetch: { path: /x, dest: out.csv }\n");
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(r.stderr.contains("cutover.yaml:12:30"), "{}", show(&r));
    assert!(
        r.stderr
            .contains("`fetch.dest` is the same file for targets `a` and `b`"),
        "{}",
        show(&r)
    );
    assert!(r.stderr.contains("{{ target.name }}"), "{}", show(&r));

    let r = validate("  - id: f\n    on: a\n    fetch: { dest: out.csv }\n");
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(r.stderr.contains("cutover.yaml:12:12"), "{}", show(&r));
    assert!(r.stderr.contains("missing `path` in fetch"), "{}", show(&r));
}

#[test]
fn the_plan_shows_a_copy_with_both_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = write_playbook(
        dir.path(),
        &[local_target("source"), local_target("sink")],
        "  - id: move-it\n    copy: { from: source, path: /srv/a.bin, to: sink, dest: /srv/b.bin }\n",
    );
    let r = run("plan", &pb);
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(r.stdout.contains("on sink, from source"), "{}", show(&r));
    assert!(
        r.stdout
            .contains("/srv/a.bin on `source` (local) -> /srv/b.bin on `sink`"),
        "{}",
        show(&r)
    );
}
