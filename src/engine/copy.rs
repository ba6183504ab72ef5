//! Copy and fetch steps: a file read from a target over that target's transport, verified
//! against the SHA-256 the target computed, and written either to another target (a copy,
//! through the upload every transport has: beside the destination, verified there, renamed
//! into place) or to this machine (a fetch: beside the destination, verified, renamed).
//!
//! A copy passes through a spool file in the run folder (mode 0600, removed afterwards), so
//! that a file of any size costs disk, not memory, and the two targets' connections are never
//! held at once. Both are idempotent: a destination is replaced only by a verified copy, so
//! doing one again gives the same result, and an interrupted one is simply done again. Both
//! keep the step's timeout and stop on the second Ctrl-C ([`TransferLimit`]), in either half.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::attempt::Lost;
use super::output::PairOutput;
use super::pair::shell_for;
use super::transfer_limit::{exit_of, TransferLimit};
use super::Session;
use crate::playbook::{Rendered, RenderedAction};
use crate::transport::{download, random_token, CommandExit, FileDigest, Halt, TransportError};

/// How a copy or fetch went wrong.
enum Failure {
    /// Nothing was replaced.
    Failed(String),
    /// A connection died part-way: the destination may or may not be replaced yet.
    Lost(String),
    /// The step's timeout, or the second Ctrl-C: nothing was replaced.
    Halted(Halt),
}

type Outcome = Result<Result<CommandExit, String>, Lost>;

/// Runs a copy or fetch step's action for the pair's `target` (a copy's destination), within
/// `limit`.
pub(super) fn transfer(
    s: &Session<'_>,
    target: &str,
    r: &Rendered,
    limit: &TransferLimit,
    out: &mut PairOutput<'_, '_>,
) -> Outcome {
    let done = match &r.action {
        RenderedAction::Copy {
            from, path, dest, ..
        } => copy(s, limit, from, path, target, dest, out),
        RenderedAction::Fetch { path, dest } => fetch(s, limit, target, path, dest, out),
        _ => Err(Failure::Failed(
            "internal error: not a copy or fetch".into(),
        )),
    };
    match done {
        Ok(note) => {
            out.note(&note);
            Ok(Ok(CommandExit::Code(0)))
        }
        Err(Failure::Failed(m)) => Ok(Err(m)),
        Err(Failure::Lost(m)) => Err(Lost(m)),
        Err(Failure::Halted(halt)) => Ok(Ok(exit_of(halt))),
    }
}

/// From `from` to a spool file, then uploaded from there to `to`, verified against the
/// source's SHA-256.
fn copy(
    s: &Session<'_>,
    limit: &TransferLimit,
    from: &str,
    path: &str,
    to: &str,
    dest: &str,
    out: &mut PairOutput<'_, '_>,
) -> Result<String, Failure> {
    out.note(&format!(
        "copying {path} from `{from}` to {dest} on `{to}`, through this machine"
    ));
    let mut spool = Spool::create(s.runlog.dir())?;
    let digest = read_into(s, limit, from, path, &mut spool.file)?;
    let shell = shell_for(s, to);
    let sent = s.pool.with(s.pb, &s.secrets, to, |t| {
        t.upload(&spool.path, &digest, dest, shell, &mut |_| limit.check())
    });
    match sent {
        Err(e) => Err(Failure::Failed(e.to_string())),
        Ok(Err(e)) => Err(failure(limit, e)),
        Ok(Ok(())) => Ok(format!(
            "copied {} bytes from {path} on `{from}` to {dest} on `{to}`; `{to}` has the SHA-256 `{from}` computed, {}",
            digest.bytes, digest.sha256
        )),
    }
}

/// From `target` to a new file beside `dest`, verified, then renamed over `dest`.
fn fetch(
    s: &Session<'_>,
    limit: &TransferLimit,
    target: &str,
    path: &str,
    dest: &Path,
    out: &mut PairOutput<'_, '_>,
) -> Result<String, Failure> {
    out.note(&format!(
        "fetching {path} from `{target}` to {} on this machine",
        dest.display()
    ));
    let parent = dest.parent().unwrap_or(Path::new("."));
    make_folders(parent).map_err(|e| {
        Failure::Failed(format!(
            "cannot fetch to {}: the folder {} cannot be made on this machine: {e}",
            dest.display(),
            parent.display()
        ))
    })?;
    let before = FileDigest::of_file(dest).ok();
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = parent.join(format!(
        ".{}.runner-{}",
        name.unwrap_or_default(),
        random_token()
    ));
    let placed = fetch_beside(s, limit, target, path, dest, &temp);
    if placed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    let digest = placed?;
    let was = match before {
        None => String::new(),
        Some(b) if b == digest => "; the file there was the same already".into(),
        Some(b) => format!(
            "; it replaced a different file ({} bytes, SHA-256 {})",
            b.bytes, b.sha256
        ),
    };
    Ok(format!(
        "fetched {path} from `{target}` to {} ({} bytes, the SHA-256 `{target}` computed, {}){was}",
        dest.display(),
        digest.bytes,
        digest.sha256
    ))
}

/// Makes `folder` and the folders above it that are missing, private (0700: what is fetched is
/// often the customer's data). Folders that exist are left as they are.
fn make_folders(folder: &Path) -> std::io::Result<()> {
    if folder.as_os_str().is_empty() || folder.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

/// Writes `temp`, checks it against the target's digest, and renames it over `dest` (with
/// the permissions of the file it replaces), unless `limit` stops it first.
fn fetch_beside(
    s: &Session<'_>,
    limit: &TransferLimit,
    target: &str,
    path: &str,
    dest: &Path,
    temp: &Path,
) -> Result<FileDigest, Failure> {
    let local = |what: &str, e: io::Error| {
        Failure::Failed(format!("cannot {what} {}: {e}", temp.display()))
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(|e| local("create", e))?;
    let digest = read_into(s, limit, target, path, &mut file)?;
    file.sync_all().map_err(|e| local("write", e))?;
    drop(file);
    let written = FileDigest::of_file(temp).map_err(|e| local("read back", e))?;
    if written != digest {
        return Err(Failure::Failed(format!(
            "the copy written to {} has {} bytes with SHA-256 {}, not the {} bytes with SHA-256 {} that arrived; check this machine's disk, then run the step again",
            temp.display(),
            written.bytes,
            written.sha256,
            digest.bytes,
            digest.sha256
        )));
    }
    limit.check().map_err(Failure::Halted)?;
    if let Ok(meta) = fs::metadata(dest) {
        let _ = fs::set_permissions(temp, meta.permissions());
    }
    fs::rename(temp, dest).map_err(|e| {
        Failure::Failed(format!(
            "cannot move the verified copy {} to {}: {e}",
            temp.display(),
            dest.display()
        ))
    })?;
    Ok(digest)
}

/// Reads `path` on `target` into `file`, verified (see [`download`]); `limit` stops it
/// between blocks.
fn read_into(
    s: &Session<'_>,
    limit: &TransferLimit,
    target: &str,
    path: &str,
    file: &mut File,
) -> Result<FileDigest, Failure> {
    let shell = shell_for(s, target);
    let read = s.pool.with(s.pb, &s.secrets, target, |t| {
        download(t, path, shell, &limit.control(), &mut limit.sink(file))
    });
    match read {
        Err(e) => Err(Failure::Failed(e.to_string())),
        Ok(Err(e)) => Err(failure(limit, e)),
        Ok(Ok(d)) => Ok(d),
    }
}

fn failure(limit: &TransferLimit, e: TransportError) -> Failure {
    if let Some(halt) = limit.halt_of(&e) {
        Failure::Halted(halt)
    } else if e.is_connection_lost() {
        Failure::Lost(format!(
            "{e}; the destination may or may not be replaced yet"
        ))
    } else {
        Failure::Failed(e.to_string())
    }
}

/// A copy's file between its two targets: in the run folder, readable by this user only,
/// removed when dropped.
struct Spool {
    path: PathBuf,
    file: File,
}

impl Spool {
    /// A new spool file in the run folder `dir`, after removing those a killed run left in
    /// the other run folders of this journal (only one apply holds its lock: none of them is
    /// in use).
    fn create(dir: &Path) -> Result<Spool, Failure> {
        if let Some(runs) = dir.parent() {
            remove_stale(runs, dir);
        }
        let path = dir.join(format!("copy-{}.part", random_token()));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| {
            Failure::Failed(format!(
                "cannot create the copy's spool file {}: {e}",
                path.display()
            ))
        })?;
        Ok(Spool { path, file })
    }
}

/// Removes `copy-*.part` in the run folders under `runs` other than `current`.
fn remove_stale(runs: &Path, current: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for run in entries.filter_map(Result::ok).map(|e| e.path()) {
        if run == current || !run.is_dir() {
            continue;
        }
        for file in fs::read_dir(&run)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with("copy-") && name.ends_with(".part") {
                match fs::remove_file(file.path()) {
                    Ok(()) => {
                        tracing::info!(file = %file.path().display(), "removed the spool file of a copy a killed run left")
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.path().display(), error = %e, "could not remove the spool file of a killed run")
                    }
                }
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(file = %self.path.display(), error = %e, "could not remove a copy's spool file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_file_is_private_and_removed_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::create(dir.path()).ok().expect("spool");
        let path = spool.path.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(spool);
        assert!(!path.exists());
    }

    #[test]
    fn spool_files_of_killed_runs_are_removed_and_nothing_else() {
        let runs = tempfile::tempdir().expect("tempdir");
        let (old, now) = (runs.path().join("r1"), runs.path().join("r2"));
        fs::create_dir(&old).expect("mkdir");
        fs::create_dir(&now).expect("mkdir");
        fs::write(old.join("copy-abc.part"), b"x").expect("write");
        fs::write(old.join("events.jsonl"), b"x").expect("write");
        let spool = Spool::create(&now).ok().expect("spool");
        assert!(!old.join("copy-abc.part").exists());
        assert!(old.join("events.jsonl").exists());
        assert!(spool.path.exists());
    }
}
