//! What a target gets when the playbook does not say: ports, the SSH keepalive interval, how
//! long a connection may take.
//!
//! A leaf: the playbook (validation, identities) and the transports both read these, so that
//! what `validate` checks and what a transport does cannot drift apart.

use std::time::Duration;

/// Port of an `ssh` target without `port:`.
pub const SSH_PORT: u16 = 22;
/// Port of a `winrm` target over HTTP without `port:`.
pub const WINRM_HTTP_PORT: u16 = 5985;
/// Port of a `winrm` target with `https: true` without `port:`.
pub const WINRM_HTTPS_PORT: u16 = 5986;

/// The WinRM port for a target without `port:`.
pub fn winrm_port(https: bool) -> u16 {
    if https {
        WINRM_HTTPS_PORT
    } else {
        WINRM_HTTP_PORT
    }
}

/// Default of the `keepalive` target key.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

/// How long to wait for a TCP connection and handshake before calling a target unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
