//! Webhooks and ntfy over HTTPS, against a real TLS receiver (Python's `http.server` behind
//! `ssl`, with a certificate for `localhost` made by `openssl` for each test): delivered when
//! the receiver's certificate is trusted (`SSL_CERT_FILE`, as OpenSSL reads it), never sent
//! when it is not, and the reason journaled.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use runner::journal::Journal;

use crate::common::run::Run;

/// Answers every POST with 200 and prints one line per request: `PATH BODY` (the body on one
/// line). Arguments: port, certificate, key.
const RECEIVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get('content-length', 0))
        body = self.rfile.read(n).decode('utf-8', 'replace').replace('\n', ' ')
        self.send_response(200)
        self.send_header('content-length', '0')
        self.end_headers()
        print(self.path, body, flush=True)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print('ready', flush=True)
srv.serve_forever()
"#;

struct Receiver {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(ok.success(), "openssl made no certificate");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", RECEIVER, &port.to_string()])
            .arg(&cert)
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(crate::common::PATIENCE)
            .expect("the receiver says it is ready");
        assert_eq!(first, "ready");
        Receiver {
            child,
            lines,
            port,
            dir,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The requests received so far, without waiting.
    fn received(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A playbook whose second step fails (exit 3), notifying `notify` on step-failed.
fn playbook(dir: &Path, notify: &str) {
    let text = format!(
        "name: Acme night\nwindow:\n  timezone: UTC\n  business_hours: []\ntargets:\n  box:\n    transport: local\nnotify:\n{notify}\nsteps:\n  - id: prepare\n    on: box\n    run: echo preparing\n  - id: copy\n    on: box\n    run: exit 3\n"
    );
    std::fs::write(dir.join("acme.yaml"), text).expect("write the playbook");
}

fn outcomes(dir: &Path) -> Vec<(String, String)> {
    Journal::open_existing(&dir.join(".runner/acme.db"))
        .expect("open the journal")
        .expect("a journal")
        .notifications(None)
        .expect("notifications")
        .into_iter()
        .map(|n| (n.outcome, n.detail))
        .collect()
}

#[test]
fn a_webhook_and_ntfy_over_https_are_delivered_to_a_trusted_receiver() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    playbook(
        dir.path(),
        &format!(
            "  - webhook: https://localhost:{p}/hook\n    on: [step-failed]\n  - ntfy: https://localhost:{p}/acme-night\n    on: [step-failed]",
            p = rx.port
        ),
    );
    let ca = rx.ca().display().to_string();
    Run::at(dir.path())
        .args(["apply", "acme.yaml"])
        .env("SSL_CERT_FILE", &ca)
        .expect_exit(1)
        .run();
    let got = outcomes(dir.path());
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got.iter().all(|(o, _)| o == "delivered"), "{got:#?}");
    let mut received = rx.received();
    received.sort();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert!(received[0].starts_with("/acme-night "), "{received:#?}");
    assert!(
        received[1].starts_with("/hook ") && received[1].contains("\"specversion\""),
        "a CloudEvent: {received:#?}"
    );
}

#[test]
fn a_webhook_to_an_untrusted_certificate_is_never_sent_and_says_why() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    playbook(
        dir.path(),
        &format!(
            "  - webhook: https://localhost:{}/hook\n    on: [step-failed]",
            rx.port
        ),
    );
    Run::at(dir.path())
        .args(["apply", "acme.yaml"])
        .expect_exit(1)
        .run();
    let got = outcomes(dir.path());
    assert!(!got.is_empty(), "tries are journaled");
    assert!(got.iter().all(|(o, _)| o != "delivered"), "{got:#?}");
    assert!(
        got.iter()
            .any(|(_, detail)| detail.contains("certificate is not trusted")),
        "{got:#?}"
    );
    assert_eq!(rx.received(), Vec::<String>::new(), "nothing reached it");
}
