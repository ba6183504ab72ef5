//! The shape check that runs before serde: every unknown, duplicated or missing key in the
//! whole file, every value of the wrong type, each with its position and a suggestion, and
//! literal secrets. serde alone would stop at the first; a consultant fixing a playbook wants
//! to see all of them at once.

use super::diagnostic::{suggestion_or_choices, Diagnostic};
use super::source::{Node, NodeKind, Seg, Source};

pub const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "window",
    "vars",
    "targets",
    "groups",
    "steps",
    "on_failure",
    "notify",
    "state",
];
pub const WINDOW_KEYS: &[&str] = &[
    "timezone",
    "business_hours",
    "holidays",
    "margin",
    "when_closed",
];
pub const HOURS_KEYS: &[&str] = &["days", "from", "to"];
pub const TARGET_KEYS: &[&str] = &[
    "transport",
    "host",
    "port",
    "https",
    "user",
    "password",
    "key",
    "passphrase",
    "known_hosts",
    "keepalive",
    "shell",
    "auth",
    "ca_file",
    "cert_sha256",
    "insecure",
    "allow_unencrypted",
    "jump",
    "ssh_config",
    "vars",
    "reboot_command",
    "boot_id_command",
    "via",
    "run",
];
pub const SECRET_KEYS: &[&str] = &["env", "file"];
pub const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "phase",
    "on",
    "run",
    "script",
    "upload",
    "copy",
    "fetch",
    "manual",
    "reboot",
    "reboot_on",
    "detach",
    "ok_codes",
    "check",
    "rollback",
    "estimate",
    "timeout",
    "retries",
    "retry_delay",
    "idempotent",
    "point_of_no_return",
    "business_hours",
    "deadline",
    "changes",
    "env",
    "stdin",
    "optional",
];
pub const UPLOAD_KEYS: &[&str] = &["src", "dest"];
pub const COPY_KEYS: &[&str] = &["from", "path", "to", "dest"];
pub const FETCH_KEYS: &[&str] = &["path", "dest"];
pub const DEADLINE_KEYS: &[&str] = &["after", "within"];
pub const REBOOT_KEYS: &[&str] = &["timeout"];
pub const SINK_KEYS: &[&str] = &["webhook", "ntfy", "email", "on"];
pub const EMAIL_KEYS: &[&str] = &["to", "from", "smtp"];
pub const SMTP_KEYS: &[&str] = &["host", "port", "tls", "user", "password"];

/// Words people bring from other tools, and what they are called here.
const SYNONYMS: &[(&str, &str)] = &[
    ("command", "run"),
    ("cmd", "run"),
    ("exec", "run"),
    ("shell", "run"),
    ("hosts", "on"),
    ("target", "on"),
    ("targets", "on"),
    ("verify", "check"),
    ("undo", "rollback"),
    ("hostname", "host"),
    ("address", "host"),
    ("username", "user"),
    ("identity_file", "key"),
    ("private_key", "key"),
    ("tz", "timezone"),
    ("time_zone", "timezone"),
];

/// Checks the whole tree; returns every problem found.
pub fn check(src: &Source) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let Some(root) = &src.root else {
        out.push(
            Diagnostic::at(src, &[], "the playbook is empty").help(
                "start with `name:`, `window:`, `targets:` and `steps:` (see `runner schema`)",
            ),
        );
        return out;
    };
    if !matches!(root.kind, NodeKind::Map(_)) {
        out.push(
            Diagnostic::at(src, &[], "a playbook must be a mapping of keys")
                .help("start with `name:`, `window:`, `targets:` and `steps:`"),
        );
        return out;
    }
    let mut path = Vec::new();
    walk_map(
        src,
        root,
        &mut path,
        TOP_KEYS,
        "the playbook",
        &mut out,
        &|key, child, path, out| match key {
            "window" => walk_map(
                src,
                child,
                path,
                WINDOW_KEYS,
                "window",
                out,
                &|k, c, p, o| {
                    if k == "business_hours" {
                        each_item(c, p, |item, p| {
                            walk_map(
                                src,
                                item,
                                p,
                                HOURS_KEYS,
                                "a business_hours rule",
                                o,
                                &|_, _, _, _| {},
                            )
                        });
                    }
                },
            ),
            "targets" => each_value(child, path, |_, target, p| {
                walk_map(
                    src,
                    target,
                    p,
                    TARGET_KEYS,
                    "a target",
                    out,
                    &|k, c, p, o| {
                        if k == "password" || k == "passphrase" {
                            check_secret(src, c, p, k, o);
                        }
                    },
                )
            }),
            "steps" => each_item(child, path, |step, p| {
                walk_map(
                    src,
                    step,
                    p,
                    STEP_KEYS,
                    "a step",
                    out,
                    &|k, c, p, o| match k {
                        "upload" => walk_map(src, c, p, UPLOAD_KEYS, "upload", o, &|_, _, _, _| {}),
                        "copy" => walk_map(src, c, p, COPY_KEYS, "copy", o, &|_, _, _, _| {}),
                        "fetch" => walk_map(src, c, p, FETCH_KEYS, "fetch", o, &|_, _, _, _| {}),
                        "deadline" => {
                            walk_map(src, c, p, DEADLINE_KEYS, "deadline", o, &|_, _, _, _| {})
                        }
                        "reboot" => walk_map(src, c, p, REBOOT_KEYS, "reboot", o, &|_, _, _, _| {}),
                        "stdin" => check_secret(src, c, p, k, o),
                        "env" => each_value(c, p, |name, value, p| {
                            check_env_value(src, name, value, p, o)
                        }),
                        _ => {}
                    },
                )
            }),
            "notify" => each_item(child, path, |sink, p| {
                walk_map(
                    src,
                    sink,
                    p,
                    SINK_KEYS,
                    "a notify entry",
                    out,
                    &|k, c, p, o| {
                        if k == "email" {
                            walk_map(src, c, p, EMAIL_KEYS, "email", o, &|k, c, p, o| {
                                if k == "smtp" {
                                    walk_map(src, c, p, SMTP_KEYS, "smtp", o, &|k, c, p, o| {
                                        if k == "password" {
                                            check_secret(src, c, p, k, o);
                                        }
                                    })
                                }
                            })
                        }
                    },
                )
            }),
            _ => {}
        },
    );
    out
}

type Visit<'a> = dyn Fn(&str, &Node, &mut Vec<Seg>, &mut Vec<Diagnostic>) + 'a;

/// Checks one mapping's keys against `allowed`, then lets `visit` descend into known keys.
fn walk_map(
    src: &Source,
    node: &Node,
    path: &mut Vec<Seg>,
    allowed: &[&str],
    what: &str,
    out: &mut Vec<Diagnostic>,
    visit: &Visit<'_>,
) {
    // Something else where this mapping belongs: said here, so that it is one of all the
    // errors and not serde's only one. Aliases are serde's to judge.
    let NodeKind::Map(entries) = &node.kind else {
        let (desc, nullable) = match what {
            "window" => ("the window (a mapping)", false),
            "a target" => ("a target (a mapping)", false),
            "a step" => ("a step (a mapping)", false),
            "a business_hours rule" => ("a business_hours rule (a mapping)", false),
            "upload" => ("`upload: { src: FILE, dest: PATH }`", true),
            "copy" => (
                "`copy: { from: TARGET, path: PATH, to: TARGET, dest: PATH }`",
                true,
            ),
            "fetch" => ("`fetch: { path: PATH, dest: LOCAL_PATH }`", true),
            "reboot" => (
                "`reboot: { timeout: DURATION }` (or `reboot: {}` for 20m)",
                true,
            ),
            "deadline" => ("`deadline: { after: STEP, within: DURATION }`", true),
            _ => return,
        };
        wrong_shape(src, node, path, desc, nullable, out);
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for entry in entries {
        path.push(Seg::Key(entry.key.clone()));
        if seen.contains(&entry.key.as_str()) {
            out.push(
                Diagnostic::at_key(
                    src,
                    path,
                    format!("`{}` is given twice in {what}", entry.key),
                )
                .help("keep one of them"),
            );
        } else if entry.key == "<<" {
            out.push(
                Diagnostic::at_key(src, path, "YAML merge keys (`<<`) are not supported")
                    .help("write the keys out, or move shared values into `vars`"),
            );
        } else if !allowed.contains(&entry.key.as_str()) {
            let help = help_for_unknown(&entry.key, allowed);
            let mut d =
                Diagnostic::at_key(src, path, format!("unknown key `{}` in {what}", entry.key))
                    .help(help);
            // A misspelt `password:` line may hold a literal password: do not echo it.
            if entry.key.contains("pass") || entry.key.contains("secret") {
                d = d.without_source();
            }
            out.push(d);
        } else {
            check_type(src, what, &entry.key, &entry.value, path, out);
            visit(&entry.key, &entry.value, path, out);
        }
        seen.push(&entry.key);
        path.pop();
    }
    let required: &[(&str, &str)] = match what {
        "the playbook" => &[
            ("name", "say what this cutover is, e.g. `name: Acme SBS 2000 to SBS 2003 cutover`"),
            ("window", "add `window:` with the customer's `timezone` and `business_hours` (`business_hours: []` for none); a procedure is checked through a customer file that names it (`procedure: PATH`)"),
            ("steps", "add `steps:` with at least one step"),
        ],
        "window" => &[("business_hours", "add `business_hours: [{ days: mon-fri, from: \"07:30\", to: \"18:00\" }]`, or `business_hours: []` for none")],
        "a target" => &[("transport", "add `transport: ssh`, `transport: winrm`, `transport: local` or `transport: relay`")],
        "a step" => &[("id", "add `id:`, a unique name such as `copy-company-share`")],
        "a business_hours rule" => &[
            ("days", "add `days: mon-fri`"),
            ("from", "add `from: \"07:30\"`"),
            ("to", "add `to: \"18:00\"`"),
        ],
        "upload" => &[
            ("src", "add `src: FILE` (relative to the playbook)"),
            ("dest", "add `dest: PATH` on the target"),
        ],
        "copy" => &[
            ("from", "add `from: TARGET`, the target the file is read from"),
            ("path", "add `path: PATH`, the file on `from`"),
            ("to", "add `to: TARGET`, the target the file is written to"),
            ("dest", "add `dest: PATH`, where the file goes on `to`"),
        ],
        "fetch" => &[
            ("path", "add `path: PATH`, the file on the step's target"),
            ("dest", "add `dest: LOCAL_PATH` on this machine (relative to the playbook)"),
        ],
        "deadline" => &[
            ("after", "add `after: STEP`, an earlier step's id"),
            ("within", "add `within: DURATION`, e.g. `within: 21d`"),
        ],
        _ => &[],
    };
    for (key, help) in required {
        if !seen.contains(key) {
            out.push(Diagnostic::at(src, path, format!("missing `{key}` in {what}")).help(*help));
        }
    }
}

/// A suggestion for an unknown key: a near miss of a valid key, or of a word from another
/// tool that has a name here (`comand` -> `command` -> `run`), else the valid keys.
fn help_for_unknown(key: &str, allowed: &[&str]) -> String {
    let synonyms: Vec<(&str, &str)> = SYNONYMS
        .iter()
        .copied()
        .filter(|(_, to)| allowed.contains(to))
        .collect();
    if let Some((from, to)) = synonyms.iter().find(|(from, _)| *from == key) {
        return format!("did you mean `{to}`? (`{from}` is called `{to}` in runner playbooks)");
    }
    let candidates = allowed
        .iter()
        .copied()
        .chain(synonyms.iter().map(|(from, _)| *from));
    match super::diagnostic::suggest(key, candidates) {
        Some(s) => match synonyms.iter().find(|(from, _)| *from == s) {
            Some((from, to)) => {
                format!("did you mean `{from}`? That is called `{to}` in runner playbooks")
            }
            None => format!("did you mean `{s}`?"),
        },
        None => suggestion_or_choices(key, allowed.iter().copied()),
    }
}

fn each_item(node: &Node, path: &mut Vec<Seg>, mut f: impl FnMut(&Node, &mut Vec<Seg>)) {
    if let NodeKind::Seq(items) = &node.kind {
        for (i, item) in items.iter().enumerate() {
            path.push(Seg::Index(i));
            f(item, path);
            path.pop();
        }
    }
}

fn each_value(node: &Node, path: &mut Vec<Seg>, mut f: impl FnMut(&str, &Node, &mut Vec<Seg>)) {
    if let NodeKind::Map(entries) = &node.kind {
        for e in entries {
            path.push(Seg::Key(e.key.clone()));
            f(&e.key, &e.value, path);
            path.pop();
        }
    }
}

/// Words in a variable's name that say its value is a credential: a plain value there is a
/// literal secret.
const SECRET_WORDS: &[&str] = &["PASS", "PWD", "_PW", "SECRET", "TOKEN", "CREDENTIAL", "KEY"];

/// A step's `env` entry: a secret reference is checked as one; a plain value is fine unless
/// the variable's name says it holds a credential.
fn check_env_value(
    src: &Source,
    name: &str,
    node: &Node,
    path: &mut Vec<Seg>,
    out: &mut Vec<Diagnostic>,
) {
    match &node.kind {
        NodeKind::Map(_) => check_secret(src, node, path, name, out),
        NodeKind::Scalar(_) => {
            let upper = name.to_ascii_uppercase();
            if SECRET_WORDS.iter().any(|w| upper.contains(w)) || upper.ends_with("PW") {
                out.push(
                    Diagnostic::at(src, path, format!("`env.{name}` looks like a literal secret; secrets may only be referenced"))
                        .help(format!("write `{name}: {{ env: VARIABLE }}` or `{name}: {{ file: PATH }}`, and remove the value from this file (rename the variable if it truly is no secret)"))
                        .without_source(),
                );
            }
        }
        _ => {}
    }
}

fn check_secret(
    src: &Source,
    node: &Node,
    path: &mut Vec<Seg>,
    key: &str,
    out: &mut Vec<Diagnostic>,
) {
    match &node.kind {
        NodeKind::Scalar(_) => out.push(
            // Do not echo the value: it may be a real password.
            Diagnostic::at(src, path, format!("`{key}` is a literal secret; secrets may only be referenced"))
                .help(format!("write `{key}: {{ env: VARIABLE }}` or `{key}: {{ file: PATH }}`, and remove the secret from this file"))
                .without_source(),
        ),
        NodeKind::Map(entries) => {
            walk_map(src, node, path, SECRET_KEYS, &format!("`{key}`"), out, &|_, _, _, _| {});
            if entries.len() != 1 && entries.iter().all(|e| SECRET_KEYS.contains(&e.key.as_str())) {
                out.push(
                    Diagnostic::at(src, path, format!("`{key}` must name exactly one of `env` or `file`"))
                        .help(format!("for example `{key}: {{ env: VARIABLE }}`")),
                );
            }
        }
        _ => {}
    }
}

/// The type a key takes, where it can be checked on the tree: booleans, whole numbers,
/// durations, fixed choices, and mappings, lists or text of the right shape. Checking them
/// here, key by key, reports every wrong value at once; serde would stop at the first.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    Ints,
    Duration {
        help: &'static str,
    },
    Choice(&'static [&'static str]),
    /// A mapping, a list, or text or a list, as described; `nullable` when null means absent.
    Map(&'static str, bool),
    Seq(&'static str, bool),
    TextOrSeq(&'static str, bool),
    /// Text (any scalar reads as text); a mapping or list is wrong.
    Text,
}

const DURATION_HELP: &str = "write durations like 90s, 15m, 1h30m or 2d";

/// `what` is the name `walk_map` uses for the mapping.
fn kind_of(what: &str, key: &str) -> Option<Kind> {
    let duration = Kind::Duration {
        help: DURATION_HELP,
    };
    Some(match (what, key) {
        ("the playbook", "on_failure") => Kind::Choice(&["stop", "rollback"]),
        ("window", "margin") => duration,
        ("window", "when_closed") => Kind::Choice(&["stop", "wait"]),
        ("a target", "transport") => Kind::Choice(&["ssh", "winrm", "local", "relay"]),
        ("a target", "port") => Kind::Int {
            min: 0,
            max: u16::MAX as i64,
        },
        ("a target", "https" | "insecure" | "allow_unencrypted") => Kind::Bool,
        ("a target", "keepalive") => Kind::Duration {
            help: "write whole seconds from 1s to 1h, e.g. `keepalive: 15s` (the default)",
        },
        ("a target", "shell") => Kind::Choice(&["sh", "cmd", "powershell"]),
        ("a target", "auth") => Kind::Choice(&["basic", "ntlm"]),
        ("a step", "detach" | "idempotent" | "point_of_no_return" | "optional") => Kind::Bool,
        ("a step", "estimate" | "timeout" | "retry_delay") => duration,
        ("a step", "retries") => Kind::Int {
            min: 0,
            max: u32::MAX as i64,
        },
        ("a step", "ok_codes" | "reboot_on") => Kind::Ints,
        ("a step", "business_hours") => Kind::Choice(&["refuse", "allow"]),
        ("a step", "changes") => Kind::Choice(&["none", "target"]),
        ("the playbook", "vars") | ("a target", "vars") => {
            Kind::Map("a mapping of variables", false)
        }
        ("the playbook", "targets") => Kind::Map("a mapping of target names to targets", false),
        ("the playbook", "groups") => {
            Kind::Map("a mapping of group names to lists of targets", false)
        }
        ("the playbook", "steps") => Kind::Seq("a list of steps", false),
        ("the playbook", "name" | "description") => Kind::Text,
        ("window", "business_hours") => Kind::Seq("a list of business_hours rules", false),
        ("window", "holidays") => Kind::Seq("a list of dates", false),
        ("window", "timezone") => Kind::Text,
        ("a business_hours rule", "days") => Kind::TextOrSeq(
            "a day (mon), a range (mon-fri) or a list ([mon, wed])",
            false,
        ),
        ("a business_hours rule", "from" | "to") => Kind::Text,
        ("a step", "on") => Kind::TextOrSeq("a target or group name, or a list of them", true),
        (
            "a step",
            "id" | "name" | "phase" | "run" | "script" | "manual" | "check" | "rollback",
        ) => Kind::Text,
        (
            "a target",
            "host" | "user" | "key" | "known_hosts" | "ca_file" | "cert_sha256" | "reboot_command"
            | "boot_id_command",
        ) => Kind::Text,
        ("upload", "src" | "dest") | ("deadline", "after") => Kind::Text,
        ("copy", "from" | "path" | "to" | "dest") | ("fetch", "path" | "dest") => Kind::Text,
        ("reboot", "timeout") | ("deadline", "within") => duration,
        _ => return None,
    })
}

fn is_null(node: &Node, value: &str) -> bool {
    node.plain && matches!(value, "" | "~" | "null" | "Null" | "NULL")
}

fn check_type(
    src: &Source,
    what: &str,
    key: &str,
    node: &Node,
    path: &mut Vec<Seg>,
    out: &mut Vec<Diagnostic>,
) {
    let Some(kind) = kind_of(what, key) else {
        return;
    };
    if let (Kind::Ints, NodeKind::Seq(items)) = (kind, &node.kind) {
        for (i, item) in items.iter().enumerate() {
            path.push(Seg::Index(i));
            check_int(src, key, item, i64::MIN, i64::MAX, path, out);
            path.pop();
        }
        return;
    }
    // An empty value reads as an empty mapping or list.
    let empty = node.plain && matches!(&node.kind, NodeKind::Scalar(v) if v.is_empty());
    match kind {
        Kind::Map(..) | Kind::Seq(..) if empty => {}
        Kind::Map(desc, nullable) if !matches!(node.kind, NodeKind::Map(_)) => {
            return wrong_shape(src, node, path, desc, nullable, out);
        }
        Kind::Seq(desc, nullable) if !matches!(node.kind, NodeKind::Seq(_)) => {
            return wrong_shape(src, node, path, desc, nullable, out);
        }
        Kind::TextOrSeq(desc, nullable) if matches!(node.kind, NodeKind::Map(_)) => {
            return wrong_shape(src, node, path, desc, nullable, out);
        }
        Kind::TextOrSeq(desc, nullable) if is_null_node(node) => {
            return wrong_shape(src, node, path, desc, nullable, out);
        }
        Kind::Ints if !matches!(node.kind, NodeKind::Seq(_)) => {
            return wrong_shape(
                src,
                node,
                path,
                "a list of exit codes, e.g. `[0, 3010]`",
                true,
                out,
            );
        }
        Kind::Text if matches!(node.kind, NodeKind::Map(_) | NodeKind::Seq(_)) => {
            return wrong_shape(src, node, path, "text", true, out);
        }
        _ => {}
    }
    let NodeKind::Scalar(value) = &node.kind else {
        return;
    };
    match kind {
        Kind::Map(..) | Kind::Seq(..) | Kind::TextOrSeq(..) | Kind::Text => {}
        Kind::Bool => {
            let ok = node.plain
                && matches!(
                    value.as_str(),
                    "true" | "false" | "True" | "False" | "TRUE" | "FALSE"
                );
            if ok {
                return;
            }
            let lower = value.to_ascii_lowercase();
            let meant = match lower.as_str() {
                "yes" | "y" | "on" | "true" => Some("true"),
                "no" | "n" | "off" | "false" => Some("false"),
                _ => None,
            };
            let (message, help) = if is_null(node, value) {
                (
                    format!("`{key}` has no value"),
                    format!("write `{key}: true` or `{key}: false`"),
                )
            } else if !node.plain && meant.is_some() {
                (
                    format!("`\"{value}\"` is quoted text, not true or false"),
                    format!("write `{key}: {}` without quotes", meant.unwrap_or("true")),
                )
            } else if let Some(m) = meant {
                (
                    format!("`{key}: {value}` is not true or false here"),
                    format!("write `{key}: {m}` (YAML 1.2 reads only true and false as booleans)"),
                )
            } else {
                (
                    format!("`{value}` is not true or false"),
                    format!("write `{key}: true` or `{key}: false`"),
                )
            };
            out.push(Diagnostic::at(src, path, message).help(help));
        }
        Kind::Int { min, max } => check_int(src, key, node, min, max, path, out),
        Kind::Ints => {}
        Kind::Duration { help } => {
            if is_null(node, value) {
                return;
            }
            if let Err(e) = super::validate::parse_duration(value) {
                out.push(
                    Diagnostic::at(src, path, format!("`{value}` is not a duration ({e})"))
                        .help(help)
                        .soft(),
                );
            }
        }
        Kind::Choice(choices) => {
            if is_null(node, value) || choices.contains(&value.as_str()) {
                return;
            }
            out.push(
                Diagnostic::at(src, path, format!("`{value}` is not a valid `{key}`"))
                    .help(suggestion_or_choices(value, choices.iter().copied())),
            );
        }
    }
}

fn is_null_node(node: &Node) -> bool {
    matches!(&node.kind, NodeKind::Scalar(v) if is_null(node, v))
}

/// "invalid type: string \"x\", expected DESC", worded as serde words it, for a value of the
/// wrong shape. Null is accepted where it means the key is absent; aliases are left to serde.
fn wrong_shape(
    src: &Source,
    node: &Node,
    path: &[Seg],
    desc: &str,
    nullable: bool,
    out: &mut Vec<Diagnostic>,
) {
    use serde_yaml_ng::Value;
    let found = match &node.kind {
        NodeKind::Alias => return,
        NodeKind::Map(_) => "map".to_string(),
        NodeKind::Seq(_) => "sequence".to_string(),
        NodeKind::Scalar(v) if !node.plain => format!("string {v:?}"),
        NodeKind::Scalar(v) => match super::source::plain_value(v) {
            Value::Null if nullable => return,
            Value::Null => "unit value".to_string(),
            Value::Bool(b) => format!("boolean `{b}`"),
            Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
            Value::Number(n) => format!("integer `{n}`"),
            _ => format!("string {v:?}"),
        },
    };
    out.push(Diagnostic::at(
        src,
        path,
        format!("invalid type: {found}, expected {desc}"),
    ));
}

fn check_int(
    src: &Source,
    key: &str,
    node: &Node,
    min: i64,
    max: i64,
    path: &[Seg],
    out: &mut Vec<Diagnostic>,
) {
    let NodeKind::Scalar(value) = &node.kind else {
        return;
    };
    if is_null(node, value) {
        return;
    }
    let range = if min == i64::MIN {
        "exit codes are whole numbers, e.g. `[0, 3010]`".to_string()
    } else if max == u32::MAX as i64 {
        format!("`{key}` takes a whole number, e.g. `{key}: 2`")
    } else {
        format!("`{key}` takes a whole number from {min} to {max}")
    };
    let parsed = value.parse::<i64>().ok().or_else(|| {
        let (radix, digits) = match value.get(..2) {
            Some("0x") => (16, &value[2..]),
            Some("0o") => (8, &value[2..]),
            _ => return None,
        };
        i64::from_str_radix(digits, radix).ok()
    });
    let problem = match parsed {
        Some(_) if !node.plain => Some((
            format!("`\"{value}\"` is quoted text, not a number"),
            format!("write the number without quotes; {range}"),
        )),
        Some(n) if n < min || n > max => Some((format!("`{value}` is out of range"), range)),
        Some(_) => None,
        None => Some((format!("`{value}` is not a whole number"), range)),
    };
    if let Some((message, help)) = problem {
        out.push(Diagnostic::at(src, path, message).help(help));
    }
}
