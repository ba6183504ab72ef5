//! Jump hosts: a `direct-tcpip` channel from the last hop, relayed to a local socket that
//! the next session uses as its own.

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use ssh2::{Channel, Session};

use super::error::ConnectFailure;
use super::session::Conn;
use super::{SshConfig, SshTransport, KEEPALIVE_COUNT, READ_CHUNK};
use crate::transport::known_hosts::timeout_ms;
use crate::transport::{Transport, TransportError};

impl SshTransport {
    /// Connects the jump hosts and opens a `direct-tcpip` channel from the last one to the
    /// target; returns a socket that carries it, for the target's session.
    #[cfg(unix)]
    pub(super) fn tunnel(&self) -> Result<std::os::unix::net::UnixStream, TransportError> {
        open_tunnel(
            &self.hops,
            &self.cfg.host,
            self.cfg.port,
            self.cfg.connect_timeout,
            &self.describe(),
        )
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
            cause: "no jump host".into(),
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
            source: ConnectFailure::NotForwarded {
                jump_host: format!("{}@{}:{}", last.user, last.host, last.port),
                host: host.to_string(),
                port,
                source: e,
            }
            .into(),
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
pub(super) fn pump_tunnel(
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
    let mut relay = Relay {
        buf: vec![0u8; READ_CHUNK],
        up: Vec::new(),
        down: Vec::new(),
        local_open: true,
    };
    let mut last_keepalive = Instant::now();
    while let Some(sent_up) = relay.local_to_hop(&mut local, &mut channel) {
        let Some(sent_down) = relay.hop_to_local(&mut local, &mut channel) else {
            break;
        };
        let progressed = sent_up || sent_down;
        if relay.finished() {
            break;
        }
        if last_keepalive.elapsed() >= keepalive {
            let _ = sess.keepalive_send();
            last_keepalive = Instant::now();
        }
        if hop_silent_too_long(&hop, keepalive) {
            tracing::info!(hop = %hop.describe(), "jump host silent too long; closing the tunnel through it");
            break;
        }
        if !progressed {
            relay.wait(local_fd, hop_fd);
        }
    }
    // Closing `local` tells the next session that its connection ended.
    let _ = local.shutdown(std::net::Shutdown::Both);
    let _ = channel.close();
    drop(channel);
    drop(sess);
    drop(hop);
}

/// A jump host silent for KEEPALIVE_COUNT intervals is lost, as for a direct target:
/// closing the tunnel makes the session inside it see its connection end.
#[cfg(unix)]
fn hop_silent_too_long(hop: &SshTransport, keepalive: Duration) -> bool {
    hop.conn
        .as_ref()
        .and_then(Conn::silence)
        .is_some_and(|quiet| quiet >= keepalive * KEEPALIVE_COUNT)
}

/// A jump tunnel's bytes in transit: `up` read locally and not yet sent to the jump host,
/// `down` the other way; `local_open` until the local side ends its output.
#[cfg(unix)]
struct Relay {
    buf: Vec<u8>,
    up: Vec<u8>,
    down: Vec<u8>,
    local_open: bool,
}

#[cfg(unix)]
impl Relay {
    /// Reads from `local` (when nothing is waiting to go up) and sends to the jump host;
    /// whether anything moved, or None when the tunnel is to close.
    fn local_to_hop(
        &mut self,
        local: &mut std::os::unix::net::UnixStream,
        channel: &mut Channel,
    ) -> Option<bool> {
        let mut progressed = false;
        if self.up.is_empty() && self.local_open {
            match local.read(&mut self.buf) {
                Ok(0) => {
                    self.local_open = false;
                    let _ = channel.send_eof();
                }
                Ok(n) => {
                    self.up.extend_from_slice(&self.buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        if !self.up.is_empty() {
            match channel.write(&self.up) {
                Ok(n) => {
                    self.up.drain(..n);
                    progressed = progressed || n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        Some(progressed)
    }

    /// Reads from the jump host (when nothing is waiting to go down) and writes to `local`;
    /// whether anything moved, or None when the tunnel is to close.
    fn hop_to_local(
        &mut self,
        local: &mut std::os::unix::net::UnixStream,
        channel: &mut Channel,
    ) -> Option<bool> {
        let mut progressed = false;
        if self.down.is_empty() {
            match channel.read(&mut self.buf) {
                Ok(0) if channel.eof() => return None,
                Ok(0) => {}
                Ok(n) => {
                    self.down.extend_from_slice(&self.buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        if !self.down.is_empty() {
            match local.write(&self.down) {
                Ok(n) => {
                    self.down.drain(..n);
                    progressed = progressed || n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        Some(progressed)
    }

    /// The local side ended and everything in transit was delivered.
    fn finished(&self) -> bool {
        !self.local_open && self.up.is_empty() && self.down.is_empty()
    }

    /// Waits until either side has something (or a tick passes: libssh2 may hold data it
    /// already read from the socket).
    fn wait(&self, local_fd: std::os::unix::io::RawFd, hop_fd: std::os::unix::io::RawFd) {
        let mut fds = [
            libc::pollfd {
                fd: local_fd,
                events: if self.local_open && self.up.is_empty() {
                    libc::POLLIN
                } else {
                    0
                } | if self.down.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                },
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
