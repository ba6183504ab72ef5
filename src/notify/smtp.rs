//! Mail over SMTP with lettre's blocking transport: one connection per message, STARTTLS
//! (required, not opportunistic) or TLS from the first byte through native-tls (OpenSSL here),
//! or a plain connection where the playbook says `tls: none`.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::config::{EmailSink, SmtpTls};
use super::DeliveryError;
use crate::secret::Secret;

/// Sends one plain-text message; Ok with the server's answer.
pub fn send(
    sink: &EmailSink,
    password: Option<&Secret>,
    subject: &str,
    body: &str,
    limit: Duration,
) -> Result<String, DeliveryError> {
    let mail = |e: &dyn std::fmt::Display| DeliveryError::Smtp(e.to_string());
    let from: Mailbox = sink.from.parse().map_err(|e| mail(&e))?;
    let mut message = Message::builder().from(from).subject(subject);
    for to in &sink.to {
        message = message.to(to.parse::<Mailbox>().map_err(|e| mail(&e))?);
    }
    let message = message
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| mail(&e))?;

    let smtp = &sink.smtp;
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls | SmtpTls::Tls => {
            let params = TlsParameters::new(smtp.host.clone()).map_err(|e| mail(&e))?;
            if smtp.tls == SmtpTls::Starttls {
                Tls::Required(params)
            } else {
                Tls::Wrapper(params)
            }
        }
    };
    let mut builder = SmtpTransport::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(limit));
    if let (Some(user), Some(pw)) = (&smtp.user, password) {
        builder = builder.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
    }
    let transport = builder.build();
    let response = transport.send(&message).map_err(|e| mail(&e))?;
    let text: Vec<&str> = response.message().collect();
    Ok(format!("SMTP {} {}", response.code(), text.join(" "))
        .trim_end()
        .to_string())
}
