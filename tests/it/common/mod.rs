//! Code shared by the integration tests. Each test binary uses only part of it.
#![allow(dead_code)]

pub mod postgres;
pub mod records;
pub mod run;
pub mod running;
pub mod scene;
pub mod sshd;
pub mod tmux;
pub mod transport_checks;
pub mod winrm_server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::transport::{
    CommandExit, Control, SshAuth, SshConfig, Stream, Transport, TransportError,
};

#[allow(unused_imports)]
pub use sshd::{process_running, stops_within, Sshd};

/// How long a stopped process may take to finish exiting (generous for loaded CI machines).
pub const EXIT_GRACE: Duration = Duration::from_secs(30);

/// Config for logging into `sshd` with its test key, checked against its known_hosts.
pub fn ssh_config(sshd: &Sshd) -> SshConfig {
    SshConfig {
        name: format!("test-{}", sshd.host()),
        host: sshd.host().to_string(),
        port: sshd.port(),
        user: sshd.user(),
        auth: SshAuth::Key {
            path: sshd.user_key_path(),
            passphrase: None,
        },
        known_hosts: sshd.known_hosts_path(),
        connect_timeout: Duration::from_secs(10),
        keepalive: runner::transport::ssh::DEFAULT_KEEPALIVE,
    }
}

/// How long a test waits for something another process does before it gives up (generous for
/// loaded CI machines; a wait that ends sooner costs nothing).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Polls `cond` until it holds; panics with `what` after [`PATIENCE`]. For conditions that live
/// in another process (a file, a journal row, a process table entry), where there is nothing to
/// block on.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub exit: CommandExit,
    pub stdout: String,
    pub stderr: String,
    /// The streams in arrival order, for interleaving checks.
    pub chunks: Vec<(Stream, Vec<u8>)>,
}

/// Run `script` with `sh` and collect everything.
pub fn run_sh(
    t: &mut dyn Transport,
    script: &str,
    timeout: Option<Duration>,
) -> Result<Output, TransportError> {
    let ctl = Control::new(timeout);
    let mut chunks = Vec::new();
    let exit = t.exec(script, runner::transport::Shell::Sh, &ctl, &mut |s, b| {
        chunks.push((s, b.to_vec()))
    })?;
    Ok(collect(exit, chunks))
}

pub fn collect(exit: CommandExit, chunks: Vec<(Stream, Vec<u8>)>) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    for (s, b) in &chunks {
        match s {
            Stream::Stdout => stdout.extend_from_slice(b),
            Stream::Stderr => stderr.extend_from_slice(b),
        }
    }
    Output {
        exit,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        chunks,
    }
}

/// Read a PID a test command wrote into `dir/name`.
pub fn read_pid(dir: &Path, name: &str) -> u32 {
    let path: PathBuf = dir.join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid in {}: {e}: {text:?}", path.display()))
}

/// Deterministic pseudo-random bytes (xorshift), so that uploads carry no long runs a broken
/// transfer could get right by accident.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
