//! Uploads over SFTP: written to a temporary file beside the destination, hashed on the
//! target (while written, for large files), and only then renamed into place.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use ssh2::{Channel, OpenFlags, OpenType, Sftp};

use super::error::{is_connection_error, is_not_found};
use super::keepalive::Bounded;
use super::session::Conn;
use super::SshTransport;
use crate::transport::shell;
use crate::transport::upload_buffer::UploadBuffer;
use crate::transport::{
    random_token, upload_mismatch, CommandExit, FileDigest, Halt, Pace, Shell, Transport,
    TransportError,
};

/// Uploads from this size on are hashed on the target while they are written (see
/// `shell::follow_sha256_command`); below it, starting Python costs more than hashing after.
pub(super) const FOLLOW_FROM: u64 = 8 * 1024 * 1024;

impl SshTransport {
    /// Starts [`shell::follow_sha256_command`] on a channel of its own; None if that fails,
    /// and the upload hashes the finished file instead. Not tracked like a step's command:
    /// when the connection goes, its input ends and it finishes on its own. Called under the
    /// upload's [`Bounded`](super::keepalive::Bounded) guard, which must stay in force
    /// (`open_channel` would reset it).
    pub(super) fn start_follower(&self, dest: &str) -> Option<Channel> {
        let sess = self.session().ok()?;
        let mut ch = sess.channel_session().ok()?;
        let line = shell::command_line(Shell::Sh, &shell::follow_sha256_command(dest));
        ch.exec(&line).ok()?;
        Some(ch)
    }

    /// Sends `src` to a temporary file beside `dest` (same folder, unique name), verifies it
    /// there, and only then renames it into place; a failed upload removes the temporary
    /// file (unless the connection is gone) and leaves `dest` as it was; so does one `pace`
    /// stops.
    pub(super) fn upload_inner(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        shell: Shell,
        pace: Pace<'_>,
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
        let sent = self.send_verified(src, expected, dest, &temp, shell, &mut created, pace);
        let placed = sent
            .and_then(|()| self.halt_if(pace(expected.bytes), dest))
            .and_then(|()| self.move_into_place(&temp, dest, shell));
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

    /// The upload's error for a pace that stopped it.
    fn halt_if(&self, paced: Result<(), Halt>, dest: &str) -> Result<(), TransportError> {
        paced.map_err(|halt| TransportError::Halted {
            target: self.describe(),
            what: format!("the upload to {dest}"),
            halt,
        })
    }

    /// Renames the verified `temp` to `dest` on the target, replacing it (see
    /// [`rename_script`]).
    pub(super) fn move_into_place(
        &mut self,
        temp: &str,
        dest: &str,
        shell: Shell,
    ) -> Result<(), TransportError> {
        let script = rename_script(temp, dest, shell);
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

    /// Writes `src` to `temp` (a new file) and verifies it there; errors name `dest`. Stops
    /// when `pace` says so, before the first block or after any.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_verified(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        temp: &str,
        shell: Shell,
        created: &mut bool,
        pace: Pace<'_>,
    ) -> Result<(), TransportError> {
        let mut input = fs::File::open(src).map_err(|source| cannot_read(src, source))?;
        let mode = local_mode(&input);
        let remote_path = sftp_path(temp, shell);
        self.connect()?;
        let sftp = self.sftp()?;
        let bounded = self.bounded()?;
        self.check_parent(&sftp, &remote_path, dest)?;
        let remote = self.create_temp(&sftp, &remote_path, mode, dest, created)?;
        self.halt_if(pace(0), dest)?;
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
        let mut queue = Queue::new(&share);
        let mut follower = match shell {
            Shell::Sh if expected.bytes >= FOLLOW_FROM => self.start_follower(temp),
            _ => None,
        };
        self.stream(
            &mut input,
            remote,
            &mut queue,
            &mut follower,
            src,
            expected,
            dest,
            pace,
        )?;
        self.verify_on_target(
            &sftp,
            &remote_path,
            follower,
            bounded,
            src,
            expected,
            dest,
            temp,
            shell,
        )
    }

    /// The upload's error for `dest`, saying what went wrong.
    fn upload_error(&self, dest: &str, message: String) -> TransportError {
        TransportError::Upload {
            target: self.describe(),
            dest: dest.to_string(),
            message,
        }
    }

    /// Refuses an upload whose folder on the target is missing or is not a folder.
    fn check_parent(
        &mut self,
        sftp: &Sftp,
        remote_path: &str,
        dest: &str,
    ) -> Result<(), TransportError> {
        if let Some(parent) = parent_dir(remote_path) {
            match sftp.stat(Path::new(parent)) {
                Ok(st) if st.is_dir() => {}
                Ok(_) => {
                    return Err(
                        self.upload_error(dest, format!("{parent} exists but is not a directory"))
                    )
                }
                Err(e) if is_not_found(&e) => {
                    return Err(TransportError::UploadParentMissing {
                        target: self.describe(),
                        dest: dest.to_string(),
                        parent: parent.to_string(),
                    })
                }
                Err(e) => return Err(self.ssh_err(&format!("checking {parent}"), e)),
            }
        }
        Ok(())
    }

    /// Creates the temporary file, which must not exist yet, with the local file's `mode`;
    /// sets `created` once it exists.
    fn create_temp(
        &mut self,
        sftp: &Sftp,
        remote_path: &str,
        mode: i32,
        dest: &str,
        created: &mut bool,
    ) -> Result<ssh2::File, TransportError> {
        match sftp.open_mode(
            Path::new(remote_path),
            OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
            mode,
            OpenType::File,
        ) {
            Ok(f) => {
                *created = true;
                Ok(f)
            }
            Err(e) if is_connection_error(&e) => Err(self.ssh_err("opening the destination", e)),
            Err(e) => Err(self.upload_error(dest, format!("cannot create it: {}", e.message()))),
        }
    }

    /// Sends the file through `queue` to `remote` until the file ends or `pace` stops it,
    /// telling `follower` how far it got, then closes `remote`.
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &mut self,
        input: &mut fs::File,
        mut remote: ssh2::File,
        queue: &mut Queue,
        follower: &mut Option<Channel>,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        pace: Pace<'_>,
    ) -> Result<(), TransportError> {
        let mut noted = 0u64;
        let mut sent = 0u64;
        // Once `pace` stops the upload nothing more is queued, but what libssh2 has in flight
        // is still sent: it may have sent part of an SFTP request, and abandoning it would
        // leave the server reading the next requests (the close, the removal) as its rest.
        let mut halted = None;
        loop {
            if halted.is_none() {
                queue.fill(input, src)?;
            }
            if queue.start == queue.end {
                break;
            }
            if queue.queued > expected.bytes {
                // Growing since it was reviewed; the target would not verify anyway.
                drop(remote);
                return Err(upload_mismatch(
                    self.describe(),
                    src,
                    dest,
                    expected,
                    FileDigest {
                        bytes: queue.queued,
                        sha256: "(not computed: the upload was stopped)".into(),
                    },
                ));
            }
            match remote.write(&queue.buf[queue.start..queue.end]) {
                Ok(n) if n > 0 => {
                    queue.start += n;
                    sent += n as u64;
                    if halted.is_none() {
                        halted = pace(sent).err();
                    }
                    note_sent(follower, sent, &mut noted);
                }
                result => return Err(self.write_failed(result, remote, sent, dest)),
            }
        }
        let closed = remote.close();
        drop(remote);
        if let Some(halt) = halted {
            return self.halt_if(Err(halt), dest);
        }
        if let Err(e) = closed {
            return Err(self.ssh_err("finishing the upload", e));
        }
        Ok(())
    }

    /// The error for a write that failed or that the server took nothing of, `sent` bytes
    /// in: the connection is lost when the write timed out, the server has been silent too
    /// long, or the session is dead.
    fn write_failed(
        &mut self,
        result: io::Result<usize>,
        remote: ssh2::File,
        sent: u64,
        dest: &str,
    ) -> TransportError {
        let timed_out = matches!(&result, Err(e) if e.kind() == io::ErrorKind::TimedOut);
        let message = match result {
            Err(e) => e.to_string(),
            Ok(_) => "the server accepted no data".to_string(),
        };
        drop(remote);
        if timed_out || self.silent_too_long() {
            self.mark_broken();
            return self.lost(
                "uploading (the destination is incomplete)",
                self.silence_message(),
            );
        }
        self.mark_broken_if_dead();
        if self.conn.as_ref().is_some_and(|c| c.broken) {
            return self.lost("uploading (the destination is incomplete)", message);
        }
        self.upload_error(
            dest,
            format!("writing failed after {sent} bytes: {message}"),
        )
    }

    /// Verifies the temporary file on the target: its size from the server's file system,
    /// its SHA-256 from the follower when that matches, else computed there. `bounded` ends
    /// before the hash is computed.
    #[allow(clippy::too_many_arguments)]
    fn verify_on_target(
        &mut self,
        sftp: &Sftp,
        remote_path: &str,
        follower: Option<Channel>,
        bounded: Bounded,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        temp: &str,
        shell: Shell,
    ) -> Result<(), TransportError> {
        let target = self.describe();
        // Verify on the target: size from the server's file system, hash computed there.
        let actual_bytes = match sftp.stat(Path::new(remote_path)) {
            Ok(st) => st.size.unwrap_or(0),
            Err(e) => return Err(self.ssh_err("checking the uploaded file", e)),
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
                return Err(self.upload_error(
                    dest,
                    format!(
                        "cannot compute its SHA-256 on the target ({exit:?}): {}",
                        stderr.trim()
                    ),
                ))
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

/// The upload's buffer: `buf[start..end]` is what was sent but not yet acknowledged plus
/// what is queued next (see `send_verified`); `queued` counts what was read from the file.
struct Queue {
    buf: Vec<u8>,
    window: usize,
    block: usize,
    start: usize,
    end: usize,
    queued: u64,
    eof: bool,
}

impl Queue {
    fn new(share: &UploadBuffer) -> Queue {
        Queue {
            buf: vec![0u8; share.len],
            window: share.window,
            block: share.block,
            start: 0,
            end: 0,
            queued: 0,
            eof: false,
        }
    }

    /// Reads `input` block by block until a window is queued or the file ends, moving the
    /// unsent rest to the front of the buffer when the next block would not fit.
    fn fill(&mut self, input: &mut fs::File, src: &Path) -> Result<(), TransportError> {
        while !self.eof && self.end - self.start < self.window {
            if self.end + self.block > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match read_full(input, &mut self.buf[self.end..self.end + self.block]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.end += n;
                    self.queued += n as u64;
                }
                Err(source) => return Err(cannot_read(src, source)),
            }
        }
        Ok(())
    }
}

/// Tells the follower how far the upload got, every [`shell::FOLLOW_STEP`] bytes; one that
/// cannot be told is dropped, and the hash after the transfer decides.
fn note_sent(follower: &mut Option<Channel>, sent: u64, noted: &mut u64) {
    if sent >= *noted + shell::FOLLOW_STEP {
        *noted = sent;
        let note = format!("{sent}\n");
        if follower
            .as_mut()
            .is_some_and(|f| f.write_all(note.as_bytes()).is_err())
        {
            *follower = None; // the hash after the transfer decides
        }
    }
}

/// The error for a local file that cannot be read.
fn cannot_read(src: &Path, source: io::Error) -> TransportError {
    TransportError::Io {
        context: format!("cannot read {}", src.display()),
        source,
    }
}

/// The command that renames the verified `temp` to `dest`, replacing a file there (POSIX
/// `rename`; `Move-Item -Force` or `move /y` on Windows). A folder at `dest` is refused in
/// every shell, as `mv`, `Move-Item` and `move` would put the file inside it, under its
/// temporary name.
pub(super) fn rename_script(temp: &str, dest: &str, shell: Shell) -> String {
    match shell {
        Shell::Sh => format!(
            "if [ -d {d} ]; then echo 'a folder is in the way' >&2; exit 1; fi; mv -f -- {} {d}",
            shell::sh_quote(temp),
            d = shell::sh_quote(dest)
        ),
        Shell::PowerShell => format!(
            "$ErrorActionPreference = 'Stop'\nif (Test-Path -LiteralPath {d} -PathType Container) {{ [Console]::Error.WriteLine('a folder is in the way'); exit 1 }}\nMove-Item -LiteralPath {} -Destination {d} -Force",
            shell::ps_quote(temp),
            d = shell::ps_quote(dest)
        ),
        // `DEST\*` exists for any folder (an empty one holds `.` and `..`), never for a file.
        // The rename is the `else` branch: nothing after the parenthesised block runs alone.
        Shell::Cmd => format!(
            "if exist \"{dest}\\*\" (echo a folder is in the way 1>&2& exit 1) else move /y \"{temp}\" \"{dest}\" >nul"
        ),
    }
}

/// Ends a follower's input (the upload is complete) and reads its hash.
pub(super) fn finish_follower(mut ch: Channel) -> Option<String> {
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

/// SFTP wants forward slashes, and a leading slash before a drive letter on Windows servers.
pub(super) fn sftp_path(path: &str, shell: Shell) -> String {
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
pub(super) fn temp_beside(dest: &str, shell: Shell, token: &str) -> String {
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
pub(super) fn parent_dir(path: &str) -> Option<&str> {
    let idx = path.rfind('/')?;
    let parent = &path[..idx];
    if parent.is_empty() || parent.ends_with(':') {
        None // "/" or a drive root
    } else {
        Some(parent)
    }
}

pub(super) fn local_mode(file: &fs::File) -> i32 {
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
pub(super) fn read_full(input: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
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
    pub(super) fn windows_paths_for_sftp() {
        assert_eq!(sftp_path("C:\\Temp\\a.zip", Shell::Cmd), "/C:/Temp/a.zip");
        assert_eq!(sftp_path("/tmp/a", Shell::Sh), "/tmp/a");
        assert_eq!(sftp_path("rel\\a", Shell::PowerShell), "rel/a");
    }

    #[test]
    pub(super) fn temporary_upload_names_are_beside_the_destination() {
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
    fn every_shell_refuses_a_folder_in_the_way_before_renaming() {
        let cmd = rename_script("C:\\in\\.a.zip.runner-t", "C:\\in\\a.zip", Shell::Cmd);
        assert_eq!(
            cmd,
            "if exist \"C:\\in\\a.zip\\*\" (echo a folder is in the way 1>&2& exit 1) else move /y \"C:\\in\\.a.zip.runner-t\" \"C:\\in\\a.zip\" >nul"
        );
        let sh = rename_script("/in/.a.runner-t", "/in/a", Shell::Sh);
        assert!(sh.starts_with("if [ -d '/in/a' ]; then"), "{sh}");
        let ps = rename_script("C:\\in\\.a.runner-t", "C:\\in\\a", Shell::PowerShell);
        assert!(ps.contains("-PathType Container"), "{ps}");
        for s in [cmd, sh, ps] {
            assert!(s.contains("a folder is in the way"), "{s}");
        }
    }

    #[test]
    pub(super) fn parents() {
        assert_eq!(parent_dir("/tmp/x/a"), Some("/tmp/x"));
        assert_eq!(parent_dir("/a"), None);
        assert_eq!(parent_dir("a"), None);
        assert_eq!(parent_dir("/C:/a"), None);
        assert_eq!(parent_dir("/C:/d/a"), Some("/C:/d"));
    }
}
