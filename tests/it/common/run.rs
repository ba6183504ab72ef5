//! One run of the `runner` binary, stated with its whole expected outcome before it runs:
//!
//! ```ignore
//! let done = Run::new()
//!     .playbook(&yaml)
//!     .args(["apply", "cutover.yaml"])
//!     .env("RUNNER_NOW", "2026-03-10T12:00:00Z")
//!     .expect_exit(3)
//!     .expect_stderr_contains("may start Tue 10 Mar 2026 18:00")
//!     .expect_journal("migrate", &[])
//!     .run();
//! ```
//!
//! The exit code is always checked (there is no "any exit"); every failed expectation prints
//! the exit code, stdout and stderr. `run` returns the output and the working folder for the
//! asserts a builder cannot state (ledgers, files).

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Where a run works: a fresh temporary folder of its own, or one a test (or a scene) keeps.
pub enum Folder {
    Owned(tempfile::TempDir),
    At(PathBuf),
}

impl Folder {
    pub fn path(&self) -> &Path {
        match self {
            Folder::Owned(d) => d.path(),
            Folder::At(p) => p,
        }
    }
}

/// A run to make; see the module documentation.
pub struct Run {
    dir: Folder,
    files: Vec<(String, String)>,
    playbook: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    exit: Option<Ending>,
    stdout: Vec<Expect>,
    stderr: Vec<Expect>,
    journal: Vec<(String, Vec<Pair>)>,
    no_journal: bool,
    note: Option<String>,
}

/// How the process ended: an exit code, or a signal that killed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Code(i32),
    Signal(i32),
}

/// `(target, kind, state)` of an attempt.
type Pair = (String, String, String);

enum Expect {
    Contains(String),
    Lacks(String),
    Exact(String),
}

/// How a run ended, and the folder it ran in (kept as long as this value lives).
pub struct Ran {
    /// The exit code; -1 when a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub dir: Folder,
}

impl Ran {
    /// Exit code, stdout and stderr, for assertion messages.
    pub fn show(&self) -> String {
        show(self.code, &self.stdout, &self.stderr)
    }

    /// The folder the run worked in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// stdout followed by stderr.
    pub fn said(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn show(code: i32, stdout: &str, stderr: &str) -> String {
    format!("exit {code}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

impl Run {
    /// A run in a fresh temporary folder.
    pub fn new() -> Run {
        let dir = tempfile::Builder::new()
            .prefix("runner-run-")
            .tempdir()
            .expect("create a temporary folder");
        Run::in_folder(Folder::Owned(dir))
    }

    /// A run in `dir`, which the test keeps (a second run in the same folder, a scene's).
    pub fn at(dir: &Path) -> Run {
        Run::in_folder(Folder::At(dir.to_path_buf()))
    }

    fn in_folder(dir: Folder) -> Run {
        Run {
            dir,
            files: Vec::new(),
            playbook: None,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            exit: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            journal: Vec::new(),
            no_journal: false,
            note: None,
        }
    }

    /// Writes `yaml` as `cutover.yaml` in the folder before the run.
    pub fn playbook(self, yaml: &str) -> Run {
        self.playbook_named("cutover.yaml", yaml)
    }

    /// Writes `yaml` as `name` in the folder; the journal expectations look for its journal.
    pub fn playbook_named(mut self, name: &str, yaml: &str) -> Run {
        self.playbook = Some(name.to_string());
        self.file(name, yaml)
    }

    /// Names the playbook (already in the folder) whose journal the expectations read.
    pub fn journal_of(mut self, playbook: &str) -> Run {
        self.playbook = Some(playbook.to_string());
        self
    }

    /// Writes another file in the folder before the run.
    pub fn file(mut self, name: &str, text: &str) -> Run {
        self.files.push((name.to_string(), text.to_string()));
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Run {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// What the runner reads on its stdin (otherwise it reads an empty stdin).
    pub fn stdin(mut self, text: &str) -> Run {
        self.stdin = Some(text.to_string());
        self
    }

    /// Says which case of a loop this run is, in every failure message.
    pub fn note(mut self, text: impl AsRef<str>) -> Run {
        self.note = Some(text.as_ref().to_string());
        self
    }

    /// The exact exit code; a run without one panics.
    pub fn expect_exit(mut self, code: i32) -> Run {
        self.exit = Some(Ending::Code(code));
        self
    }

    /// The process ends by this signal (a background run the test kills).
    pub fn expect_signal(mut self, signal: i32) -> Run {
        self.exit = Some(Ending::Signal(signal));
        self
    }

    pub fn expect_stdout(mut self, exact: impl AsRef<str>) -> Run {
        self.stdout.push(Expect::Exact(exact.as_ref().to_string()));
        self
    }

    pub fn expect_stdout_contains(mut self, text: impl AsRef<str>) -> Run {
        self.stdout
            .push(Expect::Contains(text.as_ref().to_string()));
        self
    }

    pub fn expect_stdout_lacks(mut self, text: impl AsRef<str>) -> Run {
        self.stdout.push(Expect::Lacks(text.as_ref().to_string()));
        self
    }

    pub fn expect_stderr(mut self, exact: impl AsRef<str>) -> Run {
        self.stderr.push(Expect::Exact(exact.as_ref().to_string()));
        self
    }

    pub fn expect_stderr_contains(mut self, text: impl AsRef<str>) -> Run {
        self.stderr
            .push(Expect::Contains(text.as_ref().to_string()));
        self
    }

    pub fn expect_stderr_lacks(mut self, text: impl AsRef<str>) -> Run {
        self.stderr.push(Expect::Lacks(text.as_ref().to_string()));
        self
    }

    /// The journal's attempts of `step` after the run, as `(target, kind, state)`: in journal
    /// order for each target (the order across targets of a fan-out is not fixed). `&[]` says
    /// the step never started.
    pub fn expect_journal(mut self, step: &str, attempts: &[(&str, &str, &str)]) -> Run {
        let want = attempts
            .iter()
            .map(|(t, k, s)| (t.to_string(), k.to_string(), s.to_string()))
            .collect();
        self.journal.push((step.to_string(), want));
        self
    }

    /// No journal (no `.runner` folder) exists in the folder after the run.
    pub fn expect_no_journal(mut self) -> Run {
        self.no_journal = true;
        self
    }

    /// Runs the binary and checks every expectation.
    #[track_caller]
    pub fn run(self) -> Ran {
        self.prepare();
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the runner binary");
        let input = self.stdin.clone().unwrap_or_default();
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A runner that does not read its stdin closes it: a failed write is no failure.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().expect("wait for the runner");
        let _ = writer.join();
        self.check(
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Checks that an exit is stated and writes the files; before the process starts.
    pub(super) fn prepare(&self) {
        if self.exit.is_none() {
            panic!("a Run states its exit code: call expect_exit before run");
        }
        for (name, text) in &self.files {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }

    /// The command, with a clean environment: like common_cli::runner, the test process's
    /// environment is not the child's.
    pub(super) fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.args(&self.args)
            .current_dir(self.dir.path())
            .env_remove("RUNNER_NOW")
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Checks how the process ended against every expectation.
    #[track_caller]
    pub(super) fn check(self, status: ExitStatus, stdout: String, stderr: String) -> Ran {
        let ending = match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Code(code),
            (None, Some(signal)) => Ending::Signal(signal),
            (None, None) => Ending::Code(-1),
        };
        let code = status.code().unwrap_or(-1);
        let mut shown = format!(
            "runner {}\n{}",
            self.args.join(" "),
            show(code, &stdout, &stderr)
        );
        if let Some(note) = &self.note {
            shown = format!("({note})\n{shown}");
        }
        assert_eq!(Some(ending), self.exit, "unexpected exit code:\n{shown}");
        check("stdout", &stdout, &self.stdout, &shown);
        check("stderr", &stderr, &self.stderr, &shown);
        let dir = self.dir.path();
        if self.no_journal {
            assert!(
                !dir.join(".runner").exists(),
                "the run wrote a journal folder:\n{shown}"
            );
        }
        for (step, want) in &self.journal {
            let Some(playbook) = &self.playbook else {
                panic!("expect_journal needs the playbook: call playbook or journal_of");
            };
            let mut got: Vec<_> = attempts(&journal_path(dir, playbook), step)
                .into_iter()
                .map(|a| (a.target, a.kind, a.state))
                .collect();
            let mut want = want.clone();
            // Stable: each target's own attempts keep their order.
            got.sort_by(|a, b| a.0.cmp(&b.0));
            want.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "attempts of `{step}` in the journal:\n{shown}");
        }
        Ran {
            code,
            stdout,
            stderr,
            dir: self.dir,
        }
    }
}

#[track_caller]
fn check(stream: &str, got: &str, expects: &[Expect], shown: &str) {
    for e in expects {
        match e {
            Expect::Contains(t) => {
                assert!(got.contains(t.as_str()), "{stream} lacks {t:?}:\n{shown}")
            }
            Expect::Lacks(t) => {
                assert!(!got.contains(t.as_str()), "{stream} has {t:?}:\n{shown}")
            }
            Expect::Exact(t) => assert_eq!(got, t, "{stream} is not as expected:\n{shown}"),
        }
    }
}

/// The default journal of `playbook` (a file name in `dir`).
pub fn journal_path(dir: &Path, playbook: &str) -> PathBuf {
    let stem = Path::new(playbook)
        .file_stem()
        .expect("a playbook file name")
        .to_string_lossy()
        .into_owned();
    dir.join(".runner").join(format!("{stem}.db"))
}

/// One attempt as the journal recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub step: String,
    pub target: String,
    pub kind: String,
    pub number: i64,
    pub state: String,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
}

/// Opens an existing journal (never creates one); waits while a live runner writes.
pub fn open_journal(db: &Path) -> rusqlite::Connection {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .unwrap_or_else(|e| panic!("open the journal {}: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(60))
        .expect("set a busy timeout");
    conn
}

/// Every attempt, in the order they were started; none when there is no journal.
pub fn all_attempts(db: &Path) -> Vec<Attempt> {
    if !db.exists() {
        return Vec::new();
    }
    let conn = open_journal(db);
    let mut stmt = conn
        .prepare(
            "SELECT step_id, target, kind, number, state, exit_code, message FROM attempts \
             ORDER BY id",
        )
        .expect("prepare the attempts query");
    stmt.query_map([], |r| {
        Ok(Attempt {
            step: r.get(0)?,
            target: r.get(1)?,
            kind: r.get(2)?,
            number: r.get(3)?,
            state: r.get(4)?,
            exit_code: r.get(5)?,
            message: r.get(6)?,
        })
    })
    .expect("query attempts")
    .collect::<Result<_, _>>()
    .expect("read attempts")
}

/// The attempts of one step, in the order they were started.
pub fn attempts(db: &Path, step: &str) -> Vec<Attempt> {
    all_attempts(db)
        .into_iter()
        .filter(|a| a.step == step)
        .collect()
}
