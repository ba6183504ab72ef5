//! A SIGKILL at any point leaves a journal that tells the truth and nothing running: the attempt is
//! recorded before its command, a fan-out keeps its finished hosts, an upload is sent again, an
//! attached local command dies with the runner.

use super::*;

/// Upper bound for waiting on a condition; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn attempt_is_committed_as_running_before_its_command_starts() {
    let mut p = Play::new(&["127.0.3.10"]);
    let d = p.dir().display().to_string();
    let db = p.db().display().to_string();
    // The command photographs the journal (database and write-ahead log) as it starts.
    let snap = format!(
        "mkdir -p {d}/snap; cp {db} {d}/snap/j.db; if [ -f {db}-wal ]; then cp {db}-wal {d}/snap/j.db-wal; fi"
    );
    p.write([p.quick("before", "h1"), step("probe", "h1", &snap)]);
    p.apply(&[]).expect_exit(0).run();

    let copy = all_attempts(&p.file("snap/j.db"));
    let probe: Vec<_> = copy.iter().filter(|a| a.step == "probe").collect();
    assert_eq!(probe.len(), 1, "{copy:?}");
    assert_eq!(
        (
            probe[0].target.as_str(),
            probe[0].kind.as_str(),
            probe[0].state.as_str()
        ),
        ("h1", "run", "running")
    );
    // The earlier step's outcome was committed too, and the run had not ended.
    let before: Vec<_> = copy.iter().filter(|a| a.step == "before").collect();
    assert_eq!(before.len(), 1, "{copy:?}");
    assert_eq!(before[0].state, "succeeded");
    let conn = open_journal(&p.file("snap/j.db"));
    let ended: Option<String> = conn
        .query_row("SELECT ended_at FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ended, None);
    // And the live journal has the outcome.
    assert_eq!(p.runs_of("probe", "h1")[0].state, "succeeded");
}

#[test]
fn kill9_during_fan_out_keeps_the_finished_host_and_decides_the_others_by_check() {
    let mut p = Play::new(&["127.0.3.11", "127.0.3.12", "127.0.3.13"]);
    let d = p.dir().display().to_string();
    let tag = "fan-{{ target.name }}";
    let work = format!("touch {d}/{tag}.work; ");
    p.write([
        step("fan", "[h1, h2, h3]", &p.held(tag, "", &work))
            .text("check", &format!("test -f {d}/{tag}.work")),
        p.quick("after", "h1"),
    ]);
    // h1 runs through; h2 and h3 stay in flight.
    p.hold("fan-h2");
    p.hold("fan-h3");
    p.crash_during(&["fan-h2", "fan-h3"], || {
        wait_until("fan on h1 to succeed", || {
            p.runs_of("fan", "h1")
                .first()
                .is_some_and(|a| a.state == "succeeded")
        });
    });
    assert_eq!(p.ledger("fan-h1"), (1, 1));
    // h2 had done its work when the runner died; h3 had not.
    std::fs::write(p.file("fan-h2.work"), "").unwrap();
    p.release("fan-h2");
    p.release("fan-h3");

    p.resume(&[])
        .expect_exit(0)
        .expect_stdout_contains("fan on h1: done in an earlier run")
        .expect_stdout_contains("fan on h2 was in flight when runner stopped: check passed: done")
        .expect_stdout_contains(
            "fan on h3 was in flight when runner stopped: check failed: run again",
        )
        .expect_stdout_lacks("fan on h1 was in flight")
        .run();

    assert_eq!(
        p.ledger("fan-h1"),
        (1, 1),
        "the finished host did not run again"
    );
    assert_eq!(p.ledger("fan-h2"), (1, 0));
    assert_eq!(p.ledger("fan-h3"), (2, 1));
    assert_eq!(p.ledger("after"), (1, 0));
    let states =
        |t: &str| -> Vec<String> { p.runs_of("fan", t).into_iter().map(|a| a.state).collect() };
    assert_eq!(states("h1"), ["succeeded"]);
    assert_eq!(states("h2"), ["interrupted"]);
    assert_eq!(states("h3"), ["interrupted", "succeeded"]);
    let checks_h1 = p
        .attempts()
        .into_iter()
        .filter(|a| a.step == "fan" && a.target == "h1" && a.kind == "check")
        .count();
    assert_eq!(checks_h1, 1, "h1's check ran once, after its own run");
}

/// Processes on this machine (the target) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
        })
        .collect()
}

/// A large upload is hashed on the target by a process that follows the file as it is
/// written. Killing the runner mid-upload must not leave that process behind, and the next
/// apply sends the whole file again (the step is idempotent) and verifies it.
#[test]
fn kill9_during_an_upload_leaves_no_hashing_process_and_resume_sends_it_again() {
    let mut p = Play::new(&["127.0.3.15"]);
    let data = common::pseudo_random_bytes(128 * 1024 * 1024, 15);
    std::fs::write(p.file("big.bin"), &data).unwrap();
    let dest = p.file("big.copy");
    p.write([bare("send")
        .key("on", "h1")
        .key(
            "upload",
            &format!("{{ src: big.bin, dest: '{}' }}", dest.display()),
        )
        .key("idempotent", "true")]);

    let mut bg = p.spawn_killed_apply();
    // The upload writes a new file beside the destination (`.big.copy.runner-TOKEN`) and
    // hashes that while it grows.
    let needle = p.file(".big.copy.runner-").display().to_string();
    wait_until("the hashing process on the target", || {
        processes_with(&needle)
            .iter()
            .any(|pid| process_running(*pid))
    });
    bg.kill();
    bg.wait();
    let copied = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    assert!(
        copied < data.len() as u64,
        "the upload finished before the kill ({copied} bytes); nothing was cut short"
    );
    wait_until("the hashing process to end with its connection", || {
        processes_with(&needle)
            .iter()
            .all(|pid| !process_running(*pid))
    });

    p.resume(&[]).expect_exit(0).run();
    assert!(std::fs::read(&dest).unwrap() == data, "the copy differs");
    let states: Vec<String> = p
        .runs_of("send", "h1")
        .into_iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, ["interrupted", "succeeded"]);
}

#[test]
fn kill9_of_the_runner_takes_its_attached_local_command_with_it() {
    let mut p = Play::local();
    p.write([step("copy", "here", &p.held("copy", "", "")).key("idempotent", "true")]);
    p.hold("copy");
    let mut bg = p.spawn_killed_apply();
    p.wait_started("copy");
    let pid = read_pid(p.dir(), "copy.pid");
    bg.kill();
    bg.wait();
    // Nothing keeps running unattended, although its hold file is still there.
    assert!(
        common::stops_within(pid, PATIENCE),
        "the local command {pid} outlived its runner"
    );

    // The resume runs it again, alone: one end, and only the second start reached it.
    p.release("copy");
    p.apply(&[]).expect_exit(0).run();
    assert_eq!(p.ledger("copy"), (2, 1));
}
