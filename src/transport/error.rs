//! Everything a transport can fail with; each message names the target and says what to do.

use super::*;

/// An upload's local file is not the one the plan was made from (boxed: it is rare and large).
#[derive(Debug, thiserror::Error)]
#[error("{src} changed since the plan was made: it had {expected_bytes} bytes with SHA-256 {expected_sha256}, it now has {now}; {dest} on {target} is not the reviewed file: review the plan again (`runner plan`) before applying")]
pub struct SourceChanged {
    pub target: String,
    pub src: String,
    pub dest: String,
    pub expected_bytes: u64,
    pub expected_sha256: String,
    /// The file as read now, or why it cannot be read.
    pub now: String,
}

/// Everything a transport can fail with. Each message names the target and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot reach {target}: {source}; check the address and port, that the machine is up and that its SSH or WinRM service listens there")]
    Connect {
        target: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot reach {target} through the jump host {hop}: {source}")]
    Jump {
        target: String,
        /// The jump host: its name in the playbook and its address.
        hop: String,
        #[source]
        source: Box<TransportError>,
    },

    #[error("SSH handshake with {target} failed: {cause}; check that an SSH server answers on that port")]
    Handshake {
        target: String,
        #[source]
        cause: ssh::HandshakeFailure,
    },

    #[error("the host key of {host} port {port} is not trusted yet: the server presents {key_type} {fingerprint}, which is not in {}; run `runner trust PLAYBOOK TARGET` after checking the fingerprint with the server's administrator", known_hosts.display())]
    HostKeyUnknown {
        host: String,
        port: u16,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error("THE HOST KEY OF {host} PORT {port} HAS CHANGED: the server presents {key_type} {fingerprint}, but {} records a different key. This is a reinstalled server or someone intercepting the connection; refusing to connect. Ask the server's administrator whether the key changed; only then remove the old entry (ssh-keygen -R '{}' -f {}) and run `runner trust PLAYBOOK TARGET`", known_hosts.display(), known_hosts::host_pattern(host, *port), known_hosts.display())]
    HostKeyChanged {
        host: String,
        port: u16,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error("the host key of {host} port {port} ({key_type} {fingerprint}) is marked @revoked in {}; refusing to connect, ask the server's administrator", known_hosts.display())]
    HostKeyRevoked {
        host: String,
        port: u16,
        key_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error("cannot use the known_hosts file {}: {message}", path.display())]
    KnownHosts { path: PathBuf, message: String },

    #[error("authentication as {user} on {target} with {method} failed: {reason}; {hint}")]
    Auth {
        target: String,
        user: String,
        method: &'static str,
        reason: AuthFailure,
        hint: &'static str,
    },

    #[error("connection to {target} lost while {during}: {cause}")]
    ConnectionLost {
        target: String,
        /// What was going on, e.g. "running a command (it may have run partly or fully)".
        during: String,
        cause: LostCause,
    },

    #[error("SSH error on {target} while {during}: {source}")]
    Ssh {
        target: String,
        during: String,
        #[source]
        source: ssh2::Error,
    },

    #[error("WinRM on {target} failed while {during}: {source}")]
    Winrm {
        target: String,
        during: String,
        #[source]
        source: winrm::WinrmError,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot upload to {dest} on {target}: the directory {parent} does not exist; create it first (for example with a step that runs mkdir)")]
    UploadParentMissing {
        target: String,
        dest: String,
        parent: String,
    },

    #[error("upload to {dest} on {target} failed: {message}")]
    Upload {
        target: String,
        dest: String,
        message: String,
    },

    #[error("upload to {dest} on {target} did not verify: expected {expected_bytes} bytes with SHA-256 {expected_sha256}, the target has {actual_bytes} bytes with SHA-256 {actual_sha256}; the local file is unchanged, so the copy was damaged on the way or on the target's disk: run the step again")]
    UploadVerify {
        target: String,
        dest: String,
        expected_bytes: u64,
        expected_sha256: String,
        actual_bytes: u64,
        actual_sha256: String,
    },

    #[error(transparent)]
    UploadSourceChanged(Box<SourceChanged>),

    #[error("cannot read {path} on {target}: {message}")]
    Download {
        target: String,
        path: String,
        message: String,
    },

    #[error("{path} on {target} did not arrive intact: the target reported {expected_bytes} bytes with SHA-256 {expected_sha256}, what arrived has {actual_bytes} bytes with SHA-256 {actual_sha256}; the file changed while it was read, or was damaged on the way: nothing was written, run the step again once the file is no longer being written")]
    DownloadVerify {
        target: String,
        path: String,
        expected_bytes: u64,
        expected_sha256: String,
        actual_bytes: u64,
        actual_sha256: String,
    },

    #[error("{what} on {target} was stopped before it finished: {halt}; its temporary file was removed where the target could still be reached, and the destination is as it was")]
    Halted {
        target: String,
        /// E.g. "the upload to C:\\a.zip", "reading /srv/a".
        what: String,
        halt: Halt,
    },

    #[error("the {shell} shell cannot be used on {target}: {message}")]
    ShellUnavailable {
        target: String,
        shell: Shell,
        message: String,
    },

    #[error("the script cannot be run on {target}: {message}")]
    InvalidScript { target: String, message: String },

    #[error("the command was not started on {target}: {message}")]
    NotStarted { target: String, message: String },

    #[error("could not stop the command on {target} after it {reason}: {message}; it may still be running there, check the target and stop it by hand")]
    KillFailed {
        target: String,
        /// "timed out", "was cancelled" or [`ORPHAN_REASON`].
        reason: &'static str,
        message: String,
    },
}

impl TransportError {
    /// True when the connection itself failed, so reconnecting ([`Transport::connect`]) and
    /// retrying is sensible. It says nothing about whether a command already ran: the engine
    /// must consult the step's idempotency before re-running it.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            TransportError::Jump { source, .. } => source.is_connection_lost(),
            _ => matches!(
                self,
                TransportError::Connect { .. } | TransportError::ConnectionLost { .. }
            ),
        }
    }
}
