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

/// The secret a step echoes; it must never reach a receiver.
const DC_PASSWORD: &str = "dc-Secr3t-value";
const SMTP_PASSWORD: &str = "smtp-Secr3t-value";
/// Tue 1 Dec 2026 20:00 UTC: the window (mon-fri 07:00-18:00 UTC) is open until 07:00.
const EVENING: &str = "2026-12-01T20:00:00Z";

/// Business hours 07:00 to 18:00 UTC on weekdays.
const WEEKDAYS_UTC: &str = "window:\n  timezone: UTC\n  business_hours:\n    - { days: mon-fri, from: \"07:00\", to: \"18:00\" }\n";

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

/// A real SMTP server (Debian's aiosmtpd) on 127.0.0.1 that stores every message in a
/// Maildir, requires `AUTH` with the given user and password, and with a certificate and key
/// requires STARTTLS (before AUTH too).
const SMTP_SERVER: &str = r#"
import ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, user, password, cert, key = sys.argv[1:7]

def check(server, session, envelope, mechanism, data):
    ok = (isinstance(data, LoginPassword) and data.login.decode() == user
          and data.password.decode() == password)
    return AuthResult(success=ok)

tls = {}
if cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    tls = dict(tls_context=ctx, require_starttls=True)
c = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), authenticator=check,
               auth_required=True, auth_require_tls=bool(cert), **tls)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    /// `tls`: serve STARTTLS with a certificate for `localhost` (see [`SmtpServer::ca`]).
    fn start(tls: bool) -> SmtpServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("mail");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        if tls {
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
        }
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("address").port()
        };
        let path = |p: &Path| {
            if tls {
                p.display().to_string()
            } else {
                String::new()
            }
        };
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-W",
                "ignore::UserWarning",
                "-c",
                SMTP_SERVER,
                &port.to_string(),
            ])
            .arg(&maildir)
            .args(["runner", SMTP_PASSWORD, &path(&cert), &path(&key)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts (scripts/test.sh installs python3-aiosmtpd)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        SmtpServer {
            child,
            port,
            maildir,
            dir,
        }
    }

    /// The server's self-signed certificate, for the runner's trust (`SSL_CERT_FILE`).
    fn ca(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Every stored message, as raw text.
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                out.push(std::fs::read_to_string(e.path()).expect("read a message"));
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn run_id(dir: &Path) -> String {
    journal(dir)
        .runs()
        .expect("runs")
        .last()
        .expect("a run")
        .id
        .0
        .clone()
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

#[test]
fn a_failed_step_posts_a_cloudevent_with_masked_output_to_the_webhook() {
    let hook = Receiver::start(200);
    let (dir, _) = failing_playbook(&format!(
        "  - webhook: {}\n    on: [step-failed, run-finished]",
        hook.url("/hook/acme")
    ));
    apply(dir.path(), &[]).expect_exit(1).run();

    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let run = run_id(dir.path());
    let host = host();
    let failed = &reqs[0];
    assert_eq!(
        (failed.method.as_str(), failed.path.as_str()),
        ("POST", "/hook/acme")
    );
    assert_eq!(
        failed.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    let ev = failed.json();
    let time = ev["time"].as_str().expect("time").to_string();
    assert!(
        time.starts_with("2026-12-01T20:0") && time.ends_with('Z'),
        "{time}"
    );
    assert_eq!(
        ev,
        json!({
            "specversion": "1.0",
            "id": format!("{run}.1.step-failed"),
            "source": format!("runner://{host}/acme"),
            "type": "runner.step.failed",
            "subject": "copy@box",
            "time": time,
            "datacontenttype": "application/json",
            "data": {
                "playbook": "Acme night",
                "playbook_file": "acme.yaml",
                "run_id": run,
                "host": host,
                "summary": "step `copy` failed on `box` (exit code 3)",
                "step": "copy",
                "step_title": "Copy the data",
                "target": "box",
                "exit_code": 3,
                "outcome": null,
                "business_hours_at": null,
                "next_start": null,
                "output": ["copying with ********", "disk full"],
                "next": "fix the cause, then: runner apply acme.yaml"
            }
        })
    );
    let fin = reqs[1].json();
    assert_eq!(fin["type"], "runner.run.finished");
    assert_eq!(fin["id"], format!("{run}.2.run-finished"));
    assert_eq!(fin["data"]["outcome"], "failed");
    assert_eq!(fin["data"]["exit_code"], 1);
    assert_eq!(
        fin["data"]["next"],
        "fix the cause, then: runner apply acme.yaml"
    );
    for r in &reqs {
        assert_no_secret(&r.body);
    }

    let rows = journal(dir.path())
        .notifications(None)
        .expect("notifications");
    let outcomes: Vec<(&str, &str, u32)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.outcome.as_str(), r.attempt))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("step-failed", "delivered", 1),
            ("run-finished", "delivered", 1)
        ]
    );
    assert_eq!(
        rows[0].sink,
        format!("webhook http://127.0.0.1:{}", hook.port)
    );
}

#[test]
fn ntfy_gets_a_readable_message_with_title_priority_and_tags() {
    let topic = Receiver::start(200);
    let (dir, _) = failing_playbook(&format!(
        "  - ntfy: {}\n    on: [step-failed]",
        topic.url("/acme-cutover")
    ));
    apply(dir.path(), &[]).expect_exit(1).run();
    let reqs = topic.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/acme-cutover")
    );
    assert_eq!(
        r.header("title"),
        Some("Acme night: step `copy` failed on `box` (exit code 3)")
    );
    assert_eq!(r.header("priority"), Some("high"));
    assert_eq!(r.header("tags"), Some("rotating_light,runner,step-failed"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let run = run_id(dir.path());
    let host = host();
    let time_line = r
        .body
        .lines()
        .find(|l| l.starts_with("Time:"))
        .expect("a time line")
        .to_string();
    assert_eq!(
        r.body,
        format!(
            "step `copy` failed on `box` (exit code 3)\n\n\
             Event:     step-failed\n\
             Playbook:  Acme night (acme.yaml)\n\
             Run:       {run} on {host}\n\
             Step:      copy (Copy the data)\n\
             Target:    box\n\
             Exit code: 3\n\
             {time_line}\n\
             \n\
             Last output:\n  copying with ********\n  disk full\n\
             \n\
             Next: fix the cause, then: runner apply acme.yaml\n"
        )
    );
}

#[test]
fn mail_reaches_a_real_smtp_server_with_the_same_facts_masked() {
    let smtp = SmtpServer::start(false);
    // The step shows both the target's password and the mail server's: both are the run's
    // secrets.
    let (dir, _) = failing_playbook_echoing(&format!(
        "  - email:\n      to: [consultant@example.com, ops@example.com]\n      from: runner@example.com\n      smtp: {{ host: 127.0.0.1, port: {}, tls: none, user: runner, password: {{ env: NOTIFY_SMTP_PASSWORD }} }}\n    on: [step-failed]",
        smtp.port
    ), "$NOTIFY_DC_PASSWORD and $NOTIFY_SMTP_PASSWORD");
    let out = apply(dir.path(), &[]).expect_exit(1).run();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = mails[0].replace("\r\n", "\n");
    assert_no_secret(&m);
    let (head, body) = m.split_once("\n\n").expect("headers and body");
    let head_lines: Vec<&str> = head.lines().collect();
    for want in [
        "From: runner@example.com",
        "To: consultant@example.com, ops@example.com",
        "Subject: [runner] Acme night: step `copy` failed on `box` (exit code 3)",
        "Content-Type: text/plain; charset=utf-8",
    ] {
        assert!(head_lines.contains(&want), "no `{want}` in:\n{head}");
    }
    let body = body.replace("=\n", "");
    for want in [
        "step `copy` failed on `box` (exit code 3)",
        "Step:      copy (Copy the data)",
        "Exit code: 3",
        "  copying with ******** and ********",
        "  disk full",
        "Next: fix the cause, then: runner apply acme.yaml",
    ] {
        assert!(body.contains(want), "no `{want}` in:\n{body}");
    }
    // Nor does the mail server's password reach the terminal or the run's log.
    assert_no_secret(&out.stdout);
    assert_no_secret(&out.stderr);
    for f in walk(&dir.path().join(".runner/runs")) {
        assert_no_secret(&std::fs::read_to_string(&f).unwrap_or_default());
    }
    let rows = journal(dir.path())
        .notifications(None)
        .expect("notifications");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "delivered");
    assert_eq!(
        rows[0].sink,
        "email to consultant@example.com, ops@example.com"
    );
    assert!(rows[0].detail.starts_with("SMTP 250"), "{}", rows[0].detail);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_refusing_receiver_is_journaled_and_leaves_the_exit_code_alone() {
    let hook = Receiver::start(500);
    let (dir, _) = failing_playbook(&format!(
        "  - webhook: {}\n    on: [step-failed]",
        hook.url("/hook")
    ));
    apply(dir.path(), &[])
        // The step's failure decides the exit code.
        .expect_exit(1)
        .run();
    // The first try, then the retry the end of the run brings forward.
    assert_eq!(hook.requests().len(), 2);
    let rows = journal(dir.path())
        .notifications(None)
        .expect("notifications");
    let tries: Vec<(&str, u32)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.attempt))
        .collect();
    assert_eq!(tries, [("failed", 1), ("given-up", 2)]);
    assert_eq!(
        rows[0].detail,
        "the receiver answered HTTP 500: receiver says no; next try in 30s"
    );

    let status = Run::at(dir.path())
        .args(["status", "acme.yaml", "--format", "json"])
        .env("RUNNER_NOW", EVENING)
        .expect_exit(0)
        .run();
    let v: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let n = &v["notifications"];
    assert_eq!(n.as_array().map(Vec::len), Some(1), "{n}");
    assert_eq!(n[0]["event"], "step-failed");
    assert_eq!(n[0]["outcome"], "given-up");
    assert_eq!(n[0]["tries"], 2);
    Run::at(dir.path())
        .args(["status", "acme.yaml"])
        .env("RUNNER_NOW", EVENING)
        .expect_exit(0)
        .expect_stdout_contains("Notifications (run ")
        .expect_stdout_contains(": 0 of 1 delivered")
        .run();
    Run::at(dir.path())
        .args(["report", "acme.yaml"])
        .expect_exit(0)
        .expect_stdout_contains("## Notifications")
        .expect_stdout_contains("0 of 1 delivered.")
        .run();
    Run::at(dir.path())
        .args(["report", "acme.yaml", "--format", "html"])
        .expect_exit(0)
        .expect_stdout_contains("Notifications")
        .run();
    let json_report = Run::at(dir.path())
        .args(["report", "acme.yaml", "--format", "json"])
        .expect_exit(0)
        .run();
    let r: Value = serde_json::from_str(&json_report.stdout).expect("report JSON");
    assert_eq!(r["notifications"][0]["outcome"], "given-up");
}

#[test]
fn a_dead_receiver_does_not_change_a_successful_run() {
    // Nothing listens on this port: every try fails at once.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let scene = acme(&format!(
        "  - webhook: http://127.0.0.1:{port}/hook\n    on: [run-finished]\n"
    ))
    .step(step("one", "box", "echo fine"));
    scene.write();
    apply(scene.dir(), &[]).expect_exit(0).run();
    let rows = journal(scene.dir())
        .notifications(None)
        .expect("notifications");
    let tries: Vec<(&str, u32)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.attempt))
        .collect();
    assert_eq!(tries, [("failed", 1), ("given-up", 2)]);
    assert!(
        rows[0]
            .detail
            .starts_with("cannot connect to http://127.0.0.1:"),
        "{}",
        rows[0].detail
    );
}

#[test]
fn work_that_no_longer_fits_warns_then_the_window_stop_is_notified() {
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [window-closing, night-done, run-stopped]\n",
        hook.url("/hook")
    ))
    .window(WEEKDAYS_UTC)
    .steps([
        step("short", "box", "echo short").key("estimate", "1m"),
        step("long", "box", "echo long").key("estimate", "12h"),
    ]);
    scene.write();
    apply(scene.dir(), &[]).expect_exit(3).run();
    let reqs = hook.requests();
    let types: Vec<Value> = reqs.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        types,
        [json!("runner.window.closing"), json!("runner.run.stopped")]
    );
    let closing = reqs[0].json();
    assert_eq!(
        closing["data"]["summary"],
        "the work left (2 steps, about 12h1m) no longer fits before business hours at Wed 2 Dec 2026 07:00 UTC"
    );
    assert_eq!(closing["data"]["business_hours_at"], "2026-12-02T07:00:00Z");
    let stopped = reqs[1].json();
    assert_eq!(stopped["data"]["outcome"], "stopped-window");
    assert_eq!(stopped["data"]["exit_code"], 3);
    assert_eq!(stopped["data"]["next_start"], "2026-12-02T18:00:00Z");
    assert_eq!(
        stopped["data"]["next"],
        "from Wed 2 Dec 2026 18:00 UTC: runner apply acme.yaml"
    );
}

#[test]
fn a_manual_step_without_a_terminal_asks_for_an_operator() {
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [operator-needed]\n",
        hook.url("/hook")
    ))
    .step(manual("confirm", "Ask the customer to open a file."));
    scene.write();
    apply(scene.dir(), &[]).expect_exit(5).run();
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1);
    let ev = reqs[0].json();
    assert_eq!(ev["type"], "runner.operator.needed");
    assert_eq!(
        ev["data"]["summary"],
        "manual step `confirm` waits for an operator"
    );
    assert_eq!(
        ev["data"]["output"],
        json!(["Ask the customer to open a file."])
    );
    assert_eq!(
        ev["data"]["next"],
        "carry out the instructions, then: runner mark acme.yaml confirm done && runner apply acme.yaml"
    );
}

#[test]
fn a_missing_smtp_password_is_bad_input_and_nothing_is_written() {
    let (dir, _) = failing_playbook(
        "  - email:\n      to: a@example.com\n      from: runner@example.com\n      smtp: { host: mail.example.com, user: runner, password: { env: NOTIFY_UNSET_PASSWORD } }\n    on: [step-failed]",
    );
    apply(dir.path(), &[])
        .expect_exit(2)
        .expect_stderr_contains("NOTIFY_UNSET_PASSWORD")
        .run();
    assert!(!dir.path().join(".runner").exists());
}

#[test]
fn notify_mistakes_are_reported_with_line_column_and_the_valid_choices() {
    let (dir, _) = failing_playbook(
        "  - webhook: hooks.example.com/acme\n    on: [step-failed, stepfailed, coffee]\n  - email:\n      to: not-an-address\n      from: runner@example.com\n      smtp: { host: mail.example.com, password: hunter2 }\n    on: [run-finished]",
    );
    Run::at(dir.path())
        .args(["validate", "acme.yaml"])
        .expect_exit(2)
        .expect_stderr_contains("acme.yaml:20:49")
        // A literal password is refused before anything else, and never echoed.
        .expect_stderr_contains("`password` is a literal secret")
        .expect_stderr_lacks("hunter2")
        .run();
    let fixed = std::fs::read_to_string(dir.path().join("acme.yaml"))
        .unwrap()
        .replace("password: hunter2", "user: runner, password: { env: X }");
    std::fs::write(dir.path().join("acme.yaml"), fixed).unwrap();
    let out = Run::at(dir.path())
        .args(["validate", "acme.yaml"])
        .expect_exit(2)
        .run();
    let e = &out.stderr;
    for want in [
        "acme.yaml:15:14",
        "`hooks.example.com/acme` is not a usable URL: it has no scheme (http:// or https://)",
        "acme.yaml:16:23",
        "`stepfailed` is not a notification event",
        "did you mean `step-failed`?",
        "acme.yaml:16:35",
        "`coffee` is not a notification event",
        "the events are step-failed, operator-needed, window-closing, night-done, run-finished, run-stopped",
        "acme.yaml:18:11",
        "`not-an-address` is not a mail address",
    ] {
        assert!(e.contains(want), "no `{want}` in:\n{e}");
    }
}

#[test]
fn the_plan_shows_sinks_without_secrets_and_warns_about_unencrypted_mail() {
    let (dir, _) = failing_playbook(
        "  - ntfy: https://ntfy.sh/acme-secret-topic\n    on: [step-failed, operator-needed]\n  - email:\n      to: consultant@example.com\n      from: runner@example.com\n      smtp: { host: mail.example.com, port: 25, tls: none, user: runner, password: { env: NOTIFY_SMTP_PASSWORD } }\n    on: [run-finished]",
    );
    let env = [
        ("NOTIFY_SMTP_PASSWORD", SMTP_PASSWORD),
        ("RUNNER_NOW", EVENING),
    ];
    Run::at(dir.path())
        .args(["plan", "acme.yaml"])
        .envs(&env)
        .expect_exit(0)
        .expect_stdout_contains(
            "Notifications\n  ntfy https://ntfy.sh\n      on step-failed, operator-needed\n",
        )
        .expect_stdout_contains("  email to consultant@example.com\n      from runner@example.com via mail.example.com:25 (none, user runner, password { env: NOTIFY_SMTP_PASSWORD }), on run-finished\n")
        .expect_stdout_contains("[smtp-unencrypted] notify entry 2 hands mail to mail.example.com:25 without TLS (`tls: none`): the messages and the SMTP password cross the network readably")
        .expect_stdout_lacks("acme-secret-topic")
        .expect_stdout_lacks(SMTP_PASSWORD)
        .run();
    Run::at(dir.path())
        .args(["plan", "acme.yaml", "--format", "markdown"])
        .envs(&env)
        .expect_exit(0)
        .expect_stdout_contains("## Notifications\n\n| Where | Details |")
        .expect_stdout_contains("### Mail without encryption (1)\n\n`smtp-unencrypted`: ")
        .expect_stdout_lacks("acme-secret-topic")
        .run();

    let schema = Run::at(dir.path()).args(["schema"]).expect_exit(0).run();
    let v: Value = serde_json::from_str(&schema.stdout).expect("schema JSON");
    assert!(
        v["$defs"]["RawPlaybook"]["properties"]["notify"].is_object(),
        "{}",
        schema.stdout
    );
    assert_eq!(
        v["$defs"]["RawSmtp"]["properties"]["tls"]["anyOf"][0]["$ref"],
        "#/$defs/SmtpTls"
    );
}

fn starttls_playbook(smtp: &SmtpServer) -> tempfile::TempDir {
    let (dir, _) = failing_playbook(&format!(
        "  - email:\n      to: consultant@example.com\n      from: runner@example.com\n      smtp: {{ host: localhost, port: {}, tls: starttls, user: runner, password: {{ env: NOTIFY_SMTP_PASSWORD }} }}\n    on: [step-failed]",
        smtp.port
    ));
    dir
}

#[test]
fn mail_over_starttls_logs_in_and_reaches_the_server() {
    let smtp = SmtpServer::start(true);
    let dir = starttls_playbook(&smtp);
    let ca = smtp.ca().display().to_string();
    apply(dir.path(), &[("SSL_CERT_FILE", &ca)])
        .expect_exit(1)
        .run();
    let rows = journal(dir.path())
        .notifications(None)
        .expect("notifications");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].outcome, "delivered", "{rows:#?}");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0]
        .contains("Subject: [runner] Acme night: step `copy` failed on `box` (exit code 3)"));
    assert_no_secret(&mails[0]);
}

#[test]
fn mail_to_a_server_whose_certificate_is_not_trusted_is_not_sent() {
    let smtp = SmtpServer::start(true);
    let dir = starttls_playbook(&smtp);
    apply(dir.path(), &[]).expect_exit(1).run();
    assert!(smtp.messages().is_empty());
    let rows = journal(dir.path())
        .notifications(None)
        .expect("notifications");
    let tries: Vec<(&str, u32)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.attempt))
        .collect();
    assert_eq!(tries, [("failed", 1), ("given-up", 2)], "{rows:#?}");
    assert!(
        rows[0].detail.starts_with("mail failed:"),
        "{}",
        rows[0].detail
    );
    for r in &rows {
        assert_no_secret(&r.detail);
    }
}

#[test]
fn a_run_waiting_for_the_window_says_so_while_it_waits() {
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [window-closing, night-done, run-finished]\n",
        hook.url("/hook")
    ))
    .window(&format!("{WEEKDAYS_UTC}  when_closed: wait\n"))
    .step(step("one", "box", "echo one").key("estimate", "1m"));
    // Started at noon on a Tuesday: the run waits until 18:00; Ctrl-C ends it.
    let bg = scene
        .apply()
        .env("RUNNER_NOW", "2026-12-01T12:00:00Z")
        .expect_exit(130)
        .spawn();
    let first = hook.wait_for(1);
    let ev = first[0].json();
    assert_eq!(ev["type"], "runner.window.closing");
    assert_eq!(
        ev["data"]["summary"],
        "the window is closed: the run waits; `one` may start Tue 1 Dec 2026 18:00 UTC"
    );
    assert_eq!(ev["data"]["next_start"], "2026-12-01T18:00:00Z");
    // Ctrl-C ends the wait; the run reports how it ended.
    bg.signal(libc::SIGINT);
    bg.wait();
    let all = hook.wait_for(2);
    let fin = all[1].json();
    assert_eq!(fin["type"], "runner.run.finished");
    assert_eq!(fin["data"]["outcome"], "interrupted");
    assert_eq!(fin["data"]["next"], "runner apply acme.yaml");
}

#[test]
fn a_step_left_in_doubt_asks_an_operator_to_decide() {
    use runner::journal::{AttemptKind, NewAttempt, NewRun, RunCommand};
    let hook = Receiver::start(200);
    let scene = acme(&format!(
        "  - webhook: {}\n    on: [operator-needed]\n",
        hook.url("/hook")
    ))
    .step(step("move-mailboxes", "box", "echo moving"));
    scene.write();
    // An earlier runner died while the step ran: a `running` attempt of a process that is gone.
    let j = Journal::open(&scene.journal()).expect("journal");
    let at: jiff::Timestamp = "2026-12-01T19:00:00Z".parse().unwrap();
    let run = j
        .begin_run(&NewRun {
            command: RunCommand::Apply,
            playbook_path: "acme.yaml".into(),
            playbook_sha256: "0".repeat(64),
            started_at: at,
            user: "night".into(),
            host: host(),
            pid: 999_999,
            args: vec![],
            simulated: None,
        })
        .expect("run");
    j.begin_attempt(&NewAttempt {
        run,
        step_id: "move-mailboxes".into(),
        target: "box".into(),
        kind: AttemptKind::Run,
        number: 1,
        started_at: at,
        pid: 999_999,
        host: host(),
        def_hash: "old".into(),
    })
    .expect("attempt");
    drop(j);

    apply(scene.dir(), &[]).expect_exit(1).run();
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let ev = reqs[0].json();
    assert_eq!(ev["type"], "runner.operator.needed");
    assert_eq!(ev["subject"], "move-mailboxes@box");
    assert_eq!(
        ev["data"]["summary"],
        "step `move-mailboxes` is in doubt on `box`: an operator must decide"
    );
    assert_eq!(
        ev["data"]["next"],
        "inspect the target, then: runner mark acme.yaml move-mailboxes@box done|retry|skip && runner apply acme.yaml"
    );
}
