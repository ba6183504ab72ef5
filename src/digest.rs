//! SHA-256 digests in lowercase hex: of the playbook, of the files steps send, and of what
//! arrived on a target. One definition, so that the plan and the verification on the target
//! compare like with like.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Lowercase hex of any byte string (a digest, a random token).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The size and SHA-256 of a file's content. The plan records one for every uploaded file,
/// and an upload is verified on the target against that one, not against what was read while
/// sending, so that what lands is what was reviewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl FileDigest {
    /// Streams the file (uploads can be gigabytes). Only regular files: a device such as
    /// `/dev/zero` would never end.
    pub fn of_file(path: &Path) -> io::Result<FileDigest> {
        FileDigest::of_file_while(path, || true)
    }

    /// [`FileDigest::of_file`], asking `go_on` before each block: once it says no, the
    /// hashing stops with an error (a large file takes minutes).
    pub fn of_file_while(path: &Path, mut go_on: impl FnMut() -> bool) -> io::Result<FileDigest> {
        let mut f = File::open(path)?;
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            if !go_on() {
                return Err(io::Error::other("stopped while hashing"));
            }
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            bytes += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok(FileDigest {
            bytes,
            sha256: hex(&hasher.finalize()),
        })
    }
}

/// Reads a SHA-256 fingerprint written as 64 hex digits, with or without `:` or spaces.
pub fn parse_cert_sha256(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }

    #[test]
    fn file_digest_streams_and_refuses_non_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).expect("write");
        let d = FileDigest::of_file(&p).expect("digest");
        assert_eq!(d.bytes, data.len() as u64);
        assert_eq!(d.sha256, sha256_hex(&data));
        assert!(FileDigest::of_file(dir.path()).is_err());
    }
}
