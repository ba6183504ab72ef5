//! Files from the target over SFTP: its size from the server's file system and its SHA-256
//! computed there, then its bytes, streamed in blocks.

use std::io::{self, Read, Write};
use std::path::Path;

use super::error::{is_connection_error, is_not_found};
use super::upload::sftp_path;
use super::SshTransport;
use crate::transport::download::{hash_halted, read_failed, sink_failed, READ_BLOCK};
use crate::transport::{
    shell, CommandExit, Control, FileDigest, Halt, Shell, Transport, TransportError,
};

impl SshTransport {
    /// See [`Transport::read_file`].
    pub(super) fn read_file_inner(
        &mut self,
        path: &str,
        shell: Shell,
        ctl: &Control,
        sink: &mut dyn Write,
    ) -> Result<FileDigest, TransportError> {
        if path.is_empty() || path.contains('\0') {
            return Err(read_failed(
                self.describe(),
                path,
                "the path is empty or contains a NUL byte",
            ));
        }
        self.connect()?;
        let bytes = self.remote_size(path, shell)?;
        // Hashing a large file takes minutes: it keeps the transfer's limits.
        let script = shell::sha256_script(shell, path);
        let (exit, stdout, stderr) =
            crate::transport::capture(|out| self.exec(&script, shell, ctl, out))?;
        if let Some(halt) = Halt::of_exit(exit) {
            return Err(hash_halted(self.describe(), path, halt));
        }
        let sha256 = match (exit, shell::parse_sha256(&stdout)) {
            (CommandExit::Code(0), Some(h)) => h,
            _ => {
                return Err(read_failed(
                    self.describe(),
                    path,
                    format!(
                        "cannot compute its SHA-256 on the target ({exit:?}): {}",
                        stderr.trim()
                    ),
                ))
            }
        };
        self.stream_file(path, shell, sink)?;
        Ok(FileDigest { bytes, sha256 })
    }

    /// The size of the regular file `path`, from the server's file system.
    fn remote_size(&mut self, path: &str, shell: Shell) -> Result<u64, TransportError> {
        let sftp = self.sftp()?;
        match sftp.stat(Path::new(&sftp_path(path, shell))) {
            Ok(st) if st.is_dir() => Err(read_failed(self.describe(), path, "it is a folder")),
            Ok(st) => Ok(st.size.unwrap_or(0)),
            Err(e) if is_not_found(&e) => {
                Err(read_failed(self.describe(), path, "there is no such file"))
            }
            Err(e) if is_connection_error(&e) => Err(self.ssh_err("checking the file", e)),
            Err(e) => Err(read_failed(self.describe(), path, e.message())),
        }
    }

    /// Reads `path` over SFTP into `sink`, every request bounded like an upload's.
    fn stream_file(
        &mut self,
        path: &str,
        shell: Shell,
        sink: &mut dyn Write,
    ) -> Result<(), TransportError> {
        let sftp = self.sftp()?;
        let bounded = self.bounded()?;
        let mut file = match sftp.open(Path::new(&sftp_path(path, shell))) {
            Ok(f) => f,
            Err(e) if is_connection_error(&e) => return Err(self.ssh_err("opening the file", e)),
            Err(e) => return Err(read_failed(self.describe(), path, e.message())),
        };
        let mut buf = vec![0u8; READ_BLOCK];
        let mut read = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    read += n as u64;
                    sink.write_all(&buf[..n])
                        .map_err(|e| sink_failed(self.describe(), path, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    drop(file);
                    let during = format!("reading {path} (after {read} bytes)");
                    if e.kind() == io::ErrorKind::TimedOut || self.silent_too_long() {
                        self.mark_broken();
                        return Err(self.lost(&during, self.silence_message()));
                    }
                    self.mark_broken_if_dead();
                    if self.conn.as_ref().is_some_and(|c| c.broken) {
                        return Err(self.lost(&during, e));
                    }
                    return Err(read_failed(self.describe(), path, e.to_string()));
                }
            }
        }
        drop(file);
        drop(bounded);
        Ok(())
    }
}
