//! A real OpenSSH server for tests: private config, fresh keys, loopback only.
//!
//! Each test starts its own `Sshd` on its own 127.0.0.x address (Linux routes all of 127/8 to
//! loopback), so tests can run in parallel threads without sharing a server.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
/// Generous: sshd starts in milliseconds, but CI machines can be very slow.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Panics with instructions when OpenSSH's server is not installed.
pub fn ensure_sshd_installed() {
    if !Path::new(SSHD).exists() {
        panic!(
            "{SSHD} is missing: the SSH tests start a real OpenSSH server. \
             Install it with `apt-get install openssh-server` (see the README's test command)."
        );
    }
}

/// A running sshd; killed (with every session it started) on drop.
pub struct Sshd {
    dir: tempfile::TempDir,
    ip: String,
    port: u16,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    /// Extra sshd_config lines given to [`Sshd::start_with`].
    extra_config: String,
}

impl Sshd {
    /// Start a server listening on `ip` (e.g. "127.0.0.2") on a free port.
    pub fn start(ip: &str) -> Sshd {
        Sshd::start_with(ip, "")
    }

    /// Like [`Sshd::start`], with extra sshd_config lines; `{dir}` in them stands for the
    /// server's scratch directory ([`Sshd::dir`]), e.g. `SetEnv PATH={dir}/bin:/usr/bin:/bin`.
    pub fn start_with(ip: &str, extra_config: &str) -> Sshd {
        ensure_sshd_installed();
        assert!(
            ip.starts_with("127."),
            "test servers listen on loopback only, got {ip}"
        );
        // sshd's privilege separation insists on this directory.
        let _ = fs::create_dir_all("/run/sshd");

        let dir = tempfile::Builder::new()
            .prefix("runner-sshd-")
            .tempdir()
            .expect("create sshd tempdir");
        keygen(
            &dir.path().join("ssh_host_ed25519_key"),
            "ed25519",
            "test host",
        );
        // A second host key, for tests of servers offering several key types.
        keygen(&dir.path().join("ssh_host_ecdsa_key"), "ecdsa", "test host");
        keygen(&dir.path().join("id_ed25519"), "ed25519", "test user");
        let user_pub =
            fs::read_to_string(dir.path().join("id_ed25519.pub")).expect("read user key");
        let authorized = dir.path().join("authorized_keys");
        fs::write(&authorized, user_pub).expect("write authorized_keys");
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o600)).expect("chmod");

        let mut sshd = Sshd {
            dir,
            ip: ip.to_string(),
            port: 0,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            extra_config: String::new(),
        };
        sshd.extra_config = extra_config.replace("{dir}", &sshd.dir.path().display().to_string());
        // The port is found by binding :0 and releasing it, so another process can grab it in
        // between; start over with a new port when sshd cannot bind.
        let mut last_log = String::new();
        for _ in 0..10 {
            sshd.port = free_port(ip);
            sshd.write_config();
            sshd.write_known_hosts();
            match sshd.spawn() {
                Ok(()) => return sshd,
                Err(log) => last_log = log,
            }
        }
        panic!("sshd did not start on {ip}; its output:\n{last_log}");
    }

    pub fn host(&self) -> &str {
        &self.ip
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user tests log in as: whoever runs the tests (root in CI).
    pub fn user(&self) -> String {
        current_user()
    }

    /// Private key whose public half is in the server's authorized_keys.
    pub fn user_key_path(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// A known_hosts file holding this server's ed25519 host key as `[ip]:port` (the key
    /// OpenSSH clients and the runner prefer; the server also has an ECDSA key).
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The server's ed25519 host public key file (`ssh-ed25519 AAAA... comment`).
    pub fn host_pub_path(&self) -> PathBuf {
        self.dir.path().join("ssh_host_ed25519_key.pub")
    }

    /// The server's ECDSA host public key file.
    pub fn ecdsa_host_pub_path(&self) -> PathBuf {
        self.dir.path().join("ssh_host_ecdsa_key.pub")
    }

    /// `(key type, base64)` of the ed25519 host key.
    pub fn host_key(&self) -> (String, String) {
        read_pub(&self.host_pub_path())
    }

    /// `(key type, base64)` of the ECDSA host key.
    pub fn ecdsa_host_key(&self) -> (String, String) {
        read_pub(&self.ecdsa_host_pub_path())
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything sshd logged so far (handy in assertion messages).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Kill the server and every session it runs, then start it again on the same address,
    /// port and host key. Clients see their connection drop.
    pub fn restart(&mut self) {
        self.stop();
        let mut last_log = String::new();
        // The old listening socket is gone once the process has exited; sshd sets SO_REUSEADDR,
        // so the port is immediately free again unless someone else took it.
        for _ in 0..5 {
            match self.spawn() {
                Ok(()) => return,
                Err(log) => last_log = log,
            }
        }
        panic!(
            "sshd did not restart on {}:{}; its output:\n{last_log}",
            self.ip, self.port
        );
    }

    /// Kill the server and every session it runs, and wait until they have exited.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let root = child.id() as libc::pid_t;
        // Freeze the tree first so that nothing forks while we collect it.
        let mut frozen: Vec<libc::pid_t> = vec![root];
        signal(root, libc::SIGSTOP);
        for _ in 0..5 {
            let all = descendants(root);
            let new: Vec<_> = all.into_iter().filter(|p| !frozen.contains(p)).collect();
            if new.is_empty() {
                break;
            }
            for p in new {
                signal(p, libc::SIGSTOP);
                frozen.push(p);
            }
        }
        for &p in &frozen {
            signal(p, libc::SIGKILL);
        }
        let _ = child.wait();
        for &p in frozen.iter().skip(1) {
            wait_exit(p, EXIT_TIMEOUT);
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        // Extra lines may bring their own SFTP server (sshd refuses a subsystem named twice).
        let sftp = if self.extra_config.contains("Subsystem sftp") {
            ""
        } else {
            "Subsystem sftp internal-sftp\n"
        };
        let base = format!(
            "ListenAddress {ip}:{port}\n\
             HostKey {d}/ssh_host_ed25519_key\n\
             HostKey {d}/ssh_host_ecdsa_key\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             UsePAM no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PrintMotd no\n\
             MaxStartups 100:30:200\n\
             MaxSessions 100\n\
             {sftp}\
             LogLevel INFO\n",
            ip = self.ip,
            port = self.port,
        ) + &self.extra_config
            + "\n";
        fs::write(self.config_path(), &base).expect("write sshd_config");
        // OpenSSH 9.8+ penalises clients whose connections fail; tests fail connections on
        // purpose. Older servers do not know the option and refuse the whole config.
        let with_penalties = format!("{base}PerSourcePenalties no\n");
        fs::write(self.config_path(), &with_penalties).expect("write sshd_config");
        let ok = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            fs::write(self.config_path(), &base).expect("write sshd_config");
        }
    }

    fn write_known_hosts(&self) {
        let (key_type, b64) = self.host_key();
        fs::write(
            self.known_hosts_path(),
            format!("[{}]:{} {key_type} {b64}\n", self.ip, self.port),
        )
        .expect("write known_hosts");
    }

    /// Start sshd and wait until it listens. Err carries its output when it did not.
    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sshd");
        let stderr = child.stderr.take().expect("sshd stderr is piped");
        let (tx, rx) = mpsc::channel::<String>();
        let log = Arc::clone(&self.log);
        // Keep draining stderr for the server's whole life, or it would block on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = log.lock() {
                    l.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.contains("Server listening on");
                    seen.push(line);
                    if ready {
                        self.child = Some(child);
                        return Ok(());
                    }
                }
                Err(_) => {
                    // Exited (pipe closed) or never became ready.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(seen.join("\n"));
                }
            }
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keygen(path: &Path, key_type: &str, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", key_type, "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen (part of openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fingerprint of a `.pub` key file as OpenSSH itself prints it (`SHA256:...`).
pub fn openssh_fingerprint(pub_path: &Path) -> String {
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

/// `(key type, base64)` from a `.pub` file.
pub fn read_pub(path: &Path) -> (String, String) {
    let text = fs::read_to_string(path).expect("read public key");
    let mut fields = text.split_whitespace();
    let key_type = fields.next().expect("key type").to_string();
    let b64 = fields.next().expect("key").to_string();
    (key_type, b64)
}

fn free_port(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind a free loopback port");
    listener.local_addr().expect("local addr").port()
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: plain kill(2) on a positive pid.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// All processes below `root`, found through the parent pids in /proc.
fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = stat_of(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == p && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// (parent pid, state letter) of a process, from /proc/PID/stat.
fn stat_of(pid: libc::pid_t) -> Option<(libc::pid_t, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` is a running process. A zombie has stopped running; it only waits for its
/// parent (in containers often an init that never reaps) and does not count.
pub fn process_running(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    matches!(stat_of(pid), Some((_, state)) if state != 'Z' && state != 'X')
}

/// Whether `pid` stops running within `timeout`. A process that got SIGKILL needs a moment to
/// finish exiting; this waits for the kernel's exit notification, it does not sleep blindly.
pub fn stops_within(pid: u32, timeout: Duration) -> bool {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        wait_exit(p, timeout);
    }
    !process_running(pid)
}

/// Wait until `pid` has exited (zombie or gone), without polling where the kernel can tell us.
fn wait_exit(pid: libc::pid_t, timeout: Duration) {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        let fd = fd as libc::c_int;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis() as libc::c_int;
        // SAFETY: one valid pollfd; the fd is ours and closed right after.
        unsafe {
            libc::poll(&mut pfd, 1, ms);
            libc::close(fd);
        }
        return;
    }
    // No pidfd (old kernel) or the process is already gone: check /proc until it is.
    let deadline = Instant::now() + timeout;
    while process_running(pid as u32) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}
