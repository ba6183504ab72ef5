//! A throwaway PostgreSQL cluster for a test: initdb in a temporary folder, owned by an
//! unprivileged user (`nobody` when the tests run as root, which the server refuses to be),
//! listening on a free loopback port and a socket in that folder; stopped and removed on drop.
//! The TCP connections need a password (scram), so the runner's password lookup is exercised.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The password of the test cluster's superuser `runner`.
pub const PASSWORD: &str = "test-pw-0417";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The folder holding initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test.sh installs Debian's postgresql)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new().prefix("pg-").tempdir().unwrap();
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            let c = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
            // nobody:nogroup
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if as_root {
            let c = std::ffi::CString::new(pwfile.as_os_str().as_encoded_bytes()).unwrap();
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        }
        let pg = Postgres {
            bin: bin_dir(),
            port: free_port(),
            dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data().to_str().unwrap(),
                "-U",
                "runner",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "--no-instructions",
            ],
        );
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server tool, run as the unprivileged owner of the cluster.
    fn tool(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .tool(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once (as a crash would) and starts it again on the same port.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// The URL for `--state`: no password in it.
    pub fn url(&self) -> String {
        format!("postgres://runner@127.0.0.1:{}/postgres", self.port)
    }

    /// The environment a runner needs to log in.
    pub fn env(&self) -> Vec<(&'static str, &'static str)> {
        vec![("PGPASSWORD", PASSWORD)]
    }

    /// A direct connection, to look at what the runner recorded.
    pub fn client(&self) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("runner")
            .password(PASSWORD)
            .dbname("postgres")
            .connect(postgres::NoTls)
            .unwrap()
    }
}

/// One cluster for the whole test process, started on first use: for suites that run many
/// small cases, each in a cutover (a schema) of its own. Statics are never dropped, so it is
/// stopped and removed when the process exits.
pub fn shared() -> &'static Postgres {
    static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        extern "C" fn stop_shared() {
            if let Some(pg) = SHARED.get() {
                pg.stop_quietly();
                let _ = std::fs::remove_dir_all(pg.dir.path());
            }
        }
        let pg = Postgres::start();
        // SAFETY: registers a plain function with no arguments, run once at exit.
        unsafe { libc::atexit(stop_shared) };
        pg
    })
}

impl Postgres {
    fn stop_quietly(&self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// A login role of the cluster that may only read: it has `default_transaction_read_only`
    /// and is granted SELECT, never more, on the shared tables and on each cutover schema
    /// existing when this is called (call it again after a cutover was created). Its password
    /// is [`PASSWORD`].
    pub fn reader_url(&self) -> String {
        let mut c = self.client();
        c.batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reader') THEN
                 CREATE ROLE reader LOGIN PASSWORD '{PASSWORD}';
               END IF;
             END $$;
             ALTER ROLE reader SET default_transaction_read_only = on;"
        ))
        .unwrap();
        let schemas: Vec<String> = c
            .query(
                "SELECT nspname::text FROM pg_namespace \
                 WHERE nspname = 'runner' OR nspname LIKE 'cutover\\_%'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for s in schemas {
            c.batch_execute(&format!(
                "GRANT USAGE ON SCHEMA \"{s}\" TO reader;
                 GRANT SELECT ON ALL TABLES IN SCHEMA \"{s}\" TO reader;"
            ))
            .unwrap();
        }
        format!("postgres://reader@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
