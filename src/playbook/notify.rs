//! The checked model of a playbook's `notify:` section: where to send, and on which events.

use std::fmt;

use serde::Serialize;

use crate::secret::SecretRef;

/// What a notification is about. The names are the playbook's `on:` words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    /// A step failed on a target (after its retries).
    StepFailed,
    /// A person must act: a manual step, or an in-doubt pair that needs `runner mark`.
    OperatorNeeded,
    /// The rest of the work no longer fits before business hours, or the window closed
    /// with work left.
    WindowClosing,
    /// Tonight's work is over with work left: the run stopped, or waits, for the window.
    NightDone,
    /// The run ended, whatever its outcome.
    RunFinished,
    /// The run stopped because the window closed (exit 3).
    RunStopped,
}

impl NotifyEvent {
    pub const ALL: &'static [NotifyEvent] = &[
        NotifyEvent::StepFailed,
        NotifyEvent::OperatorNeeded,
        NotifyEvent::WindowClosing,
        NotifyEvent::NightDone,
        NotifyEvent::RunFinished,
        NotifyEvent::RunStopped,
    ];

    /// The word used in the playbook and the journal.
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::StepFailed => "step-failed",
            NotifyEvent::OperatorNeeded => "operator-needed",
            NotifyEvent::WindowClosing => "window-closing",
            NotifyEvent::NightDone => "night-done",
            NotifyEvent::RunFinished => "run-finished",
            NotifyEvent::RunStopped => "run-stopped",
        }
    }

    /// The CloudEvents `type`.
    pub fn cloud_type(self) -> &'static str {
        match self {
            NotifyEvent::StepFailed => "runner.step.failed",
            NotifyEvent::OperatorNeeded => "runner.operator.needed",
            NotifyEvent::WindowClosing => "runner.window.closing",
            NotifyEvent::NightDone => "runner.night.done",
            NotifyEvent::RunFinished => "runner.run.finished",
            NotifyEvent::RunStopped => "runner.run.stopped",
        }
    }

    pub fn parse(text: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.iter().copied().find(|e| e.name() == text)
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One place notifications go, with the events it wants.
#[derive(Debug, Clone)]
pub struct Sink {
    pub kind: SinkKind,
    /// In playbook order, without duplicates.
    pub on: Vec<NotifyEvent>,
}

impl Sink {
    pub fn wants(&self, e: NotifyEvent) -> bool {
        self.on.contains(&e)
    }

    /// The SMTP password reference of a mail sink.
    pub fn smtp_password(&self) -> Option<&SecretRef> {
        match &self.kind {
            SinkKind::Email(e) => e.smtp.password.as_ref(),
            _ => None,
        }
    }

    /// How the sink is named in the journal, `status` and the report: the kind and where to,
    /// without a URL's path or query (webhook URLs often carry a token there).
    pub fn label(&self) -> String {
        match &self.kind {
            SinkKind::Webhook(u) => format!("webhook {}", u.origin()),
            SinkKind::Ntfy(u) => format!("ntfy {}", u.origin()),
            SinkKind::Email(e) => format!("email to {}", e.to.join(", ")),
        }
    }
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    /// POST of the CloudEvent as JSON.
    Webhook(HttpUrl),
    /// POST of a readable text to an ntfy topic, with Title, Priority and Tags headers.
    Ntfy(HttpUrl),
    Email(EmailSink),
}

/// An absolute http or https URL, split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As written.
    pub written: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port]/path?query` or `https://...`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        if !text.contains("://") {
            return Err("it has no scheme (http:// or https://)".into());
        }
        let uri: hyper::Uri = text
            .trim()
            .parse()
            .map_err(|e| format!("it does not parse as a URL ({e})"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(format!("the scheme `{other}` is not http or https")),
            None => return Err("it has no scheme (http:// or https://)".into()),
        };
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err("it names no host".into()),
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("credentials in the URL would be written down; use the receiver's token in the path, or a local relay".into());
        }
        let port = match uri.port_u16() {
            Some(0) => return Err("port 0 is not a port".into()),
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        Ok(HttpUrl {
            written: text.trim().to_string(),
            https,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `https://host[:port]`, without path or query.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{}", self.port)
        }
    }

    /// The value of the `Host` header.
    pub fn host_header(&self) -> String {
        self.origin()
            .split_once("://")
            .map(|(_, h)| h.to_string())
            .unwrap_or_default()
    }
}

/// Whether a host name or address is this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Mail over SMTP.
#[derive(Debug, Clone)]
pub struct EmailSink {
    /// Recipients as written (each checked to be an address).
    pub to: Vec<String>,
    pub from: String,
    pub smtp: Smtp,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    /// The effective port: as written, else 587 (starttls), 465 (tls) or 25 (none).
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<SecretRef>,
}

/// How the SMTP connection is protected.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (the default; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only for a relay on this machine, or when written on purpose (the plan
    /// warns unless the host is loopback).
    None,
}

impl SmtpTls {
    pub fn name(self) -> &'static str {
        match self {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_origin_and_path() {
        let u = HttpUrl::parse("https://hooks.example.com/acme?t=1").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.com", 443, "/acme?t=1")
        );
        assert_eq!(u.origin(), "https://hooks.example.com");
        let u = HttpUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.path.as_str(), u.origin()),
            ("/", "http://127.0.0.1:8080".to_string())
        );
        for bad in [
            "ftp://x/y",
            "hooks.example.com/acme",
            "http://",
            "http://u:p@h/x",
            "not a url",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_names_round_trip() {
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.name()), Some(*e));
        }
        assert!(is_loopback("127.0.0.5") && is_loopback("localhost") && is_loopback("::1"));
        assert!(!is_loopback("mail.example.com"));
    }
}
