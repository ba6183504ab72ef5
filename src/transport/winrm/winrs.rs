//! The WinRS shell lifecycle: create, command, receive until done, signal, delete.

use std::time::{Duration, Instant};

use super::client::{Failure, REQUEST_TIMEOUT};
use super::response::Response;
use super::{clixml, soap, WinrmError, WinrmTransport};
use crate::secret::Secret;
use crate::transport::{Announce, CommandExit, Control, Orphan, Stream, Transport, TransportError};

/// Extra wait on top of OperationTimeout for a Receive (network and server delay).
const RECEIVE_GRACE: Duration = Duration::from_secs(30);

impl WinrmTransport {
    fn create_shell(&mut self, env: &[(String, Secret)]) -> Result<String, TransportError> {
        let body = soap::create_shell(&self.ep, &soap::message_id(), env);
        let r = match self.simple(body, "opening a shell") {
            // Nothing runs in a new shell yet, so one retry on a fresh connection is safe
            // (at worst an empty shell idles out on the target).
            Err(e) if e.is_connection_lost() => {
                tracing::info!(target = %self.describe(), error = %e, "WinRM connection lost while opening a shell; retrying once");
                let body = soap::create_shell(&self.ep, &soap::message_id(), env);
                self.simple(body, "opening a shell")?
            }
            other => other?,
        };
        match r.shell_id {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(self.wrap("opening a shell", WinrmError::Missing("a ShellId"))),
        }
    }

    pub(super) fn delete_shell(&mut self, shell_id: &str) -> Result<(), TransportError> {
        let body = soap::delete_shell(&self.ep, &soap::message_id(), shell_id);
        self.simple(body, "closing the shell").map(|_| ())
    }

    fn terminate(&mut self, shell_id: &str, command_id: &str) -> Result<(), TransportError> {
        let body = soap::signal(
            &self.ep,
            &soap::message_id(),
            shell_id,
            command_id,
            soap::SIGNAL_TERMINATE,
        );
        self.simple(body, "stopping the command").map(|_| ())
    }

    /// Run `line` in a fresh shell, feeding `stdin` if given, streaming output. The shell is
    /// deleted on every path.
    fn run_line(
        &mut self,
        line: &str,
        stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.run_line_announced(line, stdin, ctl, None, out)
    }

    /// `run_line`, handing the shell to `announce` (when given) before the command is sent:
    /// deleting that shell stops whatever runs in it.
    pub(super) fn run_line_announced(
        &mut self,
        line: &str,
        stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
        ctl: &Control,
        announce: Option<Announce<'_>>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.orphan = None;
        self.connect()?;
        let shell_id = self.create_shell(&ctl.env)?;
        if let Some(announce) = announce {
            let who = Orphan::WinrmShell {
                shell_id: shell_id.clone(),
            };
            if let Err(message) = announce(&who) {
                if let Err(e) = self.delete_shell(&shell_id) {
                    tracing::warn!(target = %self.describe(), shell = %shell_id, error = %e, "could not delete an unused WinRM shell; it stays open on the target until its idle timeout");
                }
                return Err(TransportError::NotStarted {
                    target: self.describe(),
                    message,
                });
            }
        }
        // A step's `stdin`: its value and a newline, then the end of input.
        let mut secret_input = ctl
            .stdin
            .as_ref()
            .map(|v| Some(Secret::new(format!("{}\r\n", v.expose()))));
        let mut feed_secret = || -> Result<Option<Vec<u8>>, TransportError> {
            Ok(secret_input
                .as_mut()
                .and_then(Option::take)
                .map(|s| s.expose().as_bytes().to_vec()))
        };
        type Feed<'f> = &'f mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>;
        let mut given = stdin;
        let stdin: Option<Feed<'_>> = match given.as_mut() {
            Some(feed) => Some(&mut **feed),
            None if ctl.stdin.is_some() => Some(&mut feed_secret),
            None => None,
        };
        let result = self.run_in_shell(&shell_id, line, stdin, ctl, out);
        let deleted = self.delete_shell(&shell_id);
        match (result, deleted) {
            (Ok((exit, signalled)), Err(e)) => {
                if matches!(exit, CommandExit::TimedOut | CommandExit::Cancelled) && !signalled {
                    let reason = if exit == CommandExit::Cancelled {
                        "was cancelled"
                    } else {
                        "timed out"
                    };
                    self.orphan = Some(Orphan::WinrmShell {
                        shell_id: shell_id.clone(),
                    });
                    return Err(TransportError::KillFailed {
                        target: self.describe(),
                        reason,
                        message: format!("neither Signal terminate nor deleting the shell {shell_id} worked: {e}"),
                    });
                }
                tracing::warn!(target = %self.describe(), shell = %shell_id, error = %e, "could not delete the WinRM shell; it stays open on the target until its idle timeout");
                Ok(exit)
            }
            (Ok((exit, _)), Ok(())) => Ok(exit),
            (Err(e), Err(d)) => {
                tracing::warn!(target = %self.describe(), shell = %shell_id, error = %d, "could not delete the WinRM shell after an error; it stays open on the target until its idle timeout");
                if e.is_connection_lost() {
                    // The command in it may still run: the caller deletes the shell later.
                    self.orphan = Some(Orphan::WinrmShell {
                        shell_id: shell_id.clone(),
                    });
                }
                Err(e)
            }
            (Err(e), Ok(())) => Err(e),
        }
    }

    /// Returns the exit and, for a stopped command, whether Signal terminate was accepted.
    fn run_in_shell(
        &mut self,
        shell_id: &str,
        line: &str,
        stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<(CommandExit, bool), TransportError> {
        let started = Instant::now();
        let command_id = self.start_command(shell_id, line, stdin.is_some())?;
        if let Some(feed) = stdin {
            self.send_stdin(shell_id, &command_id, feed, ctl, started)?;
        }
        let mut output = Output::new(line);
        let (stopped, exit) =
            self.receive_until_done(shell_id, &command_id, ctl, started, &mut output, out)?;
        output.finish(out);
        self.end_command(shell_id, &command_id, stopped, exit)
    }

    /// Sends the command line; returns its CommandId.
    fn start_command(
        &mut self,
        shell_id: &str,
        line: &str,
        with_stdin: bool,
    ) -> Result<String, TransportError> {
        let body = soap::command(&self.ep, &soap::message_id(), shell_id, line, with_stdin);
        let r = self.simple(body, "starting a command (it may or may not have started)")?;
        let Some(command_id) = r.command_id.filter(|c| !c.is_empty()) else {
            return Err(self.wrap("starting a command", WinrmError::Missing("a CommandId")));
        };
        Ok(command_id)
    }

    /// Sends what `feed` gives as the command's input until it ends, the command refuses
    /// more, or the command is cancelled or out of time.
    fn send_stdin(
        &mut self,
        shell_id: &str,
        command_id: &str,
        feed: &mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>,
        ctl: &Control,
        started: Instant,
    ) -> Result<(), TransportError> {
        loop {
            if ctl.is_cancelled() || ctl.timeout.is_some_and(|t| started.elapsed() >= t) {
                break;
            }
            let next = feed()?;
            let (data, end) = match next {
                Some(d) => (d, false),
                None => (Vec::new(), true),
            };
            let body = soap::send(
                &self.ep,
                &soap::message_id(),
                shell_id,
                command_id,
                &data,
                end,
            );
            match self.call(body, DURING, REQUEST_TIMEOUT, &|| false) {
                Ok(_) => {}
                // The command ended early (e.g. the upload's directory is missing):
                // its output and exit code tell why.
                Err(Failure::Fault(f)) => {
                    tracing::debug!(target = %self.describe(), fault = %f, "stdin refused; reading the command's result");
                    break;
                }
                Err(Failure::Stopped) => break,
                Err(Failure::Err(e)) => return Err(e),
            }
            if end {
                break;
            }
        }
        Ok(())
    }

    /// Receives the command's output into `output` until it is done (the exit, second) or
    /// stopped by cancel or timeout (how, first).
    fn receive_until_done(
        &mut self,
        shell_id: &str,
        command_id: &str,
        ctl: &Control,
        started: Instant,
        output: &mut Output,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<(Option<CommandExit>, Option<CommandExit>), TransportError> {
        let timeout = ctl.timeout;
        let receive_limit = self.cfg.operation_timeout + RECEIVE_GRACE;
        let mut stopped: Option<CommandExit> = None;
        let mut exit: Option<CommandExit> = None;
        while exit.is_none() && stopped.is_none() {
            if ctl.is_cancelled() {
                stopped = Some(CommandExit::Cancelled);
                break;
            }
            if timeout.is_some_and(|t| started.elapsed() >= t) {
                stopped = Some(CommandExit::TimedOut);
                break;
            }
            let body = soap::receive(&self.ep, &soap::message_id(), shell_id, command_id);
            let stop = || ctl.is_cancelled() || timeout.is_some_and(|t| started.elapsed() >= t);
            match self.call(body, DURING, receive_limit, &stop) {
                Ok(r) => {
                    output.pass(&r, command_id, out);
                    if r.done == Some(true) {
                        match r.exit_code {
                            Some(code) => exit = Some(CommandExit::Code(code)),
                            None => {
                                return Err(self.wrap(DURING, WinrmError::Missing("an ExitCode")))
                            }
                        }
                    }
                }
                Err(Failure::Fault(f)) if f.is_timed_out() => {}
                Err(Failure::Fault(fault)) => {
                    return Err(self.wrap(DURING, WinrmError::Fault { fault }))
                }
                Err(Failure::Stopped) => {
                    stopped = Some(if ctl.is_cancelled() {
                        CommandExit::Cancelled
                    } else {
                        CommandExit::TimedOut
                    });
                }
                Err(Failure::Err(e)) => return Err(e),
            }
        }
        Ok((stopped, exit))
    }

    /// Signals terminate and returns the exit with whether the signal was accepted.
    fn end_command(
        &mut self,
        shell_id: &str,
        command_id: &str,
        stopped: Option<CommandExit>,
        exit: Option<CommandExit>,
    ) -> Result<(CommandExit, bool), TransportError> {
        // MS-WSMV 3.1.4.14: terminate after Done as well, so the server frees the command.
        let signalled = self.terminate(shell_id, command_id);
        match (stopped, exit) {
            (Some(s), _) => {
                if let Err(e) = &signalled {
                    tracing::warn!(target = %self.describe(), error = %e, "Signal terminate failed; deleting the shell to stop the command");
                }
                Ok((s, signalled.is_ok()))
            }
            (None, Some(e)) => {
                if let Err(err) = signalled {
                    tracing::debug!(target = %self.describe(), error = %err, "Signal after Done failed");
                }
                Ok((e, true))
            }
            (None, None) => Err(self.wrap(DURING, WinrmError::Missing("a command state"))),
        }
    }

    /// Run a short helper command and collect its output.
    pub(super) fn capture(
        &mut self,
        line: &str,
        stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
    ) -> Result<(CommandExit, String, String), TransportError> {
        let ctl = Control::new(None);
        crate::transport::capture(|out| self.run_line(line, stdin, &ctl, out))
    }
}

/// What a failure while a command runs is reported as.
const DURING: &str = "running a command (it may have run partly or fully)";

/// A command's output on its way out: characters kept whole, and PowerShell's stderr made
/// readable from CLIXML.
struct Output {
    joiners: [Utf8Joiner; 2],
    clixml: Option<clixml::StderrFilter>,
}

impl Output {
    fn new(line: &str) -> Output {
        Output {
            joiners: [Utf8Joiner::default(), Utf8Joiner::default()],
            // Only PowerShell writes CLIXML; anything else's stderr passes untouched.
            clixml: line
                .starts_with("powershell.exe")
                .then(clixml::StderrFilter::default),
        }
    }

    /// Hands on the chunks of `r` that belong to `command_id`.
    fn pass(&mut self, r: &Response, command_id: &str, out: &mut dyn FnMut(Stream, &[u8])) {
        for chunk in &r.chunks {
            if chunk
                .command_id
                .as_deref()
                .is_some_and(|c| !c.eq_ignore_ascii_case(command_id))
            {
                continue;
            }
            let j = match chunk.stream {
                Stream::Stdout => &mut self.joiners[0],
                Stream::Stderr => &mut self.joiners[1],
            };
            let mut ready = j.push(&chunk.data);
            if let (Stream::Stderr, Some(f)) = (chunk.stream, self.clixml.as_mut()) {
                ready = f.feed(&ready);
            }
            if !ready.is_empty() {
                out(chunk.stream, &ready);
            }
        }
    }

    /// Hands on whatever is still held back.
    fn finish(&mut self, out: &mut dyn FnMut(Stream, &[u8])) {
        for (j, stream) in self
            .joiners
            .iter_mut()
            .zip([Stream::Stdout, Stream::Stderr])
        {
            let mut rest = j.finish();
            if let (Stream::Stderr, Some(f)) = (stream, self.clixml.as_mut()) {
                rest = f.feed(&rest);
                rest.extend(f.finish());
            }
            if !rest.is_empty() {
                out(stream, &rest);
            }
        }
    }
}

/// Holds back an incomplete UTF-8 sequence at the end of a chunk until the rest arrives, so
/// that every piece handed on decodes by itself (WinRM splits output anywhere).
#[derive(Debug, Default)]
pub struct Utf8Joiner {
    held: Vec<u8>,
}

impl Utf8Joiner {
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        let cut = complete_prefix(&self.held);
        self.held.drain(..cut).collect()
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Length of `b` without a trailing, unfinished multi-byte sequence.
fn complete_prefix(b: &[u8]) -> usize {
    let len = b.len();
    for back in 1..=len.min(3) {
        let i = len - back;
        let byte = b[i];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: the lead is further back
        }
        let need = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back < need { i } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joiner_keeps_characters_whole() {
        let text = "こんにちは ä €";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut j = Utf8Joiner::default();
            let mut got = j.push(&bytes[..split]);
            assert!(std::str::from_utf8(&got).is_ok(), "split {split}");
            let second = j.push(&bytes[split..]);
            assert!(std::str::from_utf8(&second).is_ok(), "split {split}");
            got.extend(second);
            got.extend(j.finish());
            assert_eq!(got, bytes);
        }
    }

    #[test]
    fn joiner_passes_invalid_bytes_on() {
        let mut j = Utf8Joiner::default();
        assert_eq!(j.push(b"a\x81"), b"a\x81");
        assert_eq!(j.push(b"\xe3"), b"");
        assert_eq!(j.finish(), b"\xe3");
    }
}
