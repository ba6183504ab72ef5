//! Where a cutover's journal is on a server (`URL#cutover`), checking a `--state` URL, and
//! logging in: the password from PGPASSWORD or a password file (read as libpq reads it), TLS.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};

use crate::journal::JournalError;

/// Where a cutover's journal lives on PostgreSQL: the server and the cutover's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLocation {
    /// The URL as given, without a password (one is refused).
    pub url: String,
    pub cutover: String,
}

/// Whether `--state` names a PostgreSQL server rather than an SQLite file.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Why a state URL cannot be used. Bad input: exit 2.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error(
        "the state URL {0} holds a password; a password never goes on the command line or in \
         the playbook\n  = help: give it in PGPASSWORD or a password file (~/.pgpass or \
         PGPASSFILE, `host:port:database:user:password`), and use {1}"
    )]
    Password(String, String),
    #[error("the state URL {url} cannot be read: {why}")]
    Invalid { url: String, why: String },
}

/// Checks a `--state` URL: it parses, and it holds no password.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    let config = postgres::Config::from_str(url).map_err(|e| UrlError::Invalid {
        url: redact_url(url),
        why: e.to_string(),
    })?;
    if config.get_password().is_some() {
        return Err(UrlError::Password(redact_url(url), without_password(url)));
    }
    Ok(())
}

/// The URL with anything between `:` and `@` in its authority replaced.
fn redact_url(url: &str) -> String {
    without_password_with(url, ":***")
}

fn without_password(url: &str) -> String {
    without_password_with(url, "")
}

fn without_password_with(url: &str, with: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let auth = &rest[..auth_end];
    let mut out = url[..scheme_end + 3].to_owned();
    match auth.rfind('@') {
        Some(at) => {
            let userinfo = &auth[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            out.push_str(user);
            if userinfo.contains(':') {
                out.push_str(with);
            }
            out.push_str(&auth[at..]);
        }
        None => out.push_str(auth),
    }
    out.push_str(&rest[auth_end..]);
    // A password given as a query parameter goes too.
    if let Some(q) = out.find("password=") {
        let end = out[q..].find('&').map_or(out.len(), |e| q + e);
        out.replace_range(
            q..end,
            &format!("password={}", with.trim_start_matches(':')),
        );
    }
    out
}

/// The journal "path" that stands for a cutover on a server: `URL#cutover-name` (the name
/// percent-encoded). It travels through the engine like an SQLite path.
pub fn location_path(url: &str, cutover: &str) -> PathBuf {
    let mut s = url.to_owned();
    s.push('#');
    for b in cutover.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    PathBuf::from(s)
}

/// The location a journal path stands for, if it is a PostgreSQL one.
pub fn parse_location(path: &Path) -> Option<PgLocation> {
    let s = path.to_str()?;
    if !is_url(s) {
        return None;
    }
    let (url, name) = s.split_once('#').unwrap_or((s, ""));
    let mut bytes = Vec::new();
    let raw = name.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if let Some(v) = name
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                bytes.push(v);
                i += 3;
                continue;
            }
        }
        bytes.push(raw[i]);
        i += 1;
    }
    Some(PgLocation {
        url: url.to_owned(),
        cutover: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

impl PgLocation {
    /// The schema holding this cutover's tables.
    pub fn schema(&self) -> String {
        let digest = Sha256::digest(self.cutover.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("cutover_{hex}")
    }

    /// For messages: never holds a password (one is refused before we get here).
    pub fn display(&self) -> String {
        format!("{} (cutover `{}`)", redact_url(&self.url), self.cutover)
    }

    /// Connects, with the password from PGPASSWORD or the password file if the server wants one.
    pub fn connect(&self) -> Result<Client, JournalError> {
        let mut config = postgres::Config::from_str(&self.url).map_err(|e| self.err(e))?;
        if config.get_password().is_some() {
            return Err(JournalError::Store(format!(
                "{}: the state URL holds a password; use PGPASSWORD or a password file",
                self.display()
            )));
        }
        if config.get_user().is_none() {
            if let Some(u) = std::env::var("PGUSER")
                .ok()
                .or_else(|| std::env::var("USER").ok())
            {
                config.user(&u);
            }
        }
        let (password, ignored) = password_for(&config);
        if let Some(pw) = password {
            config.password(pw);
        }
        config.connect_timeout(Duration::from_secs(10));
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("runner");
        // TLS as the URL's `sslmode` says (libpq's default `prefer`: TLS when the server offers
        // it). The server's certificate is verified against the system's trusted roots, or
        // PGSSLROOTCERT; `sslmode=disable` turns TLS off.
        let failed = |e: postgres::Error| match &ignored {
            Some(file) => self.err(format!("{}\n  = note: {file}", crate::journal::pg_text(&e))),
            None => self.err(crate::journal::pg_text(&e)),
        };
        if config.get_ssl_mode() == postgres::config::SslMode::Disable {
            return config.connect(NoTls).map_err(failed);
        }
        let mut tls = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .map_err(|e| self.err(e))?;
        if let Some(ca) = std::env::var_os("PGSSLROOTCERT") {
            tls.set_ca_file(&ca).map_err(|e| {
                self.err(format!("PGSSLROOTCERT {}: {e}", Path::new(&ca).display()))
            })?;
        }
        let tls = postgres_openssl::MakeTlsConnector::new(tls.build());
        config.connect(tls).map_err(failed)
    }

    fn err(&self, e: impl std::fmt::Display) -> JournalError {
        JournalError::Store(format!("{}: {e}", self.display()))
    }
}

/// A password file that was not read, as libpq would not read it: said once as a warning, and
/// again with the error if the server then refuses the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the password file {} was ignored: {why}; like libpq (psql), runner reads a password \
     file only if it is a plain file that nobody but its owner may read or write \
     (chmod 600 {})",
    path.display(),
    path.display()
)]
pub struct IgnoredPasswordFile {
    pub path: PathBuf,
    pub why: String,
}

/// libpq's usual places: PGPASSWORD, then the password file (PGPASSFILE or ~/.pgpass). The
/// file is ignored, as libpq ignores it, when it is not a plain file or when its group or
/// others have any access to it: a password others can read is not a secret any more.
fn password_for(config: &postgres::Config) -> (Option<String>, Option<IgnoredPasswordFile>) {
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        return (Some(pw), None);
    }
    let Some(file) = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))
    else {
        return (None, None);
    };
    match private_file(&file) {
        Ok(Some(text)) => (file_password(config, &text), None),
        Ok(None) => (None, None),
        Err(ignored) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| tracing::warn!("{ignored}"));
            (None, Some(ignored))
        }
    }
}

/// The text of a password file, `None` if there is none (or it cannot be read, which libpq
/// passes over silently too), or why it must be ignored.
fn private_file(path: &Path) -> Result<Option<String>, IgnoredPasswordFile> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    let ignored = |why: String| IgnoredPasswordFile {
        path: path.to_owned(),
        why,
    };
    if !meta.is_file() {
        return Err(ignored("it is not a plain file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ignored(format!(
            "its group or others have access to it (mode {mode:04o}); it must be 0600 or less"
        )));
    }
    Ok(std::fs::read_to_string(path).ok())
}

/// The password for `config`'s server, database and user in a password file's text.
fn file_password(config: &postgres::Config, text: &str) -> Option<String> {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(_)) | None => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    let user = config.get_user().unwrap_or_default();
    pgpass_lookup(text, &[&host, &port, db, user])
}

/// The password of the first line of a password file that matches (`*` matches anything;
/// `\:` and `\\` are escapes), as libpq reads it.
pub fn pgpass_lookup(text: &str, want: &[&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want.iter())
            .all(|(f, w)| f == "*" || f == w)
        {
            return fields.pop();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_not_repeated() {
        let e = check_url("postgres://alice:s3cret@db:5432/runner").unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("postgres://alice@db:5432/runner"), "{text}");
        assert!(check_url("postgres://alice@db:5432/runner?password=s3cret").is_err());
        check_url("postgres://alice@db:5432/runner").unwrap();
    }

    #[test]
    fn a_location_round_trips_any_cutover_name() {
        for name in ["exchange 2003 → 2010", "a#b%c/d", "plain"] {
            let p = location_path("postgres://u@h:1/db", name);
            let loc = parse_location(&p).unwrap();
            assert_eq!(loc.cutover, name);
            assert_eq!(loc.url, "postgres://u@h:1/db");
        }
        assert!(parse_location(Path::new(".runner/x.db")).is_none());
    }

    #[test]
    fn a_password_file_is_read_only_when_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:pw\n").unwrap();
        for (mode, read) in [(0o600, true), (0o400, true), (0o640, false), (0o606, false)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(private_file(&file).is_ok(), read, "{mode:o}");
        }
        assert!(private_file(dir.path()).is_err());
        assert_eq!(private_file(&dir.path().join("none")), Ok(None));
    }

    #[test]
    fn the_password_file_is_read_as_libpq_does() {
        let text = "# comment\nother:5432:*:*:no\ndb\\:x:*:runner:alice:yes\\:it\n*:*:*:*:any\n";
        assert_eq!(
            pgpass_lookup(text, &["db:x", "5432", "runner", "alice"]).as_deref(),
            Some("yes:it")
        );
        assert_eq!(
            pgpass_lookup(text, &["db", "5432", "runner", "bob"]).as_deref(),
            Some("any")
        );
    }
}
