//! libssh2 errors: which ones end the session, and how they become `TransportError`s.

use libssh2_sys::{
    LIBSSH2_ERROR_BAD_SOCKET, LIBSSH2_ERROR_BANNER_RECV, LIBSSH2_ERROR_BANNER_SEND,
    LIBSSH2_ERROR_DECRYPT, LIBSSH2_ERROR_INVALID_MAC, LIBSSH2_ERROR_SOCKET_DISCONNECT,
    LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_TIMEOUT,
    LIBSSH2_ERROR_TIMEOUT, LIBSSH2_FX_CONNECTION_LOST, LIBSSH2_FX_NO_CONNECTION,
    LIBSSH2_FX_NO_SUCH_FILE, LIBSSH2_FX_NO_SUCH_PATH,
};
use std::io;

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

/// Why an SSH connection broke while it was being made, with libssh2's error as the source.
/// It travels as the `io::Error` of [`TransportError::Connect`], whose text is this one's:
/// reach it with `io::Error::get_ref` and `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// Before authentication: setting up the session or the key exchange.
    #[error("{}", source.message())]
    Setup {
        host: String,
        port: u16,
        #[source]
        source: ssh2::Error,
    },
    /// While authenticating as `user` with `method`.
    #[error("during authentication: {}", source.message())]
    Authenticating {
        host: String,
        port: u16,
        user: String,
        method: &'static str,
        #[source]
        source: ssh2::Error,
    },
    /// The jump host `jump_host` (user@host:port) did not open the forwarded connection to
    /// `host`:`port`.
    #[error("the jump host did not open a connection to {host}:{port} ({}); check that the target is reachable from it and that its sshd allows TCP forwarding (AllowTcpForwarding)", source.message())]
    NotForwarded {
        jump_host: String,
        host: String,
        port: u16,
        #[source]
        source: ssh2::Error,
    },
}

impl From<ConnectFailure> for io::Error {
    /// The connection was aborted, or (a jump host refusing to forward) another failure.
    fn from(f: ConnectFailure) -> io::Error {
        let kind = match f {
            ConnectFailure::NotForwarded { .. } => io::ErrorKind::Other,
            _ => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, f)
    }
}

impl SshTransport {
    /// A libssh2 error before authentication: the connection broke (`Connect`), or else the
    /// session or key exchange could not be set up (`Handshake`).
    pub(super) fn setup_err(&self, e: ssh2::Error) -> TransportError {
        if is_connection_error(&e) {
            TransportError::Connect {
                target: self.describe(),
                source: ConnectFailure::Setup {
                    host: self.cfg.host.clone(),
                    port: self.cfg.port,
                    source: e,
                }
                .into(),
            }
        } else {
            TransportError::Handshake {
                target: self.describe(),
                cause: e.into(),
            }
        }
    }

    /// The connection broke while authenticating with `method`.
    pub(super) fn auth_broke(&self, method: &'static str, e: ssh2::Error) -> TransportError {
        TransportError::Connect {
            target: self.describe(),
            source: ConnectFailure::Authenticating {
                host: self.cfg.host.clone(),
                port: self.cfg.port,
                user: self.cfg.user.clone(),
                method,
                source: e,
            }
            .into(),
        }
    }

    /// Map a libssh2 error: socket-level trouble marks the session broken and becomes
    /// `ConnectionLost`, anything else an `Ssh` error that keeps it as its source.
    pub(super) fn ssh_err(&mut self, during: &str, e: ssh2::Error) -> TransportError {
        if is_connection_error(&e) {
            self.mark_broken();
            self.lost(during, e)
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

    /// The libssh2 error under a broken connection's `io::Error`, and the failure it carries.
    fn connect_cause(err: &TransportError) -> (&io::Error, &ConnectFailure, &ssh2::Error) {
        let TransportError::Connect { source: io, .. } = err else {
            panic!("not a Connect error: {err:?}");
        };
        let failure = io
            .get_ref()
            .and_then(|e| e.downcast_ref::<ConnectFailure>())
            .expect("the SSH failure is inside the io::Error");
        let ssh = err
            .source()
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<ssh2::Error>())
            .expect("libssh2's error is in the chain");
        (io, failure, ssh)
    }

    #[test]
    fn a_connection_broken_during_setup_keeps_where_and_libssh2s_error() {
        let gone = ssh2::Error::new(
            ErrorCode::Session(LIBSSH2_ERROR_SOCKET_DISCONNECT),
            "socket disconnected",
        );
        let err = transport().setup_err(gone);
        assert!(err.is_connection_lost(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot reach ssh root@127.0.0.2:2201: socket disconnected; check the address and port, that the machine is up and that its SSH or WinRM service listens there"
        );
        let (io, failure, ssh) = connect_cause(&err);
        assert_eq!(io.kind(), io::ErrorKind::ConnectionAborted);
        assert!(
            matches!(failure, ConnectFailure::Setup { host, port: 2201, .. } if host == "127.0.0.2"),
            "{failure:?}"
        );
        assert_eq!(
            ssh.code(),
            ErrorCode::Session(LIBSSH2_ERROR_SOCKET_DISCONNECT)
        );
        // Anything else is a failed handshake, keeping libssh2's error too.
        let kex = ssh2::Error::new(ErrorCode::Session(-5), "unable to exchange keys");
        let err = transport().setup_err(kex);
        assert!(matches!(err, TransportError::Handshake { .. }), "{err:?}");
    }

    #[test]
    fn a_connection_broken_during_authentication_says_who_and_how() {
        let gone = ssh2::Error::new(
            ErrorCode::Session(LIBSSH2_ERROR_SOCKET_RECV),
            "failure while receiving",
        );
        let err = transport().auth_broke("password", gone);
        assert_eq!(
            err.to_string(),
            "cannot reach ssh root@127.0.0.2:2201: during authentication: failure while receiving; check the address and port, that the machine is up and that its SSH or WinRM service listens there"
        );
        let (io, failure, ssh) = connect_cause(&err);
        assert_eq!(io.kind(), io::ErrorKind::ConnectionAborted);
        assert!(
            matches!(
                failure,
                ConnectFailure::Authenticating { user, method: "password", port: 2201, .. }
                    if user == "root"
            ),
            "{failure:?}"
        );
        assert_eq!(ssh.code(), ErrorCode::Session(LIBSSH2_ERROR_SOCKET_RECV));
    }

    #[test]
    fn a_jump_host_that_does_not_forward_is_named_with_the_destination() {
        let refused = ssh2::Error::new(ErrorCode::Session(-21), "Channel open failure");
        let io: io::Error = ConnectFailure::NotForwarded {
            jump_host: "root@10.0.0.1:22".into(),
            host: "10.0.0.9".into(),
            port: 22,
            source: refused,
        }
        .into();
        assert_eq!(io.kind(), io::ErrorKind::Other);
        assert_eq!(
            io.to_string(),
            "the jump host did not open a connection to 10.0.0.9:22 (Channel open failure); check that the target is reachable from it and that its sshd allows TCP forwarding (AllowTcpForwarding)"
        );
        assert!(io.source().is_some_and(|s| s.is::<ssh2::Error>()));
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
