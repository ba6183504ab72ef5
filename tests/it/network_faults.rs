//! Network faults between the runner and a real sshd: a TCP proxy inside the test cuts or
//! stalls the connections on command, during a step and between steps, stalls them for
//! good (a black hole that still accepts new connections), which only keepalives can
//! notice, or cuts only the runner's side so that sshd does not notice and keeps the
//! command running.
//!
//! The targets point at the proxy (127.0.92.x), and their known_hosts carry the sshd's host key
//! under the proxy's `[host]:port`, as a jump through a NAT or a port forward would look.
//! Commands synchronise with the test through files on the "target" (this machine), never
//! through sleeps: a step announces that it started by writing its ledger and waits for a
//! `release` file before it ends, so the test knows the fault lands inside the command.

use crate::common::wait_until;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crate::common::run::{Ran, Run};
use crate::common::running::Running;
use crate::common::Sshd;
use crate::common_cli::runner;
use runner::journal::{AttemptKind, AttemptState, Journal, PairState};

// ---------------------------------------------------------------------------------------------
// The proxy.

#[derive(Default)]
struct Shared {
    /// Both sockets of every connection, so that `cut` can shut them down, and whether the
    /// connection was severed on the runner's side only.
    conns: Mutex<Vec<(TcpStream, TcpStream, Arc<AtomicBool>)>>,
    /// sshd's side of severed connections, held open so that sshd never sees them end.
    kept: Mutex<Vec<TcpStream>>,
    stalled: Mutex<bool>,
    unstalled: Condvar,
    accepted: AtomicUsize,
    /// Connections numbered below this forward nothing any more, in either direction.
    frozen_below: AtomicUsize,
    /// New connections are closed at once (the target "does not answer").
    refusing: AtomicBool,
}

/// A TCP forwarder from a loopback listener to an sshd.
struct Proxy {
    host: String,
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    fn start(ip: &str, upstream: (String, u16)) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared::default());
        let sh = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if sh.refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let id = sh.accepted.fetch_add(1, Ordering::SeqCst);
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                let severed = Arc::new(AtomicBool::new(false));
                if let Ok(mut conns) = sh.conns.lock() {
                    conns.push((c3, s3, Arc::clone(&severed)));
                }
                let a = Arc::clone(&sh);
                let b = Arc::clone(&sh);
                let up = Arc::clone(&severed);
                thread::spawn(move || pump(client, s2, &a, id, Toward::Server, &up));
                thread::spawn(move || pump(server, c2, &b, id, Toward::Runner, &severed));
            }
        });
        Proxy {
            host: ip.to_string(),
            port,
            shared,
        }
    }

    /// Closes every connection open now, in both directions: the runner sees its peer go.
    fn cut(&self) {
        let conns = std::mem::take(&mut *self.shared.conns.lock().expect("proxy state"));
        for (c, s, _) in conns {
            let _ = c.shutdown(Shutdown::Both);
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Closes the runner's side of every connection open now and keeps sshd's side open and
    /// quiet, as a link that fails silently or a middlebox that drops one side does: the
    /// runner sees its peer go, sshd sees nothing and keeps the command running.
    fn half_cut(&self) {
        let conns = std::mem::take(&mut *self.shared.conns.lock().expect("proxy state"));
        let mut kept = self.shared.kept.lock().expect("proxy state");
        for (c, s, severed) in conns {
            severed.store(true, Ordering::SeqCst);
            let _ = c.shutdown(Shutdown::Both);
            kept.push(s);
        }
    }

    /// From now on, connections are accepted and closed at once.
    fn refuse(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// Stops forwarding (the bytes wait in the proxy) until `resume`.
    fn stall(&self) {
        *self.shared.stalled.lock().expect("proxy state") = true;
    }

    /// From now on the connections open now deliver nothing, in either direction and for
    /// good, while their sockets stay open and keep acknowledging: a middlebox that lost its
    /// state. New connections are forwarded normally.
    fn stall_forever(&self) {
        self.shared
            .frozen_below
            .store(self.accepted(), Ordering::SeqCst);
    }

    fn resume(&self) {
        *self.shared.stalled.lock().expect("proxy state") = false;
        self.shared.unstalled.notify_all();
    }

    fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Toward {
    Server,
    Runner,
}

/// Copies `from` to `to`, holding data while the proxy is stalled; on a connection stalled
/// for good (number `id`), what arrives is read and dropped. Once the connection is severed,
/// nothing of the runner's side reaching its end is passed on to sshd, and what sshd sends is
/// read and dropped, so that sshd never notices.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: &Shared,
    id: usize,
    way: Toward,
    severed: &AtomicBool,
) {
    let frozen = || id < shared.frozen_below.load(Ordering::SeqCst);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen() {
            continue;
        }
        {
            let Ok(mut stalled) = shared.stalled.lock() else {
                break;
            };
            while *stalled {
                stalled = match shared.unstalled.wait(stalled) {
                    Ok(g) => g,
                    Err(_) => return,
                };
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            if way == Toward::Runner && severed.load(Ordering::SeqCst) {
                while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
            }
            break;
        }
    }
    // A black hole does not pass on the end of a connection either.
    if frozen() || (way == Toward::Server && severed.load(Ordering::SeqCst)) {
        return;
    }
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------------------------
// The scene: one sshd, one proxy in front of it, a playbook whose ssh target is the proxy.

struct Scene {
    sshd: Sshd,
    proxy: Proxy,
    dir: tempfile::TempDir,
    playbook: PathBuf,
}

impl Scene {
    /// `steps` is the YAML of the steps list; `{ledger}`, `{count}` and `{release}` in it are
    /// replaced by files in the sshd's scratch folder.
    fn new(n: u8, steps: &str) -> Scene {
        Scene::with_target_keys(n, "", steps)
    }

    /// Like `new`, with `keys` (YAML lines) added to the ssh target.
    fn with_target_keys(n: u8, keys: &str, steps: &str) -> Scene {
        let sshd = Sshd::start(&format!("127.0.92.{n}"));
        let proxy = Proxy::start(
            &format!("127.0.93.{n}"),
            (sshd.host().to_string(), sshd.port()),
        );
        let dir = tempfile::Builder::new()
            .prefix("runner-netfault-")
            .tempdir()
            .expect("tempdir");
        let (key_type, b64) = sshd.host_key();
        let known_hosts = dir.path().join("known_hosts");
        fs::write(
            &known_hosts,
            format!("[{}]:{} {key_type} {b64}\n", proxy.host, proxy.port),
        )
        .expect("write known_hosts");
        let steps = steps
            .replace("{ledger}", &sshd.dir().join("ledger").display().to_string())
            .replace("{count}", &sshd.dir().join("count").display().to_string())
            .replace(
                "{release}",
                &sshd.dir().join("release").display().to_string(),
            )
            .replace("{local}", &dir.path().display().to_string());
        let yaml = format!(
            "name: network faults\nwindow:\n  business_hours: []\ntargets:\n  \
             far:\n    transport: ssh\n    host: {}\n    port: {}\n    user: {}\n    key: {}\n    known_hosts: {}\n{keys}  \
             here:\n    transport: local\nsteps:\n{steps}",
            proxy.host,
            proxy.port,
            sshd.user(),
            sshd.user_key_path().display(),
            known_hosts.display(),
        );
        let playbook = dir.path().join("faults.yaml");
        fs::write(&playbook, yaml).expect("write playbook");
        Scene {
            sshd,
            proxy,
            dir,
            playbook,
        }
    }

    fn ledger(&self) -> Vec<String> {
        fs::read_to_string(self.sshd.dir().join("ledger"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn release(&self) {
        fs::write(self.sshd.dir().join("release"), "").expect("write release file");
    }

    /// `runner apply` of the playbook, to state its outcome and start in the background.
    fn apply(&self) -> Run {
        Run::at(self.dir.path())
            .journal_of("faults.yaml")
            .args(["apply", "faults.yaml"])
            // The transport's decisions (reconnecting) are logged at info.
            .env("RUST_LOG", "info")
    }

    /// Cuts the runner's side only, lets its reconnect hang in the handshake (the reconnect
    /// comes after it noted the command in the journal, and shows up as a second connection
    /// that goes no further), kills the runner with SIGKILL there, and lets connections through
    /// again.
    /// `runner` must have been started expecting SIGKILL.
    fn half_cut_and_kill_the_runner_as_it_reconnects(&self, mut bg: Running) {
        self.proxy.stall();
        self.proxy.half_cut();
        wait_until("the runner to reconnect", || self.proxy.accepted() >= 2);
        bg.kill();
        bg.wait();
        self.proxy.resume();
    }

    fn journal(&self) -> Journal {
        Journal::open(&self.dir.path().join(".runner").join("faults.db")).expect("open journal")
    }

    /// Everything the run wrote: step logs and events.jsonl of every run.
    fn run_files(&self) -> String {
        let mut all = String::new();
        let runs = self.dir.path().join(".runner").join("runs").join("faults");
        for run in fs::read_dir(&runs).expect("runs folder").flatten() {
            for f in fs::read_dir(run.path()).expect("run folder").flatten() {
                all.push_str(&fs::read_to_string(f.path()).unwrap_or_default());
            }
        }
        all
    }

    fn report(&self) -> String {
        let r = runner(
            &[
                "report",
                &self.playbook.display().to_string(),
                "--format",
                "markdown",
            ],
            self.dir.path(),
            &[],
        );
        assert_eq!(r.code, 0, "report failed: {}", r.stderr);
        r.stdout
    }
}

/// A command that counts its runs, logs `started-N` and, on its first run only, waits for the
/// release file before logging `done-N`.
const COUNTED: &str = "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; \
     echo started-$n >> {ledger}; \
     if [ $n = 1 ]; then while [ ! -e {release} ]; do sleep 0.02; done; fi; \
     echo done-$n >> {ledger}";

fn run_attempts(j: &Journal, step: &str) -> Vec<runner::journal::Attempt> {
    j.attempts(None)
        .expect("read attempts")
        .into_iter()
        .filter(|a| a.step_id == step && a.kind == AttemptKind::Run)
        .collect()
}

fn has(lines: &[String], l: &str) -> bool {
    lines.iter().any(|x| x == l)
}

/// `step` ran twice: the first attempt interrupted with a cause naming every one of `cause`,
/// the retry a success over a second connection through the proxy.
fn retried_over_a_new_connection(scene: &Scene, step: &str, cause: &[&str]) {
    let attempts = run_attempts(&scene.journal(), step);
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(
        attempts[0].state,
        AttemptState::Interrupted,
        "{attempts:#?}"
    );
    let said = attempts[0].message.clone().unwrap_or_default();
    for word in cause {
        assert!(said.contains(word), "cause: {said}");
    }
    assert_eq!(attempts[1].state, AttemptState::Succeeded);
    assert_eq!(
        scene.proxy.accepted(),
        2,
        "the retry needs a new connection"
    );
}

/// The counted command ran to its end on its second run, and not a third time.
fn done_on_the_second_run(scene: &Scene) {
    let ledger = scene.ledger();
    assert!(has(&ledger, "done-2"), "{ledger:?}");
    assert!(!has(&ledger, "started-3"), "ran a third time: {ledger:?}");
}

// ---------------------------------------------------------------------------------------------

/// Cuts the link while an idempotent step with one retry runs; returns the scene afterwards.
fn cut_an_idempotent_step(n: u8) -> Scene {
    let scene = Scene::new(
        n,
        &format!("  - {{ id: work, on: far, run: '{COUNTED}', idempotent: true, retries: 1 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the first attempt to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.cut();
    bg.wait();
    scene.release();
    scene
}

#[test]
fn cut_during_an_idempotent_step_is_retried_and_logged() {
    let scene = cut_an_idempotent_step(1);

    // The first attempt is not a success: the runner never saw it end. The retry is, over a
    // re-established connection.
    retried_over_a_new_connection(&scene, "work", &["connection to", "lost"]);
    done_on_the_second_run(&scene);

    // The cause is in the step log and in the events.
    let files = scene.run_files();
    assert!(files.contains("may have run in part or in full"), "{files}");
    assert!(files.contains("\"outcome\":\"interrupted\""), "{files}");
}

#[test]
fn the_cause_of_a_cut_is_in_the_report() {
    let scene = cut_an_idempotent_step(7);
    let report = scene.report();
    assert!(report.contains("lost"), "report:\n{report}");
}

/// The step `once` (neither check nor idempotent) lost its connection mid-command: apply
/// stops with exit 1 naming `cause` and asking for `runner mark`; one interrupted attempt,
/// not succeeded, and the command never started again.
fn left_to_an_operator(scene: &Scene, end: Ran, cause: &str) {
    let all = end.said();
    assert!(all.contains("runner mark"), "{all}");
    assert!(all.contains(cause), "{all}");
    let j = scene.journal();
    let attempts = run_attempts(&j, "once");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Interrupted);
    assert!(!matches!(
        j.pair("once", "far").expect("pair state"),
        PairState::Succeeded { .. }
    ));
    assert!(!has(&scene.ledger(), "started-2"));
}

#[test]
fn cut_during_a_step_without_check_or_idempotence_stops_for_an_operator() {
    let scene = Scene::new(
        2,
        &format!("  - {{ id: once, on: far, run: '{COUNTED}', retries: 3 }}\n"),
    );
    let bg = scene.apply().expect_exit(1).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.cut();
    let end = bg.wait();
    scene.release();
    // Not retried despite `retries: 3`: it may have had its effect, and nothing can tell.
    left_to_an_operator(&scene, end, "lost");
}

#[test]
fn cut_during_a_checked_step_lets_the_check_decide() {
    // The check finds the work not done (the first run is still waiting for its release), so
    // the step runs again, per its retries.
    let scene = Scene::new(
        3,
        &format!(
            "  - {{ id: checked, on: far, run: '{COUNTED}', check: 'grep -qx done-2 {{ledger}}', retries: 1 }}\n"
        ),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.cut();
    bg.wait();
    scene.release();
    let j = scene.journal();
    let checks: Vec<_> = j
        .attempts(None)
        .expect("attempts")
        .into_iter()
        .filter(|a| a.kind == AttemptKind::Check)
        .map(|a| a.state)
        .collect();
    // First the check after the lost connection (not done), then the one after the retry.
    assert_eq!(
        checks,
        vec![AttemptState::Failed, AttemptState::Succeeded],
        "{:#?}",
        j.attempts(None)
    );
    assert!(has(&scene.ledger(), "done-2"));
}

#[test]
fn cut_between_steps_reconnects_and_runs_the_next_step() {
    // `first` runs on the ssh target; `hold` (local) waits for the test, which cuts the idle
    // connection meanwhile; `second` must then run over a new session.
    let scene = Scene::new(
        4,
        "  - { id: first, on: far, run: 'echo first >> {ledger}' }\n\
         \x20 - { id: hold, on: here, run: 'touch {local}/holding; while [ ! -e {local}/go ]; do sleep 0.02; done' }\n\
         \x20 - { id: second, on: far, run: 'echo second >> {ledger}' }\n",
    );
    let bg = scene.apply().expect_exit(0).spawn();
    let holding = scene.dir.path().join("holding");
    wait_until("the local step between the two", || holding.exists());
    assert!(has(&scene.ledger(), "first"));
    assert_eq!(scene.proxy.accepted(), 1);
    scene.proxy.cut();
    fs::write(scene.dir.path().join("go"), "").expect("write go");
    bg.wait();
    assert_eq!(scene.ledger(), vec!["first", "second"]);
    assert_eq!(
        scene.proxy.accepted(),
        2,
        "the session was not re-established"
    );
    let second = run_attempts(&scene.journal(), "second");
    assert_eq!(second.len(), 1, "{second:#?}");
    assert_eq!(second[0].state, AttemptState::Succeeded);
}

#[test]
fn stall_during_a_step_then_recovery_records_one_success() {
    // The link hangs while the command runs and finishes; when it comes back, the runner sees
    // the real end and records exactly one success, without a second run.
    let scene = Scene::new(
        5,
        &format!("  - {{ id: slow, on: far, run: '{COUNTED}', retries: 2 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.stall();
    scene.release();
    wait_until("the command to end on the target", || {
        has(&scene.ledger(), "done-1")
    });
    scene.proxy.resume();
    bg.wait();
    let attempts = run_attempts(&scene.journal(), "slow");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Succeeded);
    assert_eq!(scene.ledger(), vec!["started-1", "done-1"]);
    assert_eq!(scene.proxy.accepted(), 1);
}

// ---------------------------------------------------------------------------------------------
// A link that stalls for good: TCP keeps acknowledging, so only keepalives can tell.

/// The shortest keepalive, so that three unanswered ones take seconds, not minutes.
const KEEPALIVE_1S: &str = "    keepalive: 1s\n";

/// What the transport says when keepalives go unanswered.
const SILENCE: &str = "3 keepalives unanswered";

#[test]
fn stall_for_good_during_an_idempotent_step_is_retried_over_a_new_connection() {
    let scene = Scene::with_target_keys(
        8,
        KEEPALIVE_1S,
        &format!("  - {{ id: work, on: far, run: '{COUNTED}', idempotent: true, retries: 1 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the first attempt to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.stall_forever();
    bg.wait();
    // The first run never learnt of the stall (its sshd still waits on the proxy); let it end.
    scene.release();

    retried_over_a_new_connection(&scene, "work", &["lost", SILENCE]);
    done_on_the_second_run(&scene);

    let files = scene.run_files();
    assert!(files.contains(SILENCE), "{files}");
    assert!(files.contains("\"outcome\":\"interrupted\""), "{files}");
}

#[test]
fn stall_for_good_during_an_upload_is_retried_over_a_new_connection() {
    // SFTP writes wait for the server's acknowledgements; on a stalled link none come, and
    // the upload must end as a lost connection after three keepalive intervals.
    let scene = Scene::with_target_keys(
        17,
        KEEPALIVE_1S,
        "  - { id: send, on: far, upload: { src: big.bin, dest: '{dest}' }, idempotent: true, retries: 1 }\n",
    );
    let dest = scene.sshd.dir().join("big.copy");
    let yaml = fs::read_to_string(&scene.playbook).expect("read playbook");
    fs::write(
        &scene.playbook,
        yaml.replace("{dest}", &dest.display().to_string()),
    )
    .expect("write playbook");
    // Large enough that it is still on its way when the test sees the first MiB arrive.
    let data: Vec<u8> = (0..64u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(scene.dir.path().join("big.bin"), &data).expect("write source");

    let bg = scene.apply().expect_exit(0).spawn();
    // It is written to a new file beside the destination, renamed into place once verified.
    let written = || {
        fs::read_dir(scene.sshd.dir())
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(".big.copy.runner-")
                    })
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    wait_until("the upload to be under way", || written() > 1024 * 1024);
    scene.proxy.stall_forever();
    bg.wait();

    retried_over_a_new_connection(&scene, "send", &["uploading", SILENCE]);
    assert!(
        fs::read(&dest).expect("read copy") == data,
        "the copy differs"
    );
}

#[test]
fn stall_for_good_during_a_step_without_check_or_idempotence_stops_for_an_operator() {
    let scene = Scene::with_target_keys(
        9,
        KEEPALIVE_1S,
        &format!("  - {{ id: once, on: far, run: '{COUNTED}', retries: 3 }}\n"),
    );
    let bg = scene.apply().expect_exit(1).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "started-1")
    });
    scene.proxy.stall_forever();
    let end = bg.wait();
    scene.release();
    left_to_an_operator(&scene, end, SILENCE);
}

#[test]
fn stall_for_good_between_steps_reconnects_before_the_next_step() {
    // Nothing of `second` was sent when the stall is noticed, so it is not in doubt: it runs
    // once over a new connection.
    let scene = Scene::with_target_keys(
        10,
        KEEPALIVE_1S,
        "  - { id: first, on: far, run: 'echo first >> {ledger}' }\n\
         \x20 - { id: hold, on: here, run: 'touch {local}/holding; while [ ! -e {local}/go ]; do sleep 0.02; done' }\n\
         \x20 - { id: second, on: far, run: 'echo second >> {ledger}' }\n",
    );
    let bg = scene
        .apply()
        .expect_exit(0)
        .expect_stderr_contains("reconnecting")
        .spawn();
    let holding = scene.dir.path().join("holding");
    wait_until("the local step between the two", || holding.exists());
    assert_eq!(scene.proxy.accepted(), 1);
    scene.proxy.stall_forever();
    fs::write(scene.dir.path().join("go"), "").expect("write go");
    bg.wait();
    assert_eq!(scene.ledger(), vec!["first", "second"]);
    assert_eq!(
        scene.proxy.accepted(),
        2,
        "the session was not re-established"
    );
    let j = scene.journal();
    let second = run_attempts(&j, "second");
    assert_eq!(second.len(), 1, "{second:#?}");
    assert_eq!(second[0].state, AttemptState::Succeeded);
    let all = j.attempts(None).expect("attempts");
    assert!(
        all.iter().all(|a| a.state != AttemptState::Interrupted),
        "{all:#?}"
    );
}

#[test]
fn a_quiet_step_and_an_idle_session_on_a_live_link_keep_their_connection() {
    // The other side of the keepalive rule: a command that prints nothing for longer than
    // three intervals, then a pause longer than one interval between steps. The server
    // answers every keepalive, so nothing is dropped and nothing reconnects. (The sleeps are
    // the situation under test, not synchronisation.)
    let scene = Scene::with_target_keys(
        11,
        KEEPALIVE_1S,
        "  - { id: quiet, on: far, run: 'sleep 4; echo quiet >> {ledger}' }\n\
         \x20 - { id: pause, on: here, run: 'sleep 2' }\n\
         \x20 - { id: after, on: far, run: 'echo after >> {ledger}' }\n",
    );
    let end = scene
        .apply()
        .expect_exit(0)
        .expect_stderr_lacks("reconnecting")
        .spawn()
        .wait();
    assert_eq!(scene.ledger(), vec!["quiet", "after"]);
    assert_eq!(scene.proxy.accepted(), 1, "{}", end.stderr);
    let all = scene.journal().attempts(None).expect("attempts");
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all.iter().all(|a| a.state == AttemptState::Succeeded),
        "{all:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Half cuts: sshd keeps the command running, the runner must stop it before a check or retry.

/// Like `COUNTED`, and a run that is stopped logs `term-N`. Its first run waits for a release
/// that only the end of a test gives; `end-N` is its end marker.
const TRAPPED: &str = "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; \
     trap \"echo term-$n >> {ledger}; exit 143\" TERM; echo start-$n >> {ledger}; \
     if [ $n = 1 ]; then while [ ! -e {release} ]; do sleep 0.02; done; fi; \
     echo end-$n >> {ledger}";

/// A check that logs itself and finds the work done once any run logged its end marker.
const CHECK_END: &str = "echo check >> {ledger}; grep -q ^end- {ledger}";

fn checked_trapped_step() -> String {
    format!("  - {{ id: checked, on: far, run: '{TRAPPED}', check: '{CHECK_END}', retries: 1 }}\n")
}

fn notes_of(
    j: &Journal,
    a: &runner::journal::Attempt,
) -> std::collections::BTreeMap<String, String> {
    j.notes(a.id).expect("read notes")
}

#[test]
fn half_cut_during_a_checked_step_stops_the_old_command_before_the_check() {
    let scene = Scene::new(12, &checked_trapped_step());
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.half_cut();
    bg.wait();
    scene.release();
    // The first command was stopped (its trap ran) before the check looked, and the retry
    // ran alone; the first never reached its end.
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Interrupted);
    assert_eq!(attempts[1].state, AttemptState::Succeeded);
    // Found running: sshd had not noticed the cut, so it was this runner that stopped it.
    let cause = attempts[0].message.clone().unwrap_or_default();
    // Stopped by the pid the runner learned, or (if the cut came before it learned it) found
    // by the token journaled before the command was sent.
    assert!(
        cause.contains(
            "still running on the target after the connection was lost; stopped it (pid "
        ) || cause.contains(
            "still running on the target after the connection was lost; stopped it (found by its token "
        ),
        "cause: {cause}"
    );
    let notes = notes_of(&j, &attempts[0]);
    assert!(
        notes
            .get("orphan")
            .is_some_and(|n| n.starts_with("process ") && n.contains("token=")),
        "{notes:?}"
    );
    assert_eq!(
        notes.get("orphan_settled").map(String::as_str),
        Some("stopped")
    );
    let files = scene.run_files();
    assert!(files.contains("; stopped it ("), "{files}");
    assert!(scene.report().contains("; stopped it ("));
}

#[test]
fn half_cut_during_an_idempotent_step_stops_the_old_command_before_the_retry() {
    let scene = Scene::new(
        13,
        &format!("  - {{ id: work, on: far, run: '{TRAPPED}', idempotent: true, retries: 1 }}\n"),
    );
    let bg = scene.apply().expect_exit(0).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.half_cut();
    bg.wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "start-2", "end-2"]
    );
    let attempts = run_attempts(&scene.journal(), "work");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[1].state, AttemptState::Succeeded);
    let cause = attempts[0].message.clone().unwrap_or_default();
    assert!(cause.contains("stopped it (pid "), "cause: {cause}");
}

#[test]
fn a_runner_killed_before_stopping_the_old_command_leaves_it_to_the_next_apply() {
    let scene = Scene::new(14, &checked_trapped_step());
    let bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.half_cut_and_kill_the_runner_as_it_reconnects(bg);

    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let notes = notes_of(&j, &attempts[0]);
    // The command's token was journaled before it was sent; its pid only if the runner lived
    // long enough to learn it. Either is enough to find and stop the command later.
    assert!(
        notes
            .get("orphan")
            .is_some_and(|n| n.starts_with("process ") && n.contains("token=")),
        "{notes:?}"
    );
    assert!(!notes.contains_key("orphan_settled"), "{notes:?}");
    // The old command still runs: nothing stopped it, nothing checked.
    assert_eq!(scene.ledger(), vec!["start-1"]);
    drop(j);

    // The next apply finds the pair in doubt with the note, and stops the command first.
    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Interrupted);
    let cause = attempts[0].message.clone().unwrap_or_default();
    assert!(cause.contains("stopped it (pid "), "cause: {cause}");
    assert_eq!(
        notes_of(&j, &attempts[0])
            .get("orphan_settled")
            .map(String::as_str),
        Some("stopped")
    );
    let files = scene.run_files();
    assert!(files.contains("stopped it (pid "), "{files}");
}

/// A `script:` step runs a temporary file on the target. Removing that file must not be what
/// reconnects first: the note about the command that may still run it comes before.
#[test]
fn a_script_step_cut_off_is_noted_before_its_file_is_removed() {
    let scene = Scene::new(
        16,
        &format!("  - {{ id: scripted, on: far, script: trapped.sh, check: '{CHECK_END}', retries: 1 }}\n"),
    );
    let fill = |t: &str| {
        t.replace(
            "{ledger}",
            &scene.sshd.dir().join("ledger").display().to_string(),
        )
        .replace(
            "{count}",
            &scene.sshd.dir().join("count").display().to_string(),
        )
        .replace(
            "{release}",
            &scene.sshd.dir().join("release").display().to_string(),
        )
    };
    fs::write(scene.dir.path().join("trapped.sh"), fill(TRAPPED)).expect("write script");
    let bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_until("the script to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.half_cut_and_kill_the_runner_as_it_reconnects(bg);

    let j = scene.journal();
    let attempts = run_attempts(&j, "scripted");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let note = notes_of(&j, &attempts[0]).get("orphan").cloned();
    let token = note
        .as_deref()
        .and_then(|n| n.split("token=").nth(1))
        .map(|t| t.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("the note was not written before reconnecting: {note:?}"));
    let script_on_target = Path::new("/tmp").join(format!("runner-{token}.sh"));
    assert!(script_on_target.exists(), "{}", script_on_target.display());
    drop(j);

    // The next apply stops the old script first, then checks and runs it again; the file the
    // killed runner left behind is removed with the stop.
    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
    assert!(!script_on_target.exists(), "{}", script_on_target.display());
}

#[test]
fn half_cut_with_the_target_unreachable_leaves_the_step_to_an_operator() {
    let scene = Scene::new(15, &checked_trapped_step());
    let bg = scene.apply().expect_exit(1).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.refuse(true);
    scene.proxy.half_cut();
    let end = bg.wait();
    // Whether the old command still runs cannot be known: no check, no retry.
    let all = end.said();
    assert!(all.contains("runner mark"), "{all}");
    assert!(all.contains("may still be running"), "{all}");
    assert_eq!(scene.ledger(), vec!["start-1"]);
    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Interrupted);
    assert!(!notes_of(&j, &attempts[0]).contains_key("orphan_settled"));
    assert!(j
        .attempts(None)
        .expect("attempts")
        .iter()
        .all(|a| a.kind != AttemptKind::Check));
    drop(j);

    // Once the target answers again, the next apply stops it before anything else.
    scene.proxy.refuse(false);
    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
}

/// A power cut of the runner while the link is silently dead: the runner never saw anything
/// go wrong, sshd never saw the connection end and keeps the command running. The next apply
/// must find the command's identity in the journal and stop it before the check decides, so
/// that no second copy runs beside the first.
#[test]
fn a_runner_killed_while_the_link_is_silently_dead_leaves_no_second_copy_running() {
    let scene = Scene::new(41, &checked_trapped_step());
    let mut bg = scene.apply().expect_signal(libc::SIGKILL).spawn();
    wait_until("the command to start on the target", || {
        has(&scene.ledger(), "start-1")
    });
    scene.proxy.stall_forever();
    bg.kill();
    bg.wait();

    let j = scene.journal();
    let attempts = run_attempts(&j, "checked");
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].state, AttemptState::Running);
    // Written with the attempt, before the command was sent: the token it carries.
    assert!(
        notes_of(&j, &attempts[0])
            .get("orphan")
            .is_some_and(|n| n.starts_with("process ") && n.contains("token=")),
        "the command's identity is not in the journal"
    );
    drop(j);

    scene.apply().expect_exit(0).spawn().wait();
    scene.release();
    // The first copy was stopped (its trap ran) before the check, and the second ran alone.
    assert_eq!(
        scene.ledger(),
        vec!["start-1", "term-1", "check", "start-2", "end-2", "check"]
    );
}
