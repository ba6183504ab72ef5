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
