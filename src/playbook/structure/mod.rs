//! The shape check that runs before serde: every unknown, duplicated or missing key in the
//! whole file, every value of the wrong type, each with its position and a suggestion, and
//! literal secrets. serde alone would stop at the first; a consultant fixing a playbook wants
//! to see all of them at once.

mod secrets;
mod types;

use super::diagnostic::{suggestion_or_choices, Diagnostic};
use super::source::{Node, NodeKind, Seg, Source};
use secrets::{check_env_value, check_secret};
use types::{check_type, wrong_shape};

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
            "window" => window(src, child, path, out),
            "targets" => targets(src, child, path, out),
            "steps" => steps(src, child, path, out),
            "notify" => notify(src, child, path, out),
            _ => {}
        },
    );
    out
}

fn window(src: &Source, node: &Node, path: &mut Vec<Seg>, out: &mut Vec<Diagnostic>) {
    walk_map(
        src,
        node,
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
    )
}

fn targets(src: &Source, node: &Node, path: &mut Vec<Seg>, out: &mut Vec<Diagnostic>) {
    each_value(node, path, |_, target, p| {
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
    })
}

fn steps(src: &Source, node: &Node, path: &mut Vec<Seg>, out: &mut Vec<Diagnostic>) {
    each_item(node, path, |step, p| {
        walk_map(src, step, p, STEP_KEYS, "a step", out, &|k, c, p, o| {
            step_key(src, k, c, p, o)
        })
    })
}

/// The keys of a step that hold mappings of their own, and its secrets.
fn step_key(src: &Source, k: &str, c: &Node, p: &mut Vec<Seg>, o: &mut Vec<Diagnostic>) {
    let none = &|_: &str, _: &Node, _: &mut Vec<Seg>, _: &mut Vec<Diagnostic>| {};
    match k {
        "upload" => walk_map(src, c, p, UPLOAD_KEYS, "upload", o, none),
        "copy" => walk_map(src, c, p, COPY_KEYS, "copy", o, none),
        "fetch" => walk_map(src, c, p, FETCH_KEYS, "fetch", o, none),
        "deadline" => walk_map(src, c, p, DEADLINE_KEYS, "deadline", o, none),
        "reboot" => walk_map(src, c, p, REBOOT_KEYS, "reboot", o, none),
        "stdin" => check_secret(src, c, p, k, o),
        "env" => each_value(c, p, |name, value, p| {
            check_env_value(src, name, value, p, o)
        }),
        _ => {}
    }
}

fn notify(src: &Source, node: &Node, path: &mut Vec<Seg>, out: &mut Vec<Diagnostic>) {
    each_item(node, path, |sink, p| {
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
    })
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
        if let Some((desc, nullable)) = expected_shape(what) {
            wrong_shape(src, node, path, desc, nullable, out);
        }
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for entry in entries {
        path.push(Seg::Key(entry.key.clone()));
        check_entry(src, entry, &seen, path, allowed, what, out, visit);
        seen.push(&entry.key);
        path.pop();
    }
    for (key, help) in required_keys(what) {
        if !seen.contains(key) {
            out.push(Diagnostic::at(src, path, format!("missing `{key}` in {what}")).help(*help));
        }
    }
}

/// One key of a mapping: given twice, a merge key, unknown (with a suggestion), or checked
/// and visited.
#[allow(clippy::too_many_arguments)]
fn check_entry(
    src: &Source,
    entry: &super::source::Entry,
    seen: &[&str],
    path: &mut Vec<Seg>,
    allowed: &[&str],
    what: &str,
    out: &mut Vec<Diagnostic>,
    visit: &Visit<'_>,
) {
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
        let mut d = Diagnostic::at_key(src, path, format!("unknown key `{}` in {what}", entry.key))
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
}

/// What belongs where a mapping named `what` is expected, and whether null may stand for it;
/// None where serde is left to judge.
fn expected_shape(what: &str) -> Option<(&'static str, bool)> {
    Some(match what {
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
        _ => return None,
    })
}

/// The keys a mapping named `what` must have, each with how to add it.
fn required_keys(what: &str) -> &'static [(&'static str, &'static str)] {
    match what {
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
            ("src", "add `src: FILE` (relative to the folder of the file that names the step: in a procedure, the procedure's)"),
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
            ("dest", "add `dest: LOCAL_PATH` on this machine (relative to the folder of the file that names the step: in a procedure, the procedure's)"),
        ],
        "deadline" => &[
            ("after", "add `after: STEP`, an earlier step's id"),
            ("within", "add `within: DURATION`, e.g. `within: 21d`"),
        ],
        _ => &[],
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
