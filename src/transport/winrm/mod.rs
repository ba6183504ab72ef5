//! Steps on Windows targets over WinRM (WS-Management, the WinRS cmd shell; MS-WSMV).
//!
//! Every exec gets its own shell: Create, Command, Receive until Done, Signal terminate,
//! Delete. A shell per command costs two round trips but means no shell outlives a step, even
//! when the runner is killed between steps; the Delete runs on every path out of an exec.
//!
//! Files (uploads and scripts too long for a command line) travel on the stdin of one
//! PowerShell process, as base64 lines; the same process writes the file, then reports its
//! length and a SHA-256 computed with .NET's `SHA256` class (present since PowerShell 2.0,
//! unlike `Get-FileHash`), which is compared with the local hash. Files from the target
//! (`download`) come back the same way on stdout, after their length and SHA-256.

pub mod auth;
mod client;
pub mod clixml;
mod download;
pub mod encryption;
pub mod http;
pub mod ntlm;
pub mod response;
pub mod soap;
mod upload;
mod winrs;

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

pub use auth::Credentials;
pub use http::{parse_cert_sha256, HttpConfig, HttpError, TlsTrust};
pub use response::{Fault, ParseError, Response};
pub use winrs::Utf8Joiner;

use super::shell;
use super::{
    Announce, CommandExit, Control, FileDigest, Identity, Orphan, OrphanStop, Shell, Stream,
    Transport, TransportError, ORPHAN_REASON,
};
use client::Failure;
use http::HttpClient;
use soap::Endpoint;

/// How to reach one WinRM target.
#[derive(Debug, Clone)]
pub struct WinrmConfig {
    /// The target's name in the playbook, for logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// None: plain HTTP (only with `allow_unencrypted`, until NTLM encryption exists).
    pub tls: Option<TlsTrust>,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// How long the server may hold a Receive before answering "no output yet".
    pub operation_timeout: Duration,
}

/// What went wrong in WinRM terms; the cause of a [`TransportError::Winrm`].
#[derive(Debug, thiserror::Error)]
pub enum WinrmError {
    #[error("{fault}{}", fault.hint().map(|h| format!("; {h}")).unwrap_or_default())]
    Fault { fault: Box<Fault> },
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("the reply cannot be read: {0}")]
    Parse(#[from] ParseError),
    #[error("HTTP status {status}{}; {hint}", if body.is_empty() { String::new() } else { format!(" ({body})") })]
    Status {
        status: u16,
        body: String,
        hint: &'static str,
    },
    #[error("the reply lacks {0}; the server does not behave like WinRM")]
    Missing(&'static str),
    #[error("{0}")]
    Ntlm(#[from] ntlm::NtlmError),
}
/// Longest command line sent as is; cmd.exe stops at 8191 characters.
const CMD_LINE_LIMIT: usize = 8000;

/// A transport that runs steps on one Windows target over WinRM.
pub struct WinrmTransport {
    cfg: WinrmConfig,
    http: Option<HttpClient>,
    ep: Endpoint,
    /// The target's %TEMP%, asked once.
    temp_dir: Option<String>,
    /// NTLM: the connection generation it authenticated, and its sealing state.
    ntlm: Option<(u64, ntlm::Session)>,
    /// A shell the last failed command left open (see [`Transport::take_orphan`]).
    orphan: Option<Orphan>,
    /// SSH jump hosts that carry the connection (see [`WinrmTransport::through`]).
    #[cfg(unix)]
    hops: Vec<super::SshConfig>,
}

impl WinrmTransport {
    pub fn new(cfg: WinrmConfig) -> Self {
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let host = if cfg.host.contains(':') {
            format!("[{}]", cfg.host)
        } else {
            cfg.host.clone()
        };
        let ep = Endpoint {
            to: format!("{scheme}://{host}:{}/wsman", cfg.port),
            operation_timeout_secs: cfg.operation_timeout.as_secs().max(1),
        };
        WinrmTransport {
            cfg,
            http: None,
            ep,
            temp_dir: None,
            #[cfg(unix)]
            hops: Vec::new(),
            ntlm: None,
            orphan: None,
        }
    }

    pub fn config(&self) -> &WinrmConfig {
        &self.cfg
    }

    fn wrap(&self, during: &str, e: WinrmError) -> TransportError {
        TransportError::Winrm {
            target: self.describe(),
            during: during.to_string(),
            source: e,
        }
    }

    fn http_err(&self, during: &str, e: HttpError) -> TransportError {
        match e {
            HttpError::Connect(source) => TransportError::Connect {
                target: self.describe(),
                source: io::Error::new(
                    source.kind(),
                    format!("{source} (the WinRM service must listen on that port: `winrm quickconfig`, and the firewall must let it through)"),
                ),
            },
            HttpError::Lost(message) => TransportError::ConnectionLost {
                target: self.describe(),
                during: during.to_string(),
                cause: message.into(),
            },
            HttpError::Timeout(limit) => TransportError::ConnectionLost {
                target: self.describe(),
                during: during.to_string(),
                cause: format!("no answer within {limit:?}").into(),
            },
            other => self.wrap(during, WinrmError::Http(other)),
        }
    }

    /// A WinRM target reached through SSH jump hosts (`hops`, the one reached directly
    /// first): its HTTP connection is a `direct-tcpip` channel from the last one, each hop
    /// checking its own host key ([`super::ssh::open_tunnel`]). TLS, NTLM and everything above
    /// are unchanged, end to end with the Windows server.
    #[cfg(unix)]
    pub fn through(cfg: WinrmConfig, hops: Vec<super::SshConfig>) -> Self {
        let mut t = WinrmTransport::new(cfg);
        t.hops = hops;
        t
    }

    /// `exec`, with the shell of a step's command announced when `announce` is given.
    fn exec_inner(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        announce: Option<Announce<'_>>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        if script.contains('\0') {
            return Err(TransportError::InvalidScript {
                target: self.describe(),
                message: "it contains a NUL byte".into(),
            });
        }
        match shell {
            Shell::Sh => Err(self.no_sh()),
            Shell::Cmd => {
                if script.contains(['\n', '\r']) || script.len() > CMD_LINE_LIMIT {
                    // cmd.exe /c takes one line of at most 8191 characters.
                    let content = format!(
                        "@echo off\r\n{}\r\n",
                        script.replace("\r\n", "\n").replace('\n', "\r\n")
                    );
                    self.run_content(content.as_bytes(), shell, ctl, announce, out)
                } else {
                    self.run_line_announced(script, None, ctl, announce, out)
                }
            }
            Shell::PowerShell => {
                let line = shell::command_line(Shell::PowerShell, script);
                if line.len() > CMD_LINE_LIMIT {
                    self.run_content(script.as_bytes(), shell, ctl, announce, out)
                } else {
                    self.run_line_announced(&line, None, ctl, announce, out)
                }
            }
        }
    }

    fn no_sh(&self) -> TransportError {
        TransportError::ShellUnavailable {
            target: self.describe(),
            shell: Shell::Sh,
            message: "WinRM targets run Windows: use `shell: cmd` or `shell: powershell`".into(),
        }
    }
}

impl Transport for WinrmTransport {
    fn describe(&self) -> String {
        let scheme = if self.cfg.tls.is_some() {
            "winrm+https"
        } else {
            "winrm"
        };
        format!(
            "{scheme} {}@{}:{}",
            self.cfg.credentials.user(),
            self.cfg.host,
            self.cfg.port
        )
    }

    fn connect(&mut self) -> Result<(), TransportError> {
        let connected = self.client()?.connect();
        connected.map_err(|e| self.http_err("connecting", e))?;
        // NTLM authenticates the connection itself: do it now, so that wrong credentials
        // show up before any step starts.
        match self.ntlm_ready("authenticating") {
            Ok(_) => Ok(()),
            Err(Failure::Err(e)) => Err(e),
            Err(Failure::Fault(fault)) => {
                Err(self.wrap("authenticating", WinrmError::Fault { fault }))
            }
            Err(Failure::Stopped) => Ok(()),
        }
    }

    fn exec(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.exec_inner(script, shell, ctl, None, out)
    }

    fn exec_identified(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.exec_inner(script, shell, ctl, Some(id.announce), out)
    }

    fn run_script_identified(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let content = super::read_script(local)?;
        self.run_content(&content, shell, ctl, Some(id.announce), out)
    }
    fn take_orphan(&mut self) -> Option<Orphan> {
        self.orphan.take()
    }

    fn stop_orphan(&mut self, orphan: &Orphan) -> Result<OrphanStop, TransportError> {
        let Orphan::WinrmShell { shell_id } = orphan else {
            return Err(TransportError::KillFailed {
                target: self.describe(),
                reason: ORPHAN_REASON,
                message: format!("a WinRM target cannot stop {}", orphan.describe()),
            });
        };
        self.connect()?;
        match self.delete_shell(shell_id) {
            Ok(()) => Ok(OrphanStop::ShellDeleted),
            Err(e) if is_invalid_selectors(&e) => Ok(OrphanStop::Ended),
            Err(e) => Err(e),
        }
    }

    fn read_file(
        &mut self,
        path: &str,
        _shell: Shell,
        ctl: &Control,
        sink: &mut dyn std::io::Write,
    ) -> Result<FileDigest, TransportError> {
        self.read_file_inner(path, ctl, sink)
    }

    fn upload(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        _shell: Shell,
        pace: crate::transport::Pace<'_>,
    ) -> Result<(), TransportError> {
        let mut input = fs::File::open(src).map_err(|source| TransportError::Io {
            context: format!("cannot read {}", src.display()),
            source,
        })?;
        self.write_file(&mut input, src, Some(expected), dest, pace)
    }

    fn run_script(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let content = super::read_script(local)?;
        self.run_content(&content, shell, ctl, None, out)
    }
}

/// The fault WinRM answers for a shell that no longer exists.
fn is_invalid_selectors(e: &TransportError) -> bool {
    let TransportError::Winrm { source, .. } = e else {
        return false;
    };
    match source {
        WinrmError::Fault { fault } => {
            fault.wsman_code == Some(response::CODE_INVALID_SELECTORS)
                || fault.subcode.as_deref() == Some("InvalidSelectors")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_has_no_secret() {
        let t = WinrmTransport::new(WinrmConfig {
            name: "dc1".into(),
            host: "127.0.0.9".into(),
            port: 5985,
            tls: None,
            credentials: Credentials::Basic {
                user: "admin".into(),
                password: crate::transport::Secret::new("hunter2"),
            },
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(20),
        });
        assert_eq!(t.describe(), "winrm admin@127.0.0.9:5985");
        assert!(!format!("{:?}", t.config()).contains("hunter2"));
    }
}
