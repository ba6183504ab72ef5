//! A [`Run`] started in the background, for tests that act while the runner works: signal it,
//! kill it, watch its output, then wait for it and check what the builder stated.
//!
//! ```ignore
//! let bg = scene.apply().expect_exit(130).expect_stderr_contains("interrupted").spawn();
//! bg.wait_stderr("no new steps will start");
//! bg.signal(libc::SIGINT);
//! let done = bg.wait();
//! ```

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::run::{Ran, Run};
use super::{wait_until, PATIENCE};

/// See the module documentation. A runner still running when this is dropped (a test that
/// failed half-way) is killed.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    run: Option<Run>,
}

fn drain(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => match into.lock() {
                    Ok(mut all) => all.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                },
            }
        }
    })
}

fn text(of: &Arc<Mutex<Vec<u8>>>) -> String {
    of.lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Run {
    /// Starts the runner (stdin empty) and returns at once; [`Running::wait`] checks the
    /// expectations.
    pub fn spawn(self) -> Running {
        self.prepare();
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the runner binary");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take().expect("piped"), Arc::clone(&stdout)),
            drain(child.stderr.take().expect("piped"), Arc::clone(&stderr)),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
            run: Some(self),
        }
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the runner printed on stdout so far.
    pub fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// What the runner printed on stderr so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Whether the runner has ended.
    pub fn ended(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until `needle` is on the runner's stderr.
    pub fn wait_stderr(&self, needle: &str) {
        wait_until(&format!("`{needle}` on the runner's stderr"), || {
            self.stderr().contains(needle)
        });
    }

    /// Waits until `what` holds; fails at once, with the runner's output, if the runner ends
    /// first.
    pub fn wait_while_running(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond() {
            if self.ended() {
                panic!(
                    "the runner ended before {what}:\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the runner.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: kill(2) on the positive pid of our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal the runner");
    }

    /// SIGKILL to the runner.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9 the runner");
    }

    /// Waits (bounded: a runner still running after [`PATIENCE`] is killed and fails the
    /// test) and checks every expectation of the run.
    #[track_caller]
    pub fn wait(mut self) -> Ran {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the runner") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the runner was still running after {PATIENCE:?}:\n{}",
                    self.stderr()
                );
            }
            // Polling: the condition lives in another process.
            thread::sleep(Duration::from_millis(10));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let run = self.run.take().expect("waited once");
        run.check(status, self.stdout(), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
