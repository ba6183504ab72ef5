//! POST to a webhook or an ntfy topic over hyper on a small tokio runtime: one connection per
//! request, TLS through OpenSSL against the system's roots with the host name checked.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod};

use super::config::HttpUrl;
use super::DeliveryError;

/// At most this much of a receiver's answer is read (it only goes into the journal).
const MAX_ANSWER: usize = 64 * 1024;

/// Sends one POST; Ok with the answer's status line and the start of its body when the
/// receiver answered 2xx.
pub fn post(
    rt: &tokio::runtime::Runtime,
    url: &HttpUrl,
    headers: &[(&str, String)],
    body: Vec<u8>,
    limit: Duration,
) -> Result<String, DeliveryError> {
    rt.block_on(async {
        tokio::time::timeout(limit, exchange(url, headers, body))
            .await
            .map_err(|_| DeliveryError::Timeout(limit))?
    })
}

async fn exchange(
    url: &HttpUrl,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<String, DeliveryError> {
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| DeliveryError::Connect(format!("{}: {e}", url.origin())))?;
    let _ = tcp.set_nodelay(true);
    let mut req = hyper::Request::post(url.path.as_str())
        .header(hyper::header::HOST, url.host_header())
        .header(
            hyper::header::USER_AGENT,
            concat!("runner/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::CONNECTION, "close");
    for (name, value) in headers {
        req = req.header(*name, value.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| DeliveryError::Http(format!("cannot build the request: {e}")))?;
    let resp = if url.https {
        let tls = tls_connect(tcp, &url.host).await?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    let status = resp.status();
    let answer = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = excerpt(&String::from_utf8_lossy(&answer));
    if status.is_success() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        Err(DeliveryError::Status {
            status: status.as_u16(),
            answer: text,
        })
    }
}

async fn send<T>(
    io: TokioIo<T>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, DeliveryError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| DeliveryError::Http(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "notification HTTP connection ended");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| DeliveryError::Http(e.to_string()))
}

async fn tls_connect(
    tcp: tokio::net::TcpStream,
    host: &str,
) -> Result<tokio_openssl::SslStream<tokio::net::TcpStream>, DeliveryError> {
    let err = |e: &dyn std::fmt::Display| DeliveryError::Tls(e.to_string());
    // The builder trusts the system's roots and verifies the peer; `configure` adds the host
    // name check and SNI.
    let connector = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| err(&e))?
        .build();
    let ssl = connector
        .configure()
        .map_err(|e| err(&e))?
        .into_ssl(host)
        .map_err(|e| err(&e))?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| err(&e))?;
    if let Err(e) = Pin::new(&mut stream).connect().await {
        let verify = stream.ssl().verify_result();
        return Err(if verify.as_raw() != 0 {
            DeliveryError::Tls(format!(
                "the certificate is not trusted: {}",
                verify.error_string()
            ))
        } else {
            err(&e)
        });
    }
    Ok(stream)
}

/// The start of a receiver's answer, on one line.
fn excerpt(s: &str) -> String {
    let one: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    one
}
