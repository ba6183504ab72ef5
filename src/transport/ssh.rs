//! Steps on a target reached over SSH (libssh2, blocking API).
//!
//! One authenticated session per target, reused by every exec, upload and script: opening a
//! session costs several round trips and a key exchange, a channel costs one round trip.
//!
//! Stopping a remote command: the command line first reports the PID of its shell (see
//! [`shell::tracked_command_line`]); on timeout or cancel a second channel kills that process
//! group (or, on Windows, the process tree).
//!
//! A link that stalls silently (a middlebox keeps the TCP connection but stops delivering) is
//! found by keepalives: libssh2 sends one every `keepalive` interval asking for a reply but
//! never checks that replies come back, so the time since the server last sent anything is
//! read from the kernel (`TCP_INFO`, Linux only) and three intervals of silence drop the
//! session, like OpenSSH's `ServerAliveCountMax`. Elsewhere only the sending happens.

use std::borrow::Cow;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ssh2::{Channel, ErrorCode, MethodType, OpenFlags, OpenType, Session, Sftp};

use super::known_hosts::{
    check_host_key, set_hostkey_preference, tcp_connect, timeout_ms, HostKey, HostKeyStatus,
};
use super::shell::{self, Payload, PidMarkerFilter};
use super::upload_buffer::UploadBuffer;
use super::{
    random_token, upload_mismatch, CommandExit, Control, FileDigest, Identity, Orphan, OrphanStop,
    Secret, Shell, Stream, Transport, TransportError, ORPHAN_REASON,
};

/// How to reach one SSH target.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// The target's name in the playbook, for logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    /// The OpenSSH-format file host keys are checked against (never written here).
    pub known_hosts: PathBuf,
    /// Limit for TCP connect and for key exchange plus authentication.
    pub connect_timeout: Duration,
    /// How often to send a keepalive; [`KEEPALIVE_COUNT`] intervals without anything from the
    /// server mean the connection is lost. Whole seconds (libssh2's unit), at least one.
    pub keepalive: Duration,
}

#[derive(Debug, Clone)]
pub enum SshAuth {
    Key {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    Password(Secret),
    Agent,
}

/// Limit for one blocking libssh2 call (an SFTP write, a channel open). Generous: it only
/// exists so that a silently dead network cannot hang a step for ever.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a running command checks for cancel, timeout and keepalives.
const TICK: Duration = Duration::from_millis(100);
/// After the kill, how long the command's channel gets to report its end.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// After a timeout or cancel, how long to wait for a command to report its PID (it does so
/// first thing, so only an overloaded target needs more than milliseconds).
const PID_WAIT: Duration = Duration::from_secs(10);
/// Scripts longer than this go through a temporary file: command lines have length limits
/// (128 KiB per argument on Linux, 8191 characters for cmd.exe).
const INLINE_LIMIT: usize = 64 * 1024;
const READ_CHUNK: usize = 32 * 1024;
/// Uploads from this size on are hashed on the target while they are written (see
/// `shell::follow_sha256_command`); below it, starting Python costs more than hashing after.
const FOLLOW_FROM: u64 = 8 * 1024 * 1024;
pub use crate::target_defaults::DEFAULT_KEEPALIVE;
/// Keepalive intervals the server may stay silent before the connection counts as lost.
pub const KEEPALIVE_COUNT: u32 = 3;
/// Limit for stopping a command whose connection was lost (its script waits at most ten
/// seconds for the command to go).
const ORPHAN_STOP_LIMIT: Duration = Duration::from_secs(60);

/// A transport that runs steps on one SSH target.
pub struct SshTransport {
    cfg: SshConfig,
    /// The jump hosts in front of the target, the one reached directly first: each is reached
    /// through the ones before it, and the target through the last (see [`SshTransport::through`]).
    hops: Vec<SshConfig>,
    conn: Option<Conn>,
    /// The target's temporary directory (Windows targets only; asked once).
    windows_temp: Option<String>,
    /// What the last failed command may have left running (see [`Transport::take_orphan`]).
    orphan: Option<Orphan>,
    /// Temporary scripts left on the target by a command whose connection was lost; removed
    /// once that command has been dealt with (see `run_content`).
    leftover_scripts: Vec<String>,
}

/// One authenticated session and what hangs off it.
struct Conn {
    sess: Session,
    /// The session's socket, kept to check for a peer that went away.
    #[cfg(unix)]
    fd: std::os::unix::io::RawFd,
    /// Opened on first use; `Arc` so that callers can hold it while `self` is borrowed mutably.
    sftp: Option<Arc<Sftp>>,
    /// Set when an operation failed in a way that leaves the session unusable.
    broken: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.sftp = None;
        if self.broken {
            // Non-blocking, so that freeing leftover channels does not wait for a dead peer.
            self.sess.set_blocking(false);
        } else {
            // Bounded: a dead network must not hang the drop.
            self.sess.set_blocking(true);
            self.sess.set_timeout(2000);
            let _ = self.sess.disconnect(None, "runner done", None);
        }
    }
}

enum Opened {
    Ready(Conn),
    /// The host is recorded with other key types; connect again offering those.
    RetryWith(Vec<String>, HostKey),
}

/// What an exec is running, so that it can be stopped.
struct Tracking<'a> {
    shell: Shell,
    token: &'a str,
}

impl SshTransport {
    pub fn new(cfg: SshConfig) -> Self {
        SshTransport::through(cfg, Vec::new())
    }

    /// A target reached through jump hosts (`hops`, the one reached directly first), like
    /// OpenSSH's ProxyJump: each hop is its own SSH session, with its own host key check
    /// against its own known_hosts and its own authentication, and carries the next one's TCP
    /// connection in a `direct-tcpip` channel.
    pub fn through(cfg: SshConfig, hops: Vec<SshConfig>) -> Self {
        SshTransport {
            cfg,
            hops,
            conn: None,
            windows_temp: None,
            orphan: None,
            leftover_scripts: Vec::new(),
        }
    }

    pub fn config(&self) -> &SshConfig {
        &self.cfg
    }

    /// Whether a session is currently up (as far as can be told without a round trip).
    pub fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::alive)
    }

    /// How long the server may send nothing before the session counts as lost.
    fn silence_limit(&self) -> Duration {
        self.keepalive() * KEEPALIVE_COUNT
    }

    fn keepalive(&self) -> Duration {
        Duration::from_secs(keepalive_secs(self.cfg.keepalive).into())
    }

    /// Bound for one small request and its reply (open a channel, start a command, collect
    /// the exit status): a live server answers at once and answers keepalives meanwhile.
    fn round_trip_timeout(&self) -> Duration {
        self.silence_limit().min(IO_TIMEOUT)
    }

    fn silence_message(&self) -> String {
        format!(
            "no answer from the server for {}s ({KEEPALIVE_COUNT} keepalives unanswered, one every {}s); the connection was dropped",
            self.silence_limit().as_secs(),
            self.keepalive().as_secs()
        )
    }

    /// Whether the server has been silent past the limit (never known outside Linux).
    fn silent_too_long(&self) -> bool {
        let limit = self.silence_limit();
        self.conn
            .as_ref()
            .and_then(Conn::silence)
            .is_some_and(|quiet| quiet >= limit)
    }

    /// Whether a session that may have sat idle still answers. When the server sent
    /// something within the last interval nothing is asked, so steps that follow each other
    /// closely pay nothing; otherwise a keepalive goes out and the server gets
    /// [`KEEPALIVE_COUNT`] intervals to send anything at all.
    fn answers(&self) -> bool {
        let Some(conn) = &self.conn else {
            return false;
        };
        let Some(quiet) = conn.silence() else {
            return true; // cannot tell; the bounded channel open is the only guard
        };
        if quiet <= self.keepalive() {
            return true;
        }
        let sess = &conn.sess;
        sess.set_blocking(false);
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        let answered = loop {
            // libssh2 sends only when one is due, so calling it on every turn is fine.
            if let Err(e) = sess.keepalive_send() {
                if is_connection_error(&e) {
                    break false;
                }
            }
            // The silence shrinks only when new data arrived (the reply sits unread in the
            // socket until the next libssh2 call, which is fine).
            match conn.silence() {
                Some(now) if now >= quiet => {}
                _ => break true,
            }
            if started.elapsed() >= self.silence_limit() {
                break false;
            }
            // Short at first: a live server answers within a round trip.
            thread::sleep(pause);
            pause = (pause * 2).min(TICK);
        };
        sess.set_blocking(true);
        answered
    }

    /// Open a channel, bounded like any other small round trip.
    fn open_channel(&self, sess: &Session) -> Result<Channel, ssh2::Error> {
        sess.set_timeout(timeout_ms(self.round_trip_timeout()));
        let channel = sess.channel_session();
        sess.set_timeout(timeout_ms(IO_TIMEOUT));
        channel
    }

    fn lost(&self, during: &str, message: impl Into<String>) -> TransportError {
        TransportError::ConnectionLost {
            target: self.describe(),
            during: during.to_string(),
            message: message.into(),
        }
    }

    fn mark_broken(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.broken = true;
        }
    }

    /// Map a libssh2 error: socket-level trouble marks the session broken and becomes
    /// `ConnectionLost`, anything else an `Ssh` error.
    fn ssh_err(&mut self, during: &str, e: &ssh2::Error) -> TransportError {
        if is_connection_error(e) {
            self.mark_broken();
            self.lost(during, e.message())
        } else {
            TransportError::Ssh {
                target: self.describe(),
                during: during.to_string(),
                message: e.to_string(),
            }
        }
    }

    /// Bounds every blocking libssh2 call on the session by three keepalive intervals until
    /// the guard is dropped. For SFTP transfers: a live server answers each request at once
    /// (and keepalives meanwhile), so a request unanswered that long means a stalled link.
    fn bounded(&self) -> Result<Bounded, TransportError> {
        let sess = self.session()?;
        sess.set_timeout(timeout_ms(self.round_trip_timeout()));
        Ok(Bounded(sess))
    }

    fn session(&self) -> Result<Session, TransportError> {
        match &self.conn {
            Some(c) => Ok(c.sess.clone()),
            None => Err(self.lost("starting an operation", "not connected")),
        }
    }

    fn open(&self, only_types: Option<&[String]>) -> Result<Opened, TransportError> {
        let cfg = &self.cfg;
        let target = self.describe();
        let mut sess_tcp: Option<TcpStream> = None;
        #[cfg(unix)]
        let mut sess_tunnel: Option<std::os::unix::net::UnixStream> = None;
        if self.hops.is_empty() {
            let tcp = tcp_connect(&cfg.host, cfg.port, cfg.connect_timeout).map_err(|source| {
                TransportError::Connect {
                    target: target.clone(),
                    source,
                }
            })?;
            tune_socket(&tcp);
            sess_tcp = Some(tcp);
        } else {
            #[cfg(unix)]
            {
                sess_tunnel = Some(self.tunnel()?);
            }
            #[cfg(not(unix))]
            return Err(TransportError::Connect {
                target: target.clone(),
                source: io::Error::other("jump hosts need a Unix runner machine"),
            });
        }
        #[cfg(unix)]
        let fd = {
            use std::os::unix::io::AsRawFd;
            match (&sess_tcp, &sess_tunnel) {
                (Some(t), _) => t.as_raw_fd(),
                (None, Some(u)) => u.as_raw_fd(),
                (None, None) => -1,
            }
        };
        let early = |e: ssh2::Error| {
            if is_connection_error(&e) {
                TransportError::Connect {
                    target: target.clone(),
                    source: io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        e.message().to_string(),
                    ),
                }
            } else {
                TransportError::Handshake {
                    target: target.clone(),
                    message: e.to_string(),
                }
            }
        };
        let mut sess = Session::new().map_err(early)?;
        if let Some(tcp) = sess_tcp {
            sess.set_tcp_stream(tcp);
        }
        #[cfg(unix)]
        if let Some(tunnel) = sess_tunnel {
            sess.set_tcp_stream(tunnel);
        }
        sess.set_timeout(timeout_ms(cfg.connect_timeout));
        set_hostkey_preference(&sess, only_types).map_err(early)?;
        set_algorithm_preference(&sess);
        if let Err(e) = sess.handshake() {
            return Err(early(e));
        }

        let key = sess
            .host_key()
            .and_then(|(blob, _)| HostKey::from_blob(blob))
            .ok_or_else(|| TransportError::Handshake {
                target: target.clone(),
                message: "the server sent no usable host key".into(),
            })?;
        let key_err = |status: &HostKeyStatus| {
            let (host, port, key_type, fingerprint, known_hosts) = (
                cfg.host.clone(),
                cfg.port,
                key.key_type().to_string(),
                key.fingerprint_sha256(),
                cfg.known_hosts.clone(),
            );
            match status {
                HostKeyStatus::Changed => TransportError::HostKeyChanged {
                    host,
                    port,
                    key_type,
                    fingerprint,
                    known_hosts,
                },
                HostKeyStatus::Revoked => TransportError::HostKeyRevoked {
                    host,
                    port,
                    key_type,
                    fingerprint,
                    known_hosts,
                },
                _ => TransportError::HostKeyUnknown {
                    host,
                    port,
                    key_type,
                    fingerprint,
                    known_hosts,
                },
            }
        };
        match check_host_key(&cfg.known_hosts, &cfg.host, cfg.port, &key)? {
            HostKeyStatus::Trusted => {}
            HostKeyStatus::OtherTypesKnown(types) if only_types.is_none() => {
                return Ok(Opened::RetryWith(types, key));
            }
            status => return Err(key_err(&status)),
        }

        self.authenticate(&sess)?;
        sess.set_keepalive(true, keepalive_secs(cfg.keepalive));
        sess.set_timeout(timeout_ms(IO_TIMEOUT));
        Ok(Opened::Ready(Conn {
            sess,
            #[cfg(unix)]
            fd,
            sftp: None,
            broken: false,
        }))
    }

    /// Connects the jump hosts and opens a `direct-tcpip` channel from the last one to the
    /// target; returns a socket that carries it, for the target's session.
    #[cfg(unix)]
    fn tunnel(&self) -> Result<std::os::unix::net::UnixStream, TransportError> {
        open_tunnel(
            &self.hops,
            &self.cfg.host,
            self.cfg.port,
            self.cfg.connect_timeout,
            &self.describe(),
        )
    }

    fn authenticate(&self, sess: &Session) -> Result<(), TransportError> {
        let cfg = &self.cfg;
        let target = self.describe();
        let (method, hint, result) = match &cfg.auth {
            SshAuth::Key { path, passphrase } => {
                let hint = "check that the key's public half is in the user's authorized_keys on the target, and the key file and its passphrase";
                if !path.is_file() {
                    return Err(TransportError::Auth {
                        target,
                        user: cfg.user.clone(),
                        method: "public key",
                        message: format!("the key file {} does not exist", path.display()),
                        hint,
                    });
                }
                let r = sess.userauth_pubkey_file(
                    &cfg.user,
                    None,
                    path,
                    passphrase.as_ref().map(Secret::expose),
                );
                ("public key", hint, r)
            }
            SshAuth::Password(pw) => (
                "password",
                "check the user name and password, and that the server allows password authentication",
                sess.userauth_password(&cfg.user, pw.expose()),
            ),
            SshAuth::Agent => (
                "ssh-agent",
                "check that ssh-agent runs (SSH_AUTH_SOCK) and holds a key the target accepts",
                agent_auth(sess, &cfg.user),
            ),
        };
        let failure = match result {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => "the server did not accept the authentication".to_string(),
            Err(e) if is_connection_error(&e) => {
                return Err(TransportError::Connect {
                    target,
                    source: io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("during authentication: {}", e.message()),
                    ),
                })
            }
            Err(e) => e.message().to_string(),
        };
        Err(TransportError::Auth {
            target,
            user: cfg.user.clone(),
            method,
            message: failure,
            hint,
        })
    }

    fn sftp(&mut self) -> Result<Arc<Sftp>, TransportError> {
        if let Some(sftp) = self.conn.as_ref().and_then(|c| c.sftp.clone()) {
            return Ok(sftp);
        }
        let sess = self.session()?;
        sess.set_blocking(true);
        match sess.sftp() {
            Ok(sftp) => {
                let sftp = Arc::new(sftp);
                if let Some(c) = self.conn.as_mut() {
                    c.sftp = Some(Arc::clone(&sftp));
                }
                Ok(sftp)
            }
            Err(e) => {
                Err(self.ssh_err("starting SFTP (is the sftp subsystem enabled in sshd?)", &e))
            }
        }
    }

    /// `exec`; a step's command carries `token` (already in the journal), others a new one.
    fn exec_inner(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        token: Option<&str>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        if script.contains('\0') {
            return Err(TransportError::InvalidScript {
                target: self.describe(),
                message: "it contains a NUL byte".into(),
            });
        }
        let multi_line_cmd = shell == Shell::Cmd && script.contains(['\n', '\r']);
        if multi_line_cmd || script.len() > INLINE_LIMIT {
            // `cmd.exe /c` takes a single line, and long scripts exceed command-line limits.
            let content: Cow<'_, [u8]> = match shell {
                Shell::Cmd => Cow::Owned(
                    format!(
                        "@echo off\r\n{}\r\n",
                        script.replace("\r\n", "\n").replace('\n', "\r\n")
                    )
                    .into_bytes(),
                ),
                _ => Cow::Borrowed(script.as_bytes()),
            };
            return self.run_content(&content, shell, ctl, token, out);
        }
        let token = token.map_or_else(random_token, str::to_string);
        let input = shell == Shell::Sh && ctl.has_input();
        let line =
            shell::tracked_command_line_with_input(shell, Payload::Inline(script), &token, input);
        let tracking = Tracking {
            shell,
            token: &token,
        };
        self.run_tracked(&line, tracking, ctl, out)
    }

    /// Run an already tracked command line, streaming its output.
    fn run_tracked(
        &mut self,
        line: &str,
        tracking: Tracking<'_>,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.orphan = None;
        self.connect()?;
        let mut sess = self.session()?;
        sess.set_blocking(true);
        let mut channel = match self.open_channel(&sess) {
            Ok(c) => c,
            // Nothing was sent yet, so a session that died while idle can be replaced
            // without any risk of running the command twice.
            Err(e) if is_connection_error(&e) => {
                tracing::info!(target = %self.describe(), error = %e.message(), "SSH session lost while idle; reconnecting");
                self.drop_conn();
                self.connect()?;
                sess = self.session()?;
                sess.set_blocking(true);
                self.open_channel(&sess)
                    .map_err(|e| self.ssh_err("opening a channel", &e))?
            }
            Err(e) => return Err(self.ssh_err("opening a channel", &e)),
        };
        sess.set_timeout(timeout_ms(self.round_trip_timeout()));
        let started = channel.exec(line);
        sess.set_timeout(timeout_ms(IO_TIMEOUT));
        if let Err(e) = started {
            let err = self.ssh_err("starting a command (it may or may not have started)", &e);
            self.orphan = orphan_after(&err, tracking.shell, None, tracking.token);
            return Err(err);
        }
        if tracking.shell == Shell::Sh && ctl.has_input() {
            // The wrapper waits for these lines before the command starts: environment and
            // stdin travel inside the channel, never in a command line.
            let block = shell::input_block(&ctl.env, ctl.stdin.as_ref());
            let sent = channel
                .write_all(block.expose().as_bytes())
                .and_then(|()| channel.flush());
            if let Err(e) = sent {
                let err = self.lost(
                    "sending the command's environment (it may or may not have started)",
                    e.to_string(),
                );
                self.mark_broken();
                self.orphan = orphan_after(&err, tracking.shell, None, tracking.token);
                return Err(err);
            }
        }
        let mut marker = PidMarkerFilter::new();
        let (shell, token) = (tracking.shell, tracking.token);
        let result = self.pump(&sess, &mut channel, &mut marker, tracking, ctl, out);
        if let Err(e) = &result {
            self.orphan = orphan_after(e, shell, marker.pid(), token);
        }
        if self.conn.as_ref().is_none_or(|c| c.broken) {
            // Freeing a channel politely waits for the server's reply, which a broken
            // session never sends.
            sess.set_blocking(false);
            drop(channel);
        }
        sess.set_blocking(true);
        result
    }

    /// Forget the current session without talking to the server any more.
    fn drop_conn(&mut self) {
        self.mark_broken();
        self.conn = None;
    }

    /// Stream the channel's output until it ends, stopping it on timeout or cancel.
    fn pump(
        &mut self,
        sess: &Session,
        channel: &mut Channel,
        marker: &mut PidMarkerFilter,
        tracking: Tracking<'_>,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        const DURING: &str = "running a command (it may have run partly or fully)";
        let started = Instant::now();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut stop: Option<(CommandExit, Instant)> = None;
        let mut kill_sent_at: Option<Instant> = None;
        sess.set_blocking(false);
        loop {
            let mut progressed = false;
            for stream in [Stream::Stdout, Stream::Stderr] {
                let mut reader = match stream {
                    Stream::Stdout => channel.stream(0),
                    Stream::Stderr => channel.stderr(),
                };
                // Bounded, so that a flood on one stream cannot starve the other.
                for _ in 0..64 {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            progressed = true;
                            match stream {
                                Stream::Stdout => out(Stream::Stdout, &buf[..n]),
                                Stream::Stderr => {
                                    let shown = marker.feed(&buf[..n]);
                                    if !shown.is_empty() {
                                        out(Stream::Stderr, &shown);
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            self.mark_broken();
                            return Err(self.lost(DURING, e.to_string()));
                        }
                    }
                }
            }
            if channel.eof() {
                break;
            }

            if stop.is_none() {
                if ctl.is_cancelled() {
                    stop = Some((CommandExit::Cancelled, Instant::now()));
                } else if ctl.timeout.is_some_and(|t| started.elapsed() >= t) {
                    stop = Some((CommandExit::TimedOut, Instant::now()));
                }
            }
            if let Some((exit, asked)) = stop {
                let reason = if exit == CommandExit::Cancelled {
                    "was cancelled"
                } else {
                    "timed out"
                };
                match kill_sent_at {
                    None => {
                        let pid = marker.pid();
                        let can_kill = pid.is_some() || tracking.shell == Shell::Cmd;
                        if can_kill {
                            sess.set_blocking(true);
                            let killed =
                                self.kill_remote(sess, tracking.shell, pid, tracking.token);
                            sess.set_blocking(false);
                            if let Err(message) = killed {
                                return Err(TransportError::KillFailed {
                                    target: self.describe(),
                                    reason,
                                    message,
                                });
                            }
                            kill_sent_at = Some(Instant::now());
                        } else if asked.elapsed() >= PID_WAIT {
                            self.mark_broken();
                            return Err(TransportError::KillFailed {
                                target: self.describe(),
                                reason,
                                message: "the command never reported its process id, so it cannot be stopped; is the login shell of the SSH user a POSIX shell?".into(),
                            });
                        }
                    }
                    Some(at) if at.elapsed() >= KILL_WAIT => {
                        // The process group is dead; something that left it keeps the output
                        // open. Stop listening, and start the next step on a fresh session
                        // rather than wait for this channel to close.
                        tracing::warn!(target = %self.describe(), "the command's output stayed open after it was stopped; a process it started may have escaped");
                        self.mark_broken();
                        return Ok(exit);
                    }
                    Some(_) => {}
                }
            }

            if !progressed {
                if let Err(e) = sess.keepalive_send() {
                    if is_connection_error(&e) {
                        self.mark_broken();
                        return Err(self.lost(DURING, e.message()));
                    }
                }
                // A link that keeps accepting bytes but delivers nothing back: without this
                // the step would wait for ever, as TCP sees every segment acknowledged.
                if self.silent_too_long() {
                    self.mark_broken();
                    return Err(self.lost(DURING, self.silence_message()));
                }
                let mut wait = TICK;
                if let (Some(t), None) = (ctl.timeout, stop) {
                    wait = wait.min(t.saturating_sub(started.elapsed()));
                }
                self.wait_socket(sess, wait);
            }
        }

        let rest = marker.finish();
        if !rest.is_empty() {
            out(Stream::Stderr, &rest);
        }
        sess.set_blocking(true);
        // After the end of output the server sends the exit status and the close at once.
        sess.set_timeout(timeout_ms(self.round_trip_timeout()));
        let closed = channel.wait_close();
        sess.set_timeout(timeout_ms(IO_TIMEOUT));
        if let Err(e) = closed {
            return Err(self.ssh_err(DURING, &e));
        }
        if let Some((exit, _)) = stop {
            if kill_sent_at.is_some() {
                return Ok(exit);
            }
        }
        if let Ok(sig) = channel.exit_signal() {
            if let Some(name) = sig.exit_signal {
                return Ok(CommandExit::Code(128 + signal_number(&name)));
            }
        }
        let code = channel
            .exit_status()
            .map_err(|e| self.ssh_err(DURING, &e))?;
        // The SSH exit status is a u32 on the wire; libssh2 hands it out as i32.
        Ok(CommandExit::Code(i64::from(code as u32)))
    }

    /// Stop a tracked remote command from a second channel. Err carries a message for the user.
    fn kill_remote(
        &mut self,
        sess: &Session,
        shell: Shell,
        pid: Option<u32>,
        token: &str,
    ) -> Result<(), String> {
        let Some(line) = shell::kill_command_line(shell, pid, token) else {
            return Err("the command's process id is unknown".into());
        };
        tracing::info!(target = %self.describe(), ?pid, "stopping the remote command");
        let run = || -> Result<(), ssh2::Error> {
            let mut ch = sess.channel_session()?;
            ch.exec(&line)?;
            let mut sink = Vec::new();
            // Errors while reading the (empty) output are caught by wait_close below.
            let _ = ch.read_to_end(&mut sink);
            let _ = ch.stderr().read_to_end(&mut sink);
            ch.wait_close()?;
            Ok(())
        };
        run().map_err(|e| {
            if is_connection_error(&e) {
                self.mark_broken();
            }
            format!("the kill command failed: {}", e.message())
        })
    }

    #[cfg(unix)]
    fn wait_socket(&self, sess: &Session, wait: Duration) {
        let Some(conn) = &self.conn else { return };
        let mut events: libc::c_short = 0;
        match sess.block_directions() {
            ssh2::BlockDirections::Inbound => events |= libc::POLLIN,
            ssh2::BlockDirections::Outbound => events |= libc::POLLOUT,
            ssh2::BlockDirections::Both => events |= libc::POLLIN | libc::POLLOUT,
            ssh2::BlockDirections::None => events |= libc::POLLIN,
        }
        let mut pfd = libc::pollfd {
            fd: conn.fd,
            events,
            revents: 0,
        };
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd; the result only decides how soon we look again.
        unsafe {
            libc::poll(&mut pfd, 1, ms);
        }
    }

    #[cfg(not(unix))]
    fn wait_socket(&self, _sess: &Session, wait: Duration) {
        std::thread::sleep(wait.min(Duration::from_millis(10)));
    }

    /// Write `content` to a new file on the target (exclusively: it must not exist).
    fn write_new_file(&mut self, sftp_path: &str, content: &[u8]) -> Result<(), TransportError> {
        let sftp = self.sftp()?;
        let _bounded = self.bounded()?;
        let mut file = match sftp.open_mode(
            Path::new(sftp_path),
            OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
            0o600,
            OpenType::File,
        ) {
            Ok(f) => f,
            Err(e) => return Err(self.ssh_err(&format!("creating {sftp_path}"), &e)),
        };
        let written = file.write_all(content);
        let closed = file.close();
        if let Err(e) = written {
            self.mark_broken_if_dead();
            // A partial script must not linger: it may hold rendered secrets.
            self.remove_file(sftp_path);
            return Err(TransportError::Upload {
                target: self.describe(),
                dest: sftp_path.to_string(),
                message: e.to_string(),
            });
        }
        closed.map_err(|e| self.ssh_err(&format!("writing {sftp_path}"), &e))
    }

    fn mark_broken_if_dead(&mut self) {
        if self.conn.as_ref().is_some_and(|c| !c.alive()) {
            self.mark_broken();
        }
    }

    fn remove_file(&mut self, sftp_path: &str) {
        let attempt = |t: &mut Self| -> Result<(), TransportError> {
            t.connect()?;
            let sftp = t.sftp()?;
            sftp.unlink(Path::new(sftp_path))
                .map_err(|e| t.ssh_err(&format!("removing {sftp_path}"), &e))
        };
        if let Err(e) = attempt(self) {
            tracing::warn!(target = %self.describe(), file = sftp_path, error = %e, "could not remove a temporary script; remove it by hand");
        }
    }

    /// The target's temporary directory in Windows form, e.g. `C:\Users\x\AppData\Local\Temp`.
    fn windows_temp_dir(&mut self, shell: Shell) -> Result<String, TransportError> {
        if let Some(t) = &self.windows_temp {
            return Ok(t.clone());
        }
        let script = match shell {
            Shell::Cmd => "echo %TEMP%",
            _ => "[Console]::Out.Write([IO.Path]::GetTempPath())",
        };
        let (exit, stdout, stderr) = self.capture(script, shell)?;
        let dir = stdout.trim().trim_end_matches('\\').to_string();
        if exit != CommandExit::Code(0) || dir.is_empty() || dir.contains('%') {
            return Err(TransportError::ShellUnavailable {
                target: self.describe(),
                shell,
                message: format!(
                    "could not find the temporary directory ({exit:?}): {}",
                    stderr.trim()
                ),
            });
        }
        self.windows_temp = Some(dir.clone());
        Ok(dir)
    }

    /// Run a short internal script (temp dir lookup, hashing) and collect its output.
    fn capture(
        &mut self,
        script: &str,
        shell: Shell,
    ) -> Result<(CommandExit, String, String), TransportError> {
        let ctl = Control::new(None);
        super::capture(|out| self.exec(script, shell, &ctl, out))
    }

    /// Upload `content` as a temporary script, run it, and remove it whatever happens.
    fn run_content(
        &mut self,
        content: &[u8],
        shell: Shell,
        ctl: &Control,
        token: Option<&str>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.connect()?;
        self.remove_leftover_scripts();
        let token = token.map_or_else(random_token, str::to_string);
        let (run_path, sftp_path) = match shell {
            Shell::Sh => {
                let p = sh_script_path(&token);
                (p.clone(), p)
            }
            Shell::Cmd | Shell::PowerShell => {
                let ext = if shell == Shell::Cmd { "cmd" } else { "ps1" };
                let dir = self.windows_temp_dir(shell)?;
                let p = format!("{dir}\\runner-{token}.{ext}");
                let s = sftp_path(&p, shell);
                (p, s)
            }
        };
        self.write_new_file(&sftp_path, content)?;
        let input = shell == Shell::Sh && ctl.has_input();
        let line =
            shell::tracked_command_line_with_input(shell, Payload::File(&run_path), &token, input);
        let tracking = Tracking {
            shell,
            token: &token,
        };
        let result = self.run_tracked(&line, tracking, ctl, out);
        if self.conn.as_ref().is_none_or(|c| c.broken) {
            // Removing it now would mean reconnecting before the engine has noted, durably,
            // the command that may still be running it; it goes after that command is stopped.
            self.leftover_scripts.push(sftp_path);
        } else {
            self.remove_file(&sftp_path);
        }
        result
    }

    /// Starts [`shell::follow_sha256_command`] on a channel of its own; None if that fails,
    /// and the upload hashes the finished file instead. Not tracked like a step's command:
    /// when the connection goes, its input ends and it finishes on its own. Called under the
    /// upload's [`Bounded`] guard, which must stay in force (`open_channel` would reset it).
    fn start_follower(&self, dest: &str) -> Option<Channel> {
        let sess = self.session().ok()?;
        let mut ch = sess.channel_session().ok()?;
        let line = shell::command_line(Shell::Sh, &shell::follow_sha256_command(dest));
        ch.exec(&line).ok()?;
        Some(ch)
    }

    fn remove_leftover_scripts(&mut self) {
        for path in std::mem::take(&mut self.leftover_scripts) {
            self.remove_file(&path);
        }
    }

    /// Sends `src` to a temporary file beside `dest` (same folder, unique name), verifies it
    /// there, and only then renames it into place; a failed upload removes the temporary
    /// file (unless the connection is gone) and leaves `dest` as it was.
    fn upload_inner(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        shell: Shell,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TransportError> {
        if dest.is_empty() || dest.contains('\0') {
            return Err(TransportError::Upload {
                target: self.describe(),
                dest: dest.to_string(),
                message: "the destination path is empty or contains a NUL byte".into(),
            });
        }
        let temp = temp_beside(dest, shell, &random_token());
        let mut created = false;
        let sent = self.send_verified(src, expected, dest, &temp, shell, &mut created, progress);
        let placed = sent.and_then(|()| self.move_into_place(&temp, dest, shell));
        if placed.is_err() && created && self.conn.as_ref().is_some_and(Conn::alive) {
            let path = sftp_path(&temp, shell);
            if let Ok(sftp) = self.sftp() {
                if let Err(e) = sftp.unlink(Path::new(&path)) {
                    tracing::warn!(target = %self.describe(), file = %path, error = %e, "could not remove the temporary file of a failed upload");
                }
            }
        }
        placed
    }

    /// Renames the verified `temp` to `dest` on the target, replacing it (POSIX `rename`;
    /// `Move-Item -Force` or `move /y` on Windows).
    fn move_into_place(
        &mut self,
        temp: &str,
        dest: &str,
        shell: Shell,
    ) -> Result<(), TransportError> {
        let script = match shell {
            Shell::Sh => format!(
                "mv -f -- {} {}",
                shell::sh_quote(temp),
                shell::sh_quote(dest)
            ),
            Shell::PowerShell => format!(
                "$ErrorActionPreference = 'Stop'\nMove-Item -LiteralPath {} -Destination {} -Force",
                shell::ps_quote(temp),
                shell::ps_quote(dest)
            ),
            Shell::Cmd => format!("move /y \"{temp}\" \"{dest}\" >nul"),
        };
        let (exit, _, stderr) = self.capture(&script, shell)?;
        if exit != CommandExit::Code(0) {
            return Err(TransportError::Upload {
                target: self.describe(),
                dest: dest.to_string(),
                message: format!(
                    "the verified copy {temp} could not be renamed into place ({exit:?}): {}",
                    stderr.trim()
                ),
            });
        }
        Ok(())
    }

    /// Writes `src` to `temp` (a new file) and verifies it there; errors name `dest`.
    #[allow(clippy::too_many_arguments)]
    fn send_verified(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        temp: &str,
        shell: Shell,
        created: &mut bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TransportError> {
        let target = self.describe();
        let upload_err = |message: String| TransportError::Upload {
            target: target.clone(),
            dest: dest.to_string(),
            message,
        };
        let mut input = fs::File::open(src).map_err(|source| TransportError::Io {
            context: format!("cannot read {}", src.display()),
            source,
        })?;
        let mode = local_mode(&input);
        let remote_path = sftp_path(temp, shell);
        self.connect()?;
        let sftp = self.sftp()?;
        let bounded = self.bounded()?;

        if let Some(parent) = parent_dir(&remote_path) {
            match sftp.stat(Path::new(parent)) {
                Ok(st) if st.is_dir() => {}
                Ok(_) => {
                    return Err(upload_err(format!(
                        "{parent} exists but is not a directory"
                    )))
                }
                Err(e) if is_not_found(&e) => {
                    return Err(TransportError::UploadParentMissing {
                        target: target.clone(),
                        dest: dest.to_string(),
                        parent: parent.to_string(),
                    })
                }
                Err(e) => return Err(self.ssh_err(&format!("checking {parent}"), &e)),
            }
        }

        let mut remote = match sftp.open_mode(
            Path::new(&remote_path),
            OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
            mode,
            OpenType::File,
        ) {
            Ok(f) => {
                *created = true;
                f
            }
            Err(e) if is_connection_error(&e) => {
                return Err(self.ssh_err("opening the destination", &e))
            }
            Err(e) => return Err(upload_err(format!("cannot create it: {}", e.message()))),
        };
        // `buf[start..end]` is everything sent but not yet acknowledged plus what is queued
        // next. libssh2 wants exactly that passed to every write: it skips the part already in
        // flight, sends the new tail and returns how much got acknowledged. Never letting the
        // queue run dry is what keeps the transfer at wire speed; libssh2 splits the window
        // into 30 kB SFTP requests in flight (the SSH channel window, 2 MiB with OpenSSH, limits
        // what is actually on the wire). The file is read straight into the buffer, which is
        // several windows long so that moving the unsent rest to its front happens rarely: at
        // loopback speed, every copy of the data shows. Window and buffer shrink when many
        // uploads run at once (see `UploadBuffer`). Nothing is hashed here: the target's hash
        // is compared with the plan's.
        let share = UploadBuffer::reserve();
        let mut buf = vec![0u8; share.len];
        let mut follower = match shell {
            Shell::Sh if expected.bytes >= FOLLOW_FROM => self.start_follower(temp),
            _ => None,
        };
        let mut noted = 0u64;
        let (mut start, mut end) = (0usize, 0usize);
        let mut sent = 0u64;
        let mut queued = 0u64;
        let mut eof = false;
        loop {
            while !eof && end - start < share.window {
                if end + share.block > buf.len() {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                match read_full(&mut input, &mut buf[end..end + share.block]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        end += n;
                        queued += n as u64;
                    }
                    Err(source) => {
                        return Err(TransportError::Io {
                            context: format!("cannot read {}", src.display()),
                            source,
                        })
                    }
                }
            }
            if start == end {
                break;
            }
            if queued > expected.bytes {
                // Growing since it was reviewed; the target would not verify anyway.
                drop(remote);
                return Err(upload_mismatch(
                    target,
                    src,
                    dest,
                    expected,
                    FileDigest {
                        bytes: queued,
                        sha256: "(not computed: the upload was stopped)".into(),
                    },
                ));
            }
            match remote.write(&buf[start..end]) {
                Ok(n) if n > 0 => {
                    start += n;
                    sent += n as u64;
                    progress(sent);
                    if sent >= noted + shell::FOLLOW_STEP {
                        noted = sent;
                        let note = format!("{sent}\n");
                        if follower
                            .as_mut()
                            .is_some_and(|f| f.write_all(note.as_bytes()).is_err())
                        {
                            follower = None; // the hash after the transfer decides
                        }
                    }
                }
                result => {
                    let timed_out =
                        matches!(&result, Err(e) if e.kind() == io::ErrorKind::TimedOut);
                    let message = match result {
                        Err(e) => e.to_string(),
                        Ok(_) => "the server accepted no data".to_string(),
                    };
                    drop(remote);
                    if timed_out || self.silent_too_long() {
                        self.mark_broken();
                        return Err(self.lost(
                            "uploading (the destination is incomplete)",
                            self.silence_message(),
                        ));
                    }
                    self.mark_broken_if_dead();
                    if self.conn.as_ref().is_some_and(|c| c.broken) {
                        return Err(self.lost("uploading (the destination is incomplete)", message));
                    }
                    return Err(upload_err(format!(
                        "writing failed after {sent} bytes: {message}"
                    )));
                }
            }
        }
        if let Err(e) = remote.close() {
            return Err(self.ssh_err("finishing the upload", &e));
        }
        drop(remote);

        // Verify on the target: size from the server's file system, hash computed there.
        let actual_bytes = match sftp.stat(Path::new(&remote_path)) {
            Ok(st) => st.size.unwrap_or(0),
            Err(e) => return Err(self.ssh_err("checking the uploaded file", &e)),
        };
        // The follower's hash is taken only when it matches. Anything else (no python3, an
        // error, a file that differs, or no answer within the bound) is decided by hashing the
        // finished file, as without a follower: its mismatch is never reported as the target's.
        let followed = follower.and_then(finish_follower);
        drop(bounded);
        tracing::debug!(target = %target, ?followed, "SHA-256 taken while uploading");
        if actual_bytes == expected.bytes && followed.as_deref() == Some(&expected.sha256) {
            return Ok(());
        }
        let script = shell::sha256_script(shell, temp);
        let (exit, stdout, stderr) = self.capture(&script, shell)?;
        let actual_sha256 = match (exit, shell::parse_sha256(&stdout)) {
            (CommandExit::Code(0), Some(h)) => h,
            _ => {
                return Err(upload_err(format!(
                    "cannot compute its SHA-256 on the target ({exit:?}): {}",
                    stderr.trim()
                )))
            }
        };
        let actual = FileDigest {
            bytes: actual_bytes,
            sha256: actual_sha256,
        };
        if actual != *expected {
            return Err(upload_mismatch(target, src, dest, expected, actual));
        }
        Ok(())
    }
}

impl Conn {
    /// Whether the peer is still there, without a round trip: a closed or reset socket shows
    /// up as readable with end-of-file or an error.
    #[cfg(unix)]
    fn alive(&self) -> bool {
        if self.broken {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        if r <= 0 {
            return true; // nothing pending (or EINTR): assume fine
        }
        if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return false;
        }
        let mut byte = [0u8; 1];
        // SAFETY: peeking one byte into a valid buffer; nothing is consumed.
        let n = unsafe {
            libc::recv(
                self.fd,
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n == 0 {
            return false;
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            return matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            );
        }
        true
    }

    #[cfg(not(unix))]
    fn alive(&self) -> bool {
        !self.broken
    }

    /// How long since data last arrived from the server, as the kernel saw it (whether or not
    /// libssh2 has read it yet); pure ACKs do not count, so a peer that acknowledges but
    /// sends nothing grows this. A live server answers every keepalive, so it stays below
    /// one interval. None when it cannot be known.
    #[cfg(target_os = "linux")]
    fn silence(&self) -> Option<Duration> {
        // SAFETY: tcp_info is plain integers, for which all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `info` and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        // An older kernel may fill in less of the struct than this libc knows.
        let needed =
            std::mem::offset_of!(libc::tcp_info, tcpi_last_data_recv) + std::mem::size_of::<u32>();
        if r != 0 || (len as usize) < needed {
            return None;
        }
        Some(Duration::from_millis(info.tcpi_last_data_recv.into()))
    }

    /// Other systems have no portable way to ask; only the keepalives are sent there.
    #[cfg(not(target_os = "linux"))]
    fn silence(&self) -> Option<Duration> {
        None
    }
}

impl Transport for SshTransport {
    fn describe(&self) -> String {
        format!("ssh {}@{}:{}", self.cfg.user, self.cfg.host, self.cfg.port)
    }

    fn connect(&mut self) -> Result<(), TransportError> {
        if let Some(conn) = &self.conn {
            if !conn.alive() {
                tracing::info!(target = %self.describe(), "SSH session lost; reconnecting");
            } else if self.answers() {
                return Ok(());
            } else {
                // Nothing of the next operation was sent yet: a plain reconnect.
                tracing::info!(target = %self.describe(), cause = %self.silence_message(), "SSH session silent while idle; reconnecting");
            }
            self.drop_conn();
        }
        let conn = match self.open(None)? {
            Opened::Ready(c) => c,
            Opened::RetryWith(types, first_key) => match self.open(Some(&types)) {
                Ok(Opened::Ready(c)) => c,
                // The server no longer offers any key type we have on record: treat it as a
                // changed key, which it is from our point of view.
                Ok(Opened::RetryWith(..)) | Err(TransportError::Handshake { .. }) => {
                    return Err(TransportError::HostKeyChanged {
                        host: self.cfg.host.clone(),
                        port: self.cfg.port,
                        key_type: first_key.key_type().to_string(),
                        fingerprint: first_key.fingerprint_sha256(),
                        known_hosts: self.cfg.known_hosts.clone(),
                    })
                }
                Err(e) => return Err(e),
            },
        };
        tracing::debug!(target = %self.describe(), "SSH session established");
        self.conn = Some(conn);
        Ok(())
    }

    fn exec(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.exec_inner(script, shell, ctl, None, out)
    }

    fn exec_identified(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.exec_inner(script, shell, ctl, Some(id.token), out)
    }

    fn run_script_identified(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let content = super::read_script(local)?;
        self.run_content(&content, shell, ctl, Some(id.token), out)
    }

    fn upload(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        shell: Shell,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TransportError> {
        self.upload_inner(src, expected, dest, shell, progress)
    }

    fn take_orphan(&mut self) -> Option<Orphan> {
        self.orphan.take()
    }

    fn stop_orphan(&mut self, orphan: &Orphan) -> Result<OrphanStop, TransportError> {
        let Orphan::Process { pid, token } = orphan else {
            return Err(TransportError::KillFailed {
                target: self.describe(),
                reason: ORPHAN_REASON,
                message: format!("an SSH target cannot stop {}", orphan.describe()),
            });
        };
        tracing::info!(target = %self.describe(), ?pid, "stopping a command whose connection was lost, if it still runs");
        let line = shell::stop_orphan_command_line(*pid, token);
        // Bounded by the script itself (about ten seconds); the limit is for a stuck target.
        let ctl = Control::new(Some(ORPHAN_STOP_LIMIT));
        let captured = super::capture(|out| self.exec(&line, Shell::Sh, &ctl, out));
        // The stop command's own leftovers are not the caller's business.
        self.orphan = None;
        let (exit, stdout, stderr) = captured?;
        if exit == CommandExit::Code(0) {
            // The script of a `script:` step, left when the connection was lost (also by a
            // runner that died since: the name follows from the token). Usually there is none.
            self.remove_leftover_scripts();
            if let Ok(sftp) = self.sftp() {
                let _ = sftp.unlink(Path::new(&sh_script_path(token)));
            }
        }
        if exit != CommandExit::Code(0) {
            return Err(TransportError::KillFailed {
                target: self.describe(),
                reason: ORPHAN_REASON,
                message: format!("the stop command ended with {exit:?}: {}", stderr.trim()),
            });
        }
        shell::parse_orphan_stop(&stdout).map_err(|message| TransportError::KillFailed {
            target: self.describe(),
            reason: ORPHAN_REASON,
            message,
        })
    }

    fn run_script(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let content = super::read_script(local)?;
        self.run_content(&content, shell, ctl, None, out)
    }
}

/// Connects the jump hosts `hops` (the one reached directly first) and opens a `direct-tcpip`
/// channel from the last one to `host`:`port`; returns a socket that carries that TCP
/// connection, for a session (SSH, or WinRM's HTTP) to use as its own. A thread moves the
/// bytes; it ends, closing both, when either side closes. `target` names the destination in
/// errors.
#[cfg(unix)]
pub fn open_tunnel(
    hops: &[SshConfig],
    host: &str,
    port: u16,
    connect_timeout: Duration,
    target: &str,
) -> Result<std::os::unix::net::UnixStream, TransportError> {
    let Some((last, before)) = hops.split_last() else {
        return Err(TransportError::ConnectionLost {
            target: target.to_string(),
            during: "connecting".into(),
            message: "no jump host".into(),
        });
    };
    let hop_name = format!("{} ({}@{}:{})", last.name, last.user, last.host, last.port);
    let via = |e: TransportError| TransportError::Jump {
        target: target.to_string(),
        hop: hop_name.clone(),
        source: Box::new(e),
    };
    let mut hop = SshTransport::through(last.clone(), before.to_vec());
    hop.connect().map_err(via)?;
    let sess = hop.session().map_err(via)?;
    sess.set_blocking(true);
    sess.set_timeout(timeout_ms(connect_timeout));
    let channel = sess.channel_direct_tcpip(host, port, None).map_err(|e| {
        via(TransportError::Connect {
            target: hop.describe(),
            source: io::Error::other(format!(
                "the jump host did not open a connection to {host}:{port} ({}); check that the target is reachable from it and that its sshd allows TCP forwarding (AllowTcpForwarding)",
                e.message()
            )),
        })
    })?;
    let (mine, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|source| TransportError::Io {
            context: "cannot create a socket pair for the jump host".into(),
            source,
        })?;
    let keepalive = last.keepalive;
    let spawned = thread::Builder::new()
        .name(format!("ssh-jump-{}", last.name))
        .spawn(move || pump_tunnel(hop, sess, channel, theirs, keepalive));
    if let Err(source) = spawned {
        return Err(TransportError::Io {
            context: "cannot start the jump host's relay thread".into(),
            source,
        });
    }
    Ok(mine)
}

/// Moves bytes between the local end of a jump tunnel (`local`, which the next session uses
/// as its socket) and the `direct-tcpip` channel on the jump host, until either side ends.
/// Owns the jump host's transport, so its session (and any hops before it) lives as long.
#[cfg(unix)]
fn pump_tunnel(
    hop: SshTransport,
    sess: Session,
    mut channel: Channel,
    mut local: std::os::unix::net::UnixStream,
    keepalive: Duration,
) {
    use std::os::unix::io::AsRawFd;
    let hop_fd = hop.conn.as_ref().map_or(-1, |c| c.fd);
    let local_fd = local.as_raw_fd();
    if local.set_nonblocking(true).is_err() {
        return;
    }
    sess.set_blocking(false);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut up: Vec<u8> = Vec::new();
    let mut down: Vec<u8> = Vec::new();
    let mut local_open = true;
    let mut last_keepalive = Instant::now();
    loop {
        let mut progressed = false;
        // Local -> jump host.
        if up.is_empty() && local_open {
            match local.read(&mut buf) {
                Ok(0) => {
                    local_open = false;
                    let _ = channel.send_eof();
                }
                Ok(n) => {
                    up.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !up.is_empty() {
            match channel.write(&up) {
                Ok(n) => {
                    up.drain(..n);
                    progressed = progressed || n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        // Jump host -> local.
        if down.is_empty() {
            match channel.read(&mut buf) {
                Ok(0) if channel.eof() => break,
                Ok(0) => {}
                Ok(n) => {
                    down.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !down.is_empty() {
            match local.write(&down) {
                Ok(n) => {
                    down.drain(..n);
                    progressed = progressed || n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !local_open && up.is_empty() && down.is_empty() {
            break;
        }
        if last_keepalive.elapsed() >= keepalive {
            let _ = sess.keepalive_send();
            last_keepalive = Instant::now();
        }
        // A jump host silent for KEEPALIVE_COUNT intervals is lost, as for a direct target:
        // closing the tunnel makes the session inside it see its connection end.
        if hop
            .conn
            .as_ref()
            .and_then(Conn::silence)
            .is_some_and(|quiet| quiet >= keepalive * KEEPALIVE_COUNT)
        {
            tracing::info!(hop = %hop.describe(), "jump host silent too long; closing the tunnel through it");
            break;
        }
        if !progressed {
            // Wait until either side has something (or a tick passes: libssh2 may hold data
            // it already read from the socket).
            let mut fds = [
                libc::pollfd {
                    fd: local_fd,
                    events: if local_open && up.is_empty() {
                        libc::POLLIN
                    } else {
                        0
                    } | if down.is_empty() { 0 } else { libc::POLLOUT },
                    revents: 0,
                },
                libc::pollfd {
                    fd: hop_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 20) };
        }
    }
    // Closing `local` tells the next session that its connection ended.
    let _ = local.shutdown(std::net::Shutdown::Both);
    let _ = channel.close();
    drop(channel);
    drop(sess);
    drop(hop);
}

/// Restores the session's normal blocking limit ([`IO_TIMEOUT`]) when dropped.
struct Bounded(Session);

impl Drop for Bounded {
    fn drop(&mut self) {
        self.0.set_timeout(timeout_ms(IO_TIMEOUT));
    }
}

/// Ends a follower's input (the upload is complete) and reads its hash.
fn finish_follower(mut ch: Channel) -> Option<String> {
    ch.send_eof().ok()?;
    let mut stdout = String::new();
    ch.read_to_string(&mut stdout).ok()?;
    let mut stderr = Vec::new();
    let _ = ch.stderr().read_to_end(&mut stderr);
    ch.wait_close().ok()?;
    match ch.exit_status() {
        Ok(0) => shell::parse_sha256(&stdout),
        _ => None,
    }
}

/// Where a `script:` step's file goes on a POSIX target, named by the attempt's token.
fn sh_script_path(token: &str) -> String {
    format!("/tmp/runner-{token}.sh")
}

/// Ciphers in order of preference, measured on uploads (which are bound by CPU on fast links).
/// AES-GCM runs on the CPU's AES and carry-less multiply instructions through OpenSSL, and the
/// bundled libssh2 hands OpenSSL a whole packet per call (vendor/README.md); it needs the least
/// CPU per byte on both ends, because it has no separate MAC. AES-CTR comes next, with the
/// encrypt-then-MAC HMACs below. libssh2's own ChaCha20-Poly1305 is portable C and the slowest,
/// so it comes last of the common ones. Servers without these fall back down the list.
const CIPHER_ORDER: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
    "chacha20-poly1305@openssh.com",
    "aes192-ctr",
];

/// MACs for the CTR ciphers: encrypt-then-MAC first (as OpenSSH prefers); libssh2's own
/// default puts the older MAC-then-encrypt forms first. The bundled libssh2 is built without
/// the SHA-1 MACs, so a server that offers nothing newer (OpenSSH before 5.9) is not reachable.
const MAC_ORDER: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
];

/// What a failed command may have left running: after a lost connection or a failed stop, an
/// `sh` command (only those can be found again by their token) may still run.
fn orphan_after(
    err: &TransportError,
    shell: Shell,
    pid: Option<u32>,
    token: &str,
) -> Option<Orphan> {
    let unsure = err.is_connection_lost() || matches!(err, TransportError::KillFailed { .. });
    (unsure && shell == Shell::Sh).then(|| Orphan::Process {
        pid,
        token: token.to_string(),
    })
}

/// libssh2 errors after which the session cannot be used any more.
fn is_connection_error(e: &ssh2::Error) -> bool {
    match e.code() {
        ErrorCode::Session(code) => matches!(
            code,
            -1 // SOCKET_NONE
            | -2 // BANNER_RECV
            | -3 // BANNER_SEND
            | -4 // INVALID_MAC
            | -7 // SOCKET_SEND
            | -9 // TIMEOUT: a blocking call stalled for IO_TIMEOUT
            | -12 // DECRYPT
            | -13 // SOCKET_DISCONNECT
            | -30 // SOCKET_TIMEOUT
            | -43 // SOCKET_RECV
            | -45 // BAD_SOCKET
        ),
        ErrorCode::SFTP(code) => matches!(code, 6 | 7), // NO_CONNECTION, CONNECTION_LOST
    }
}

fn is_not_found(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::SFTP(2) | ErrorCode::SFTP(10))
}

/// Try every identity the agent holds; `Session::userauth_agent` only tries the first.
fn agent_auth(sess: &Session, user: &str) -> Result<(), ssh2::Error> {
    let mut agent = sess.agent()?;
    agent.connect()?;
    agent.list_identities()?;
    let identities = agent.identities()?;
    let mut last = ssh2::Error::new(ErrorCode::Session(-18), "the SSH agent holds no keys");
    for identity in &identities {
        match agent.userauth(user, identity) {
            Ok(()) => {
                let _ = agent.disconnect();
                return Ok(());
            }
            Err(e) if is_connection_error(&e) => return Err(e),
            Err(e) => last = e,
        }
    }
    let _ = agent.disconnect();
    Err(last)
}

/// Prefer AES-GCM: OpenSSL runs it on the CPU's AES instructions, several times faster than
/// Sets our cipher and MAC order (see [`CIPHER_ORDER`]), keeping only what this libssh2
/// supports; anything else stays at libssh2's defaults.
fn set_algorithm_preference(sess: &Session) {
    for (method, order) in [
        (MethodType::CryptCs, CIPHER_ORDER),
        (MethodType::CryptSc, CIPHER_ORDER),
        (MethodType::MacCs, MAC_ORDER),
        (MethodType::MacSc, MAC_ORDER),
    ] {
        let Ok(supported) = sess.supported_algs(method) else {
            continue;
        };
        let list: Vec<&str> = order
            .iter()
            .copied()
            .filter(|a| supported.contains(a))
            .collect();
        if !list.is_empty() {
            if let Err(e) = sess.method_pref(method, &list.join(",")) {
                tracing::debug!(error = %e, "cannot set algorithm preference");
            }
        }
    }
}

/// The keepalive interval in libssh2's unit, whole seconds, at least one.
fn keepalive_secs(interval: Duration) -> u32 {
    u32::try_from(interval.as_secs()).unwrap_or(u32::MAX).max(1)
}

/// Latency and dead-peer detection on the raw socket.
fn tune_socket(tcp: &TcpStream) {
    // Without this every small request waits ~40 ms for the delayed ACK of the previous one.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let fd = tcp.as_raw_fd();
        let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
            // SAFETY: setsockopt with a pointer to a live c_int of the size passed.
            unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        };
        set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 30);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 6);
        // Data unacknowledged for two minutes means the peer is gone: fail instead of waiting
        // for the kernel's ~15 minutes of retransmissions.
        set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 120_000);
    }
}

/// SFTP wants forward slashes, and a leading slash before a drive letter on Windows servers.
fn sftp_path(path: &str, shell: Shell) -> String {
    if shell == Shell::Sh {
        return path.to_string();
    }
    let forward = path.replace('\\', "/");
    let b = forward.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        format!("/{forward}")
    } else {
        forward
    }
}

/// A new name beside `dest` (target notation), in the same folder: `.NAME.runner-TOKEN`.
fn temp_beside(dest: &str, shell: Shell, token: &str) -> String {
    let seps: &[char] = if shell == Shell::Sh {
        &['/']
    } else {
        &['/', '\\']
    };
    let (dir, name) = match dest.rfind(seps) {
        Some(i) => dest.split_at(i + 1),
        None => ("", dest),
    };
    format!("{dir}.{name}.runner-{token}")
}

/// The directory part of an SFTP path, if it has one worth checking.
fn parent_dir(path: &str) -> Option<&str> {
    let idx = path.rfind('/')?;
    let parent = &path[..idx];
    if parent.is_empty() || parent.ends_with(':') {
        None // "/" or a drive root
    } else {
        Some(parent)
    }
}

fn local_mode(file: &fs::File) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata() {
            return (meta.permissions().mode() & 0o777) as i32;
        }
    }
    let _ = file;
    0o644
}

/// Fill `buf` as far as the file allows.
fn read_full(input: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Signal numbers as Linux numbers them, for "killed by signal" exit codes (128 + N).
fn signal_number(name: &str) -> i64 {
    match name.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 127,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_for_sftp() {
        assert_eq!(sftp_path("C:\\Temp\\a.zip", Shell::Cmd), "/C:/Temp/a.zip");
        assert_eq!(sftp_path("/tmp/a", Shell::Sh), "/tmp/a");
        assert_eq!(sftp_path("rel\\a", Shell::PowerShell), "rel/a");
    }

    #[test]
    fn temporary_upload_names_are_beside_the_destination() {
        assert_eq!(
            temp_beside("/srv/a.zip", Shell::Sh, "t"),
            "/srv/.a.zip.runner-t"
        );
        assert_eq!(temp_beside("a.zip", Shell::Sh, "t"), ".a.zip.runner-t");
        assert_eq!(
            temp_beside("C:\\Temp\\a.msi", Shell::Cmd, "t"),
            "C:\\Temp\\.a.msi.runner-t"
        );
    }

    #[test]
    fn parents() {
        assert_eq!(parent_dir("/tmp/x/a"), Some("/tmp/x"));
        assert_eq!(parent_dir("/a"), None);
        assert_eq!(parent_dir("a"), None);
        assert_eq!(parent_dir("/C:/a"), None);
        assert_eq!(parent_dir("/C:/d/a"), Some("/C:/d"));
    }

    #[test]
    fn signals() {
        assert_eq!(signal_number("KILL"), 9);
        assert_eq!(signal_number("SIGTERM"), 15);
    }

    #[test]
    fn describe_has_no_secrets() {
        let t = SshTransport::new(SshConfig {
            name: "web1".into(),
            host: "127.0.0.2".into(),
            port: 2201,
            user: "root".into(),
            auth: SshAuth::Password(Secret::new("hunter2")),
            known_hosts: PathBuf::from("kh"),
            connect_timeout: Duration::from_secs(5),
            keepalive: DEFAULT_KEEPALIVE,
        });
        assert_eq!(t.describe(), "ssh root@127.0.0.2:2201");
        assert!(!format!("{:?}", t.config()).contains("hunter2"));
    }
}
