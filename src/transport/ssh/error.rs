//! libssh2 errors: which ones end the session, and how they become `TransportError`s.

use libssh2_sys::{
    LIBSSH2_ERROR_BAD_SOCKET, LIBSSH2_ERROR_BANNER_RECV, LIBSSH2_ERROR_BANNER_SEND,
    LIBSSH2_ERROR_DECRYPT, LIBSSH2_ERROR_INVALID_MAC, LIBSSH2_ERROR_SOCKET_DISCONNECT,
    LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_TIMEOUT,
    LIBSSH2_ERROR_TIMEOUT, LIBSSH2_FX_CONNECTION_LOST, LIBSSH2_FX_NO_CONNECTION,
    LIBSSH2_FX_NO_SUCH_FILE, LIBSSH2_FX_NO_SUCH_PATH,
};
use ssh2::ErrorCode;

use super::SshTransport;
use crate::transport::{Transport, TransportError};

/// `LIBSSH2_ERROR_SOCKET_NONE` from libssh2.h (no socket, or it failed); libssh2-sys does not
/// export it.
pub(super) const LIBSSH2_ERROR_SOCKET_NONE: libc::c_int = -1;

/// Why an SSH handshake failed (the cause of [`TransportError::Handshake`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// libssh2 failed setting up or running the key exchange.
    #[error(transparent)]
    Ssh(#[from] ssh2::Error),
    /// The key exchange finished, but with a host key that cannot be read.
    #[error("the server sent no usable host key")]
    NoHostKey,
}

impl SshTransport {
    /// Map a libssh2 error: socket-level trouble marks the session broken and becomes
    /// `ConnectionLost`, anything else an `Ssh` error that keeps it as its source.
    pub(super) fn ssh_err(&mut self, during: &str, e: ssh2::Error) -> TransportError {
        if is_connection_error(&e) {
            self.mark_broken();
            self.lost(during, e.message())
        } else {
            TransportError::Ssh {
                target: self.describe(),
                during: during.to_string(),
                source: e,
            }
        }
    }
}

/// libssh2 errors after which the session cannot be used any more.
pub(super) fn is_connection_error(e: &ssh2::Error) -> bool {
    match e.code() {
        ErrorCode::Session(code) => matches!(
            code,
            LIBSSH2_ERROR_SOCKET_NONE
                | LIBSSH2_ERROR_BANNER_RECV
                | LIBSSH2_ERROR_BANNER_SEND
                | LIBSSH2_ERROR_INVALID_MAC
                | LIBSSH2_ERROR_SOCKET_SEND
                // A blocking call stalled for IO_TIMEOUT (or the round-trip bound).
                | LIBSSH2_ERROR_TIMEOUT
                | LIBSSH2_ERROR_DECRYPT
                | LIBSSH2_ERROR_SOCKET_DISCONNECT
                | LIBSSH2_ERROR_SOCKET_TIMEOUT
                | LIBSSH2_ERROR_SOCKET_RECV
                | LIBSSH2_ERROR_BAD_SOCKET
        ),
        ErrorCode::SFTP(code) => {
            matches!(code, LIBSSH2_FX_NO_CONNECTION | LIBSSH2_FX_CONNECTION_LOST)
        }
    }
}

pub(super) fn is_not_found(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::SFTP(LIBSSH2_FX_NO_SUCH_FILE) | ErrorCode::SFTP(LIBSSH2_FX_NO_SUCH_PATH)
    )
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::PathBuf;
    use std::time::Duration;

    use libssh2_sys::{LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_FX_PERMISSION_DENIED};

    use super::*;
    use crate::transport::ssh::{SshAuth, SshConfig, DEFAULT_KEEPALIVE};
    use crate::transport::Secret;

    fn transport() -> SshTransport {
        SshTransport::new(SshConfig {
            name: "web1".into(),
            host: "127.0.0.2".into(),
            port: 2201,
            user: "root".into(),
            auth: SshAuth::Password(Secret::new("pw")),
            known_hosts: PathBuf::from("kh"),
            connect_timeout: Duration::from_secs(5),
            keepalive: DEFAULT_KEEPALIVE,
        })
    }

    #[test]
    fn ssh_errors_keep_the_libssh2_error_as_their_source() {
        let denied = ssh2::Error::new(
            ErrorCode::SFTP(LIBSSH2_FX_PERMISSION_DENIED),
            "permission denied",
        );
        let err = transport().ssh_err("creating /srv/a", denied);
        // The text users see is unchanged.
        assert_eq!(
            err.to_string(),
            "SSH error on ssh root@127.0.0.2:2201 while creating /srv/a: [SFTP(3)] permission denied"
        );
        let source = err
            .source()
            .and_then(|s| s.downcast_ref::<ssh2::Error>())
            .expect("the libssh2 error is the source");
        assert_eq!(source.code(), ErrorCode::SFTP(LIBSSH2_FX_PERMISSION_DENIED));
    }

    #[test]
    fn socket_level_codes_end_the_session_and_others_do_not() {
        let code = |c| ssh2::Error::new(c, "x");
        for lost in [
            ErrorCode::Session(LIBSSH2_ERROR_SOCKET_NONE),
            ErrorCode::Session(LIBSSH2_ERROR_SOCKET_DISCONNECT),
            ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT),
            ErrorCode::SFTP(LIBSSH2_FX_CONNECTION_LOST),
        ] {
            assert!(is_connection_error(&code(lost)), "{lost:?}");
        }
        for kept in [
            ErrorCode::Session(LIBSSH2_ERROR_AUTHENTICATION_FAILED),
            ErrorCode::SFTP(LIBSSH2_FX_PERMISSION_DENIED),
            ErrorCode::SFTP(LIBSSH2_FX_NO_SUCH_FILE),
        ] {
            assert!(!is_connection_error(&code(kept)), "{kept:?}");
        }
        assert!(is_not_found(&code(ErrorCode::SFTP(
            LIBSSH2_FX_NO_SUCH_PATH
        ))));
    }

    #[test]
    fn a_connection_error_marks_the_session_lost() {
        let gone = ssh2::Error::new(
            ErrorCode::Session(LIBSSH2_ERROR_SOCKET_DISCONNECT),
            "socket disconnected",
        );
        let err = transport().ssh_err("uploading", gone);
        assert!(err.is_connection_lost(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "connection to ssh root@127.0.0.2:2201 lost while uploading: socket disconnected"
        );
    }
}
