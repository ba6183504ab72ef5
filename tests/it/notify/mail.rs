//! Mail reaches a real SMTP server with the same facts masked, logs in over STARTTLS, and is not
//! sent to a server whose certificate is not trusted.

use super::*;

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
