//! `runner serve`: the live page and its JSON, over real HTTP, and in a real browser.
//!
//! The HTTP tests talk to the real binary on loopback with a plain HTTP/1.1 client. The browser
//! test drives Debian's headless Chromium over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: no port, no extra crate) while a run goes on against a real sshd:
//! the page is loaded once, before the run, and every later check reads the same document, so
//! what it sees can only have come from the live stream. Waiting is always on a condition (a
//! DOM observer in the page, a line on stdout), never for a while.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::Sshd;
use crate::common_cli::runner;
use base64::Engine;
use serde_json::{json, Value};

mod access;
mod api;
mod browser;

/// Upper bound for any wait; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(90);

fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("runner-serve-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A cutover on this machine (local transport): `prep` succeeds on two targets, `copy` fails,
/// `switch` is left pending.
fn local_cutover(dir: &Path) -> PathBuf {
    let path = dir.join("cutover.yaml");
    fs::write(
        &path,
        "name: Acme file server\nwindow:\n  timezone: Europe/Berlin\n  business_hours:\n    - { days: mon-fri, from: \"07:00\", to: \"19:00\" }\n\
         targets:\n  here:\n    transport: local\n  there:\n    transport: local\n\
         steps:\n  - id: prep\n    on: [here, there]\n    run: 'echo preparing'\n    estimate: 5m\n\
         \x20 - id: copy\n    on: here\n    run: 'echo copying; exit 3'\n    estimate: 1h\n\
         \x20 - id: switch\n    on: here\n    run: 'echo switching'\n    estimate: 30m\n",
    )
    .expect("write the playbook");
    path
}

/// A running `runner serve`, stopped on drop.
struct Serve {
    child: Child,
    addr: String,
    /// What it printed before the address (a generated token).
    preamble: Vec<String>,
}

impl Serve {
    fn start(args: &[&str], dir: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("serve")
            .args(args)
            .current_dir(dir)
            .env_remove("RUNNER_NOW")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start runner serve");
        let stdout = child.stdout.take().expect("serve's stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut preamble = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("runner serve printed no address ({e}); before: {preamble:?}");
                }
            };
            if let Some(rest) = line.strip_prefix("serving on http://") {
                let addr = rest.trim_end_matches('/').to_owned();
                return Serve {
                    child,
                    addr,
                    preamble,
                };
            }
            preamble.push(line);
        }
    }

    fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the address")
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        http_get(&self.addr, path, headers)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 GET with `Connection: close`.
fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to runner serve");
    s.set_read_timeout(Some(PATIENCE)).expect("set a timeout");
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or(addr, |(_, v)| *v);
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the reply");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete reply");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
