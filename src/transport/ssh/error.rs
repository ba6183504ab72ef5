//! libssh2 errors: which ones end the session, and how they become `TransportError`s.

use ssh2::ErrorCode;

use super::*;
use crate::transport::{Transport, TransportError};

impl SshTransport {
    /// Map a libssh2 error: socket-level trouble marks the session broken and becomes
    /// `ConnectionLost`, anything else an `Ssh` error.
    pub(super) fn ssh_err(&mut self, during: &str, e: &ssh2::Error) -> TransportError {
        if is_connection_error(e) {
            self.mark_broken();
            self.lost(during, e.message())
        } else {
            TransportError::Ssh {
                target: self.describe(),
                during: during.to_string(),
                message: e.to_string(),
            }
        }
    }
}

/// libssh2 errors after which the session cannot be used any more.
pub(super) fn is_connection_error(e: &ssh2::Error) -> bool {
    match e.code() {
        ErrorCode::Session(code) => matches!(
            code,
            -1 // SOCKET_NONE
            | -2 // BANNER_RECV
            | -3 // BANNER_SEND
            | -4 // INVALID_MAC
            | -7 // SOCKET_SEND
            | -9 // TIMEOUT: a blocking call stalled for IO_TIMEOUT
            | -12 // DECRYPT
            | -13 // SOCKET_DISCONNECT
            | -30 // SOCKET_TIMEOUT
            | -43 // SOCKET_RECV
            | -45 // BAD_SOCKET
        ),
        ErrorCode::SFTP(code) => matches!(code, 6 | 7), // NO_CONNECTION, CONNECTION_LOST
    }
}

pub(super) fn is_not_found(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::SFTP(2) | ErrorCode::SFTP(10))
}
