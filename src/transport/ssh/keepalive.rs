//! Liveness: whether the session's peer is still there, keepalives, silence read from the
//! kernel, and the bound on blocking calls derived from them.
//!
//! A link that stalls silently (a middlebox keeps the TCP connection but stops delivering) is
//! found by keepalives: libssh2 sends one every `keepalive` interval asking for a reply but
//! never checks that replies come back, so the time since the server last sent anything is
//! read from the kernel (`TCP_INFO`, Linux only) and three intervals of silence drop the
//! session, like OpenSSH's `ServerAliveCountMax`. Elsewhere only the sending happens.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use ssh2::Session;

use super::error::is_connection_error;
use super::session::Conn;
use super::{SshTransport, IO_TIMEOUT, KEEPALIVE_COUNT, TICK};
use crate::transport::known_hosts::timeout_ms;
use crate::transport::TransportError;

impl SshTransport {
    /// How long the server may send nothing before the session counts as lost.
    pub(super) fn silence_limit(&self) -> Duration {
        self.keepalive() * KEEPALIVE_COUNT
    }

    pub(super) fn keepalive(&self) -> Duration {
        Duration::from_secs(keepalive_secs(self.cfg.keepalive).into())
    }

    /// Bound for one small request and its reply (open a channel, start a command, collect
    /// the exit status): a live server answers at once and answers keepalives meanwhile.
    pub(super) fn round_trip_timeout(&self) -> Duration {
        self.silence_limit().min(IO_TIMEOUT)
    }

    pub(super) fn silence_message(&self) -> String {
        format!(
            "no answer from the server for {}s ({KEEPALIVE_COUNT} keepalives unanswered, one every {}s); the connection was dropped",
            self.silence_limit().as_secs(),
            self.keepalive().as_secs()
        )
    }

    /// Whether the server has been silent past the limit (never known outside Linux).
    pub(super) fn silent_too_long(&self) -> bool {
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
    pub(super) fn answers(&self) -> bool {
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

    /// Bounds every blocking libssh2 call on the session by three keepalive intervals until
    /// the guard is dropped. For SFTP transfers: a live server answers each request at once
    /// (and keepalives meanwhile), so a request unanswered that long means a stalled link.
    pub(super) fn bounded(&self) -> Result<Bounded, TransportError> {
        let sess = self.session()?;
        sess.set_timeout(timeout_ms(self.round_trip_timeout()));
        Ok(Bounded(sess))
    }
}

impl Conn {
    /// Whether the peer is still there, without a round trip: a closed or reset socket shows
    /// up as readable with end-of-file or an error.
    #[cfg(unix)]
    pub(super) fn alive(&self) -> bool {
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
    pub(super) fn alive(&self) -> bool {
        !self.broken
    }

    /// How long since data last arrived from the server, as the kernel saw it (whether or not
    /// libssh2 has read it yet); pure ACKs do not count, so a peer that acknowledges but
    /// sends nothing grows this. A live server answers every keepalive, so it stays below
    /// one interval. None when it cannot be known.
    #[cfg(target_os = "linux")]
    pub(super) fn silence(&self) -> Option<Duration> {
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
    pub(super) fn silence(&self) -> Option<Duration> {
        None
    }
}

/// Restores the session's normal blocking limit ([`IO_TIMEOUT`]) when dropped.
pub(super) struct Bounded(Session);

impl Drop for Bounded {
    fn drop(&mut self) {
        self.0.set_timeout(timeout_ms(IO_TIMEOUT));
    }
}

/// The keepalive interval in libssh2's unit, whole seconds, at least one.
pub(super) fn keepalive_secs(interval: Duration) -> u32 {
    u32::try_from(interval.as_secs()).unwrap_or(u32::MAX).max(1)
}
