//! A pair's output on its way out: split into lines, secrets masked, written to the run log
//! and reported. Lines are the unit because a secret split across two network chunks is
//! still whole within its line (a secret over several lines is masked line by line, see
//! [`crate::secret::Redactor`]); a line too long to keep is cut only where no secret lies.

use jiff::Timestamp;

use super::event::Event;
use super::event::OutputStream;
use super::Session;
use crate::transport::Stream;

/// Longest line kept whole; longer lines are cut (a binary blob on stdout must not eat memory).
const MAX_LINE: usize = 64 * 1024;

pub struct PairOutput<'s, 'a> {
    session: &'s Session<'a>,
    step: String,
    target: String,
    /// Label for the stream names ("check" output is told apart from the step's own).
    prefix: &'static str,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The last few lines, for error messages and the report.
    pub tail: std::collections::VecDeque<String>,
}

impl<'s, 'a> PairOutput<'s, 'a> {
    pub fn new(session: &'s Session<'a>, step: &str, target: &str, prefix: &'static str) -> Self {
        PairOutput {
            session,
            step: step.to_string(),
            target: target.to_string(),
            prefix,
            stdout: Vec::new(),
            stderr: Vec::new(),
            tail: std::collections::VecDeque::new(),
        }
    }

    pub fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            lines.push(line);
        }
        if buf.len() > MAX_LINE {
            // Cut, but never inside a secret, and keep back what may be the start of one.
            let cut = match self.session.redactor.safe_cut(buf) {
                0 => buf.len(),
                n => n,
            };
            let line: Vec<u8> = buf.drain(..cut).collect();
            lines.push(line);
        }
        for line in lines {
            self.emit(stream, &line);
        }
    }

    /// Flushes partial lines at the end of a command.
    pub fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let buf = match stream {
                Stream::Stdout => std::mem::take(&mut self.stdout),
                Stream::Stderr => std::mem::take(&mut self.stderr),
            };
            if !buf.is_empty() {
                self.emit(stream, &buf);
            }
        }
    }

    /// A line from runner itself (attempt boundaries, upload results) into the pair's log.
    /// The step this output belongs to.
    pub fn step(&self) -> &str {
        &self.step
    }

    pub fn note(&mut self, text: &str) {
        let text = self.session.redactor.redact(text);
        self.session
            .runlog
            .note(&self.step, &self.target, &text, self.session.clock.now());
    }

    fn emit(&mut self, stream: Stream, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches(['\n', '\r']);
        let line = self.session.redactor.redact(text);
        let name = match (self.prefix, stream) {
            ("", Stream::Stdout) => OutputStream::Stdout,
            ("", Stream::Stderr) => OutputStream::Stderr,
            (_, Stream::Stdout) => OutputStream::CheckStdout,
            (_, Stream::Stderr) => OutputStream::CheckStderr,
        };
        let now: Timestamp = self.session.clock.now();
        self.session
            .runlog
            .output(&self.step, &self.target, name.as_str(), &line, now);
        if self.tail.len() == 20 {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.session.emit(&Event::Output {
            step: self.step.clone(),
            target: self.target.clone(),
            stream: name,
            line,
        });
    }
}
