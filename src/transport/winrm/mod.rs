//! Steps on Windows targets over WinRM (WS-Management, the WinRS cmd shell; MS-WSMV).
//!
//! Every exec gets its own shell: Create, Command, Receive until Done, Signal terminate,
//! Delete. A shell per command costs two round trips but means no shell outlives a step, even
//! when the runner is killed between steps; the Delete runs on every path out of an exec.
//!
//! Files (uploads and scripts too long for a command line) travel on the stdin of one
//! PowerShell process, as base64 lines; the same process writes the file, then reports its
//! length and a SHA-256 computed with .NET's `SHA256` class (present since PowerShell 2.0,
//! unlike `Get-FileHash`), which is compared with the local hash.

pub mod auth;
pub mod clixml;
pub mod encryption;
pub mod http;
pub mod ntlm;
pub mod response;
pub mod soap;

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

pub use auth::Credentials;
pub use http::{parse_cert_sha256, HttpConfig, HttpError, TlsTrust};
pub use response::{Fault, ParseError, Response};

use super::shell::{self, ps_quote};
use super::{
    hex, random_token, upload_mismatch, Announce, CommandExit, Control, FileDigest, Identity,
    Orphan, OrphanStop, Shell, Stream, Transport, TransportError, ORPHAN_REASON,
};
use crate::secret::Secret;
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

/// A request's outcome as the exec logic needs to tell them apart.
enum Failure {
    Fault(Box<Fault>),
    /// The wait was abandoned because of the timeout or cancel.
    Stopped,
    Err(TransportError),
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        Failure::Err(e)
    }
}

/// Longest command line sent as is; cmd.exe stops at 8191 characters.
const CMD_LINE_LIMIT: usize = 8000;
/// A request other than Receive that takes longer than this has a dead peer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Extra wait on top of OperationTimeout for a Receive (network and server delay).
const RECEIVE_GRACE: Duration = Duration::from_secs(30);
/// Raw bytes per stdin line of an upload: one Send each, well under the envelope limit.
const UPLOAD_LINE: usize = soap::SEND_CHUNK / 4 * 3 - 3;
/// The prefix of the line the upload script prints when the file is written.
const UPLOAD_REPORT: &str = "runner-upload ";
/// Exit code of the upload script when the parent directory is missing.
const UPLOAD_NO_PARENT: i64 = 3;

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
                message,
            },
            HttpError::Timeout(limit) => TransportError::ConnectionLost {
                target: self.describe(),
                during: during.to_string(),
                message: format!("no answer within {limit:?}"),
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

    fn client(&mut self) -> Result<&mut HttpClient, TransportError> {
        if self.http.is_none() {
            #[allow(unused_mut)]
            let mut client = HttpClient::new(HttpConfig {
                host: self.cfg.host.clone(),
                port: self.cfg.port,
                tls: self.cfg.tls.clone(),
                connect_timeout: self.cfg.connect_timeout,
            })
            .map_err(|e| self.wrap("starting", WinrmError::Http(e)))?;
            #[cfg(unix)]
            if !self.hops.is_empty() {
                let (hops, host, port, timeout, target) = (
                    self.hops.clone(),
                    self.cfg.host.clone(),
                    self.cfg.port,
                    self.cfg.connect_timeout,
                    self.describe(),
                );
                client.set_dialer(http::Dialer(std::sync::Arc::new(move || {
                    super::ssh::open_tunnel(&hops, &host, port, timeout, &target).map_err(|e| {
                        io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string())
                    })
                })));
            }
            self.http = Some(client);
        }
        match self.http.as_mut() {
            Some(c) => Ok(c),
            None => Err(TransportError::ConnectionLost {
                target: self.cfg.name.clone(),
                during: "starting".into(),
                message: "no HTTP client".into(),
            }),
        }
    }

    /// One request and its reply. `stop` is consulted while waiting (Receive only).
    fn call(
        &mut self,
        body: String,
        during: &str,
        limit: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Response, Failure> {
        let mut resp = self.exchange(body.as_bytes(), during, limit, stop)?;
        if resp.status == 401 && self.ntlm_session_lost() {
            // The server closed the authenticated connection between our handshake and this
            // request, which then went out on a fresh, unauthenticated one and was refused
            // unread. Authenticate again and send it once more.
            tracing::info!(target = %self.describe(), "NTLM connection replaced; authenticating again");
            resp = self.exchange(body.as_bytes(), during, limit, stop)?;
        }
        if resp.status == 401 {
            self.ntlm = None;
            return Err(Failure::Err(
                self.unauthorized("the server answered 401 Unauthorized"),
            ));
        }
        let parsed = response::parse(&resp.body);
        match (resp.status, parsed) {
            (200, Ok(r)) => match r.fault {
                Some(f) => Err(Failure::Fault(Box::new(f))),
                None => Ok(r),
            },
            (_, Ok(Response { fault: Some(f), .. })) => Err(Failure::Fault(Box::new(f))),
            (200, Err(e)) => Err(Failure::Err(self.wrap(during, WinrmError::Parse(e)))),
            (status, _) => {
                let hint = match status {
                    500 if self.cfg.tls.is_none() => "on plain HTTP this is what Windows answers when it requires message encryption (AllowUnencrypted=false, the default): use `https: true`, or allow unencrypted traffic on the server (winrm set winrm/config/service @{AllowUnencrypted=\"true\"}) only on a trusted network",
                    413 => "the request was larger than the target accepts (MaxEnvelopeSizekb); report this",
                    404 => "nothing answers at /wsman on that port: check that it is the WinRM listener (winrm enumerate winrm/config/listener)",
                    _ => "the server did not answer like WinRM; check the port and that the WinRM service runs",
                };
                let body: String = String::from_utf8_lossy(&resp.body)
                    .chars()
                    .take(200)
                    .collect();
                Err(Failure::Err(self.wrap(
                    during,
                    WinrmError::Status {
                        status,
                        body: body.trim().to_string(),
                        hint,
                    },
                )))
            }
        }
    }

    /// Sends one SOAP body (sealed when NTLM runs over plain HTTP) and returns the reply with
    /// its body unsealed.
    fn exchange(
        &mut self,
        soap: &[u8],
        during: &str,
        limit: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<http::HttpResponse, Failure> {
        let sealed = self.ntlm_ready(during)?;
        let (headers, payload) = if sealed {
            let Some((_, session)) = self.ntlm.as_mut() else {
                return Err(Failure::Err(self.unauthorized("no NTLM session")));
            };
            (
                vec![("content-type", encryption::CONTENT_TYPE.to_string())],
                encryption::wrap(session, soap),
            )
        } else {
            let mut h = vec![(
                "content-type",
                "application/soap+xml;charset=UTF-8".to_string(),
            )];
            if let Some(a) = self.cfg.credentials.authorization() {
                h.push(("authorization", a));
            }
            (h, soap.to_vec())
        };
        let posted = self.client()?.post(&headers, payload, limit, stop);
        let mut resp = match posted {
            Ok(r) => r,
            Err(HttpError::Stopped) => return Err(Failure::Stopped),
            Err(e) => return Err(Failure::Err(self.http_err(during, e))),
        };
        let is_sealed = resp
            .content_type
            .as_deref()
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/encrypted"));
        if sealed && is_sealed {
            let Some((_, session)) = self.ntlm.as_mut() else {
                return Err(Failure::Err(self.unauthorized("no NTLM session")));
            };
            match encryption::unwrap(session, &resp.body) {
                Ok(plain) => resp.body = plain,
                Err(e) => {
                    // The RC4 streams are out of step now: this connection is done.
                    self.ntlm = None;
                    if let Some(c) = self.http.as_mut() {
                        c.disconnect();
                    }
                    return Err(Failure::Err(self.wrap(during, WinrmError::Ntlm(e))));
                }
            }
        }
        Ok(resp)
    }

    /// True if NTLM's session belonged to an earlier connection than the current one.
    fn ntlm_session_lost(&self) -> bool {
        let current = self.http.as_ref().map(HttpClient::generation);
        matches!(self.cfg.credentials, Credentials::Ntlm { .. })
            && self.ntlm.as_ref().map(|(g, _)| *g) != current
    }

    /// For NTLM: authenticates the current connection if it is not yet. Returns whether
    /// bodies must be sealed (NTLM over plain HTTP).
    fn ntlm_ready(&mut self, during: &str) -> Result<bool, Failure> {
        let Credentials::Ntlm { user, password } = self.cfg.credentials.clone() else {
            return Ok(false);
        };
        let sealed = self.cfg.tls.is_none();
        self.client()?
            .connect()
            .map_err(|e| Failure::Err(self.http_err(during, e)))?;
        let generation = self.http.as_ref().map(HttpClient::generation).unwrap_or(0);
        if self.ntlm.as_ref().is_some_and(|(g, _)| *g == generation) {
            return Ok(sealed);
        }
        self.ntlm = None;
        let b64 = base64::engine::general_purpose::STANDARD;
        let negotiate = ntlm::negotiate_message();
        let first = self.auth_post(&format!("Negotiate {}", b64.encode(&negotiate)), during)?;
        let token = first
            .www_authenticate
            .iter()
            .find_map(|h| {
                let (scheme, token) = h.trim().split_once(' ')?;
                (scheme.eq_ignore_ascii_case("Negotiate") || scheme.eq_ignore_ascii_case("NTLM"))
                    .then(|| token.trim().to_string())
            })
            .and_then(|t| b64.decode(t).ok());
        let Some(challenge) = token.filter(|_| first.status == 401) else {
            return Err(Failure::Err(self.unauthorized(&format!(
                "the server did not offer an NTLM challenge (HTTP {}; it offers: {})",
                first.status,
                first.www_authenticate.join(", ")
            ))));
        };
        let mut client_challenge = [0u8; 8];
        client_challenge.copy_from_slice(&random_bytes()[..8]);
        let (auth, session) = ntlm::authenticate(
            &user,
            &password,
            &negotiate,
            &challenge,
            client_challenge,
            random_bytes(),
        )
        .map_err(|e| Failure::Err(self.wrap("authenticating", WinrmError::Ntlm(e))))?;
        let second = self.auth_post(&format!("Negotiate {}", b64.encode(&auth)), during)?;
        let now = self.http.as_ref().map(HttpClient::generation).unwrap_or(0);
        if now != generation {
            return Err(Failure::Err(TransportError::ConnectionLost {
                target: self.describe(),
                during: "authenticating".into(),
                message: "the server closed the connection during the NTLM handshake".into(),
            }));
        }
        if second.status != 200 {
            return Err(Failure::Err(self.unauthorized(&format!(
                "the server refused the NTLM credentials (HTTP {})",
                second.status
            ))));
        }
        self.ntlm = Some((generation, session));
        Ok(sealed)
    }

    /// An empty POST carrying an NTLM handshake message.
    fn auth_post(
        &mut self,
        authorization: &str,
        during: &str,
    ) -> Result<http::HttpResponse, Failure> {
        let headers = [
            ("authorization", authorization.to_string()),
            ("content-type", encryption::CONTENT_TYPE.to_string()),
        ];
        self.client()?
            .post(&headers, Vec::new(), REQUEST_TIMEOUT, &|| false)
            .map_err(|e| Failure::Err(self.http_err(during, e)))
    }

    fn unauthorized(&self, message: &str) -> TransportError {
        let hint = match self.cfg.credentials {
            Credentials::Basic { .. } => "check the user name and password; also that the WinRM service accepts this authentication (Basic is off by default: winrm set winrm/config/service/auth @{Basic=\"true\"}), and for a local account that it is not blocked by LocalAccountTokenFilterPolicy",
            Credentials::Ntlm { .. } => "check the user name (DOMAIN\\user for a domain account) and password; for a local account other than Administrator, remote administration needs LocalAccountTokenFilterPolicy=1 on the target",
        };
        TransportError::Auth {
            target: self.describe(),
            user: self.cfg.credentials.user().to_string(),
            method: self.cfg.credentials.method(),
            message: message.to_string(),
            hint,
        }
    }

    /// A request outside the Receive loop: faults are errors.
    fn simple(&mut self, body: String, during: &str) -> Result<Response, TransportError> {
        match self.call(body, during, REQUEST_TIMEOUT, &|| false) {
            Ok(r) => Ok(r),
            Err(Failure::Fault(fault)) => Err(self.wrap(during, WinrmError::Fault { fault })),
            Err(Failure::Stopped) => Err(TransportError::ConnectionLost {
                target: self.describe(),
                during: during.to_string(),
                message: "stopped".into(),
            }),
            Err(Failure::Err(e)) => Err(e),
        }
    }

    fn create_shell(&mut self, env: &[(String, Secret)]) -> Result<String, TransportError> {
        let body = soap::create_shell(&self.ep, &soap::message_id(), env);
        let r = match self.simple(body, "opening a shell") {
            // Nothing runs in a new shell yet, so one retry on a fresh connection is safe
            // (at worst an empty shell idles out on the target).
            Err(e) if e.is_connection_lost() => {
                tracing::info!(target = %self.describe(), error = %e, "WinRM connection lost while opening a shell; retrying once");
                let body = soap::create_shell(&self.ep, &soap::message_id(), env);
                self.simple(body, "opening a shell")?
            }
            other => other?,
        };
        match r.shell_id {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(self.wrap("opening a shell", WinrmError::Missing("a ShellId"))),
        }
    }

    fn delete_shell(&mut self, shell_id: &str) -> Result<(), TransportError> {
        let body = soap::delete_shell(&self.ep, &soap::message_id(), shell_id);
        self.simple(body, "closing the shell").map(|_| ())
    }

    fn terminate(&mut self, shell_id: &str, command_id: &str) -> Result<(), TransportError> {
        let body = soap::signal(
            &self.ep,
            &soap::message_id(),
            shell_id,
            command_id,
            soap::SIGNAL_TERMINATE,
        );
        self.simple(body, "stopping the command").map(|_| ())
    }

    /// Run `line` in a fresh shell, feeding `stdin` if given, streaming output. The shell is
    /// deleted on every path.
    fn run_line(
        &mut self,
        line: &str,
        stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.run_line_announced(line, stdin, ctl, None, out)
    }

    /// `run_line`, handing the shell to `announce` (when given) before the command is sent:
    /// deleting that shell stops whatever runs in it.
    fn run_line_announced(
        &mut self,
        line: &str,
        stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
        ctl: &Control,
        announce: Option<Announce<'_>>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        self.orphan = None;
        self.connect()?;
        let shell_id = self.create_shell(&ctl.env)?;
        if let Some(announce) = announce {
            let who = Orphan::WinrmShell {
                shell_id: shell_id.clone(),
            };
            if let Err(message) = announce(&who) {
                if let Err(e) = self.delete_shell(&shell_id) {
                    tracing::warn!(target = %self.describe(), shell = %shell_id, error = %e, "could not delete an unused WinRM shell; it stays open on the target until its idle timeout");
                }
                return Err(TransportError::NotStarted {
                    target: self.describe(),
                    message,
                });
            }
        }
        // A step's `stdin`: its value and a newline, then the end of input.
        let mut secret_input = ctl
            .stdin
            .as_ref()
            .map(|v| Some(Secret::new(format!("{}\r\n", v.expose()))));
        let mut feed_secret = || -> Result<Option<Vec<u8>>, TransportError> {
            Ok(secret_input
                .as_mut()
                .and_then(Option::take)
                .map(|s| s.expose().as_bytes().to_vec()))
        };
        type Feed<'f> = &'f mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>;
        let mut given = stdin;
        let stdin: Option<Feed<'_>> = match given.as_mut() {
            Some(feed) => Some(&mut **feed),
            None if ctl.stdin.is_some() => Some(&mut feed_secret),
            None => None,
        };
        let result = self.run_in_shell(&shell_id, line, stdin, ctl, out);
        let deleted = self.delete_shell(&shell_id);
        match (result, deleted) {
            (Ok((exit, signalled)), Err(e)) => {
                if matches!(exit, CommandExit::TimedOut | CommandExit::Cancelled) && !signalled {
                    let reason = if exit == CommandExit::Cancelled {
                        "was cancelled"
                    } else {
                        "timed out"
                    };
                    self.orphan = Some(Orphan::WinrmShell {
                        shell_id: shell_id.clone(),
                    });
                    return Err(TransportError::KillFailed {
                        target: self.describe(),
                        reason,
                        message: format!("neither Signal terminate nor deleting the shell {shell_id} worked: {e}"),
                    });
                }
                tracing::warn!(target = %self.describe(), shell = %shell_id, error = %e, "could not delete the WinRM shell; it stays open on the target until its idle timeout");
                Ok(exit)
            }
            (Ok((exit, _)), Ok(())) => Ok(exit),
            (Err(e), Err(d)) => {
                tracing::warn!(target = %self.describe(), shell = %shell_id, error = %d, "could not delete the WinRM shell after an error; it stays open on the target until its idle timeout");
                if e.is_connection_lost() {
                    // The command in it may still run: the caller deletes the shell later.
                    self.orphan = Some(Orphan::WinrmShell {
                        shell_id: shell_id.clone(),
                    });
                }
                Err(e)
            }
            (Err(e), Ok(())) => Err(e),
        }
    }

    /// Returns the exit and, for a stopped command, whether Signal terminate was accepted.
    fn run_in_shell(
        &mut self,
        shell_id: &str,
        line: &str,
        mut stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<(CommandExit, bool), TransportError> {
        const DURING: &str = "running a command (it may have run partly or fully)";
        let started = Instant::now();
        let body = soap::command(
            &self.ep,
            &soap::message_id(),
            shell_id,
            line,
            stdin.is_some(),
        );
        let r = self.simple(body, "starting a command (it may or may not have started)")?;
        let Some(command_id) = r.command_id.filter(|c| !c.is_empty()) else {
            return Err(self.wrap("starting a command", WinrmError::Missing("a CommandId")));
        };

        if let Some(feed) = stdin.as_mut() {
            loop {
                if ctl.is_cancelled() || ctl.timeout.is_some_and(|t| started.elapsed() >= t) {
                    break;
                }
                let next = feed()?;
                let (data, end) = match next {
                    Some(d) => (d, false),
                    None => (Vec::new(), true),
                };
                let body = soap::send(
                    &self.ep,
                    &soap::message_id(),
                    shell_id,
                    &command_id,
                    &data,
                    end,
                );
                match self.call(body, DURING, REQUEST_TIMEOUT, &|| false) {
                    Ok(_) => {}
                    // The command ended early (e.g. the upload's directory is missing):
                    // its output and exit code tell why.
                    Err(Failure::Fault(f)) => {
                        tracing::debug!(target = %self.describe(), fault = %f, "stdin refused; reading the command's result");
                        break;
                    }
                    Err(Failure::Stopped) => break,
                    Err(Failure::Err(e)) => return Err(e),
                }
                if end {
                    break;
                }
            }
        }

        let mut joiners = [Utf8Joiner::default(), Utf8Joiner::default()];
        // Only PowerShell writes CLIXML; anything else's stderr passes untouched.
        let mut clixml = line
            .starts_with("powershell.exe")
            .then(clixml::StderrFilter::default);
        let timeout = ctl.timeout;
        let receive_limit = self.cfg.operation_timeout + RECEIVE_GRACE;
        let mut stopped: Option<CommandExit> = None;
        let mut exit: Option<CommandExit> = None;
        while exit.is_none() && stopped.is_none() {
            if ctl.is_cancelled() {
                stopped = Some(CommandExit::Cancelled);
                break;
            }
            if timeout.is_some_and(|t| started.elapsed() >= t) {
                stopped = Some(CommandExit::TimedOut);
                break;
            }
            let body = soap::receive(&self.ep, &soap::message_id(), shell_id, &command_id);
            let stop = || ctl.is_cancelled() || timeout.is_some_and(|t| started.elapsed() >= t);
            match self.call(body, DURING, receive_limit, &stop) {
                Ok(r) => {
                    for chunk in &r.chunks {
                        if chunk
                            .command_id
                            .as_deref()
                            .is_some_and(|c| !c.eq_ignore_ascii_case(&command_id))
                        {
                            continue;
                        }
                        let j = match chunk.stream {
                            Stream::Stdout => &mut joiners[0],
                            Stream::Stderr => &mut joiners[1],
                        };
                        let mut ready = j.push(&chunk.data);
                        if let (Stream::Stderr, Some(f)) = (chunk.stream, clixml.as_mut()) {
                            ready = f.feed(&ready);
                        }
                        if !ready.is_empty() {
                            out(chunk.stream, &ready);
                        }
                    }
                    if r.done == Some(true) {
                        match r.exit_code {
                            Some(code) => exit = Some(CommandExit::Code(code)),
                            None => {
                                return Err(self.wrap(DURING, WinrmError::Missing("an ExitCode")))
                            }
                        }
                    }
                }
                Err(Failure::Fault(f)) if f.is_timed_out() => {}
                Err(Failure::Fault(fault)) => {
                    return Err(self.wrap(DURING, WinrmError::Fault { fault }))
                }
                Err(Failure::Stopped) => {
                    stopped = Some(if ctl.is_cancelled() {
                        CommandExit::Cancelled
                    } else {
                        CommandExit::TimedOut
                    });
                }
                Err(Failure::Err(e)) => return Err(e),
            }
        }
        for (j, stream) in joiners.iter_mut().zip([Stream::Stdout, Stream::Stderr]) {
            let mut rest = j.finish();
            if let (Stream::Stderr, Some(f)) = (stream, clixml.as_mut()) {
                rest = f.feed(&rest);
                rest.extend(f.finish());
            }
            if !rest.is_empty() {
                out(stream, &rest);
            }
        }
        // MS-WSMV 3.1.4.14: terminate after Done as well, so the server frees the command.
        let signalled = self.terminate(shell_id, &command_id);
        match (stopped, exit) {
            (Some(s), _) => {
                if let Err(e) = &signalled {
                    tracing::warn!(target = %self.describe(), error = %e, "Signal terminate failed; deleting the shell to stop the command");
                }
                Ok((s, signalled.is_ok()))
            }
            (None, Some(e)) => {
                if let Err(err) = signalled {
                    tracing::debug!(target = %self.describe(), error = %err, "Signal after Done failed");
                }
                Ok((e, true))
            }
            (None, None) => Err(self.wrap(DURING, WinrmError::Missing("a command state"))),
        }
    }

    /// Run a short helper command and collect its output.
    fn capture(
        &mut self,
        line: &str,
        stdin: Option<&mut dyn FnMut() -> Result<Option<Vec<u8>>, TransportError>>,
    ) -> Result<(CommandExit, String, String), TransportError> {
        let ctl = Control::new(None);
        super::capture(|out| self.run_line(line, stdin, &ctl, out))
    }

    fn temp_dir(&mut self) -> Result<String, TransportError> {
        if let Some(t) = &self.temp_dir {
            return Ok(t.clone());
        }
        let (exit, stdout, stderr) = self.capture("echo %TEMP%", None)?;
        let dir = stdout.trim().trim_end_matches('\\').to_string();
        if exit != CommandExit::Code(0) || dir.is_empty() || dir.contains('%') {
            return Err(TransportError::ShellUnavailable {
                target: self.describe(),
                shell: Shell::Cmd,
                message: format!(
                    "could not find the temporary directory ({exit:?}): {}",
                    stderr.trim()
                ),
            });
        }
        self.temp_dir = Some(dir.clone());
        Ok(dir)
    }

    /// Write `input` to `dest` on the target through PowerShell's stdin and verify it.
    /// Sends `input` to `dest` and verifies it there: against `expected` (an upload's reviewed
    /// content) or else against what was sent (a temporary script, hashed while sending).
    fn write_file(
        &mut self,
        input: &mut dyn Read,
        what: &Path,
        expected: Option<&FileDigest>,
        dest: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TransportError> {
        let target = self.describe();
        let upload_err = |message: String| TransportError::Upload {
            target: target.clone(),
            dest: dest.to_string(),
            message,
        };
        if dest.is_empty() || dest.contains(['\0', '\r', '\n']) {
            return Err(upload_err(
                "the destination path is empty or contains a NUL or line break".into(),
            ));
        }
        let line = shell::command_line(Shell::PowerShell, &upload_script(dest, expected));
        let mut hasher = Sha256::new();
        let mut sent = 0u64;
        let mut read_error: Option<io::Error> = None;
        let mut buf = vec![0u8; UPLOAD_LINE];
        let started = Instant::now();
        let (exit, stdout, stderr) = {
            let mut feed = || -> Result<Option<Vec<u8>>, TransportError> {
                let n = match read_full(input, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        read_error = Some(e);
                        return Err(TransportError::Io {
                            context: format!("cannot read {}", what.display()),
                            source: io::Error::other("read failed"),
                        });
                    }
                };
                if n == 0 {
                    return Ok(None);
                }
                if expected.is_none() {
                    hasher.update(&buf[..n]);
                }
                sent += n as u64;
                progress(sent);
                let mut line =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &buf[..n])
                        .into_bytes();
                line.extend_from_slice(b"\r\n");
                Ok(Some(line))
            };
            self.capture(&line, Some(&mut feed))
        }
        .map_err(|e| match read_error.take() {
            Some(source) => TransportError::Io {
                context: format!("cannot read {}", what.display()),
                source,
            },
            None => e,
        })?;
        if exit == CommandExit::Code(UPLOAD_NO_PARENT) {
            let parent = match dest.rfind(['\\', '/']) {
                Some(i) => dest[..i].to_string(),
                None => dest.to_string(),
            };
            return Err(TransportError::UploadParentMissing {
                target: self.describe(),
                dest: dest.to_string(),
                parent,
            });
        }
        let report = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(UPLOAD_REPORT).map(str::to_string));
        let Some((bytes, sha)) = report.as_deref().and_then(|r| r.split_once(' ')) else {
            return Err(upload_err(format!(
                "the target did not confirm the file ({exit:?}): {}",
                stderr.trim()
            )));
        };
        let actual_bytes: u64 = bytes.trim().parse().unwrap_or(u64::MAX);
        let actual_sha256 = sha.trim().to_ascii_lowercase();
        let actual = FileDigest {
            bytes: actual_bytes,
            sha256: actual_sha256,
        };
        let verified = match expected {
            Some(expected) => exit == CommandExit::Code(0) && actual == *expected,
            None => {
                exit == CommandExit::Code(0)
                    && actual.bytes == sent
                    && actual.sha256 == hex(&hasher.finalize())
            }
        };
        if !verified {
            return Err(match expected {
                Some(expected) => upload_mismatch(self.describe(), what, dest, expected, actual),
                None => TransportError::UploadVerify {
                    target: self.describe(),
                    dest: dest.to_string(),
                    expected_bytes: sent,
                    expected_sha256: "(of the script as sent)".into(),
                    actual_bytes: actual.bytes,
                    actual_sha256: actual.sha256,
                },
            });
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(target = %self.describe(), dest, bytes = sent, kib_per_s = (sent as f64 / 1024.0 / secs).round(), "uploaded and verified");
        Ok(())
    }

    /// Put `content` in a temporary file, run it with `shell`, remove it whatever happens.
    fn run_content(
        &mut self,
        content: &[u8],
        shell: Shell,
        ctl: &Control,
        announce: Option<Announce<'_>>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let ext = match shell {
            Shell::Cmd => "cmd",
            Shell::PowerShell => "ps1",
            Shell::Sh => return Err(self.no_sh()),
        };
        let dir = self.temp_dir()?;
        let path = format!("{dir}\\runner-{}.{ext}", random_token());
        let mut reader = content;
        self.write_file(
            &mut reader,
            Path::new("the script"),
            None,
            &path,
            &mut |_| {},
        )?;
        let line = match shell {
            Shell::Cmd => format!("\"{path}\""),
            _ => format!(
                "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \"{path}\""
            ),
        };
        let result = self.run_line_announced(&line, None, ctl, announce, out);
        let removed = self.capture(&format!("del /f /q \"{path}\""), None);
        match removed {
            Ok((CommandExit::Code(0), _, _)) => {}
            Ok((exit, _, err)) => {
                tracing::warn!(target = %self.describe(), file = %path, ?exit, error = %err.trim(), "could not remove a temporary script; remove it by hand")
            }
            Err(e) => {
                tracing::warn!(target = %self.describe(), file = %path, error = %e, "could not remove a temporary script; remove it by hand")
            }
        }
        result
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

/// The PowerShell (2.0 compatible) that writes its stdin's base64 lines to a file and prints
/// `runner-upload LENGTH SHA256HEX` of what it wrote. With `expected` (an upload's reviewed
/// size and SHA-256) the file is a new one beside `dest` (same folder, unique name), moved
/// into place (`Move-Item -Force`) only when it matches, and removed otherwise, so a failed
/// upload leaves `dest` as it was; without (a fresh temporary script) it is `dest` itself.
fn upload_script(dest: &str, expected: Option<&FileDigest>) -> String {
    let (temp, check) = match expected {
        Some(e) => {
            let (dir, name) = match dest.rfind(['\\', '/']) {
                Some(i) => dest.split_at(i + 1),
                None => ("", dest),
            };
            (
                format!("{dir}.{name}.runner-{}", random_token()),
                format!("{} {}", e.bytes, e.sha256.to_ascii_uppercase()),
            )
        }
        None => (dest.to_string(), String::new()),
    };
    format!(
        "$ErrorActionPreference = 'Stop'\n\
         $p = {}\n\
         $t = {}\n\
         $e = {}\n\
         $d = [IO.Path]::GetDirectoryName($p)\n\
         if ($d -and -not [IO.Directory]::Exists($d)) {{ [Console]::Error.WriteLine('directory missing: ' + $d); exit {UPLOAD_NO_PARENT} }}\n\
         try {{\n\
         $f = [IO.File]::Open($t, [IO.FileMode]::Create, [IO.FileAccess]::Write)\n\
         try {{ foreach ($l in $input) {{ if ($l.Length -gt 0) {{ $b = [Convert]::FromBase64String($l); $f.Write($b, 0, $b.Length) }} }} }} finally {{ $f.Close() }}\n\
         $s = [IO.File]::OpenRead($t)\n\
         try {{ $h = [Security.Cryptography.SHA256]::Create().ComputeHash($s); $n = $s.Length }} finally {{ $s.Close() }}\n\
         $r = '' + $n + ' ' + [BitConverter]::ToString($h).Replace('-', '')\n\
         if ($t -ne $p) {{ if ($r -eq $e) {{ Move-Item -LiteralPath $t -Destination $p -Force }} else {{ Remove-Item -LiteralPath $t -Force }} }}\n\
         }} catch {{ if ($t -ne $p) {{ Remove-Item -LiteralPath $t -Force -ErrorAction SilentlyContinue }}; throw }}\n\
         [Console]::Out.Write('{UPLOAD_REPORT}' + $r)\n",
        ps_quote(dest),
        ps_quote(&temp),
        ps_quote(&check),
    )
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

    fn upload(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        _shell: Shell,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), TransportError> {
        let mut input = fs::File::open(src).map_err(|source| TransportError::Io {
            context: format!("cannot read {}", src.display()),
            source,
        })?;
        self.write_file(&mut input, src, Some(expected), dest, progress)
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

/// 16 fresh random bytes (NTLM's client challenge and session key).
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

fn random_bytes() -> [u8; 16] {
    let hex = format!("{}{}", random_token(), random_token());
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}

/// Holds back an incomplete UTF-8 sequence at the end of a chunk until the rest arrives, so
/// that every piece handed on decodes by itself (WinRM splits output anywhere).
#[derive(Debug, Default)]
pub struct Utf8Joiner {
    held: Vec<u8>,
}

impl Utf8Joiner {
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        let cut = complete_prefix(&self.held);
        self.held.drain(..cut).collect()
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Length of `b` without a trailing, unfinished multi-byte sequence.
fn complete_prefix(b: &[u8]) -> usize {
    let len = b.len();
    for back in 1..=len.min(3) {
        let i = len - back;
        let byte = b[i];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: the lead is further back
        }
        let need = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back < need { i } else { len };
    }
    len
}

fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joiner_keeps_characters_whole() {
        let text = "こんにちは ä €";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut j = Utf8Joiner::default();
            let mut got = j.push(&bytes[..split]);
            assert!(std::str::from_utf8(&got).is_ok(), "split {split}");
            let second = j.push(&bytes[split..]);
            assert!(std::str::from_utf8(&second).is_ok(), "split {split}");
            got.extend(second);
            got.extend(j.finish());
            assert_eq!(got, bytes);
        }
    }

    #[test]
    fn joiner_passes_invalid_bytes_on() {
        let mut j = Utf8Joiner::default();
        assert_eq!(j.push(b"a\x81"), b"a\x81");
        assert_eq!(j.push(b"\xe3"), b"");
        assert_eq!(j.finish(), b"\xe3");
    }

    #[test]
    fn upload_script_quotes_the_path() {
        let s = upload_script("C:\\it's here\\a.zip", None);
        assert!(s.contains("$p = 'C:\\it''s here\\a.zip'"), "{s}");
        assert!(s.contains("$t = 'C:\\it''s here\\a.zip'"), "{s}");
        assert!(s.contains("SHA256]::Create()"), "{s}");
        // An upload goes to a new name beside the destination, moved into place if it matches.
        let e = FileDigest {
            bytes: 3,
            sha256: "ab".repeat(32),
        };
        let s = upload_script("C:\\d\\a.zip", Some(&e));
        assert!(s.contains("$t = 'C:\\d\\.a.zip.runner-"), "{s}");
        assert!(s.contains(&format!("$e = '3 {}'", "AB".repeat(32))), "{s}");
        assert!(
            s.contains("Move-Item -LiteralPath $t -Destination $p -Force"),
            "{s}"
        );
    }

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
