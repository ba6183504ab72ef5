//! The vendored libssh2 against a hostile server (vendor/README.md, "Security fixes"): a
//! server that lies in the key exchange must make the connection fail as a handshake error,
//! not loop, crash or carry on. The server is tests/fixtures/hostile_sshd.py on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use runner::transport::ssh::HandshakeFailure;
use runner::transport::{SshAuth, SshConfig, SshTransport, Transport, TransportError};

/// The fake server's process, killed if the test ends before it exits by itself.
struct HostileServer {
    child: Child,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl HostileServer {
    fn start() -> HostileServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile_sshd.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start python3 {}: {e}", script.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let line = read_line(&mut stdout);
        let port = line
            .parse()
            .unwrap_or_else(|_| panic!("the fake server printed {line:?}, not a port"));
        HostileServer {
            child,
            stdout,
            port,
        }
    }

    /// What the server saw the client do after the lie: "stopped" (closed the connection) or
    /// "went-on" (answered the request that followed it). Waits until the server has seen the
    /// connection closed, which the server bounds.
    fn verdict(&mut self) -> String {
        read_line(&mut self.stdout)
    }
}

fn read_line(stdout: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("read the fake server's output");
    line.trim().to_string()
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CVE-2026-55199: EXT_INFO claiming 0xFFFFFFFF extensions made libssh2 spin over an empty
/// buffer four billion times, out of reach of any timeout, then go on with the connection. The
/// fake server follows it with a request that only a client which went on answers; the fixed
/// client rejects the EXT_INFO and closes the connection without reading further.
#[test]
fn ext_info_with_four_billion_extensions_fails_the_handshake() {
    let mut server = HostileServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = SshTransport::new(SshConfig {
        name: "hostile".into(),
        host: "127.0.0.1".into(),
        port: server.port,
        user: "nobody".into(),
        auth: SshAuth::Key {
            path: dir.path().join("never_read"),
            passphrase: None,
        },
        known_hosts: dir.path().join("known_hosts"),
        connect_timeout: Duration::from_secs(10),
        keepalive: runner::transport::ssh::DEFAULT_KEEPALIVE,
    });

    let err = t
        .connect()
        .expect_err("a lying server must not get a session");
    drop(t);
    assert_eq!(
        server.verdict(),
        "stopped",
        "the client must stop at the bad EXT_INFO, not go on with the connection ({err})"
    );
    // The cause is libssh2's own error, kept typed (with its code), not only as text.
    assert!(
        matches!(
            err,
            TransportError::Handshake {
                cause: HandshakeFailure::Ssh(_),
                ..
            }
        ),
        "expected a handshake error from libssh2, got: {err} ({err:?})"
    );
}
