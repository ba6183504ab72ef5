//! From the raw serde types to the checked [`Playbook`], collecting every problem with its
//! position. Each check says what is wrong and what would be valid.

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

    let src = match Source::parse(path, text) {
        Ok(src) => src,
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
            return Err(LoadError(vec![Diagnostic::at_pos(
                &src,
                pos,
                String::new(),
                format!("YAML syntax error: {message}"),
            )
            .with_help(help)
            .note("the YAML parser stops at the first syntax error: fix this one and run `runner validate` again to see any others")]));
        }
    };

    // A customer file: merged with its procedure (and given variables) into one tree whose
    // nodes remember their file.
    let in_order = |mut diags: Vec<Diagnostic>| {
        diags.sort_by(|a, b| {
            (&a.file, a.pos.line, a.pos.col).cmp(&(&b.file, b.pos.line, b.pos.col))
        });
        LoadError(diags)
    };
    let composed = super::compose::compose(src, sha256, given).map_err(in_order)?;
    let (src, sha256, composition) = (composed.src, composed.sha256, composed.composition);
    let merge_diags = composed.diags;

    // Wrong keys and wrong types stop here, all of them reported; wrong values that serde
    // still reads (durations are text to it) go on to the checks below, so that they are
    // reported together with everything else.
    let (soft, mut hard): (Vec<Diagnostic>, Vec<Diagnostic>) =
        structure::check(&src).into_iter().partition(|d| d.soft);
    hard.extend(merge_diags);
    if !hard.is_empty() {
        let mut diags: Vec<Diagnostic> = hard.into_iter().chain(soft).collect();
        let more = checks_beyond_wrong_keys(&src, path, &diags, fit_from);
        diags.extend(more);
        return Err(in_order(diags));
    }

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
    let raw: RawPlaybook = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            let mut diags = soft;
            diags.push(serde_diagnostic(&src, &e));
            return Err(in_order(diags));
        }
    };

    let mut v = Validator {
        src: &src,
        dir: dir_of(path),
        diags: Vec::new(),
        templates: Templates::new(),
        fit_from,
    };
    let playbook = v.playbook(raw, sha256);
    if v.diags.is_empty() && soft.is_empty() {
        if let Some(mut pb) = playbook {
            pb.composition = composition;
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

/// Longest duration accepted: ten years, far beyond any cutover, well within time arithmetic.
const MAX_DURATION_SECS: i64 = 3650 * 86_400;

/// Parses the documented form only: whole numbers, each with a unit `d`, `h`, `m` or `s`,
/// largest first, each unit once, no spaces (`90s`, `15m`, `1h30m`, `2d`). A day is 24 hours
/// here: durations are elapsed time. `2 hours`, `1.5h`, `PT2H` and `1mo` are refused, each
/// with the reason, so that what a playbook says is never a guess.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    const UNITS: [(char, i64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let t = text.trim();
    if t.is_empty() {
        return Err("it is empty".into());
    }
    if t.starts_with('-') {
        return Err("a duration cannot be negative".into());
    }
    if t.contains(char::is_whitespace) {
        return Err("write it without spaces".into());
    }
    if t.contains(['.', ',']) {
        return Err("whole numbers only, e.g. 1h30m rather than 1.5h".into());
    }
    if t.starts_with(['P', 'p']) {
        return Err("ISO 8601 durations such as PT2H are not used here".into());
    }
    let mut secs: i64 = 0;
    let mut last: Option<usize> = None;
    let mut digits = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        // The whole word, so that `1mo` names `mo`, not `o`.
        let mut word = c.to_string();
        while let Some(n) = chars.next_if(|n| n.is_alphabetic()) {
            word.push(n);
        }
        let rank = match word.chars().collect::<Vec<_>>()[..] {
            [u] => UNITS.iter().position(|(x, _)| *x == u),
            _ => None,
        };
        let Some(rank) = rank else {
            return Err(format!(
                "`{word}` is not a unit: the units are d, h, m and s (months, weeks and years vary in length)"
            ));
        };
        if digits.is_empty() {
            return Err(format!("`{c}` needs a number before it"));
        }
        if last.is_some_and(|l| rank <= l) {
            return Err("units go largest first, each once".into());
        }
        let n: i64 = digits.parse().map_err(|_| "the number is too large")?;
        secs = n
            .checked_mul(UNITS[rank].1)
            .and_then(|v| secs.checked_add(v))
            .filter(|v| *v <= MAX_DURATION_SECS)
            .ok_or("longer than ten years")?;
        digits.clear();
        last = Some(rank);
    }
    if !digits.is_empty() {
        return Err(format!("`{digits}` needs a unit: d, h, m or s"));
    }
    Ok(SignedDuration::from_secs(secs))
}

fn parse_day(s: &str) -> Option<Weekday> {
    crate::window::weekday_from_name(s)
}

const DAY_HELP: &str = "days are mon, tue, wed, thu, fri, sat, sun: one day, a range like mon-fri, or a list like [mon, wed, fri]";

fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    Time::new(h, m, 0, 0).ok()
}

/// `validate`'s question for each step: is there a gap between business hours long enough for
/// it, on the real calendar, from `from` over the planning horizon (or up to the last listed
/// holiday, if later: holidays are listed because the work is planned around them)?
struct Fit<'w> {
    window: &'w Window,
    from: super::FitFrom,
    horizon: SignedDuration,
    /// A step needing no more than this surely fits within the horizon, without searching:
    /// the longest regular weekly gap, less a day for daylight saving.
    surely_fits: SignedDuration,
}

impl<'w> Fit<'w> {
    fn new(window: &'w Window, from: super::FitFrom) -> Fit<'w> {
        let mut horizon = crate::duration::HORIZON;
        let tz = window.time_zone();
        if let Some(last) = window.holidays().last() {
            let after = last
                .tomorrow()
                .ok()
                .and_then(|d| tz.to_timestamp(d.to_datetime(Time::midnight())).ok());
            if let Some(after) = after {
                horizon = horizon.max(from.at.duration_until(after));
            }
        }
        let surely_fits = window
            .longest_regular_gap()
            .map(|g| g - SignedDuration::from_hours(24))
            .unwrap_or(SignedDuration::ZERO);
        Fit {
            window,
            from,
            horizon,
            surely_fits,
        }
    }

    /// Why a step of this estimate cannot start within the horizon, or None if it can.
    fn misfit(&self, id: &str, estimate: Option<SignedDuration>) -> Option<String> {
        let estimate = estimate.unwrap_or(SignedDuration::ZERO);
        let need = estimate.saturating_add(self.window.margin());
        if need <= self.surely_fits {
            return None;
        }
        let w = self.window;
        let at = self.from.at;
        if w.earliest_start(at, estimate, self.horizon).is_some() {
            return None;
        }
        let until = at.saturating_add(self.horizon).unwrap_or(at);
        let label = |t| crate::window::local_label_with_zone(t, w.time_zone());
        let days = (self.horizon.as_secs() + 86_399) / 86_400;
        let longest = match w.longest_gap(at, until) {
            Some(g) if g.end < jiff::Timestamp::MAX => format!(
                "; the longest is {} ({} to {})",
                crate::duration::human_duration(g.start.duration_until(g.end)),
                label(g.start),
                label(g.end)
            ),
            _ => String::new(),
        };
        Some(format!(
            "step `{id}` cannot start within {days} days from {} ({}): its estimate plus the window margin ({}) is longer than every gap between business hours in that time, holidays and daylight saving counted{longest}",
            label(at),
            if self.from.simulated { "RUNNER_NOW" } else { "the current time" },
            crate::duration::human_duration(need),
        ))
    }
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
        Some(self.dir.join(crate::paths::expand_home(Path::new(written))))
    }

    fn window(&mut self, raw: &RawPlaybook) -> (Option<Window>, Option<String>) {
        let w = &raw.window;
        let base = [key("window")];
        let at = |k: &str| vec![key("window"), key(k)];
        let margin = self
            .duration(&at("margin"), w.margin.as_deref())
            .unwrap_or(SignedDuration::ZERO);
        let mut ok = true;
        let mut holidays = Vec::new();
        for (i, h) in w.holidays.iter().enumerate() {
            match h.trim().parse::<Date>() {
                Ok(d) => holidays.push(d),
                Err(_) => {
                    ok = false;
                    self.err(
                        &[key("window"), key("holidays"), Seg::Index(i)],
                        format!("`{h}` is not a date"),
                        Some("write holidays as YYYY-MM-DD, e.g. 2026-12-24".into()),
                    );
                }
            }
        }
        let tz = match (&w.timezone, w.business_hours.is_empty()) {
            (None, true) => None,
            (None, false) => {
                self.err(
                    &base,
                    "the window has business hours but no `timezone`",
                    Some(
                        "add the customer's IANA time zone, e.g. `timezone: America/Chicago`"
                            .into(),
                    ),
                );
                ok = false;
                None
            }
            (Some(name), _) => {
                match TimeZone::get(name) {
                    Ok(tz) => Some((tz, name.clone())),
                    Err(_) => {
                        let names: Vec<String> =
                            jiff::tz::db().available().map(|n| n.to_string()).collect();
                        let help = match super::diagnostic::suggest(name, names.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "use an IANA time zone name such as America/Chicago or Europe/Berlin".into(),
                    };
                        self.err(
                            &at("timezone"),
                            format!("`{name}` is not a known IANA time zone"),
                            Some(help),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut rules = Vec::new();
        for (i, h) in w.business_hours.iter().enumerate() {
            let p = |k: &str| vec![key("window"), key("business_hours"), Seg::Index(i), key(k)];
            let days = self.days(&p("days"), &h.days);
            let from = parse_hhmm(&h.from);
            let to = parse_hhmm(&h.to);
            if from.is_none() {
                self.err(
                    &p("from"),
                    format!("`{}` is not a time of day", h.from),
                    Some("write times as \"HH:MM\" in 24-hour form, e.g. \"07:30\"".into()),
                );
            }
            if to.is_none() {
                self.err(
                    &p("to"),
                    format!("`{}` is not a time of day", h.to),
                    Some("write times as \"HH:MM\" in 24-hour form, e.g. \"18:00\"".into()),
                );
            }
            match (days, from, to) {
                (Some(days), Some(from), Some(to)) => rules.push(HoursRule { days, from, to }),
                _ => ok = false,
            }
        }
        if !ok {
            return (None, None);
        }
        match tz {
            None if !ok => (None, None),
            None => (Some(Window::unrestricted()), None),
            Some((tz, name)) => (Some(Window::new(tz, rules, holidays, margin)), Some(name)),
        }
    }

    fn days(&mut self, path: &[Seg], days: &RawDays) -> Option<DaySet> {
        let mut set = DaySet::default();
        let items: Vec<(Vec<Seg>, &str)> = match days {
            RawDays::One(s) => vec![(path.to_vec(), s.as_str())],
            RawDays::List(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut p = path.to_vec();
                    p.push(Seg::Index(i));
                    (p, s.as_str())
                })
                .collect(),
        };
        let mut ok = true;
        for (p, item) in items {
            let parsed = match item.split_once('-') {
                Some((a, b)) => parse_day(a)
                    .zip(parse_day(b))
                    .map(|(a, b)| DaySet::range(a, b)),
                None => parse_day(item).map(DaySet::single),
            };
            match parsed {
                Some(d) => {
                    for w in [
                        Weekday::Monday,
                        Weekday::Tuesday,
                        Weekday::Wednesday,
                        Weekday::Thursday,
                        Weekday::Friday,
                        Weekday::Saturday,
                        Weekday::Sunday,
                    ] {
                        if d.contains(w) {
                            set.insert(w);
                        }
                    }
                }
                None => {
                    ok = false;
                    self.err(
                        &p,
                        format!("`{item}` is not a day or a range of days"),
                        Some(DAY_HELP.to_string()),
                    );
                }
            }
        }
        if ok && set.is_empty() {
            self.err(path, "no days given", Some(DAY_HELP.to_string()));
            return None;
        }
        ok.then_some(set)
    }

    fn secret(&mut self, path: &[Seg], raw: &Option<RawSecretRef>) -> Option<SecretRef> {
        let r = raw.as_ref()?;
        match (&r.env, &r.file) {
            (Some(env), None) if !env.trim().is_empty() => Some(SecretRef::Env(env.clone())),
            (None, Some(file)) if !file.trim().is_empty() => {
                Some(SecretRef::File(PathBuf::from(file)))
            }
            _ => {
                self.err(
                    path,
                    "a secret reference needs exactly one non-empty `env` or `file`",
                    Some("for example `{ env: OLD_SBS_PASSWORD }`".into()),
                );
                None
            }
        }
    }

    fn targets(&mut self, raw: &RawPlaybook) -> BTreeMap<String, Target> {
        let mut out = BTreeMap::new();
        for (name, t) in &raw.targets {
            if let Some(target) = self.target(name, t) {
                out.insert(name.clone(), target);
            }
        }
        self.jumps(raw);
        out
    }

    /// Each `jump` names another `ssh` target, from an `ssh` target, and no chain of jumps
    /// comes back to where it started.
    fn jumps(&mut self, raw: &RawPlaybook) {
        for (name, t) in &raw.targets {
            let Some(via) = &t.jump else {
                continue;
            };
            let at = vec![key("targets"), key(name), key("jump")];
            if t.transport == TransportKind::Local {
                self.err(
                    &at,
                    format!("`jump` applies to `ssh` and `winrm` targets, and `{name}` is local"),
                    Some("remove `jump`".into()),
                );
                continue;
            }
            match raw.targets.get(via) {
                None => {
                    let help = suggestion_or_choices(
                        via,
                        raw.targets
                            .keys()
                            .filter(|k| *k != name)
                            .map(String::as_str),
                    );
                    self.err(
                        &at,
                        format!("`jump` names `{via}`, which is not a target"),
                        Some(help),
                    );
                    continue;
                }
                Some(v) if v.transport != TransportKind::Ssh => {
                    self.err(
                        &at,
                        format!("`jump` names `{via}`, which is not an `ssh` target"),
                        Some("a jump host is reached over SSH: name an `ssh` target".into()),
                    );
                    continue;
                }
                Some(_) => {}
            }
            // Follow the chain; coming back to `name` is a cycle.
            let mut chain = vec![name.clone()];
            let mut next = Some(via.clone());
            while let Some(n) = next {
                if chain.contains(&n) {
                    if n == *name {
                        chain.push(n);
                        self.err(
                            &at,
                            format!("the jump hosts of `{name}` go round in a circle: {}", chain.join(" -> ")),
                            Some("one target in the chain must be reachable directly (without `jump`)".into()),
                        );
                    }
                    break;
                }
                next = raw.targets.get(&n).and_then(|t| t.jump.clone());
                chain.push(n);
            }
        }
    }

    /// `ssh_config: true`: the target with what `~/.ssh/config` says for its `host` filled in
    /// where it sets nothing, what was taken, and the `ProxyJump` hosts (unless it has `jump`).
    fn with_ssh_config(
        &mut self,
        name: &str,
        t: &RawTarget,
    ) -> (RawTarget, Vec<String>, Vec<super::ProxyHop>) {
        use crate::ssh_config::{parse_jump, SshConfigFile};
        let at = vec![key("targets"), key(name), key("ssh_config")];
        let mut eff = t.clone();
        if t.transport != TransportKind::Ssh {
            self.err(
                &at,
                "`ssh_config` applies to `ssh` targets",
                Some("remove it".into()),
            );
            return (eff, Vec::new(), Vec::new());
        }
        let Some(alias) = t.host.clone() else {
            return (eff, Vec::new(), Vec::new());
        };
        let home = expand_home(Path::new("~"));
        let file = home.join(".ssh").join("config");
        let read = SshConfigFile::read(&file).and_then(|c| {
            let s = c.lookup(&alias, &home)?;
            Ok((c, s))
        });
        let (cfg, found) = match read {
            Ok(v) => v,
            Err(e) => {
                self.err(&at, format!("`ssh_config: true`, but {e}"), Some("create the file, or set the target's `host`, `port`, `user` and `key` here and remove `ssh_config`".into()));
                return (eff, Vec::new(), Vec::new());
            }
        };
        let mut taken = Vec::new();
        if let Some(h) = &found.host_name {
            taken.push(format!("HostName {h}"));
            eff.host = Some(h.clone());
        }
        if t.port.is_none() {
            if let Some(port) = found.port {
                taken.push(format!("Port {port}"));
                eff.port = Some(port);
            }
        }
        if t.user.is_none() {
            if let Some(u) = &found.user {
                taken.push(format!("User {u}"));
                eff.user = Some(u.clone());
            }
        }
        if t.key.is_none() && t.password.is_none() {
            if let Some(k) = &found.identity_file {
                taken.push(format!("IdentityFile {}", k.display()));
                eff.key = Some(k.display().to_string());
            }
        }
        let mut hops = Vec::new();
        if let Some(pj) = found.proxy_jump.as_deref().filter(|p| *p != "none") {
            if t.jump.is_some() {
                taken.push(format!(
                    "ProxyJump {pj} ignored: the target's `jump` is used"
                ));
            } else {
                for spec in pj.split(',') {
                    let Some((user, host, port)) = parse_jump(spec) else {
                        self.err(&at, format!("`ProxyJump {pj}` in {} is not a list of `[user@]host[:port]`", file.display()), Some("fix the line in that file, or give the jump host as a target and use `jump`".into()));
                        return (eff, taken, Vec::new());
                    };
                    let hop = match cfg.lookup(&host, &home) {
                        Ok(h) => h,
                        Err(e) => {
                            self.err(&at, e.to_string(), None);
                            return (eff, taken, Vec::new());
                        }
                    };
                    hops.push(super::ProxyHop {
                        host: hop.host_name.clone().unwrap_or(host),
                        port: port.or(hop.port).unwrap_or(22),
                        user: user
                            .or(hop.user.clone())
                            .or(eff.user.clone())
                            .unwrap_or_default(),
                        key: hop.identity_file.clone().or_else(|| {
                            eff.key
                                .as_ref()
                                .map(|k| self.dir.join(expand_home(Path::new(k))))
                        }),
                    });
                }
                taken.push(format!("ProxyJump {pj}"));
            }
        }
        for (line, text) in &cfg.ignored {
            taken.push(format!("not read: line {line} `{text}`"));
        }
        (eff, taken, hops)
    }

    fn target(&mut self, name: &str, t: &RawTarget) -> Option<Target> {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        let base = vec![key("targets"), key(name)];
        let before = self.diags.len();
        let (effective, from_ssh_config, proxy_hops) = if t.ssh_config {
            self.with_ssh_config(name, t)
        } else {
            (t.clone(), Vec::new(), Vec::new())
        };
        let t = &effective;
        if !is_name(name) || name == OPERATOR {
            self.err(&base, format!("`{name}` is not a valid target name"), Some(format!("use lowercase letters, digits, `-` and `_` (and not `{OPERATOR}`, which names the person confirming manual steps)")));
        }
        let kind = t.transport;
        let remote = kind != TransportKind::Local;
        if remote && t.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
            self.err(
                &base,
                format!("target `{name}` uses {} but has no `host`", kind_name(kind)),
                Some("add `host: NAME-OR-ADDRESS`".into()),
            );
        }
        if remote && t.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
            self.err(
                &base,
                format!("target `{name}` has no `user`"),
                Some("add the login user, e.g. `user: administrator`".into()),
            );
        }
        if !remote {
            for (k, present) in [
                ("host", t.host.is_some()),
                ("port", t.port.is_some()),
                ("user", t.user.is_some()),
                ("password", t.password.is_some()),
            ] {
                if present {
                    self.err(
                        &p(k),
                        format!("a local target has no `{k}`"),
                        Some("remove it, or use `transport: ssh`".into()),
                    );
                }
            }
        }
        if kind != TransportKind::Ssh {
            for (k, present) in [
                ("key", t.key.is_some()),
                ("passphrase", t.passphrase.is_some()),
                ("known_hosts", t.known_hosts.is_some()),
                ("keepalive", t.keepalive.is_some()),
            ] {
                if present {
                    self.err(
                        &p(k),
                        format!("`{k}` applies only to ssh targets"),
                        Some(format!("remove it, or use `transport: ssh` for `{name}`")),
                    );
                }
            }
        }
        if kind != TransportKind::Winrm {
            for (k, present) in [
                ("https", t.https),
                ("auth", t.auth.is_some()),
                ("ca_file", t.ca_file.is_some()),
                ("cert_sha256", t.cert_sha256.is_some()),
                ("insecure", t.insecure),
                ("allow_unencrypted", t.allow_unencrypted),
            ] {
                if present {
                    self.err(
                        &p(k),
                        format!("`{k}` applies only to winrm targets"),
                        Some(format!("remove it, or use `transport: winrm` for `{name}`")),
                    );
                }
            }
        }
        if kind == TransportKind::Winrm {
            if t.password.is_none() {
                self.err(
                    &base,
                    format!("winrm target `{name}` has no `password`"),
                    Some("add `password: { env: VARIABLE }`".into()),
                );
            }
            if t.auth == Some(WinrmAuth::Basic) && !t.https && !t.allow_unencrypted {
                self.err(
                    &p("auth"),
                    "Basic authentication over plain HTTP would send the password readably",
                    Some("set `https: true`, or use `auth: ntlm` (which encrypts messages); only on an isolated test network, `allow_unencrypted: true`".into()),
                );
            }
            self.winrm_tls(name, t);
        }
        if t.port == Some(0) {
            self.err(
                &p("port"),
                "port 0 is not a port",
                Some("use the service's TCP port, e.g. 22".into()),
            );
        }
        if t.passphrase.is_some() && t.key.is_none() {
            self.err(
                &p("passphrase"),
                "a passphrase without a `key`",
                Some("add `key: PATH` or remove the passphrase".into()),
            );
        }
        for vname in t.vars.keys() {
            if !is_identifier(vname) {
                self.err(
                    &[key("targets"), key(name), key("vars"), key(vname)],
                    format!("`{vname}` cannot be used as a template variable"),
                    Some("use letters, digits and `_`, starting with a letter".into()),
                );
            }
        }
        let keepalive = match kind {
            TransportKind::Ssh => self.keepalive(&p("keepalive"), t.keepalive.as_deref()),
            _ => None,
        };
        let password = self.secret(&p("password"), &t.password);
        let passphrase = self.secret(&p("passphrase"), &t.passphrase);
        if self.diags.len() != before {
            return None;
        }
        let port = match kind {
            TransportKind::Local => None,
            TransportKind::Ssh => Some(t.port.unwrap_or(SSH_PORT)),
            TransportKind::Winrm => Some(t.port.unwrap_or(winrm_port(t.https))),
        };
        let shell = t.shell.unwrap_or(match kind {
            TransportKind::Winrm => ShellKind::Cmd,
            _ => ShellKind::Sh,
        });
        // `components()` drops the inner `./` a join leaves (`././known_hosts`).
        let resolve = |s: &Option<String>| {
            s.as_ref().map(|k| {
                self.dir_at(&base)
                    .join(expand_home(Path::new(k)))
                    .components()
                    .collect::<PathBuf>()
            })
        };
        Some(Target {
            name: name.to_string(),
            transport: kind,
            host: t.host.clone(),
            port,
            https: t.https,
            user: t.user.clone(),
            password,
            key: resolve(&t.key),
            passphrase,
            known_hosts: resolve(&t.known_hosts),
            keepalive,
            shell,
            auth: match kind {
                TransportKind::Winrm => Some(t.auth.unwrap_or(WinrmAuth::Ntlm)),
                _ => None,
            },
            ca_file: resolve(&t.ca_file),
            cert_sha256: t.cert_sha256.clone(),
            insecure: t.insecure,
            allow_unencrypted: t.allow_unencrypted,
            jump: t.jump.clone(),
            proxy_hops,
            from_ssh_config,
            vars: t.vars.clone(),
            reboot_command: t.reboot_command.clone().unwrap_or_else(|| {
                match shell {
                    ShellKind::Sh => "shutdown -r now",
                    ShellKind::Cmd | ShellKind::Powershell => "shutdown /r /t 5",
                }
                .to_string()
            }),
            boot_id_command: t.boot_id_command.clone().unwrap_or_else(|| {
                match shell {
                    ShellKind::Sh => "cat /proc/sys/kernel/random/boot_id",
                    ShellKind::Cmd => "wmic os get lastbootuptime /value",
                    ShellKind::Powershell => "(Get-WmiObject Win32_OperatingSystem).LastBootUpTime",
                }
                .to_string()
            }),
        })
    }

    /// An ssh target's keepalive interval, the default if absent; None after an error.
    fn keepalive(&mut self, path: &[Seg], text: Option<&str>) -> Option<std::time::Duration> {
        let Some(written) = text else {
            return Some(crate::target_defaults::DEFAULT_KEEPALIVE);
        };
        let d = self.duration(path, Some(written))?;
        // Keep in step with MIN_KEEPALIVE and MAX_KEEPALIVE.
        let help = || {
            Some("write whole seconds from 1s to 1h, e.g. `keepalive: 15s` (the default)".into())
        };
        if d < MIN_KEEPALIVE || d > MAX_KEEPALIVE {
            let what = if d < MIN_KEEPALIVE { "short" } else { "long" };
            self.err(
                path,
                format!("a keepalive of `{written}` is too {what}"),
                help(),
            );
            return None;
        }
        if d.subsec_nanos() != 0 {
            self.err(
                path,
                format!("`keepalive: {written}` is not a whole number of seconds"),
                help(),
            );
            return None;
        }
        u64::try_from(d.as_secs())
            .ok()
            .map(std::time::Duration::from_secs)
    }

    /// The TLS trust keys: meaningful with `https` only, and at most one of them.
    fn winrm_tls(&mut self, name: &str, t: &RawTarget) {
        let p = |k: &str| vec![key("targets"), key(name), key(k)];
        let trust: Vec<&str> = [
            ("ca_file", t.ca_file.is_some()),
            ("cert_sha256", t.cert_sha256.is_some()),
            ("insecure", t.insecure),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if !t.https {
            for k in &trust {
                self.err(
                    &p(k),
                    format!("`{k}` applies only with `https: true`"),
                    Some("add `https: true`, or remove it".into()),
                );
            }
        } else if trust.len() > 1 {
            self.err(
                &p(trust[1]),
                format!(
                    "`{}` and `{}` both say how to trust the certificate",
                    trust[0], trust[1]
                ),
                Some("keep one of `ca_file`, `cert_sha256` and `insecure`".into()),
            );
        }
        if let Some(fp) = &t.cert_sha256 {
            if crate::digest::parse_cert_sha256(fp).is_none() {
                self.err(
                    &p("cert_sha256"),
                    "`cert_sha256` is not a SHA-256 fingerprint",
                    Some("write the 64 hex digits, e.g. as the certificate viewer shows them (`AB:CD:...`); runner ping prints the server's".into()),
                );
            }
        }
        if t.allow_unencrypted && t.https {
            self.err(
                &p("allow_unencrypted"),
                "`allow_unencrypted` has no effect with `https: true`",
                Some("remove it".into()),
            );
        } else if t.allow_unencrypted && t.auth != Some(WinrmAuth::Basic) {
            self.err(
                &p("allow_unencrypted"),
                "`allow_unencrypted` has no effect with NTLM, which always encrypts",
                Some("remove it (it is for `auth: basic` on isolated networks)".into()),
            );
        }
    }

    fn groups(
        &mut self,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for (name, members) in &raw.groups {
            let base = vec![key("groups"), key(name)];
            if !is_name(name) {
                self.err(
                    &base,
                    format!("`{name}` is not a valid group name"),
                    Some("use lowercase letters, digits, `-` and `_`".into()),
                );
            }
            if raw.targets.contains_key(name) {
                self.err(
                    &base,
                    format!("`{name}` is both a target and a group"),
                    Some("rename one of them so that `on:` is unambiguous".into()),
                );
            }
            if members.is_empty() {
                self.err(
                    &base,
                    format!("group `{name}` is empty"),
                    Some("list at least one target".into()),
                );
            }
            for (i, m) in members.iter().enumerate() {
                if !raw.targets.contains_key(m) {
                    let mut p = base.clone();
                    p.push(Seg::Index(i));
                    let help = suggestion_or_choices(m, raw.targets.keys().map(String::as_str));
                    self.err(
                        &p,
                        format!("group `{name}` names `{m}`, which is not a target"),
                        Some(help),
                    );
                }
            }
            let _ = targets;
            out.insert(name.clone(), members.clone());
        }
        out
    }

    fn steps(
        &mut self,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
        groups: &BTreeMap<String, Vec<String>>,
        window: Option<&Window>,
        files: &mut Vec<FileRef>,
    ) -> Vec<Step> {
        if raw.steps.is_empty() {
            self.err(
                &[key("steps")],
                "the playbook has no steps",
                Some("add at least one step with `id:` and `run:`".into()),
            );
        }
        let fit = match (window, self.fit_from) {
            (Some(w), Some(from)) if !w.is_unrestricted() => Some(Fit::new(w, from)),
            _ => None,
        };
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for (i, s) in raw.steps.iter().enumerate() {
            if let Some(step) = self.step(i, s, raw, targets, groups, &seen, fit.as_ref(), files) {
                out.push(step);
            }
            seen.push(s.id.clone());
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        i: usize,
        s: &RawStep,
        raw: &RawPlaybook,
        targets: &BTreeMap<String, Target>,
        groups: &BTreeMap<String, Vec<String>>,
        earlier: &[String],
        fit: Option<&Fit<'_>>,
        files: &mut Vec<FileRef>,
    ) -> Option<Step> {
        let base = vec![key("steps"), Seg::Index(i)];
        let p = |k: &str| {
            let mut v = base.clone();
            v.push(key(k));
            v
        };
        let before = self.diags.len();
        if !is_name(&s.id) {
            self.err(
                &p("id"),
                format!("`{}` is not a valid step id", s.id),
                Some(
                    "use lowercase letters, digits, `-` and `_`, e.g. `copy-company-share`".into(),
                ),
            );
        } else if earlier.contains(&s.id) {
            self.err(
                &p("id"),
                format!("step id `{}` is used twice", s.id),
                Some("step ids must be unique: resume and rollback find steps by id".into()),
            );
        }

        let actions: Vec<&str> = [
            ("run", s.run.is_some()),
            ("script", s.script.is_some()),
            ("upload", s.upload.is_some()),
            ("manual", s.manual.is_some()),
            ("reboot", s.reboot.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        match actions.len() {
            0 => self.err(&base, format!("step `{}` has nothing to do", s.id), Some("give it exactly one of `run`, `script`, `upload`, `manual` or `reboot`".into())),
            1 => {}
            _ => self.err(&p(actions[1]), format!("step `{}` has both `{}` and `{}`", s.id, actions[0], actions[1]), Some("a step has exactly one of `run`, `script`, `upload`, `manual` or `reboot`: split it into two steps".into())),
        }
        let manual = s.manual.is_some();
        if manual {
            for (k, present) in [
                ("check", s.check.is_some()),
                ("rollback", s.rollback.is_some()),
                ("ok_codes", s.ok_codes.is_some()),
                ("timeout", s.timeout.is_some()),
                ("retries", s.retries.is_some()),
                ("retry_delay", s.retry_delay.is_some()),
                ("reboot_on", s.reboot_on.is_some()),
                ("detach", s.detach.is_some()),
            ] {
                if present {
                    self.err(&p(k), format!("a manual step has no `{k}`"), Some("write what the operator must verify into the `manual` text, or make it a separate step".into()));
                }
            }
        }

        // Where it runs.
        let mut on = Vec::new();
        let mut expanded: Vec<String> = Vec::new();
        match &s.on {
            None if !manual => self.err(
                &base,
                format!("step `{}` has no `on`", s.id),
                Some(format!(
                    "say where it runs: a target or group ({})",
                    names_list(targets.keys().chain(groups.keys()))
                )),
            ),
            None => {}
            Some(o) => {
                let items: Vec<(Vec<Seg>, &String)> = match o {
                    RawOn::One(n) => vec![(p("on"), n)],
                    RawOn::List(list) => list
                        .iter()
                        .enumerate()
                        .map(|(j, n)| {
                            let mut q = p("on");
                            q.push(Seg::Index(j));
                            (q, n)
                        })
                        .collect(),
                };
                if items.is_empty() {
                    self.err(
                        &p("on"),
                        "`on` is an empty list",
                        Some("name at least one target or group".into()),
                    );
                }
                for (q, n) in items {
                    on.push(n.clone());
                    if let Some(members) = groups.get(n) {
                        for m in members {
                            if !expanded.contains(m) {
                                expanded.push(m.clone());
                            }
                        }
                    } else if raw.targets.contains_key(n) {
                        if !expanded.contains(n) {
                            expanded.push(n.clone());
                        }
                    } else {
                        let help = suggestion_or_choices(
                            n,
                            raw.targets
                                .keys()
                                .chain(raw.groups.keys())
                                .map(String::as_str),
                        );
                        self.err(
                            &q,
                            format!("`{n}` is neither a target nor a group"),
                            Some(help),
                        );
                    }
                }
            }
        }

        let estimate = self.duration(&p("estimate"), s.estimate.as_deref());
        let timeout = self.duration(&p("timeout"), s.timeout.as_deref());
        let retry_delay = self
            .duration(&p("retry_delay"), s.retry_delay.as_deref())
            .unwrap_or(SignedDuration::ZERO);
        if timeout == Some(SignedDuration::ZERO) {
            self.err(
                &p("timeout"),
                "a timeout of 0 would stop the step at once",
                Some("give a real limit, e.g. `timeout: 2h`, or leave it out".into()),
            );
        }
        let retries = s.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            self.err(
                &p("retries"),
                format!("{retries} retries is more than the limit of {MAX_RETRIES}"),
                Some("use fewer retries with a longer `retry_delay`".into()),
            );
        }
        let ok_codes = s.ok_codes.clone().unwrap_or_else(|| vec![0]);
        if ok_codes.is_empty() {
            self.err(
                &p("ok_codes"),
                "`ok_codes` is empty, so the step could never succeed",
                Some("list the exit codes that mean success, e.g. [0]".into()),
            );
        }
        if s.business_hours == super::BusinessHoursPolicy::Refuse {
            if let Some(message) = fit.and_then(|f| f.misfit(&s.id, estimate)) {
                self.err(&p("estimate"), message,
                    Some("split the step into parts that fit a night, or set `business_hours: allow` if it is truly read-only; to check from another time, set RUNNER_NOW to an RFC 3339 instant (`runner plan --start` shows where each step goes)".into()));
            }
        }
        let deadline = match &s.deadline {
            None => None,
            Some(d) => {
                if !earlier.contains(&d.after) {
                    let help = if d.after == s.id {
                        "a deadline counts from an earlier step's end, not the step's own"
                            .to_string()
                    } else if raw.steps.iter().any(|x| x.id == d.after) {
                        format!("`{}` comes later in the playbook; a deadline counts from an earlier step", d.after)
                    } else {
                        suggestion_or_choices(&d.after, earlier.iter().map(String::as_str))
                    };
                    let mut q = p("deadline");
                    q.push(key("after"));
                    self.err(
                        &q,
                        format!(
                            "`deadline.after` names `{}`, which is not an earlier step",
                            d.after
                        ),
                        Some(help),
                    );
                }
                let mut q = p("deadline");
                q.push(key("within"));
                self.duration(&q, Some(&d.within)).map(|within| Deadline {
                    after: d.after.clone(),
                    within,
                })
            }
        };

        // What it does.
        let action = if let Some(cmd) = &s.run {
            if cmd.trim().is_empty() {
                self.err(
                    &p("run"),
                    "`run` is empty",
                    Some("give the command to run".into()),
                );
            }
            Some(Action::Run(cmd.clone()))
        } else if let Some(script) = &s.script {
            self.file(&p("script"), script, files).map(Action::Script)
        } else if let Some(up) = &s.upload {
            let mut q = p("upload");
            q.push(key("src"));
            let src = self.file(&q, &up.src, files);
            if up.dest.trim().is_empty() {
                let mut q = p("upload");
                q.push(key("dest"));
                self.err(
                    &q,
                    "`upload.dest` is empty",
                    Some("give the destination path on the target".into()),
                );
            }
            src.map(|src| Action::Upload {
                src,
                dest: up.dest.clone(),
            })
        } else {
            if let Some(m) = &s.manual {
                Some(Action::Manual(m.clone()))
            } else if let Some(r) = &s.reboot {
                let mut q = p("reboot");
                q.push(key("timeout"));
                let timeout = match &r.timeout {
                    Some(t) => self.duration(&q, Some(t)),
                    None => Some(super::DEFAULT_REBOOT_TIMEOUT),
                };
                timeout.map(|timeout| Action::Reboot { timeout })
            } else {
                None
            }
        };
        let reboot_on = s.reboot_on.clone().unwrap_or_default();
        if !reboot_on.is_empty()
            && !matches!(action, Some(Action::Run(_)) | Some(Action::Script(_)))
        {
            self.err(
                &p("reboot_on"),
                "`reboot_on` applies to `run` and `script` steps",
                Some("remove it, or use a separate `reboot:` step".into()),
            );
        }
        if s.changes == super::raw::Changes::Nothing {
            if s.rollback.is_some() {
                self.err(
                    &p("rollback"),
                    "a step that changes nothing has nothing to roll back",
                    Some("remove `rollback`, or remove `changes: none` if the step does change its targets".into()),
                );
            }
            if s.point_of_no_return {
                self.err(
                    &p("point_of_no_return"),
                    "a step that changes nothing cannot be a point of no return",
                    Some("remove one of `changes: none` and `point_of_no_return: true`".into()),
                );
            }
            if s.reboot.is_some() || s.reboot_on.is_some() {
                self.err(
                    &p("changes"),
                    "a reboot changes the target: `changes: none` does not fit",
                    Some("remove `changes: none`".into()),
                );
            }
        }
        if s.detach == Some(true) && !matches!(action, Some(Action::Run(_))) {
            self.err(
                &p("detach"),
                "only `run` steps can run detached",
                Some("remove `detach`, or turn the step into a `run` step".into()),
            );
        }

        let inputs = self.inputs(&p, s, action.as_ref(), estimate, &expanded, targets);

        if self.diags.len() != before {
            return None;
        }
        let action = action?;
        let pair_targets = if manual {
            vec![OPERATOR.to_string()]
        } else {
            expanded.clone()
        };
        let mut rendered = Vec::new();
        for t in &pair_targets {
            rendered.push(self.render(
                &base,
                s,
                &action,
                raw,
                targets.get(t),
                t,
                &ok_codes,
                &inputs,
            )?);
        }
        Some(Step {
            index: i,
            id: s.id.clone(),
            name: s.name.clone(),
            phase: s.phase.clone(),
            on,
            targets: pair_targets,
            action,
            ok_codes,
            check: s.check.clone(),
            rollback: s.rollback.clone(),
            estimate,
            timeout,
            retries,
            retry_delay,
            idempotent: s.idempotent,
            point_of_no_return: s.point_of_no_return,
            changes_nothing: s.changes == super::raw::Changes::Nothing,
            business_hours: s.business_hours,
            deadline,
            reboot_on,
            detach: s.detach,
            line: self.src.locate(&p("id")).0.line,
            rendered,
        })
    }

    /// A step's `env` and `stdin`: valid names, secrets by reference, and only where they can
    /// reach the command without a command line (run and script steps, attached, `sh` over SSH).
    fn inputs(
        &mut self,
        p: &dyn Fn(&str) -> Vec<Seg>,
        s: &RawStep,
        action: Option<&Action>,
        estimate: Option<SignedDuration>,
        expanded: &[String],
        targets: &BTreeMap<String, Target>,
    ) -> (Vec<EnvVar>, Option<SecretRef>) {
        let mut env = Vec::new();
        for (name, value) in s.env.iter().flatten() {
            let mut q = p("env");
            q.push(key(name));
            if !is_identifier(name) {
                self.err(
                    &q,
                    format!("`{name}` is not a valid environment variable name"),
                    Some(
                        "use letters, digits and `_`, not starting with a digit, e.g. `ADMIN_PW`"
                            .into(),
                    ),
                );
                continue;
            }
            match value {
                RawEnvValue::Plain(text) if text.contains('\0') => self.err(
                    &q,
                    format!("`env.{name}` contains a NUL byte"),
                    Some("environment variables cannot hold NUL bytes".into()),
                ),
                RawEnvValue::Plain(text) => env.push(EnvVar {
                    name: name.clone(),
                    value: EnvValue::Plain(text.clone()),
                }),
                RawEnvValue::Secret(r) => {
                    if let Some(r) = self.secret(&q, &Some(r.clone())) {
                        env.push(EnvVar {
                            name: name.clone(),
                            value: EnvValue::Secret(r),
                        });
                    }
                }
            }
        }
        let stdin = self.secret(&p("stdin"), &s.stdin);
        let key_given = if s.env.is_some() { "env" } else { "stdin" };
        if s.env.is_none() && s.stdin.is_none() {
            return (env, stdin);
        }
        let runs = matches!(action, Some(Action::Run(_)) | Some(Action::Script(_)));
        if action.is_some() && !runs {
            self.err(
                &p(key_given),
                format!("`{key_given}` applies to `run` and `script` steps"),
                Some("remove it, or pass the value to a `run` or `script` step".into()),
            );
        }
        let detached = s
            .detach
            .unwrap_or_else(|| estimate.is_some_and(|e| e >= super::DETACH_FROM));
        if detached && matches!(action, Some(Action::Run(_))) {
            self.err(
                &p(key_given),
                format!("a step with `{key_given}` cannot run detached: a detached job would have to keep its secrets on the target's disk"),
                Some("set `detach: false` on this step (steps estimated at 15 minutes or more run detached by default)".into()),
            );
        }
        for name in expanded {
            if let Some(t) = targets.get(name) {
                if t.transport == TransportKind::Ssh && t.shell != ShellKind::Sh {
                    self.err(
                        &p(key_given),
                        format!("`{key_given}` reaches commands over SSH only with `shell: sh`, and target `{name}` uses another shell"),
                        Some("run this step on an `sh` target, or reach the Windows server over WinRM, where `env` and `stdin` work with every shell".into()),
                    );
                }
            }
        }
        (env, stdin)
    }

    /// A local file the step sends: it must exist now, and its hash goes into the plan.
    fn file(&mut self, path: &[Seg], written: &str, files: &mut Vec<FileRef>) -> Option<FileRef> {
        if let Some(known) = files.iter().find(|f| f.written == written) {
            return Some(known.clone());
        }
        let dir = self.dir_at(path);
        let mut full = dir.join(expand_home(Path::new(written)));
        if self.src.locate_origin(path).0 != 0 {
            full = super::compose::normalize(&full);
        }
        match crate::digest::FileDigest::of_file(&full) {
            Ok(crate::digest::FileDigest { sha256, bytes }) => {
                let f = FileRef {
                    written: written.to_string(),
                    path: full,
                    sha256,
                    bytes,
                };
                files.push(f.clone());
                Some(f)
            }
            Err(e) => {
                self.err(
                    path,
                    format!("cannot read `{written}`: {e}"),
                    Some(format!(
                        "paths are relative to the folder of the file that names them ({})",
                        dir.display()
                    )),
                );
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render(
        &mut self,
        base: &[Seg],
        s: &RawStep,
        action: &Action,
        raw: &RawPlaybook,
        target: Option<&Target>,
        target_name: &str,
        ok_codes: &[i64],
        inputs: &(Vec<EnvVar>, Option<SecretRef>),
    ) -> Option<Rendered> {
        let ctx = context(raw, target, target_name);
        let render = |field: &str, text: &str, v: &mut Validator<'_>| -> Option<String> {
            match v.templates.render(text, &ctx) {
                Ok(s) => Some(s),
                Err(e) => {
                    let mut q = base.to_vec();
                    q.push(key(field));
                    if field == "dest" {
                        q.insert(q.len() - 1, key("upload"));
                    }
                    let on = if target.is_some() {
                        format!(" for target `{target_name}`")
                    } else {
                        String::new()
                    };
                    let (msg, help) = match e {
                        TemplateError::Undefined(names) => {
                            let known: Vec<String> = ctx_names(raw, target);
                            let first = &names[0];
                            (
                                format!("`{field}` uses undefined variable{} {}{on}", if names.len() == 1 { "" } else { "s" }, names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                                suggestion_or_choices(first, known.iter().map(String::as_str)),
                            )
                        }
                        TemplateError::Invalid(m) => (format!("`{field}` is not a valid template{on}: {m}"), "templates look like `{{ var }}`; write `{{ '{{' }}` for a literal `{{`".to_string()),
                    };
                    v.err(&q, msg, Some(help));
                    None
                }
            }
        };
        let rendered_action = match action {
            Action::Run(cmd) => RenderedAction::Run {
                command: render("run", cmd, self)?,
            },
            Action::Script(f) => RenderedAction::Script {
                path: f.path.clone(),
                sha256: f.sha256.clone(),
            },
            Action::Upload { src, dest } => RenderedAction::Upload {
                src: src.path.clone(),
                sha256: src.sha256.clone(),
                bytes: src.bytes,
                dest: render("dest", dest, self)?,
            },
            Action::Manual(text) => RenderedAction::Manual {
                instructions: render("manual", text, self)?,
            },
            Action::Reboot { timeout } => RenderedAction::Reboot {
                command: target.map(|t| t.reboot_command.clone()).unwrap_or_default(),
                boot_id_command: target
                    .map(|t| t.boot_id_command.clone())
                    .unwrap_or_default(),
                timeout_secs: timeout.as_secs(),
            },
        };
        let check = match &s.check {
            Some(c) => Some(render("check", c, self)?),
            None => None,
        };
        let rollback = match &s.rollback {
            Some(c) => Some(render("rollback", c, self)?),
            None => None,
        };
        let (env, stdin) = inputs;
        let def_hash = {
            let mut basis = serde_json::json!({
                "action": &rendered_action,
                "check": &check,
                "ok_codes": ok_codes,
            });
            // Only when given, so that the identity of every step without them is unchanged.
            // References and plain values, never a secret's value.
            if let Some(b) = basis.as_object_mut() {
                if !env.is_empty() {
                    b.insert("env".into(), serde_json::json!(env));
                }
                if let Some(r) = stdin {
                    b.insert("stdin".into(), serde_json::json!(r));
                }
            }
            sha256_hex(basis.to_string().as_bytes())
        };
        Some(Rendered {
            target: target_name.to_string(),
            action: rendered_action,
            check,
            rollback,
            def_hash,
            env: env.clone(),
            stdin: stdin.clone(),
        })
    }
}

impl Validator<'_> {
    /// The `notify:` section: one destination per entry, known events, URLs and addresses
    /// that parse, SMTP credentials by reference.
    fn notify(&mut self, raw: &[RawSink]) -> Vec<Sink> {
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let base = vec![key("notify"), Seg::Index(i)];
            let p = |k: &str| {
                let mut v = base.clone();
                v.push(key(k));
                v
            };
            let before = self.diags.len();
            let given: Vec<&str> = [
                ("webhook", r.webhook.is_some()),
                ("ntfy", r.ntfy.is_some()),
                ("email", r.email.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, present)| present.then_some(k))
            .collect();
            match given.len() {
                0 => self.err(&base, "a notify entry says nowhere to send", Some("give exactly one of `webhook: URL`, `ntfy: URL` or `email: { to, from, smtp }`".into())),
                1 => {}
                _ => self.err(&p(given[1]), format!("a notify entry has both `{}` and `{}`", given[0], given[1]), Some("write one entry per destination".into())),
            }
            let valid = || {
                NotifyEvent::ALL
                    .iter()
                    .map(|e| e.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut on = Vec::new();
            match &r.on {
                None => self.err(&base, "a notify entry has no `on`", Some(format!("say which events to send, e.g. `on: [step-failed, operator-needed]`; the events are {}", valid()))),
                Some(list) if list.is_empty() => self.err(&p("on"), "`on` is an empty list", Some(format!("name at least one of {}", valid()))),
                Some(list) => {
                    for (j, name) in list.iter().enumerate() {
                        let mut q = p("on");
                        q.push(Seg::Index(j));
                        match NotifyEvent::parse(name.trim()) {
                            Some(e) if !on.contains(&e) => on.push(e),
                            Some(_) => self.err(&q, format!("`{name}` is listed twice"), Some("keep one of them".into())),
                            None => {
                                let help = match super::diagnostic::suggest(name, NotifyEvent::ALL.iter().map(|e| e.name())) {
                                    Some(s) => format!("did you mean `{s}`? The events are {}", valid()),
                                    None => format!("the events are {}", valid()),
                                };
                                self.err(&q, format!("`{name}` is not a notification event"), Some(help));
                            }
                        }
                    }
                }
            }
            let kind = if let Some(u) = &r.webhook {
                self.url(&p("webhook"), u).map(SinkKind::Webhook)
            } else if let Some(u) = &r.ntfy {
                self.url(&p("ntfy"), u).map(SinkKind::Ntfy)
            } else if let Some(e) = &r.email {
                self.email(&p("email"), e).map(SinkKind::Email)
            } else {
                None
            };
            if self.diags.len() == before {
                if let Some(kind) = kind {
                    out.push(Sink { kind, on });
                }
            }
        }
        out
    }

    fn url(&mut self, path: &[Seg], text: &str) -> Option<HttpUrl> {
        match HttpUrl::parse(text) {
            Ok(u) => Some(u),
            Err(e) => {
                self.err(
                    path,
                    format!("`{text}` is not a usable URL: {e}"),
                    Some(
                        "write a full http or https URL, e.g. `https://ntfy.sh/acme-cutover`"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    fn address(&mut self, path: &[Seg], text: &str) -> bool {
        if text.trim().parse::<lettre::message::Mailbox>().is_ok() {
            return true;
        }
        self.err(
            path,
            format!("`{text}` is not a mail address"),
            Some("write it like `consultant@example.com` or `Ops <ops@example.com>`".into()),
        );
        false
    }

    fn email(&mut self, base: &[Seg], e: &RawEmail) -> Option<EmailSink> {
        let p = |k: &str| {
            let mut v = base.to_vec();
            v.push(key(k));
            v
        };
        let before = self.diags.len();
        let to: Vec<(Vec<Seg>, &String)> = match &e.to {
            RawAddresses::One(a) => vec![(p("to"), a)],
            RawAddresses::List(list) => list
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let mut q = p("to");
                    q.push(Seg::Index(i));
                    (q, a)
                })
                .collect(),
        };
        if to.is_empty() {
            self.err(
                &p("to"),
                "`to` is an empty list",
                Some("name at least one recipient".into()),
            );
        }
        for (q, a) in &to {
            self.address(q, a);
        }
        self.address(&p("from"), &e.from);
        let s = p("smtp");
        let sp = |k: &str| {
            let mut v = s.clone();
            v.push(key(k));
            v
        };
        if e.smtp.host.trim().is_empty() {
            self.err(
                &sp("host"),
                "`smtp.host` is empty",
                Some("name the mail server, e.g. `host: mail.example.com`".into()),
            );
        }
        if e.smtp.port == Some(0) {
            self.err(
                &sp("port"),
                "port 0 is not a port",
                Some("use 587 (starttls), 465 (tls) or 25".into()),
            );
        }
        match (&e.smtp.user, &e.smtp.password) {
            (Some(_), None) => self.err(&sp("user"), "`smtp.user` without a `password`", Some("add `password: { env: VARIABLE }`, or remove `user` if the server needs no login".into())),
            (None, Some(_)) => self.err(&sp("password"), "`smtp.password` without a `user`", Some("add `user: NAME`".into())),
            _ => {}
        }
        let password = self.secret(&sp("password"), &e.smtp.password);
        if self.diags.len() != before {
            return None;
        }
        let tls = e.smtp.tls.unwrap_or_default();
        Some(EmailSink {
            to: to.iter().map(|(_, a)| a.trim().to_string()).collect(),
            from: e.from.trim().to_string(),
            smtp: Smtp {
                host: e.smtp.host.trim().to_string(),
                port: e.smtp.port.unwrap_or(tls.default_port()),
                tls,
                user: e.smtp.user.clone(),
                password,
            },
        })
    }
}

fn kind_name(k: TransportKind) -> &'static str {
    match k {
        TransportKind::Ssh => "ssh",
        TransportKind::Winrm => "winrm",
        TransportKind::Local => "local",
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

/// The variables a template sees: playbook vars, the target's vars over them, and `target`.
fn context(raw: &RawPlaybook, target: Option<&Target>, target_name: &str) -> Value {
    let mut map: BTreeMap<String, Value> = raw
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), json_to_value(v)))
        .collect();
    if let Some(t) = target {
        for (k, v) in &t.vars {
            map.insert(k.clone(), json_to_value(v));
        }
        let info: BTreeMap<String, Value> = [
            ("name", Value::from(t.name.clone())),
            ("host", Value::from(t.host.clone().unwrap_or_default())),
            ("user", Value::from(t.user.clone().unwrap_or_default())),
            ("port", t.port.map(Value::from).unwrap_or(Value::from(()))),
            ("transport", Value::from(kind_name(t.transport))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        map.insert("target".into(), Value::from(info));
    } else {
        let info: BTreeMap<String, Value> = [("name".to_string(), Value::from(target_name))]
            .into_iter()
            .collect();
        map.insert("target".into(), Value::from(info));
    }
    Value::from(map)
}

fn ctx_names(raw: &RawPlaybook, target: Option<&Target>) -> Vec<String> {
    let mut names: BTreeSet<String> = raw.vars.keys().cloned().collect();
    if let Some(t) = target {
        names.extend(t.vars.keys().cloned());
    }
    names.insert("target".into());
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_raw_type_has_a_readable_name() {
        let raw = include_str!("raw.rs");
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

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            SignedDuration::from_secs(90)
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_duration("2d").unwrap(),
            SignedDuration::from_hours(48)
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5m").is_err());
        for bad in [
            "2 hours",
            "1.5h",
            "PT2H",
            "1mo",
            "30m1h",
            "1h1h",
            "5",
            "h",
            "99999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("1d2h3m4s").unwrap(),
            SignedDuration::from_secs(86_400 + 7_200 + 184)
        );
    }

    #[test]
    fn times_and_days() {
        assert_eq!(parse_hhmm("07:30"), Some(Time::constant(7, 30, 0, 0)));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("7:5"), None);
        assert_eq!(parse_day("Fri"), Some(Weekday::Friday));
        assert_eq!(parse_day("fry"), None);
    }
}
