//! Long steps that survive the night: detached jobs followed across a killed runner and a
//! dropped connection, stopped as a whole on timeout; reboot-and-continue, resumed without a
//! second reboot. Real sshd on loopback, real processes, the real binary.

use crate::common::wait_until;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{process_running, read_pid, Sshd};
use crate::common_cli::runner;

fn target_yaml(name: &str, sshd: &Sshd, extra: &str) -> String {
    format!(
        "  {name}:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    key: {}\n    known_hosts: {}\n{extra}",
        sshd.host(),
        sshd.port(),
        sshd.user(),
        sshd.user_key_path().display(),
        sshd.known_hosts_path().display()
    )
}

fn playbook(dir: &Path, targets: &str, steps: &str) -> PathBuf {
    let p = dir.join("p.yaml");
    let text = format!(
        "name: Long steps\nwindow:\n  business_hours: []\ntargets:\n{targets}steps:\n{steps}"
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// Starts `runner apply` in the background.
fn spawn_apply(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "p.yaml"])
        .current_dir(dir)
        .env_remove("RUNNER_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Like [`wait_for`], but shows the run logs under `dir` if the wait fails.
fn wait_in(dir: &Path, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; run logs:\n{}",
            all_run_logs(dir)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn kill9(child: &mut Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A detached step: it waits for `go`, and writes a line to `ledger` when it starts and ends.
fn waiting_step(id: &str, dir: &Path, extra: &str) -> String {
    let d = dir.display();
    format!(
        "  - id: {id}\n    on: box\n    detach: true\n    run: |\n      echo start >> {d}/ledger\n      echo first half\n      touch {d}/started\n      while [ ! -f {d}/go ]; do sleep 0.1; done\n      echo second half\n      echo end >> {d}/ledger\n{extra}"
    )
}

fn all_run_logs(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(runs) = std::fs::read_dir(dir.join(".runner/runs/p")) {
        for run in runs.flatten() {
            for f in std::fs::read_dir(run.path()).unwrap().flatten() {
                text.push_str(&std::fs::read_to_string(f.path()).unwrap_or_default());
            }
        }
    }
    text
}

#[test]
fn a_detached_step_runs_to_the_end_and_leaves_no_job_folder() {
    let sshd = Sshd::start("127.0.0.41");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("go"), "").unwrap();
    let steps = format!(
        "{}  - id: after\n    on: box\n    run: echo after >> {}/ledger\n",
        waiting_step("long", dir.path(), ""),
        dir.path().display()
    );
    playbook(dir.path(), &target_yaml("box", &sshd, ""), &steps);
    let r = runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(lines(&dir.path().join("ledger")), ["start", "end", "after"]);
    let logs = all_run_logs(dir.path());
    assert!(
        logs.contains("first half") && logs.contains("second half"),
        "{logs}"
    );
    assert!(
        logs.contains("detached: output and status in /tmp/runner-jobs/"),
        "{logs}"
    );
    // The job folders of this run are gone once the results are in the journal.
    let run_id = std::fs::read_dir(dir.path().join(".runner/runs/p"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    assert!(!Path::new("/tmp/runner-jobs")
        .join(&run_id)
        .join("1")
        .exists());
    // Nor is the run's folder left behind, empty.
    assert!(!Path::new("/tmp/runner-jobs").join(&run_id).exists());
}

#[test]
fn a_killed_runner_reattaches_to_a_job_that_finished_meanwhile() {
    let sshd = Sshd::start("127.0.0.42");
    let dir = tempfile::tempdir().unwrap();
    let steps = format!(
        "{}  - id: after\n    on: box\n    run: echo after >> {}/ledger\n",
        waiting_step("long", dir.path(), ""),
        dir.path().display()
    );
    playbook(dir.path(), &target_yaml("box", &sshd, ""), &steps);
    let mut first = spawn_apply(dir.path());
    wait_until("the job to start", || dir.path().join("started").exists());
    kill9(&mut first);
    // status says where the job runs while no runner follows it.
    let st = runner(&["status", "p.yaml"], dir.path(), &[]);
    assert!(
        st.stdout.contains("detached job in /tmp/runner-jobs/"),
        "{}",
        st.stdout
    );
    // The job outlives the runner and finishes on its own.
    std::fs::write(dir.path().join("go"), "").unwrap();
    wait_until("the job to end", || {
        lines(&dir.path().join("ledger")).len() == 2
    });

    let r = runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("a detached job: follow it"),
        "{}",
        r.stdout
    );
    // Started once, never twice; the next step ran.
    assert_eq!(lines(&dir.path().join("ledger")), ["start", "end", "after"]);
    assert!(all_run_logs(dir.path()).contains("second half"));
}

#[test]
fn a_killed_runner_follows_a_job_still_running_to_its_end() {
    let sshd = Sshd::start("127.0.0.43");
    let dir = tempfile::tempdir().unwrap();
    playbook(
        dir.path(),
        &target_yaml("box", &sshd, ""),
        &waiting_step("long", dir.path(), ""),
    );
    let mut first = spawn_apply(dir.path());
    wait_until("the job to start", || dir.path().join("started").exists());
    kill9(&mut first);

    let second = spawn_apply(dir.path());
    // The resume is following the job (its run log says so) before the job may end.
    wait_until("the resume to follow the job", || {
        all_run_logs(dir.path()).contains("following the detached job in")
    });
    std::fs::write(dir.path().join("go"), "").unwrap();
    let (code, out) = finish(second);
    assert_eq!(code, 0, "{out}");
    assert_eq!(lines(&dir.path().join("ledger")), ["start", "end"]);
}

#[test]
fn a_detached_step_survives_a_restart_of_sshd_and_its_output_is_whole() {
    let mut sshd = Sshd::start("127.0.0.44");
    let dir = tempfile::tempdir().unwrap();
    playbook(
        dir.path(),
        &target_yaml("box", &sshd, ""),
        &waiting_step("long", dir.path(), ""),
    );
    let run = spawn_apply(dir.path());
    wait_until("the job to start", || dir.path().join("started").exists());
    wait_until("the first half of the output", || {
        all_run_logs(dir.path()).contains("first half")
    });
    sshd.restart();
    std::fs::write(dir.path().join("go"), "").unwrap();
    let (code, out) = finish(run);
    assert_eq!(code, 0, "{out}\n{}", sshd.log());
    assert_eq!(lines(&dir.path().join("ledger")), ["start", "end"]);
    let log = all_run_logs(dir.path());
    // Each line of output exactly once: nothing lost, nothing repeated across the reconnect.
    assert_eq!(log.matches("| first half").count(), 1, "{log}");
    assert_eq!(log.matches("| second half").count(), 1, "{log}");
}

#[test]
fn a_timeout_stops_the_whole_detached_process_group() {
    let sshd = Sshd::start("127.0.0.45");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let steps = format!(
        "  - id: slow\n    on: box\n    detach: true\n    timeout: 2s\n    run: |\n      sleep 300 &\n      echo $! > {d}/child.pid\n      echo $$ > {d}/shell.pid\n      wait\n"
    );
    playbook(dir.path(), &target_yaml("box", &sshd, ""), &steps);
    let r = runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("timed out"),
        "{}",
        r.stderr
    );
    for f in ["child.pid", "shell.pid"] {
        let pid: u32 = std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !process_running(pid),
            "{f} ({pid}) still runs after the timeout"
        );
    }
}

/// A target whose "reboot" asks the test to restart its sshd and change its boot id.
fn rebootable(sshd: &Sshd, dir: &Path) -> String {
    let d = dir.display();
    std::fs::write(dir.join("boot_id"), "boot-1\n").unwrap();
    target_yaml(
        "box",
        sshd,
        &format!(
            "    reboot_command: echo requested >> {d}/reboots\n    boot_id_command: cat {d}/boot_id\n"
        ),
    )
}

/// Plays the machine: when a reboot is requested, restart sshd and give it a new boot id.
fn reboot_when_asked(sshd: &mut Sshd, dir: &Path, n: usize, new_id: &str) {
    wait_in(dir, "the reboot request", || {
        lines(&dir.join("reboots")).len() >= n
    });
    sshd.restart();
    std::fs::write(dir.join("boot_id"), format!("{new_id}\n")).unwrap();
}

#[test]
fn reboot_and_continue_with_reboot_steps_and_reboot_on_codes() {
    let mut sshd = Sshd::start("127.0.0.46");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let steps = format!(
        "  - id: install\n    on: box\n    run: echo install >> {d}/ledger; exit 100\n    reboot_on: [100]\n  - id: restart\n    on: box\n    reboot: {{ timeout: 2m }}\n  - id: after\n    on: box\n    run: echo after >> {d}/ledger\n"
    );
    playbook(dir.path(), &rebootable(&sshd, dir.path()), &steps);
    let run = spawn_apply(dir.path());
    reboot_when_asked(&mut sshd, dir.path(), 1, "boot-2");
    reboot_when_asked(&mut sshd, dir.path(), 2, "boot-3");
    let (code, out) = finish(run);
    assert_eq!(code, 0, "{out}");
    assert_eq!(lines(&dir.path().join("ledger")), ["install", "after"]);
    assert_eq!(lines(&dir.path().join("reboots")).len(), 2);
    let logs = all_run_logs(dir.path());
    assert!(
        logs.contains("boot id boot-1 -> boot-2") && logs.contains("boot id boot-2 -> boot-3"),
        "{logs}"
    );
}

#[test]
fn a_runner_killed_while_waiting_for_a_reboot_waits_again_without_rebooting_again() {
    let mut sshd = Sshd::start("127.0.0.47");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let steps = format!(
        "  - id: restart\n    on: box\n    reboot: {{ timeout: 5m }}\n  - id: after\n    on: box\n    run: echo after >> {d}/ledger\n"
    );
    playbook(dir.path(), &rebootable(&sshd, dir.path()), &steps);
    let mut first = spawn_apply(dir.path());
    wait_until("the reboot request", || {
        lines(&dir.path().join("reboots")).len() == 1
    });
    kill9(&mut first);
    // The machine comes back while no runner is watching.
    sshd.restart();
    std::fs::write(dir.path().join("boot_id"), "boot-2\n").unwrap();

    let r = runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("a reboot: wait for the target"),
        "{}",
        r.stdout
    );
    assert_eq!(
        lines(&dir.path().join("reboots")).len(),
        1,
        "rebooted a second time"
    );
    assert_eq!(lines(&dir.path().join("ledger")), ["after"]);
}

#[test]
fn a_runner_killed_during_an_attached_step_takes_the_command_with_it() {
    let sshd = Sshd::start("127.0.0.48");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let steps = format!(
        "  - id: attached\n    on: box\n    detach: false\n    run: |\n      sleep 300 &\n      echo $! > {d}/child.pid\n      echo $$ > {d}/shell.pid\n      wait\n"
    );
    playbook(dir.path(), &target_yaml("box", &sshd, ""), &steps);
    let mut run = spawn_apply(dir.path());
    wait_until("the command to start", || {
        dir.path().join("shell.pid").exists() && dir.path().join("child.pid").exists()
    });
    let (shell, child) = (
        read_pid(dir.path(), "shell.pid"),
        read_pid(dir.path(), "child.pid"),
    );
    kill9(&mut run);
    // The connection closes with the runner; the command must not run on unattended.
    wait_until("the orphaned command to stop", || {
        !process_running(shell) && !process_running(child)
    });
}

#[test]
fn a_detached_job_is_followed_even_when_business_hours_have_begun() {
    let sshd = Sshd::start("127.0.0.49");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name: Window\nwindow:\n  timezone: UTC\n  business_hours:\n    - {{ days: mon-fri, from: \"08:00\", to: \"18:00\" }}\ntargets:\n{}steps:\n{}  - id: after\n    on: box\n    run: echo after >> {}/ledger\n",
        target_yaml("box", &sshd, ""),
        waiting_step("long", dir.path(), ""),
        dir.path().display()
    );
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    // Tuesday 02:00: the night is open.
    let mut first = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "p.yaml"])
        .current_dir(dir.path())
        .env("RUNNER_NOW", "2026-03-10T02:00:00Z")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the job to start", || dir.path().join("started").exists());
    kill9(&mut first);
    std::fs::write(dir.path().join("go"), "").unwrap();

    // Tuesday 10:00: business hours. The job already ran; its result is collected, but the
    // next step may not start.
    let r = runner(
        &["apply", "p.yaml"],
        dir.path(),
        &[("RUNNER_NOW", "2026-03-10T10:00:00Z")],
    );
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("a detached job: follow it"),
        "{}",
        r.stdout
    );
    assert_eq!(lines(&dir.path().join("ledger")), ["start", "end"]);
    let status = runner(&["status", "p.yaml", "--format", "json"], dir.path(), &[]);
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
}

#[test]
fn a_second_ctrl_c_stops_a_detached_job_on_the_target() {
    let sshd = Sshd::start("127.0.0.50");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // The job would run for a day: only the second Ctrl-C can end this test in time.
    let steps = format!(
        "  - id: long\n    on: box\n    detach: true\n    run: |\n      echo $$ > {d}/job.pid\n      sleep 86400 &\n      echo $! > {d}/child.pid\n      wait\n"
    );
    playbook(dir.path(), &target_yaml("box", &sshd, ""), &steps);
    let mut run = spawn_apply(dir.path());
    wait_until("the job to start", || {
        dir.path().join("job.pid").exists() && dir.path().join("child.pid").exists()
    });
    let (job, child) = (
        read_pid(dir.path(), "job.pid"),
        read_pid(dir.path(), "child.pid"),
    );
    let runner_pid = run.id() as i32;
    let sigint = || unsafe {
        libc::kill(runner_pid, libc::SIGINT);
    };
    // Two signals sent at once may merge into one: send the second once the first was heard.
    sigint();
    let mut err = std::io::BufReader::new(run.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "runner ended before acknowledging Ctrl-C: {seen}");
        seen.push_str(&line);
        if line.contains("no new steps will start") {
            break;
        }
    }
    sigint();
    let mut status = None;
    wait_until("runner to stop the job and exit", || {
        status = run.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{seen}");
    assert!(
        !process_running(job) && !process_running(child),
        "the job still runs: {seen}"
    );
}

// ---- where a detached job runs, and whose its folder is -----------------------------------

fn local_target() -> &'static str {
    "  box:\n    transport: local\n"
}

/// The job folder a run's log names (`detached: output and status in DIR on the target`).
fn job_folder_in_logs(dir: &Path) -> Option<String> {
    let logs = all_run_logs(dir);
    let rest = logs.split("detached: output and status in ").nth(1)?;
    rest.split(" on the target").next().map(str::to_string)
}

#[test]
fn a_detached_local_step_keeps_what_it_writes_to_a_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    playbook(
        dir.path(),
        local_target(),
        "  - id: export\n    on: box\n    detach: true\n    run: echo data > export.pst\n",
    );
    let r = runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // In the playbook's folder, as for an attached step; not removed with the job's files.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("export.pst")).unwrap_or_default(),
        "data\n"
    );
    let job = job_folder_in_logs(dir.path()).expect("the job folder in the logs");
    assert!(!Path::new(&job).exists(), "{job}");
    // No empty folder of the run is left either.
    let jobs = dir.path().join(".runner/jobs");
    assert_eq!(std::fs::read_dir(&jobs).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn a_detached_ssh_step_runs_in_the_login_folder_like_an_attached_one() {
    let sshd = Sshd::start("127.0.0.48");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let steps = format!(
        "  - id: attached\n    on: box\n    run: pwd > {d}/attached\n\
         \x20 - id: detached\n    on: box\n    detach: true\n    run: pwd > {d}/detached\n"
    );
    playbook(dir.path(), &target_yaml("box", &sshd, ""), &steps);
    let r = runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let attached = std::fs::read_to_string(dir.path().join("attached")).unwrap();
    let detached = std::fs::read_to_string(dir.path().join("detached")).unwrap();
    assert!(!attached.contains("runner-jobs"), "{attached}");
    assert_eq!(detached, attached);
}

/// The job folder root of a local target, pre-created by another user (or a symlink to a
/// folder someone prepared): the runner refuses it before the job starts, exit 1.
fn refused_before_the_job_starts(prepare: impl FnOnce(&Path), why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    playbook(
        dir.path(),
        local_target(),
        &format!("  - id: long\n    on: box\n    detach: true\n    run: echo ran >> {d}/ledger\n"),
    );
    std::fs::create_dir_all(dir.path().join(".runner")).unwrap();
    prepare(&dir.path().join(".runner/jobs"));
    let r = runner(&["apply", "p.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let all = format!("{}{}{}", r.stdout, r.stderr, all_run_logs(dir.path()));
    assert!(all.contains("the detached job was not started"), "{all}");
    assert!(all.contains(why), "{all}");
    assert!(!dir.path().join("ledger").exists(), "the job ran");
}

#[test]
fn a_job_folder_root_created_by_another_user_is_refused() {
    refused_before_the_job_starts(
        |root| {
            std::fs::create_dir(root).unwrap();
            let path = std::ffi::CString::new(root.to_str().unwrap()).unwrap();
            // SAFETY: chown(2) with a valid NUL-terminated path.
            let chowned = unsafe { libc::chown(path.as_ptr(), 65534, 65534) };
            assert_eq!(chowned, 0, "chown to nobody (the tests run as root)");
        },
        "belongs to uid 65534",
    );
}

#[test]
fn a_job_folder_root_that_is_a_symlink_is_refused() {
    refused_before_the_job_starts(
        |root| {
            let elsewhere = root.with_file_name("elsewhere");
            std::fs::create_dir(&elsewhere).unwrap();
            std::os::unix::fs::symlink(&elsewhere, root).unwrap();
        },
        "symbolic link",
    );
}

/// While a job runs over SSH, its folder is handed to another user with a planted `status`
/// saying success: the runner must not believe it. The job is in doubt (it may still run),
/// and without a check the step is left to an operator: exit 1, not a success.
#[test]
fn a_job_folder_taken_over_while_the_job_runs_is_not_believed() {
    let sshd = Sshd::start("127.0.0.49");
    let dir = tempfile::tempdir().unwrap();
    playbook(
        dir.path(),
        &target_yaml("box", &sshd, ""),
        &waiting_step("long", dir.path(), ""),
    );
    let child = spawn_apply(dir.path());
    wait_until("the job to start", || dir.path().join("started").exists());
    let job = job_folder_in_logs(dir.path()).expect("the job folder in the logs");
    std::fs::write(Path::new(&job).join("status.tmp"), "0\n").unwrap();
    std::fs::rename(
        Path::new(&job).join("status.tmp"),
        Path::new(&job).join("status"),
    )
    .unwrap();
    let path = std::ffi::CString::new(job.as_str()).unwrap();
    // SAFETY: chown(2) with a valid NUL-terminated path.
    let chowned = unsafe { libc::chown(path.as_ptr(), 65534, 65534) };
    assert_eq!(chowned, 0, "chown to nobody (the tests run as root)");
    let (code, out) = finish(child);
    // Let the job end, and clean up what the runner refused to touch.
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("belongs to uid 65534"), "{out}");
    let st = runner(&["status", "p.yaml"], dir.path(), &[]);
    assert!(!st.stdout.contains("succeeded"), "{}", st.stdout);
    wait_until("the job to end", || {
        lines(&dir.path().join("ledger")).len() == 2
    });
    let _ = std::fs::remove_dir_all(&job);
}
