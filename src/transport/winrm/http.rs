//! HTTP/1.1 on one connection we own (hyper's connection-level client), optionally in TLS.
//!
//! One connection, not a pool: NTLM authenticates a TCP connection rather than a request, and
//! WinRM over Basic gains nothing from more. The transport API is blocking, so each call runs
//! a small current-thread tokio runtime until the response is complete.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use openssl::hash::MessageDigest;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

/// How the server's certificate is trusted (HTTPS only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// The system's root certificates, and the host name must match.
    System,
    /// Only the CA certificates in this PEM file, and the host name must match.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 (of its DER form), whoever issued it.
    Pinned([u8; 32]),
    /// Anything. Only when the playbook says `insecure: true`.
    Insecure,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub host: String,
    pub port: u16,
    /// None for plain HTTP.
    pub tls: Option<TlsTrust>,
    pub connect_timeout: Duration,
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    /// Every `WWW-Authenticate` header (NTLM's challenge arrives in one).
    pub www_authenticate: Vec<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Connect(#[source] io::Error),
    #[error("TLS with the server failed: {message}{}", fingerprint.as_ref().map(|f| format!(" (the server presents a certificate with SHA-256 {f})")).unwrap_or_default())]
    Tls {
        message: String,
        /// The server's certificate fingerprint, colon-separated hex, when it showed one.
        fingerprint: Option<String>,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("stopped while waiting for the answer")]
    Stopped,
    #[error("the connection failed: {0}")]
    Lost(String),
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(#[source] io::Error),
}

/// How often a waiting request checks whether it should stop.
const TICK: Duration = Duration::from_millis(100);

/// Opens the connection's byte stream another way than TCP to the host: through an SSH jump
/// host's `direct-tcpip` channel ([`crate::transport::ssh::open_tunnel`]).
#[cfg(unix)]
#[derive(Clone)]
pub struct Dialer(
    pub std::sync::Arc<dyn Fn() -> io::Result<std::os::unix::net::UnixStream> + Send + Sync>,
);

#[cfg(unix)]
impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialer")
    }
}

pub struct HttpClient {
    cfg: HttpConfig,
    /// When set, connections are opened by it instead of by TCP.
    #[cfg(unix)]
    dialer: Option<Dialer>,
    rt: tokio::runtime::Runtime,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// When the connection last carried a request; see [`IDLE_REUSE`].
    last_used: Instant,
    /// Counts connections made: NTLM's authentication belongs to one of them.
    generation: u64,
}

/// A connection idle longer than this is replaced before use. Windows (HTTP.sys) closes idle
/// connections after two minutes, and a close that crosses our next request looks exactly
/// like a request that failed after being sent, which is ambiguous for a Command.
const IDLE_REUSE: Duration = Duration::from_secs(30);

impl HttpClient {
    pub fn new(cfg: HttpConfig) -> Result<Self, HttpError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HttpError::Runtime)?;
        Ok(HttpClient {
            cfg,
            #[cfg(unix)]
            dialer: None,
            rt,
            sender: None,
            last_used: Instant::now(),
            generation: 0,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
            && self.last_used.elapsed() < IDLE_REUSE
    }

    /// Which connection is current; changes with every new TCP connection.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn disconnect(&mut self) {
        // Dropping the sender makes the connection task close the socket.
        self.sender = None;
    }

    /// Opens every connection with `dialer` instead of TCP to the host.
    #[cfg(unix)]
    pub fn set_dialer(&mut self, dialer: Dialer) {
        self.dialer = Some(dialer);
    }

    pub fn connect(&mut self) -> Result<(), HttpError> {
        if self.is_connected() {
            return Ok(());
        }
        self.sender = None;
        let cfg = self.cfg.clone();
        #[cfg(unix)]
        if let Some(dial) = &self.dialer {
            let stream = (dial.0)().map_err(HttpError::Connect)?;
            stream.set_nonblocking(true).map_err(HttpError::Connect)?;
            let sender = self.rt.block_on(async {
                let stream =
                    tokio::net::UnixStream::from_std(stream).map_err(HttpError::Connect)?;
                handshake(stream, &cfg).await
            })?;
            self.sender = Some(sender);
            self.last_used = Instant::now();
            self.generation += 1;
            return Ok(());
        }
        let rt = &self.rt;
        let sender = rt.block_on(async {
            let addr = (cfg.host.as_str(), cfg.port);
            let tcp =
                tokio::time::timeout(cfg.connect_timeout, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| {
                        HttpError::Connect(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no TCP connection within {:?}", cfg.connect_timeout),
                        ))
                    })?
                    .map_err(HttpError::Connect)?;
            let _ = tcp.set_nodelay(true);
            handshake(tcp, &cfg).await
        })?;
        self.sender = Some(sender);
        self.last_used = Instant::now();
        self.generation += 1;
        Ok(())
    }

    /// POST `body` to /wsman. Gives up after `limit`, or soon after `stop()` turns true; in
    /// both cases the connection is dropped (it still carries the unanswered request).
    pub fn post(
        &mut self,
        headers: &[(&str, String)],
        body: Vec<u8>,
        limit: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<HttpResponse, HttpError> {
        self.connect()?;
        let host_header = if self.cfg.port == if self.cfg.tls.is_some() { 443 } else { 80 } {
            self.cfg.host.clone()
        } else {
            format!("{}:{}", self.cfg.host, self.cfg.port)
        };
        let mut req = hyper::Request::post("/wsman").header(hyper::header::HOST, host_header);
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::Lost(format!("cannot build the request: {e}")))?;
        let Some(sender) = self.sender.as_mut() else {
            return Err(HttpError::Lost("not connected".into()));
        };
        let result = self.rt.block_on(async {
            let exchange = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| HttpError::Lost(e.to_string()))?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| HttpError::Lost(e.to_string()))?;
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let www_authenticate = resp
                    .headers()
                    .get_all(hyper::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_string)
                    .collect();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| HttpError::Lost(e.to_string()))?
                    .to_bytes()
                    .to_vec();
                Ok::<_, HttpError>(HttpResponse {
                    status,
                    content_type,
                    www_authenticate,
                    body,
                })
            };
            let mut exchange = std::pin::pin!(exchange);
            let deadline = Instant::now() + limit;
            loop {
                match tokio::time::timeout(TICK, exchange.as_mut()).await {
                    Ok(r) => return r,
                    Err(_) if stop() => return Err(HttpError::Stopped),
                    Err(_) if Instant::now() >= deadline => return Err(HttpError::Timeout(limit)),
                    Err(_) => {}
                }
            }
        });
        self.last_used = Instant::now();
        if result.is_err() {
            self.disconnect();
        }
        result
    }
}

/// HTTP/1.1 (over TLS when configured) on an open byte stream.
async fn handshake<S>(stream: S, cfg: &HttpConfig) -> Result<SendRequest<Full<Bytes>>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match &cfg.tls {
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| HttpError::Lost(e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "WinRM HTTP connection ended");
                }
            });
            Ok(sender)
        }
        Some(trust) => {
            let tls =
                tokio::time::timeout(cfg.connect_timeout, tls_handshake(stream, &cfg.host, trust))
                    .await
                    .map_err(|_| HttpError::Tls {
                        message: format!("no TLS handshake within {:?}", cfg.connect_timeout),
                        fingerprint: None,
                    })??;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| HttpError::Lost(e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "WinRM HTTPS connection ended");
                }
            });
            Ok(sender)
        }
    }
}

async fn tls_handshake<S>(
    tcp: S,
    host: &str,
    trust: &TlsTrust,
) -> Result<tokio_openssl::SslStream<S>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tls_err = |message: String| HttpError::Tls {
        message,
        fingerprint: None,
    };
    let mut builder =
        SslConnector::builder(SslMethod::tls_client()).map_err(|e| tls_err(e.to_string()))?;
    // The leaf certificate's fingerprint, caught during verification: after a failed
    // handshake OpenSSL no longer hands out the peer certificate.
    let seen: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let verify_name = match trust {
        TlsTrust::System => true,
        TlsTrust::CaFile(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| tls_err(format!("cannot read ca_file {}: {e}", path.display())))?;
            let certs = X509::stack_from_pem(&pem).map_err(|e| {
                tls_err(format!(
                    "ca_file {} holds no PEM certificate: {e}",
                    path.display()
                ))
            })?;
            let mut store = X509StoreBuilder::new().map_err(|e| tls_err(e.to_string()))?;
            for c in certs {
                store.add_cert(c).map_err(|e| tls_err(e.to_string()))?;
            }
            builder.set_cert_store(store.build());
            true
        }
        TlsTrust::Pinned(_) | TlsTrust::Insecure => {
            // The pin is checked after the handshake, against the exact certificate.
            builder.set_verify(SslVerifyMode::NONE);
            false
        }
    };
    if verify_name {
        let seen = std::sync::Arc::clone(&seen);
        builder.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
            if ctx.error_depth() == 0 {
                if let Some(cert) = ctx.current_cert() {
                    if let Ok(d) = cert.digest(MessageDigest::sha256()) {
                        if let Ok(mut s) = seen.lock() {
                            *s = Some(colon_hex(&d));
                        }
                    }
                }
            }
            ok
        });
    }
    let connector = builder.build();
    let ssl = connector
        .configure()
        .map_err(|e| tls_err(e.to_string()))?
        .verify_hostname(verify_name)
        .into_ssl(host)
        .map_err(|e| tls_err(e.to_string()))?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| tls_err(e.to_string()))?;
    let handshake = Pin::new(&mut stream).connect().await;
    let fingerprint = stream
        .ssl()
        .peer_certificate()
        .and_then(|c| c.digest(MessageDigest::sha256()).ok())
        .map(|d| colon_hex(&d))
        .or_else(|| seen.lock().ok().and_then(|s| s.clone()));
    if let Err(e) = handshake {
        let verify = stream.ssl().verify_result();
        let message = if verify.as_raw() != 0 {
            format!("the certificate is not trusted: {}", verify.error_string())
        } else {
            e.to_string()
        };
        return Err(HttpError::Tls {
            message,
            fingerprint,
        });
    }
    if let TlsTrust::Pinned(pin) = trust {
        let expected = colon_hex(pin);
        if fingerprint.as_deref() != Some(expected.as_str()) {
            return Err(HttpError::Tls {
                message: format!("the certificate is not the pinned one (cert_sha256 {expected})"),
                fingerprint,
            });
        }
    }
    Ok(stream)
}

/// `AB:CD:...`, the form certificate viewers show.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A certificate pin is read by the playbook too: one parser, in the leaf both read.
pub use crate::digest::parse_cert_sha256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let colons = "AB:".repeat(31) + "CD";
        let parsed = parse_cert_sha256(&colons).unwrap();
        assert_eq!(parsed[0], 0xab);
        assert_eq!(parsed[31], 0xcd);
        assert_eq!(colon_hex(&parsed), colons);
        assert_eq!(parse_cert_sha256(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_cert_sha256("abc"), None);
        assert_eq!(parse_cert_sha256(&"zz".repeat(32)), None);
    }
}
