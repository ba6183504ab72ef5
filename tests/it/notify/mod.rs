//! Notifications against real receivers on loopback: an HTTP server for webhooks and ntfy,
//! Debian's aiosmtpd for mail. Runs use local targets and RUNNER_NOW for the window.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};

use crate::common::run::Run;
use crate::common::scene::{manual, step, Scene};
use runner::journal::Journal;
use serde_json::{json, Value};

mod mail;
mod occasions;
mod playbook_checks;
mod receiver_failures;
mod webhooks;

/// The secret a step echoes; it must never reach a receiver.
const DC_PASSWORD: &str = "dc-Secr3t-value";

const SMTP_PASSWORD: &str = "smtp-Secr3t-value";

/// Tue 1 Dec 2026 20:00 UTC: the window (mon-fri 07:00-18:00 UTC) is open until 07:00.
const EVENING: &str = "2026-12-01T20:00:00Z";

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

/// An HTTP/1.1 receiver on 127.0.0.1 that records every request and answers `status`.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    arrived: Arc<Condvar>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let arrived: Arc<Condvar> = Arc::default();
        let (seen, signal) = (Arc::clone(&requests), Arc::clone(&arrived));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(r) = read_request(&stream) {
                    seen.lock().unwrap().push(r);
                    signal.notify_all();
                }
                let reason = if status < 300 { "OK" } else { "Refused" };
                let body = if status < 300 {
                    "ok"
                } else {
                    "receiver says no"
                };
                let _ = (&stream).write_all(
                    format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        Receiver {
            port,
            requests,
            arrived,
        }
    }

    /// Blocks until `n` requests have arrived (or fails after a minute).
    fn wait_for(&self, n: usize) -> Vec<Request> {
        let guard = self.requests.lock().unwrap();
        let (guard, timeout) = self
            .arrived
            .wait_timeout_while(guard, std::time::Duration::from_secs(60), |r| r.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} requests arrived",
            guard.len()
        );
        guard.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A playbook in a fresh directory: a step that succeeds, one that prints a secret and fails
/// with exit code 3, and one on an ssh target (whose password is the secret) that never runs.
fn failing_playbook(notify: &str) -> (tempfile::TempDir, PathBuf) {
    failing_playbook_echoing(notify, "$NOTIFY_DC_PASSWORD")
}

/// The same, with the first output line of the failing step being `copying with {echo}`.
fn failing_playbook_echoing(notify: &str, echo: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"name: Acme night
window:
  timezone: UTC
  business_hours:
    - {{ days: mon-fri, from: "07:00", to: "18:00" }}
targets:
  box:
    transport: local
  dc:
    transport: ssh
    host: 127.0.0.9
    user: admin
    password: {{ env: NOTIFY_DC_PASSWORD }}
notify:
{notify}
steps:
  - id: prepare
    on: box
    run: echo preparing
  - id: copy
    name: Copy the data
    on: box
    run: |
      echo "copying with {echo}"
      echo "disk full"
      exit 3
  - id: later
    on: dc
    run: echo never
"#
    );
    let path = dir.path().join("acme.yaml");
    std::fs::write(&path, text).expect("write the playbook");
    (dir, path)
}

/// `acme.yaml` (the playbook "Acme night") with one local target, `box`, and these `notify:`
/// entries.
fn acme(notify: &str) -> Scene {
    Scene::new("Acme night")
        .file_name("acme.yaml")
        .top(&format!("notify:\n{notify}"))
        .local("box")
}

/// `runner apply acme.yaml` in the evening, with the secrets set; `env` adds or overrides.
fn apply(dir: &Path, env: &[(&str, &str)]) -> Run {
    Run::at(dir)
        .args(["apply", "acme.yaml"])
        .env("RUNNER_NOW", EVENING)
        .env("NOTIFY_DC_PASSWORD", DC_PASSWORD)
        .env("NOTIFY_SMTP_PASSWORD", SMTP_PASSWORD)
        .envs(env)
}

fn journal(dir: &Path) -> Journal {
    Journal::open_existing(&dir.join(".runner/acme.db"))
        .expect("open the journal")
        .expect("a journal exists")
}

fn host() -> String {
    runner::journal::host_name().expect("host name")
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(DC_PASSWORD) && !text.contains(SMTP_PASSWORD),
        "a secret leaked: {text}"
    );
}
