//! Files from the target: one PowerShell command opens the file (other writers are refused
//! while it is open), prints its size and SHA-256, then its bytes as base64 lines, decoded
//! here as they arrive.

use std::io::Write;
use std::sync::atomic::Ordering;

use base64::Engine as _;

use super::WinrmTransport;
use crate::transport::download::{read_failed, sink_failed};
use crate::transport::shell::{self, ps_quote};
use crate::transport::{
    CommandExit, Control, FileDigest, Halt, Shell, Stream, Transport, TransportError,
};

/// The first line of the answer: `runner-read LENGTH SHA256HEX`.
const HEADER: &str = "runner-read ";
/// The last line of the answer, after the last block.
const END: &str = "runner-end";
/// Exit code of the script when the file does not exist.
const NO_FILE: i64 = 3;
/// Raw bytes per line (64 KiB of base64).
const LINE_BYTES: usize = 48 * 1024;
/// A longer line is not from the script: refused rather than held.
const MAX_LINE: usize = 1024 * 1024;

impl WinrmTransport {
    /// See [`crate::transport::Transport::read_file`].
    pub(super) fn read_file_inner(
        &mut self,
        path: &str,
        limits: &Control,
        sink: &mut dyn Write,
    ) -> Result<FileDigest, TransportError> {
        if path.is_empty() || path.contains(['\0', '\r', '\n']) {
            return Err(read_failed(
                self.describe(),
                path,
                "the path is empty or contains a NUL or line break",
            ));
        }
        let line = shell::command_line(Shell::PowerShell, &read_script(path));
        // The transfer's timeout; a cancel flag of its own, set when the sink refuses bytes
        // and when the transfer's is (seen as output arrives).
        let ctl = Control::new(limits.timeout);
        let cancel = ctl.cancel.clone();
        let mut answer = Answer::new(sink, path);
        let mut stderr = Vec::new();
        let exit = self.run_line_announced(&line, None, &ctl, None, &mut |stream, bytes| {
            match stream {
                Stream::Stdout => {
                    if !answer.feed(bytes) || limits.is_cancelled() {
                        cancel.store(true, Ordering::SeqCst); // stop sending the rest
                    }
                }
                Stream::Stderr if stderr.len() < 64 * 1024 => stderr.extend_from_slice(bytes),
                Stream::Stderr => {}
            }
        })?;
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        let describe = self.describe();
        match (answer.problem, exit) {
            (Some(p), _) => Err(match p {
                Problem::Sink(e) => sink_failed(describe.clone(), path, e),
                Problem::Garbled(m) => read_failed(describe, path, m),
            }),
            // Stopped by the transfer's limits (see `ctl` above), not by a sink problem.
            (None, CommandExit::TimedOut | CommandExit::Cancelled) => Err(TransportError::Halted {
                target: describe,
                what: format!("reading {path}"),
                halt: Halt::of_exit(exit).unwrap_or(Halt::Cancelled),
            }),
            (None, CommandExit::Code(NO_FILE)) => {
                Err(read_failed(describe, path, "there is no such file"))
            }
            (None, CommandExit::Code(0)) if answer.ended => answer.header.ok_or_else(|| {
                read_failed(
                    describe.clone(),
                    path,
                    "the target did not say the file's size",
                )
            }),
            (None, exit) => Err(read_failed(
                describe,
                path,
                format!("the target's answer ended early ({exit:?}): {stderr}"),
            )),
        }
    }
}

enum Problem {
    Sink(std::io::Error),
    Garbled(String),
}

/// The script's answer, decoded line by line as it arrives.
struct Answer<'a> {
    sink: &'a mut dyn Write,
    path: &'a str,
    line: Vec<u8>,
    header: Option<FileDigest>,
    ended: bool,
    problem: Option<Problem>,
}

impl<'a> Answer<'a> {
    fn new(sink: &'a mut dyn Write, path: &'a str) -> Self {
        Answer {
            sink,
            path,
            line: Vec::new(),
            header: None,
            ended: false,
            problem: None,
        }
    }

    /// Takes a chunk of output; false once something is wrong (the rest is ignored).
    fn feed(&mut self, chunk: &[u8]) -> bool {
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            if self.problem.is_some() {
                return false;
            }
            self.line.extend_from_slice(piece);
            if self.line.len() > MAX_LINE {
                self.problem = Some(Problem::Garbled(format!(
                    "the target's answer about {} has a line longer than {MAX_LINE} bytes",
                    self.path
                )));
            } else if piece.ends_with(b"\n") {
                let line = std::mem::take(&mut self.line);
                self.take_line(String::from_utf8_lossy(&line).trim());
            }
        }
        self.problem.is_none()
    }

    fn take_line(&mut self, line: &str) {
        let garbled = |what: &str| Some(Problem::Garbled(format!("{what}: {line:.80}")));
        if self.ended {
            return;
        }
        // Whatever a profile or the console prints before the header (a byte order mark, a
        // banner) is not the file.
        if self.header.is_none() {
            self.header = parse_header(line.trim_start_matches('\u{feff}'));
            return;
        }
        if line == END {
            self.ended = true;
            return;
        }
        match base64::engine::general_purpose::STANDARD.decode(line) {
            Ok(bytes) => {
                if let Err(e) = self.sink.write_all(&bytes) {
                    self.problem = Some(Problem::Sink(e));
                }
            }
            Err(_) => self.problem = garbled("the target sent a line that is not base64"),
        }
    }
}

fn parse_header(line: &str) -> Option<FileDigest> {
    let (bytes, sha) = line.strip_prefix(HEADER)?.split_once(' ')?;
    let sha = sha.trim().to_ascii_lowercase();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(FileDigest {
        bytes: bytes.trim().parse().ok()?,
        sha256: sha,
    })
}

/// The PowerShell (2.0 compatible) that prints `runner-read LENGTH SHA256HEX`, the file as
/// base64 lines, then `runner-end`. The file stays open, refusing writers, from the hash to
/// the last byte, so the bytes sent are the ones hashed.
fn read_script(path: &str) -> String {
    format!(
        "$ErrorActionPreference = 'Stop'\n\
         $p = {}\n\
         if (-not [IO.File]::Exists($p)) {{ [Console]::Error.WriteLine('no such file: ' + $p); exit {NO_FILE} }}\n\
         $f = [IO.File]::Open($p, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::Read)\n\
         try {{\n\
         $h = [Security.Cryptography.SHA256]::Create().ComputeHash($f)\n\
         [Console]::Out.Write('{HEADER}' + $f.Length + ' ' + [BitConverter]::ToString($h).Replace('-', '') + \"`r`n\")\n\
         $f.Position = 0\n\
         $b = New-Object byte[] {LINE_BYTES}\n\
         while (($n = $f.Read($b, 0, $b.Length)) -gt 0) {{ [Console]::Out.Write([Convert]::ToBase64String($b, 0, $n) + \"`r`n\") }}\n\
         }} finally {{ $f.Close() }}\n\
         [Console]::Out.Write('{END}' + \"`r`n\")\n",
        ps_quote(path),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_decoded_across_any_split() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut text = format!("{HEADER}{} {}\r\n", data.len(), "AB".repeat(32));
        for block in data.chunks(LINE_BYTES) {
            text.push_str(&base64::engine::general_purpose::STANDARD.encode(block));
            text.push_str("\r\n");
        }
        text.push_str(END);
        text.push_str("\r\n");
        let mut out = Vec::new();
        let mut a = Answer::new(&mut out, "C:\\x");
        for chunk in text.as_bytes().chunks(777) {
            assert!(a.feed(chunk));
        }
        assert!(a.ended);
        assert_eq!(a.header.as_ref().map(|h| h.bytes), Some(data.len() as u64));
        assert_eq!(a.header.map(|h| h.sha256), Some("ab".repeat(32)));
        assert_eq!(out, data);
    }

    #[test]
    fn garbage_is_refused() {
        let mut out = Vec::new();
        let mut a = Answer::new(&mut out, "C:\\x");
        assert!(
            a.feed(b"a banner\r\n"),
            "lines before the header are skipped"
        );
        assert!(a.header.is_none() && a.problem.is_none() && !a.ended);
        let mut a = Answer::new(&mut out, "C:\\x");
        let header = format!("{HEADER}3 {}\r\n", "0".repeat(64));
        assert!(a.feed(header.as_bytes()));
        assert!(!a.feed(b"%%%\r\n"));
    }

    #[test]
    fn the_script_quotes_the_path() {
        let s = read_script("C:\\it's\\a.csv");
        assert!(s.contains("$p = 'C:\\it''s\\a.csv'"), "{s}");
        assert!(s.contains("[IO.FileShare]::Read"), "{s}");
    }
}
