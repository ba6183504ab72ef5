//! Opening a session: TCP connect (or a jump tunnel), handshake with our algorithm order,
//! host key check against known_hosts, authentication; the SFTP channel that hangs off it.

use std::net::TcpStream;
use std::sync::Arc;

use libssh2_sys::LIBSSH2_ERROR_AUTHENTICATION_FAILED;
use ssh2::{ErrorCode, MethodType, Session, Sftp};

use super::error::{is_connection_error, HandshakeFailure};
use super::keepalive::keepalive_secs;
use super::{SshAuth, SshConfig, SshTransport, IO_TIMEOUT};
use crate::transport::known_hosts::{
    check_host_key, set_hostkey_preference, tcp_connect, timeout_ms, HostKey, HostKeyStatus,
};
use crate::transport::{AuthFailure, Secret, Transport, TransportError};

/// One authenticated session and what hangs off it.
pub(super) struct Conn {
    pub(super) sess: Session,
    /// The session's socket, kept to check for a peer that went away.
    #[cfg(unix)]
    pub(super) fd: std::os::unix::io::RawFd,
    /// Opened on first use; `Arc` so that callers can hold it while `self` is borrowed mutably.
    pub(super) sftp: Option<Arc<Sftp>>,
    /// Set when an operation failed in a way that leaves the session unusable.
    pub(super) broken: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.sftp = None;
        if self.broken {
            // Non-blocking, so that freeing leftover channels does not wait for a dead peer.
            self.sess.set_blocking(false);
        } else {
            // Bounded: a dead network must not hang the drop.
            self.sess.set_blocking(true);
            self.sess.set_timeout(2000);
            let _ = self.sess.disconnect(None, "runner done", None);
        }
    }
}

pub(super) enum Opened {
    Ready(Conn),
    /// The host is recorded with other key types; connect again offering those.
    RetryWith(Vec<String>, HostKey),
}

/// What a session runs over: a TCP connection to the target, or a jump host's tunnel.
enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Tunnel(std::os::unix::net::UnixStream),
}

impl Socket {
    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::unix::io::RawFd {
        use std::os::unix::io::AsRawFd;
        match self {
            Socket::Tcp(t) => t.as_raw_fd(),
            Socket::Tunnel(u) => u.as_raw_fd(),
        }
    }
}

impl SshTransport {
    /// Connects, handshakes, checks the host key and authenticates: a session ready for
    /// use, or a retry offering the key types known for the host.
    pub(super) fn open(&self, only_types: Option<&[String]>) -> Result<Opened, TransportError> {
        let socket = self.connect_socket()?;
        #[cfg(unix)]
        let fd = socket.raw_fd();
        let sess = self.handshake(socket, only_types)?;
        if let Some((types, key)) = self.verify_host_key(&sess, only_types)? {
            return Ok(Opened::RetryWith(types, key));
        }
        self.authenticate(&sess)?;
        sess.set_keepalive(true, keepalive_secs(self.cfg.keepalive));
        sess.set_timeout(timeout_ms(IO_TIMEOUT));
        Ok(Opened::Ready(Conn {
            sess,
            #[cfg(unix)]
            fd,
            sftp: None,
            broken: false,
        }))
    }

    /// Connects to the target directly, or through the jump hosts when there are any.
    fn connect_socket(&self) -> Result<Socket, TransportError> {
        let cfg = &self.cfg;
        if self.hops.is_empty() {
            let tcp = tcp_connect(&cfg.host, cfg.port, cfg.connect_timeout).map_err(|source| {
                TransportError::Connect {
                    target: self.describe(),
                    source,
                }
            })?;
            tune_socket(&tcp);
            Ok(Socket::Tcp(tcp))
        } else {
            self.tunnel_socket()
        }
    }

    #[cfg(unix)]
    fn tunnel_socket(&self) -> Result<Socket, TransportError> {
        Ok(Socket::Tunnel(self.tunnel()?))
    }

    #[cfg(not(unix))]
    fn tunnel_socket(&self) -> Result<Socket, TransportError> {
        Err(TransportError::Connect {
            target: self.describe(),
            source: std::io::Error::other("jump hosts need a Unix runner machine"),
        })
    }

    /// A session over `socket`, its handshake done with our order of host key types (only
    /// `only_types` when given) and algorithms.
    fn handshake(
        &self,
        socket: Socket,
        only_types: Option<&[String]>,
    ) -> Result<Session, TransportError> {
        let early = |e: ssh2::Error| self.setup_err(e);
        let mut sess = Session::new().map_err(early)?;
        match socket {
            Socket::Tcp(tcp) => sess.set_tcp_stream(tcp),
            #[cfg(unix)]
            Socket::Tunnel(tunnel) => sess.set_tcp_stream(tunnel),
        }
        sess.set_timeout(timeout_ms(self.cfg.connect_timeout));
        set_hostkey_preference(&sess, only_types).map_err(early)?;
        set_algorithm_preference(&sess);
        if let Err(e) = sess.handshake() {
            return Err(early(e));
        }
        Ok(sess)
    }

    /// Checks the server's host key against known_hosts; Some when the host is recorded
    /// with other key types only (and `only_types` was not given): connect again offering
    /// those.
    fn verify_host_key(
        &self,
        sess: &Session,
        only_types: Option<&[String]>,
    ) -> Result<Option<(Vec<String>, HostKey)>, TransportError> {
        let cfg = &self.cfg;
        let key = sess
            .host_key()
            .and_then(|(blob, _)| HostKey::from_blob(blob))
            .ok_or_else(|| TransportError::Handshake {
                target: self.describe(),
                cause: HandshakeFailure::NoHostKey,
            })?;
        match check_host_key(&cfg.known_hosts, &cfg.host, cfg.port, &key)? {
            HostKeyStatus::Trusted => Ok(None),
            HostKeyStatus::OtherTypesKnown(types) if only_types.is_none() => Ok(Some((types, key))),
            status => Err(host_key_error(cfg, &key, &status)),
        }
    }

    pub(super) fn authenticate(&self, sess: &Session) -> Result<(), TransportError> {
        let cfg = &self.cfg;
        let target = self.describe();
        let (method, hint, result) = match &cfg.auth {
            SshAuth::Key { path, passphrase } => {
                let hint = "check that the key's public half is in the user's authorized_keys on the target, and the key file and its passphrase";
                if !path.is_file() {
                    return Err(TransportError::Auth {
                        target,
                        user: cfg.user.clone(),
                        method: "public key",
                        reason: AuthFailure::NoKeyFile(path.clone()),
                        hint,
                    });
                }
                let r = sess.userauth_pubkey_file(
                    &cfg.user,
                    None,
                    path,
                    passphrase.as_ref().map(Secret::expose),
                );
                ("public key", hint, r)
            }
            SshAuth::Password(pw) => (
                "password",
                "check the user name and password, and that the server allows password authentication",
                sess.userauth_password(&cfg.user, pw.expose()),
            ),
            SshAuth::Agent => (
                "ssh-agent",
                "check that ssh-agent runs (SSH_AUTH_SOCK) and holds a key the target accepts",
                agent_auth(sess, &cfg.user),
            ),
        };
        let failure = match result {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => AuthFailure::NotAccepted,
            Err(e) if is_connection_error(&e) => return Err(self.auth_broke(method, e)),
            Err(e) => AuthFailure::Ssh(e),
        };
        Err(TransportError::Auth {
            target,
            user: cfg.user.clone(),
            method,
            reason: failure,
            hint,
        })
    }

    pub(super) fn sftp(&mut self) -> Result<Arc<Sftp>, TransportError> {
        if let Some(sftp) = self.conn.as_ref().and_then(|c| c.sftp.clone()) {
            return Ok(sftp);
        }
        let sess = self.session()?;
        sess.set_blocking(true);
        match sess.sftp() {
            Ok(sftp) => {
                let sftp = Arc::new(sftp);
                if let Some(c) = self.conn.as_mut() {
                    c.sftp = Some(Arc::clone(&sftp));
                }
                Ok(sftp)
            }
            Err(e) => {
                Err(self.ssh_err("starting SFTP (is the sftp subsystem enabled in sshd?)", e))
            }
        }
    }
}

/// Ciphers in order of preference, measured on uploads (which are bound by CPU on fast links).
/// AES-GCM runs on the CPU's AES and carry-less multiply instructions through OpenSSL, and the
/// bundled libssh2 hands OpenSSL a whole packet per call (vendor/README.md); it needs the least
/// CPU per byte on both ends, because it has no separate MAC. AES-CTR comes next, with the
/// encrypt-then-MAC HMACs below. libssh2's own ChaCha20-Poly1305 is portable C and the slowest,
/// so it comes last of the common ones. Servers without these fall back down the list.
pub(super) const CIPHER_ORDER: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
    "chacha20-poly1305@openssh.com",
    "aes192-ctr",
];

/// MACs for the CTR ciphers: encrypt-then-MAC first (as OpenSSH prefers); libssh2's own
/// default puts the older MAC-then-encrypt forms first. The bundled libssh2 is built without
/// the SHA-1 MACs, so a server that offers nothing newer (OpenSSH before 5.9) is not reachable.
pub(super) const MAC_ORDER: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
];

/// The error for a host key that is not trusted: changed, revoked, or unknown.
fn host_key_error(cfg: &SshConfig, key: &HostKey, status: &HostKeyStatus) -> TransportError {
    let (host, port, key_type, fingerprint, known_hosts) = (
        cfg.host.clone(),
        cfg.port,
        key.key_type().to_string(),
        key.fingerprint_sha256(),
        cfg.known_hosts.clone(),
    );
    match status {
        HostKeyStatus::Changed => TransportError::HostKeyChanged {
            host,
            port,
            key_type,
            fingerprint,
            known_hosts,
        },
        HostKeyStatus::Revoked => TransportError::HostKeyRevoked {
            host,
            port,
            key_type,
            fingerprint,
            known_hosts,
        },
        _ => TransportError::HostKeyUnknown {
            host,
            port,
            key_type,
            fingerprint,
            known_hosts,
        },
    }
}

/// Try every identity the agent holds; `Session::userauth_agent` only tries the first.
pub(super) fn agent_auth(sess: &Session, user: &str) -> Result<(), ssh2::Error> {
    let mut agent = sess.agent()?;
    agent.connect()?;
    agent.list_identities()?;
    let identities = agent.identities()?;
    let mut last = ssh2::Error::new(
        ErrorCode::Session(LIBSSH2_ERROR_AUTHENTICATION_FAILED),
        "the SSH agent holds no keys",
    );
    for identity in &identities {
        match agent.userauth(user, identity) {
            Ok(()) => {
                let _ = agent.disconnect();
                return Ok(());
            }
            Err(e) if is_connection_error(&e) => return Err(e),
            Err(e) => last = e,
        }
    }
    let _ = agent.disconnect();
    Err(last)
}

/// Sets our cipher and MAC order (see [`CIPHER_ORDER`]), keeping only what this libssh2
/// supports; anything else stays at libssh2's defaults.
pub(super) fn set_algorithm_preference(sess: &Session) {
    for (method, order) in [
        (MethodType::CryptCs, CIPHER_ORDER),
        (MethodType::CryptSc, CIPHER_ORDER),
        (MethodType::MacCs, MAC_ORDER),
        (MethodType::MacSc, MAC_ORDER),
    ] {
        let Ok(supported) = sess.supported_algs(method) else {
            continue;
        };
        let list: Vec<&str> = order
            .iter()
            .copied()
            .filter(|a| supported.contains(a))
            .collect();
        if !list.is_empty() {
            if let Err(e) = sess.method_pref(method, &list.join(",")) {
                tracing::debug!(error = %e, "cannot set algorithm preference");
            }
        }
    }
}

/// Latency and dead-peer detection on the raw socket.
pub(super) fn tune_socket(tcp: &TcpStream) {
    // Without this every small request waits ~40 ms for the delayed ACK of the previous one.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let fd = tcp.as_raw_fd();
        let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
            // SAFETY: setsockopt with a pointer to a live c_int of the size passed.
            unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        };
        set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 30);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 6);
        // Data unacknowledged for two minutes means the peer is gone: fail instead of waiting
        // for the kernel's ~15 minutes of retransmissions.
        set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 120_000);
    }
}
