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

mod cuts;
mod half_cuts;
mod stalls;

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
