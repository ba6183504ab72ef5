//! `runner apply` (and rollback, mark, trust) end to end: the real binary, real sshd servers on
//! 127.0.0.x, real journals. The targets are this same machine, so every test can look at what
//! a step really did: steps append to "ledger" files, and a ledger's lines count how often a
//! step ran.
//!
//! Synchronisation with a running runner is always by a condition (a marker file a step
//! creates, a "go" file the test creates), never by sleeping for a while.

use crate::common;
use crate::common::sshd::openssh_fingerprint;
use crate::common_cli;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::run::Run;
use crate::common::running::Running;
use crate::common::scene::{manual, step, Scene, Step};
use crate::common::{process_running, Sshd};

mod host_keys;
mod identity;
mod journal_file;
mod rollback;
mod runs;
mod secrets;
mod state_folder;
mod window;

/// A shell loop that waits (bounded, about 60 s) until `path` exists; exit 9 if it never does,
/// so a broken test fails instead of hanging.
fn wait_in_shell_for(path: &Path) -> String {
    format!(
        "i=0; until [ -e {p} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 9; sleep 0.05; done",
        p = path.display()
    )
}

/// The default journal of `dir/cutover.yaml`.
fn journal_path(dir: &Path) -> PathBuf {
    dir.join(".runner").join("cutover.db")
}

/// Lines of a ledger; none when the file does not exist (the step never ran).
fn lines(path: &Path) -> Vec<String> {
    match fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

fn db(dir: &Path) -> rusqlite::Connection {
    let path = journal_path(dir);
    assert!(path.exists(), "no journal at {}", path.display());
    rusqlite::Connection::open(&path).expect("open the journal")
}

/// Journal events (window decisions) of a kind, as (step, detail).
fn events(dir: &Path, kind: &str) -> Vec<(Option<String>, String)> {
    let conn = db(dir);
    let mut stmt = conn
        .prepare("SELECT step_id, detail FROM events WHERE kind = ?1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query events")
        .collect::<Result<_, _>>()
        .expect("read events")
}

/// Waits until `path` exists; fails at once if the runner ends first.
fn wait_for_file(path: &Path, runner: &mut Running) {
    runner.wait_while_running(&format!("{} to appear", path.display()), || path.exists());
}

fn keygen(path: &Path, passphrase: &str) {
    keygen_typed(path, "ed25519", passphrase);
}

fn keygen_typed(path: &Path, key_type: &str, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            key_type,
            "-C",
            "runner test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Succeeded run attempts, one per target.
fn succeeded_on<'a>(targets: &[&'a str]) -> Vec<(&'a str, &'static str, &'static str)> {
    targets.iter().map(|t| (*t, "run", "succeeded")).collect()
}
