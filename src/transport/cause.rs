//! The typed causes inside [`super::TransportError`]: why a connection was lost and why an
//! authentication failed, kept as the error that said so (libssh2's, the operating system's)
//! rather than as its text, so that code can tell them apart and their messages stay as the
//! underlying library wrote them.

use std::path::PathBuf;

/// Why a connection was lost.
#[derive(Debug, thiserror::Error)]
pub enum LostCause {
    /// libssh2 reported it (a socket error, a closed session); its code is kept.
    #[error("{}", .0.message())]
    Ssh(ssh2::Error),
    /// The operating system reported it (a write on a dead socket, a timeout).
    #[error("{0}")]
    Io(std::io::Error),
    /// What was seen instead of an error: silence past the limit, a server that closed the
    /// connection mid-handshake, no session at all.
    #[error("{0}")]
    Seen(String),
}

impl From<ssh2::Error> for LostCause {
    fn from(e: ssh2::Error) -> Self {
        LostCause::Ssh(e)
    }
}

impl From<std::io::Error> for LostCause {
    fn from(e: std::io::Error) -> Self {
        LostCause::Io(e)
    }
}

impl From<String> for LostCause {
    fn from(s: String) -> Self {
        LostCause::Seen(s)
    }
}

impl From<&str> for LostCause {
    fn from(s: &str) -> Self {
        LostCause::Seen(s.to_string())
    }
}

/// Why an authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The key file named in the playbook is not there.
    #[error("the key file {} does not exist", .0.display())]
    NoKeyFile(PathBuf),
    /// Every call succeeded, yet the session is not authenticated.
    #[error("the server did not accept the authentication")]
    NotAccepted,
    /// libssh2 refused (wrong key, wrong password, a passphrase that does not open the key).
    #[error("{}", .0.message())]
    Ssh(ssh2::Error),
    /// What the server answered (WinRM: the HTTP status of the refused handshake).
    #[error("{0}")]
    Refused(String),
}
