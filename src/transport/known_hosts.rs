//! Host keys: reading a server's key, checking it against an OpenSSH `known_hosts` file, and
//! trusting it.
//!
//! Matching hosts (plain, hashed `|1|salt|hash`, `[host]:port`) is left to libssh2's KnownHosts.
//! libssh2 compares keys regardless of their type, so a server that offers a different key
//! *type* than the one recorded would look "changed". We therefore check per key type, and tell
//! the caller which types are recorded so it can negotiate one of those, as OpenSSH does.

use std::fs;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use ssh2::{CheckResult, KnownHostFileKind, MethodType, Session};

use super::ssh::HandshakeFailure;
use super::TransportError;

/// A server's public host key.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    key_type: String,
    blob: Vec<u8>,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostKey({} {})",
            self.key_type,
            self.fingerprint_sha256()
        )
    }
}

impl HostKey {
    /// From the SSH wire encoding of the key; its first field names the key type.
    pub fn from_blob(blob: &[u8]) -> Option<HostKey> {
        let len_bytes: [u8; 4] = blob.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let name = blob.get(4..4usize.checked_add(len)?)?;
        let key_type = std::str::from_utf8(name).ok()?;
        if key_type.is_empty() || !key_type.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        Some(HostKey {
            key_type: key_type.to_string(),
            blob: blob.to_vec(),
        })
    }

    /// From the `TYPE BASE64` fields of a known_hosts or `.pub` line.
    pub fn from_openssh(key_type: &str, base64: &str) -> Option<HostKey> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(base64)
            .ok()?;
        let key = HostKey::from_blob(&blob)?;
        (key.key_type == key_type).then_some(key)
    }

    /// E.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`.
    pub fn key_type(&self) -> &str {
        &self.key_type
    }

    /// The key as written in known_hosts files.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.blob)
    }

    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// `SHA256:<base64 without padding>`, exactly as `ssh-keygen -lf` and ssh print it.
    pub fn fingerprint_sha256(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }
}

/// The placeholder host key errors use for the trust command.
pub const TRUST_PLACEHOLDER: &str = "`runner trust PLAYBOOK TARGET`";

/// A host key error's message with the real playbook and target in its `runner trust` hint,
/// so that the command can be copied as it is.
pub fn with_trust_command(message: &str, playbook: &Path, target: &str) -> String {
    message.replace(
        TRUST_PLACEHOLDER,
        &format!("`runner trust {} {target}`", playbook.display()),
    )
}

/// The host field OpenSSH writes for `host` on `port`.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Host key algorithms in the order we ask servers for them: the same default order as
/// OpenSSH, so `runner trust` records the key that later connections are offered.
const HOSTKEY_ORDER: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// The algorithm names that produce keys of `key_type` (RSA keys sign with three).
fn algorithms_for(key_type: &str) -> Vec<&'static str> {
    match key_type {
        "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        other => HOSTKEY_ORDER
            .iter()
            .copied()
            .filter(|a| *a == other)
            .collect(),
    }
}

/// Restrict the host key algorithms `sess` offers; to `only` key types if given.
pub(crate) fn set_hostkey_preference(
    sess: &Session,
    only: Option<&[String]>,
) -> Result<(), ssh2::Error> {
    let supported = sess.supported_algs(MethodType::HostKey)?;
    let wanted: Vec<&str> = match only {
        None => HOSTKEY_ORDER.to_vec(),
        Some(types) => HOSTKEY_ORDER
            .iter()
            .copied()
            .filter(|a| types.iter().any(|t| algorithms_for(t).contains(a)))
            .collect(),
    };
    let list: Vec<&str> = wanted
        .into_iter()
        .filter(|a| supported.contains(a))
        .collect();
    if list.is_empty() {
        // Nothing we know is supported: leave libssh2's default rather than offer nothing.
        return Ok(());
    }
    sess.method_pref(MethodType::HostKey, &list.join(","))
}

/// Outcome of checking a presented key against a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// The key is recorded for this host.
    Trusted,
    /// Nothing is recorded for this host.
    Unknown,
    /// A different key of the same type is recorded: refuse.
    Changed,
    /// The key is listed as `@revoked`: refuse.
    Revoked,
    /// Only keys of other types are recorded; connect again offering these types.
    OtherTypesKnown(Vec<String>),
}

struct Entry {
    key_type: String,
    line: String,
}

struct KnownHostsFile {
    entries: Vec<Entry>,
    revoked: Vec<String>,
}

fn read_known_hosts(path: &Path) -> Result<KnownHostsFile, TransportError> {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        // A missing file simply knows nobody; the error that follows says to run `trust`.
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(TransportError::KnownHosts {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    let mut file = KnownHostsFile {
        entries: Vec::new(),
        revoked: Vec::new(),
    };
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(marker) = fields.first().filter(|f| f.starts_with('@')) {
            // `@revoked` applies to the key whatever host it is listed for: being stricter than
            // OpenSSH here costs nothing. `@cert-authority` is not supported and ignored.
            if *marker == "@revoked" {
                if let Some(b64) = fields.get(3) {
                    file.revoked.push((*b64).to_string());
                }
            }
            continue;
        }
        if let Some(key_type) = fields.get(1) {
            file.entries.push(Entry {
                key_type: (*key_type).to_string(),
                line: line.to_string(),
            });
        }
    }
    Ok(file)
}

/// libssh2's verdict for `key` against the entries of one key type.
fn check_entries<'a>(
    entries: impl Iterator<Item = &'a Entry>,
    host: &str,
    port: u16,
    key: &HostKey,
    path: &Path,
) -> Result<CheckResult, TransportError> {
    let kh_err = |e: ssh2::Error| TransportError::KnownHosts {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let sess = Session::new().map_err(kh_err)?;
    let mut known = sess.known_hosts().map_err(kh_err)?;
    for entry in entries {
        // Lines libssh2 cannot parse (unsupported key types, typos) cannot match anything.
        if let Err(e) = known.read_str(&entry.line, KnownHostFileKind::OpenSSH) {
            tracing::debug!(path = %path.display(), error = %e, "skipping unreadable known_hosts line");
        }
    }
    // Not `check_port`: it also accepts plain `host` entries for any port, where OpenSSH only
    // accepts `[host]:port` entries for ports other than 22 (they may be different machines
    // behind one address).
    Ok(known.check(&host_pattern(host, port), key.blob()))
}

/// Check `key`, presented by `host`:`port`, against the known_hosts file at `path`.
/// A missing file counts as empty.
pub fn check_host_key(
    path: &Path,
    host: &str,
    port: u16,
    key: &HostKey,
) -> Result<HostKeyStatus, TransportError> {
    validate_host(host).map_err(|message| TransportError::KnownHosts {
        path: path.to_path_buf(),
        message,
    })?;
    let file = read_known_hosts(path)?;
    if file.revoked.iter().any(|b| *b == key.base64()) {
        return Ok(HostKeyStatus::Revoked);
    }
    let same_type = file.entries.iter().filter(|e| e.key_type == key.key_type);
    match check_entries(same_type, host, port, key, path)? {
        CheckResult::Match => return Ok(HostKeyStatus::Trusted),
        CheckResult::Mismatch => return Ok(HostKeyStatus::Changed),
        CheckResult::NotFound => {}
        CheckResult::Failure => {
            return Err(TransportError::KnownHosts {
                path: path.to_path_buf(),
                message: format!("libssh2 could not check the key of {host} port {port}"),
            })
        }
    }
    // Is the host recorded with other key types? The presented key cannot match those, so a
    // "mismatch" here only means "this host has an entry of that type".
    let mut other_types: Vec<String> = Vec::new();
    for entry in &file.entries {
        if entry.key_type != key.key_type && !other_types.contains(&entry.key_type) {
            other_types.push(entry.key_type.clone());
        }
    }
    let mut recorded = Vec::new();
    for t in other_types {
        let of_type = file.entries.iter().filter(|e| e.key_type == t);
        if matches!(
            check_entries(of_type, host, port, key, path)?,
            CheckResult::Mismatch
        ) && !algorithms_for(&t).is_empty()
        {
            recorded.push(t);
        }
    }
    if recorded.is_empty() {
        Ok(HostKeyStatus::Unknown)
    } else {
        Ok(HostKeyStatus::OtherTypesKnown(recorded))
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    let bad = host.is_empty()
        || host.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, ',' | '#' | '*' | '?' | '!' | '[' | ']' | '|')
        });
    if bad {
        Err(format!("{host:?} is not a usable host name"))
    } else {
        Ok(())
    }
}

/// TCP-connect to `host`:`port` within `timeout`, trying every address the name resolves to.
pub(crate) fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, io::Error> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connect and complete the SSH key exchange, without authenticating, to read the server's host
/// key. This is what `runner trust` shows the user before recording the key.
pub fn scan_host_key(host: &str, port: u16, timeout: Duration) -> Result<HostKey, TransportError> {
    let target = format!("{host}:{port}");
    let tcp = tcp_connect(host, port, timeout).map_err(|source| TransportError::Connect {
        target: target.clone(),
        source,
    })?;
    let handshake_err = |e: ssh2::Error| TransportError::Handshake {
        target: target.clone(),
        cause: e.into(),
    };
    let mut sess = Session::new().map_err(handshake_err)?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(timeout_ms(timeout));
    set_hostkey_preference(&sess, None).map_err(handshake_err)?;
    sess.handshake().map_err(handshake_err)?;
    let key = sess
        .host_key()
        .and_then(|(blob, _)| HostKey::from_blob(blob))
        .ok_or_else(|| TransportError::Handshake {
            target: target.clone(),
            cause: HandshakeFailure::NoHostKey,
        })?;
    // Be polite; the server would notice the close anyway.
    let _ = sess.disconnect(None, "host key scan", None);
    Ok(key)
}

pub(crate) fn timeout_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// What [`trust`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustOutcome {
    Added,
    AlreadyTrusted,
}

/// Record `key` for `host`:`port` in `known_hosts`, as a plain OpenSSH line
/// (`[host]:port type base64`), creating the file with mode 0600 if missing.
///
/// Refuses to record a key when a *different* key of the same type is already recorded: a
/// changed key must be removed deliberately first (`ssh-keygen -R`), never overwritten in passing.
pub fn trust(
    known_hosts: &Path,
    host: &str,
    port: u16,
    key: &HostKey,
) -> Result<TrustOutcome, TransportError> {
    let err = |message: String| TransportError::KnownHosts {
        path: known_hosts.to_path_buf(),
        message,
    };
    match check_host_key(known_hosts, host, port, key)? {
        HostKeyStatus::Trusted => return Ok(TrustOutcome::AlreadyTrusted),
        HostKeyStatus::Changed => {
            return Err(TransportError::HostKeyChanged {
                host: host.to_string(),
                port,
                key_type: key.key_type().to_string(),
                fingerprint: key.fingerprint_sha256(),
                known_hosts: known_hosts.to_path_buf(),
            })
        }
        HostKeyStatus::Revoked => {
            return Err(TransportError::HostKeyRevoked {
                host: host.to_string(),
                port,
                key_type: key.key_type().to_string(),
                fingerprint: key.fingerprint_sha256(),
                known_hosts: known_hosts.to_path_buf(),
            })
        }
        HostKeyStatus::Unknown | HostKeyStatus::OtherTypesKnown(_) => {}
    }
    if let Some(parent) = known_hosts.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(err(format!(
                "its directory {} does not exist",
                parent.display()
            )));
        }
    }
    let mut options = fs::OpenOptions::new();
    options.append(true).create(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(known_hosts).map_err(|e| err(e.to_string()))?;
    // Never glue our line onto an unterminated last line.
    let needs_newline = {
        use std::io::{Read, Seek, SeekFrom};
        let len = file.metadata().map_err(|e| err(e.to_string()))?.len();
        if len == 0 {
            false
        } else {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| err(e.to_string()))?;
            last[0] != b'\n'
        }
    };
    let line = format!(
        "{}{} {} {}\n",
        if needs_newline { "\n" } else { "" },
        host_pattern(host, port),
        key.key_type(),
        key.base64()
    );
    file.write_all(line.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| err(e.to_string()))?;
    Ok(TrustOutcome::Added)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Public halves of throwaway keys generated with ssh-keygen for these tests.
    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILpmeg/yPvGrYvADvxpF3vLb7yPg4cRv5UTO3CpjiGTi";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICSl4OO2u1ysQ+QSz844Ii8BQEZbpcMAXpE/ecxRZXzj";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMwpQ6aM/yhItOTlX5UiDVN0dNRBXUxklad2bMqLkVDvdc7jtNB323nrN6a+fs4wY4n3HMsz7adaLB1HeGI00a4=";

    fn key(t: &str, b: &str) -> HostKey {
        HostKey::from_openssh(t, b).expect("valid test key")
    }

    #[test]
    fn parses_key_type_from_blob() {
        let k = key("ssh-ed25519", ED_A);
        assert_eq!(k.key_type(), "ssh-ed25519");
        assert_eq!(k.base64(), ED_A);
        assert!(HostKey::from_openssh("ssh-rsa", ED_A).is_none());
        assert!(HostKey::from_blob(&[0, 0, 0, 200, b'a']).is_none());
        assert!(HostKey::from_blob(&[]).is_none());
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pubfile = dir.path().join("k.pub");
        fs::write(&pubfile, format!("ssh-ed25519 {ED_A} test\n")).expect("write");
        // ssh-keygen is part of openssh-client, which scripts/test.sh installs.
        let out = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&pubfile)
            .output()
            .expect("run ssh-keygen (openssh-client)");
        assert!(out.status.success(), "ssh-keygen -lf failed");
        let k = key("ssh-ed25519", ED_A);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&k.fingerprint_sha256()),
            "{text} vs {}",
            k.fingerprint_sha256()
        );
    }

    #[test]
    fn plain_port_entry_trusted_changed_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        fs::write(
            &kh,
            format!("# comment\n[10.0.0.1]:2222 ssh-ed25519 {ED_A}\n"),
        )
        .expect("write");
        let a = key("ssh-ed25519", ED_A);
        let b = key("ssh-ed25519", ED_B);
        assert_eq!(
            check_host_key(&kh, "10.0.0.1", 2222, &a).ok(),
            Some(HostKeyStatus::Trusted)
        );
        assert_eq!(
            check_host_key(&kh, "10.0.0.1", 2222, &b).ok(),
            Some(HostKeyStatus::Changed)
        );
        assert_eq!(
            check_host_key(&kh, "10.0.0.2", 2222, &a).ok(),
            Some(HostKeyStatus::Unknown)
        );
    }

    #[test]
    fn plain_host_entry_does_not_cover_other_ports() {
        // As in OpenSSH: `h` is port 22 only; another port can be another machine.
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("h ssh-ed25519 {ED_A}\n")).expect("write");
        let a = key("ssh-ed25519", ED_A);
        let b = key("ssh-ed25519", ED_B);
        assert_eq!(
            check_host_key(&kh, "h", 22, &a).ok(),
            Some(HostKeyStatus::Trusted)
        );
        assert_eq!(
            check_host_key(&kh, "h", 2201, &a).ok(),
            Some(HostKeyStatus::Unknown)
        );
        assert_eq!(
            check_host_key(&kh, "h", 2201, &b).ok(),
            Some(HostKeyStatus::Unknown)
        );
    }

    #[test]
    fn hashed_entry_matches() {
        // Hashed with `ssh-keygen -H` for [10.0.0.1]:2222.
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("[10.0.0.1]:2222 ssh-ed25519 {ED_A}\n")).expect("write");
        let out = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&kh)
            .output()
            .expect("run ssh-keygen (openssh-client)");
        assert!(out.status.success(), "ssh-keygen -H failed");
        let text = fs::read_to_string(&kh).expect("read");
        assert!(text.starts_with("|1|"), "{text}");
        let a = key("ssh-ed25519", ED_A);
        let b = key("ssh-ed25519", ED_B);
        assert_eq!(
            check_host_key(&kh, "10.0.0.1", 2222, &a).ok(),
            Some(HostKeyStatus::Trusted)
        );
        assert_eq!(
            check_host_key(&kh, "10.0.0.1", 2222, &b).ok(),
            Some(HostKeyStatus::Changed)
        );
        assert_eq!(
            check_host_key(&kh, "10.0.0.1", 2223, &a).ok(),
            Some(HostKeyStatus::Unknown)
        );
    }

    #[test]
    fn other_key_type_is_not_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("[h]:2222 ecdsa-sha2-nistp256 {ECDSA}\n")).expect("write");
        let a = key("ssh-ed25519", ED_A);
        assert_eq!(
            check_host_key(&kh, "h", 2222, &a).ok(),
            Some(HostKeyStatus::OtherTypesKnown(vec![
                "ecdsa-sha2-nistp256".into()
            ]))
        );
    }

    #[test]
    fn revoked_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        fs::write(
            &kh,
            format!("@revoked * ssh-ed25519 {ED_A}\n[h]:2222 ssh-ed25519 {ED_A}\n"),
        )
        .expect("write");
        let a = key("ssh-ed25519", ED_A);
        assert_eq!(
            check_host_key(&kh, "h", 2222, &a).ok(),
            Some(HostKeyStatus::Revoked)
        );
    }

    #[test]
    fn trust_appends_creates_0600_and_refuses_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        let a = key("ssh-ed25519", ED_A);
        let b = key("ssh-ed25519", ED_B);
        assert_eq!(
            check_host_key(&kh, "h", 22, &a).ok(),
            Some(HostKeyStatus::Unknown)
        );
        assert_eq!(trust(&kh, "h", 22, &a).ok(), Some(TrustOutcome::Added));
        assert_eq!(
            trust(&kh, "h", 22, &a).ok(),
            Some(TrustOutcome::AlreadyTrusted)
        );
        assert_eq!(trust(&kh, "h", 2201, &a).ok(), Some(TrustOutcome::Added));
        let text = fs::read_to_string(&kh).expect("read");
        assert_eq!(
            text,
            format!("h ssh-ed25519 {ED_A}\n[h]:2201 ssh-ed25519 {ED_A}\n")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&kh).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            trust(&kh, "h", 22, &b),
            Err(TransportError::HostKeyChanged { .. })
        ));
        assert_eq!(
            check_host_key(&kh, "h", 22, &a).ok(),
            Some(HostKeyStatus::Trusted)
        );
    }

    #[test]
    fn trust_does_not_glue_onto_unterminated_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, format!("other ssh-ed25519 {ED_B}")).expect("write");
        let a = key("ssh-ed25519", ED_A);
        assert_eq!(trust(&kh, "h", 22, &a).ok(), Some(TrustOutcome::Added));
        let text = fs::read_to_string(&kh).expect("read");
        assert_eq!(
            text,
            format!("other ssh-ed25519 {ED_B}\nh ssh-ed25519 {ED_A}\n")
        );
    }

    #[test]
    fn bad_host_names_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        let a = key("ssh-ed25519", ED_A);
        assert!(trust(&kh, "a b", 22, &a).is_err());
        assert!(trust(&kh, "a\0b", 22, &a).is_err());
        assert!(!kh.exists());
    }

    #[test]
    fn host_patterns() {
        assert_eq!(host_pattern("h", 22), "h");
        assert_eq!(host_pattern("127.0.0.2", 2201), "[127.0.0.2]:2201");
    }
}
