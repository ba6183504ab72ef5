//! Files to the target: written to a temporary file over PowerShell's stdin, verified, moved into place.

use std::io::{self, Read};
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{soap, WinrmTransport};
use crate::transport::shell::{self, ps_quote};
use crate::transport::{
    hex, random_token, upload_mismatch, Announce, CommandExit, Control, FileDigest, Pace, Shell,
    Stream, Transport, TransportError,
};

/// Raw bytes per stdin line of an upload: one Send each, well under the envelope limit.
const UPLOAD_LINE: usize = soap::SEND_CHUNK / 4 * 3 - 3;
/// The prefix of the line the upload script prints when the file is written.
const UPLOAD_REPORT: &str = "runner-upload ";
/// Exit code of the upload script when the parent directory is missing.
const UPLOAD_NO_PARENT: i64 = 3;

impl WinrmTransport {
    fn temp_dir(&mut self) -> Result<String, TransportError> {
        if let Some(t) = &self.temp_dir {
            return Ok(t.clone());
        }
        let (exit, stdout, stderr) = self.capture("echo %TEMP%", None)?;
        let dir = stdout.trim().trim_end_matches('\\').to_string();
        if exit != CommandExit::Code(0) || dir.is_empty() || dir.contains('%') {
            return Err(TransportError::ShellUnavailable {
                target: self.describe(),
                shell: Shell::Cmd,
                message: format!(
                    "could not find the temporary directory ({exit:?}): {}",
                    stderr.trim()
                ),
            });
        }
        self.temp_dir = Some(dir.clone());
        Ok(dir)
    }

    /// Sends `input` to `dest` through PowerShell's stdin and verifies it there: against
    /// `expected` (an upload's reviewed content) or else against what was sent (a temporary
    /// script, hashed while sending). When `pace` stops it, the shell is deleted (which ends
    /// the PowerShell writing the file) and the temporary file is removed.
    pub(super) fn write_file(
        &mut self,
        input: &mut dyn Read,
        what: &Path,
        expected: Option<&FileDigest>,
        dest: &str,
        pace: Pace<'_>,
    ) -> Result<(), TransportError> {
        let temp = match expected {
            Some(_) => temp_beside(dest),
            None => dest.to_string(),
        };
        let written = self.write_file_to(input, what, expected, dest, &temp, pace);
        if matches!(written, Err(TransportError::Halted { .. })) {
            let removed = self.capture(&format!("del /f /q \"{temp}\""), None);
            if !matches!(removed, Ok((CommandExit::Code(0), _, _))) {
                tracing::warn!(target = %self.describe(), file = %temp, "could not remove the temporary file of a stopped upload; remove it by hand");
            }
        }
        written
    }

    /// [`Self::write_file`] through the file `temp`.
    fn write_file_to(
        &mut self,
        input: &mut dyn Read,
        what: &Path,
        expected: Option<&FileDigest>,
        dest: &str,
        temp: &str,
        pace: Pace<'_>,
    ) -> Result<(), TransportError> {
        if dest.is_empty() || dest.contains(['\0', '\r', '\n']) {
            return Err(self.upload_error(
                dest,
                "the destination path is empty or contains a NUL or line break".into(),
            ));
        }
        let line = shell::command_line(Shell::PowerShell, &upload_script(dest, temp, expected));
        let started = Instant::now();
        let Sent {
            exit,
            stdout,
            stderr,
            bytes: sent,
            hasher,
        } = self.send_over_stdin(&line, input, what, expected, dest, pace)?;
        if exit == CommandExit::Code(UPLOAD_NO_PARENT) {
            return Err(TransportError::UploadParentMissing {
                target: self.describe(),
                dest: dest.to_string(),
                parent: parent_of(dest),
            });
        }
        let Some(actual) = reported_digest(&stdout) else {
            return Err(self.upload_error(
                dest,
                format!(
                    "the target did not confirm the file ({exit:?}): {}",
                    stderr.trim()
                ),
            ));
        };
        if !verified(exit, &actual, expected, sent, hasher) {
            return Err(self.not_verified(actual, expected, sent, what, dest));
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(target = %self.describe(), dest, bytes = sent, kib_per_s = (sent as f64 / 1024.0 / secs).round(), "uploaded and verified");
        Ok(())
    }

    /// The upload's error for `dest`, saying what went wrong.
    fn upload_error(&self, dest: &str, message: String) -> TransportError {
        TransportError::Upload {
            target: self.describe(),
            dest: dest.to_string(),
            message,
        }
    }

    /// Runs the upload script `line`, feeding it `input` as base64 lines (hashed as sent
    /// when there is no `expected`), as far as `pace` lets it.
    fn send_over_stdin(
        &mut self,
        line: &str,
        input: &mut dyn Read,
        what: &Path,
        expected: Option<&FileDigest>,
        dest: &str,
        pace: Pace<'_>,
    ) -> Result<Sent, TransportError> {
        let mut hasher = Sha256::new();
        let mut sent = 0u64;
        let mut read_error: Option<io::Error> = None;
        let mut buf = vec![0u8; UPLOAD_LINE];
        let describe = self.describe();
        let (exit, stdout, stderr) = {
            let mut feed = || -> Result<Option<Vec<u8>>, TransportError> {
                pace(sent).map_err(|halt| TransportError::Halted {
                    target: describe.clone(),
                    what: format!("the upload to {dest}"),
                    halt,
                })?;
                let n = match read_full(input, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        read_error = Some(e);
                        return Err(TransportError::Io {
                            context: format!("cannot read {}", what.display()),
                            source: io::Error::other("read failed"),
                        });
                    }
                };
                if n == 0 {
                    return Ok(None);
                }
                if expected.is_none() {
                    hasher.update(&buf[..n]);
                }
                sent += n as u64;
                let mut line =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &buf[..n])
                        .into_bytes();
                line.extend_from_slice(b"\r\n");
                Ok(Some(line))
            };
            self.capture(line, Some(&mut feed))
        }
        .map_err(|e| match read_error.take() {
            Some(source) => TransportError::Io {
                context: format!("cannot read {}", what.display()),
                source,
            },
            None => e,
        })?;
        Ok(Sent {
            exit,
            stdout,
            stderr,
            bytes: sent,
            hasher,
        })
    }

    /// The error for a file that arrived different from `expected` or, without it, from
    /// what was sent.
    fn not_verified(
        &self,
        actual: FileDigest,
        expected: Option<&FileDigest>,
        sent: u64,
        what: &Path,
        dest: &str,
    ) -> TransportError {
        match expected {
            Some(expected) => upload_mismatch(self.describe(), what, dest, expected, actual),
            None => TransportError::UploadVerify {
                target: self.describe(),
                dest: dest.to_string(),
                expected_bytes: sent,
                expected_sha256: "(of the script as sent)".into(),
                actual_bytes: actual.bytes,
                actual_sha256: actual.sha256,
            },
        }
    }

    /// Put `content` in a temporary file, run it with `shell`, remove it whatever happens.
    pub(super) fn run_content(
        &mut self,
        content: &[u8],
        shell: Shell,
        ctl: &Control,
        announce: Option<Announce<'_>>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let ext = match shell {
            Shell::Cmd => "cmd",
            Shell::PowerShell => "ps1",
            Shell::Sh => return Err(self.no_sh()),
        };
        let dir = self.temp_dir()?;
        let path = format!("{dir}\\runner-{}.{ext}", random_token());
        let mut reader = content;
        self.write_file(
            &mut reader,
            Path::new("the script"),
            None,
            &path,
            &mut |_| Ok(()),
        )?;
        let line = match shell {
            Shell::Cmd => format!("\"{path}\""),
            _ => format!(
                "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \"{path}\""
            ),
        };
        let result = self.run_line_announced(&line, None, ctl, announce, out);
        let removed = self.capture(&format!("del /f /q \"{path}\""), None);
        match removed {
            Ok((CommandExit::Code(0), _, _)) => {}
            Ok((exit, _, err)) => {
                tracing::warn!(target = %self.describe(), file = %path, ?exit, error = %err.trim(), "could not remove a temporary script; remove it by hand")
            }
            Err(e) => {
                tracing::warn!(target = %self.describe(), file = %path, error = %e, "could not remove a temporary script; remove it by hand")
            }
        }
        result
    }
}

/// What the upload script said, with what was sent to it (`bytes`, hashed by `hasher`).
struct Sent {
    exit: CommandExit,
    stdout: String,
    stderr: String,
    bytes: u64,
    hasher: Sha256,
}

/// The folder part of `dest`, for the error when it is missing.
fn parent_of(dest: &str) -> String {
    match dest.rfind(['\\', '/']) {
        Some(i) => dest[..i].to_string(),
        None => dest.to_string(),
    }
}

/// The size and SHA-256 of the written file, from the upload script's report line.
fn reported_digest(stdout: &str) -> Option<FileDigest> {
    let report = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(UPLOAD_REPORT).map(str::to_string));
    let (bytes, sha) = report.as_deref().and_then(|r| r.split_once(' '))?;
    let actual_bytes: u64 = bytes.trim().parse().unwrap_or(u64::MAX);
    let actual_sha256 = sha.trim().to_ascii_lowercase();
    Some(FileDigest {
        bytes: actual_bytes,
        sha256: actual_sha256,
    })
}

/// Whether the script succeeded and wrote `expected` or, without it, what was sent.
fn verified(
    exit: CommandExit,
    actual: &FileDigest,
    expected: Option<&FileDigest>,
    sent: u64,
    hasher: Sha256,
) -> bool {
    match expected {
        Some(expected) => exit == CommandExit::Code(0) && *actual == *expected,
        None => {
            exit == CommandExit::Code(0)
                && actual.bytes == sent
                && actual.sha256 == hex(&hasher.finalize())
        }
    }
}

/// A new name beside `dest` (same folder): `.NAME.runner-TOKEN`.
fn temp_beside(dest: &str) -> String {
    let (dir, name) = match dest.rfind(['\\', '/']) {
        Some(i) => dest.split_at(i + 1),
        None => ("", dest),
    };
    format!("{dir}.{name}.runner-{}", random_token())
}

/// The PowerShell (2.0 compatible) that writes its stdin's base64 lines to a file and prints
/// `runner-upload LENGTH SHA256HEX` of what it wrote. With `expected` (an upload's reviewed
/// size and SHA-256) the file is `temp`, a new one beside `dest` (see [`temp_beside`]), moved
/// into place (`Move-Item -Force`) only when it matches, and removed otherwise, so a failed
/// upload leaves `dest` as it was; without (a fresh temporary script) `temp` is `dest` itself.
fn upload_script(dest: &str, temp: &str, expected: Option<&FileDigest>) -> String {
    let check = match expected {
        Some(e) => format!("{} {}", e.bytes, e.sha256.to_ascii_uppercase()),
        None => String::new(),
    };
    format!(
        "$ErrorActionPreference = 'Stop'\n\
         $p = {}\n\
         $t = {}\n\
         $e = {}\n\
         $d = [IO.Path]::GetDirectoryName($p)\n\
         if ($d -and -not [IO.Directory]::Exists($d)) {{ [Console]::Error.WriteLine('directory missing: ' + $d); exit {UPLOAD_NO_PARENT} }}\n\
         try {{\n\
         $f = [IO.File]::Open($t, [IO.FileMode]::Create, [IO.FileAccess]::Write)\n\
         try {{ foreach ($l in $input) {{ if ($l.Length -gt 0) {{ $b = [Convert]::FromBase64String($l); $f.Write($b, 0, $b.Length) }} }} }} finally {{ $f.Close() }}\n\
         $s = [IO.File]::OpenRead($t)\n\
         try {{ $h = [Security.Cryptography.SHA256]::Create().ComputeHash($s); $n = $s.Length }} finally {{ $s.Close() }}\n\
         $r = '' + $n + ' ' + [BitConverter]::ToString($h).Replace('-', '')\n\
         if ($t -ne $p -and [IO.Directory]::Exists($p)) {{ Remove-Item -LiteralPath $t -Force; [Console]::Error.WriteLine('a folder is in the way: ' + $p); exit 4 }}\n\
         if ($t -ne $p) {{ if ($r -eq $e) {{ Move-Item -LiteralPath $t -Destination $p -Force }} else {{ Remove-Item -LiteralPath $t -Force }} }}\n\
         }} catch {{ if ($t -ne $p) {{ Remove-Item -LiteralPath $t -Force -ErrorAction SilentlyContinue }}; throw }}\n\
         [Console]::Out.Write('{UPLOAD_REPORT}' + $r)\n",
        ps_quote(dest),
        ps_quote(temp),
        ps_quote(&check),
    )
}

fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_script_quotes_the_path() {
        let s = upload_script("C:\\it's here\\a.zip", "C:\\it's here\\a.zip", None);
        assert!(s.contains("$p = 'C:\\it''s here\\a.zip'"), "{s}");
        assert!(s.contains("$t = 'C:\\it''s here\\a.zip'"), "{s}");
        assert!(s.contains("SHA256]::Create()"), "{s}");
        // An upload goes to a new name beside the destination, moved into place if it matches.
        let e = FileDigest {
            bytes: 3,
            sha256: "ab".repeat(32),
        };
        let s = upload_script("C:\\d\\a.zip", &temp_beside("C:\\d\\a.zip"), Some(&e));
        assert!(s.contains("$t = 'C:\\d\\.a.zip.runner-"), "{s}");
        assert!(s.contains(&format!("$e = '3 {}'", "AB".repeat(32))), "{s}");
        assert!(
            s.contains("Move-Item -LiteralPath $t -Destination $p -Force"),
            "{s}"
        );
    }
}
