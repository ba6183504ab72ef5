//! Paths as the user writes them: `~` for the home directory.
//!
//! A leaf: the playbook (key files, `known_hosts`), secrets (`{ file: ~/... }`) and the
//! transports' defaults read it.

use std::path::{Path, PathBuf};

/// Expands a leading `~/` to the home directory.
pub fn expand_home(path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    path.to_path_buf()
}

/// The folder of run `run` in `runs_dir`. Runs recorded before each journal had its own runs
/// folder are one level up (`.runner/runs/<run>`): they are found there.
pub fn run_folder(runs_dir: &std::path::Path, run: &str) -> std::path::PathBuf {
    let here = runs_dir.join(run);
    if here.exists() {
        return here;
    }
    match runs_dir.parent().map(|p| p.join(run)) {
        Some(legacy) if legacy.is_dir() => legacy,
        _ => here,
    }
}
