//! The shape check that runs before serde: every unknown or duplicated key in the whole file,
//! each with its position and a suggestion, and literal secrets. serde alone would stop at the
//! first unknown key; a consultant fixing a playbook wants to see all of them at once.

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
    "env",
    "stdin",
];
pub const UPLOAD_KEYS: &[&str] = &["src", "dest"];
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
    // Wrong types (a list where a mapping belongs, an alias) are serde's to report.
    let NodeKind::Map(entries) = &node.kind else {
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
            visit(&entry.key, &entry.value, path, out);
        }
        seen.push(&entry.key);
        path.pop();
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
