//! The HTTP client of one WinRM target: the connection, NTLM authentication and sealing, one SOAP request and its reply.

use std::io;
use std::time::Duration;

use base64::Engine as _;

use super::http::{self, HttpClient};
use super::{
    encryption, ntlm, response, Credentials, Fault, HttpConfig, HttpError, Response, WinrmError,
    WinrmTransport,
};
use crate::transport::{random_token, Transport, TransportError};

/// A request's outcome as the exec logic needs to tell them apart.
pub(super) enum Failure {
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

/// A request other than Receive that takes longer than this has a dead peer.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl WinrmTransport {
    pub(super) fn client(&mut self) -> Result<&mut HttpClient, TransportError> {
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
                    crate::transport::ssh::open_tunnel(&hops, &host, port, timeout, &target)
                        .map_err(|e| {
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
                cause: "no HTTP client".into(),
            }),
        }
    }

    /// One request and its reply. `stop` is consulted while waiting (Receive only).
    pub(super) fn call(
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
    pub(super) fn ntlm_ready(&mut self, during: &str) -> Result<bool, Failure> {
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
                cause: "the server closed the connection during the NTLM handshake".into(),
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
            reason: crate::transport::AuthFailure::Refused(message.to_string()),
            hint,
        }
    }

    /// A request outside the Receive loop: faults are errors.
    pub(super) fn simple(
        &mut self,
        body: String,
        during: &str,
    ) -> Result<Response, TransportError> {
        match self.call(body, during, REQUEST_TIMEOUT, &|| false) {
            Ok(r) => Ok(r),
            Err(Failure::Fault(fault)) => Err(self.wrap(during, WinrmError::Fault { fault })),
            Err(Failure::Stopped) => Err(TransportError::ConnectionLost {
                target: self.describe(),
                during: during.to_string(),
                cause: "stopped".into(),
            }),
            Err(Failure::Err(e)) => Err(e),
        }
    }
}

/// 16 fresh random bytes (NTLM's client challenge and session key).
fn random_bytes() -> [u8; 16] {
    let hex = format!("{}{}", random_token(), random_token());
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}
