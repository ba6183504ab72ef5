//! Transports run steps on targets: on this machine ([`LocalTransport`]) or over SSH
//! ([`SshTransport`]), behind the one [`Transport`] trait the engine talks to.
//!
//! The engine gives every step × target its own OS thread, so everything here is blocking.
//! A transport is owned by one thread at a time (`Send`, not `Sync`).

pub mod cause;
pub mod download;
mod error;
pub mod known_hosts;
pub mod local;
mod orphan;
pub mod relay;
pub mod shell;
pub mod ssh;
pub mod upload_buffer;
pub mod winrm;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use cause::{AuthFailure, LostCause};
pub use download::download;
pub use known_hosts::{check_host_key, scan_host_key, trust, HostKey, HostKeyStatus, TrustOutcome};
pub use local::LocalTransport;
pub use ssh::{SshAuth, SshConfig, SshTransport};
pub use winrm::{WinrmConfig, WinrmTransport};

/// The interpreter a step's script is written for (playbook `shell:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shell {
    /// POSIX `sh`; never the login shell, whose dialect we cannot know.
    Sh,
    /// Windows `cmd.exe`.
    Cmd,
    /// Windows PowerShell (`powershell.exe`), or `pwsh` when run locally on Unix.
    PowerShell,
}

impl fmt::Display for Shell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shell::Sh => "sh",
            Shell::Cmd => "cmd",
            Shell::PowerShell => "powershell",
        })
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Per-exec limits. The engine keeps a clone of `cancel` and sets it on the second Ctrl-C.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Wall-clock limit for the command; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Set to stop the command now; polled at least every few hundred milliseconds.
    pub cancel: Arc<AtomicBool>,
    /// Environment variables the command gets (a step's `env`), passed the way the transport
    /// keeps them out of every command line: over SSH on the wrapper's standard input, over
    /// WinRM in the shell's environment, locally in the child's environment. A name is
    /// `[A-Za-z_][A-Za-z0-9_]*`; a value holds no NUL.
    pub env: Vec<(String, Secret)>,
    /// What the command reads on its standard input (a step's `stdin`), followed by a newline
    /// and the end of input. Without it a command reads nothing.
    pub stdin: Option<Secret>,
}

impl Control {
    pub fn new(timeout: Option<Duration>) -> Self {
        Control {
            timeout,
            cancel: Arc::new(AtomicBool::new(false)),
            env: Vec::new(),
            stdin: None,
        }
    }

    /// True when the command gets environment variables or standard input.
    pub fn has_input(&self) -> bool {
        !self.env.is_empty() || self.stdin.is_some()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// How a command on a target ended (not to be confused with [`crate::exit::Exit`], how the
/// `runner` process ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandExit {
    /// The exit code. `i64` so that Windows' unsigned codes (3010, 4294967295) survive intact;
    /// a Unix command killed by signal N reports 128 + N, as shells do.
    Code(i64),
    /// The timeout expired; the command and its children were stopped.
    TimedOut,
    /// [`Control::cancel`] was set; the command and its children were stopped.
    Cancelled,
}

/// The size and SHA-256 an upload must leave on the target.
pub use crate::digest::FileDigest;

/// Why a transfer's caller stopped it part-way: the step's timeout, or the second Ctrl-C.
/// Returned by an upload's pace (see [`Transport::upload`]), or carried by the `io::Error` a
/// download's sink fails with ([`Halt::error`]); either way the transfer ends with
/// [`TransportError::Halted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    #[error("its time limit was reached")]
    TimedOut,
    #[error("the operator interrupted it")]
    Cancelled,
}

impl Halt {
    /// The halt a command stopped by its [`Control`] stands for, when it was stopped.
    pub fn of_exit(exit: CommandExit) -> Option<Halt> {
        match exit {
            CommandExit::TimedOut => Some(Halt::TimedOut),
            CommandExit::Cancelled => Some(Halt::Cancelled),
            CommandExit::Code(_) => None,
        }
    }

    /// The error a download's sink refuses bytes with.
    pub fn error(self) -> io::Error {
        io::Error::other(self)
    }

    /// The halt an I/O error carries, if it is one made by [`Halt::error`].
    pub fn of(e: &io::Error) -> Option<Halt> {
        e.get_ref()?.downcast_ref::<Halt>().copied()
    }
}

/// Told the bytes sent so far, before a transfer's first block and after each: `Err` stops
/// the transfer (see [`Transport::upload`]).
pub type Pace<'a> = &'a mut dyn FnMut(u64) -> Result<(), Halt>;

pub use orphan::{Announce, Identity, Orphan, OrphanStop, ORPHAN_REASON};

/// Passwords and passphrases handed to transports: the crate's one secret type.
pub use crate::secret::Secret;

pub use error::{SourceChanged, TransportError};

/// One way of reaching a target. See the module documentation for threading.
pub trait Transport: Send {
    /// E.g. "ssh root@127.0.0.2:2201", for logs and errors (never contains secrets).
    fn describe(&self) -> String;

    /// Connect if not connected; re-establish a session that was lost. Cheap when already up.
    fn connect(&mut self) -> Result<(), TransportError>;

    /// Run `script` with `shell` on the target, streaming output chunks as they arrive.
    /// On timeout or cancel the command and its children no longer run when this returns
    /// (or the error says they might).
    fn exec(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError>;

    /// Copy a local file to `dest` on the target, then verify on the target that it holds
    /// exactly `expected`: the size and SHA-256 the plan was made with, so that what lands is
    /// what was reviewed (the file is not hashed again while sending). `shell` selects how the
    /// target is asked for the hash. A missing parent directory of `dest` is an error naming
    /// it; it is not created. `pace` is told the bytes sent, before the first block, after
    /// each, and again before the verified file replaces `dest`: when it returns `Err` the
    /// upload stops, its temporary file is removed (unless the
    /// connection is gone), `dest` is left as it was, and the error is
    /// [`TransportError::Halted`].
    fn upload(
        &mut self,
        src: &Path,
        expected: &FileDigest,
        dest: &str,
        shell: Shell,
        pace: Pace<'_>,
    ) -> Result<(), TransportError>;

    /// Reads the file `path` on the target into `sink`: the target computes the file's size
    /// and SHA-256 (returned), then its bytes follow, streamed (never the whole file in
    /// memory). Whether the bytes match the digest is checked by [`download()`], the only
    /// caller. `shell` selects how the target is asked for the hash. A relative `path` is
    /// relative to where the target's commands start.
    /// When `sink` fails with [`Halt::error`], the read stops and the error is
    /// [`TransportError::Halted`]; so does the hashing on the target (minutes for a large
    /// file) when `ctl`'s timeout passes or its cancel is set.
    fn read_file(
        &mut self,
        path: &str,
        shell: Shell,
        ctl: &Control,
        sink: &mut dyn Write,
    ) -> Result<FileDigest, TransportError>;

    /// Like [`Transport::exec`], for a step's command, which can be found again by `id` (see
    /// [`Identity`]). Transports that cannot name a command run it as `exec` does.
    fn exec_identified(
        &mut self,
        script: &str,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let _ = id;
        self.exec(script, shell, ctl, out)
    }

    /// Like [`Transport::run_script`], identified as for [`Transport::exec_identified`].
    fn run_script_identified(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        id: Identity<'_>,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError> {
        let _ = id;
        self.run_script(local, shell, ctl, out)
    }

    /// What the last `exec` or `run_script` may have left running on the target when it
    /// failed with the connection lost (or with the command impossible to stop): taken, so a
    /// second call returns `None`. Asked only after a failure, so a normal step pays nothing.
    fn take_orphan(&mut self) -> Option<Orphan> {
        None
    }

    /// Stops `orphan` if it still runs, after making sure it is still that command (see
    /// [`Orphan`]); connects first. An error means it may still be running.
    fn stop_orphan(&mut self, orphan: &Orphan) -> Result<OrphanStop, TransportError> {
        Err(TransportError::KillFailed {
            target: self.describe(),
            reason: ORPHAN_REASON,
            message: format!(
                "{} cannot stop a command it lost ({})",
                self.describe(),
                orphan.describe()
            ),
        })
    }

    /// Put `local` on the target as a temporary file, run it with `shell`, remove it again
    /// (also when it fails, times out or is cancelled).
    fn run_script(
        &mut self,
        local: &Path,
        shell: Shell,
        ctl: &Control,
        out: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<CommandExit, TransportError>;
}

/// Reads a local script for `run_script`, with an error that names it.
pub(crate) fn read_script(local: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(local).map_err(|source| TransportError::Io {
        context: format!("cannot read script {}", local.display()),
        source,
    })
}

/// Runs `run` with an output sink that collects both streams, for short helper commands whose
/// output is read rather than shown. Returns the exit and stdout and stderr as text.
pub fn capture<E>(
    run: impl FnOnce(&mut dyn FnMut(Stream, &[u8])) -> Result<CommandExit, E>,
) -> Result<(CommandExit, String, String), E> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let exit = run(&mut |s, b| match s {
        Stream::Stdout => stdout.extend_from_slice(b),
        Stream::Stderr => stderr.extend_from_slice(b),
    })?;
    Ok((
        exit,
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    ))
}

/// A name for temporary files that nobody can guess (they live in shared temp directories).
pub(crate) fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 12];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_os {
        // No /dev/urandom (Windows): std's per-process random hash keys are good enough for a
        // file name that is also created exclusively.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        let a = h.finish().to_le_bytes();
        bytes[..8].copy_from_slice(&a);
    }
    hex(&bytes)
}

pub(crate) use crate::digest::hex;

/// The error for an upload whose target content is not `expected`: reads `src` again to tell
/// a local file that changed since the plan (review again) from a damaged copy (send again).
pub(crate) fn upload_mismatch(
    target: String,
    src: &Path,
    dest: &str,
    expected: &FileDigest,
    actual: FileDigest,
) -> TransportError {
    let now = FileDigest::of_file(src);
    match now {
        Ok(now) if now == *expected => TransportError::UploadVerify {
            target,
            dest: dest.to_string(),
            expected_bytes: expected.bytes,
            expected_sha256: expected.sha256.clone(),
            actual_bytes: actual.bytes,
            actual_sha256: actual.sha256,
        },
        now => TransportError::UploadSourceChanged(Box::new(SourceChanged {
            target,
            src: src.display().to_string(),
            dest: dest.to_string(),
            expected_bytes: expected.bytes,
            expected_sha256: expected.sha256.clone(),
            now: match now {
                Ok(d) => format!("{} bytes with SHA-256 {}", d.bytes, d.sha256),
                Err(e) => format!("an error when read: {e}"),
            },
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn orphan_notes_round_trip_and_refuse_garbage() {
        for o in [
            Orphan::Process {
                pid: Some(4242),
                token: "0a1b2c".into(),
            },
            Orphan::Process {
                pid: None,
                token: "0a1b2c".into(),
            },
            Orphan::WinrmShell {
                shell_id: "5F1A-22".into(),
            },
            Orphan::WinrmShell {
                shell_id: "uuid:0179DFE0-5409-4F07-946E-54635608A269".into(),
            },
        ] {
            assert_eq!(Orphan::from_note(&o.to_note()), Some(o));
        }
        // Nothing from a note reaches a shell unless it is plain: no quotes, no spaces.
        assert_eq!(Orphan::from_note("process pid=12 token=a'b"), None);
        assert_eq!(Orphan::from_note("process pid=x token=ab"), None);
        assert_eq!(Orphan::from_note("process pid=1 token=ab"), None);
        assert_eq!(Orphan::from_note("process pid=12"), None);
        assert_eq!(Orphan::from_note("daemon pid=12 token=ab"), None);
        assert_eq!(Orphan::from_note("winrm-shell id=uuid:<x>"), None);
        assert_eq!(Orphan::from_note("winrm-shell id=a:b"), None);
    }

    #[test]
    fn lost_connections_and_failed_logins_keep_the_error_that_said_so() {
        let refused = ssh2::Error::new(ssh2::ErrorCode::Session(-18), "Authentication failed");
        let auth = TransportError::Auth {
            target: "t".into(),
            user: "u".into(),
            method: "public key",
            reason: AuthFailure::Ssh(refused),
            hint: "h",
        };
        assert_eq!(
            auth.to_string(),
            "authentication as u on t with public key failed: Authentication failed; h"
        );
        match &auth {
            TransportError::Auth {
                reason: AuthFailure::Ssh(e),
                ..
            } => assert_eq!(e.code(), ssh2::ErrorCode::Session(-18)),
            other => panic!("{other:?}"),
        }
        let io = io::Error::new(io::ErrorKind::BrokenPipe, "Broken pipe");
        let lost = TransportError::ConnectionLost {
            target: "t".into(),
            during: "running a command".into(),
            cause: io.into(),
        };
        assert_eq!(
            lost.to_string(),
            "connection to t lost while running a command: Broken pipe"
        );
        match &lost {
            TransportError::ConnectionLost {
                cause: LostCause::Io(e),
                ..
            } => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connection_errors_are_retryable_others_not() {
        let lost = TransportError::ConnectionLost {
            target: "t".into(),
            during: "x".into(),
            cause: "m".into(),
        };
        assert!(lost.is_connection_lost());
        let auth = TransportError::Auth {
            target: "t".into(),
            user: "u".into(),
            method: "password",
            reason: AuthFailure::NotAccepted,
            hint: "h",
        };
        assert!(!auth.is_connection_lost());
    }
}
