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

/// Upper bound for any wait; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(90);

/// YAML single-quoted scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

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

/// A status view without "now", which differs between any two readings (and so does the next
/// step's earliest start when that is now).
/// Without what depends on the instant each was asked: `now`, and the schedule of what is left
/// with its fit, which are computed from now.
fn without_now(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("now");
        o.remove("fit");
        if let Some(steps) = o.get_mut("schedule").and_then(Value::as_array_mut) {
            for s in steps.iter_mut().filter_map(Value::as_object_mut) {
                s.remove("start");
                s.remove("end");
            }
        }
        if let Some(next) = o.get_mut("next").and_then(Value::as_object_mut) {
            if next.get("now") == Some(&json!(true)) {
                next.remove("earliest");
            }
        }
    }
    v
}

fn status_json(pb: &Path) -> Value {
    let name = pb.file_name().expect("a file name").to_string_lossy();
    let r = runner(
        &["status", &name, "--format", "json"],
        pb.parent().expect("playbook folder"),
        &[],
    );
    assert_eq!(r.code, 0, "status: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("status prints JSON")
}

/// The files' bytes; an empty file counts as none (a reader of a WAL journal may create an
/// empty write-ahead log, which holds nothing).
fn files_bytes(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths
        .iter()
        .map(|p| fs::read(p).ok().filter(|b| !b.is_empty()))
        .collect()
}

#[test]
fn api_status_is_exactly_what_runner_status_prints_and_nothing_is_written() {
    let dir = workdir();
    let pb = local_cutover(dir.path());
    let applied = runner(&["apply", "cutover.yaml"], dir.path(), &[]);
    assert_eq!(applied.code, 1, "the copy step fails: {}", applied.stderr);
    let journal = dir.path().join(".runner/cutover.db");
    let written = [
        journal.clone(),
        dir.path().join(".runner/cutover.db-wal"),
        dir.path().join(".runner/cutover.lock"),
    ];
    // What the CLI says, read first: `status` and `report` may checkpoint the journal.
    let expected = without_now(status_json(&pb));
    let cli_report = runner(
        &["report", "cutover.yaml", "--format", "html"],
        dir.path(),
        &[],
    );
    assert_eq!(cli_report.code, 0, "{}", cli_report.stderr);
    let before = files_bytes(&written);

    let serve = Serve::start(&["cutover.yaml", "--listen", "127.0.0.1:0"], dir.path());

    let all = serve.get("/api/status", &[]);
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        all.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let all: Value = serde_json::from_str(&all.body).expect("JSON");
    let all = all.as_array().expect("one entry per cutover");
    assert_eq!(all.len(), 1);
    assert_eq!(without_now(all[0].clone()), expected);
    for which in ["1", "Acme%20file%20server", "cutover"] {
        let one = serve.get(&format!("/api/status/{which}"), &[]);
        assert_eq!(one.status, 200, "{which}: {}", one.body);
        let one: Value = serde_json::from_str(&one.body).expect("JSON");
        assert_eq!(without_now(one), expected, "/api/status/{which}");
    }
    assert_eq!(serve.get("/api/status/2", &[]).status, 404);
    assert_eq!(serve.get("/api/status/nope", &[]).status, 404);

    let page = serve.get("/", &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("new EventSource(\"events\")"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"viewport\""));

    let report = serve.get("/report/1", &[]);
    assert_eq!(report.status, 200);
    assert_eq!(
        report.body, cli_report.stdout,
        "the report page is `report --format html`"
    );
    assert!(
        report.body.contains("name=\"viewport\""),
        "the report reads on a phone"
    );

    // The page's own reader has had its look too.
    let page_data = serve.get("/api/page", &[]);
    assert_eq!(page_data.status, 200);
    let after = files_bytes(&written);
    for ((path, b), a) in written.iter().zip(&before).zip(&after) {
        assert!(
            a == b,
            "serving changed {} (before: {:?} bytes, after: {:?})",
            path.display(),
            b.as_ref().map(Vec::len),
            a.as_ref().map(Vec::len)
        );
    }
}

#[test]
fn several_cutovers_are_one_entry_each_in_the_order_given() {
    let dir = workdir();
    local_cutover(dir.path());
    let applied = runner(&["apply", "cutover.yaml"], dir.path(), &[]);
    assert_eq!(applied.code, 1, "{}", applied.stderr);
    let other = dir.path().join("other");
    fs::create_dir(&other).expect("a second folder");
    let second = local_cutover(&other);
    let text = fs::read_to_string(&second).expect("read");
    fs::write(&second, text.replace("Acme file server", "Acme mail")).expect("rename");

    let serve = Serve::start(
        &[
            "cutover.yaml",
            "other/cutover.yaml",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let all: Value = serde_json::from_str(&serve.get("/api/status", &[]).body).expect("JSON");
    let names: Vec<(&str, bool)> = all
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| {
            (
                v["playbook"].as_str().expect("a name"),
                v["applied"].as_bool().expect("applied"),
            )
        })
        .collect();
    assert_eq!(names, [("Acme file server", true), ("Acme mail", false)]);
    let by_name: Value =
        serde_json::from_str(&serve.get("/api/status/Acme%20mail", &[]).body).expect("JSON");
    assert_eq!(by_name["path"], json!("other/cutover.yaml"));
    assert_eq!(serve.get("/api/status/3", &[]).status, 404);
    // Never applied: no report yet, said as such.
    let report = serve.get("/report/2", &[]);
    assert_eq!(report.status, 404);
    assert!(report.body.contains("not been applied"), "{}", report.body);
}

#[test]
fn a_token_file_makes_the_token_required_even_on_loopback() {
    let dir = workdir();
    local_cutover(dir.path());
    let token = "s3cr3t-token-0123456789";
    fs::write(dir.path().join("token"), format!("{token}\n")).expect("write the token");
    let serve = Serve::start(
        &[
            "cutover.yaml",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "token",
        ],
        dir.path(),
    );
    for path in ["/", "/api/status", "/events", "/report/1", "/api/status/1"] {
        assert_eq!(serve.get(path, &[]).status, 401, "{path} without a token");
    }
    let wrong = "s3cr3t-token-0123456780";
    let bad = serve.get(
        "/api/status",
        &[("Authorization", &format!("Bearer {wrong}"))],
    );
    assert_eq!(bad.status, 401);
    assert_eq!(serve.get(&format!("/?token={wrong}"), &[]).status, 401);
    let cookie_bad = serve.get("/", &[("Cookie", &format!("runner_token={wrong}"))]);
    assert_eq!(cookie_bad.status, 401);

    let ok = serve.get(
        "/api/status",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);

    // A link with ?token= sets an HttpOnly cookie and sends the browser to the bare page.
    let link = serve.get(&format!("/?token={token}"), &[]);
    assert_eq!(link.status, 303);
    assert_eq!(link.headers.get("location").map(String::as_str), Some("/"));
    let cookie = link.headers.get("set-cookie").expect("a cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value");
    let page = serve.get("/", &[("Cookie", pair)]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("EventSource"));
}

#[test]
fn without_a_token_only_local_host_names_are_answered() {
    let dir = workdir();
    local_cutover(dir.path());
    let serve = Serve::start(&["cutover.yaml", "--listen", "127.0.0.1:0"], dir.path());
    // A web page elsewhere whose name now points at 127.0.0.1 (DNS rebinding) gets nothing.
    let rebound = serve.get("/api/status", &[("Host", "attacker.example")]);
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    let port = serve.port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = serve.get("/api/status", &[("Host", &host)]);
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
}

#[test]
fn a_non_loopback_address_gets_a_generated_token_printed_once() {
    let dir = workdir();
    local_cutover(dir.path());
    let serve = Serve::start(&["cutover.yaml", "--listen", "0.0.0.0:0"], dir.path());
    let token = serve
        .preamble
        .iter()
        .find_map(|l| l.strip_prefix("access token (shown once): "))
        .expect("the generated token is printed")
        .to_owned();
    assert_eq!(token.len(), 32, "{token}");
    let addr = format!("127.0.0.1:{}", serve.port());
    assert_eq!(http_get(&addr, "/api/status", &[]).status, 401);
    let ok = http_get(
        &addr,
        "/api/status",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn bad_serve_arguments_are_invalid_input() {
    let dir = workdir();
    local_cutover(dir.path());
    let r = runner(
        &["serve", "cutover.yaml", "--listen", "not an address"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--listen"), "{}", r.stderr);
    let r = runner(
        &["serve", "cutover.yaml", "--token-file", "missing"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--token-file"), "{}", r.stderr);
    fs::write(dir.path().join("empty"), "\n").expect("write");
    let r = runner(
        &["serve", "cutover.yaml", "--token-file", "empty"],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = runner(&["serve", "missing.yaml"], dir.path(), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// Headless Chromium driven over `--remote-debugging-pipe` (fd 3 in, fd 4 out, JSON messages
/// separated by NUL).
struct Browser {
    child: Child,
    to: fs::File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "chromium is missing: the browser test drives Debian's headless Chromium. \
                 Install it with `apt-get install chromium` (scripts/test.sh does)."
            )
        })
}

impl Browser {
    fn start() -> Browser {
        use std::os::fd::AsRawFd;
        let profile = tempfile::Builder::new()
            .prefix("runner-serve-chromium-")
            .tempdir()
            .expect("a profile folder");
        let (cmd_r, cmd_w) = pipe();
        let (out_r, out_w) = pipe();
        let (cr, ow) = (cmd_r.as_raw_fd(), out_w.as_raw_fd());
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends out of the way first, in case either already is 3 or 4.
                let r = libc::fcntl(cr, libc::F_DUPFD, 10);
                let w = libc::fcntl(ow, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(cmd_r);
        drop(out_w);
        let (tx, rx) = mpsc::channel();
        let mut reader = BufReader::new(fs::File::from(out_r));
        std::thread::spawn(move || loop {
            let mut msg = Vec::new();
            match reader.read_until(0, &mut msg) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if msg.last() == Some(&0) {
                        msg.pop();
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to: fs::File::from(cmd_w),
            from: rx,
            next_id: 0,
            session: None,
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        b.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        );
        b
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.call_about(method, params, method)
    }

    /// [`Browser::call`], saying `what` was awaited if no reply comes.
    fn call_about(&mut self, method: &str, params: Value, what: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("JSON");
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("chromium did not answer in time ({e}): {what}"));
            if reply["id"] == json!(id) {
                if let Some(err) = reply.get("error") {
                    panic!("{method} failed: {err}");
                }
                return reply["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        self.eval_about(expression, expression)
    }

    fn eval_about(&mut self, expression: &str, what: &str) -> Value {
        let r = self.call_about(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            what,
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (a JS expression) is true in the page, woken by DOM changes.
    fn wait_for(&mut self, condition: &str) {
        let js = format!(
            "new Promise(function (done) {{\n\
               var ok = function () {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }};\n\
               if (ok()) return done(true);\n\
               var mo = new MutationObserver(function () {{ if (ok()) {{ mo.disconnect(); done(true); }} }});\n\
               mo.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});\n\
             }})"
        );
        let what = format!("the page never showed {condition}");
        assert_eq!(self.eval_about(&js, &what), json!(true), "{condition}");
    }

    fn screenshot(&mut self, path: &Path) {
        let height = self
            .eval("document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 2400);
        self.phone(height);
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64");
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).expect("create the artifact folder");
        }
        fs::write(path, png).expect("write the screenshot");
    }

    /// A phone-sized viewport.
    fn phone(&mut self, height: u64) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 412, "height": height, "deviceScaleFactor": 2, "mobile": true }),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.session = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_follows_a_run_live_in_chromium_against_sshd() {
    let sshd = Sshd::start("127.0.14.2");
    let dir = workdir();
    // The target's key is encrypted: its passphrase is a secret the run masks, and the `hello`
    // step prints it (without the command containing it).
    let key = dir.path().join("key");
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            "runner test",
            "-N",
            PASSPHRASE,
            "-f",
        ])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::copy(
        key.with_extension("pub"),
        sshd.dir().join("authorized_keys"),
    )
    .expect("authorize the key");
    let (head, tail) = PASSPHRASE.split_at(7);
    let hello = format!("echo hello; printf 'pp=%s%s\\n' {head} {tail}");
    let go = dir.path().join("go");
    let wait = format!(
        "echo waiting-for-go; i=0; until [ -e {p} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done; echo got-go",
        p = go.display()
    );
    let yaml = format!(
        "name: Acme night\nwindow:\n  business_hours: []\ntargets:\n  t1:\n    transport: ssh\n    host: {host}\n    port: {port}\n    user: {user}\n    key: {key}\n    known_hosts: {kh}\n    passphrase: {{ env: RUNNER_TEST_PP }}\n\
         steps:\n  - id: hello\n    on: t1\n    run: {hello}\n\
         \x20 - id: wait\n    name: Copy the shares\n    on: t1\n    run: {wait}\n\
         \x20 - id: boom\n    name: Switch DNS\n    on: t1\n    run: 'echo about-to-fail; exit 7'\n\
         \x20 - id: after\n    on: t1\n    run: 'echo never'\n",
        host = q(sshd.host()),
        port = sshd.port(),
        user = q(&sshd.user()),
        key = q(&key.display().to_string()),
        hello = q(&hello),
        kh = q(&sshd.known_hosts_path().display().to_string()),
        wait = q(&wait),
    );
    assert!(!yaml.contains(PASSPHRASE));
    fs::write(dir.path().join("cutover.yaml"), yaml).expect("write the playbook");

    let serve = Serve::start(&["cutover.yaml", "--listen", "127.0.0.1:0"], dir.path());
    let mut browser = Browser::start();
    browser.phone(900);
    browser.call(
        "Page.navigate",
        json!({ "url": format!("http://{}/", serve.addr) }),
    );
    let pair = |p: &str, state: &str| {
        format!("document.querySelector('[data-pair=\"{p}\"][data-state=\"{state}\"]')")
    };
    // Loaded before the journal exists: everything pending.
    browser.wait_for(&pair("wait@t1", "pending"));
    browser.wait_for("document.getElementById('conn').textContent === 'live'");
    // A reload would lose this.
    browser.eval("window.loadedOnce = 'yes'; true");

    let mut apply = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "cutover.yaml"])
        .current_dir(dir.path())
        .env_remove("RUNNER_NOW")
        .env("RUNNER_TEST_PP", PASSPHRASE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start apply");

    browser.wait_for(&pair("hello@t1", "succeeded"));
    browser.wait_for(&pair("wait@t1", "running"));
    // The live tail: the running step's output line arrives while it runs.
    browser.wait_for(
        "(document.getElementById('tail-0|wait|t1') || {textContent: ''}).textContent.indexOf('waiting-for-go') >= 0",
    );
    browser.screenshot(&artifact("serve-screenshot-running.png"));

    fs::write(&go, "").expect("create the go file");
    browser.wait_for(&pair("wait@t1", "succeeded"));
    browser.wait_for(&pair("boom@t1", "failed"));
    browser.wait_for(&pair("after@t1", "pending"));
    browser.wait_for(
        "document.getElementById('tail-0|boom|t1').textContent.indexOf('about-to-fail') >= 0",
    );
    browser.wait_for(
        "document.querySelector('.attention') && document.querySelector('.attention').textContent.indexOf('boom@t1 failed (exit 7)') >= 0",
    );
    let badge =
        browser.eval("document.querySelector('[data-pair=\"boom@t1\"] .badge').textContent");
    assert_eq!(badge, json!("failed"));
    assert_eq!(
        browser.eval("window.loadedOnce"),
        json!("yes"),
        "the page was reloaded: the updates did not come live"
    );

    let status = apply.wait().expect("apply ends");
    assert_eq!(status.code(), Some(1), "apply ends with the failed step");
    browser.wait_for(
        "document.querySelector('[data-cutover=\"0\"] .meta').textContent.indexOf('failed') >= 0",
    );
    browser.screenshot(&artifact("serve-screenshot.png"));
    // Readable on a phone: nothing wider than its screen, no sideways scrolling.
    assert_eq!(
        browser.eval("document.documentElement.scrollWidth <= window.innerWidth"),
        json!(true),
        "the page is wider than a phone"
    );

    // The secret the step printed is masked everywhere the server shows it.
    browser.wait_for(
        "document.getElementById('tail-0|hello|t1').textContent.indexOf('pp=********') >= 0",
    );
    let text = browser.eval("document.documentElement.outerHTML");
    let text = text.as_str().expect("the page's HTML");
    assert!(!text.contains(PASSPHRASE), "the page shows the secret");
    for path in ["/api/status", "/api/page", "/report/1"] {
        let r = serve.get(path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains(PASSPHRASE), "{path} shows the secret");
    }

    // An operator's decision appears live too, with who made it and why.
    let marked = runner(
        &[
            "mark",
            "cutover.yaml",
            "boom@t1",
            "skip",
            "--reason",
            "DNS switched by hand",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(marked.code, 0, "{}", marked.stderr);
    browser.wait_for(&pair("boom@t1", "skipped"));
    browser.wait_for(
        "document.querySelector('[data-pair=\"boom@t1\"] .markinfo').textContent.indexOf('DNS switched by hand') >= 0",
    );
    assert_eq!(browser.eval("window.loadedOnce"), json!("yes"));
}

/// The passphrase of the target's key in the browser test.
const PASSPHRASE: &str = "Pp-serve-7e1d9c";

/// Where a test keeps a file for people to look at: target/.
fn artifact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join(name)
}
