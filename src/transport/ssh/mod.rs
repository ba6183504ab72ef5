//! Steps on a target reached over SSH (libssh2, blocking API).
//!
//! One authenticated session per target, reused by every exec, upload and script: opening a
//! session costs several round trips and a key exchange, a channel costs one round trip.
//!
//! The session and its liveness (`session`, `keepalive`), commands (`exec`), scripts too long
//! for a command line (`script`), uploads (`upload`), downloads (`download`), jump hosts
//! (`jump`) and libssh2's error codes (`error`) each have their own file; this one holds the
//! transport and its `Transport` implementation.

mod download;
mod error;
mod exec;
#[cfg(unix)]
mod jump;
mod keepalive;
mod script;
mod session;
mod upload;

pub use error::{ConnectFailure, HandshakeFailure};
#[cfg(unix)]
pub use jump::open_tunnel;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2::Session;

use self::script::sh_script_path;
use self::session::{Conn, Opened};
use crate::transport::shell;
use crate::transport::{
    CommandExit, Control, FileDigest, Identity, Orphan, OrphanStop, Pace, Secret, Shell, Stream,
    Transport, TransportError, ORPHAN_REASON,
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

const READ_CHUNK: usize = 32 * 1024;

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

    fn lost(&self, during: &str, cause: impl Into<crate::transport::LostCause>) -> TransportError {
        TransportError::ConnectionLost {
            target: self.describe(),
            during: during.to_string(),
            cause: cause.into(),
        }
    }

    fn mark_broken(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.broken = true;
        }
    }

    fn session(&self) -> Result<Session, TransportError> {
        match &self.conn {
            Some(c) => Ok(c.sess.clone()),
            None => Err(self.lost("starting an operation", "not connected")),
        }
    }

    /// Forget the current session without talking to the server any more.
    fn drop_conn(&mut self) {
        self.mark_broken();
        self.conn = None;
    }

    fn mark_broken_if_dead(&mut self) {
        if self.conn.as_ref().is_some_and(|c| !c.alive()) {
            self.mark_broken();
        }
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
        pace: Pace<'_>,
    ) -> Result<(), TransportError> {
        self.upload_inner(src, expected, dest, shell, pace)
    }

    fn read_file(
        &mut self,
        path: &str,
        shell: Shell,
        ctl: &Control,
        sink: &mut dyn std::io::Write,
    ) -> Result<FileDigest, TransportError> {
        self.read_file_inner(path, shell, ctl, sink)
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

#[cfg(test)]
mod tests {
    use super::*;

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
