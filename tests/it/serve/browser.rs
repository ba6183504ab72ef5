//! In a real headless Chromium, the page loaded once before a run follows that run live against
//! sshd.

use super::*;

/// YAML single-quoted scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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
