//! One `apply`/`rollback` at a time per state file, and "is that process still alive?".
//!
//! The lock is an advisory `flock` on `<state>.lock`, not a "pid file": the kernel drops a flock
//! when its process dies, kill -9 and OOM kills included, so a crash never leaves a stale lock
//! that blocks the resume at 3 a.m. The file's *contents* (who holds it) are only there so the
//! loser can tell the operator whom they are waiting for.
//!
//! The lock file is never deleted: unlinking a flock'ed file lets a third process create a new
//! file under the same name and lock that, and then two runners both believe they hold the lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Who holds (or wants) the lock; written into the lock file as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub since: Timestamp,
    /// The runner subcommand, e.g. `apply` or `rollback`.
    pub command: String,
}

impl Holder {
    /// A holder describing this process; the host name falls back to `unknown` because the
    /// holder text is informational only.
    pub fn this_process(command: &str, user: &str, since: Timestamp) -> Holder {
        Holder {
            pid: std::process::id(),
            host: host_name().unwrap_or_else(|_| "unknown".to_owned()),
            user: user.to_owned(),
            since,
            command: command.to_owned(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {} since {} (runner {}, user {})",
            self.pid, self.host, self.since, self.command, self.user
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock. `holder` is `None` when its file could not be read or
    /// parsed, e.g. in the instant between its `flock` and its write.
    #[error("{path} is locked by {}", match holder {
        Some(h) => h.to_string(),
        None => "another process (holder not readable)".to_owned(),
    })]
    Held {
        path: PathBuf,
        holder: Option<Holder>,
    },
    /// The lease table of a PostgreSQL journal could not be reached or written.
    #[error("cannot take the lease of {location}: {message}")]
    Store { location: String, message: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    // Closing this descriptor releases the flock. std opens files with O_CLOEXEC, so local step
    // commands and ssh children never inherit it and cannot keep the lock alive after we exit.
    // `None` for a journal on PostgreSQL, which has a lease instead.
    file: Option<File>,
    lease: Option<super::pg::Lease>,
    path: PathBuf,
    holder: Holder,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// The lease, for a journal on PostgreSQL.
    pub fn lease(&self) -> Option<&super::pg::Lease> {
        self.lease.as_ref()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Clear our details before the close releases the lock, so the next reader never sees a
        // holder that is gone. Failure only leaves stale text behind, which the next holder
        // overwrites; nothing to report from a destructor.
        if let Some(file) = &self.file {
            let _ = file.set_len(0);
        }
    }
}

/// The lock file used for `state_path`: the same name with `.lock` appended.
pub fn lock_path(state_path: &Path) -> PathBuf {
    let mut name = state_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock for `state_path` without waiting, creating `<state>.lock` (and its
/// directory) if needed, and records `holder` in it.
///
/// The lock is named from the journal's real path (symlinks resolved): a journal reached by
/// two spellings is still locked once.
pub fn acquire(state_path: &Path, holder: &Holder) -> Result<LockGuard, LockError> {
    if let Some(loc) = super::pg::parse_location(state_path) {
        let lease = super::pg::acquire(&loc, holder)?;
        return Ok(LockGuard {
            file: None,
            lease: Some(lease),
            path: state_path.to_owned(),
            holder: holder.clone(),
        });
    }
    let path = lock_path(&super::resolve_path(state_path));
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;

    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => {
                return Err(LockError::Held {
                    holder: read_holder(&mut file),
                    path,
                });
            }
            _ => return Err(io_err(err)),
        }
    }

    let text = serde_json::to_string(holder).map_err(|e| io_err(io::Error::other(e)))?;
    file.set_len(0).map_err(io_err)?;
    file.write_all_at(text.as_bytes(), 0).map_err(io_err)?;
    Ok(LockGuard {
        file: Some(file),
        lease: None,
        path,
        holder: holder.clone(),
    })
}

/// Reads who holds the lock for `state_path` without trying to take it; `None` if the file is
/// missing, empty or unreadable. For `runner status`.
pub fn read_holder_of(state_path: &Path) -> Option<Holder> {
    if let Some(loc) = super::pg::parse_location(state_path) {
        return super::pg::holder_of(&loc);
    }
    let mut file = File::open(lock_path(&super::resolve_path(state_path))).ok()?;
    read_holder(&mut file)
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    // A holder record is a few hundred bytes; refuse to slurp anything absurd.
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a process with this pid exists on this machine.
///
/// `EPERM` means it exists but belongs to someone else, which still counts as alive: the
/// question is "could a step still be running?", and guessing "dead" there would run a
/// non-idempotent step twice.
pub fn process_alive(pid: u32) -> bool {
    // pid 0 and anything that is negative as pid_t would signal process groups, not a process.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks, delivers nothing.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This machine's host name, as recorded in attempts and in the lock file.
pub fn host_name() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // POSIX does not promise NUL termination when the name is truncated.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_appends_suffix() {
        assert_eq!(
            lock_path(Path::new(".runner/cutover.db")),
            PathBuf::from(".runner/cutover.db.lock")
        );
    }

    #[test]
    fn process_alive_rejects_group_pids() {
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn host_name_is_not_empty() {
        let name = host_name().unwrap();
        assert!(!name.is_empty());
        assert!(!name.contains('\0'));
    }
}
