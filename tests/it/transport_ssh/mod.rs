//! SshTransport against a real OpenSSH server on loopback. The target is this machine, so
//! tests can check remote effects (files, processes) directly.

use crate::common;
use crate::common::sshd::openssh_fingerprint;
use crate::common::transport_checks as checks;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{pseudo_random_bytes, run_sh, ssh_config, Sshd};
use runner::transport::upload_buffer::UploadBuffer;
use runner::transport::{
    scan_host_key, trust, CommandExit, Control, FileDigest, HostKey, Shell, SshAuth, SshTransport,
    Stream, Transport, TransportError, TrustOutcome,
};
use sha2::{Digest, Sha256};

mod commands;
mod connection;
mod host_keys;
mod upload;

fn transport(sshd: &Sshd) -> SshTransport {
    SshTransport::new(ssh_config(sshd))
}
