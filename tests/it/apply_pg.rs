//! `runner apply` with its journal on a real PostgreSQL server: a whole run, the lease between
//! two "machines" (two processes with their own working folders and the same playbook), a
//! runner killed with -9, a runner frozen with SIGSTOP whose lease another runner took, and two
//! runners racing for one cutover.

use crate::common;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::common::postgres::Postgres;
use crate::common::wait_until;
use crate::common_cli::{runner, Run};

const PATIENCE: Duration = Duration::from_secs(60);
/// The lease of a runner these tests freeze or kill: short, so that the takeover comes soon.
const SHORT_LEASE_MS: &str = "1500";
const NAME: &str = "Team cutover";

/// Two working folders ("machines") with the same playbook, a shared folder for the steps'
/// ledger and hold files, and a server.
struct Team {
    pg: Postgres,
    shared: tempfile::TempDir,
    a: tempfile::TempDir,
    b: tempfile::TempDir,
}

impl Team {
    fn new() -> Team {
        let t = Team {
            pg: Postgres::start(),
            shared: tempfile::tempdir().unwrap(),
            a: tempfile::tempdir().unwrap(),
            b: tempfile::tempdir().unwrap(),
        };
        let d = t.shared.path().display();
        let yaml = format!(
            "name: {NAME}\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n\
             steps:\n  - id: copy\n    on: here\n    idempotent: true\n    run: 'echo start >> {d}/copy.ledger; \
             touch {d}/copy.started; while [ -f {d}/copy.hold ]; do sleep 0.05; done; \
             echo end >> {d}/copy.ledger'\n  - id: switch\n    on: here\n    run: 'echo switch >> {d}/switch.ledger'\n"
        );
        for dir in [&t.a, &t.b] {
            std::fs::write(dir.path().join("cutover.yaml"), &yaml).unwrap();
        }
        t
    }

    fn shared(&self, name: &str) -> PathBuf {
        self.shared.path().join(name)
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.shared(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGPASSWORD", common::postgres::PASSWORD.to_owned()),
            ("RUNNER_STATE", self.pg.url()),
        ]
    }

    /// `runner apply` in `dir` to the end.
    fn apply(&self, dir: &Path) -> Run {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        runner(&["apply", "cutover.yaml"], dir, &env)
    }

    /// `runner apply` in `dir` in the background, with a short lease.
    fn spawn_apply(&self, dir: &Path) -> Background {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.args(["apply", "cutover.yaml"])
            .current_dir(dir)
            .env_remove("RUNNER_NOW")
            .env("RUNNER_PG_LEASE_MS", SHORT_LEASE_MS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            drain(
                child.stdout.take().unwrap(),
                Arc::new(Mutex::new(String::new())),
            ),
            drain(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Background {
            child,
            stderr,
            readers,
        }
    }

    /// The journal's rows as (table query) on the server, in the cutover's schema.
    fn attempts(&self) -> Vec<(String, String, i64)> {
        let loc = runner::journal::pg::parse_location(&runner::journal::pg::location_path(
            &self.pg.url(),
            NAME,
        ))
        .unwrap();
        let mut c = self.pg.client();
        c.query(
            &format!(
                "SELECT step_id, state, pid FROM \"{}\".attempts ORDER BY id",
                loc.schema()
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    }

    fn run_ended(&self, pid: u32) -> Option<bool> {
        let loc = runner::journal::pg::parse_location(&runner::journal::pg::location_path(
            &self.pg.url(),
            NAME,
        ))
        .unwrap();
        let mut c = self.pg.client();
        c.query_opt(
            &format!(
                "SELECT ended_at IS NOT NULL FROM \"{}\".runs WHERE pid = $1",
                loc.schema()
            ),
            &[&i64::from(pid)],
        )
        .unwrap()
        .map(|r| r.get(0))
    }

    fn wait_lease_expired(&self) {
        let mut c = self.pg.client();
        wait_until("the lease to expire", || {
            c.query_one(
                "SELECT expires_at < now() FROM runner.leases WHERE cutover = $1",
                &[&NAME],
            )
            .unwrap()
            .get(0)
        });
    }
}

struct Background {
    child: Child,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn drain(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

impl Background {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) on the positive pid of our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn wait(mut self) -> Run {
        let status = self.child.wait().unwrap();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn apply_status_and_copy_with_the_journal_on_postgres() {
    let t = Team::new();
    let r = t.apply(t.a.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(t.lines("copy.ledger"), ["start", "end"]);
    assert_eq!(t.lines("switch.ledger"), ["switch"]);
    let states: Vec<String> = t.attempts().into_iter().map(|a| a.1).collect();
    assert_eq!(states, ["succeeded", "succeeded"]);
    // The other machine sees the same cutover, and applying again there runs nothing.
    let env = t.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let st = runner(
        &["status", "cutover.yaml", "--format", "json"],
        t.b.path(),
        &env,
    );
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(st.stdout.contains("succeeded"), "{}", st.stdout);
    let again = t.apply(t.b.path());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(t.lines("switch.ledger"), ["switch"]);
    // The journal comes back into an SQLite file, verified, and reads the same there.
    let file = t.b.path().join("copied.db");
    let cp = runner(
        &[
            "state",
            "copy",
            &t.pg.url(),
            file.to_str().unwrap(),
            "--cutover",
            NAME,
        ],
        t.b.path(),
        &env,
    );
    assert_eq!(cp.code, 0, "{}", cp.stderr);
    assert!(cp.stdout.contains("attempts"), "{}", cp.stdout);
    let st = runner(
        &["status", "cutover.yaml", "--state", file.to_str().unwrap()],
        t.b.path(),
        &[("RUNNER_STATE", "")],
    );
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(!st.stderr.contains("belongs to"), "{}", st.stderr);
}

#[test]
fn a_password_in_the_state_url_is_refused_with_exit_2_and_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cutover.yaml"),
        format!(
            "name: {NAME}\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n\
             steps:\n  - id: one\n    on: here\n    run: 'touch ran'\n"
        ),
    )
    .unwrap();
    let r = runner(
        &[
            "apply",
            "cutover.yaml",
            "--state",
            "postgres://alice:s3cr3t-pw@127.0.0.1:1/runner",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("s3cr3t-pw"), "{}", r.stderr);
    assert!(r.stderr.contains("PGPASSWORD"), "{}", r.stderr);
    assert!(!dir.path().join("ran").exists());
    assert!(!dir.path().join(".runner").exists());
}

#[test]
fn a_second_runner_is_refused_while_the_lease_is_held_and_resumes_after_kill_9() {
    let t = Team::new();
    std::fs::write(t.shared("copy.hold"), "").unwrap();
    let first = t.spawn_apply(t.a.path());
    wait_until("the first runner's step to start", || {
        t.shared("copy.started").exists()
    });
    // Racing for the same cutover from the other machine: refused, told who holds it.
    let racer = t.apply(t.b.path());
    assert_eq!(racer.code, 4, "{}", racer.stderr);
    assert!(
        racer.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        racer.stderr
    );
    let first_pid = first.pid();
    first.signal(libc::SIGKILL);
    let killed = first.wait();
    assert_eq!(killed.code, -1);
    // Nobody released the lease: the second machine takes over once it has run out.
    t.wait_lease_expired();
    std::fs::remove_file(t.shared("copy.hold")).unwrap();
    let second = t.apply(t.b.path());
    assert_eq!(second.code, 0, "{}", second.stderr);
    // The step in doubt was idempotent: run again; the next step ran once.
    assert_eq!(t.lines("copy.ledger"), ["start", "start", "end"]);
    assert_eq!(t.lines("switch.ledger"), ["switch"]);
    let attempts = t.attempts();
    assert_eq!(attempts[0].0, "copy");
    assert_eq!(attempts[0].1, "interrupted");
    assert_eq!(attempts[0].2, i64::from(first_pid));
    assert!(attempts[1..].iter().all(|a| a.2 != i64::from(first_pid)));
}

#[test]
fn a_frozen_runner_whose_lease_was_taken_records_nothing_after_sigcont_and_fails() {
    let t = Team::new();
    std::fs::write(t.shared("copy.hold"), "").unwrap();
    let frozen = t.spawn_apply(t.a.path());
    wait_until("the first runner's step to start", || {
        t.shared("copy.started").exists()
    });
    let frozen_pid = frozen.pid();
    frozen.signal(libc::SIGSTOP);
    t.wait_lease_expired();
    // Its step's command ends while it is frozen; the other machine takes over and finishes.
    std::fs::remove_file(t.shared("copy.hold")).unwrap();
    let second = t.apply(t.b.path());
    assert_eq!(second.code, 0, "{}", second.stderr);
    let after_takeover = t.attempts();
    frozen.signal(libc::SIGCONT);
    let r = frozen.wait();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("another runner took over"),
        "{}",
        r.stderr
    );
    // Not one row changed by the frozen runner after the takeover.
    assert_eq!(t.attempts(), after_takeover);
    assert_eq!(t.run_ended(frozen_pid), Some(false));
    assert_eq!(t.lines("switch.ledger"), ["switch"]);
    assert_eq!(
        after_takeover
            .iter()
            .filter(|a| a.2 == i64::from(frozen_pid))
            .count(),
        1
    );
}

#[test]
fn a_database_stopped_mid_run_stops_new_steps_and_the_run_resumes_when_it_is_back() {
    let t = Team::new();
    std::fs::write(t.shared("copy.hold"), "").unwrap();
    let first = t.spawn_apply(t.a.path());
    wait_until("the first runner's step to start", || {
        t.shared("copy.started").exists()
    });
    t.pg.stop();
    // The step's command ends while there is no journal to record it: nothing new starts.
    std::fs::remove_file(t.shared("copy.hold")).unwrap();
    let r = first.wait();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("journal"), "{}", r.stderr);
    assert!(t.lines("switch.ledger").is_empty());
    t.pg.start_again();
    t.wait_lease_expired();
    let again = t.apply(t.a.path());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(t.lines("copy.ledger"), ["start", "end", "start", "end"]);
    assert_eq!(t.lines("switch.ledger"), ["switch"]);
}

#[test]
fn the_password_comes_from_the_password_file_as_with_psql() {
    let t = Team::new();
    let pgpass = t.shared("pgpass");
    let status = |pw: &str| {
        std::fs::write(
            &pgpass,
            format!("# team\n127.0.0.1:{}:postgres:runner:{pw}\n", t.pg.port),
        )
        .unwrap();
        set_mode(&pgpass, 0o600);
        runner(
            &["status", "cutover.yaml"],
            t.a.path(),
            &[
                ("RUNNER_STATE", t.pg.url().as_str()),
                ("PGPASSFILE", pgpass.to_str().unwrap()),
            ],
        )
    };
    let wrong = status("not-the-password");
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("password"), "{}", wrong.stderr);
    let right = status(common::postgres::PASSWORD);
    assert_eq!(right.code, 0, "{}", right.stderr);
}

#[test]
fn a_run_longer_than_its_lease_keeps_it_by_renewing() {
    let t = Team::new();
    std::fs::write(t.shared("copy.hold"), "").unwrap();
    let first = t.spawn_apply(t.a.path());
    wait_until("the first runner's step to start", || {
        t.shared("copy.started").exists()
    });
    // Let the server's clock pass three lease lengths while the step is held.
    let mut c = t.pg.client();
    let start: String = c.query_one("SELECT now()::text", &[]).unwrap().get(0);
    wait_until("three lease lengths to pass", || {
        c.query_one(
            "SELECT now() > $1::text::timestamptz + 3 * $2::text::bigint * interval '1 millisecond'",
            &[&start, &SHORT_LEASE_MS],
        )
        .unwrap()
        .get(0)
    });
    // Another runner is still refused (asked here directly: a runner that got the lease would
    // wait on the held step).
    std::env::set_var("PGPASSWORD", common::postgres::PASSWORD);
    let taken = runner::journal::acquire(
        &runner::journal::pg::location_path(&t.pg.url(), NAME),
        &runner::journal::Holder::this_process("apply", "bob", jiff::Timestamp::now()),
    );
    assert!(
        matches!(taken, Err(runner::journal::LockError::Held { .. })),
        "{taken:?}"
    );
    drop(taken);
    // `runner status` on the other machine names the holder.
    let env = t.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let st = runner(&["status", "cutover.yaml"], t.b.path(), &env);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(
        st.stdout.contains(&format!("pid {}", first.pid())),
        "{}",
        st.stdout
    );
    std::fs::remove_file(t.shared("copy.hold")).unwrap();
    let r = first.wait();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(t.lines("switch.ledger"), ["switch"]);
}

#[test]
fn status_and_report_work_with_a_role_that_may_only_read() {
    let t = Team::new();
    let as_reader = |args: &[&str], dir: &Path, url: &str| {
        runner(
            args,
            dir,
            &[
                ("PGPASSWORD", common::postgres::PASSWORD),
                ("RUNNER_STATE", url),
            ],
        )
    };
    // Nothing on the server yet, not even the tables all cutovers share.
    let url = t.pg.reader_url();
    let st = as_reader(&["status", "cutover.yaml"], t.a.path(), &url);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(st.stdout.contains("Never applied"), "{}", st.stdout);
    assert!(!st.stderr.contains("permission"), "{}", st.stderr);

    let applied = t.apply(t.a.path());
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let url = t.pg.reader_url();
    let before = t.attempts();
    let st = as_reader(&["status", "cutover.yaml"], t.b.path(), &url);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(st.stdout.contains("succeeded"), "{}", st.stdout);
    let json = as_reader(
        &["status", "cutover.yaml", "--format", "json"],
        t.b.path(),
        &url,
    );
    assert_eq!(json.code, 0, "{}", json.stderr);
    let rep = as_reader(&["report", "cutover.yaml"], t.b.path(), &url);
    assert_eq!(rep.code, 0, "{}", rep.stderr);
    assert!(rep.stdout.contains("switch"), "{}", rep.stdout);
    // The plan of what is left, and a plan that learns from this journal, read it too.
    let plan = as_reader(&["plan", "cutover.yaml"], t.b.path(), &url);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(!plan.stderr.contains("permission"), "{}", plan.stderr);
    assert!(
        plan.stdout.contains("From the journal") && plan.stdout.contains("steps done"),
        "the plan is of what is left in the team's journal:\n{}",
        plan.stdout
    );
    // The live page reads the same with the same role.
    let page = serve_status(t.b.path(), &url);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("\"applied\": true"), "{page}");
    assert!(!page.contains("permission"), "{page}");
    assert_eq!(t.attempts(), before);

    // Another cutover on the same server, never applied: said so, not a permission error.
    let other = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(t.a.path().join("cutover.yaml"))
        .unwrap()
        .replace(NAME, "Other cutover");
    std::fs::write(other.path().join("cutover.yaml"), yaml).unwrap();
    let st = as_reader(&["status", "cutover.yaml"], other.path(), &url);
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(st.stdout.contains("Never applied"), "{}", st.stdout);
    assert!(!st.stderr.contains("permission"), "{}", st.stderr);
    let rep = as_reader(&["report", "cutover.yaml"], other.path(), &url);
    assert_eq!(rep.code, 1, "{}", rep.stderr);
    assert!(
        rep.stderr.contains("has not been applied yet"),
        "{}",
        rep.stderr
    );
    assert!(!rep.stderr.contains("permission"), "{}", rep.stderr);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_password_file_others_may_read_is_ignored_as_psql_ignores_it() {
    let t = Team::new();
    let pgpass = t.shared("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:postgres:runner:{}\n",
            t.pg.port,
            common::postgres::PASSWORD
        ),
    )
    .unwrap();
    let status = |file: &Path| {
        runner(
            &["status", "cutover.yaml"],
            t.a.path(),
            &[
                ("RUNNER_STATE", t.pg.url().as_str()),
                ("PGPASSFILE", file.to_str().unwrap()),
            ],
        )
    };
    for (mode, shown) in [(0o644, "0644"), (0o640, "0640"), (0o604, "0604")] {
        set_mode(&pgpass, mode);
        let r = status(&pgpass);
        // Ignored, said why, and then the server refuses the connection without a password.
        assert_eq!(r.code, 1, "{}", r.stderr);
        let ignored = format!("the password file {} was ignored", pgpass.display());
        assert!(r.stderr.contains(&ignored), "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("(mode {shown})")),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
        assert!(r.stderr.contains("password"), "{}", r.stderr);
        assert!(
            !r.stderr.contains(common::postgres::PASSWORD),
            "{}",
            r.stderr
        );
    }
    // `apply` likewise: it stops before anything runs.
    let r = runner(
        &["apply", "cutover.yaml"],
        t.a.path(),
        &[
            ("RUNNER_STATE", t.pg.url().as_str()),
            ("PGPASSFILE", pgpass.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("was ignored"), "{}", r.stderr);
    assert!(t.lines("copy.ledger").is_empty());
    assert!(t.lines("switch.ledger").is_empty());
    // Not a plain file: ignored too.
    let folder = t.shared("pgpass.d");
    std::fs::create_dir(&folder).unwrap();
    set_mode(&folder, 0o700);
    let r = status(&folder);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not a plain file"), "{}", r.stderr);
    // Private: read.
    set_mode(&pgpass, 0o600);
    let r = status(&pgpass);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("ignored"), "{}", r.stderr);
}

#[test]
fn a_detached_job_outlives_a_database_outage_and_is_collected_once_by_the_next_apply() {
    let t = Team::new();
    let d = t.shared.path().display();
    let yaml = format!(
        "name: {NAME}\nwindow:\n  business_hours: []\ntargets:\n  here:\n    transport: local\n\
         steps:\n  - id: export\n    on: here\n    detach: true\n    run: |\n      \
         echo start >> {d}/export.ledger\n      touch {d}/export.started\n      \
         while [ ! -f {d}/export.go ]; do sleep 0.05; done\n      \
         echo end >> {d}/export.ledger\n  \
         - id: switch\n    on: here\n    run: 'echo switch >> {d}/switch.ledger'\n"
    );
    std::fs::write(t.a.path().join("cutover.yaml"), yaml).unwrap();
    let first = t.spawn_apply(t.a.path());
    wait_until("the detached job to start", || {
        t.shared("export.started").exists()
    });
    t.pg.stop();
    // The job goes on on its target while there is no journal, and ends there.
    std::fs::write(t.shared("export.go"), "").unwrap();
    wait_until("the job to end", || t.lines("export.ledger").len() == 2);
    // Its end cannot be recorded: the runner stops, and nothing new starts without a journal.
    let r = first.wait();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("journal"), "{}", r.stderr);
    assert!(t.lines("switch.ledger").is_empty());

    t.pg.start_again();
    t.wait_lease_expired();
    let again = t.apply(t.a.path());
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("a detached job: follow it"),
        "{}",
        again.stdout
    );
    // Collected, not started again; then the run went on.
    assert_eq!(t.lines("export.ledger"), ["start", "end"]);
    assert_eq!(t.lines("switch.ledger"), ["switch"]);
    let attempts = t.attempts();
    assert_eq!(attempts[0].0, "export");
    assert_eq!(attempts[0].1, "succeeded", "{attempts:?}");
    assert_eq!(
        attempts.iter().filter(|a| a.0 == "export").count(),
        1,
        "{attempts:?}"
    );
}

/// `runner serve` in `dir` on the journal at `url`: its answer to GET /api/status, whole.
fn serve_status(dir: &Path, url: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        // The team's journal as a team sets it once: in the environment.
        .args(["serve", "cutover.yaml", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("RUNNER_NOW")
        .env("RUNNER_STATE", url)
        .env("PGPASSWORD", common::postgres::PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("serving on http://") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET /api/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    reply
}
