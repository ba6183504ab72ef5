//! Running a command on the target: one channel per command, output streamed, stopped by
//! its process group on timeout or cancel.
//!
//! Stopping a remote command: the command line first reports the PID of its shell (see
//! [`shell::tracked_command_line`]); on timeout or cancel a second channel kills that process
//! group (or, on Windows, the process tree).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use ssh2::{Channel, Session};

use super::error::is_connection_error;
use super::{SshTransport, IO_TIMEOUT, READ_CHUNK, TICK};
use crate::transport::known_hosts::timeout_ms;
use crate::transport::shell::{self, Payload, PidMarkerFilter};
use crate::transport::{
    random_token, CommandExit, Control, Orphan, Shell, Stream, Transport, TransportError,
};

/// After the kill, how long the command's channel gets to report its end.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(10);
/// After a timeout or cancel, how long to wait for a command to report its PID (it does so
/// first thing, so only an overloaded target needs more than milliseconds).
pub(super) const PID_WAIT: Duration = Duration::from_secs(10);
/// Scripts longer than this go through a temporary file: command lines have length limits
/// (128 KiB per argument on Linux, 8191 characters for cmd.exe).
pub(super) const INLINE_LIMIT: usize = 64 * 1024;

/// What a failure while a command runs is reported as.
const DURING: &str = "running a command (it may have run partly or fully)";

/// Cancel or timeout, if either asks the command to stop now, with when it was asked.
fn stop_asked(ctl: &Control, started: Instant) -> Option<(CommandExit, Instant)> {
    if ctl.is_cancelled() {
        Some((CommandExit::Cancelled, Instant::now()))
    } else if ctl.timeout.is_some_and(|t| started.elapsed() >= t) {
        Some((CommandExit::TimedOut, Instant::now()))
    } else {
        None
    }
}

/// What an exec is running, so that it can be stopped.
pub(super) struct Tracking<'a> {
    pub(super) shell: Shell,
    pub(super) token: &'a str,
}

impl SshTransport {
    /// Open a channel, bounded like any other small round trip.
    pub(super) fn open_channel(&self, sess: &Session) -> Result<Channel, ssh2::Error> {
        sess.set_timeout(timeout_ms(self.round_trip_timeout()));
        let channel = sess.channel_session();
        sess.set_timeout(timeout_ms(IO_TIMEOUT));
        channel
    }

    /// `exec`; a step's command carries `token` (already in the journal), others a new one.
    pub(super) fn exec_inner(
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
    pub(super) fn run_tracked(
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
                    .map_err(|e| self.ssh_err("opening a channel", e))?
            }
            Err(e) => return Err(self.ssh_err("opening a channel", e)),
        };
        sess.set_timeout(timeout_ms(self.round_trip_timeout()));
        let started = channel.exec(line);
        sess.set_timeout(timeout_ms(IO_TIMEOUT));
        if let Err(e) = started {
            let err = self.ssh_err("starting a command (it may or may not have started)", e);
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
                    e,
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

    /// Stream the channel's output until it ends, stopping it on timeout or cancel.
    pub(super) fn pump(
        &mut self,
        sess: &Session,
        channel: &mut Channel,
        marker: &mut PidMarkerFilter,
        tracking: Tracking<'_>,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let started = Instant::now();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut stop: Option<(CommandExit, Instant)> = None;
        let mut kill_sent_at: Option<Instant> = None;
        sess.set_blocking(false);
        loop {
            let progressed = self.drain_output(channel, &mut buf, marker, out)?;
            if channel.eof() {
                break;
            }

            if stop.is_none() {
                stop = stop_asked(ctl, started);
            }
            if let Some((exit, asked)) = stop {
                if let Some(exit) =
                    self.enforce_stop(sess, marker, &tracking, exit, asked, &mut kill_sent_at)?
                {
                    return Ok(exit);
                }
            }

            if !progressed {
                self.idle(sess, ctl, started, stop)?;
            }
        }
        self.finish_command(sess, channel, marker, stop, kill_sent_at, out)
    }

    /// Reads what stdout and stderr have now (a bounded amount of each, so that a flood on
    /// one cannot starve the other) and hands it on, PID marker filtered out of stderr;
    /// whether anything came.
    fn drain_output(
        &mut self,
        channel: &mut Channel,
        buf: &mut [u8],
        marker: &mut PidMarkerFilter,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<bool, TransportError> {
        let mut progressed = false;
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut reader = match stream {
                Stream::Stdout => channel.stream(0),
                Stream::Stderr => channel.stderr(),
            };
            // Bounded, so that a flood on one stream cannot starve the other.
            for _ in 0..64 {
                match reader.read(buf) {
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
                        return Err(self.lost(DURING, e));
                    }
                }
            }
        }
        Ok(progressed)
    }

    /// Stops a command asked to stop (`exit`, asked at `asked`): kills it once its PID is
    /// known, gives up when it never reports one, and stops listening when its output stays
    /// open after the kill (then the exit to return).
    fn enforce_stop(
        &mut self,
        sess: &Session,
        marker: &PidMarkerFilter,
        tracking: &Tracking<'_>,
        exit: CommandExit,
        asked: Instant,
        kill_sent_at: &mut Option<Instant>,
    ) -> Result<Option<CommandExit>, TransportError> {
        let reason = if exit == CommandExit::Cancelled {
            "was cancelled"
        } else {
            "timed out"
        };
        match *kill_sent_at {
            None => {
                let pid = marker.pid();
                let can_kill = pid.is_some() || tracking.shell == Shell::Cmd;
                if can_kill {
                    sess.set_blocking(true);
                    let killed = self.kill_remote(sess, tracking.shell, pid, tracking.token);
                    sess.set_blocking(false);
                    if let Err(message) = killed {
                        return Err(TransportError::KillFailed {
                            target: self.describe(),
                            reason,
                            message,
                        });
                    }
                    *kill_sent_at = Some(Instant::now());
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
                return Ok(Some(exit));
            }
            Some(_) => {}
        }
        Ok(None)
    }

    /// Nothing came: sends a keepalive, gives up on a server silent too long, and waits
    /// for the socket (at most a tick, or what is left of the timeout).
    fn idle(
        &mut self,
        sess: &Session,
        ctl: &Control,
        started: Instant,
        stop: Option<(CommandExit, Instant)>,
    ) -> Result<(), TransportError> {
        if let Err(e) = sess.keepalive_send() {
            if is_connection_error(&e) {
                self.mark_broken();
                return Err(self.lost(DURING, e));
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
        Ok(())
    }

    /// After the end of output: hands on the rest of stderr, waits for the channel to close
    /// and returns how the command ended.
    fn finish_command(
        &mut self,
        sess: &Session,
        channel: &mut Channel,
        marker: &mut PidMarkerFilter,
        stop: Option<(CommandExit, Instant)>,
        kill_sent_at: Option<Instant>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
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
            return Err(self.ssh_err(DURING, e));
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
        let code = channel.exit_status().map_err(|e| self.ssh_err(DURING, e))?;
        // The SSH exit status is a u32 on the wire; libssh2 hands it out as i32.
        Ok(CommandExit::Code(i64::from(code as u32)))
    }

    /// Stop a tracked remote command from a second channel. Err carries a message for the user.
    pub(super) fn kill_remote(
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
    pub(super) fn wait_socket(&self, sess: &Session, wait: Duration) {
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
    pub(super) fn wait_socket(&self, _sess: &Session, wait: Duration) {
        std::thread::sleep(wait.min(Duration::from_millis(10)));
    }

    /// Run a short internal script (temp dir lookup, hashing) and collect its output.
    pub(super) fn capture(
        &mut self,
        script: &str,
        shell: Shell,
    ) -> Result<(CommandExit, String, String), TransportError> {
        let ctl = Control::new(None);
        crate::transport::capture(|out| self.exec(script, shell, &ctl, out))
    }
}

/// What a failed command may have left running: after a lost connection or a failed stop, an
/// `sh` command (only those can be found again by their token) may still run.
pub(super) fn orphan_after(
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

/// Signal numbers as Linux numbers them, for "killed by signal" exit codes (128 + N).
pub(super) fn signal_number(name: &str) -> i64 {
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
    pub(super) fn signals() {
        assert_eq!(signal_number("KILL"), 9);
        assert_eq!(signal_number("SIGTERM"), 15);
    }
}
