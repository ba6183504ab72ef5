//! The part of OpenSSH's client configuration (`~/.ssh/config`) a target with
//! `ssh_config: true` takes: `Host` blocks (patterns with `*` and `?`, `!` negation, several per
//! line) and, inside them, `HostName`, `Port`, `User`, `IdentityFile` and `ProxyJump`. As in
//! OpenSSH, the first value found for a keyword wins, and keywords before any `Host` line apply
//! to every host. `Match` blocks and `Include` are not read: what follows a `Match` line up to
//! the next `Host` line is skipped (and said so in [`SshConfigFile::ignored`]).

use std::path::{Path, PathBuf};

/// What the configuration says about one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    pub host_name: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// The first `IdentityFile`, `~` expanded against `home`.
    pub identity_file: Option<PathBuf>,
    /// `ProxyJump` as written: `[user@]host[:port]`, comma-separated, or `none`.
    pub proxy_jump: Option<String>,
}

/// One `Host` block: its patterns and its settings in order.
#[derive(Debug, Clone)]
struct Block {
    patterns: Vec<String>,
    settings: Vec<(String, String, usize)>,
}

/// A parsed configuration file.
#[derive(Debug, Clone)]
pub struct SshConfigFile {
    pub path: PathBuf,
    blocks: Vec<Block>,
    /// Lines with keywords this reader does not apply (`Match`, `Include`), with their number.
    pub ignored: Vec<(usize, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl SshConfigFile {
    /// Reads `path` (usually `~/.ssh/config`).
    pub fn read(path: &Path) -> Result<SshConfigFile, SshConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| SshConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SshConfigFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<SshConfigFile, SshConfigError> {
        let mut blocks = vec![Block {
            patterns: vec!["*".into()],
            settings: Vec::new(),
        }];
        let mut ignored = Vec::new();
        let mut skipping = false;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // `Keyword value`, `Keyword=value` or `Keyword = value`.
            let (kw, rest) = match line.find(|c: char| c.is_whitespace() || c == '=') {
                Some(p) => (&line[..p], line[p..].trim_start_matches([' ', '\t', '='])),
                None => (line, ""),
            };
            let value = unquote(rest.trim());
            match kw.to_ascii_lowercase().as_str() {
                "host" => {
                    skipping = false;
                    let patterns: Vec<String> =
                        value.split_whitespace().map(str::to_string).collect();
                    if patterns.is_empty() {
                        return Err(SshConfigError::Invalid {
                            path: path.to_path_buf(),
                            line: n,
                            message: "`Host` without a pattern".into(),
                        });
                    }
                    blocks.push(Block {
                        patterns,
                        settings: Vec::new(),
                    });
                }
                "match" | "include" => {
                    skipping = kw.eq_ignore_ascii_case("match");
                    ignored.push((n, line.to_string()));
                }
                _ if skipping => {}
                k @ ("hostname" | "port" | "user" | "identityfile" | "proxyjump") => {
                    if let Some(b) = blocks.last_mut() {
                        b.settings.push((k.to_string(), value.to_string(), n));
                    }
                }
                _ => {}
            }
        }
        Ok(SshConfigFile {
            path: path.to_path_buf(),
            blocks,
            ignored,
        })
    }

    /// The settings for `alias`, first value winning, `~/` in IdentityFile expanded against
    /// `home`; `%h` in HostName is the alias.
    pub fn lookup(&self, alias: &str, home: &Path) -> Result<HostSettings, SshConfigError> {
        let mut out = HostSettings::default();
        for b in &self.blocks {
            if !block_matches(&b.patterns, alias) {
                continue;
            }
            for (k, v, line) in &b.settings {
                match k.as_str() {
                    "hostname" if out.host_name.is_none() => {
                        out.host_name = Some(v.replace("%h", alias));
                    }
                    "port" if out.port.is_none() => {
                        out.port = Some(v.parse().map_err(|_| SshConfigError::Invalid {
                            path: self.path.clone(),
                            line: *line,
                            message: format!("`Port {v}` is not a port number"),
                        })?);
                    }
                    "user" if out.user.is_none() => out.user = Some(v.clone()),
                    "identityfile" if out.identity_file.is_none() => {
                        out.identity_file = Some(match v.strip_prefix("~/") {
                            Some(rest) => home.join(rest),
                            None => PathBuf::from(v),
                        });
                    }
                    "proxyjump" if out.proxy_jump.is_none() => out.proxy_jump = Some(v.clone()),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(s)
}

/// A `Host` line matches when one pattern matches and no negated one does.
fn block_matches(patterns: &[String], alias: &str) -> bool {
    let mut any = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, alias) {
                return false;
            }
        } else if glob(p, alias) {
            any = true;
        }
    }
    any
}

/// `*` any run of characters, `?` one character; case-insensitive like OpenSSH's host match.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// One hop of a `ProxyJump` value: `[user@]host[:port]`.
pub fn parse_jump(spec: &str) -> Option<(Option<String>, String, Option<u16>)> {
    let spec = spec.trim();
    if spec.is_empty() || spec.contains("://") {
        return None;
    }
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None => None,
            };
            (h.to_string(), port)
        }
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (rest.to_string(), None),
        },
    };
    (!host.is_empty()).then_some((user, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
User everyone
# a comment
Host gw gateway
    HostName vpn.acme.example
    Port 2222
    User consultant
    IdentityFile ~/.ssh/gw_key
Host *.acme !nope.acme
  HostName=%h.internal
  ProxyJump gw
  User root
Match exec \"false\"
  User never
Host *
  Port 22
  IdentityFile ~/.ssh/id_ed25519
";

    fn cfg() -> SshConfigFile {
        SshConfigFile::parse(Path::new("/h/.ssh/config"), CONFIG).unwrap()
    }

    #[test]
    fn first_value_wins_and_patterns_match() {
        let home = Path::new("/h");
        let gw = cfg().lookup("gateway", home).unwrap();
        assert_eq!(gw.host_name.as_deref(), Some("vpn.acme.example"));
        assert_eq!(gw.port, Some(2222));
        // Before any Host line: applies to all, and comes first.
        assert_eq!(gw.user.as_deref(), Some("everyone"));
        assert_eq!(gw.identity_file, Some(PathBuf::from("/h/.ssh/gw_key")));
        let files = cfg().lookup("files.acme", home).unwrap();
        assert_eq!(files.host_name.as_deref(), Some("files.acme.internal"));
        assert_eq!(files.proxy_jump.as_deref(), Some("gw"));
        assert_eq!(files.port, Some(22));
        let nope = cfg().lookup("nope.acme", home).unwrap();
        assert_eq!(nope.host_name, None, "negated");
        assert_eq!(cfg().ignored.len(), 1, "the Match line is reported");
    }

    #[test]
    fn globs_and_jump_specs() {
        assert!(glob("*.acme", "A.ACME"));
        assert!(glob("db?", "db1"));
        assert!(!glob("db?", "db12"));
        assert_eq!(
            parse_jump("root@gw:2200"),
            Some((Some("root".into()), "gw".into(), Some(2200)))
        );
        assert_eq!(parse_jump("gw"), Some((None, "gw".into(), None)));
        assert_eq!(parse_jump("[::1]:22"), Some((None, "::1".into(), Some(22))));
        assert_eq!(parse_jump("ssh://x"), None);
        assert!(SshConfigFile::parse(Path::new("c"), "Host a\n  Port x\n")
            .unwrap()
            .lookup("a", Path::new("/"))
            .is_err());
    }
}
