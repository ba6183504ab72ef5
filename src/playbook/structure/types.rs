//! Value types in the shape check: durations, integers, booleans, lists and mappings where
//! each key expects them, with what a valid value looks like.

use super::super::diagnostic::Diagnostic;
use super::super::source::{Node, NodeKind, Seg, Source};
use super::*;

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

pub(super) fn check_type(
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
    if !right_shape(src, kind, node, path, out) {
        return;
    }
    let NodeKind::Scalar(value) = &node.kind else {
        return;
    };
    match kind {
        Kind::Map(..) | Kind::Seq(..) | Kind::TextOrSeq(..) | Kind::Text => {}
        Kind::Bool => check_bool(src, key, node, value, path, out),
        Kind::Int { min, max } => check_int(src, key, node, min, max, path, out),
        Kind::Ints => {}
        Kind::Duration { help } => {
            if is_null(node, value) {
                return;
            }
            if let Err(e) = super::super::validate::parse_duration(value) {
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

/// Whether `node` has the shape (mapping, list, text) `kind` takes; the error when not.
fn right_shape(
    src: &Source,
    kind: Kind,
    node: &Node,
    path: &[Seg],
    out: &mut Vec<Diagnostic>,
) -> bool {
    // An empty value reads as an empty mapping or list.
    let empty = node.plain && matches!(&node.kind, NodeKind::Scalar(v) if v.is_empty());
    match kind {
        Kind::Map(..) | Kind::Seq(..) if empty => true,
        Kind::Map(desc, nullable) if !matches!(node.kind, NodeKind::Map(_)) => {
            wrong_shape(src, node, path, desc, nullable, out);
            false
        }
        Kind::Seq(desc, nullable) if !matches!(node.kind, NodeKind::Seq(_)) => {
            wrong_shape(src, node, path, desc, nullable, out);
            false
        }
        Kind::TextOrSeq(desc, nullable) if matches!(node.kind, NodeKind::Map(_)) => {
            wrong_shape(src, node, path, desc, nullable, out);
            false
        }
        Kind::TextOrSeq(desc, nullable) if is_null_node(node) => {
            wrong_shape(src, node, path, desc, nullable, out);
            false
        }
        Kind::Ints if !matches!(node.kind, NodeKind::Seq(_)) => {
            wrong_shape(
                src,
                node,
                path,
                "a list of exit codes, e.g. `[0, 3010]`",
                true,
                out,
            );
            false
        }
        Kind::Text if matches!(node.kind, NodeKind::Map(_) | NodeKind::Seq(_)) => {
            wrong_shape(src, node, path, "text", true, out);
            false
        }
        _ => true,
    }
}

/// A boolean is `true` or `false`, unquoted; `yes`, `on` and the like are YAML 1.1 and read
/// as text here, and the message says which was meant.
fn check_bool(
    src: &Source,
    key: &str,
    node: &Node,
    value: &str,
    path: &[Seg],
    out: &mut Vec<Diagnostic>,
) {
    let ok = node.plain
        && matches!(
            value,
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

fn is_null_node(node: &Node) -> bool {
    matches!(&node.kind, NodeKind::Scalar(v) if is_null(node, v))
}

/// "invalid type: string \"x\", expected DESC", worded as serde words it, for a value of the
/// wrong shape. Null is accepted where it means the key is absent; aliases are left to serde.
pub(super) fn wrong_shape(
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
        NodeKind::Scalar(v) => match super::super::source::plain_value(v) {
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
