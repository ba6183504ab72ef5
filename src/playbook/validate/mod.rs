//! From the raw serde types to the checked [`Playbook`], collecting every problem with its
//! position. Each check says what is wrong and what would be valid.
//!
//! This file loads and holds the `Validator`; its checks are in `window`, `targets`, `steps`,
//! `render`, `transfer` (copy and fetch) and `notify`.

mod detached_inputs;
mod notify;
mod relay;
mod render;
mod steps;
mod targets;
mod transfer;
mod window;

pub use window::parse_duration;
use window::Fit;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::SignedDuration;
use minijinja::Value;

use super::diagnostic::{suggestion_or_choices, Diagnostic};
use super::notify::{EmailSink, HttpUrl, NotifyEvent, Sink, SinkKind, Smtp};
use super::raw::{
    RawAddresses, RawDays, RawEmail, RawEnvValue, RawOn, RawPlaybook, RawSecretRef, RawSink,
    RawStep, RawTarget,
};
use super::source::{Pos, Seg, Source};
use super::template::{json_to_value, TemplateError, Templates};
use super::{
    sha256_hex, structure, Action, Deadline, EnvValue, EnvVar, FileRef, LoadError, Playbook,
    Rendered, RenderedAction, ShellKind, Step, Target, TransportKind, WinrmAuth,
    MAX_PLAYBOOK_BYTES, OPERATOR,
};
use crate::paths::expand_home;
use crate::secret::SecretRef;
use crate::target_defaults::{winrm_port, SSH_PORT};
use crate::window::{DaySet, HoursRule, Window};

/// Most retries a step may ask for: more is a loop, not a retry policy.
const MAX_RETRIES: u32 = 100;
/// Limits of an SSH target's `keepalive`. libssh2 counts it in whole seconds; above an hour a
/// silent link would go unnoticed for hours, long after any middlebox dropped its state.
const MIN_KEEPALIVE: SignedDuration = SignedDuration::from_secs(1);
const MAX_KEEPALIVE: SignedDuration = SignedDuration::from_hours(1);

pub fn load(
    path: &Path,
    given: &super::GivenVars,
    fit_from: Option<super::FitFrom>,
) -> Result<Playbook, LoadError> {
    let (text, sha256) = read_playbook(path)?;
    let src = parse_yaml(path, text)?;
    // A customer file: merged with its procedure (and given variables) into one tree whose
    // nodes remember their file.
    let composed = super::compose::compose(src, sha256, given).map_err(in_order)?;
    let (src, sha256, composition) = (composed.src, composed.sha256, composed.composition);
    let soft = check_shape(&src, path, composed.diags, fit_from)?;
    let raw = deserialize(&src, path, &soft)?;
    let mut pb = check_values(&src, path, raw, sha256, fit_from, soft)?;
    pb.composition = composition;
    Ok(pb)
}

/// The playbook file's text (without a byte order mark) and the SHA-256 of the file as
/// written: a file within the size limit, in UTF-8.
fn read_playbook(path: &Path) -> Result<(String, String), LoadError> {
    let fail = |msg: String| LoadError(vec![Diagnostic::whole_file(path, msg)]);
    let meta =
        std::fs::metadata(path).map_err(|e| fail(format!("cannot read the playbook: {e}")))?;
    if !meta.is_file() {
        return Err(fail("the playbook path is not a file".into()));
    }
    if meta.len() > MAX_PLAYBOOK_BYTES {
        return Err(fail(format!(
            "the playbook is {} bytes; the limit is {MAX_PLAYBOOK_BYTES}",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the playbook: {e}")))?;
    let sha256 = sha256_hex(&bytes);
    let mut text = String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "the playbook is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    // Windows editors start UTF-8 files with a byte order mark; it is not part of the YAML.
    // The hash above stays that of the file as written.
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        text = rest.to_string();
    }
    Ok((text, sha256))
}

/// The file read as YAML, or the first syntax error in it.
fn parse_yaml(path: &Path, text: String) -> Result<Source, LoadError> {
    match Source::parse(path, text) {
        Ok(src) => Ok(src),
        Err(e) => {
            let src = Source {
                path: path.to_path_buf(),
                text: std::fs::read_to_string(path)
                    .map(|t| t.trim_start_matches('\u{feff}').to_string())
                    .unwrap_or_default(),
                root: None,
                others: Vec::new(),
            };
            let (pos, message, help) = e.explain(&src.text);
            Err(LoadError(vec![Diagnostic::at_pos(
                &src,
                pos,
                String::new(),
                format!("YAML syntax error: {message}"),
            )
            .with_help(help)
            .note("the YAML parser stops at the first syntax error: fix this one and run `runner validate` again to see any others")]))
        }
    }
}

/// Diagnostics sorted by file, line and column.
fn in_order(mut diags: Vec<Diagnostic>) -> LoadError {
    diags.sort_by(|a, b| (&a.file, a.pos.line, a.pos.col).cmp(&(&b.file, b.pos.line, b.pos.col)));
    LoadError(diags)
}

/// Wrong keys and wrong types stop here, all of them reported (with the problems found while
/// merging, and what the later checks find in the rest); wrong values that serde still reads
/// (durations are text to it) are returned, to be reported together with everything else.
fn check_shape(
    src: &Source,
    path: &Path,
    merge_diags: Vec<Diagnostic>,
    fit_from: Option<super::FitFrom>,
) -> Result<Vec<Diagnostic>, LoadError> {
    let (soft, mut hard): (Vec<Diagnostic>, Vec<Diagnostic>) =
        structure::check(src).into_iter().partition(|d| d.soft);
    hard.extend(merge_diags);
    if !hard.is_empty() {
        let mut diags: Vec<Diagnostic> = hard.into_iter().chain(soft).collect();
        let more = checks_beyond_wrong_keys(src, path, &diags, fit_from);
        diags.extend(more);
        return Err(in_order(diags));
    }
    Ok(soft)
}

/// The tree read into the raw playbook; what serde refuses is reported with the shape
/// check's `soft` diagnostics.
fn deserialize(src: &Source, path: &Path, soft: &[Diagnostic]) -> Result<RawPlaybook, LoadError> {
    let parsed = if src.others.is_empty() {
        serde_yaml_ng::from_str(&src.text)
    } else {
        // A merged tree has no single text: serde reads the tree (aliases were refused).
        match src.value_without(&[]) {
            Some((value, _)) => serde_yaml_ng::from_value(value),
            None => {
                return Err(LoadError(vec![Diagnostic::whole_file(
                    path,
                    "YAML aliases are not supported in a customer file or its procedure",
                )]))
            }
        }
    };
    match parsed {
        Ok(raw) => Ok(raw),
        Err(e) => {
            let mut diags = soft.to_vec();
            diags.push(serde_diagnostic(src, &e));
            Err(in_order(diags))
        }
    }
}

/// The validator's checks of every value; the shape check's `soft` diagnostics are reported
/// with what it finds, its words winning for a place both found.
fn check_values(
    src: &Source,
    path: &Path,
    raw: RawPlaybook,
    sha256: String,
    fit_from: Option<super::FitFrom>,
    soft: Vec<Diagnostic>,
) -> Result<Playbook, LoadError> {
    let mut v = Validator {
        src,
        dir: dir_of(path),
        diags: Vec::new(),
        templates: Templates::new(),
        fit_from,
    };
    let playbook = v.playbook(raw, sha256);
    if v.diags.is_empty() && soft.is_empty() {
        if let Some(pb) = playbook {
            return Ok(pb);
        }
    }
    // The shape check's words for a place win over the same place found again here.
    let mut diags: Vec<Diagnostic> = v
        .diags
        .into_iter()
        .filter(|d| !soft.iter().any(|s| s.pos == d.pos && s.file == d.file))
        .collect();
    diags.extend(soft);
    Err(in_order(diags))
}

/// The folder relative paths in the playbook are resolved against.
fn dir_of(path: &Path) -> PathBuf {
    path.parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// With wrong keys or types found, the later checks still run on the rest of the playbook
/// (the wrong entries left out), so that one run of `validate` shows every error. Left out
/// are errors at a place already reported and errors about a mapping that lost an entry (a
/// key missing there is a consequence), as are errors naming a key that was left out. Nothing
/// more when the rest does not deserialize (or uses aliases): then only the errors found so
/// far are shown.
fn checks_beyond_wrong_keys(
    src: &Source,
    path: &Path,
    reported: &[Diagnostic],
    fit_from: Option<super::FitFrom>,
) -> Vec<Diagnostic> {
    let wrong: Vec<String> = reported
        .iter()
        .filter(|d| !d.soft && !d.key.is_empty())
        .map(|d| d.key.clone())
        .collect();
    let Some((value, pruned)) = src.value_without(&wrong) else {
        return Vec::new();
    };
    let Ok(raw) = serde_yaml_ng::from_value::<RawPlaybook>(value) else {
        return Vec::new();
    };
    let mut v = Validator {
        src,
        dir: dir_of(path),
        diags: Vec::new(),
        templates: Templates::new(),
        fit_from,
    };
    let _ = v.playbook(raw, String::new());
    // A name left out (a target given as a list) is no news when it comes up again later.
    let names: Vec<String> = wrong
        .iter()
        .filter_map(|k| k.rsplit('.').next())
        .filter(|last| !last.ends_with(']'))
        .map(|last| format!("`{last}`"))
        .collect();
    v.diags
        .into_iter()
        .filter(|d| {
            !reported.iter().any(|r| r.pos == d.pos && r.file == d.file) && !pruned.contains(&d.pos)
        })
        .filter(|d| !names.iter().any(|n| d.message.contains(n.as_str())))
        .collect()
}

/// How serde names our raw types in "expected ..." messages, and what the reader should see
/// instead. Every `Raw*` type in raw.rs needs a line (a unit test checks).
const SERDE_NAMES: &[(&str, &str)] = &[
    ("struct RawPlaybook", "the playbook (a mapping)"),
    ("struct RawStep", "a step (a mapping)"),
    ("struct RawTarget", "a target (a mapping)"),
    ("struct RawWindow", "the window (a mapping)"),
    ("struct RawHours", "a business_hours rule (a mapping)"),
    ("struct RawUpload", "`upload: { src: FILE, dest: PATH }`"),
    (
        "struct RawCopy",
        "`copy: { from: TARGET, path: PATH, to: TARGET, dest: PATH }`",
    ),
    (
        "struct RawFetch",
        "`fetch: { path: PATH, dest: LOCAL_PATH }`",
    ),
    (
        "struct RawReboot",
        "`reboot: { timeout: DURATION }` (or `reboot: {}` for 20m)",
    ),
    (
        "struct RawDeadline",
        "`deadline: { after: STEP, within: DURATION }`",
    ),
    ("struct RawSecretRef", "`{ env: NAME }` or `{ file: PATH }`"),
    (
        "struct RawSink",
        "a notify entry (a mapping with `webhook`, `ntfy` or `email`, and `on`)",
    ),
    (
        "struct RawEmail",
        "`email: { to: ADDRESS, from: ADDRESS, smtp: { host: HOST } }`",
    ),
    (
        "struct RawSmtp",
        "`smtp: { host: HOST, port: 587, tls: starttls, user: NAME, password: { env: NAME } }`",
    ),
    (
        "untagged enum RawAddresses",
        "a mail address or a list of them",
    ),
    (
        "untagged enum RawOn",
        "a target or group name, or a list of them",
    ),
    (
        "untagged enum RawEnvValue",
        "plain text, or a secret as `{ env: NAME }` or `{ file: PATH }`",
    ),
    (
        "untagged enum RawDays",
        "a day (mon), a range (mon-fri) or a list ([mon, wed])",
    ),
];

/// serde's message plus where it happened. serde_yaml_ng names the type it expected; we add
/// the key path by finding the deepest node at that position.
fn serde_diagnostic(src: &Source, e: &serde_yaml_ng::Error) -> Diagnostic {
    let pos = e
        .location()
        .map(|l| Pos {
            line: l.line(),
            col: l.column(),
        })
        .unwrap_or(Pos { line: 1, col: 1 });
    let message = e.to_string();
    // serde_yaml_ng appends " at line N column M"; the position is shown separately.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    // Only serde's own phrases name our types; a value quoted in the message stays as written.
    let message = SERDE_NAMES.iter().fold(message, |m, (ours, theirs)| {
        m.replace(
            &format!("data did not match any variant of {ours}"),
            &format!("expected {theirs}"),
        )
        .replace(&format!("expected {ours}"), &format!("expected {theirs}"))
    });
    Diagnostic::at_pos(src, pos, String::new(), message)
}

struct Validator<'a> {
    src: &'a Source,
    dir: PathBuf,
    diags: Vec<Diagnostic>,
    templates: Templates,
    /// Where `validate` looks for a gap long enough for each step from; None: not checked.
    fit_from: Option<super::FitFrom>,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Validator<'_> {
    /// The folder relative paths at `path` are resolved against: that of the file the value
    /// was written in (a procedure's scripts, a customer's key files).
    fn dir_at(&self, path: &[Seg]) -> PathBuf {
        match self.src.locate_origin(path).0 {
            0 => self.dir.clone(),
            origin => dir_of(self.src.file_of(origin)),
        }
    }

    fn err(&mut self, path: &[Seg], msg: impl Into<String>, help: impl Into<Option<String>>) {
        let d = Diagnostic::at(self.src, path, msg).with_help(help.into());
        self.diags.push(d);
    }

    fn duration(&mut self, path: &[Seg], text: Option<&str>) -> Option<SignedDuration> {
        let text = text?;
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    path,
                    format!("`{text}` is not a duration ({e})"),
                    Some("write durations like 90s, 15m, 1h30m or 2d".to_string()),
                );
                None
            }
        }
    }

    fn playbook(&mut self, raw: RawPlaybook, sha256: String) -> Option<Playbook> {
        if raw.name.trim().is_empty() {
            self.err(
                &[key("name")],
                "the playbook's `name` is empty",
                Some(
                    "say what this cutover is, e.g. `name: Acme SBS 2000 to SBS 2003 cutover`"
                        .into(),
                ),
            );
        }
        for name in raw.vars.keys() {
            if !is_identifier(name) {
                self.err(
                    &[key("vars"), key(name)],
                    format!("`{name}` cannot be used as a template variable"),
                    Some("use letters, digits and `_`, starting with a letter".into()),
                );
            }
        }
        let (window, timezone) = self.window(&raw);
        let targets = self.targets(&raw);
        let groups = self.groups(&raw, &targets);
        let mut files = Vec::new();
        let steps = self.steps(&raw, &targets, &groups, window.as_ref(), &mut files);
        let notify = self.notify(&raw.notify);
        let state = self.state(raw.state.as_deref());
        Some(Playbook {
            path: self.src.path.clone(),
            dir: self.dir.clone(),
            sha256,
            composition: None,
            name: raw.name,
            description: raw.description,
            window: window?,
            timezone,
            when_closed: raw.window.when_closed,
            vars: raw.vars,
            targets,
            groups,
            steps,
            on_failure: raw.on_failure,
            files,
            notify,
            state,
        })
    }

    /// `state:`: a file, or a PostgreSQL URL whose password is given elsewhere.
    fn state(&mut self, raw: Option<&str>) -> Option<PathBuf> {
        let written = raw?;
        let at = [key("state")];
        if written.trim().is_empty() {
            self.err(
                &at,
                "`state` is empty",
                Some("give a file (e.g. `.runner/cutover.db`) or `postgres://user@host:port/database`".into()),
            );
            return None;
        }
        if let Some(rest) = written
            .strip_prefix("postgres://")
            .or_else(|| written.strip_prefix("postgresql://"))
        {
            let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            if authority
                .rfind('@')
                .is_some_and(|at| authority[..at].contains(':'))
            {
                self.err(
                    &at,
                    "a password in `state` would be kept in the playbook",
                    Some("leave it out of the URL: give it with PGPASSWORD, or ~/.pgpass (PGPASSFILE)".into()),
                );
                return None;
            }
            return Some(PathBuf::from(written));
        }
        Some(self.dir.join(expand_home(Path::new(written))))
    }
}

fn kind_name(k: TransportKind) -> &'static str {
    match k {
        TransportKind::Ssh => "ssh",
        TransportKind::Winrm => "winrm",
        TransportKind::Local => "local",
        TransportKind::Relay => "relay",
    }
}

fn names_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "none is defined yet: add one under `targets:`".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_raw_type_has_a_readable_name() {
        let raw = include_str!("../raw.rs");
        let mut seen = 0;
        for line in raw.lines() {
            let line = line.trim_start();
            let Some(rest) = line
                .strip_prefix("pub struct ")
                .or_else(|| line.strip_prefix("pub enum "))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.starts_with("Raw") {
                continue;
            }
            seen += 1;
            assert!(
                SERDE_NAMES
                    .iter()
                    .any(|(ours, _)| ours.ends_with(&format!(" {name}"))),
                "{name} would show up in an error message as it is"
            );
        }
        assert!(seen >= 10, "found only {seen} raw types");
    }
}
