//! Secrets: referenced by the playbook, read only when needed, never shown.
//!
//! A playbook names where a secret lives (`{ env: NAME }` or `{ file: PATH }`), never the
//! secret itself. Values are held in [`Secret`], whose `Debug` and `Display` print a mask, and
//! every piece of text that leaves the process (output, logs, journal, reports) passes through
//! a [`Redactor`] that knows all resolved values.

use std::fmt;
use std::path::{Path, PathBuf};

/// What is shown in place of a secret.
pub const MASK: &str = "********";

/// Where a secret comes from, as written in the playbook.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "{{ env: {name} }}"),
            SecretRef::File(path) => write!(f, "{{ file: {} }}", path.display()),
        }
    }
}

/// A secret value: masked when shown, zeroed when dropped. Clone it only to hand it to a
/// transport.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The only way to read the value: grep for `expose` to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: do not leave the value lying around in freed memory.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        for b in bytes.iter_mut() {
            // SAFETY: `b` is a valid, exclusive reference into the vector we own.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {name} is not set (the playbook reads a secret from it): export it before running")]
    EnvMissing { name: String },
    #[error("secret file {path} cannot be read: {source}")]
    FileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret from {origin} is empty")]
    Empty { origin: String },
}

impl SecretRef {
    /// Reads the secret. A file's trailing newline is not part of the secret.
    /// Relative file paths are resolved against `base` (the playbook's directory).
    pub fn resolve(&self, base: &Path) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvMissing { name: name.clone() })?
            }
            SecretRef::File(path) => {
                let full = base.join(crate::playbook::expand_home(path));
                let text = std::fs::read_to_string(&full).map_err(|source| {
                    SecretError::FileUnreadable {
                        path: full.clone(),
                        source,
                    }
                })?;
                text.trim_end_matches(['\n', '\r']).to_string()
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty {
                origin: self.to_string(),
            });
        }
        Ok(Secret(value))
    }
}

/// Replaces every known secret value in text with [`MASK`].
///
/// Values shorter than 4 characters are still masked: a short password is still a password,
/// and an over-eager mask in a log is a far smaller harm than a leak.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    pub fn add(&mut self, secret: &Secret) {
        let v = secret.expose();
        if !v.is_empty() && !self.values.iter().any(|known| known == v) {
            self.values.push(v.to_string());
            // Longest first, so a secret that contains another is masked whole.
            self.values.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The longest secret, in bytes: a streaming caller keeps this many bytes back so that a
    /// secret split across two chunks is still caught.
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, |v| v.len())
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?} {s}"), format!("{MASK} {MASK}"));
    }

    #[test]
    fn redactor_masks_every_occurrence_longest_first() {
        let mut r = Redactor::new();
        r.add(&Secret::new("abc"));
        r.add(&Secret::new("abcdef"));
        assert_eq!(r.redact("x abcdef y abc z"), format!("x {MASK} y {MASK} z"));
        assert_eq!(r.longest(), 6);
    }

    #[test]
    fn file_secret_drops_trailing_newline_and_env_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let s = SecretRef::File("pw".into()).resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), "s3cret");
        let err = SecretRef::Env("RUNNER_TEST_SURELY_UNSET_VAR".into())
            .resolve(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("RUNNER_TEST_SURELY_UNSET_VAR"));
    }
}
