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
                let full = base.join(crate::paths::expand_home(path));
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

/// Lines of a multi-line secret shorter than this (after trimming spaces) are not masked on
/// their own: a line such as `}` or `--` would mask half of every log. Whole secrets, of any
/// length, are always masked.
pub const MIN_SECRET_LINE: usize = 4;

/// Replaces every known secret value in text with [`MASK`].
///
/// Values shorter than 4 characters are still masked: a short password is still a password,
/// and an over-eager mask in a log is a far smaller harm than a leak.
///
/// Output is masked line by line, so a secret that spans lines (a key, a certificate, a
/// password with a newline) is also known by each of its lines of at least
/// [`MIN_SECRET_LINE`] characters, and every form is also known escaped as JSON and HTML show
/// it.
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
        let mut pieces = vec![v.to_string()];
        if v.contains(['\n', '\r']) {
            pieces.extend(
                v.split(['\n', '\r'])
                    .map(str::trim)
                    .filter(|l| l.chars().count() >= MIN_SECRET_LINE)
                    .map(str::to_string),
            );
        }
        for piece in pieces {
            let json = serde_json::to_string(&piece)
                .map(|q| q[1..q.len() - 1].to_string())
                .unwrap_or_default();
            let html = html_escaped(&piece);
            for form in [piece, json, html] {
                self.insert(form);
            }
        }
    }

    fn insert(&mut self, v: String) {
        if !v.is_empty() && !self.values.contains(&v) {
            self.values.push(v);
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

    /// Where a stream that must be cut (a line too long to keep whole) may be cut: at most
    /// `buf.len() - (longest - 1)`, so that a secret still arriving stays in the part kept
    /// back, and before any secret that lies across that point. 0 means: cut nowhere yet.
    pub fn safe_cut(&self, buf: &[u8]) -> usize {
        let mut cut = buf.len().saturating_sub(self.longest().saturating_sub(1));
        loop {
            let before = cut;
            for v in &self.values {
                let v = v.as_bytes();
                let from = cut.saturating_sub(v.len() - 1);
                if let Some(p) = (from..cut).find(|&p| buf[p..].starts_with(v)) {
                    cut = p;
                }
            }
            if cut == before {
                return cut;
            }
        }
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

/// Text as HTML shows it escaped (the report's escaping).
fn html_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

    #[test]
    fn every_line_of_a_multi_line_secret_is_masked_but_not_short_lines() {
        let mut r = Redactor::new();
        r.add(&Secret::new("first-line\r\n  second-line \nab\nlast"));
        assert_eq!(r.redact("x first-line y"), format!("x {MASK} y"));
        assert_eq!(r.redact("  second-line "), format!("  {MASK} "));
        assert_eq!(r.redact("ab"), "ab", "lines under MIN_SECRET_LINE stay");
        assert_eq!(r.redact("last"), MASK);
        // The whole value, as JSON escapes it.
        assert_eq!(
            r.redact(r#"{"v":"first-line\r\n  second-line \nab\nlast"}"#),
            format!(r#"{{"v":"{MASK}"}}"#)
        );
    }

    #[test]
    fn a_secret_is_known_as_json_and_html_show_it() {
        let mut r = Redactor::new();
        r.add(&Secret::new(r#"a"b<c&d'e\f"#));
        assert_eq!(r.redact(r#"x a\"b<c&d'e\\f y"#), format!("x {MASK} y"));
        assert_eq!(
            r.redact("x a&quot;b&lt;c&amp;d&#39;e\\f y"),
            format!("x {MASK} y")
        );
    }

    #[test]
    fn a_long_stream_is_never_cut_inside_a_secret() {
        let mut r = Redactor::new();
        r.add(&Secret::new("0123456789"));
        // A secret still arriving stays in the part kept back.
        let buf = b"aaaaaaaaaaaaaaaaaaaa01234";
        let cut = r.safe_cut(buf);
        assert!(cut <= 20, "{cut}");
        // A whole secret across the natural cut is not split either.
        let buf = b"aaaaaaaaaaaaaaaaaaaa0123456789bbbb";
        let cut = r.safe_cut(buf);
        assert!(cut <= 20 || cut >= 30, "{cut}");
    }
}
