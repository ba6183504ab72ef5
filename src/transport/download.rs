//! Files from a target: every transport's [`Transport::read_file`] streams a file's bytes after
//! the target has said what they should be (size and SHA-256, computed there); [`download`]
//! hashes what arrives and refuses a file whose bytes are not the ones the target hashed (it
//! changed while it was read, or was damaged on the way).

use std::io::{self, Write};

use sha2::{Digest, Sha256};

use super::{hex, Control, FileDigest, Halt, Shell, Transport, TransportError};

/// Bytes asked of the target at a time by the transports that read in blocks.
pub const READ_BLOCK: usize = 256 * 1024;

/// Reads `path` on the target into `sink`, verified: the bytes that arrived have the size and
/// SHA-256 the target computed. Returns that digest. On a mismatch, what `sink` holds is not
/// the file: the caller discards it.
pub fn download(
    t: &mut dyn Transport,
    path: &str,
    shell: Shell,
    ctl: &Control,
    sink: &mut dyn Write,
) -> Result<FileDigest, TransportError> {
    let mut hashing = Hashing {
        inner: sink,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let expected = t.read_file(path, shell, ctl, &mut hashing)?;
    let actual = FileDigest {
        bytes: hashing.bytes,
        sha256: hex(&hashing.hasher.finalize()),
    };
    if actual != expected {
        return Err(TransportError::DownloadVerify {
            target: t.describe(),
            path: path.to_string(),
            expected_bytes: expected.bytes,
            expected_sha256: expected.sha256,
            actual_bytes: actual.bytes,
            actual_sha256: actual.sha256,
        });
    }
    Ok(expected)
}

/// Passes bytes on and hashes them.
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    bytes: u64,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The error for a read whose hashing on the target `ctl` stopped.
pub(crate) fn hash_halted(target: String, path: &str, halt: Halt) -> TransportError {
    TransportError::Halted {
        target,
        what: format!("hashing {path}"),
        halt,
    }
}

/// The error for a file that cannot be read on the target.
pub(crate) fn read_failed(
    target: String,
    path: &str,
    message: impl Into<String>,
) -> TransportError {
    TransportError::Download {
        target,
        path: path.to_string(),
        message: message.into(),
    }
}

/// The error for bytes that could not be handed on (the local file they go to), or that the
/// caller refused ([`Halt`]: the transfer was stopped).
pub(crate) fn sink_failed(target: String, path: &str, source: io::Error) -> TransportError {
    if let Some(halt) = Halt::of(&source) {
        return TransportError::Halted {
            target,
            what: format!("reading {path}"),
            halt,
        };
    }
    TransportError::Io {
        context: format!("cannot write what was read of {path}"),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hashing_writer_hashes_exactly_what_it_passes_on() {
        let mut out = Vec::new();
        let mut h = Hashing {
            inner: &mut out,
            hasher: Sha256::new(),
            bytes: 0,
        };
        h.write_all(b"ab\0c").expect("write");
        assert_eq!(h.bytes, 4);
        assert_eq!(
            hex(&h.hasher.finalize()),
            crate::digest::sha256_hex(b"ab\0c")
        );
        assert_eq!(out, b"ab\0c");
    }
}
