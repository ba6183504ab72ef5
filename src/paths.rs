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
